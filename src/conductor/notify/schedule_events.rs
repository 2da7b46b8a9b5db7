//! A schedule's fire skipped (missed while the node was down past its catch-up window, or
//! held back by its overlap rule) or caught up after a restart, as announcements: one per
//! schedule and fire time, so a fire handled again after a crash is not sent twice.

use serde_json::json;

use super::event::{Event, Priority};

/// The fire of `schedule_id` (`name`) at `at` queued no task: `why` is `missed` or
/// `overlap`; `detail` says more (how late, the task still running, how many were missed).
pub fn skipped(schedule_id: &str, name: &str, at: &str, why: &str, detail: &str) -> Event {
    let mut e = Event::new(
        format!("schedule:{schedule_id}:skipped:{at}"),
        "schedule.skipped",
        format!("Schedule \"{name}\": fire at {at} skipped"),
        Priority::Default,
    );
    e.message = match why {
        "overlap" => format!("Its previous task is still queued or running ({detail}); the overlap rule skipped this fire."),
        _ => format!("The node was not firing at that time ({detail}), outside the schedule's catch-up window."),
    };
    e.detail = Some(json!({"schedule_id": schedule_id, "name": name, "at": at, "why": why}));
    e
}

/// A fire missed while the node was down was queued late, within the catch-up window.
pub fn caught_up(schedule_id: &str, name: &str, at: &str, task_id: &str) -> Event {
    let mut e = Event::new(
        format!("schedule:{schedule_id}:caught_up:{at}"),
        "schedule.caught_up",
        format!("Schedule \"{name}\": missed fire at {at} queued late"),
        Priority::Default,
    );
    e.message = format!("Task {task_id} was queued for it after the node came back.");
    e.task = Some(json!({"task_id": task_id}));
    e.detail = Some(json!({"schedule_id": schedule_id, "name": name, "at": at}));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_per_schedule_fire_and_kind() {
        let a = skipped(
            "sch_1",
            "nightly",
            "2026-12-05T03:00:00.000Z",
            "overlap",
            "task_9 running",
        );
        assert_eq!(a.id, "schedule:sch_1:skipped:2026-12-05T03:00:00.000Z");
        assert!(a.message.contains("task_9 running"), "{}", a.message);
        let b = caught_up("sch_1", "nightly", "2026-12-05T03:00:00.000Z", "task_2");
        assert_eq!(b.kind, "schedule.caught_up");
        assert_ne!(a.id, b.id);
    }
}
