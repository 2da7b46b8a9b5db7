//! Notification numbers, printed, never asserted (`scripts/bench/notify.sh`, or
//! `cargo bench --bench notify`). codexd with its stub child; a loopback webhook receiver
//! that answers after a fixed delay.
//!
//! - dispatch latency (a task's `created_at` → `started_at`, one task at a time) with
//!   notifications off, and on with a receiver that takes 200 ms per delivery: emitting
//!   must not slow dispatch down;
//! - delivery throughput: N tasks queued at once, each announcing its outcome, to a
//!   receiver answering in 0 ms and in 50 ms: deliveries per second from the first task's
//!   creation to the last delivery recorded on disk (the outbox is written after each).

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
use support::daemon::wait_for;
use support::http::get;
use support::tasks::{self, TaskConductor};
use support::tmp::TempDir;

const T: Duration = Duration::from_secs(120);

fn main() {
    run(&[
        ("notify_dispatch_latency", notify_dispatch_latency),
        ("notify_throughput", notify_throughput),
    ]);
}

/// A receiver answering 200 after `delay`; counts what it got.
fn receiver(delay: Duration) -> (ServerHandle, Arc<AtomicUsize>) {
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let h = Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        Arc::new(move |_: &baa::common::http::Request| {
            std::thread::sleep(delay);
            g.fetch_add(1, Ordering::SeqCst);
            Reply::Http(Response::text(200, "ok\n"))
        }),
    )
    .expect("bind receiver");
    (h, got)
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
        let dir = TempDir::new("bench-notify-lat");
        let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
        let rx = delay.map(|ms| receiver(Duration::from_millis(ms)));
        let hook = rx
            .as_ref()
            .map(|(h, _)| format!("http://{}/hook", h.local_addr()));
        let c = conductor(&dir, &codexd.base, hook.as_deref());
        let mut v = Vec::new();
        for i in 0..N {
            let id = c.create(json!({"title": format!("lat {i}"), "prompt": "hello"}));
            v.push(started_after_created(&c.wait_status(&id, "succeeded", T)));
        }
        stats(&format!("dispatch latency, notifications {label} (ms)"), v);
    }
}

fn notify_throughput() {
    const N: usize = 100;
    for delay in [0u64, 50] {
        let dir = TempDir::new("bench-notify-tput");
        let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
        let (h, got) = receiver(Duration::from_millis(delay));
        let c = conductor(
            &dir,
            &codexd.base,
            Some(&format!("http://{}/hook", h.local_addr())),
        );
        let t0 = Instant::now();
        let ids: Vec<String> = (0..N)
            .map(|i| c.create(json!({"title": format!("tp {i}"), "prompt": "hello"})))
            .collect();
        let mut lat = Vec::new();
        for id in &ids {
            lat.push(started_after_created(&c.wait_status(id, "succeeded", T)));
        }
        let tasks_s = t0.elapsed().as_secs_f64();
        wait_for(T, || {
            let n = get(&c.url("/v1/notifications?limit=1")).expect(200);
            (n["data"]["counts"]["delivered"].as_u64() == Some(N as u64)).then_some(())
        })
        .expect("all delivered");
        let s = t0.elapsed().as_secs_f64();
        println!(
            "receiver {delay} ms: {N} tasks done in {tasks_s:.2} s; {} deliveries in {s:.2} s = {:.1}/s",
            got.load(Ordering::SeqCst),
            N as f64 / s
        );
        stats(
            &format!("  dispatch latency meanwhile, receiver {delay} ms (ms)"),
            lat,
        );
    }
}
