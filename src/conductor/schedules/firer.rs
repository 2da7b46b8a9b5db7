//! The fire loop: one named thread, owned by the daemon, that fires schedules only while
//! this conductor holds a healthy lease (as the task scheduler and the janitor do).
//!
//! It sleeps until the earliest `next_fire_at` (at most [`TICK`] at a time, so the stop
//! flag and the lease are looked at often), and a schedule change wakes it at once: 100
//! schedules due in the same minute fire in one pass right after it. With a test's clock
//! file the clock is read every tick instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use baa::common::signals::StopFlag;
use baa::common::time::ms_from_rfc3339;

use super::fire;
use super::model::Schedule;
use crate::app::App;

/// The longest sleep between looks at the stop flag and the lease.
const TICK: Duration = Duration::from_millis(50);
/// Threads a pass fires due schedules on (scoped: they end with the pass).
const FIRE_WORKERS: usize = 8;
/// Every schedule is read again at least this often, whatever woke the loop.
const RESCAN: Duration = Duration::from_secs(5);

pub fn spawn(app: Arc<App>, stop: StopFlag) -> std::io::Result<JoinHandle<()>> {
    let wake = app.schedules.receiver();
    thread::Builder::new()
        .name("schedules".into())
        .spawn(move || Firer::new(app, stop, wake).run())
}

struct Firer {
    app: Arc<App>,
    stop: StopFlag,
    wake: Receiver<()>,
    /// When (by the schedule clock) this conductor began firing: its start or a takeover.
    active_since: Option<u64>,
    /// The earliest next fire of the enabled schedules, from the last pass.
    next_due: Option<u64>,
    last_pass: Option<Instant>,
}

impl Firer {
    fn new(app: Arc<App>, stop: StopFlag, wake: Receiver<()>) -> Firer {
        Firer {
            app,
            stop,
            wake,
            active_since: None,
            next_due: None,
            last_pass: None,
        }
    }

    fn leader(&self) -> bool {
        self.app
            .lease
            .status()
            .healthy_leader(self.app.lease.threshold)
    }

    fn run(mut self) {
        let mut changed = true;
        while !self.stop.is_set() {
            let mut wait = TICK;
            if !self.leader() {
                if self.active_since.take().is_some() {
                    log::info!("schedules: not the lease holder any more; fires stop here");
                }
                changed = true;
            } else {
                let now = self.app.schedules.clock.now_ms();
                if self.active_since.is_none() {
                    self.active_since = Some(now);
                    // A new leader's task index may lag the files (the replays need it).
                    self.app.tasks.sync_if_changed();
                    changed = true;
                }
                let due = self.next_due.is_some_and(|d| d <= now);
                let stale = self.last_pass.is_none_or(|t| t.elapsed() >= RESCAN);
                if changed || due || stale {
                    self.pass(now);
                    changed = false;
                }
                if !self.app.schedules.clock.is_fake() {
                    let now = self.app.schedules.clock.now_ms();
                    if let Some(d) = self.next_due {
                        wait = wait.min(Duration::from_millis(d.saturating_sub(now)));
                    }
                }
            }
            if self.wake.recv_timeout(wait).is_ok() {
                changed = true;
            }
        }
    }

    /// Fires every due schedule and notes the earliest next fire.
    fn pass(&mut self, now: u64) {
        self.last_pass = Some(Instant::now());
        let since = self.active_since.unwrap_or(now);
        let mut earliest: Option<u64> = None;
        let mut due = Vec::new();
        for s in self.app.schedules.store.list() {
            if !s.enabled {
                continue;
            }
            match s.next_fire_at.as_deref().and_then(ms_from_rfc3339) {
                Some(next) if next <= now => due.push(s),
                Some(next) => earliest = Some(earliest.map_or(next, |e| e.min(next))),
                None => {}
            }
        }
        if due.is_empty() || !self.leader() {
            self.next_due = earliest;
            return;
        }
        // A new leader's index may lag the files (the idempotency replays need it).
        self.app.tasks.sync_if_changed();
        for next in self.fire_all(&due, now, since).into_iter().flatten() {
            earliest = Some(earliest.map_or(next, |e| e.min(next)));
        }
        self.next_due = earliest;
    }

    /// Fires `due` on up to [`FIRE_WORKERS`] threads (each fire plans a workspace with a
    /// git call and writes two files, so 100 due at once would queue up one behind the
    /// other); returns each schedule's next fire.
    fn fire_all(&self, due: &[Schedule], now: u64, since: u64) -> Vec<Option<u64>> {
        let next = AtomicUsize::new(0);
        let work = || {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(s) = due.get(i) else { break };
                if self.stop.is_set() || !self.leader() {
                    break;
                }
                out.push(fire::run(&self.app, s, now, since));
            }
            out
        };
        let workers = due.len().min(FIRE_WORKERS);
        if workers <= 1 {
            return work();
        }
        thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .filter_map(|_| {
                    thread::Builder::new()
                        .name("schedule-fire".into())
                        .spawn_scoped(scope, work)
                        .map_err(|e| log::warn!("schedules: cannot start a fire thread: {e}"))
                        .ok()
                })
                .collect();
            // No thread could start: fire here.
            if handles.is_empty() {
                return work();
            }
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }
}
