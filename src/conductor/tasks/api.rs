//! What the task write routes and the summary do, apart from HTTP: create (with the
//! idempotency replay), cancel, retry, and the counts and lists the status page shows.
//! Only the lease holder changes tasks; a standby answers 409 `not_leader`, as for the
//! system state.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::time::{now_ms, rfc3339_from_ms};

use super::control::StopReason;
use super::model::{Status, Task};
use super::validate::{self, NewTask};
use crate::app::App;

/// How long a cancel of a running task waits for its run to end before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

fn finished(id: &str, status: &str) -> ApiError {
    ApiError::new(
        409,
        "task_finished",
        format!("Task \"{id}\" already finished ({status})."),
    )
    .with_details(json!({"task_id": id, "status": status}))
}

/// `POST /v1/tasks` → (status, `{task}`): 201 when queued, 200 for an idempotency replay.
pub fn create(app: &App, body: &Map<String, Value>) -> Result<(u16, Value), ApiError> {
    app.require_leader("changes")?;
    let new = validate::new_task(body, &|p: &Path| p.is_dir())?;
    let (task, created) = queue(app, new, None)?;
    Ok((
        if created { 201 } else { 200 },
        json!({ "task": task, "created": created }),
    ))
}

/// Checks a task body as `POST /v1/tasks` does (fields, then the workspace plan), without
/// queueing anything: what a schedule's `task` must pass.
pub fn check(app: &App, body: &Map<String, Value>) -> Result<(), ApiError> {
    let mut new = validate::new_task(body, &|p: &Path| p.is_dir())?;
    crate::workspace::plan::plan(
        &app.cfg.workspaces,
        &app.cfg.repo_root,
        &app.git,
        &mut new.spec,
    )?;
    Ok(())
}

/// Plans the workspace and queues a validated task (or replays its idempotency key:
/// `false`). A schedule's fire comes here too, with its `schedule_id`.
pub fn queue(
    app: &App,
    mut new: NewTask,
    schedule_id: Option<String>,
) -> Result<(Task, bool), ApiError> {
    new.workspace = crate::workspace::plan::plan(
        &app.cfg.workspaces,
        &app.cfg.repo_root,
        &app.git,
        &mut new.spec,
    )?;
    let (task, created) = app.tasks.create_for(new, schedule_id)?;
    if created {
        app.tasks.logs.append(
            &task.task_id,
            None,
            "info",
            &format!(
                "task queued{}: {} step(s), priority {}, up to {} attempt(s)",
                task.schedule_id
                    .as_deref()
                    .map(|s| format!(" by schedule {s}"))
                    .unwrap_or_default(),
                task.steps_total,
                task.priority,
                task.max_attempts
            ),
            None,
        );
        app.task_changed(&task);
        app.sched.wake();
    }
    Ok((task, created))
}

/// `POST /v1/tasks/:id/cancel`: a queued task ends at once; a running one has its turn
/// interrupted and ends when its run does (this waits up to 10 s for that).
pub fn cancel(app: &App, id: &str) -> Result<Value, ApiError> {
    app.require_leader("changes")?;
    let task = app.tasks.task(id)?;
    match task.status() {
        Some(Status::Queued) => {
            let t = app
                .tasks
                .update(id, |t| {
                    if t.status() != Some(Status::Queued) {
                        return false;
                    }
                    t.status = Status::Canceled.as_str().into();
                    t.finished_at = Some(baa::common::time::now_rfc3339());
                    t.next_attempt_at = None;
                    true
                })
                .map_err(|e| ApiError::internal(format!("Cannot persist the task: {e}")))?
                .ok_or_else(|| ApiError::not_found(format!("Unknown task \"{id}\".")))?;
            if t.status() == Some(Status::Canceled) {
                app.tasks
                    .logs
                    .append(id, None, "warn", "task canceled while queued", None);
                app.task_changed(&t);
                app.sched.wake();
                return Ok(json!({ "task": t }));
            }
            // It was dispatched meanwhile: cancel the run.
            cancel_running(app, id)
        }
        Some(Status::Running) => cancel_running(app, id),
        _ => Err(finished(id, &task.status)),
    }
}

