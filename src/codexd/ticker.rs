//! The ticker thread: every 100 ms it answers expired child requests with their default,
//! writes dirty state files, and reconciles turns whose thread went idle without
//! `turn/completed`; once a second it archives sessions idle beyond the retention. Each reconciliation waits on a JSON-RPC call, so it runs on its own
//! thread; the ticker owns those threads, joins the finished ones as it goes and the rest
//! when it stops (each is bounded by the request timeout, and by the child link closing
//! when codexd stops).

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::core::Core;

const TICK: Duration = Duration::from_millis(100);
/// The archive sweep (sessions idle beyond the retention) runs once a second.
const ARCHIVE_EVERY_TICKS: u64 = 10;

/// Starts the ticker; it ends once the core's stop flag is set.
pub fn spawn(core: Arc<Core>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("codexd-ticker".into())
        .spawn(move || run(&core))
}

fn run(core: &Arc<Core>) {
    let mut reconciles: Vec<JoinHandle<()>> = Vec::new();
    let mut ticks: u64 = 0;
    while !core.stop.sleep(TICK) {
        ticks += 1;
        if ticks % ARCHIVE_EVERY_TICKS == 0 {
            core.archive_idle();
        }
        for job in core.tick() {
            let c = core.clone();
            let spawned = thread::Builder::new()
                .name("codexd-reconcile".into())
                .spawn(move || c.reconcile(&job));
            match spawned {
                Ok(h) => reconciles.push(h),
                Err(e) => log::error!("cannot start a reconcile thread: {e}"),
            }
        }
        let (done, running): (Vec<_>, Vec<_>) =
            reconciles.into_iter().partition(JoinHandle::is_finished);
        reconciles = running;
        join_all(done);
    }
    join_all(reconciles);
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        if h.join().is_err() {
            log::error!("a reconcile thread panicked");
        }
    }
}
