//! The lifecycle lines of tasks: one `key=value` line when a task is queued, when a run
//! starts it, when a step completes, and when it ends (succeeded, failed, canceled) or goes
//! back to the queue for a retry. The store calls these at its two write points (create,
//! update), so every state change is logged exactly once whichever path made it (the
//! scheduler, a run, a cancel, a retry, a reconcile).

use baa::common::logging::{self, Opt};

use super::model::{Status, Task};

/// `event=task.queued task=… title=… steps=N priority=P`.
pub fn created(t: &Task) {
    logging::event(
        "task.queued",
        &[
            ("task", &t.task_id),
            ("title", &t.title),
            ("steps", &t.steps_total),
            ("priority", &t.priority),
        ],
    );
}

/// The lines a write calls for, given the status and completed step count before it (none
/// when neither moved).
pub fn changed(status_before: &str, steps_before: usize, after: &Task) {
    if after.steps_done > steps_before {
        logging::event(
            "task.step_completed",
            &[
                ("task", &after.task_id),
                ("run", &Opt(after.current_run_id.as_ref())),
                ("step", &after.steps_done),
                ("steps", &after.steps_total),
            ],
        );
    }
    if after.status == status_before {
        return;
    }
    let name = match Status::parse(&after.status) {
        Some(Status::Running) => "task.started",
        Some(Status::Queued) => "task.queued",
        Some(Status::Succeeded) => "task.succeeded",
        Some(Status::Failed) => "task.failed",
        Some(Status::Canceled) => "task.canceled",
        None => "task.changed",
    };
    let error = after.error.as_ref().and_then(|e| e["code"].as_str());
    logging::event(
        name,
        &[
            ("task", &after.task_id),
            ("from", &status_before),
            ("status", &after.status),
            ("run", &Opt(after.current_run_id.as_ref())),
            ("attempt", &after.runs.len()),
            ("steps_done", &after.steps_done),
            ("steps", &after.steps_total),
            ("error", &Opt(error.as_ref())),
            ("next_attempt_at", &Opt(after.next_attempt_at.as_ref())),
        ],
    );
}
