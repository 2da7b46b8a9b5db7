//! Worker-mode numbers, printed, never asserted (`scripts/bench/tasks.sh`, or
//! `cargo bench --bench tasks`). Real codex app-server on the loopback mock model.
//!
//! - dispatch latency: from just before `POST /v1/tasks` to the mock model receiving that
//!   task's turn, one task at a time; next to it the same for a turn sent straight to
//!   codexd (new session + turn, which is what a one-step task does);
//! - throughput: 200 one-step tasks through the scheduler (all queued at once, the default
//!   one run at a time) vs the same 200 turns sent straight to codexd one after another
//!   (new session each), same run, interleaved in blocks of 50 so drift hits both; the
//!   ratio of the totals is the scheduler's overhead (aim ≤ 1.1×);
//! - where a task's time goes: the conductor logs each dispatch's and each run's timings
//!   (`RUST_LOG=…,run_timings=debug`: scheduler wake-up, the dispatch gate's codexd status
//!   read, the dispatch writes, thread start, session, event-stream set-up, idle check,
//!   send, turn, finish, and the durable writes among them); printed as means next to the
//!   same steps of the direct path (session create, turn POST) and `POST /v1/tasks` itself;
//! - a conductor started on 10 000 stored finished tasks: spawn to first `/healthz` 200,
//!   RSS after start and after a list and a summary (aim < 300 ms, < 16 MiB), next to an
//!   empty store.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::bench::{ms_since, run, stats};
use support::codex::MockCodexHome;
use support::codexd::{start_running, with_mock_codex, CodexApi, Dirs};
use support::conductor::{self, TOKEN};
use support::daemon::wait_for;
use support::http::Client;
use support::mock_model::keywords;
use support::tasks;
use support::tmp::TempDir;

const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(2);

fn main() {
    run(&[
        (
            "tasks_dispatch_and_throughput",
            tasks_dispatch_and_throughput,
        ),
        ("tasks_start_with_10k_stored", tasks_start_with_10k_stored),
    ]);
}

/// When the mock model first saw each `mark-…` word in a turn's prompt.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn mark_of(prompt: &str) -> Option<String> {
    prompt
        .split_whitespace()
        .find(|w| w.starts_with("mark-"))
        .map(str::to_string)
}

fn seen_at(seen: &Seen, mark: &str) -> Instant {
    wait_for(T, || seen.lock().unwrap().get(mark).copied())
        .unwrap_or_else(|| panic!("the model never received {mark}"))
}

