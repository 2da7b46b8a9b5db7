//! The scheduler: one named thread, owned by the daemon (which keeps its handle and stops
//! it on SIGTERM). It wakes on a poke (task created, canceled or retried; mode or lease
//! changed; a run ended) or on a timer (a retry's backoff ending, a held queue to re-check,
//! and once a second regardless), and each time:
//!
//! 1. reaps finished run threads;
//! 2. follows the lease: on becoming leader it reloads the task index when its files
//!    changed (a standby shares the state dir but not the leader's memory); on losing
//!    it, every run is told to let go;
//! 3. on the leader, gives every task left `running` without a run thread (a restart, a
//!    takeover) a thread that reconciles it first — whatever the mode, since its turn is
//!    already in flight — or, when its run's end is already on disk, settles the task
//!    from the run;
//! 4. when the mode is `running`, starts queued tasks, highest priority then oldest, while
//!    fewer than `max_running` run, after asking the dispatch gate (`gate`).
//!
//! Each run is driven by its own thread (`worker`), registered in the shared state so a
//! cancel or a pause can reach it; this thread holds the join handles and, when stopping,
//! tells every run to let go and joins them within a bound.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use baa::common::ids::new_id;
use baa::common::signals::StopFlag;
use baa::common::store::StoreError;
use baa::common::time::{now_ms, now_rfc3339};

use super::control::{RunControl, StopReason};
use super::gate;
use super::hold_notice::HoldNotice;
use super::limit_hold::{LimitHold, Next, Probe};
use super::model::{Run, RunRef, Status, CODEXD_WORKER};
use super::worker;
use crate::app::App;
use crate::system::Mode;

/// The longest the scheduler sleeps without a poke.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How long stopping waits for run threads (each checks its stop flag every 200 ms; one in
/// a blocking codexd call may take longer and is left to finish on its own).
const JOIN_BOUND: Duration = Duration::from_secs(3);

/// Why a queued task could not be started (it stays queued).
#[derive(Debug)]
enum DispatchError {
    /// The task could not be read.
    Read(String),
    /// The task could not be written.
    Write(StoreError),
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::Read(m) => f.write_str(m),
            DispatchError::Write(e) => e.fmt(f),
        }
    }
}

/// The running scheduler; stop it with [`Scheduler::stop`].
pub struct Scheduler {
    handle: Option<JoinHandle<()>>,
    app: Arc<App>,
}

