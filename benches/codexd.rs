//! Numbers for codexd, printed, never asserted (`scripts/bench/codexd.sh`, or
//! `cargo bench --bench codexd [name filter]`):
//!
//! - turn latency through codexd vs the same turn driven directly on the app-server (same
//!   offline mock model),
//! - fan-out latency from a child stdout line to 1/10/100 WebSocket subscribers (stub child),
//! - idle RSS of codexd without a child,
//! - respawn time after SIGKILL of the real child,
//! - the event log after 100k events (stub child): disk, RSS, and `?since=` latency
//!   answered from the in-memory ring vs from the rotated log on disk,
//! - `GET /v1/codexd/models` from the app-server vs from the cache, and what the model check
//!   adds to a session create (real child).
//! - the session registry with 46 sessions whose last turns carry big diffs: its size, the
//!   size it would have with the full records in it, and how long the session list and one
//!   session take to read.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use support::bench::{ms_since, run, stats};
use support::codex::{MockCodexHome, READ_TIMEOUT};
use support::codexd::*;
use support::daemon::wait_for;
use support::http::{get, Client};
use support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn main() {
    run(&[
        (
            "turn_latency_codexd_vs_direct",
            turn_latency_codexd_vs_direct,
        ),
        (
            "fanout_latency_to_websocket_subscribers",
            fanout_latency_to_websocket_subscribers,
        ),
        ("idle_rss_and_respawn_time", idle_rss_and_respawn_time),
        (
            "event_log_100k_disk_rss_and_since_latency",
            event_log_100k_disk_rss_and_since_latency,
        ),
        ("models_list_and_create_check", models_list_and_create_check),
        ("registry_size_with_big_turns", registry_size_with_big_turns),
    ]);
}

fn turn_latency_codexd_vs_direct() {
    const N: usize = 15;
    let home = MockCodexHome::new("bench-turns");
    // Direct: thread/start, then N turns, each timed from turn/start to turn/completed.
    let mut app = home.app_server();
    let thread = app.request("thread/start", json!({"cwd": home.work}));
    let thread_id = thread["thread"]["id"].as_str().unwrap().to_string();
    let mut direct = Vec::new();
    for i in 0..N {
        let t0 = Instant::now();
        app.request("turn/start", json!({"threadId": thread_id, "input": [{"type": "text", "text": format!("direct {i}"), "text_elements": []}]}));
        app.read_until(READ_TIMEOUT, "turn/completed", |m| {
            m["method"] == "turn/completed"
        });
        direct.push(ms_since(t0));
    }
    drop(app);

    let tmp = TempDir::new("bench-turns-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start_running(with_mock_codex(&dirs, &home));
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let mut ws = events_ws(&d, None);
    let mut via = Vec::new();
    for i in 0..N {
        let t0 = Instant::now();
        let tid = turn(&d, &sid, &format!("via codexd {i}"));
        read_until(&mut ws, T, "turn.completed", |e| {
            is_type(e, "turn.completed") && e["detail"]["turnId"] == tid.as_str()
        });
        via.push(ms_since(t0));
    }
    stats("turn latency direct on app-server", direct);
    stats(
        "turn latency through codexd (HTTP 202 + WS turn.completed)",
        via,
    );
}

fn fanout_latency_to_websocket_subscribers() {
    const BURST: usize = 2000;
    let tmp = TempDir::new("bench-fanout");
    for subs in [1usize, 10, 100] {
        let dirs = Dirs::under(&tmp.child(&format!("root{subs}")));
        let d = start_running(with_stub(&dirs, "normal"));
        let s = create_session(&d, json!({}));
        let sid = s["sessionId"].as_str().unwrap().to_string();
        let mut handles = Vec::new();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        for n in 0..subs {
            let mut ws = events_ws(&d, None);
            let ready = ready_tx.clone();
            let subscriber = std::thread::Builder::new()
                .name(format!("bench-sub-{n}"))
                .spawn(move || {
                    let _ = ready.send(());
                    let mut lat = Vec::new();
                    while lat.len() < BURST {
                        let Some(e) = ws.next_json(Duration::from_secs(30)) else {
                            break;
                        };
                        if let Some(sent) = e["detail"]["params"]["stubSentUs"].as_u64() {
                            let now = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .unwrap()
                                .as_micros() as u64;
                            lat.push(now.saturating_sub(sent) as f64 / 1000.0);
                        }
                    }
                    lat
                })
                .expect("spawn subscriber");
            handles.push(subscriber);
        }
        for _ in 0..subs {
            ready_rx.recv().unwrap();
        }
        let t0 = Instant::now();
        turn(&d, &sid, &format!("burst:{BURST}"));
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().unwrap());
        }
        let wall = t0.elapsed();
        let delivered = all.len();
        stats(
            &format!("fan-out child line -> WS frame, {subs} subscriber(s), {BURST} deltas"),
            all,
        );
        println!(
            "  delivered {delivered}/{} frames in {:?}",
            BURST * subs,
            wall
        );
    }
}

