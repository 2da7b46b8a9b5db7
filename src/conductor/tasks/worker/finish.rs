//! Recording outcomes: a step's (from its turn record) and then the run's (the run, its
//! end line in the task log, the task with a retry's backoff). The run file is always written first; the step
//! lines and the task's progress follow from it (`RunBook::publish_steps`, `close`), so
//! a conductor killed between the writes leaves the next start the same writes to make:
//! a run still in flight is resumed and publishes what it had recorded, a run whose end
//! is on disk is closed from it (`recorded_end`). The last step's outcome and the run's
//! end are one write of the run: a conductor stopped between the turn's end and that
//! write finds the step `running` with its turn id and records it from codexd (never
//! sent again).

use std::time::Instant;

use serde_json::{json, Value};

use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339, rfc3339_from_ms};

use super::super::control::StopReason;
use super::super::model::{error_value, Run, RunRef, Status, Task, TaskResult};
use super::super::progress::{Line, Progress};
use super::super::replies::TurnRecord;
use super::book::RunBook;
use super::follow::{log_command, log_file, Follower};
use super::timings::Phase;
use super::workspace;
use super::{failed, End};

/// Records step `index`'s outcome from its turn record; an outcome other than `completed`
/// ends the run. `last`: the run's end follows at once and writes run and task itself.
pub fn step(
    book: &mut RunBook,
    follower: &mut Follower,
    index: usize,
    turn_id: &str,
    r: &TurnRecord,
    last: bool,
) -> Result<(), End> {
    let t0 = Instant::now();
    let out = step_inner(book, follower, index, turn_id, r, last);
    book.timings.add(Phase::Finish, t0);
    out
}

fn step_inner(
    book: &mut RunBook,
    follower: &mut Follower,
    index: usize,
    turn_id: &str,
    r: &TurnRecord,
    last: bool,
) -> Result<(), End> {
    let total = book.total();
    // What the stream did not show live (it was down, or the run resumed mid-turn).
    for c in r.commands.iter().skip(follower.logged.0) {
        log_command(book, c);
    }
    for f in r.file_changes.iter().skip(follower.logged.1) {
        log_file(
            book,
            f.path.as_deref().unwrap_or("?"),
            f.kind.as_deref().unwrap_or("update"),
        );
    }
    {
        let s = book.run.step_mut(index);
        s.turn_id = Some(turn_id.to_string());
        s.status = r.status.clone();
        s.finished_at = Some(r.completed_at.clone().unwrap_or_else(now_rfc3339));
        s.final_message = r.final_message.clone();
        s.usage = r.usage.clone();
        s.duration_ms = r.duration_ms;
        s.error = r.error.clone();
    }
    if r.status != "completed" {
        let waiting = follower.waiting_request.take().is_some();
        book.save_run()?;
        if waiting {
            book.update_task(|t| {
                t.waiting = None;
                true
            });
        }
        let (level, what) = match r.status.as_str() {
            "interrupted" => follower.interrupted_line(book, r.error_message()),
            status => (
                "error",
                format!(
                    "{status}: {}",
                    r.error_message().unwrap_or("codex gave no error message")
                ),
            ),
        };
        book.log(
            level,
            &format!("step {}/{total} {what}", index + 1),
            Some(json!({"step": index + 1, "turn_id": turn_id, "status": r.status, "error": r.error})),
        );
        return Err(match r.status.as_str() {
            "interrupted" => follower.interrupted_end(
                book,
                r.error_message().unwrap_or("the turn was interrupted"),
            ),
            "failed" => failed(
                "turn_failed",
                r.error_message().unwrap_or("the turn failed"),
                true,
            ),
            other => failed(
                "turn_lost",
                format!("turn {turn_id} ended as {other}"),
                true,
            ),
        });
    }
    book.run.final_message = r.final_message.clone();
    if let Some(u) = &r.usage {
        book.run.usage = Some(u.clone());
    }
    // The last step's record is written with the run's end (`end_run`), one write of
    // the run; its lines and the task follow that write the same way.
    if last {
        return Ok(());
    }
    let waiting = follower.waiting_request.take().is_some();
    book.save_run()?;
    book.publish_steps(waiting);
    // A cancel or pause that raced the turn's completion still stops the run here.
    Ok(())
}

