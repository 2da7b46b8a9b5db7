//! One run of a task, driven on its own named thread: a codexd session (`purpose:
//! "worker"`) for the task's thread, then each remaining step as one turn in that thread,
//! started only after the previous one completed, followed on codexd's event stream with a
//! session poll beside it, and its outcome written to the run, the task and the task log.
//!
//! The parts, each owning one job: [`book::RunBook`] (the run's records and their writes),
//! `workspace` (a worktree task's worktree before the session, its commit after the last
//! step), `session` (the run's codexd session), `send` (a step's turn, exactly once),
//! `follow` (the turn to its end) and `finish` (a step's outcome, then the run's).
//!
//! One place for a step's outcome: the run's step record is written first, and the task's
//! `steps_done`, `final_message` and the "step k/N completed" lines are derived from it
//! (`RunBook::publish_steps`, `finish::close`, on `progress`), the same after a live
//! finish, on resumption, and for a run found ended at start with its task still running.
//!
//! Exactly once: before a turn is sent, the step's intent is persisted (with the session
//! and thread it goes to); after the 202, its turn id. A run found mid-step (after a
//! conductor restart or a lease takeover) is settled by `reconcile::decide` against the
//! session before anything is sent again; see that module for the reasoning. A completed
//! step is never sent again: a retry starts at the first step not completed, in the same
//! thread.
//!
//! How a run ends: `succeeded`; `failed` with `error {code, message, retryable}` (retryable
//! ones go back to the queue with backoff until `max_attempts`); `canceled`; `paused` (the
//! mode was paused: between steps, or mid-turn with `"interrupt": true`; the task goes back
//! to the queue, no attempt spent); or left `running` when the conductor stops or loses the
//! lease, for the next leader to reconcile.

mod book;
mod finish;
mod follow;
mod send;
mod session;
mod timings;
mod workspace;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::json;

use super::control::{RunControl, StopReason};
use super::model::Run;
use crate::app::App;
use crate::system::Mode;
use book::RunBook;
use follow::Follower;
use timings::Phase;

/// Session poll while the event stream is down.
const POLL_FAST: Duration = Duration::from_millis(300);
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
    /// Stopped between steps because the usage limit is used up until then (RFC 3339):
    /// like a pause, the task goes back to the queue without spending an attempt.
    Held(String),
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

fn session_lost() -> End {
    failed(
        "session_lost",
        "codexd no longer knows the run's session",
        true,
    )
}

/// Whether the run's file says it ended (a thread given it settles its task from it).
pub fn has_ended(run: &Run) -> bool {
    finish::recorded_end(run).is_some()
}

/// Starts the run's thread for `run` (as dispatched, or as read back for a resumed run).
pub fn spawn(app: Arc<App>, ctl: Arc<RunControl>, run: Run) -> std::io::Result<JoinHandle<()>> {
    let n = ctl.run_id.chars().count();
    let short: String = ctl.run_id.chars().skip(n.saturating_sub(8)).collect();
    thread::Builder::new()
        .name(format!("task-run-{short}"))
        .spawn(move || {
            let first = run.clone();
            let outcome = catch_unwind(AssertUnwindSafe(|| drive_run(&app, &ctl, run)));
            if outcome.is_err() {
                log::error!(
                    "task {}: run {} panicked; it is failed so it cannot loop",
                    ctl.task_id,
                    ctl.run_id
                );
                // The run as last written, or as dispatched when it never was.
                let run = app.tasks.run(&ctl.run_id).unwrap_or(first);
                if let Some(mut book) = RunBook::load(&app, &ctl, run) {
                    finish::run(
                        &mut book,
                        failed(
                            "internal_error",
                            "the run's worker panicked (a bug); see the conductor log",
                            false,
                        ),
                    );
                }
            }
            app.sched.unregister(&ctl.task_id, &ctl.run_id);
            // The turns just run may have used the rate limits up: read them again first,
            // unless the run saw every codexd event and none was about limits or the account
            // (codexd announces a hold's change as `limits.*` / `account.*`). A panicked run
            // counts as one that may have.
            if !matches!(outcome, Ok(Watched::EveryEventNoHoldChange)) {
                app.codex_hold.invalidate();
            }
            app.sched.wake();
        })
}

/// What a run saw of codexd's account and limits (whether the dispatch gate must read
/// them again before the next run).
enum Watched {
    EveryEventNoHoldChange,
    MayHaveChanged,
}

fn drive_run(app: &Arc<App>, ctl: &RunControl, run: Run) -> Watched {
    let Some(mut book) = RunBook::load(app, ctl, run) else {
        log::error!(
            "task {}: run {} cannot be loaded; left as is",
            ctl.task_id,
            ctl.run_id
        );
        return Watched::MayHaveChanged;
    };
    if let Some(end) = finish::recorded_end(&book.run) {
        // The run's end is on disk and its task never learned it (the conductor was
        // killed between the two writes): the task and the log follow from the run now,
        // as they would have then. Nothing is sent.
        log::info!(
            "task {}: run {} had ended ({}); settling the task from it",
            book.task_id,
            book.run.run_id,
            book.run.status
        );
        finish::close(&mut book, &end);
        return Watched::MayHaveChanged;
    }
    let (end, watched) = drive(&mut book);
    // The turns' changes are committed before the run's end is written, so the result
    // goes with that write; a kill in between commits nothing more on the next try.
    let end = match end {
        End::Succeeded => workspace::commit(&mut book),
        other => other,
    };
    let watched = match end {
        End::Succeeded => watched,
        // A failed turn may have failed on the limits, which codexd reads again after it.
        _ => Watched::MayHaveChanged,
    };
    finish::run(&mut book, end);
    book.timings.report(&book.task_id, &book.run.run_id);
    watched
}

