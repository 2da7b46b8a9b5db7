//! What the schedule routes do, apart from HTTP. Reads work on any conductor (they read
//! the files); writes only on the lease holder, as for tasks.

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::ids::new_id;
use baa::common::time::{now_rfc3339, rfc3339_from_ms};
use baa::common::tz::Tz;

use super::fire;
use super::model::{FireCounts, Schedule};
use super::validate::{self, Fields};
use crate::app::App;

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("Unknown schedule \"{id}\"."))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("Cannot persist the schedule: {e}"))
}

/// A schedule as the routes show it: the record, with its last task's status now.
pub fn to_json(app: &App, s: &Schedule) -> Value {
    let mut v = json!(s);
    if let Some(id) = s.last_fire.as_ref().and_then(|l| l.task_id.as_deref()) {
        if let Ok(t) = app.tasks.task(id) {
            v["last_fire"]["task_status"] = json!(t.status);
        }
    }
    v
}

/// The next fire after now, by the schedule clock (none while disabled).
fn next_fire(app: &App, s: &Schedule) -> Option<String> {
    if !s.enabled {
        return None;
    }
    let (cron, tz) = fire::parsed(s)?;
    fire::next_after(&cron, &tz, app.schedules.clock.now_ms()).map(rfc3339_from_ms)
}

fn check_task(app: &App) -> impl Fn(&Map<String, Value>) -> Result<(), ApiError> + '_ {
    move |task| crate::tasks::api::check(app, task)
}

/// `POST /v1/schedules` → 201 `{schedule}`.
pub fn create(app: &App, body: &Map<String, Value>) -> Result<Value, ApiError> {
    app.require_leader("changes")?;
    let f = validate::create(body, &check_task(app))?;
    let now = now_rfc3339();
    let Fields {
        name,
        cron,
        timezone,
        task,
        overlap,
        catchup_window_s,
        enabled,
    } = f;
    let mut s = Schedule {
        schedule_id: new_id("sched"),
        name: name.unwrap_or_default(),
        cron: cron.map(|c| c.0).unwrap_or_default(),
        timezone: timezone.unwrap_or_else(Tz::local).name().to_string(),
        task: task.unwrap_or_default(),
        overlap: overlap.unwrap_or_default(),
        catchup_window_s: catchup_window_s.unwrap_or(0),
        enabled: enabled.unwrap_or(true),
        created_at: now.clone(),
        updated_at: now,
        next_fire_at: None,
        last_fire: None,
        counts: FireCounts::default(),
    };
    s.next_fire_at = next_fire(app, &s);
    app.schedules.store.insert(&s).map_err(internal)?;
    log::info!(
        "schedules: {} created ({:?}, {:?} in {}), next fire {}",
        s.schedule_id,
        s.name,
        s.cron,
        s.timezone,
        s.next_fire_at.as_deref().unwrap_or("none")
    );
    app.schedules.wake();
    Ok(json!({ "schedule": to_json(app, &s) }))
}

/// `GET /v1/schedules`.
pub fn list(app: &App) -> Value {
    let all: Vec<Value> = app
        .schedules
        .store
        .list()
        .iter()
        .map(|s| to_json(app, s))
        .collect();
    json!({ "count": all.len(), "schedules": all })
}

/// `GET /v1/schedules/:id`.
pub fn show(app: &App, id: &str) -> Result<Value, ApiError> {
    let s = app
        .schedules
        .store
        .get(id)
        .map_err(|e| ApiError::internal(format!("Cannot read the schedule: {e}")))?
        .ok_or_else(|| unknown(id))?;
    Ok(json!({ "schedule": to_json(app, &s) }))
}

/// `PATCH /v1/schedules/:id`: the fields given change; a new cron or timezone, or
/// enabling, computes the next fire from now (fires missed while disabled are not caught up).
pub fn patch(app: &App, id: &str, body: &Map<String, Value>) -> Result<Value, ApiError> {
    app.require_leader("changes")?;
    let f = validate::fields(body, &check_task(app))?;
    let s = app
        .schedules
        .store
        .update(id, |s| {
            let retime =
                f.cron.is_some() || f.timezone.is_some() || (f.enabled == Some(true) && !s.enabled);
            if let Some(n) = &f.name {
                s.name = n.clone();
            }
            if let Some((expr, _)) = &f.cron {
                s.cron = expr.clone();
            }
            if let Some(tz) = &f.timezone {
                s.timezone = tz.name().to_string();
            }
            if let Some(t) = &f.task {
                s.task = t.clone();
            }
            if let Some(o) = f.overlap {
                s.overlap = o;
            }
            if let Some(w) = f.catchup_window_s {
                s.catchup_window_s = w;
            }
            if let Some(e) = f.enabled {
                s.enabled = e;
            }
            if !s.enabled {
                s.next_fire_at = None;
            } else if retime || s.next_fire_at.is_none() {
                s.next_fire_at = next_fire(app, s);
            }
            s.updated_at = now_rfc3339();
            true
        })
        .map_err(internal)?
        .ok_or_else(|| unknown(id))?;
    if s.enabled && s.next_fire_at.is_none() {
        log::warn!("schedules: {id} never fires again ({:?})", s.cron);
    }
    app.schedules.wake();
    Ok(json!({ "schedule": to_json(app, &s) }))
}

/// `DELETE /v1/schedules/:id`: the schedule goes; tasks it queued stay.
pub fn delete(app: &App, id: &str) -> Result<Value, ApiError> {
    app.require_leader("changes")?;
    if !app.schedules.store.remove(id).map_err(internal)? {
        return Err(unknown(id));
    }
    log::info!("schedules: {id} deleted");
    app.schedules.wake();
    Ok(json!({ "schedule_id": id, "deleted": true }))
}
