//! How long a codexd restart interrupts Codex work, printed, never asserted
//! (`scripts/bench/codexd-restart.sh`, or `cargo bench --bench codexd_restart`), against the
//! real pinned app-server on the offline mock model, 10 restarts each:
//!
//! - unix mode (re-attach): SIGKILL codexd while a long turn streams, start it again, and
//!   time until that same turn's deltas reach the new codexd's event stream (the app-server
//!   never stopped; codexd attaches and resumes the thread);
//! - stdio mode (respawn), for comparison: SIGKILL codexd (its app-server exits on stdin
//!   EOF and the turn is lost), start it again, and time until a new turn on the same
//!   session streams (a fresh app-server, `initialize`, `thread/resume`, `turn/start`).
//!
//! Each also prints the time until the child is `running` again (attach vs spawn).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;

use support::bench::{ms_since, run, stats};
use support::codex::MockCodexHome;
use support::codexd::*;
use support::daemon::Daemon;
use support::mock_model::{keywords, Reply};
use support::tmp::TempDir;

const T: Duration = Duration::from_secs(60);
const RESTARTS: usize = 10;

fn main() {
    run(&[
        (
            "reattach_after_codexd_restart",
            reattach_after_codexd_restart,
        ),
        ("respawn_after_codexd_restart", respawn_after_codexd_restart),
    ]);
}

/// A prompt with `endless` streams a delta every 10 ms for about a minute.
fn endless_model(home: &MockCodexHome) {
    home.mock.set_script(|call| {
        if call.prompt.contains("endless") {
            let chunks = (0..6000).map(|i| format!("t{i} ")).collect();
            Reply::chunks(chunks, Duration::from_millis(10))
        } else {
            keywords(call)
        }
    });
}

/// Waits for the next delta of `turn_id` (any, when None) on a fresh live event stream.
fn first_delta(d: &Daemon, turn_id: Option<&str>) {
    let mut ws = events_ws(d, None);
    read_until(&mut ws, T, "a delta", |e| {
        is_type(e, "item/agentMessage/delta") && turn_id.is_none_or(|t| e["detail"]["turnId"] == t)
    });
}

fn reattach_after_codexd_restart() {
    let home = MockCodexHome::new("bench-reattach");
    endless_model(&home);
    let tmp = TempDir::new("bench-reattach-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let _left = LeftChild::of(&dirs);
    let mut d = start_running(with_mock_codex_unix(&dirs, &home));
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "endless stream please");
    first_delta(&d, Some(&tid));
    let (mut ready, mut streaming) = (Vec::new(), Vec::new());
    for _ in 0..RESTARTS {
        let t0 = Instant::now();
        d.kill9();
        d = with_mock_codex_unix(&dirs, &home).start();
        wait_child(&d, T, "attached", |c| c["attached"] == true);
        ready.push(ms_since(t0));
        first_delta(&d, Some(&tid));
        streaming.push(ms_since(t0));
    }
    stats(
        "unix mode: codexd SIGKILL → child attached (running)",
        ready,
    );
    stats(
        "unix mode: codexd SIGKILL → the same turn streaming again (re-attach)",
        streaming,
    );
}

fn respawn_after_codexd_restart() {
    let home = MockCodexHome::new("bench-respawn");
    endless_model(&home);
    let tmp = TempDir::new("bench-respawn-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start_running(with_mock_codex(&dirs, &home));
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "endless stream please");
    first_delta(&d, Some(&tid));
    let (mut ready, mut streaming) = (Vec::new(), Vec::new());
    for _ in 0..RESTARTS {
        let old = child_pid(&d);
        let t0 = Instant::now();
        d.kill9();
        d = with_mock_codex(&dirs, &home).start();
        wait_child(&d, T, "respawned", |c| {
            c["pid"].as_u64().is_some_and(|p| p != u64::from(old))
        });
        ready.push(ms_since(t0));
        // The old turn died with its app-server: a new one has to be started.
        let tid = turn(&d, &sid, "endless stream again");
        first_delta(&d, Some(&tid));
        streaming.push(ms_since(t0));
    }
    stats(
        "stdio mode: codexd SIGKILL → new child running (respawn)",
        ready,
    );
    stats(
        "stdio mode: codexd SIGKILL → a new turn streaming (respawn + resume + turn/start)",
        streaming,
    );
}