fn idle_rss_and_respawn_time() {
    let tmp = TempDir::new("bench-rss");
    let dirs = Dirs::under(&tmp.child("ext"));
    let d = codexd(&dirs)
        .env("BAA_CODEXD_SERVER_STRATEGY", "external")
        .start();
    for _ in 0..20 {
        get(&d.url("/v1/codexd/status"));
    }
    // Let the connection threads of those requests exit before reading RSS.
    std::thread::sleep(Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or(name)
            .to_string()
    };
    println!(
        "codexd idle without a child: {}, {}",
        field("VmRSS"),
        field("Threads")
    );
    drop(d);

    let home = MockCodexHome::new("bench-respawn");
    let dirs = Dirs::under(&tmp.child("real"));
    let d = start_running(with_mock_codex(&dirs, &home));
    let mut times = Vec::new();
    for _ in 0..5 {
        let old = child_pid(&d);
        let t0 = Instant::now();
        baa::common::proc::kill_pid(old, libc::SIGKILL).unwrap();
        wait_for(T, || {
            let v = get(&d.url("/v1/codexd/status")).json();
            let c = &v["data"]["snapshot"]["daemon"]["child"];
            (c["status"] == "running" && c["pid"].as_u64().is_some_and(|p| p as u32 != old))
                .then_some(())
        })
        .expect("respawn");
        times.push(ms_since(t0));
        // Stay healthy past the restart backoff so each kill measures a first restart.
        std::thread::sleep(Duration::from_millis(300));
    }
    stats(
        "respawn after SIGKILL (kill -> initialize answered), backoff base 100 ms",
        times,
    );
}

