//! One run of a task, driven on its own named thread: a codexd session (`purpose:
//! "worker"`) for the task's thread, then each remaining step as one turn in that thread,
//! started only after the previous one completed, followed on codexd's event stream with a
//! session poll beside it, and its outcome written to the run, the task and the task log.
//!
//! Exactly once: before a turn is sent, the step's intent is persisted; after the 202, its
//! turn id. A run found mid-step (after a conductor restart or a lease takeover) is settled
//! by `reconcile::decide` against the session before anything is sent again; see that
//! module for the reasoning. A completed step is never sent again: a retry starts at the
//! first step not completed, in the same thread.
//!
//! How a run ends: `succeeded`; `failed` with `error {code, message, retryable}` (retryable
//! ones go back to the queue with backoff until `max_attempts`); `canceled`; `paused` (the
//! mode was paused: between steps, or mid-turn with `"interrupt": true`; the task goes back
//! to the queue, no attempt spent); or left `running` when the conductor stops or loses the
//! lease, for the next leader to reconcile.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339, rfc3339_from_ms};

use super::codexd::{CallError, Codexd};
use super::control::{RunControl, StopReason};
use super::follow::EventStream;
use super::logs::{cut, MESSAGE_CAP};
use super::model::{error_value, Run, RunRef, Status, StepRecord, Task, TaskSpec};
use super::reconcile::{decide, Decision, OpenStep, SessionView};
use crate::app::App;
use crate::system::Mode;

/// How long one wait on the event stream lasts (the stop checks run between waits).
const TICK: Duration = Duration::from_millis(200);
/// Session poll while the event stream is down, and while it is up (a safety net).
const POLL_FAST: Duration = Duration::from_millis(300);
const POLL_SLOW: Duration = Duration::from_secs(2);
/// How long an interrupted turn may take to end before the run stops waiting for it.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);
/// How long codexd may be unreachable mid-run before the run fails (a restart in unix
/// mode keeps the turn running; the run must outlast it).
const CODEXD_GRACE: Duration = Duration::from_secs(60);
/// After this long an unacknowledged turn start that shows no turn on the session never
/// reached the app-server (see `reconcile`).
pub const SEND_SETTLE_MS: u64 = 90_000;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Succeeded,
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
    Canceled,
    Paused,
    /// Nothing written: the next leader or start reconciles the run.
    Left(StopReason),
}

fn failed(code: &str, message: impl Into<String>, retryable: bool) -> End {
    End::Failed {
        code: code.into(),
        message: message.into(),
        retryable,
    }
}

/// Why this worker interrupted the turn.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Interrupt {
    Cancel,
    Pause,
    Timeout,
}

/// Starts the run's thread.
pub fn spawn(app: Arc<App>, ctl: Arc<RunControl>) -> std::io::Result<JoinHandle<()>> {
    let short: String = ctl
        .run_id
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    thread::Builder::new()
        .name(format!("task-run-{short}"))
        .spawn(move || {
            let task_id = ctl.task_id.clone();
            let run_id = ctl.run_id.clone();
            let outcome = catch_unwind(AssertUnwindSafe(|| Worker::start(&app, &ctl)));
            if outcome.is_err() {
                log::error!(
                    "task {task_id}: run {run_id} panicked; it is failed so it cannot loop"
                );
                if let Some(mut w) = Worker::load(&app, &ctl) {
                    w.finish(failed(
                        "internal_error",
                        "the run's worker panicked (a bug); see the conductor log",
                        false,
                    ));
                }
            }
            app.sched.unregister(&task_id, &run_id);
            // The turns just run may have used the rate limits up: read them again first.
            app.codex_hold.invalidate();
            app.sched.wake();
        })
}

struct Worker<'a> {
    app: &'a Arc<App>,
    ctl: &'a RunControl,
    cx: Arc<Codexd>,
    task_id: String,
    spec: TaskSpec,
    run: Run,
    events: Option<EventStream>,
    interrupted: Option<Interrupt>,
    /// Command and file lines logged live for the step in flight.
    logged: (usize, usize),
    waiting_request: Option<String>,
}

