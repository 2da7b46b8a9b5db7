//! codexd with many retained sessions, printed, never asserted
//! (`scripts/bench/codexd-sessions.sh`, or `cargo bench --bench codexd_sessions [filter]`),
//! against the built-in stub child:
//!
//! - `rss_with_2000_sessions`: codexd's RSS (`VmRSS` from `/proc/<pid>/status`) at 0, 500,
//!   1,000 and 2,000 sessions, each with one finished turn that ran a command and left a
//!   64 KiB diff (the stub's `diff:` turn), then after listing them all and after a
//!   restart that finds them on disk.
//! - `write_cost_per_turn_at_10_and_2000_sessions`: what one turn costs codexd in writes
//!   with 10 and with 2,000 sessions: bytes and write calls per turn (`wchar`, `syscw` from
//!   `/proc/<pid>/io`, which include the event log), the session files under
//!   `sessions/hot/` written during the turns, and the turn's time from the 202 to done.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use support::bench::{ms_since, run, stats};
use support::codexd::*;
use support::daemon::Daemon;
use support::http::Client;
use support::tmp::TempDir;

const T: Duration = Duration::from_secs(60);
/// Each session's turn: a command, a file change and a diff of this many bytes.
const DIFF_BYTES: usize = 64 * 1024;

fn main() {
    run(&[
        ("rss_with_2000_sessions", rss_with_2000_sessions),
        (
            "write_cost_per_turn_at_10_and_2000_sessions",
            write_cost_per_turn_at_10_and_2000_sessions,
        ),
    ]);
}

fn proc_field(pid: u32, file: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn rss_kib(d: &Daemon) -> u64 {
    proc_field(d.pid(), "status", "VmRSS")
}

/// Creates `n` sessions from 4 clients, each with one finished `diff:` turn.
fn add_sessions(d: &Daemon, n: usize) {
    let left = Arc::new(AtomicUsize::new(n));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let left = left.clone();
            scope.spawn(move || {
                let api = CodexApi::codexd(d).polling(Duration::from_millis(5));
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                    .is_ok()
                {
                    let s = api.create_session(json!({"cwd": "/tmp", "metadata": {"bench": true}}));
                    let sid = s["sessionId"].as_str().unwrap().to_string();
                    let tid = api.turn(&sid, &format!("diff:{DIFF_BYTES}"));
                    api.wait_turn_done(&sid, &tid, T);
                }
            });
        }
    });
}

fn stub_codexd(dirs: &Dirs) -> Daemon {
    start_running(with_stub(dirs, "normal"))
}

fn rss_with_2000_sessions() {
    let tmp = TempDir::new("bench-sessions-rss");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = stub_codexd(&dirs);
    let settle = || std::thread::sleep(Duration::from_millis(300));
    settle();
    println!("0 sessions: VmRSS {} KiB", rss_kib(&d));
    let t0 = Instant::now();
    let mut have = 0;
    for target in [500, 1000, 2000] {
        add_sessions(&d, target - have);
        have = target;
        settle();
        println!(
            "{target} sessions (one {DIFF_BYTES}-byte-diff turn each): VmRSS {} KiB",
            rss_kib(&d)
        );
    }
    println!("created in {:?}", t0.elapsed());
    // codexd trims its heap a second after a large listing.
    let client = Client::new();
    let after_tick = || {
        std::thread::sleep(Duration::from_millis(1500));
        rss_kib(&d)
    };
    for round in 1..=2 {
        for path in ["/v1/codexd/sessions", "/v1/codexd/status"] {
            let t = Instant::now();
            let body = client.get(&d.url(path)).expect(200);
            let took = ms_since(t);
            let data = &body["data"];
            let listed = data["sessions"]
                .as_array()
                .or(data["snapshot"]["sessionRegistry"]["sessions"].as_array())
                .map_or(0, Vec::len);
            let right_after = rss_kib(&d);
            println!(
                "GET {path} #{round}: {listed} sessions in {took:.1} ms; VmRSS right after {right_after} KiB, 1.5 s later {} KiB",
                after_tick()
            );
        }
    }
    d.terminate(T);
    let t = Instant::now();
    let d = stub_codexd(&dirs);
    let ready = ms_since(t);
    settle();
    println!(
        "restarted with 2000 sessions on disk: child running after {ready:.0} ms, VmRSS {} KiB",
        rss_kib(&d)
    );
}

/// Bytes in the files under `dir` modified since `since`.
fn written_since(dir: &Path, since: SystemTime) -> (u64, usize) {
    let mut bytes = 0;
    let mut files = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() && m.modified().is_ok_and(|t| t >= since) {
            bytes += m.len();
            files += 1;
        }
    }
    (bytes, files)
}

fn write_cost_per_turn_at_10_and_2000_sessions() {
    const TURNS: usize = 50;
    let tmp = TempDir::new("bench-sessions-writes");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = stub_codexd(&dirs);
    let mut have = 0;
    for count in [10, 2000] {
        add_sessions(&d, count - have);
        have = count;
        std::thread::sleep(Duration::from_millis(300));
        let api = CodexApi::codexd(&d).polling(Duration::from_millis(2));
        let sid = api.create_session(json!({"cwd": "/tmp"}))["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        have += 1;
        let since = SystemTime::now();
        let (wchar, syscw) = (
            proc_field(d.pid(), "io", "wchar"),
            proc_field(d.pid(), "io", "syscw"),
        );
        let mut times = Vec::new();
        for i in 0..TURNS {
            let t = Instant::now();
            let tid = api.turn(&sid, &format!("turn {i}"));
            api.wait_turn_done(&sid, &tid, T);
            times.push(ms_since(t));
        }
        let wchar = proc_field(d.pid(), "io", "wchar") - wchar;
        let syscw = proc_field(d.pid(), "io", "syscw") - syscw;
        let (hot_bytes, hot_files) = written_since(&dirs.state.join("sessions/hot"), since);
        let legacy =
            std::fs::metadata(dirs.state.join("session-registry.json")).map_or(0, |m| m.len());
        println!(
            "{count} sessions: per turn {} bytes written by codexd in {} write calls (events included); session files written during the turns: {hot_files} ({hot_bytes} bytes now); session-registry.json: {legacy} bytes",
            wchar / TURNS as u64,
            syscw / TURNS as u64,
        );
        stats(&format!("{count} sessions: turn, 202 to done"), times);
    }
}