/// VmRSS and Threads of a process, from /proc (Linux; empty elsewhere).
fn rss_line(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ["VmRSS", "Threads"]
        .iter()
        .map(|name| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| format!("{name}: ?"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn event_log_100k_disk_rss_and_since_latency() {
    const EVENTS: u64 = 100_000;
    const SAMPLES: usize = 200;
    let tmp = TempDir::new("bench-event-log");
    for (label, limits) in [
        ("default limits (64 MiB, keep 3)", None),
        (
            "BAA_CODEXD_EVENT_LOG_MAX_BYTES=4 MiB, keep 3",
            Some((4u64 << 20, 3)),
        ),
    ] {
        println!("-- {label}");
        let dirs = Dirs::under(&tmp.child(&format!("root{}", limits.is_some())));
        let mut spawn = with_stub(&dirs, "normal");
        if let Some((max, keep)) = limits {
            spawn = spawn
                .env("BAA_CODEXD_EVENT_LOG_MAX_BYTES", max.to_string())
                .env("BAA_CODEXD_EVENT_LOG_KEEP", keep.to_string());
        }
        let d = start_running(spawn);
        println!("  RSS at start: {}", rss_line(d.pid()));
        let sid = create_session(&d, json!({}))["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        let t0 = Instant::now();
        let last_seq = || {
            get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["lastSeq"]
                .as_u64()
                .unwrap()
        };
        while last_seq() < EVENTS {
            let tid = turn(&d, &sid, "burst:20000");
            wait_turn_done(&d, &sid, &tid, Duration::from_secs(120));
        }
        let last = last_seq();
        println!(
            "  {last} events written in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        // Let the request threads exit before reading RSS.
        std::thread::sleep(Duration::from_millis(500));
        println!("  RSS after: {}", rss_line(d.pid()));
        let mut files = 0;
        let mut bytes = 0;
        for e in std::fs::read_dir(&dirs.logs).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("events") {
                files += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        let recent = std::fs::metadata(dirs.state.join("recent-events.json"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "  disk: events log {files} file(s), {:.1} MiB; recent-events.json {:.1} KiB",
            bytes as f64 / 1048576.0,
            recent as f64 / 1024.0
        );

        let client = Client::new();
        let page = |since: u64| {
            let t = Instant::now();
            let r = client.get(&d.url(&format!("/v1/codexd/events?since={since}&limit=100")));
            let ms = ms_since(t);
            let v = r.expect(200);
            assert_eq!(v["data"]["events"][0]["seq"], since + 1, "{}", r.body);
            ms
        };
        let oldest = client.get(&d.url("/v1/codexd/events?limit=1")).json()["data"]["oldestSeq"]
            .as_u64()
            .unwrap();
        let ring_front = last - 1999;
        for (what, since) in [
            ("ring (newest 2000)", last - 150),
            ("disk, oldest kept", oldest),
            (
                "disk, middle of the kept log",
                oldest + (ring_front - oldest) / 2,
            ),
            ("disk, just before the ring", ring_front - 150),
        ] {
            let v: Vec<f64> = (0..SAMPLES).map(|_| page(since)).collect();
            stats(&format!("  GET ?since= 100 events from the {what}"), v);
        }
        // The WebSocket replay from the oldest kept event (disk, then ring, then live).
        let t = Instant::now();
        let mut ws = events_ws(&d, Some(oldest));
        let mut n = 0u64;
        while let Some(e) = ws.next_json(T) {
            n += 1;
            if e["seq"].as_u64() == Some(last) {
                break;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  WS replay of {n} events from seq {}: {:.2}s ({:.0} events/s)",
            oldest + 1,
            secs,
            n as f64 / secs
        );
        // What a `since` older than the ring used to cost: parsing the whole history.
        let t = Instant::now();
        let mut parsed = 0;
        for e in std::fs::read_dir(&dirs.logs).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("events") {
                parsed += baa::common::jsonl::JsonlLog::read_all(&e.path())
                    .map(|v| v.len())
                    .unwrap_or(0);
            }
        }
        println!(
            "  for comparison, parsing every kept event ({parsed}) as the old full scan did: {:.1}ms",
            ms_since(t)
        );
    }
}

fn models_list_and_create_check() {
    const N: usize = 20;
    let home = MockCodexHome::new("bench-models");
    let tmp = TempDir::new("bench-models-dirs");
    let d = start_running(with_mock_codex(&Dirs::under(&tmp.child("root")), &home));
    let time = |url: &str| {
        let t0 = Instant::now();
        get(&d.url(url)).expect(200);
        ms_since(t0)
    };
    let fresh: Vec<f64> = (0..N)
        .map(|_| time("/v1/codexd/models?refresh=true"))
        .collect();
    let cached: Vec<f64> = (0..N).map(|_| time("/v1/codexd/models")).collect();
    stats(
        "GET /v1/codexd/models, model/list asked (refresh=true)",
        fresh,
    );
    stats("GET /v1/codexd/models, from the cache", cached);
    let create = |body: serde_json::Value| {
        let t0 = Instant::now();
        create_session(&d, body);
        ms_since(t0)
    };
    // Interleaved, so both see the same number of loaded threads.
    let (mut plain, mut checked) = (Vec::new(), Vec::new());
    for _ in 0..N {
        plain.push(create(json!({"cwd": home.work})));
        checked.push(create(json!({"cwd": home.work, "model": "gpt-5.5"})));
    }
    stats("session create (thread/start), no model", plain);
    stats(
        "session create with a checked model (cached catalog)",
        checked,
    );
    drop(d);
    // The same creates with the check off: what is left is the app-server's own cost.
    let d = start_running(
        with_mock_codex(&Dirs::under(&tmp.child("off")), &home)
            .env("BAA_CODEXD_MODEL_CHECK", "off"),
    );
    let (mut plain, mut unchecked) = (Vec::new(), Vec::new());
    for _ in 0..N {
        for (body, out) in [
            (json!({"cwd": home.work}), &mut plain),
            (
                json!({"cwd": home.work, "model": "gpt-5.5"}),
                &mut unchecked,
            ),
        ] {
            let t0 = Instant::now();
            create_session(&d, body);
            out.push(ms_since(t0));
        }
    }
    stats("check off: session create, no model", plain);
    stats("check off: session create with a model", unchecked);
}

/// 46 sessions (the count on the node that grew a 6.5 MB registry), each with one turn that
/// adds a 100 KB file (so its record holds a ~100 KB diff) and answers 8 KB of text.
fn registry_size_with_big_turns() {
    const SESSIONS: usize = 46;
    let home = MockCodexHome::new("bench-registry");
    let work = home.work.clone();
    home.mock.set_script(move |call| {
        use support::mock_model::{add_file_patch, Reply};
        let n = call.prompt.trim_start_matches("big turn ").to_string();
        match call.tool_calls_so_far() {
            0 => {
                let line = "x".repeat(99);
                let body = vec![line; 1000].join("\n+");
                Reply::apply_patch(
                    "call_big",
                    add_file_patch(&work.join(format!("big_{n}.txt")), &body),
                )
            }
            _ => Reply::text("answer ".repeat(8 * 1024 / 7)),
        }
    });
    let tmp = TempDir::new("bench-registry-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start_running(with_mock_codex(&dirs, &home));
    let api = CodexApi::codexd(&d);
    let t0 = Instant::now();
    let mut full_bytes = 0usize;
    for i in 0..SESSIONS {
        let s = api.create_session(json!({"cwd": home.work}));
        let sid = s["sessionId"].as_str().unwrap().to_string();
        let tid = api.turn(&sid, &format!("big turn {i}"));
        let done = api.wait_turn_done(&sid, &tid, T);
        full_bytes += serde_json::to_vec_pretty(&done)
            .map(|v| v.len())
            .unwrap_or(0);
    }
    println!(
        "{SESSIONS} sessions with one big turn each in {:?}",
        t0.elapsed()
    );
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let sum = |dir: std::path::PathBuf| -> u64 {
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| size(&e.path())).sum())
            .unwrap_or(0)
    };
    let hot_files = sum(dirs.state.join("sessions/hot"));
    let turn_files = sum(dirs.state.join("sessions"));
    println!(
        "hot session files (sessions/hot/, one written per change of its session): {hot_files} bytes in all (the same sessions with their full last-turn records: {full_bytes} bytes); per-session turn files: {turn_files} bytes"
    );
    // The list serves summaries; one session its full last-turn record and recent events.
    let sid = api.create_session(json!({"cwd": home.work}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut reads = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        get(&d.url("/v1/codexd/sessions")).expect(200);
        reads.push(ms_since(t));
    }
    stats(
        "GET /v1/codexd/sessions with 47 sessions (summaries)",
        reads,
    );
    let mut one = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        get(&d.url(&format!("/v1/codexd/sessions/{sid}"))).expect(200);
        one.push(ms_since(t));
    }
    stats("GET /v1/codexd/sessions/:id", one);
}