fn drive(book: &mut RunBook) -> (End, Watched) {
    let mut follower = None;
    let end = drive_with(book, &mut follower);
    let watched = match follower {
        Some(f) if !f.hold_may_have_changed => Watched::EveryEventNoHoldChange,
        _ => Watched::MayHaveChanged,
    };
    (end, watched)
}

fn drive_with(book: &mut RunBook, follower_slot: &mut Option<Follower>) -> End {
    let task = match book.app.tasks.task(&book.task_id) {
        Ok(t) => t,
        Err(e) => return failed("internal_error", e.message, false),
    };
    if task.cancel_requested {
        book.ctl.request(StopReason::Cancel);
    }
    let resumed = !book.run.steps.is_empty() || book.run.session_id.is_some();
    // An earlier run of a worktree task did every step but could not commit their
    // changes (the repo was busy): this one only commits.
    let commit_only = !resumed
        && book.run.first_step >= book.spec.steps.len()
        && task.workspace.as_ref().is_some_and(|w| w.is_worktree());
    if resumed {
        book.log(
            "info",
            &format!(
                "run {} (attempt {}) resumed by {}",
                book.run.run_id, book.run.attempt, book.app.cfg.node_id
            ),
            None,
        );
    } else if commit_only {
        book.log(
            "info",
            &format!(
                "run {} started (attempt {}): every step is done; committing the result",
                book.run.run_id, book.run.attempt
            ),
            Some(json!({"attempt": book.run.attempt, "node_id": book.app.cfg.node_id})),
        );
    } else {
        book.log(
            "info",
            &format!(
                "run {} started (attempt {}, step {} of {})",
                book.run.run_id,
                book.run.attempt,
                book.run.first_step + 1,
                book.spec.steps.len()
            ),
            Some(json!({"attempt": book.run.attempt, "node_id": book.app.cfg.node_id})),
        );
    }
    if resumed {
        // Steps the run recorded before the conductor stopped, whose lines or task
        // progress it may not have written.
        book.publish_steps(false);
    }
    if let Err(end) = workspace::prepare(book, &task) {
        return end;
    }
    if commit_only {
        return End::Succeeded;
    }
    // A session created just now is idle with no turn: its first send needs no poll.
    let mut idle = match session::ensure(book, &task) {
        Ok(fresh) => fresh,
        Err(end) => return end,
    };
    let t0 = std::time::Instant::now();
    let stream = follow::open_stream(&book.cx, &book.task_id);
    book.timings.add(Phase::Stream, t0);
    let follower = follower_slot.insert(Follower::new(stream));
    let total = book.spec.steps.len();
    loop {
        let next = book.run.completed_through();
        let open = book.run.open_step().map(|s| s.index);
        let index = open.unwrap_or(next);
        if index >= total {
            return End::Succeeded;
        }
        if open.is_none() {
            if let Some(end) = between_steps(book) {
                return end;
            }
            if index > book.run.first_step {
                if let Some(end) = limit_between_steps(book, follower) {
                    return end;
                }
            }
        }
        if let Err(end) = step(book, follower, index, idle.take()) {
            return end;
        }
    }
}

/// One step: adopt the turn in flight or send one, follow it, record its outcome.
fn step(
    book: &mut RunBook,
    follower: &mut Follower,
    index: usize,
    idle: Option<session::Idle>,
) -> Result<(), End> {
    follower.reset();
    book.ctl.set_step(index, baa::common::time::now_ms());
    let open = book
        .run
        .step(index)
        .filter(|s| s.status == "sending" || s.status == "running")
        .cloned();
    let adopted = match open {
        Some(s) if s.status == "running" && s.turn_id.is_some() => s.turn_id,
        Some(s) => send::settle_unacked(book, index, &s)?,
        None => None,
    };
    let turn_id = match adopted {
        Some(t) => t,
        None => send::send(book, index, idle)?,
    };
    let record = follower.follow(book, index, &turn_id)?;
    finish::step(
        book,
        follower,
        index,
        &turn_id,
        &record,
        index + 1 == book.spec.steps.len(),
    )
}

/// The usage limit a step just used up stops the run before its next step (which would
/// fail at once and spend an attempt): when the run saw codexd's limits change, the gate's
/// reading is refreshed first (a loopback call, only then).
fn limit_between_steps(book: &RunBook, follower: &Follower) -> Option<End> {
    if follower.hold_may_have_changed {
        book.app
            .codex_hold
            .read_if_older(&book.app.codex, std::time::Duration::ZERO);
    }
    let hold = book.app.codex_hold.current()?;
    if hold.reason != crate::codex_hold::HoldReason::RateLimited {
        return None;
    }
    hold.until_ms
        .map(|u| End::Held(baa::common::time::rfc3339_from_ms(u)))
}

/// What stops a run before its next step is sent.
fn between_steps(book: &RunBook) -> Option<End> {
    match book.ctl.stop() {
        StopReason::None => {}
        StopReason::Cancel => return Some(End::Canceled),
        StopReason::Pause => return Some(End::Paused),
        why => return Some(End::Left(why)),
    }
    if !book.is_leader() {
        return Some(End::Left(StopReason::LostLease));
    }
    match book.app.system.load(&book.app.store).map(|s| s.mode) {
        Ok(Mode::Paused) => Some(End::Paused),
        _ => None,
    }
}