impl<'a> Worker<'a> {
    fn load(app: &'a Arc<App>, ctl: &'a RunControl) -> Option<Worker<'a>> {
        let task = app.tasks.task(&ctl.task_id).ok()?;
        let run = app.tasks.run(&ctl.run_id).ok()?;
        let spec = task.spec()?;
        Some(Worker {
            app,
            ctl,
            cx: app.codexd.clone()?,
            task_id: task.task_id,
            spec,
            run,
            events: None,
            interrupted: None,
            logged: (0, 0),
            waiting_request: None,
        })
    }

    fn start(app: &'a Arc<App>, ctl: &'a RunControl) {
        let Some(mut w) = Worker::load(app, ctl) else {
            log::error!(
                "task {}: run {} cannot be loaded; left as is",
                ctl.task_id,
                ctl.run_id
            );
            return;
        };
        let end = w.drive();
        w.finish(end);
    }

    fn log(&self, level: &str, message: &str, detail: Option<Value>) {
        self.app.tasks.logs.append(
            &self.task_id,
            Some(&self.run.run_id),
            level,
            message,
            detail,
        );
    }

    fn save_run(&self) -> Result<(), End> {
        self.app.tasks.save_run(&self.run).map_err(|e| {
            log::error!(
                "task {}: cannot persist run {}: {e}",
                self.task_id,
                self.run.run_id
            );
            End::Left(StopReason::Shutdown)
        })
    }

    fn update_task(&self, f: impl FnOnce(&mut Task) -> bool) -> Option<Task> {
        match self.app.tasks.update(&self.task_id, f) {
            Ok(Some(t)) => {
                self.app.task_changed(&t);
                Some(t)
            }
            Ok(None) => None,
            Err(e) => {
                log::error!("task {}: cannot persist it: {e}", self.task_id);
                None
            }
        }
    }

    fn is_leader(&self) -> bool {
        let st = self.app.lease.status();
        st.healthy_leader(self.app.lease.threshold)
    }

    fn session_id(&self) -> String {
        self.run.session_id.clone().unwrap_or_default()
    }

    // ---- the run ----------------------------------------------------------------------

    fn drive(&mut self) -> End {
        let task = match self.app.tasks.task(&self.task_id) {
            Ok(t) => t,
            Err(e) => return failed("internal_error", e.message, false),
        };
        if task.cancel_requested {
            self.ctl.request(StopReason::Cancel);
        }
        let resumed = !self.run.steps.is_empty() || self.run.session_id.is_some();
        if resumed {
            self.log(
                "info",
                &format!(
                    "run {} (attempt {}) resumed by {}",
                    self.run.run_id, self.run.attempt, self.app.cfg.node_id
                ),
                None,
            );
        } else {
            self.log(
                "info",
                &format!(
                    "run {} started (attempt {}, step {} of {})",
                    self.run.run_id,
                    self.run.attempt,
                    self.run.first_step + 1,
                    self.spec.steps.len()
                ),
                Some(json!({"attempt": self.run.attempt, "node_id": self.app.cfg.node_id})),
            );
        }
        if let Err(end) = self.ensure_session(&task) {
            return end;
        }
        self.open_stream();
        let total = self.spec.steps.len();
        loop {
            let next = self.run.completed_through();
            let open = self.run.open_step().map(|s| s.index);
            let index = open.unwrap_or(next);
            if index >= total {
                return End::Succeeded;
            }
            if open.is_none() {
                if let Some(end) = self.between_steps() {
                    return end;
                }
            }
            if let Err(end) = self.do_step(index) {
                return end;
            }
        }
    }

    /// What stops a run before its next step is sent.
    fn between_steps(&self) -> Option<End> {
        match self.ctl.stop() {
            StopReason::None => {}
            StopReason::Cancel => return Some(End::Canceled),
            StopReason::Pause => return Some(End::Paused),
            why => return Some(End::Left(why)),
        }
        if !self.is_leader() {
            return Some(End::Left(StopReason::LostLease));
        }
        match self.app.system.load(&self.app.store).map(|s| s.mode) {
            Ok(Mode::Paused) => Some(End::Paused),
            _ => None,
        }
    }

    fn session_body(&self, thread_id: Option<&str>) -> Value {
        let mut b = json!({
            "purpose": "worker",
            "metadata": {"task_id": self.task_id, "run_id": self.run.run_id, "source": "baa-conductor"},
        });
        let s = &self.spec;
        for (k, v) in [
            ("cwd", &s.cwd),
            ("model", &s.model),
            ("sandbox", &s.sandbox),
            ("approvalPolicy", &s.approval_policy),
        ] {
            if let Some(v) = v {
                b[k] = json!(v);
            }
        }
        if let Some(t) = thread_id {
            b["threadId"] = json!(t);
        }
        b
    }

    fn create_session(&self, thread_id: Option<&str>) -> Result<Value, End> {
        self.cx
            .create_session(&self.session_body(thread_id))
            .map_err(|e| match &e {
                CallError::Http {
                    status,
                    code,
                    message,
                } if e.is_permanent() => failed(
                    code,
                    format!("codexd refused the session ({status}): {message}"),
                    false,
                ),
                _ => failed(
                    "codexd_unavailable",
                    format!("cannot create the codexd session: {}", e.message()),
                    true,
                ),
            })
    }

    /// The run's session: its own (resumed), the task's (a retry continues the thread), or
    /// a new one; persisted in run and task before the first turn.
    fn ensure_session(&mut self, task: &Task) -> Result<(), End> {
        if self.run.session_id.is_some() {
            return Ok(());
        }
        if let Some(cwd) = &self.spec.cwd {
            if !std::path::Path::new(cwd).is_dir() {
                return Err(failed(
                    "cwd_missing",
                    format!("cwd {cwd} is not an existing directory"),
                    false,
                ));
            }
        }
        let mut session = None;
        if let Some(sid) = &task.session_id {
            match self.cx.session(sid) {
                Ok(s) if s["status"] != "archived" => session = Some(s),
                Ok(_) | Err(CallError::Http { status: 404, .. }) => {}
                Err(e) => return Err(failed("codexd_unavailable", e.message(), true)),
            }
        }
        if session.is_none() {
            if let Some(thread) = &task.thread_id {
                match self.create_session(Some(thread)) {
                    Ok(s) => {
                        self.log(
                            "info",
                            &format!("thread {thread} adopted by a new codexd session"),
                            None,
                        );
                        session = Some(s);
                    }
                    Err(End::Failed {
                        retryable: false,
                        message,
                        ..
                    }) => {
                        self.log("warn", &format!("the task's thread {thread} cannot be continued ({message}); continuing in a new thread without the earlier steps' context"), None);
                    }
                    Err(end) => return Err(end),
                }
            }
        }
        let session = match session {
            Some(s) => s,
            None => self.create_session(None)?,
        };
        let sid = session["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let thread = session["threadId"].as_str().map(str::to_string);
        if sid.is_empty() {
            return Err(failed(
                "codexd_invalid_response",
                "codexd created a session without a sessionId",
                true,
            ));
        }
        self.run.session_id = Some(sid.clone());
        self.run.thread_id = thread.clone();
        self.save_run()?;
        let run_id = self.run.run_id.clone();
        self.update_task(|t| {
            t.session_id = Some(sid.clone());
            t.thread_id = thread.clone();
            t.current_run_id = Some(run_id);
            true
        });
        self.log(
            "info",
            &format!(
                "codexd session {sid} (thread {})",
                thread.as_deref().unwrap_or("?")
            ),
            Some(json!({"session_id": sid, "thread_id": thread})),
        );
        Ok(())
    }

    fn open_stream(&mut self) {
        let path = match self.cx.events_path() {
            Ok(p) => p,
            Err(e) => {
                log::debug!(
                    "task {}: no event stream ({}); polling",
                    self.task_id,
                    e.message()
                );
                return;
            }
        };
        match self.cx.last_seq(&path) {
            Ok(seq) => self.events = Some(EventStream::new(self.cx.base(), &path, seq)),
            Err(e) => log::debug!(
                "task {}: no event stream ({}); polling",
                self.task_id,
                e.message()
            ),
        }
    }

    // ---- one step -----------------------------------------------------------------------

    fn do_step(&mut self, index: usize) -> Result<(), End> {
        self.interrupted = None;
        self.logged = (0, 0);
        self.ctl.set_step(index, now_ms());
        let open = self
            .run
            .step(index)
            .filter(|s| s.status == "sending" || s.status == "running")
            .cloned();
        let adopted = match open {
            Some(s) if s.status == "running" && s.turn_id.is_some() => s.turn_id,
            Some(s) => self.settle_unacked(index, &s)?,
            None => None,
        };
        let turn_id = match adopted {
            Some(t) => t,
            None => self.send(index)?,
        };
        let record = self.follow(index, &turn_id)?;
        self.finish_step(index, &turn_id, &record)
    }

    /// The prompt, model and effort of step `index` as a turn body.
    fn turn_body(&self, index: usize) -> Value {
        let step = &self.spec.steps[index];
        let mut b = json!({"sessionId": self.session_id(), "input": step.prompt});
        if let Some(m) = &step.model {
            b["model"] = json!(m);
        }
        if let Some(e) = step.effort.as_ref().or(self.spec.effort.as_ref()) {
            b["effort"] = json!(e);
        }
        b
    }

    /// Sends step `index`'s turn: the intent first, then the request, then its turn id.
    fn send(&mut self, index: usize) -> Result<String, End> {
        for _ in 0..2 {
            if !self.is_leader() {
                return Err(End::Left(StopReason::LostLease));
            }
            let prev = self.wait_session_idle()?;
            let now = now_rfc3339();
            {
                let step = self.run.step_mut(index);
                *step = StepRecord {
                    index,
                    status: "sending".into(),
                    prev_turn_id: prev,
                    sent_at: Some(now),
                    ..StepRecord::default()
                };
            }
            self.save_run()?;
            let total = self.spec.steps.len();
            match self.cx.start_turn(&self.turn_body(index)) {
                Ok(turn_id) => {
                    let step = self.run.step_mut(index);
                    step.status = "running".into();
                    step.turn_id = Some(turn_id.clone());
                    step.started_at = Some(now_rfc3339());
                    self.save_run()?;
                    self.log(
                        "info",
                        &format!("step {}/{total} started (turn {turn_id})", index + 1),
                        Some(json!({"step": index + 1, "turn_id": turn_id})),
                    );
                    self.push();
                    return Ok(turn_id);
                }
                Err(CallError::Unknown(why)) => {
                    self.log("warn", &format!("step {}/{total}: the turn start's answer was lost ({why}); checking codexd before anything is sent again", index + 1), None);
                    let step = self.run.step(index).cloned().unwrap_or_default();
                    match self.settle_unacked(index, &step)? {
                        Some(turn_id) => return Ok(turn_id),
                        None => continue,
                    }
                }
                Err(e) => {
                    let (code, retryable) = match &e {
                        CallError::NotSent(_) => ("codexd_unavailable".to_string(), true),
                        CallError::Http { status: 404, .. } => ("session_lost".to_string(), true),
                        CallError::Http { code, .. } => (code.clone(), !e.is_permanent()),
                        CallError::Unknown(_) => unreachable!("handled above"),
                    };
                    let message = format!(
                        "step {}: the turn was not started: {}",
                        index + 1,
                        e.message()
                    );
                    let step = self.run.step_mut(index);
                    step.status = "failed".into();
                    step.finished_at = Some(now_rfc3339());
                    step.error = Some(error_value(&code, &message, retryable));
                    self.save_run()?;
                    return Err(failed(&code, message, retryable));
                }
            }
        }
        Err(failed(
            "turn_start_failed",
            format!("step {}: the turn could not be started", index + 1),
            true,
        ))
    }

    /// The session's last turn id once nothing runs in it (a turn an earlier, interrupted
    /// attempt left running ends first).
    fn wait_session_idle(&mut self) -> Result<Option<String>, End> {
        let deadline = Instant::now() + INTERRUPT_GRACE;
        loop {
            let s = match self.cx.session(&self.session_id()) {
                Ok(s) => s,
                Err(CallError::Http { status: 404, .. }) => {
                    return Err(failed(
                        "session_lost",
                        "codexd no longer knows the run's session",
                        true,
                    ))
                }
                Err(e) => return Err(failed("codexd_unavailable", e.message(), true)),
            };
            if s["currentTurnId"].is_null() || Instant::now() >= deadline {
                return Ok(s["lastTurnId"].as_str().map(str::to_string));
            }
            match self.ctl.stop() {
                StopReason::None => {}
                StopReason::Cancel => return Err(End::Canceled),
                StopReason::Pause => return Err(End::Paused),
                why => return Err(End::Left(why)),
            }
            thread::sleep(POLL_FAST);
        }
    }

    /// Settles a step whose intent is recorded but whose turn is not: `Some(turn)` when
    /// codexd started it (adopt), `None` when it never did (it may be sent).
    fn settle_unacked(&mut self, index: usize, step: &StepRecord) -> Result<Option<String>, End> {
        let sent_ms = step
            .sent_at
            .as_deref()
            .and_then(ms_from_rfc3339)
            .unwrap_or(0);
        let mut down_since: Option<Instant> = None;
        loop {
            let session = self.cx.session(&self.session_id());
            let view = match &session {
                Ok(s) => SessionView::Found {
                    current_turn_id: s["currentTurnId"].as_str(),
                    last_turn_id: s["lastTurnId"].as_str(),
                    last_turn_status: s["lastTurnStatus"].as_str(),
                },
                Err(CallError::Http { status: 404, .. }) => SessionView::Missing,
                Err(_) => SessionView::Unreachable,
            };
            let open = OpenStep::Sending {
                prev_turn_id: step.prev_turn_id.as_deref(),
                sent_ms,
            };
            match decide(&open, &view, now_ms(), SEND_SETTLE_MS) {
                Decision::Follow(t) | Decision::Finished(t) => {
                    let s = self.run.step_mut(index);
                    s.status = "running".into();
                    s.turn_id = Some(t.clone());
                    s.started_at.get_or_insert_with(now_rfc3339);
                    self.save_run()?;
                    self.log(
                        "info",
                        &format!(
                            "step {}: codexd had started turn {t}; following it (not sent again)",
                            index + 1
                        ),
                        None,
                    );
                    return Ok(Some(t));
                }
                Decision::Send => {
                    self.log(
                        "warn",
                        &format!(
                            "step {}: codexd never started the turn; sending it",
                            index + 1
                        ),
                        None,
                    );
                    return Ok(None);
                }
                Decision::Lost => {
                    return Err(failed(
                        "session_lost",
                        "codexd no longer knows the run's session",
                        true,
                    ))
                }
                Decision::Wait => {}
            }
            if matches!(view, SessionView::Unreachable) {
                let since = *down_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= CODEXD_GRACE {
                    return Err(failed(
                        "codexd_unavailable",
                        "codexd stayed unreachable while a turn start was being settled",
                        true,
                    ));
                }
            } else {
                down_since = None;
            }
            match self.ctl.stop() {
                StopReason::Shutdown | StopReason::LostLease => {
                    return Err(End::Left(self.ctl.stop()))
                }
                _ => {}
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    fn interrupt(&mut self, turn_id: &str, why: Interrupt) {
        self.interrupted = Some(why);
        let what = match why {
            Interrupt::Cancel => "the task was canceled",
            Interrupt::Pause => "automation was paused with interrupt",
            Interrupt::Timeout => "the step ran past its timeout",
        };
        self.log(
            "warn",
            &format!("interrupting turn {turn_id}: {what}"),
            None,
        );
        if let Err(e) = self.cx.interrupt(&self.session_id(), turn_id) {
            self.log(
                "warn",
                &format!("the interrupt was not accepted: {}", e.message()),
                None,
            );
        }
    }

    /// Follows the turn to its end; returns its record.
    fn follow(&mut self, index: usize, turn_id: &str) -> Result<Value, End> {
        let started_ms = self
            .run
            .step(index)
            .and_then(|s| s.started_at.as_deref().or(s.sent_at.as_deref()))
            .and_then(ms_from_rfc3339)
            .unwrap_or_else(now_ms);
        let deadline_ms = started_ms.saturating_add(self.spec.timeout_s.saturating_mul(1000));
        let mut gave_up_at: Option<Instant> = None;
        let mut next_poll = Instant::now();
        let mut down_since: Option<Instant> = None;
        loop {
            match self.ctl.stop() {
                StopReason::None => {}
                StopReason::Cancel if self.interrupted != Some(Interrupt::Cancel) => {
                    self.interrupt(turn_id, Interrupt::Cancel);
                    gave_up_at = Some(Instant::now() + INTERRUPT_GRACE);
                }
                StopReason::Pause if self.interrupted.is_none() => {
                    self.interrupt(turn_id, Interrupt::Pause);
                    gave_up_at = Some(Instant::now() + INTERRUPT_GRACE);
                }
                why @ (StopReason::Shutdown | StopReason::LostLease) => return Err(End::Left(why)),
                _ => {}
            }
            if self.interrupted.is_none() && now_ms() >= deadline_ms {
                self.interrupt(turn_id, Interrupt::Timeout);
                gave_up_at = Some(Instant::now() + INTERRUPT_GRACE);
            }
            if gave_up_at.is_some_and(|t| Instant::now() >= t) {
                self.log(
                    "error",
                    &format!(
                        "turn {turn_id} did not end within {INTERRUPT_GRACE:?} of its interrupt"
                    ),
                    None,
                );
                return Err(self.interrupted_end(
                    &json!({"message": "the turn did not end after its interrupt"}),
                ));
            }
            let ended = match self.events.as_mut() {
                Some(ev) => match ev.next(TICK) {
                    Some(e) => self.on_event(&e, turn_id),
                    None => false,
                },
                None => {
                    thread::sleep(TICK);
                    false
                }
            };
            if ended {
                next_poll = Instant::now();
            }
            if Instant::now() < next_poll {
                continue;
            }
            let connected = self.events.as_ref().is_some_and(EventStream::connected);
            next_poll = Instant::now() + if connected { POLL_SLOW } else { POLL_FAST };
            let view = self.cx.session(&self.session_id());
            let s = match view {
                Ok(s) => {
                    down_since = None;
                    s
                }
                Err(CallError::Http { status: 404, .. }) => {
                    return Err(failed(
                        "session_lost",
                        "codexd no longer knows the run's session",
                        true,
                    ))
                }
                Err(e) => {
                    let since = *down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= CODEXD_GRACE {
                        return Err(failed(
                            "codexd_unavailable",
                            format!(
                                "codexd unreachable for {CODEXD_GRACE:?} during turn {turn_id}: {}",
                                e.message()
                            ),
                            true,
                        ));
                    }
                    continue;
                }
            };
            let view = SessionView::Found {
                current_turn_id: s["currentTurnId"].as_str(),
                last_turn_id: s["lastTurnId"].as_str(),
                last_turn_status: s["lastTurnStatus"].as_str(),
            };
            match decide(
                &OpenStep::Running { turn_id },
                &view,
                now_ms(),
                SEND_SETTLE_MS,
            ) {
                Decision::Follow(_) | Decision::Wait | Decision::Send => continue,
                Decision::Lost => {
                    return Err(failed(
                        "turn_lost",
                        format!("codexd does not know turn {turn_id}"),
                        true,
                    ))
                }
                Decision::Finished(_) => {
                    if s["lastTurn"]["turnId"] == turn_id {
                        return Ok(s["lastTurn"].clone());
                    }
                    return match self.cx.turn_record(&self.session_id(), turn_id) {
                        Ok(Some(r)) => Ok(r),
                        Ok(None) => Err(failed(
                            "turn_lost",
                            format!("turn {turn_id} is not in the session's history"),
                            true,
                        )),
                        Err(e) => Err(failed("codexd_unavailable", e.message(), true)),
                    };
                }
            }
        }
    }

    /// Handles one event; true when it says the turn ended.
    fn on_event(&mut self, e: &Value, turn_id: &str) -> bool {
        let d = &e["detail"];
        if d["sessionId"].as_str() != Some(self.session_id().as_str()) {
            return false;
        }
        let kind = e["type"].as_str().unwrap_or("");
        let ours = d["turnId"].is_null() || d["turnId"] == turn_id;
        match kind {
            "item/completed" if ours => self.on_item(&d["params"]["item"]),
            "request.pending" => self.on_request_pending(d),
            "request.answered" | "request.timeout" | "request.refused" | "request.abandoned" => {
                self.on_request_done(kind, d)
            }
            "turn.completed" | "turn.failed" | "turn.interrupted" => return d["turnId"] == turn_id,
            _ => {}
        }
        false
    }

    fn on_item(&mut self, item: &Value) {
        match item["type"].as_str() {
            Some("commandExecution") => {
                self.logged.0 += 1;
                self.log_command(item);
            }
            Some("fileChange") => {
                for c in item["changes"].as_array().into_iter().flatten() {
                    self.logged.1 += 1;
                    let kind = c["kind"]["type"]
                        .as_str()
                        .or(c["kind"].as_str())
                        .unwrap_or("update");
                    self.log_file(c["path"].as_str().unwrap_or("?"), kind);
                }
            }
            _ => {}
        }
    }

    fn log_command(&self, c: &Value) {
        let cmd = c["command"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| c["command"].to_string());
        let code = &c["exitCode"];
        let level = if code.as_i64().is_some_and(|n| n != 0) {
            "warn"
        } else {
            "info"
        };
        self.log(
            level,
            &format!("command `{}` exited {}", cut(&cmd, 500), if code.is_null() { "(no exit code)".into() } else { code.to_string() }),
            Some(json!({"command": cut(&cmd, 2048), "exit_code": code, "duration_ms": c["durationMs"]})),
        );
    }

    fn log_file(&self, path: &str, kind: &str) {
        self.log(
            "info",
            &format!("file {kind}: {path}"),
            Some(json!({"path": path, "kind": kind})),
        );
    }

    fn on_request_pending(&mut self, d: &Value) {
        let method = d["method"].as_str().unwrap_or("");
        let params = &d["params"];
        let kind = match method {
            "item/commandExecution/requestApproval" => "command",
            "item/fileChange/requestApproval" => "file_change",
            "item/permissions/requestApproval" => "permissions",
            other => other,
        };
        let mut waiting = json!({"request_id": d["requestId"], "kind": kind, "method": method, "deadline_at": d["deadlineAt"]});
        if let Some(c) = params.get("command").filter(|c| !c.is_null()) {
            waiting["command"] = c.clone();
        }
        if let Some(p) = params
            .get("path")
            .or_else(|| params.get("grantRoot"))
            .or_else(|| params.pointer("/changes/0/path"))
            .filter(|p| !p.is_null())
        {
            waiting["path"] = p.clone();
        }
        self.waiting_request = d["requestId"].as_str().map(str::to_string);
        let what = waiting
            .get("command")
            .or_else(|| waiting.get("path"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        self.log(
            "warn",
            &format!(
                "approval asked ({kind}{}): answer with POST /v1/codex/requests/{} by {}, else codexd answers {}",
                what.map(|w| format!(": {}", cut(&w, 300))).unwrap_or_default(),
                d["requestId"].as_str().unwrap_or("?"),
                d["deadlineAt"].as_str().unwrap_or("its deadline"),
                d["defaultDecision"].as_str().unwrap_or("its default"),
            ),
            Some(waiting.clone()),
        );
        self.update_task(|t| {
            t.waiting = Some(waiting);
            true
        });
    }

    fn on_request_done(&mut self, kind: &str, d: &Value) {
        let rid = d["requestId"].as_str().map(str::to_string);
        if rid.is_none() || rid != self.waiting_request {
            return;
        }
        let decision = d
            .pointer("/reply/result/decision")
            .and_then(Value::as_str)
            .unwrap_or("answered");
        let message = match kind {
            "request.timeout" => format!("approval timed out; codexd answered {decision}"),
            "request.answered" => format!(
                "approval answered: {decision} (by {})",
                d["answeredBy"].as_str().unwrap_or("?")
            ),
            other => format!("approval ended ({other})"),
        };
        self.log(
            if kind == "request.timeout" {
                "warn"
            } else {
                "info"
            },
            &message,
            None,
        );
        self.waiting_request = None;
        self.update_task(|t| {
            t.waiting = None;
            true
        });
    }

    /// The end for an interrupted turn, by who interrupted it.
    fn interrupted_end(&self, error: &Value) -> End {
        let msg = error["message"]
            .as_str()
            .unwrap_or("the turn was interrupted")
            .to_string();
        match self.interrupted {
            Some(Interrupt::Cancel) => End::Canceled,
            Some(Interrupt::Pause) => End::Paused,
            Some(Interrupt::Timeout) => failed(
                "step_timeout",
                format!(
                    "the step ran past its timeout of {} s and was interrupted",
                    self.spec.timeout_s
                ),
                true,
            ),
            None => failed("turn_interrupted", msg, true),
        }
    }

    fn finish_step(&mut self, index: usize, turn_id: &str, r: &Value) -> Result<(), End> {
        let total = self.spec.steps.len();
        let status = r["status"].as_str().unwrap_or("unknown").to_string();
        // What the stream did not show live (it was down, or the run resumed mid-turn).
        let commands: Vec<Value> = r["commands"].as_array().cloned().unwrap_or_default();
        for c in commands.iter().skip(self.logged.0) {
            self.log_command(c);
        }
        let files: Vec<Value> = r["fileChanges"].as_array().cloned().unwrap_or_default();
        for f in files.iter().skip(self.logged.1) {
            self.log_file(
                f["path"].as_str().unwrap_or("?"),
                f["kind"].as_str().unwrap_or("update"),
            );
        }
        let final_message = r["finalMessage"].as_str().map(str::to_string);
        let error = r.get("error").filter(|e| !e.is_null()).cloned();
        {
            let s = self.run.step_mut(index);
            s.turn_id = Some(turn_id.to_string());
            s.status = status.clone();
            s.finished_at = Some(
                r["completedAt"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(now_rfc3339),
            );
            s.final_message = final_message.clone();
            s.usage = r.get("usage").filter(|u| !u.is_null()).cloned();
            s.duration_ms = r["durationMs"].as_u64();
            s.error = error.clone();
        }
        if self.waiting_request.take().is_some() {
            self.update_task(|t| {
                t.waiting = None;
                true
            });
        }
        if status != "completed" {
            self.save_run()?;
            self.log(
                "error",
                &format!("step {}/{total} {status}: {}", index + 1, error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or("no error given")),
                Some(json!({"step": index + 1, "turn_id": turn_id, "status": status, "error": error})),
            );
            return Err(match status.as_str() {
                "interrupted" => self.interrupted_end(&error.unwrap_or(Value::Null)),
                "failed" => failed(
                    "turn_failed",
                    error
                        .as_ref()
                        .and_then(|e| e["message"].as_str())
                        .unwrap_or("the turn failed")
                        .to_string(),
                    true,
                ),
                other => failed(
                    "turn_lost",
                    format!("turn {turn_id} ended as {other}"),
                    true,
                ),
            });
        }
        self.run.final_message = final_message.clone();
        if let Some(u) = r.get("usage").filter(|u| !u.is_null()) {
            self.run.usage = Some(u.clone());
        }
        self.save_run()?;
        self.update_task(|t| {
            t.steps_done = t.steps_done.max(index + 1);
            t.final_message = final_message.clone();
            true
        });
        self.log(
            "info",
            &format!(
                "step {}/{total} completed (turn {turn_id}, {} ms)",
                index + 1,
                r["durationMs"]
                    .as_u64()
                    .map_or("?".into(), |d| d.to_string())
            ),
            Some(json!({"step": index + 1, "turn_id": turn_id, "usage": r.get("usage")})),
        );
        if let Some(m) = &final_message {
            self.log(
                "info",
                &format!("final message: {}", cut(m, MESSAGE_CAP)),
                None,
            );
        }
        // A cancel or pause that raced the turn's completion still stops the run here.
        Ok(())
    }

    fn push(&self) {
        if let Ok(t) = self.app.tasks.task(&self.task_id) {
            self.app.task_changed(&t);
        }
    }

    // ---- the end ----------------------------------------------------------------------

    fn finish(&mut self, end: End) {
        if let End::Left(why) = end {
            // Reconciled by the next leader or start.
            let why = match why {
                StopReason::None => "none",
                StopReason::Cancel => "cancel",
                StopReason::Pause => "pause",
                StopReason::Shutdown => "shutdown",
                StopReason::LostLease => "lost_lease",
            };
            baa::common::logging::event(
                "run.left_running",
                &[
                    ("task", &self.task_id),
                    ("run", &self.run.run_id),
                    ("why", &why),
                ],
            );
            self.app.tasks.logs.forget(&self.task_id, false);
            return;
        }
        let now = now_rfc3339();
        let (run_status, task_status, error) = match &end {
            End::Succeeded => ("succeeded", Status::Succeeded, None),
            End::Failed {
                code,
                message,
                retryable,
            } => (
                "failed",
                Status::Failed,
                Some(error_value(code, message, *retryable)),
            ),
            End::Canceled => ("canceled", Status::Canceled, None),
            End::Paused => ("paused", Status::Queued, None),
            End::Left(_) => unreachable!("returned above"),
        };
        let total = self.spec.steps.len();
        self.run.status = run_status.into();
        self.run.finished_at = Some(now.clone());
        self.run.error = error.clone();
        self.run.duration_ms = self
            .run
            .started_at
            .as_deref()
            .and_then(ms_from_rfc3339)
            .map(|s| now_ms().saturating_sub(s));
        let done = self
            .run
            .steps
            .iter()
            .filter(|s| s.status == "completed")
            .count();
        self.run.exit = Some(
            json!({"steps_completed": self.run.completed_through(), "steps_total": total, "completed_in_this_run": done}),
        );
        if let Err(e) = self.app.tasks.save_run(&self.run) {
            log::error!(
                "task {}: cannot persist the end of run {}: {e}",
                self.task_id,
                self.run.run_id
            );
            return;
        }
        let run_id = self.run.run_id.clone();
        let backoff = (
            self.app.cfg.task_backoff_ms,
            self.app.cfg.task_backoff_max_ms,
        );
        let mut retry_in: Option<u64> = None;
        let updated = self.update_task(|t| {
            if let Some(r) = t.runs.iter_mut().find(|r| r.run_id == run_id) {
                r.status = run_status.into();
            } else {
                t.runs.push(RunRef {
                    run_id: run_id.clone(),
                    attempt: 0,
                    status: run_status.into(),
                    started_at: None,
                });
            }
            t.waiting = None;
            t.error = error.clone();
            let mut status = task_status;
            if let Some(e) = &error {
                let failures = t.failures();
                if e["retryable"] == true && failures < t.max_attempts.max(1) {
                    status = Status::Queued;
                    let delay = backoff_ms(failures, backoff.0, backoff.1);
                    t.next_attempt_at = Some(rfc3339_from_ms(now_ms() + delay));
                    retry_in = Some(delay);
                }
            }
            t.status = status.as_str().into();
            if status.is_finished() {
                t.finished_at = Some(now.clone());
                t.next_attempt_at = None;
            }
            if t.cancel_requested && status == Status::Canceled {
                t.cancel_requested = false;
            }
            true
        });
        match (&end, retry_in) {
            (End::Succeeded, _) => self.log(
                "info",
                &format!("run {run_id} succeeded: {total} step(s) done"),
                None,
            ),
            (End::Failed { code, message, .. }, Some(delay)) => self.log(
                "error",
                &format!(
                    "run {run_id} failed ({code}: {message}); retrying in {} s",
                    delay / 1000
                ),
                Some(json!({"error": error, "retry_in_ms": delay})),
            ),
            (End::Failed { code, message, .. }, None) => self.log(
                "error",
                &format!("run {run_id} failed ({code}: {message}); the task failed"),
                Some(json!({"error": error})),
            ),
            (End::Canceled, _) => self.log("warn", &format!("run {run_id} canceled"), None),
            (End::Paused, _) => self.log(
                "warn",
                &format!("run {run_id} paused; the task waits in the queue for resume"),
                None,
            ),
            (End::Left(_), _) => {}
        }
        self.app.tasks.logs.forget(&self.task_id, false);
        if updated
            .as_ref()
            .and_then(Task::status)
            .is_some_and(Status::is_finished)
        {
            self.app.tasks.prune();
        }
    }
}

/// The retry delay after `failures` failed runs: `base` doubling, capped at `max`.
pub fn backoff_ms(failures: u32, base: u64, max: u64) -> u64 {
    let shift = failures.saturating_sub(1).min(32);
    base.saturating_mul(1u64 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let d: Vec<u64> = (1..=7).map(|f| backoff_ms(f, 10_000, 300_000)).collect();
        assert_eq!(
            d,
            [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]
        );
        assert_eq!(backoff_ms(0, 10, 100), 10);
        assert_eq!(backoff_ms(99, u64::MAX / 2, u64::MAX), u64::MAX);
    }
}
