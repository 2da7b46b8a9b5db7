//! Conductor memory over many tasks (`scripts/bench/conductor-soak.sh`, or
//! `cargo bench --bench conductor_soak`): a release conductor on a private port and root,
//! pointed at codexd with its built-in stub child, takes `BAA_SOAK_TASKS` one-step tasks
//! (default 10 000), at most `BAA_SOAK_WINDOW` (default 64) queued or running at a time and
//! `BAA_SOAK_MAX_RUNNING` (default 4) run at once, while `BAA_SOAK_READERS` (default 4)
//! threads read as the CLI, the status page and the Firefox bridge do (task list, a task
//! with its runs, its log), each request on a new connection (a new conductor thread);
//! every `BAA_SOAK_EVERY` (default 1 000) finished tasks it prints the conductor's VmRSS,
//! VmHWM and thread count. Numbers, never a pass or a fail.
//!
//! `MALLOC_ARENA_MAX` in the bench's environment reaches the conductor, which then leaves
//! glibc's arena count alone (`common::malloc`): `MALLOC_ARENA_MAX=64` shows the growth the
//! start-up cap prevents, on the same binary.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use support::bench::run;
use support::codexd::{start_running, with_stub, Dirs};
use support::daemon::wait_for;
use support::http::{get, Client};
use support::tasks;
use support::tmp::TempDir;

fn main() {
    run(&[("conductor_soak", conductor_soak)]);
}

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// `VmRSS`, `VmHWM` (KiB) and `Threads` of `pid`, from /proc (Linux), else RSS from `ps`.
fn mem(pid: u32) -> (Option<u64>, Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        let rss = std::process::Command::new("ps")
            .args(["-o", "rss=", "-p", &pid.to_string()])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());
        return (rss, None, None);
    };
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"), field("Threads:"))
}

fn show(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn conductor_soak() {
    let total = setting("BAA_SOAK_TASKS", 10_000);
    let every = setting("BAA_SOAK_EVERY", 1_000).max(1);
    let window = setting("BAA_SOAK_WINDOW", 64).max(1);
    let max_running = setting("BAA_SOAK_MAX_RUNNING", 4).clamp(1, 64);
    let readers = setting("BAA_SOAK_READERS", 4);
    let tmp = TempDir::new("bench-soak");
    // Sessions leave codexd's hot set a second after their turn, so codexd stays small
    // and fast over 10 000 sessions; only the conductor is measured.
    let codexd = start_running(
        with_stub(&Dirs::under(&tmp.child("cx")), "normal")
            .env("BAA_CODEXD_SESSION_RETENTION_MS", "1000"),
    );
    let c = tasks::spawn(&tmp, &codexd.base, "mini-main", "primary")
        .env("BAA_CONDUCTOR_MAX_RUNNING_TASKS", max_running.to_string())
        .env("RUST_LOG", "warn")
        .start();
    let pid = c.pid();
    println!(
        "conductor pid {pid}: {total} one-step tasks, up to {window} queued, {max_running} running at once, {readers} readers; MALLOC_ARENA_MAX={}",
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    let client = Client::new();
    let summary_url = c.url("/v1/tasks/summary");
    // Created minus still queued or running: finished ones past the task retention are
    // pruned from the counts.
    let finished = |created: u64| -> u64 {
        let v = client.get(&summary_url).expect(200);
        let open: u64 = ["queued", "running"]
            .iter()
            .map(|k| v["data"][k].as_u64().unwrap_or(0))
            .sum();
        created.saturating_sub(open)
    };
    let print_row = |done: u64, t0: Instant| {
        let (rss, hwm, threads) = mem(pid);
        println!(
            "tasks {done:>6}  {:>7.1} s  VmRSS {:>7} KiB  VmHWM {:>7} KiB  threads {:>3}",
            t0.elapsed().as_secs_f64(),
            show(rss),
            show(hwm),
            show(threads)
        );
    };

    // The newest task id, for the readers.
    let newest = Arc::new(std::sync::Mutex::new(String::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader_threads: Vec<_> = (0..readers)
        .map(|_| {
            let (newest, stop, reads) = (newest.clone(), stop.clone(), reads.clone());
            let base = c.url("");
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = newest.lock().unwrap().clone();
                    get(&format!("{base}/v1/tasks?limit=100")).expect(200);
                    if !id.is_empty() {
                        get(&format!("{base}/v1/tasks/{id}"));
                        get(&format!("{base}/v1/tasks/{id}/logs?limit=50"));
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let t0 = Instant::now();
    print_row(0, t0);
    let (mut created, mut done, mut next_print) = (0u64, 0u64, every);
    while done < total {
        while created < total && created - done < window {
            let r = client.post(
                &c.url("/v1/tasks"),
                &json!({"title": "soak", "prompt": format!("soak {created}")}),
            );
            let v = r.expect(201);
            if let Some(id) = v["data"]["task"]["task_id"].as_str() {
                *newest.lock().unwrap() = id.to_string();
            }
            created += 1;
        }
        // Wait for progress (bounded: a stuck conductor ends the bench with its log).
        let before = done;
        done = wait_for(Duration::from_secs(60), || {
            let n = finished(created);
            (n > before || n >= total).then_some(n)
        })
        .unwrap_or_else(|| panic!("no task finished in 60 s at {before}\n{}", c.log()));
        while done >= next_print {
            print_row(next_print, t0);
            next_print += every;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in reader_threads {
        let _ = t.join();
    }
    let failed = client.get(&summary_url).expect(200)["data"]["failed"].clone();
    println!(
        "done: {total} tasks in {:.1} s ({failed} failed, {} reader rounds)",
        t0.elapsed().as_secs_f64(),
        reads.load(Ordering::Relaxed)
    );
}