fn cancel_running(app: &App, id: &str) -> Result<Value, ApiError> {
    app.tasks
        .update(id, |t| {
            t.cancel_requested = true;
            true
        })
        .map_err(|e| ApiError::internal(format!("Cannot persist the task: {e}")))?;
    app.tasks.logs.append(
        id,
        None,
        "warn",
        "cancel requested; interrupting the running turn",
        None,
    );
    if let Some(ctl) = app.sched.control(id) {
        ctl.request(StopReason::Cancel);
    }
    app.sched.wake();
    let deadline = Instant::now() + CANCEL_WAIT;
    loop {
        let t = app.tasks.task(id)?;
        if t.status() != Some(Status::Running) || Instant::now() >= deadline {
            return Ok(json!({ "task": t }));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `POST /v1/tasks/:id/retry`: a failed or canceled task goes back to the queue; its next
/// run continues from the first step not completed, with a fresh count of attempts.
pub fn retry(app: &App, id: &str) -> Result<Value, ApiError> {
    app.require_leader("changes")?;
    let task = app.tasks.task(id)?;
    match task.status() {
        Some(Status::Failed | Status::Canceled) if task.is_runnable() => {}
        Some(Status::Failed | Status::Canceled) => {
            return Err(ApiError::new(
                409,
                "not_runnable",
                format!(
                    "Task \"{id}\" has no Codex steps to run (kind {:?}).",
                    task.kind
                ),
            ))
        }
        _ => {
            return Err(ApiError::new(
                409,
                "task_not_retryable",
                format!(
                    "Task \"{id}\" is {}; only failed or canceled tasks can be retried.",
                    task.status
                ),
            )
            .with_details(json!({"task_id": id, "status": task.status})))
        }
    }
    let t = app
        .tasks
        .update(id, |t| {
            t.status = Status::Queued.as_str().into();
            t.finished_at = None;
            t.next_attempt_at = None;
            t.error = None;
            t.cancel_requested = false;
            t.retry_from = t.runs.len();
            true
        })
        .map_err(|e| ApiError::internal(format!("Cannot persist the task: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("Unknown task \"{id}\".")))?;
    app.tasks.logs.append(
        id,
        None,
        "info",
        &format!(
            "task queued again by retry (continues at step {} of {}, as attempt {}; max_attempts {} counts again from here)",
            t.steps_done + 1,
            t.steps_total,
            t.next_attempt(),
            t.max_attempts
        ),
        None,
    );
    app.task_changed(&t);
    app.sched.wake();
    Ok(json!({ "task": t }))
}

/// A worktree task's branch (what the status page shows with its changes).
fn branch(t: &super::model::Task) -> Option<String> {
    t.workspace.as_ref().and_then(|w| w.branch.clone())
}

/// `GET /v1/tasks/summary`: counts, what runs now, and the last five outcomes (with a
/// worktree task's branch and result).
pub fn summary(app: &App) -> Value {
    let c = app.tasks.counts();
    let now = now_ms();
    let running: Vec<Value> = app
        .sched
        .running_json(now)
        .into_iter()
        .map(|mut r| {
            if let Ok(t) = app.tasks.task(r["task_id"].as_str().unwrap_or_default()) {
                r["title"] = json!(t.title);
                r["branch"] = json!(branch(&t));
                r["waiting"] = t.waiting.unwrap_or(Value::Null);
            }
            r
        })
        .collect();
    let recent: Vec<Value> = app
        .tasks
        .recent_finished(5)
        .into_iter()
        .map(|t| {
            json!({
                "task_id": t.task_id, "title": t.title, "status": t.status,
                "finished_at": t.finished_at, "error": t.error,
                "steps_done": t.steps_done, "steps_total": t.steps_total,
                "branch": branch(&t), "result": t.result,
            })
        })
        .collect();
    json!({
        "queued": c.queued,
        "running": c.running,
        "succeeded": c.succeeded,
        "failed": c.failed,
        "canceled": c.canceled,
        "running_tasks": running,
        "recent": recent,
        "usage": usage_json(app, now),
    })
}

/// `usage {today, last_7_days}`: the tokens of the tasks last active in each period
/// (today: since 00:00 UTC), overall and per schedule (`none`: created by hand).
fn usage_json(app: &App, now: u64) -> Value {
    const DAY_MS: u64 = 86_400_000;
    let period = |since: u64| {
        let u = app.tasks.usage_since(since);
        let by_schedule: Map<String, Value> = u
            .by_schedule
            .iter()
            .map(|(s, t)| (s.clone().unwrap_or_else(|| "none".into()), json!(t)))
            .collect();
        json!({
            "since": rfc3339_from_ms(since),
            "tasks": u.tasks,
            "total": u.total,
            "by_schedule": by_schedule,
        })
    };
    json!({
        "today": period(now - now % DAY_MS),
        "last_7_days": period(now.saturating_sub(7 * DAY_MS)),
    })
}
