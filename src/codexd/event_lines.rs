//! Which codexd events are also a lifecycle line in the daemon's log, and with which
//! fields: `event=turn.completed session=… turn=… status=completed duration_ms=…`.
//!
//! The events stream (`/v1/codexd/events`, `events.jsonl`) already records every child,
//! session, turn and server-request change; the log gets one `key=value` line for each of
//! the lifecycle ones, named like the event so a line and its event are found by the same
//! word. Only listed scalar fields are copied — never the prompt, the final message, usage,
//! a request's params, the reply or the child's stderr tail — and strings are cut short.

use serde_json::Value;

use baa::common::logging;
use baa::common::text;

/// The events that get a line.
const LOGGED: &[&str] = &[
    "child.spawned",
    "child.attached",
    "child.ready",
    "child.exited",
    "child.stopped",
    "child.restarting",
    "child.restart_requested",
    "child.crash_loop",
    "child.unavailable",
    "child.disconnected",
    "child.detached",
    "session.created",
    "session.resumed",
    "session.thread_recreated",
    "session.archived",
    "session.deleted",
    "turn.accepted",
    "turn.interrupt_requested",
    "turn.completed",
    "turn.interrupted",
    "turn.failed",
    "request.pending",
    "request.answered",
    "request.timeout",
    "request.refused",
    "request.abandoned",
];

/// Detail field → line key, in line order.
const FIELDS: &[(&str, &str)] = &[
    ("sessionId", "session"),
    ("turnId", "turn"),
    ("threadId", "thread"),
    ("requestId", "request"),
    ("method", "method"),
    ("purpose", "purpose"),
    ("steered", "steered"),
    ("status", "status"),
    ("durationMs", "duration_ms"),
    ("source", "source"),
    ("answeredBy", "by"),
    ("timeoutMs", "timeout_ms"),
    ("defaultDecision", "default"),
    ("pid", "pid"),
    ("generation", "generation"),
    ("code", "exit_code"),
    ("signal", "signal"),
    ("exit", "exit"),
    ("requested", "requested"),
    ("attempt", "attempt"),
    ("delayMs", "delay_ms"),
    ("failures", "failures"),
    ("retryAt", "retry_at"),
    ("reason", "reason"),
    ("error", "error"),
];

/// The longest string value copied into a line.
const VALUE_CAP: usize = 200;

/// Logs the line of event `kind` if it is a lifecycle event.
pub fn log_event(kind: &str, detail: &Value) {
    if let Some(fields) = line_fields(kind, detail) {
        let refs: Vec<(&str, &dyn std::fmt::Display)> = fields
            .iter()
            .map(|(k, v)| (*k, v as &dyn std::fmt::Display))
            .collect();
        logging::event(kind, &refs);
    }
}

/// The line's fields, or `None` when `kind` gets no line.
pub fn line_fields(kind: &str, detail: &Value) -> Option<Vec<(&'static str, String)>> {
    if !LOGGED.contains(&kind) {
        return None;
    }
    let mut out = Vec::new();
    for (from, to) in FIELDS {
        let text = match &detail[*from] {
            Value::String(s) => text::cut(s, VALUE_CAP),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            // A turn's error may be an object: its message is what a reader needs.
            Value::Object(o) => match o.get("message") {
                Some(Value::String(s)) => text::cut(s, VALUE_CAP),
                _ => continue,
            },
            _ => continue,
        };
        out.push((*to, text));
    }
    // An answer's decision, not its whole reply.
    if let Some(d) = detail["reply"]["result"]["decision"].as_str() {
        out.push(("decision", text::cut(d, VALUE_CAP)));
    } else if let Some(code) = detail["reply"]["error"]["code"].as_i64() {
        out.push(("reply_error", code.to_string()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(kind: &str, detail: Value) -> Option<String> {
        line_fields(kind, &detail).map(|f| {
            let refs: Vec<(&str, &dyn std::fmt::Display)> = f
                .iter()
                .map(|(k, v)| (*k, v as &dyn std::fmt::Display))
                .collect();
            logging::event_line(kind, &refs)
        })
    }

    #[test]
    fn a_finished_turn_has_status_and_duration_but_not_its_answer() {
        let l = line(
            "turn.completed",
            json!({"sessionId": "s1", "turnId": "t1", "status": "completed", "durationMs": 812,
                   "finalMessage": "the answer", "usage": {"total": 5}, "source": "notification"}),
        );
        assert_eq!(
            l.as_deref(),
            Some("event=turn.completed session=s1 turn=t1 status=completed duration_ms=812 source=notification")
        );
    }

    #[test]
    fn an_answered_request_names_the_decision_not_the_params() {
        let l = line(
            "request.answered",
            json!({"requestId": "r1", "method": "item/commandExecution/requestApproval",
                   "sessionId": "s1", "answeredBy": "operator",
                   "reply": {"result": {"decision": "accept"}}, "params": {"command": "rm -rf x"}}),
        );
        assert_eq!(
            l.as_deref(),
            Some("event=request.answered session=s1 request=r1 method=item/commandExecution/requestApproval by=operator decision=accept")
        );
    }

    #[test]
    fn noise_events_get_no_line() {
        assert_eq!(line("child.notification", json!({"method": "x"})), None);
    }

    #[test]
    fn a_child_exit_has_its_code_and_a_cut_reason_but_no_stderr() {
        let long = "x".repeat(500);
        let l = line(
            "child.exited",
            json!({"generation": 2, "reason": long, "code": 1, "signal": null,
                   "stderrTail": "secret stderr", "requested": false}),
        )
        .unwrap();
        assert!(
            l.starts_with("event=child.exited generation=2 exit_code=1 requested=false reason=xxx")
                && !l.contains("secret")
                && l.len() < 300,
            "{l}"
        );
    }
}
