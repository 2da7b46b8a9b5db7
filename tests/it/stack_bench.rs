//! Benchmark of the conductor's codex proxy (ignored by default; prints numbers, never
//! pass/fail):
//!
//!   scripts/bench/proxy.sh
//!   cargo test --release --test it stack_bench -- --ignored --nocapture --test-threads 1
//!
//! Same run, same codexd (real app-server on the loopback mock model), interleaved so drift
//! hits both sides equally:
//! - `GET /v1/codex/sessions` through the conductor vs `GET /v1/codexd/sessions` on codexd,
//!   2000 each over one keep-alive client per side;
//! - a full turn (POST turn → the session read shows it finished) through the conductor vs
//!   directly on codexd, polling the session every 2 ms.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::codex::{codex_binary, MockCodexHome};
use crate::support::codexd::{wait_child_running, with_codex, Dirs};
use crate::support::conductor::{self, TOKEN};
use crate::support::tmp;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn stats(label: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label}: n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        v.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        v[v.len() - 1]
    );
}

/// One keep-alive client (ureq pools connections per agent).
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

fn call(a: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let mut r = match body {
        Some(b) => a.post(url).send_json(b),
        None if method == "GET" => a.get(url).call(),
        None => unreachable!(),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Milliseconds from POST turn to the session read showing that turn finished.
fn timed_turn(a: &ureq::Agent, turn_url: &str, session_url: &str, sid: &str, i: usize) -> f64 {
    let t0 = Instant::now();
    let (status, v) = call(
        a,
        "POST",
        turn_url,
        Some(&json!({"sessionId": sid, "input": format!("bench turn {i}")})),
    );
    assert_eq!(status, 202, "{v}");
    let tid = v["data"]["turnId"].as_str().expect("turnId").to_string();
    loop {
        let (_, s) = call(a, "GET", session_url, None);
        let s = &s["data"]["session"];
        if s["lastTurnId"] == tid.as_str() && s["currentTurnId"].is_null() {
            assert_eq!(s["lastTurnStatus"], "completed", "{s}");
            return t0.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(t0.elapsed() < T, "turn {tid} did not finish: {s}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
#[ignore]
fn bench_proxy_overhead_sessions_list_and_turns() {
    const N_LIST: usize = 2000;
    const N_TURNS: usize = 20;
    let home = MockCodexHome::new("bench-proxy");
    let tmp = TempDir::new("bench-proxy-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let cx = with_codex(&dirs, &codex_binary(), &home.home, &home.work).start();
    wait_child_running(&cx, T);
    let cdir = tmp::TempDir::new("bench-proxy-conductor");
    let c = conductor::spawn(&cdir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("BAA_CODEXD_LOCAL_API_BASE", &cx.base)
        .start();
    let (direct, via) = (client(), client());

    // Two sessions (one per side), so both lists carry real session objects.
    let (s, v) = call(
        &via,
        "POST",
        &c.url("/v1/codex/sessions"),
        Some(&json!({"cwd": home.work})),
    );
    assert_eq!(s, 201, "{v}");
    let sid_via = v["data"]["session"]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = call(
        &direct,
        "POST",
        &cx.url("/v1/codexd/sessions"),
        Some(&json!({"cwd": home.work})),
    );
    assert_eq!(s, 201, "{v}");
    let sid_direct = v["data"]["session"]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();

    let (list_direct, list_via) = (cx.url("/v1/codexd/sessions"), c.url("/v1/codex/sessions"));
    for _ in 0..100 {
        call(&direct, "GET", &list_direct, None);
        call(&via, "GET", &list_via, None);
    }
    let (mut d_ms, mut v_ms) = (Vec::new(), Vec::new());
    for _ in 0..N_LIST {
        let t0 = Instant::now();
        let (s, _) = call(&direct, "GET", &list_direct, None);
        d_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s, 200);
        let t0 = Instant::now();
        let (s, _) = call(&via, "GET", &list_via, None);
        v_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s, 200);
    }
    stats(
        "GET sessions directly on codexd (/v1/codexd/sessions)",
        d_ms,
    );
    stats(
        "GET sessions through the conductor (/v1/codex/sessions)",
        v_ms,
    );

    let (mut d_ms, mut v_ms) = (Vec::new(), Vec::new());
    let (turn_direct, turn_via) = (cx.url("/v1/codexd/turn"), c.url("/v1/codex/turn"));
    let (sess_direct, sess_via) = (
        cx.url(&format!("/v1/codexd/sessions/{sid_direct}")),
        c.url(&format!("/v1/codex/sessions/{sid_via}")),
    );
    // One warm-up turn each (thread load, first model connection).
    timed_turn(&direct, &turn_direct, &sess_direct, &sid_direct, 0);
    timed_turn(&via, &turn_via, &sess_via, &sid_via, 0);
    for i in 1..=N_TURNS {
        d_ms.push(timed_turn(
            &direct,
            &turn_direct,
            &sess_direct,
            &sid_direct,
            i,
        ));
        v_ms.push(timed_turn(&via, &turn_via, &sess_via, &sid_via, i));
    }
    stats(
        "full turn directly on codexd (POST turn → session shows completed)",
        d_ms,
    );
    stats(
        "full turn through the conductor (POST turn → session shows completed)",
        v_ms,
    );
}
