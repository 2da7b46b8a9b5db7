//! What the scheduler thread, the run workers and the HTTP handlers share: the wake channel,
//! one [`RunControl`] per run in flight (how a cancel, a pause with interrupt, a lost lease
//! or a stop reaches a worker), what each run is doing (for the summary), and the
//! scheduler's last decisions (for `/v1/runtime`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};

use baa::common::sync::lock;

/// Why a worker must stop following its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Keep going.
    None = 0,
    /// The task was canceled: interrupt the turn; run and task end `canceled`.
    Cancel = 1,
    /// Paused with `"interrupt": true`: interrupt the turn; the task goes back to the queue.
    Pause = 2,
    /// The conductor stops: leave the turn running; the next start reconciles the run.
    Shutdown = 3,
    /// Another conductor holds the lease now: leave everything to it.
    LostLease = 4,
}

impl StopReason {
    fn from_u8(v: u8) -> StopReason {
        match v {
            1 => StopReason::Cancel,
            2 => StopReason::Pause,
            3 => StopReason::Shutdown,
            4 => StopReason::LostLease,
            _ => StopReason::None,
        }
    }
}

/// One run in flight, as the others see it.
pub struct RunControl {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub steps_total: usize,
    pub started_ms: u64,
    stop: AtomicU8,
    step: AtomicUsize,
    step_started_ms: AtomicU64,
}

impl RunControl {
    pub fn new(run_id: &str, task_id: &str, attempt: u32, steps_total: usize, now: u64) -> Self {
        RunControl {
            run_id: run_id.into(),
            task_id: task_id.into(),
            attempt,
            steps_total,
            started_ms: now,
            stop: AtomicU8::new(0),
            step: AtomicUsize::new(0),
            step_started_ms: AtomicU64::new(now),
        }
    }

    /// Asks the worker to stop. A cancel wins over a pause; otherwise the first reason stays.
    pub fn request(&self, why: StopReason) {
        let _ = self
            .stop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                let cur = StopReason::from_u8(cur);
                (cur == StopReason::None || (why == StopReason::Cancel && cur == StopReason::Pause))
                    .then_some(why as u8)
            });
    }

    pub fn stop(&self) -> StopReason {
        StopReason::from_u8(self.stop.load(Ordering::SeqCst))
    }

    pub fn set_step(&self, index: usize, now: u64) {
        self.step.store(index, Ordering::SeqCst);
        self.step_started_ms.store(now, Ordering::SeqCst);
    }

    /// For the summary: `{task_id, run_id, attempt, step, steps, started_at, elapsed_ms, …}`.
    pub fn to_json(&self, now: u64) -> Value {
        let step_started = self.step_started_ms.load(Ordering::SeqCst);
        json!({
            "task_id": self.task_id,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "step": self.step.load(Ordering::SeqCst) + 1,
            "steps": self.steps_total,
            "started_at": baa::common::time::rfc3339_from_ms(self.started_ms),
            "elapsed_ms": now.saturating_sub(self.started_ms),
            "step_elapsed_ms": now.saturating_sub(step_started),
        })
    }
}

/// Shared scheduler state; the app owns it.
pub struct SchedulerState {
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    runs: Mutex<HashMap<String, Arc<RunControl>>>,
    last_dispatch_at: Mutex<Option<String>>,
    held: Mutex<Option<Value>>,
    /// Scheduler passes so far (a test can wait for a few without sleeping blind).
    passes: AtomicU64,
    /// The first poke not yet seen by a pass (how long a wake-up takes, for the timings).
    poked_at: Mutex<Option<Instant>>,
    pub max_running: usize,
}

impl SchedulerState {
    pub fn new(max_running: usize) -> Self {
        // One pending wake is enough: the scheduler looks at everything when it wakes.
        let (wake_tx, wake_rx) = bounded(1);
        SchedulerState {
            wake_tx,
            wake_rx,
            runs: Mutex::new(HashMap::new()),
            last_dispatch_at: Mutex::new(None),
            held: Mutex::new(None),
            passes: AtomicU64::new(0),
            poked_at: Mutex::new(None),
            max_running,
        }
    }

    /// Wakes the scheduler (a task changed, the mode or lease changed, a run ended).
    pub fn wake(&self) {
        lock(&self.poked_at).get_or_insert_with(Instant::now);
        let _ = self.wake_tx.try_send(());
    }

    /// When the scheduler was first poked since the last pass took the pokes, if it was.
    pub fn take_poke(&self) -> Option<Instant> {
        lock(&self.poked_at).take()
    }

    pub fn receiver(&self) -> Receiver<()> {
        self.wake_rx.clone()
    }

    pub fn register(&self, ctl: Arc<RunControl>) {
        lock(&self.runs).insert(ctl.task_id.clone(), ctl);
    }

    pub fn unregister(&self, task_id: &str, run_id: &str) {
        let mut runs = lock(&self.runs);
        if runs.get(task_id).is_some_and(|c| c.run_id == run_id) {
            runs.remove(task_id);
        }
    }

    pub fn control(&self, task_id: &str) -> Option<Arc<RunControl>> {
        lock(&self.runs).get(task_id).cloned()
    }

    /// Asks every run in flight to stop for `why`.
    pub fn stop_all(&self, why: StopReason) -> usize {
        let runs = lock(&self.runs);
        for c in runs.values() {
            c.request(why);
        }
        runs.len()
    }

    pub fn in_flight(&self) -> usize {
        lock(&self.runs).len()
    }

    pub fn running_json(&self, now: u64) -> Vec<Value> {
        let mut v: Vec<Value> = lock(&self.runs).values().map(|c| c.to_json(now)).collect();
        v.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
        v
    }

    pub fn passed(&self) {
        self.passes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dispatched(&self, at: String) {
        *lock(&self.last_dispatch_at) = Some(at);
    }

    pub fn set_held(&self, held: Option<Value>) {
        *lock(&self.held) = held;
    }

    /// `/v1/runtime` `scheduler`, with the store's counts.
    pub fn to_json(&self, queued: usize, running: usize, enabled: bool) -> Value {
        json!({
            "enabled": enabled,
            "queued": queued,
            "running": running,
            "max_running": self.max_running,
            "in_flight": self.in_flight(),
            "last_dispatch_at": lock(&self.last_dispatch_at).clone(),
            "held": lock(&self.held).clone(),
            "passes": self.passes.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_wins_over_pause_and_the_first_reason_stays_otherwise() {
        let c = RunControl::new("r", "t", 1, 2, 0);
        c.request(StopReason::Pause);
        c.request(StopReason::Shutdown);
        assert_eq!(c.stop(), StopReason::Pause);
        c.request(StopReason::Cancel);
        assert_eq!(c.stop(), StopReason::Cancel);
        let d = RunControl::new("r", "t", 1, 2, 0);
        d.request(StopReason::Shutdown);
        d.request(StopReason::Cancel);
        assert_eq!(d.stop(), StopReason::Shutdown);
    }

    #[test]
    fn wakes_coalesce() {
        let s = SchedulerState::new(1);
        s.wake();
        s.wake();
        let rx = s.receiver();
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }
}