fn tasks_dispatch_and_throughput() {
    const N_DISPATCH: usize = 30;
    const N: usize = 200;
    const BLOCK: usize = 50;
    let home = MockCodexHome::new("bench-tasks");
    let seen: Seen = Arc::default();
    let s = seen.clone();
    home.mock.set_script(move |call| {
        if call.tool_output().is_none() {
            if let Some(m) = mark_of(&call.prompt) {
                s.lock().unwrap().entry(m).or_insert_with(Instant::now);
            }
        }
        keywords(call)
    });
    let tmp = TempDir::new("bench-tasks-dirs");
    let cx = start_running(with_mock_codex(&Dirs::under(&tmp.child("cx")), &home));
    let c = tasks::TaskConductor {
        d: tasks::spawn(&tmp, &cx.base, "mini-main", "primary")
            .env("RUST_LOG", "info,run_timings=debug")
            .start(),
    };
    let direct = CodexApi::codexd(&cx).polling(POLL);
    let client = Client::new();
    let work = home.work.display().to_string();

    let post_ms: Mutex<Vec<f64>> = Mutex::default();
    let create = |prompt: &str| -> String {
        let t0 = Instant::now();
        let r = client.post(
            &c.url("/v1/tasks"),
            &json!({"title": "bench", "prompt": prompt, "cwd": work}),
        );
        post_ms.lock().unwrap().push(ms_since(t0));
        r.expect(201)["data"]["task"]["task_id"]
            .as_str()
            .expect("task_id")
            .to_string()
    };
    let succeeded = || -> u64 {
        client.get(&c.url("/v1/tasks/summary")).expect(200)["data"]["succeeded"]
            .as_u64()
            .unwrap_or(0)
    };
    let wait_succeeded = |n: u64| {
        wait_for(T * 5, || (succeeded() >= n).then_some(()))
            .unwrap_or_else(|| panic!("never {n} tasks succeeded\n{}", c.d.log()))
    };
    let direct_steps: Mutex<(Vec<f64>, Vec<f64>)> = Mutex::default();
    let direct_turn = |prompt: &str| {
        let t0 = Instant::now();
        let sid = direct.create_session(json!({"cwd": work}))["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let t1 = Instant::now();
        let tid = direct.turn(&sid, prompt);
        {
            let mut d = direct_steps.lock().unwrap();
            d.0.push(t1.duration_since(t0).as_secs_f64() * 1000.0);
            d.1.push(ms_since(t1));
        }
        let s = direct.wait_turn_done(&sid, &tid, T);
        assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    };

    // Warm-up: the first thread and model connection on each side.
    create("mark-warm-task hello");
    wait_succeeded(1);
    direct_turn("mark-warm-direct hello");
    let mut done = 1;
    post_ms.lock().unwrap().clear();
    *direct_steps.lock().unwrap() = Default::default();
    let log_mark = c.d.log().len();

    let (mut via_ms, mut direct_ms) = (Vec::new(), Vec::new());
    for i in 0..N_DISPATCH {
        let mark = format!("mark-dt{i}");
        let t0 = Instant::now();
        create(&format!("{mark} hello"));
        via_ms.push(seen_at(&seen, &mark).duration_since(t0).as_secs_f64() * 1000.0);
        done += 1;
        wait_succeeded(done);

        let mark = format!("mark-dd{i}");
        let t0 = Instant::now();
        direct_turn(&format!("{mark} hello"));
        direct_ms.push(seen_at(&seen, &mark).duration_since(t0).as_secs_f64() * 1000.0);
    }
    stats(
        "dispatch: POST /v1/tasks → the model receives the turn",
        via_ms,
    );
    stats(
        "dispatch: POST session + turn on codexd → the model receives the turn",
        direct_ms,
    );
    where_time_goes(
        "dispatch sample",
        c.d.log().get(log_mark..).unwrap_or(""),
        &std::mem::take(&mut *post_ms.lock().unwrap()),
        &std::mem::take(&mut *direct_steps.lock().unwrap()),
    );
    let log_mark = c.d.log().len();

    let (mut via_total, mut direct_total) = (0.0, 0.0);
    for block in 0..N / BLOCK {
        let t0 = Instant::now();
        for i in 0..BLOCK {
            create(&format!("mark-tp{block}-{i} hello"));
        }
        done += BLOCK as u64;
        wait_succeeded(done);
        via_total += ms_since(t0);

        let t0 = Instant::now();
        for i in 0..BLOCK {
            direct_turn(&format!("mark-dp{block}-{i} hello"));
        }
        direct_total += ms_since(t0);
    }
    println!(
        "throughput: {N} one-step tasks through the scheduler {:.0} ms ({:.1} ms/task); {N} turns straight to codexd {:.0} ms ({:.1} ms/turn); ratio {:.3}x (aim <= 1.1x)",
        via_total,
        via_total / N as f64,
        direct_total,
        direct_total / N as f64,
        via_total / direct_total
    );
    where_time_goes(
        "throughput sample",
        c.d.log().get(log_mark..).unwrap_or(""),
        &std::mem::take(&mut *post_ms.lock().unwrap()),
        &std::mem::take(&mut *direct_steps.lock().unwrap()),
    );
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Means of the `key=value` numbers of the conductor's `run_timings` lines that start with
/// `kind` (`dispatch` or `task`).
fn timing_means(log: &str, kind: &str) -> (usize, HashMap<String, f64>) {
    let mut sums: HashMap<String, (f64, usize)> = HashMap::new();
    let mut n = 0;
    for line in log.lines() {
        let Some(rest) = line.split_once("run_timings] ").map(|(_, r)| r) else {
            continue;
        };
        if !rest.starts_with(kind) {
            continue;
        }
        n += 1;
        for (k, v) in rest.split_whitespace().filter_map(|kv| kv.split_once('=')) {
            if let Ok(x) = v.parse::<f64>() {
                let e = sums.entry(k.to_string()).or_default();
                e.0 += x;
                e.1 += 1;
            }
        }
    }
    let means = sums
        .into_iter()
        .map(|(k, (s, c))| (k, s / c as f64))
        .collect();
    (n, means)
}

/// Prints where a task's time goes, next to the direct path's own steps.
fn where_time_goes(label: &str, log: &str, post_ms: &[f64], direct: &(Vec<f64>, Vec<f64>)) {
    let (nd, d) = timing_means(log, "dispatch ");
    let (nr, r) = timing_means(log, "task=");
    let g = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    println!(
        "where the time goes ({label}; means in ms over {nd} dispatches, {nr} runs; direct over {} turns):",
        direct.0.len()
    );
    println!(
        "  before the run: POST /v1/tasks {:.1}; scheduler wake-up {:.1}; dispatch gate (codexd status read) {:.1}; dispatch write (the task) {:.1}; run thread start {:.1}",
        mean(post_ms),
        g(&d, "wake_ms"),
        g(&d, "gate_ms"),
        g(&d, "dispatch_ms"),
        g(&r, "thread_start_ms"),
    );
    println!(
        "  the run: session {:.1} (direct {:.1}); event-stream set-up {:.1}; idle check {:.1}; send: intent write + POST turn {:.1} (direct POST turn {:.1}); 202 → turn end seen {:.1}; finish {:.1}",
        g(&r, "session_ms"),
        mean(&direct.0),
        g(&r, "stream_ms"),
        g(&r, "idle_ms"),
        g(&r, "send_ms"),
        mean(&direct.1),
        g(&r, "turn_ms"),
        g(&r, "finish_ms"),
    );
    println!(
        "  durable writes in the run: {:.1} per run, {:.1} ms in all",
        g(&r, "writes"),
        g(&r, "write_ms"),
    );
}

/// Writes `n` finished one-step tasks (and their runs) as the store keeps them.
fn write_tasks(state: &Path, n: usize) {
    let (tasks_dir, runs_dir) = (state.join("tasks"), state.join("runs"));
    std::fs::create_dir_all(&tasks_dir).expect("tasks dir");
    std::fs::create_dir_all(&runs_dir).expect("runs dir");
    for i in 0..n {
        let (id, run_id) = (format!("task_bench{i:08}"), format!("run_bench{i:08}"));
        let at = format!(
            "2026-01-{:02}T{:02}:{:02}:{:02}.000Z",
            1 + i / 3600 % 28,
            i / 60 % 24,
            i % 60,
            i % 60
        );
        let task = json!({
            "task_id": id, "title": format!("stored task {i}"), "status": "succeeded",
            "kind": "codex",
            "input": {"prompt": "hello", "steps": [{"prompt": "hello"}], "cwd": null,
                      "timeout_s": 600, "max_attempts": 3, "priority": 0},
            "created_at": at, "updated_at": at, "started_at": at, "finished_at": at,
            "current_run_id": run_id, "priority": 0, "max_attempts": 3,
            "steps_total": 1, "steps_done": 1, "final_message": "mock reply: hello",
            "runs": [{"run_id": run_id, "attempt": 1, "status": "succeeded", "started_at": at}],
        });
        let run: Value = json!({
            "run_id": run_id, "task_id": id, "status": "succeeded", "attempt": 1,
            "worker": "codexd", "started_at": at, "finished_at": at,
            "steps": [{"index": 0, "status": "completed", "final_message": "mock reply: hello"}],
        });
        std::fs::write(tasks_dir.join(format!("{id}.json")), task.to_string()).expect("task");
        std::fs::write(runs_dir.join(format!("{run_id}.json")), run.to_string()).expect("run");
    }
}

/// VmRSS in KiB: /proc on Linux, `ps` elsewhere.
fn rss_kib(pid: u32) -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        return s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok());
    }
    let out = Command::new("ps")
        .args(["-o", "rss=", "-p", &pid.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn tasks_start_with_10k_stored() {
    for n in [0usize, 10_000] {
        let dir = TempDir::new("bench-tasks-10k");
        write_tasks(&dir.join("state"), n);
        let t0 = Instant::now();
        let c = conductor::spawn(&dir, "mini-main", "primary")
            .env("BAA_SHARED_TOKEN", TOKEN)
            .env("BAA_CONDUCTOR_TASK_RETENTION", "20000")
            .start();
        let client = Client::new();
        wait_for(T, || {
            (client.get(&c.url("/healthz")).status == 200).then_some(())
        })
        .expect("healthz");
        let start_ms = ms_since(t0);
        let rss_start = rss_kib(c.pid());
        let t1 = Instant::now();
        let listed = client.get(&c.url("/v1/tasks?limit=20")).expect(200);
        let list_ms = ms_since(t1);
        let t1 = Instant::now();
        let summary = client.get(&c.url("/v1/tasks/summary")).expect(200);
        let summary_ms = ms_since(t1);
        assert_eq!(
            summary["data"]["succeeded"].as_u64(),
            Some(n as u64),
            "{summary}"
        );
        assert_eq!(listed["data"]["count"].as_u64(), Some(n.min(20) as u64));
        println!(
            "{n} stored tasks: spawn → /healthz {start_ms:.0} ms (aim < 300 ms); RSS {} KiB after start, {} KiB after list+summary (aim < 16384 KiB); GET /v1/tasks?limit=20 {list_ms:.1} ms, GET /v1/tasks/summary {summary_ms:.1} ms",
            rss_start.map_or("?".into(), |v| v.to_string()),
            rss_kib(c.pid()).map_or("?".into(), |v| v.to_string()),
        );
    }
}
