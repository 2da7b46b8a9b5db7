//! Notification numbers, printed, never asserted (`scripts/bench/notify.sh`, or
//! `cargo bench --bench notify`). codexd with its stub child; a loopback webhook receiver
//! that answers after a fixed delay.
//!
//! - dispatch latency (a task's `created_at` → `started_at`, one task at a time) with
//!   notifications off, and on with a receiver that takes 200 ms per delivery: emitting
//!   must not slow dispatch down;
//! - delivery throughput: 100 tasks queued at once, each announcing its outcome, with
//!   notifications off and to a receiver answering in 0, 50 and 200 ms: the tasks' total
//!   time and the scheduler's dispatch gap (one task finished → the next started) next to
//!   the deliveries per second (first to last delivery; one try at a time, the outbox
//!   written after each) and how long the backlog took to drain after the last task.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::http::{Reply, Response, Server, ServerConfig, ServerHandle};
use baa::common::time::ms_from_rfc3339;

use support::bench::{run, stats};
use support::codexd::{start_running, with_stub, Dirs};
use support::daemon::{wait_for, Daemon};
use support::tasks::{self, TaskConductor};
use support::tmp::TempDir;

const T: Duration = Duration::from_secs(120);

fn main() {
    run(&[
        ("notify_dispatch_latency", notify_dispatch_latency),
        ("notify_throughput", notify_throughput),
    ]);
}

type Times = Arc<std::sync::Mutex<Vec<Instant>>>;

/// A receiver answering 200 after `delay`; counts what it got and when.
fn receiver(delay: Duration) -> Receiver {
    let got = Arc::new(AtomicUsize::new(0));
    let times: Times = Arc::default();
    let (g, tm) = (got.clone(), times.clone());
    let h = Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        Arc::new(move |_: &baa::common::http::Request| {
            std::thread::sleep(delay);
            tm.lock().unwrap().push(Instant::now());
            g.fetch_add(1, Ordering::SeqCst);
            Reply::Http(Response::text(200, "ok\n"))
        }),
    )
    .expect("bind receiver");
    (h, got, times)
}

type Receiver = (ServerHandle, Arc<AtomicUsize>, Times);

/// codexd with its stub child and a conductor on it; with `delay`, a receiver answering
/// after it and the conductor notifying it. The dir and daemons live as long as the tuple.
fn stack(tag: &str, delay: Option<u64>) -> (TempDir, Daemon, Option<Receiver>, TaskConductor) {
    let dir = TempDir::new(tag);
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let rx = delay.map(|ms| receiver(Duration::from_millis(ms)));
    let hook = rx
        .as_ref()
        .map(|(h, _, _)| format!("http://{}/hook", h.local_addr()));
    let c = conductor(&dir, &codexd.base, hook.as_deref());
    (dir, codexd, rx, c)
}

fn conductor(dir: &TempDir, codexd: &str, hook: Option<&str>) -> TaskConductor {
    let mut s = tasks::spawn(dir, codexd, "mini-main", "primary");
    if let Some(h) = hook {
        s = s
            .env("BAA_NOTIFY_URLS", h)
            .env("BAA_NOTIFY_SECRET", "bench");
    }
    TaskConductor { d: s.start() }
}

fn started_after_created(t: &Value) -> f64 {
    let at = |k: &str| ms_from_rfc3339(t["task"][k].as_str().unwrap_or("")).unwrap_or(0) as f64;
    at("started_at") - at("created_at")
}

fn notify_dispatch_latency() {
    const N: usize = 30;
    for (label, delay) in [("off", None), ("on, receiver 200 ms", Some(200))] {
        let (_dir, _codexd, _rx, c) = stack("bench-notify-lat", delay);
        let mut v = Vec::new();
        for i in 0..N {
            let id = c.create(json!({"title": format!("lat {i}"), "prompt": "hello"}));
            v.push(started_after_created(&c.wait_status(&id, "succeeded", T)));
        }
        stats(&format!("dispatch latency, notifications {label} (ms)"), v);
    }
}

/// The gaps between one task's `finished_at` and the next one's `started_at` (ms), tasks in
/// creation order: the scheduler's dispatch latency inside a full queue.
fn dispatch_gaps(tasks: &[Value]) -> Vec<f64> {
    let at = |t: &Value, k: &str| {
        ms_from_rfc3339(t["task"][k].as_str().unwrap_or("")).unwrap_or(0) as f64
    };
    tasks
        .windows(2)
        .map(|w| at(&w[1], "started_at") - at(&w[0], "finished_at"))
        .collect()
}

fn notify_throughput() {
    const N: usize = 100;
    for delay in [None, Some(0u64), Some(50), Some(200)] {
        let (_dir, _codexd, rx, c) = stack("bench-notify-tput", delay);
        let label = delay.map_or("notifications off".to_string(), |ms| {
            format!("receiver {ms} ms")
        });
        let t0 = Instant::now();
        let ids: Vec<String> = (0..N)
            .map(|i| c.create(json!({"title": format!("tp {i}"), "prompt": "hello"})))
            .collect();
        let done: Vec<Value> = ids
            .iter()
            .map(|id| c.wait_status(id, "succeeded", T))
            .collect();
        let tasks_s = t0.elapsed().as_secs_f64();
        println!("{label}: {N} tasks (queued at once) done in {tasks_s:.2} s");
        stats(
            &format!("  {label}: dispatch gap, finished → next started (ms)"),
            dispatch_gaps(&done),
        );
        let Some((_, got, times)) = rx else { continue };
        wait_for(T, || (got.load(Ordering::SeqCst) >= N).then_some(())).expect("all delivered");
        let times = times.lock().unwrap().clone();
        let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
        println!(
            "  {label}: {N} deliveries, first → last {span:.2} s = {:.1}/s; the last {:.2} s after the last task",
            (N - 1) as f64 / span,
            times.last().unwrap().duration_since(t0).as_secs_f64() - tasks_s
        );
    }
}