/// Writes the run's end to the run, the task and the task log; a run left (stop, lost
/// lease) writes nothing, for the next leader or start to reconcile.
pub fn run(book: &mut RunBook, end: End) {
    let t0 = Instant::now();
    end_run(book, end);
    book.timings.add(Phase::Finish, t0);
}

fn end_run(book: &mut RunBook, end: End) {
    if let End::Left(why) = end {
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
                ("task", &book.task_id),
                ("run", &book.run.run_id),
                ("why", &why),
            ],
        );
        book.app.tasks.logs.forget(&book.task_id, false);
        return;
    }
    let now = now_rfc3339();
    let (run_status, error) = match &end {
        End::Succeeded => ("succeeded", None),
        End::Failed {
            code,
            message,
            retryable,
        } => ("failed", Some(error_value(code, message, *retryable))),
        End::Canceled => ("canceled", None),
        End::Paused | End::Held(_) => ("paused", None),
        End::Left(_) => unreachable!("returned above"),
    };
    let total = book.total();
    book.run.status = run_status.into();
    book.run.finished_at = Some(now.clone());
    book.run.error = error;
    book.run.duration_ms = book
        .run
        .started_at
        .as_deref()
        .and_then(ms_from_rfc3339)
        .map(|s| now_ms().saturating_sub(s));
    let done = book
        .run
        .steps
        .iter()
        .filter(|s| s.status == "completed")
        .count();
    let completed_through = book.run.completed_through();
    book.run.exit = Some(
        json!({"steps_completed": completed_through, "steps_total": total, "completed_in_this_run": done}),
    );
    if book.save_run().is_err() {
        return;
    }
    close(book, &end);
}

