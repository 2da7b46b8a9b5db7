//! Following a turn to its end: codexd's event stream for the live view (commands, file
//! changes, approvals asked and answered, the turn's end), a session poll beside it as the
//! safety net, and the run's stop requests (cancel and pause interrupt the turn; a stop or
//! a lost lease leaves it running for the next leader). What was logged live is counted,
//! so `finish` logs only what the stream did not show.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::time::{ms_from_rfc3339, now_ms};

use super::super::codexd::{CallError, Codexd};
use super::super::control::StopReason;
use super::super::events::EventStream;
use super::super::logs::cut;
use super::super::reconcile::{decide, Decision, OpenStep};
use super::super::replies::{CommandRun, EventDetail, EventFrame, Item, TurnRecord};
use super::book::RunBook;
use super::send::view;
use super::timings::Phase;
use super::{failed, session_lost, End, CODEXD_GRACE, INTERRUPT_GRACE, POLL_FAST};

/// How long one wait on the event stream lasts (the stop checks run between waits).
const TICK: Duration = Duration::from_millis(200);
/// Session poll while the event stream is up (a safety net).
const POLL_SLOW: Duration = Duration::from_secs(2);
/// A run refreshes the dispatch gate's reading of codexd's limits when it is older than
/// this, once its turn has run [`HOLD_REFRESH_AFTER`]: the scheduler's check before the
/// next task then finds it fresh instead of reading codexd's status between two tasks.
const HOLD_REFRESH: Duration = Duration::from_secs(2);
/// Not at once: the turn's start (codexd, the app-server, the model request) goes first.
const HOLD_REFRESH_AFTER: Duration = Duration::from_millis(100);
/// How long a turn the session shows ended may take to show its end on the stream.
const CATCH_UP: Duration = Duration::from_millis(300);

/// Why this worker interrupted the turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interrupt {
    Cancel,
    Pause,
    Timeout,
}

/// The event stream from codexd's newest event on; `None` (poll only) when it cannot be had.
pub fn open_stream(cx: &Codexd, task_id: &str) -> Option<EventStream> {
    let opened = cx
        .events_path()
        .and_then(|path| Ok(EventStream::new(cx.base(), &path, cx.last_seq(&path)?)));
    match opened {
        Ok(s) => Some(s),
        Err(e) => {
            log::debug!("task {task_id}: no event stream ({e}); polling");
            None
        }
    }
}

pub struct Follower {
    events: Option<EventStream>,
    pub interrupted: Option<Interrupt>,
    /// Command and file lines logged live for the step in flight.
    pub logged: (usize, usize),
    /// The approval the task shows as waiting, if any.
    pub waiting_request: Option<String>,
    /// Whether codexd's account or rate limits may have changed while this run watched:
    /// it saw a `limits.*` or `account.*` event, or it did not see every event (no stream,
    /// or the stream was down at some point).
    pub hold_may_have_changed: bool,
    /// The stream showed the end of the turn followed.
    end_seen: bool,
}

impl Follower {
    pub fn new(events: Option<EventStream>) -> Follower {
        Follower {
            interrupted: None,
            logged: (0, 0),
            waiting_request: None,
            hold_may_have_changed: events.is_none(),
            end_seen: false,
            events,
        }
    }

    /// Forgets the last step's interrupt and live counts.
    pub fn reset(&mut self) {
        self.interrupted = None;
        self.logged = (0, 0);
        self.end_seen = false;
    }

    /// Reads the stream up to the turn's end event, when the session showed the end
    /// first: what the turn did is then logged live (not from the record), and any
    /// `limits.*` event before the end is seen. Bounded; a stream that lags past the
    /// bound counts as not seen in full.
    fn catch_up(&mut self, book: &mut RunBook, turn_id: &str) {
        let deadline = Instant::now() + CATCH_UP;
        while !self.end_seen {
            let Some(ev) = self.events.as_mut().filter(|e| e.connected()) else {
                self.hold_may_have_changed = true;
                return;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.hold_may_have_changed = true;
                return;
            }
            if let Some(e) = ev.next(left) {
                self.on_event(book, e, turn_id);
            }
        }
    }

    /// Follows the turn to its end; returns its record.
    pub fn follow(
        &mut self,
        book: &mut RunBook,
        index: usize,
        turn_id: &str,
    ) -> Result<TurnRecord, End> {
        let t0 = Instant::now();
        let out = self.follow_inner(book, index, turn_id);
        book.timings.add(Phase::Turn, t0);
        out
    }

