//! The queue held and released again, as announcements: by a usage limit (one per hold,
//! named by its reset time), or because codex cannot run turns at all — logged out, codexd
//! unreachable, its child not running (one per hold, named by its reason and start).

use serde_json::json;

use super::event::{Event, Priority};

/// The queue holds until `until` (a usage limit, or a probe that hit it again).
pub fn held(until: &str, why: &str) -> Event {
    let mut e = Event::new(
        format!("queue:held:{until}"),
        "queue.held",
        format!("Task queue held until {until}"),
        Priority::High,
    );
    e.message = format!(
        "{why}. No task starts until then; then one task goes first as a probe, and the rest once its turn did not hit the limit."
    );
    e.detail = Some(json!({"reason": "rate_limited", "until": until, "why": why}));
    e
}

/// The hold that was to end at `until` is over: the queue runs again.
pub fn released(until: &str, why: &str) -> Event {
    let mut e = Event::new(
        format!("queue:released:{until}"),
        "queue.released",
        "Task queue released".into(),
        Priority::Default,
    );
    e.message = format!("{why}; queued tasks start again.");
    e.detail = Some(json!({"held_until": until, "why": why}));
    e
}

/// The queue holds for `reason` (`logged_out`, `codexd_unreachable`,
/// `codexd_child_not_ready`) since `since` (rfc3339): `message` says what is wrong.
pub fn held_for(reason: &str, since: &str, message: &str) -> Event {
    let mut e = Event::new(
        format!("queue:held:{reason}:{since}"),
        "queue.held",
        format!("Task queue held: {}", reason.replace('_', " ")),
        Priority::High,
    );
    e.message =
        format!("{message}. No task starts until this is fixed; the queue goes on by itself then.");
    e.detail = Some(json!({"reason": reason, "since": since}));
    e
}

/// The hold for `reason` that began at `since` is over.
pub fn released_from(reason: &str, since: &str) -> Event {
    let mut e = Event::new(
        format!("queue:released:{reason}:{since}"),
        "queue.released",
        "Task queue released".into(),
        Priority::Default,
    );
    e.message = format!(
        "The hold ({}) since {since} is over; queued tasks start again.",
        reason.replace('_', " ")
    );
    e.detail = Some(json!({"reason": reason, "since": since}));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_per_hold_and_its_release() {
        let h = held("2026-12-05T04:00:00.000Z", "codex rate limit used up");
        assert_eq!(
            (h.id.as_str(), h.kind),
            ("queue:held:2026-12-05T04:00:00.000Z", "queue.held")
        );
        assert_eq!(
            h,
            held("2026-12-05T04:00:00.000Z", "codex rate limit used up")
        );
        let r = released(
            "2026-12-05T04:00:00.000Z",
            "the probe's turn did not hit the limit",
        );
        assert_eq!(r.kind, "queue.released");
        assert_ne!(r.id, h.id);
        assert!(r.message.contains("probe"), "{}", r.message);
    }
}