/// The end of a run whose file says it ended, found at start with its task still
/// `running` (the conductor was killed between the run's last write and the task's):
/// `None` while the run is in flight.
pub fn recorded_end(run: &Run) -> Option<End> {
    let e = run.error.as_ref();
    let text = |k: &str| {
        e.and_then(|e| e[k].as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some(match run.status.as_str() {
        "succeeded" => End::Succeeded,
        "failed" => End::Failed {
            code: text("code"),
            message: text("message"),
            retryable: e.is_some_and(|e| e["retryable"] == true),
        },
        "canceled" => End::Canceled,
        "paused" => End::Paused,
        _ => return None,
    })
}

/// What follows the run's end on disk, the same after a live end and after a restart:
/// the step lines, the run's end line, then the task (its progress from the run, its
/// status, a retry's backoff). The end line goes before the task's write: once the task no
/// longer says `running` nothing settles the run again, so a line written after it would
/// be lost to a kill between the two; a line already there (killed after it) is not
/// written again.
pub fn close(book: &mut RunBook, end: &End) {
    let now = now_rfc3339();
    let (run_status, task_status) = match end {
        End::Succeeded => ("succeeded", Status::Succeeded),
        End::Failed { .. } => ("failed", Status::Failed),
        End::Canceled => ("canceled", Status::Canceled),
        End::Paused | End::Held(_) => ("paused", Status::Queued),
        End::Left(_) => return,
    };
    let error = book.run.error.clone();
    let result = book.run.result.clone();
    book.log_completed_steps();
    let progress = Progress::of(&book.run);
    let run_id = book.run.run_id.clone();
    let (session_id, thread_id) = (book.run.session_id.clone(), book.run.thread_id.clone());
    let backoff = (
        book.app.cfg.task_backoff_ms,
        book.app.cfg.task_backoff_max_ms,
    );
    // Decided once, before both writes, so the line and the task say the same.
    let retry_in = book
        .app
        .tasks
        .task(&book.task_id)
        .ok()
        .and_then(|t| retry_delay(&t, &run_id, end, backoff));
    if book.take_end_line() {
        let (level, message, detail) = end_line(
            &run_id,
            book.total(),
            end,
            error.as_ref(),
            result.as_ref(),
            retry_in,
        );
        book.log(level, &message, detail);
    }
    let updated = book.update_task(|t| {
        if let Some(r) = t.runs.iter_mut().find(|r| r.run_id == run_id) {
            r.status = run_status.into();
        } else {
            t.runs.push(RunRef {
                run_id: run_id.clone(),
                attempt: 0,
                status: run_status.into(),
                started_at: None,
                thread_id: None,
                usage: None,
            });
        }
        progress.apply(t);
        if session_id.is_some() {
            t.session_id = session_id;
            t.thread_id = thread_id;
        }
        t.waiting = None;
        t.error = error.clone();
        if result.is_some() {
            t.result = result.clone();
        }
        let mut status = task_status;
        if let Some(delay) = retry_in {
            status = Status::Queued;
            t.next_attempt_at = Some(rfc3339_from_ms(now_ms() + delay));
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
    book.app.tasks.logs.forget(&book.task_id, false);
    if updated
        .as_ref()
        .and_then(Task::status)
        .is_some_and(Status::is_finished)
    {
        book.app.tasks.prune();
    }
}

/// The delay before the task runs again after its run `run_id` ended with `end`: a
/// retryable failure with attempts left; `None` otherwise.
fn retry_delay(t: &Task, run_id: &str, end: &End, (base, max): (u64, u64)) -> Option<u64> {
    let End::Failed {
        retryable: true, ..
    } = end
    else {
        return None;
    };
    // This run counts as failed whether or not the task's record says so yet.
    let counted = t
        .runs
        .iter()
        .skip(t.retry_from)
        .any(|r| r.run_id == run_id && r.status == "failed");
    let failures = t.failures() + u32::from(!counted);
    (failures < t.max_attempts.max(1)).then(|| backoff_ms(failures, base, max))
}

/// The run's end line, the same live and after a restart; `detail.end` (the run's status)
/// marks it, so a restart finds it already written (`progress::Logged`).
fn end_line(
    run_id: &str,
    total: usize,
    end: &End,
    error: Option<&Value>,
    result: Option<&TaskResult>,
    retry_in: Option<u64>,
) -> Line {
    match (end, retry_in) {
        (End::Succeeded, _) => match result {
            Some(r) => (
                "info",
                format!(
                    "run {run_id} succeeded: {total} step(s) done; {}",
                    workspace::summary(r)
                ),
                Some(json!({"end": "succeeded", "result": r})),
            ),
            None => (
                "info",
                format!("run {run_id} succeeded: {total} step(s) done"),
                Some(json!({"end": "succeeded"})),
            ),
        },
        (End::Failed { code, message, .. }, Some(delay)) => (
            "error",
            format!(
                "run {run_id} failed ({code}: {message}); retrying in {} s",
                delay / 1000
            ),
            Some(json!({"end": "failed", "error": error, "retry_in_ms": delay})),
        ),
        (End::Failed { code, message, .. }, None) => (
            "error",
            format!("run {run_id} failed ({code}: {message}); the task failed"),
            Some(json!({"end": "failed", "error": error})),
        ),
        (End::Canceled, _) => (
            "warn",
            format!("run {run_id} canceled"),
            Some(json!({"end": "canceled"})),
        ),
        (End::Paused, _) => (
            "warn",
            format!("run {run_id} paused; the task waits in the queue for resume"),
            Some(json!({"end": "paused"})),
        ),
        (End::Held(until), _) => (
            "warn",
            format!("run {run_id} stopped before its next step: the codex usage limit is used up until {until}; the task waits in the queue (no attempt spent)"),
            Some(json!({"end": "paused", "held_until": until})),
        ),
        (End::Left(_), _) => unreachable!("a run left has no end line (close returns first)"),
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
