//! What one schedule does when its `next_fire_at` has come: fire, catch up, or skip.
//!
//! - The fire time is the latest one due (`next_fire_at` and every later one up to now);
//!   the earlier ones are counted as skipped: a conductor that fell behind queues one task,
//!   not a burst.
//! - A fire before `active_since` (when this conductor began firing: its start or a
//!   takeover) was missed while no conductor fired. It is queued (`caught_up`) when it is
//!   at most `catchup_window_s` old, else skipped with a log line.
//! - `overlap` looks at the schedule's last task: `skip` skips while it is queued or
//!   running, `buffer_one` while it is queued (one already waits), `allow` never.
//! - The task is created with the idempotency key `schedule:<id>:<fire time>`, and only
//!   then is `next_fire_at` moved on. A crash between the two fires the same time again
//!   after the restart or takeover, and the task store answers with the task already
//!   made: a fire is never lost and never queued twice.

use serde_json::{Map, Value};

use baa::common::api_error::ApiError;
use baa::common::cron::Cron;
use baa::common::logging;
use baa::common::time::{ms_from_rfc3339, now_rfc3339, rfc3339_from_ms};
use baa::common::tz::Tz;

use super::model::{LastFire, Outcome, Overlap, Schedule};
use crate::app::App;
use crate::notify::schedule_events;
use crate::tasks::model::Status;
use crate::tasks::validate;

/// Fire times walked past at most, when a conductor was down very long (a year of an
/// every-minute schedule is 525,600); beyond it the rest are counted from there.
const MAX_WALK: u64 = 1_000_000;

/// The idempotency key of a fire.
pub fn key(schedule_id: &str, at_ms: u64) -> String {
    format!("schedule:{schedule_id}:{}", rfc3339_from_ms(at_ms))
}

/// The first fire strictly after `after_ms`, by the schedule's expression and zone.
pub fn next_after(cron: &Cron, tz: &Tz, after_ms: u64) -> Option<u64> {
    let after = i64::try_from(after_ms).ok()?;
    cron.next_after(after, tz)
        .and_then(|n| u64::try_from(n).ok())
}

/// The expression and zone of a stored schedule (both were checked when it was written;
/// a zone removed from the system since falls back to UTC with a warning).
pub fn parsed(s: &Schedule) -> Option<(Cron, Tz)> {
    let cron = match Cron::parse(&s.cron) {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "schedules: {} has a cron it cannot parse ({e}); it does not fire",
                s.schedule_id
            );
            return None;
        }
    };
    // The node's zone (the default) may be a POSIX TZ string or a file that no zoneinfo
    // name loads: it is the node's zone still.
    let named = Tz::named(&s.timezone).or_else(|e| {
        let local = Tz::local();
        if local.name() == s.timezone {
            Ok(local)
        } else {
            Err(e)
        }
    });
    let tz = named.unwrap_or_else(|e| {
        log::warn!(
            "schedules: {}: {e}; its fires are computed in UTC",
            s.schedule_id
        );
        Tz::utc()
    });
    Some((cron, tz))
}

/// Which fire is due at `now`, if one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The latest fire time not after `now`.
    pub at: u64,
    /// Earlier due fire times passed over.
    pub passed: u64,
    /// The next fire after `at`.
    pub next: Option<u64>,
}

pub fn due(cron: &Cron, tz: &Tz, next_fire_ms: u64, now: u64) -> Option<Due> {
    if next_fire_ms > now {
        return None;
    }
    let mut d = Due {
        at: next_fire_ms,
        passed: 0,
        next: next_after(cron, tz, next_fire_ms),
    };
    while let Some(n) = d.next.filter(|n| *n <= now) {
        d.passed += 1;
        d.at = n;
        d.next = next_after(cron, tz, n);
        if d.passed >= MAX_WALK {
            // Far behind: start again from now (the rest count as one more skipped).
            d.next = next_after(cron, tz, now);
            break;
        }
    }
    Some(d)
}

/// Whether the schedule's last task holds this fire back under `overlap`.
fn held_by(app: &App, overlap: Overlap, last_task: Option<&str>) -> bool {
    let Some(id) = last_task else {
        return false;
    };
    let Ok(task) = app.tasks.task(id) else {
        return false;
    };
    match (overlap, task.status()) {
        (Overlap::Allow, _) => false,
        (Overlap::Skip, Some(Status::Queued | Status::Running)) => true,
        (Overlap::BufferOne, Some(Status::Queued)) => true,
        _ => false,
    }
}

fn create(app: &App, s: &Schedule, at: u64) -> Result<(String, bool), ApiError> {
    let mut body: Map<String, Value> = s.task.clone();
    body.insert(
        "idempotency_key".into(),
        Value::String(key(&s.schedule_id, at)),
    );
    let new = validate::new_task(&body, &|p: &std::path::Path| p.is_dir())?;
    let (task, created) = crate::tasks::api::queue(app, new, Some(s.schedule_id.clone()))?;
    Ok((task.task_id, created))
}