impl Scheduler {
    pub fn start(app: Arc<App>, stop: StopFlag) -> std::io::Result<Scheduler> {
        let a = app.clone();
        let handle = thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || Loop::new(a, stop).run())?;
        Ok(Scheduler {
            handle: Some(handle),
            app,
        })
    }

    /// Wakes the thread (the stop flag is already set) and joins it.
    pub fn stop(mut self) {
        self.app.sched.wake();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Loop {
    app: Arc<App>,
    stop: StopFlag,
    threads: HashMap<String, JoinHandle<()>>,
    was_leader: bool,
    /// The usage-limit hold and its probe (`limit_hold`).
    limit: LimitHold,
    /// The other holds (logged out, codexd down), announced (`hold_notice`).
    notice: HoldNotice,
}

impl Loop {
    fn new(app: Arc<App>, stop: StopFlag) -> Loop {
        Loop {
            limit: LimitHold::from_queue(&app),
            notice: HoldNotice::default(),
            app,
            stop,
            threads: HashMap::new(),
            was_leader: false,
        }
    }

    fn run(mut self) {
        let wake = self.app.sched.receiver();
        let mut timeout = Duration::ZERO;
        // A disconnected channel cannot happen (the app holds the sender); it ends the loop.
        while let Ok(()) | Err(RecvTimeoutError::Timeout) = wake.recv_timeout(timeout) {
            if self.stop.is_set() {
                break;
            }
            timeout = self.tick();
        }
        self.shutdown();
    }

    /// One pass; returns how long to sleep before the next one.
    fn tick(&mut self) -> Duration {
        self.app.sched.passed();
        let poked = self.app.sched.take_poke();
        self.reap();
        let lease = self.app.lease.status();
        let leader = lease.healthy_leader(self.app.lease.threshold);
        if leader != self.was_leader {
            self.was_leader = leader;
            if leader {
                // A full re-read only when the files changed since the index was built:
                // at start-up it was built a moment ago (10k tasks cost ~100 ms to read).
                let n = self.app.tasks.sync_if_changed();
                log::info!("scheduler: leader now; {n} task(s) in the store");
                // A takeover during a usage-limit hold keeps holding (the tasks say so).
                if self.limit.is_open() {
                    self.limit = LimitHold::from_queue(&self.app);
                }
            } else {
                let n = self.app.sched.stop_all(StopReason::LostLease);
                log::warn!("scheduler: not the leader any more; {n} run(s) let go");
            }
        }
        if !leader {
            self.app.sched.set_held(None);
            return IDLE_TICK;
        }
        self.resume_orphans();
        let mode = self.app.system.load(&self.app.store).map(|s| s.mode);
        if mode.ok() != Some(Mode::Running) {
            self.app.sched.set_held(None);
            return IDLE_TICK;
        }
        self.limit.settle(&self.app);
        let mut sleep = IDLE_TICK;
        let mut gate_checked = false;
        let mut probe_only = false;
        while self.threads.len() < self.app.sched.max_running {
            let busy: HashSet<String> = self.threads.keys().cloned().collect();
            let Some(task_id) = self.app.tasks.pick_next(now_ms(), &busy) else {
                self.app.sched.set_held(None);
                if busy.is_empty() {
                    self.notice.reset();
                }
                break;
            };
            let gate_t0 = Instant::now();
            if !gate_checked {
                gate_checked = true;
                let held = gate::check(&self.app.codex, &self.app.codex_hold);
                self.notice.observe(&self.app, held.as_ref());
                self.app
                    .notify
                    .codexd_child(self.app.codex_hold.child_status().as_deref());
                if let Some(held) = held {
                    log::debug!("scheduler: held: {}", held.message);
                    self.limit.held(&self.app, &held);
                    let mut j = held.to_json();
                    j["probe"] = self.limit.probe_json();
                    self.app.sched.set_held(Some(j));
                    return IDLE_TICK;
                }
                match self.limit.open() {
                    Next::Wait => {
                        self.app.sched.set_held(self.limit.to_json());
                        return IDLE_TICK;
                    }
                    Next::Probe => probe_only = true,
                    Next::Dispatch => {}
                }
                self.app.sched.set_held(None);
            }
            let dispatch_t0 = Instant::now();
            let started = match self.dispatch(&task_id) {
                Ok(started) => started,
                Err(e) => {
                    log::error!("scheduler: cannot start task {task_id}: {e}");
                    break;
                }
            };
            if probe_only {
                match started {
                    Some((run_id, steps_done)) => self.limit.probing(Probe {
                        task_id: task_id.clone(),
                        run_id,
                        steps_done,
                        since_ms: now_ms(),
                    }),
                    None => self.limit.probe_not_started(),
                }
                self.app.sched.set_held(self.limit.to_json());
                break;
            }
            log::debug!(
                target: "run_timings",
                "dispatch task={task_id} wake_ms={:.2} gate_ms={:.2} dispatch_ms={:.2}",
                poked.map_or(0.0, |p| gate_t0.duration_since(p).as_secs_f64() * 1000.0),
                dispatch_t0.duration_since(gate_t0).as_secs_f64() * 1000.0,
                dispatch_t0.elapsed().as_secs_f64() * 1000.0,
            );
        }
        if let Some(due) = self.app.tasks.next_due(now_ms()) {
            sleep = sleep.min(Duration::from_millis(due.saturating_sub(now_ms()).max(1)));
        }
        sleep
    }

    /// Joins the run threads that are done. A run unregisters its control and wakes the
    /// scheduler as its last acts, a moment before its thread returns: counting it busy
    /// until `is_finished` would hold its slot until the next idle tick (up to 1 s per
    /// task, measured by `scripts/bench/tasks.sh`), so an unregistered run counts as done
    /// and its thread, about to return, is joined here.
    fn reap(&mut self) {
        let done: Vec<String> = self
            .threads
            .iter()
            .filter(|(id, h)| h.is_finished() || self.app.sched.control(id).is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            if let Some(h) = self.threads.remove(&id) {
                let _ = h.join();
            }
        }
    }

    /// Gives each task left `running` without a thread one that reconciles its run.
    fn resume_orphans(&mut self) {
        for task_id in self.app.tasks.runnable_ids_with(Status::Running) {
            if self.threads.contains_key(&task_id) {
                continue;
            }
            let task = match self.app.tasks.task(&task_id) {
                Ok(t) => t,
                Err(_) => continue,
            };
            // A migrated record of another kind: shown as it was, never touched.
            if !task.is_runnable() {
                continue;
            }
            // A run in flight is resumed; one whose end is on disk (the conductor was
            // killed between the run's last write and the task's) is closed from it.
            let run = task
                .current_run_id
                .as_deref()
                .and_then(|r| self.app.tasks.run(r).ok())
                .filter(|r| r.status == "running" || worker::has_ended(r));
            let Some(run) = run else {
                // Marked running but no run in flight (stopped after the dispatch, before the
                // run's first write): back to the queue; no turn was sent for it. A run that
                // never reached its file leaves no entry in the task's runs.
                log::warn!(
                    "scheduler: task {task_id} was running without a run in flight; queued again"
                );
                let unwritten: Vec<String> = task
                    .runs
                    .iter()
                    .filter(|r| r.status == "running" && self.app.tasks.run(&r.run_id).is_err())
                    .map(|r| r.run_id.clone())
                    .collect();
                let _ = self.app.tasks.update(&task_id, |t| {
                    t.status = Status::Queued.as_str().into();
                    t.runs.retain(|r| !unwritten.contains(&r.run_id));
                    true
                });
                continue;
            };
            log::info!(
                "scheduler: reconciling run {} of task {task_id} (attempt {})",
                run.run_id,
                run.attempt
            );
            let ctl = Arc::new(RunControl::new(
                &run.run_id,
                &task_id,
                run.attempt,
                task.steps_total,
                now_ms(),
            ));
            self.start_thread(&task_id, ctl, run);
        }
    }

    fn start_thread(&mut self, task_id: &str, ctl: Arc<RunControl>, run: Run) {
        self.app.sched.register(ctl.clone());
        match worker::spawn(self.app.clone(), ctl.clone(), run) {
            Ok(h) => {
                self.threads.insert(task_id.to_string(), h);
            }
            Err(e) => {
                log::error!("scheduler: cannot start a run thread for task {task_id}: {e}");
                self.app.sched.unregister(task_id, &ctl.run_id);
            }
        }
    }

    /// Starts a new run of `task_id`: the task (running, naming the run), then its thread,
    /// which writes the run file with its first step's intent. Returns the run's id and the
    /// task's steps done, or `None` when the task left the queue first.
    fn dispatch(&mut self, task_id: &str) -> Result<Option<(String, usize)>, DispatchError> {
        let task = self
            .app
            .tasks
            .task(task_id)
            .map_err(|e| DispatchError::Read(e.message))?;
        let now = now_rfc3339();
        let attempt = task.next_attempt();
        let run = Run {
            run_id: new_id("run"),
            task_id: task_id.to_string(),
            status: "running".into(),
            attempt,
            worker: CODEXD_WORKER.into(),
            session_id: None,
            started_at: Some(now.clone()),
            finished_at: None,
            exit: None,
            error: None,
            thread_id: task.thread_id.clone(),
            node_id: Some(self.app.cfg.node_id.clone()),
            first_step: task.steps_done,
            steps: Vec::new(),
            final_message: None,
            usage: None,
            duration_ms: None,
            result: None,
        };
        // The run file is first written by the run itself, with the first step's intent (or
        // its end): one durable write less before the turn. A conductor stopped before that
        // leaves the task `running` with no run file, which `resume_orphans` puts back in
        // the queue (no turn was sent).
        let run_id = run.run_id.clone();
        let updated = self
            .app
            .tasks
            .update(task_id, |t| {
                // A cancel may have landed since pick_next (the run file's write takes a
                // while): only a task still queued is taken.
                if t.status() != Some(Status::Queued) {
                    return false;
                }
                t.status = Status::Running.as_str().into();
                t.current_run_id = Some(run_id.clone());
                t.started_at.get_or_insert_with(|| now.clone());
                t.finished_at = None;
                t.next_attempt_at = None;
                t.waiting = None;
                // The usage-limit hold let it go.
                t.held_until = None;
                t.runs.push(RunRef {
                    run_id: run_id.clone(),
                    attempt,
                    status: "running".into(),
                    started_at: Some(now.clone()),
                    thread_id: None,
                    usage: None,
                });
                true
            })
            .map_err(DispatchError::Write)?;
        let Some(t) = updated.filter(|t| t.current_run_id.as_deref() == Some(run_id.as_str()))
        else {
            log::info!("scheduler: task {task_id} left the queue before its run started");
            return Ok(None);
        };
        self.app.task_changed(&t);
        self.app.sched.dispatched(now);
        log::debug!("scheduler: task {task_id} run {run_id} (attempt {attempt}) dispatched");
        let ctl = Arc::new(RunControl::new(
            &run_id,
            task_id,
            attempt,
            task.steps_total,
            now_ms(),
        ));
        self.start_thread(task_id, ctl, run);
        Ok(Some((run_id, task.steps_done)))
    }

    fn shutdown(mut self) {
        let n = self.app.sched.stop_all(StopReason::Shutdown);
        if n > 0 {
            log::info!(
                "scheduler: stopping; {n} run(s) left running for the next start to reconcile"
            );
        }
        let deadline = Instant::now() + JOIN_BOUND;
        while Instant::now() < deadline && self.threads.values().any(|h| !h.is_finished()) {
            thread::sleep(Duration::from_millis(20));
        }
        for (task_id, h) in self.threads.drain() {
            if h.is_finished() {
                let _ = h.join();
            } else {
                log::warn!("scheduler: the run thread of task {task_id} is still in a codexd call; not waiting for it");
            }
        }
    }
}
