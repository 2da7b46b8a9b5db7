//! The conductor's codex proxy overhead, printed, never asserted (`scripts/bench/proxy.sh`,
//! or `cargo bench --bench proxy`).
//!
//! Same run, same codexd (real app-server on the loopback mock model), interleaved so drift
//! hits both sides equally:
//! - `GET /v1/codex/sessions` through the conductor vs `GET /v1/codexd/sessions` on codexd,
//!   2000 each over one keep-alive client per side;
//! - a full turn (POST turn → the session read shows it finished) through the conductor vs
//!   directly on codexd, polling the session every 2 ms.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;

use support::bench::{ms_since, run, stats, timed_get};
use support::codex::MockCodexHome;
use support::codexd::{start_running, with_mock_codex, CodexApi, Dirs};
use support::conductor::{self, TOKEN};
use support::http::Client;
use support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn main() {
    run(&[(
        "proxy_overhead_sessions_list_and_turns",
        proxy_overhead_sessions_list_and_turns,
    )]);
}

/// Milliseconds from POST turn to the session read showing that turn completed.
fn timed_turn(api: &CodexApi<'_>, sid: &str, i: usize) -> f64 {
    let t0 = Instant::now();
    let tid = api.turn(sid, &format!("bench turn {i}"));
    let s = api.wait_turn_done(sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    ms_since(t0)
}

fn proxy_overhead_sessions_list_and_turns() {
    const N_LIST: usize = 2000;
    const N_TURNS: usize = 20;
    const POLL: Duration = Duration::from_millis(2);
    let home = MockCodexHome::new("bench-proxy");
    let tmp = TempDir::new("bench-proxy-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let cx = start_running(with_mock_codex(&dirs, &home));
    let cdir = TempDir::new("bench-proxy-conductor");
    let c = conductor::spawn(&cdir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("BAA_CODEXD_LOCAL_API_BASE", &cx.base)
        .start();
    let direct = CodexApi::codexd(&cx).polling(POLL);
    let via = CodexApi::conductor(&c).polling(POLL);

    // Two sessions (one per side), so both lists carry real session objects.
    let sid_direct = direct.create_session(json!({"cwd": home.work}))["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    let sid_via = via.create_session(json!({"cwd": home.work}))["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();

    let (client_direct, client_via) = (Client::new(), Client::new());
    let (list_direct, list_via) = (direct.url("/sessions"), via.url("/sessions"));
    for _ in 0..100 {
        timed_get(&client_direct, &list_direct);
        timed_get(&client_via, &list_via);
    }
    let (mut d_ms, mut v_ms) = (Vec::new(), Vec::new());
    for _ in 0..N_LIST {
        d_ms.push(timed_get(&client_direct, &list_direct));
        v_ms.push(timed_get(&client_via, &list_via));
    }
    stats(
        "GET sessions directly on codexd (/v1/codexd/sessions)",
        d_ms,
    );
    stats(
        "GET sessions through the conductor (/v1/codex/sessions)",
        v_ms,
    );

    // One warm-up turn each (thread load, first model connection).
    timed_turn(&direct, &sid_direct, 0);
    timed_turn(&via, &sid_via, 0);
    let (mut d_ms, mut v_ms) = (Vec::new(), Vec::new());
    for i in 1..=N_TURNS {
        d_ms.push(timed_turn(&direct, &sid_direct, i));
        v_ms.push(timed_turn(&via, &sid_via, i));
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