/// Handles one due schedule at `now` and records what happened. `active_since`: when this
/// conductor began firing. Returns the schedule's next fire time.
pub fn run(app: &App, s: &Schedule, now: u64, active_since: u64) -> Option<u64> {
    let (cron, tz) = parsed(s)?;
    let expected = s.next_fire_at.clone();
    let next_ms = expected.as_deref().and_then(ms_from_rfc3339)?;
    let d = due(&cron, &tz, next_ms, now)?;
    let at = rfc3339_from_ms(d.at);
    let id = s.schedule_id.as_str();
    let prev_task = s.last_fire.as_ref().and_then(|l| l.task_id.clone());
    let missed = d.at < active_since;
    let late_s = now.saturating_sub(d.at) / 1000;
    if d.passed > 0 {
        logging::event(
            "schedule.skipped",
            &[
                ("schedule_id", &id),
                ("why", &"missed"),
                ("count", &d.passed),
                ("before", &at),
            ],
        );
        app.notify.emit(schedule_events::skipped(
            id,
            &s.name,
            &at,
            "missed",
            &format!("{} fire(s) before this one", d.passed),
        ));
    }
    let (outcome, task_id, error) =
        if missed && now.saturating_sub(d.at) > s.catchup_window_s.saturating_mul(1000) {
            logging::event(
                "schedule.skipped",
                &[
                    ("schedule_id", &id),
                    ("why", &"missed"),
                    ("at", &at),
                    ("late_s", &late_s),
                    ("catchup_window_s", &s.catchup_window_s),
                ],
            );
            app.notify.emit(schedule_events::skipped(
                id,
                &s.name,
                &at,
                "missed",
                &format!("{late_s} s late, catch-up window {} s", s.catchup_window_s),
            ));
            (Outcome::SkippedMissed, prev_task, None)
        } else if held_by(app, s.overlap, prev_task.as_deref()) {
            logging::event(
                "schedule.skipped",
                &[
                    ("schedule_id", &id),
                    ("why", &"overlap"),
                    ("overlap", &s.overlap.as_str()),
                    ("at", &at),
                    ("task_id", &prev_task.as_deref().unwrap_or_default()),
                ],
            );
            app.notify.emit(schedule_events::skipped(
                id,
                &s.name,
                &at,
                "overlap",
                &format!(
                    "task {}, overlap {}",
                    prev_task.as_deref().unwrap_or("?"),
                    s.overlap.as_str()
                ),
            ));
            (Outcome::SkippedOverlap, prev_task, None)
        } else {
            match create(app, s, d.at) {
                Ok((task_id, created)) => {
                    let (outcome, name) = if missed {
                        (Outcome::CaughtUp, "schedule.caught_up")
                    } else {
                        (Outcome::Fired, "schedule.fired")
                    };
                    logging::event(
                        name,
                        &[
                            ("schedule_id", &id),
                            ("at", &at),
                            ("task_id", &task_id),
                            ("late_ms", &now.saturating_sub(d.at)),
                            ("replayed", &!created),
                        ],
                    );
                    if missed && created {
                        app.notify
                            .emit(schedule_events::caught_up(id, &s.name, &at, &task_id));
                    }
                    (outcome, Some(task_id), None)
                }
                Err(e) => {
                    log::warn!(
                        "schedules: {id}: the fire at {at} could not queue its task: {}",
                        e.message
                    );
                    (Outcome::Failed, prev_task, Some(e.message))
                }
            }
        };
    let next = d.next;
    let saved = app.schedules.store.update(id, |cur| {
        // Changed meanwhile (a PATCH moved the time, or the schedule was re-created).
        if cur.next_fire_at != expected {
            return false;
        }
        cur.next_fire_at = next.map(rfc3339_from_ms);
        cur.last_fire = Some(LastFire {
            at: at.clone(),
            task_id,
            outcome,
            error,
        });
        let c = &mut cur.counts;
        c.skipped += d.passed;
        match outcome {
            Outcome::Fired => c.fired += 1,
            Outcome::CaughtUp => c.caught_up += 1,
            Outcome::SkippedMissed | Outcome::SkippedOverlap => c.skipped += 1,
            Outcome::Failed => c.failed += 1,
        }
        cur.updated_at = now_rfc3339();
        true
    });
    match saved {
        Ok(Some(cur)) => cur.next_fire_at.as_deref().and_then(ms_from_rfc3339),
        Ok(None) => None,
        Err(e) => {
            // The task (if any) is queued under its key: the next try replays it, a second
            // from now (not every tick while the disk is full).
            log::warn!("schedules: {id}: cannot record the fire at {at}: {e}; tried again in 1 s");
            Some(now + 1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_schedule_and_the_fire_time() {
        assert_eq!(
            key("sched_1", 1_700_000_040_000),
            "schedule:sched_1:2023-11-14T22:14:00.000Z"
        );
    }

    #[test]
    fn a_late_pass_fires_the_latest_due_time_and_counts_the_rest() {
        let cron = Cron::parse("* * * * *").unwrap();
        let tz = Tz::utc();
        let t0 = 1_700_000_040_000; // a whole minute
        assert_eq!(due(&cron, &tz, t0, t0 - 1), None);
        assert_eq!(
            due(&cron, &tz, t0, t0 + 500),
            Some(Due {
                at: t0,
                passed: 0,
                next: Some(t0 + 60_000)
            })
        );
        assert_eq!(
            due(&cron, &tz, t0, t0 + 3 * 60_000 + 5),
            Some(Due {
                at: t0 + 3 * 60_000,
                passed: 3,
                next: Some(t0 + 4 * 60_000)
            })
        );
    }
}
