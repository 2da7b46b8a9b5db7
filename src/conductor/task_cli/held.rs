//! Why a queued task has not started: `task show`'s `held` lines, from what the API
//! already says — the task (`held_until` of the usage-limit hold, `next_attempt_at` of a
//! retry's backoff), `/v1/system/state` (paused, draining) and `/v1/runtime`
//! (`daemon.scheduler`: not the leader, `held` by the dispatch gate, every slot taken).
//! Pure: the values in, the lines out.

use serde_json::Value;

use baa::common::time::ms_from_rfc3339;

/// The reasons, most decisive first; empty for a task that is not queued.
pub fn why_queued(task: &Value, state: &Value, runtime: &Value, now_ms: u64) -> Vec<String> {
    if task["status"] != "queued" {
        return Vec::new();
    }
    let mut why = Vec::new();
    let future = |v: &Value| {
        v.as_str()
            .and_then(ms_from_rfc3339)
            .is_some_and(|at| at > now_ms)
    };
    let sched = &runtime["daemon"]["scheduler"];
    let gate = &sched["held"];
    match state["mode"].as_str() {
        Some("paused") => why.push(format!(
            "automation is paused{}; it starts when resumed (POST /v1/system/resume)",
            who(state)
        )),
        Some("draining") => why.push(format!(
            "the node is draining{}; no new task starts until it is resumed (POST /v1/system/resume)",
            who(state)
        )),
        _ => {}
    }
    if future(&task["held_until"]) {
        why.push(format!(
            "until {} (usage limit: codex reported its limit used up; the hold ends then)",
            text(&task["held_until"])
        ));
    }
    if future(&task["next_attempt_at"]) {
        why.push(format!(
            "until {} (backoff after a failed run)",
            text(&task["next_attempt_at"])
        ));
    }
    if sched["enabled"] == false {
        why.push(format!(
            "this conductor is not the healthy lease holder (lease {}); the leader runs the queue",
            text(&runtime["daemon"]["leaseState"])
        ));
    }
    if gate.is_object() {
        let until = match &gate["until"] {
            Value::Null => String::new(),
            u => format!(" (until {})", text(u)),
        };
        why.push(format!(
            "{}: {}{until}",
            text(&gate["reason"]),
            text(&gate["message"])
        ));
    }
    let (running, max) = (sched["running"].as_u64(), sched["max_running"].as_u64());
    if let (Some(r), Some(m)) = (running, max) {
        if r >= m {
            why.push(format!(
                "waiting for a slot: {r} of {m} task(s) running (BAA_CONDUCTOR_MAX_RUNNING_TASKS)"
            ));
        }
    }
    if why.is_empty() {
        why.push(format!(
            "nothing holds it: it starts at the scheduler's next pass, after any task of higher priority or queued earlier ({} queued)",
            text(&sched["queued"])
        ));
    }
    why
}

/// ` by NAME: REASON` of a mode change, as far as it was given.
fn who(state: &Value) -> String {
    let mut s = String::new();
    if let Some(by) = state["requested_by"].as_str() {
        s.push_str(&format!(" by {by}"));
    }
    if let Some(r) = state["reason"].as_str() {
        s.push_str(&format!(" ({r})"));
    }
    s
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn runtime(enabled: bool, running: u64, held: Value) -> Value {
        json!({"daemon": {"leaseState": "leader", "scheduler": {
            "enabled": enabled, "queued": 3, "running": running, "max_running": 1, "held": held}}})
    }

    /// Issue 20: `task show` of a held task said only `queued`.
    #[test]
    fn task_show_of_a_held_task_says_why() {
        let task = json!({"status": "queued", "held_until": "2026-01-01T05:00:00.000Z"});
        let state = json!({"mode": "paused", "requested_by": "ops", "reason": "upgrade"});
        let gate = json!({"reason": "rate_limited", "message": "the 5h limit is used up", "until": "2026-01-01T05:00:00.000Z"});
        assert_eq!(
            why_queued(&task, &state, &runtime(true, 0, gate), NOW),
            vec![
                "automation is paused by ops (upgrade); it starts when resumed (POST /v1/system/resume)".to_string(),
                "until 2026-01-01T05:00:00.000Z (usage limit: codex reported its limit used up; the hold ends then)".to_string(),
                "rate_limited: the 5h limit is used up (until 2026-01-01T05:00:00.000Z)".to_string(),
            ]
        );
        let running = json!({"mode": "running"});
        assert_eq!(
            why_queued(
                &json!({"status": "queued"}),
                &running,
                &runtime(true, 1, Value::Null),
                NOW
            ),
            vec![
                "waiting for a slot: 1 of 1 task(s) running (BAA_CONDUCTOR_MAX_RUNNING_TASKS)"
                    .to_string()
            ]
        );
        let draining = json!({"mode": "draining"});
        let down = json!({"reason": "codexd_unreachable", "message": "codexd is unreachable", "until": null});
        let why = why_queued(
            &json!({"status": "queued"}),
            &draining,
            &runtime(false, 0, down),
            NOW,
        );
        assert!(why[0].starts_with("the node is draining;"), "{why:?}");
        assert!(
            why[1].starts_with("this conductor is not the healthy lease holder"),
            "{why:?}"
        );
        assert_eq!(
            why[2], "codexd_unreachable: codexd is unreachable",
            "{why:?}"
        );
        // A past hold or backoff no longer holds it.
        let past = json!({"status": "queued", "held_until": "2025-01-01T00:00:00.000Z",
            "next_attempt_at": "2025-01-01T00:00:00.000Z"});
        let why = why_queued(&past, &running, &runtime(true, 0, Value::Null), NOW);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].starts_with("nothing holds it"), "{why:?}");
        assert!(why_queued(
            &json!({"status": "running"}),
            &state,
            &runtime(true, 0, Value::Null),
            NOW
        )
        .is_empty());
    }
}