    fn follow_inner(
        &mut self,
        book: &mut RunBook,
        index: usize,
        turn_id: &str,
    ) -> Result<TurnRecord, End> {
        let started_ms = book
            .run
            .step(index)
            .and_then(|s| s.started_at.as_deref().or(s.sent_at.as_deref()))
            .and_then(ms_from_rfc3339)
            .unwrap_or_else(now_ms);
        let deadline_ms = started_ms.saturating_add(book.spec.timeout_s.saturating_mul(1000));
        let mut gave_up_at: Option<Instant> = None;
        let mut next_poll = Instant::now();
        let mut down_since: Option<Instant> = None;
        let mut refresh_at = Some(Instant::now() + HOLD_REFRESH_AFTER);
        loop {
            if refresh_at.is_some_and(|t| Instant::now() >= t) {
                refresh_at = None;
                book.app
                    .codex_hold
                    .read_if_older(&book.app.codex, HOLD_REFRESH);
            }
            match book.ctl.stop() {
                StopReason::None => {}
                StopReason::Cancel if self.interrupted != Some(Interrupt::Cancel) => {
                    self.interrupt(book, turn_id, Interrupt::Cancel);
                    gave_up_at = Some(Instant::now() + INTERRUPT_GRACE);
                }
                StopReason::Pause if self.interrupted.is_none() => {
                    self.interrupt(book, turn_id, Interrupt::Pause);
                    gave_up_at = Some(Instant::now() + INTERRUPT_GRACE);
                }
                why @ (StopReason::Shutdown | StopReason::LostLease) => return Err(End::Left(why)),
                _ => {}
            }
            if self.interrupted.is_none() && now_ms() >= deadline_ms {
                self.interrupt(book, turn_id, Interrupt::Timeout);
                gave_up_at = Some(Instant::now() + INTERRUPT_GRACE);
            }
            if gave_up_at.is_some_and(|t| Instant::now() >= t) {
                book.log(
                    "error",
                    &format!(
                        "turn {turn_id} did not end within {INTERRUPT_GRACE:?} of its interrupt"
                    ),
                    None,
                );
                return Err(self.interrupted_end(book, "the turn did not end after its interrupt"));
            }
            let ended = match self.events.as_mut() {
                Some(ev) => match ev.next(TICK) {
                    Some(e) => self.on_event(book, e, turn_id),
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
            if !connected {
                self.hold_may_have_changed = true;
            }
            next_poll = Instant::now() + if connected { POLL_SLOW } else { POLL_FAST };
            let session = book.cx.session(&book.session_id());
            match &session {
                Ok(_) => down_since = None,
                Err(CallError::Http { status: 404, .. }) => return Err(session_lost()),
                Err(e) => {
                    let since = *down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= CODEXD_GRACE {
                        return Err(failed(
                            "codexd_unavailable",
                            format!(
                                "codexd unreachable for {CODEXD_GRACE:?} during turn {turn_id}: {e}"
                            ),
                            true,
                        ));
                    }
                    continue;
                }
            }
            match decide(
                &OpenStep::Running { turn_id },
                &view(&session),
                now_ms(),
                super::SEND_SETTLE_MS,
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
                    self.catch_up(book, turn_id);
                    if let Some(r) = session
                        .ok()
                        .and_then(|s| s.last_turn)
                        .filter(|r| r.turn_id == turn_id)
                    {
                        return Ok(r);
                    }
                    return match book.cx.turn_record(&book.session_id(), turn_id) {
                        Ok(Some(r)) => Ok(r),
                        Ok(None) => Err(failed(
                            "turn_lost",
                            format!("turn {turn_id} is not in the session's history"),
                            true,
                        )),
                        Err(e) => Err(failed("codexd_unavailable", e.to_string(), true)),
                    };
                }
            }
        }
    }

    fn interrupt(&mut self, book: &RunBook, turn_id: &str, why: Interrupt) {
        self.interrupted = Some(why);
        let what = match why {
            Interrupt::Cancel => "the task was canceled",
            Interrupt::Pause => "automation was paused with interrupt",
            Interrupt::Timeout => "the step ran past its timeout",
        };
        // An operator's cancel or pause is what they asked for, not a problem.
        let level = if why == Interrupt::Timeout {
            "warn"
        } else {
            "info"
        };
        book.log(level, &format!("interrupting turn {turn_id}: {what}"), None);
        if let Err(e) = book.cx.interrupt(&book.session_id(), turn_id) {
            book.log(
                "warn",
                &format!("the interrupt was not accepted: {e}"),
                None,
            );
        }
    }

    /// The task-log line (level, words after `step N/M `) of a step whose turn ended
    /// `interrupted`: who asked for it (a cancel, a pause, the step's timeout, or someone
    /// outside this conductor), at info for a deliberate one.
    pub fn interrupted_line(&self, book: &RunBook, error: Option<&str>) -> (&'static str, String) {
        match self.interrupted {
            Some(Interrupt::Cancel) => ("info", "interrupted by a cancel of the task".into()),
            Some(Interrupt::Pause) => (
                "info",
                "interrupted by a pause with interrupt; the task goes back to the queue".into(),
            ),
            Some(Interrupt::Timeout) => (
                "error",
                format!(
                    "interrupted: the step ran past its timeout of {} s",
                    book.spec.timeout_s
                ),
            ),
            None => (
                "error",
                format!(
                    "interrupted, not by this conductor (codexd, its app-server or another client): {}",
                    error.unwrap_or("no reason given")
                ),
            ),
        }
    }

    /// The end for an interrupted turn, by who interrupted it.
    pub fn interrupted_end(&self, book: &RunBook, message: &str) -> End {
        match self.interrupted {
            Some(Interrupt::Cancel) => End::Canceled,
            Some(Interrupt::Pause) => End::Paused,
            Some(Interrupt::Timeout) => failed(
                "step_timeout",
                format!(
                    "the step ran past its timeout of {} s and was interrupted",
                    book.spec.timeout_s
                ),
                true,
            ),
            None => failed("turn_interrupted", message, true),
        }
    }

    /// Handles one event frame; true when it says the turn ended.
    fn on_event(&mut self, book: &mut RunBook, frame: Value, turn_id: &str) -> bool {
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or("");
        if kind.starts_with("limits.") || kind.starts_with("account.") {
            self.hold_may_have_changed = true;
        }
        let Ok(e) = serde_json::from_value::<EventFrame>(frame) else {
            return false;
        };
        let d = &e.detail;
        if d.session_id.as_deref() != Some(book.session_id().as_str()) {
            return false;
        }
        let ours = d.turn_id.as_deref().is_none_or(|t| t == turn_id);
        match e.kind.as_str() {
            "item/completed" if ours => self.on_item(book, d),
            "request.pending" => self.on_request_pending(book, d),
            "request.answered" | "request.timeout" | "request.refused" | "request.abandoned" => {
                self.on_request_done(book, &e.kind, d)
            }
            // The app-server's own `turn/completed` comes first: codexd has updated the
            // session by then, and records the turn before its `turn.*` event.
            "turn/completed" | "turn.completed" | "turn.failed" | "turn.interrupted"
                if d.turn_id.as_deref() == Some(turn_id) =>
            {
                self.end_seen = true;
                return true;
            }
            _ => {}
        }
        false
    }

    fn on_item(&mut self, book: &RunBook, d: &EventDetail) {
        match d.item() {
            Some(Item::CommandExecution(c)) => {
                self.logged.0 += 1;
                log_command(book, &c);
            }
            Some(Item::FileChange { changes }) => {
                for c in &changes {
                    self.logged.1 += 1;
                    log_file(book, c.path.as_deref().unwrap_or("?"), c.kind());
                }
            }
            Some(Item::Other) | None => {}
        }
    }

    fn on_request_pending(&mut self, book: &mut RunBook, d: &EventDetail) {
        let method = d.method.as_deref().unwrap_or("");
        let params = &d.params;
        let kind = match method {
            "item/commandExecution/requestApproval" => "command",
            "item/fileChange/requestApproval" => "file_change",
            "item/permissions/requestApproval" => "permissions",
            other => other,
        };
        let mut waiting = json!({"request_id": d.request_id, "kind": kind, "method": method, "deadline_at": d.deadline_at});
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
        self.waiting_request = d.request_id.clone();
        let what = waiting
            .get("command")
            .or_else(|| waiting.get("path"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        book.log(
            "warn",
            &format!(
                "approval asked ({kind}{}): answer with POST /v1/codex/requests/{} by {}, else codexd answers {}",
                what.map(|w| format!(": {}", cut(&w, 300))).unwrap_or_default(),
                d.request_id.as_deref().unwrap_or("?"),
                d.deadline_at.as_deref().unwrap_or("its deadline"),
                d.default_decision.as_deref().unwrap_or("its default"),
            ),
            Some(waiting.clone()),
        );
        book.update_task(|t| {
            t.waiting = Some(waiting);
            true
        });
    }

    fn on_request_done(&mut self, book: &mut RunBook, kind: &str, d: &EventDetail) {
        if d.request_id.is_none() || d.request_id != self.waiting_request {
            return;
        }
        let decision = d
            .reply
            .pointer("/result/decision")
            .and_then(Value::as_str)
            .unwrap_or("answered");
        let message = match kind {
            "request.timeout" => format!("approval timed out; codexd answered {decision}"),
            "request.answered" => format!(
                "approval answered: {decision} (by {})",
                d.answered_by.as_deref().unwrap_or("?")
            ),
            other => format!("approval ended ({other})"),
        };
        let level = if kind == "request.timeout" {
            "warn"
        } else {
            "info"
        };
        book.log(level, &message, None);
        self.waiting_request = None;
        book.update_task(|t| {
            t.waiting = None;
            true
        });
    }
}

pub fn log_command(book: &RunBook, c: &CommandRun) {
    let cmd = c.text();
    let level = if c.exit_code.is_some_and(|n| n != 0) {
        "warn"
    } else {
        "info"
    };
    let code = c
        .exit_code
        .map_or("(no exit code)".to_string(), |n| n.to_string());
    book.log(
        level,
        &format!("command `{}` exited {code}", cut(&cmd, 500)),
        Some(json!({"command": cut(&cmd, 2048), "exit_code": c.exit_code, "duration_ms": c.duration_ms})),
    );
}

pub fn log_file(book: &RunBook, path: &str, kind: &str) {
    book.log(
        "info",
        &format!("file {kind}: {path}"),
        Some(json!({"path": path, "kind": kind})),
    );
}
