//! The ticker thread: every 100 ms it answers expired child requests with their default,
//! writes dirty state files, reconciles turns whose thread went idle without
//! `turn/completed`, and starts the account/limits refresh when it is due (`account.rs`).
//! Each reconciliation and each refresh waits on JSON-RPC calls, so it runs on its own
//! thread (at most one refresh at a time); the ticker owns those threads, joins the
//! finished ones as it goes and the rest when it stops (each is bounded by the request
//! timeout, and by the child link closing when codexd stops).
//! Once a second it also archives sessions idle beyond the retention. It also joins the
//! core's other jobs (`Core::spawn_job`: resuming threads after an attach).

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
    let mut account: Option<JoinHandle<()>> = None;
    let mut ticks: u64 = 0;
    while !core.stop.sleep(TICK) {
        ticks += 1;
        if ticks % ARCHIVE_EVERY_TICKS == 0 {
            core.archive_idle();
        }
        account_tick(core, &mut account);
        crate::heap::trim_if_due();
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
        core.reap_jobs(false);
    }
    join_all(reconciles);
    join_all(account.into_iter().collect());
    core.reap_jobs(true);
}

/// Starts the account refresh when none runs and one is due (joining the last one).
fn account_tick(core: &Arc<Core>, running: &mut Option<JoinHandle<()>>) {
    if !running.as_ref().is_none_or(JoinHandle::is_finished) {
        return;
    }
    if running.take().is_some_and(|h| h.join().is_err()) {
        log::error!("the account refresh thread panicked");
        core.account.refresh_failed();
    }
    let generation = core.current_link().map(|l| l.generation);
    if !core.account.take_refresh(generation) {
        return;
    }
    let c = core.clone();
    match thread::Builder::new()
        .name("codexd-account".into())
        .spawn(move || refresh_account(&c))
    {
        Ok(h) => *running = Some(h),
        Err(e) => {
            log::error!("cannot start the account refresh thread: {e}");
            core.account.refresh_failed();
        }
    }
}

/// Reads the account, the limits and (once per child) `codex --version` from the current
/// child; every call is bounded (request timeout, version timeout).
fn refresh_account(core: &Core) {
    let Some(link) = core.current_link() else {
        core.account.refresh_failed();
        return;
    };
    core.codex.refresh_cli(link.generation, &core.stop);
    core.account
        .refresh(&*link, &core.events, &|| core.persist_daemon_state());
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        if h.join().is_err() {
            log::error!("a reconcile or account refresh thread panicked");
        }
    }
}
