//! A step's turn, sent exactly once. The order, each write durable before the next act:
//! the intent (`sending`, the session and thread it goes to, the session's last turn and
//! the time), then `POST /v1/codexd/turn`, then `running` with the turn id from the 202.
//! A start whose answer was lost, or an intent found on resumption, is settled against
//! the session (`reconcile::decide`) before anything is sent again.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339};

use super::super::codexd::CallError;
use super::super::control::StopReason;
use super::super::model::{error_value, StepRecord};
use super::super::reconcile::{decide, Decision, OpenStep, SessionView};
use super::super::replies::SessionReply;
use super::book::RunBook;
use super::session::{record_in_task, Idle};
use super::timings::Phase;
use super::{failed, session_lost, End, CODEXD_GRACE, INTERRUPT_GRACE, POLL_FAST, SEND_SETTLE_MS};

/// How often an unacknowledged start is checked against the session.
const SETTLE_POLL: Duration = Duration::from_millis(500);

/// The prompt, model and effort of step `index` as a turn body.
fn turn_body(book: &RunBook, index: usize) -> Value {
    let step = &book.spec.steps[index];
    let mut b = json!({"sessionId": book.session_id(), "input": step.prompt});
    if let Some(m) = &step.model {
        b["model"] = json!(m);
    }
    if let Some(e) = step.effort.as_ref().or(book.spec.effort.as_ref()) {
        b["effort"] = json!(e);
    }
    b
}

/// Sends step `index`'s turn and returns its id. `idle` is the session as just created or
/// found, when it runs nothing; otherwise the session is asked first.
pub fn send(book: &mut RunBook, index: usize, mut idle: Option<Idle>) -> Result<String, End> {
    for _ in 0..2 {
        if !book.is_leader() {
            return Err(End::Left(StopReason::LostLease));
        }
        let prev = match idle.take() {
            Some(i) => i.last_turn_id,
            None => wait_session_idle(book)?,
        };
        let t0 = Instant::now();
        *book.run.step_mut(index) = StepRecord {
            index,
            status: "sending".into(),
            prev_turn_id: prev,
            sent_at: Some(now_rfc3339()),
            ..StepRecord::default()
        };
        book.save_run()?;
        let total = book.total();
        let started = book.cx.start_turn(&turn_body(book, index));
        book.timings.add(Phase::Send, t0);
        match started {
            Ok(turn_id) => {
                let step = book.run.step_mut(index);
                step.status = "running".into();
                step.turn_id = Some(turn_id.clone());
                step.started_at = Some(now_rfc3339());
                book.save_run()?;
                book.log(
                    "info",
                    &format!("step {}/{total} started (turn {turn_id})", index + 1),
                    Some(json!({"step": index + 1, "turn_id": turn_id})),
                );
                // Also pushes the task to the bridge (the step started).
                record_in_task(book);
                return Ok(turn_id);
            }
            Err(CallError::Unknown(why)) => {
                book.log("warn", &format!("step {}/{total}: the turn start's answer was lost ({why}); checking codexd before anything is sent again", index + 1), None);
                let step = book.run.step(index).cloned().unwrap_or_default();
                match settle_unacked(book, index, &step)? {
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
                let message = format!("step {}: the turn was not started: {e}", index + 1);
                let step = book.run.step_mut(index);
                step.status = "failed".into();
                step.finished_at = Some(now_rfc3339());
                step.error = Some(error_value(&code, &message, retryable));
                book.save_run()?;
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
fn wait_session_idle(book: &mut RunBook) -> Result<Option<String>, End> {
    let t0 = Instant::now();
    let deadline = t0 + INTERRUPT_GRACE;
    let out = loop {
        let s = match book.cx.session(&book.session_id()) {
            Ok(s) => s,
            Err(CallError::Http { status: 404, .. }) => break Err(session_lost()),
            Err(e) => break Err(failed("codexd_unavailable", e.to_string(), true)),
        };
        if s.current_turn_id.is_none() || Instant::now() >= deadline {
            break Ok(s.last_turn_id);
        }
        match book.ctl.stop() {
            StopReason::None => {}
            StopReason::Cancel => break Err(End::Canceled),
            StopReason::Pause => break Err(End::Paused),
            why => break Err(End::Left(why)),
        }
        thread::sleep(POLL_FAST);
    };
    book.timings.add(Phase::Idle, t0);
    out
}

/// The session as `reconcile` reads it.
pub fn view(session: &Result<SessionReply, CallError>) -> SessionView<'_> {
    match session {
        Ok(s) => SessionView::Found {
            current_turn_id: s.current_turn_id.as_deref(),
            last_turn_id: s.last_turn_id.as_deref(),
            last_turn_status: s.last_turn_status.as_deref(),
        },
        Err(CallError::Http { status: 404, .. }) => SessionView::Missing,
        Err(_) => SessionView::Unreachable,
    }
}

/// Settles a step whose intent is recorded but whose turn is not: `Some(turn)` when
/// codexd started it (adopt), `None` when it never did (it may be sent).
pub fn settle_unacked(
    book: &mut RunBook,
    index: usize,
    step: &StepRecord,
) -> Result<Option<String>, End> {
    let sent_ms = step
        .sent_at
        .as_deref()
        .and_then(ms_from_rfc3339)
        .unwrap_or(0);
    let mut down_since: Option<Instant> = None;
    loop {
        let session = book.cx.session(&book.session_id());
        let view = view(&session);
        let open = OpenStep::Sending {
            prev_turn_id: step.prev_turn_id.as_deref(),
            sent_ms,
        };
        match decide(&open, &view, now_ms(), SEND_SETTLE_MS) {
            Decision::Follow(t) | Decision::Finished(t) => {
                let s = book.run.step_mut(index);
                s.status = "running".into();
                s.turn_id = Some(t.clone());
                s.started_at.get_or_insert_with(now_rfc3339);
                book.save_run()?;
                book.log(
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
                book.log(
                    "warn",
                    &format!(
                        "step {}: codexd never started the turn; sending it",
                        index + 1
                    ),
                    None,
                );
                return Ok(None);
            }
            Decision::Lost => return Err(session_lost()),
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
        if let why @ (StopReason::Shutdown | StopReason::LostLease) = book.ctl.stop() {
            return Err(End::Left(why));
        }
        thread::sleep(SETTLE_POLL);
    }
}
