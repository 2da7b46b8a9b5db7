//! Server-initiated requests from the app-server (approvals and the like). An unanswered
//! approval blocks its turn for ever, so every request gets an answer: from an HTTP caller
//! within the session's timeout, or else the session's default decision.
//!
//! This file holds the pure parts: the pending-request record and how a decision becomes
//! the reply `result` each method expects.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::time::{now_ms, rfc3339_from_ms};

use crate::config::Decision;

/// A request from the child waiting for an answer.
#[derive(Debug, Clone)]
pub struct Pending {
    /// codexd's id for it (used in the HTTP route); the child's own id is `child_id`.
    pub request_id: String,
    pub child_id: Value,
    pub generation: u64,
    pub method: String,
    pub params: Value,
    pub session_id: Option<String>,
    pub created_at: String,
    pub deadline: Instant,
    /// `deadline` on the wall clock (epoch ms), which survives a codexd restart.
    pub deadline_ms: u64,
    pub timeout_ms: u64,
    pub default_decision: Decision,
}

/// A pending request as `daemon-state.json` keeps it: in unix mode the app-server outlives
/// codexd and replays the request to the next codexd, which registers it again under the
/// same `requestId` and deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRecord {
    pub request_id: String,
    pub child_id: Value,
    pub method: String,
    pub params: Value,
    pub session_id: Option<String>,
    pub created_at: String,
    pub deadline_ms: u64,
    pub timeout_ms: u64,
    pub default_decision: String,
}

impl Pending {
    pub fn record(&self) -> PendingRecord {
        PendingRecord {
            request_id: self.request_id.clone(),
            child_id: self.child_id.clone(),
            method: self.method.clone(),
            params: self.params.clone(),
            session_id: self.session_id.clone(),
            created_at: self.created_at.clone(),
            deadline_ms: self.deadline_ms,
            timeout_ms: self.timeout_ms,
            default_decision: self.default_decision.as_str().to_string(),
        }
    }

    /// A recorded request, not yet replayed (generation 0); its deadline carries over.
    pub fn from_record(r: &PendingRecord, fallback: Decision) -> Pending {
        let left = Duration::from_millis(r.deadline_ms.saturating_sub(now_ms()));
        Pending {
            request_id: r.request_id.clone(),
            child_id: r.child_id.clone(),
            generation: 0,
            method: r.method.clone(),
            params: r.params.clone(),
            session_id: r.session_id.clone(),
            created_at: r.created_at.clone(),
            deadline: Instant::now() + left,
            deadline_ms: r.deadline_ms,
            timeout_ms: r.timeout_ms,
            default_decision: Decision::parse(&r.default_decision).unwrap_or(fallback),
        }
    }

    /// True if the child's request (`id`, `method`, `params`) is this one asked again: a
    /// replay after a new connection resumed its thread. Same process, so the same id,
    /// method, thread and item.
    pub fn is_replayed_by(&self, id: &Value, method: &str, params: &Value) -> bool {
        &self.child_id == id
            && self.method == method
            && self.params.get("threadId") == params.get("threadId")
            && self.params.get("itemId") == params.get("itemId")
    }

    pub fn turn_id(&self) -> Option<&str> {
        self.params.get("turnId").and_then(Value::as_str)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requestId": self.request_id,
            "method": self.method,
            "sessionId": self.session_id,
            "threadId": self.params.get("threadId"),
            "turnId": self.params.get("turnId"),
            "itemId": self.params.get("itemId"),
            "createdAt": self.created_at,
            "deadlineAt": rfc3339_from_ms(self.deadline_ms),
            "timeoutMs": self.timeout_ms,
            "defaultDecision": self.default_decision.as_str(),
            "availableDecisions": self.params.get("availableDecisions"),
            "params": self.params,
        })
    }
}

/// What to send back for a server request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Result(Value),
    Error { code: i64, message: String },
}

/// True for requests that a decision (accept/decline/cancel) can answer.
pub fn is_decision_request(method: &str) -> bool {
    matches!(
        method,
        "item/commandExecution/requestApproval"
            | "item/fileChange/requestApproval"
            | "item/permissions/requestApproval"
            | "mcpServer/elicitation/request"
            | "execCommandApproval"
            | "applyPatchApproval"
    )
}

/// The reply for `method` carrying `decision`.
pub fn answer_for(method: &str, params: &Value, decision: Decision) -> Answer {
    match method {
        "item/commandExecution/requestApproval" | "item/fileChange/requestApproval" => {
            Answer::Result(json!({"decision": decision.as_str()}))
        }
        // Legacy v1 approvals speak approved/denied/abort.
        "execCommandApproval" | "applyPatchApproval" => Answer::Result(json!({
            "decision": match decision {
                Decision::Accept => "approved",
                Decision::Decline => "denied",
                Decision::Cancel => "abort",
            }
        })),
        "item/permissions/requestApproval" => {
            let granted = match decision {
                Decision::Accept => params.get("permissions").cloned().unwrap_or(json!({})),
                _ => json!({}),
            };
            Answer::Result(json!({"permissions": granted, "scope": "turn"}))
        }
        "mcpServer/elicitation/request" => {
            Answer::Result(json!({"action": decision.as_str(), "content": null}))
        }
        // Questions to the user get no answers; dynamic tool calls report failure.
        "item/tool/requestUserInput" => Answer::Result(json!({"answers": {}})),
        "item/tool/call" => Answer::Result(json!({
            "contentItems": [{"type": "inputText", "text": "codexd has no handler for dynamic tools"}],
            "success": false
        })),
        other => Answer::Error {
            code: -32601,
            message: format!("codexd does not handle {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_match_each_method() {
        let p = json!({"permissions": {"network": true}});
        assert_eq!(
            answer_for(
                "item/commandExecution/requestApproval",
                &p,
                Decision::Accept
            ),
            Answer::Result(json!({"decision": "accept"}))
        );
        assert_eq!(
            answer_for("item/fileChange/requestApproval", &p, Decision::Decline),
            Answer::Result(json!({"decision": "decline"}))
        );
        assert_eq!(
            answer_for("execCommandApproval", &p, Decision::Decline),
            Answer::Result(json!({"decision": "denied"}))
        );
        assert_eq!(
            answer_for("item/permissions/requestApproval", &p, Decision::Accept),
            Answer::Result(json!({"permissions": {"network": true}, "scope": "turn"}))
        );
        assert!(matches!(
            answer_for("account/chatgptAuthTokens/refresh", &p, Decision::Accept),
            Answer::Error { code: -32601, .. }
        ));
        assert!(is_decision_request("item/fileChange/requestApproval"));
        assert!(!is_decision_request("item/tool/call"));
    }

    #[test]
    fn a_recorded_request_keeps_its_id_and_deadline_and_knows_its_replay() {
        let p = Pending {
            request_id: "req_1".into(),
            child_id: json!(0),
            generation: 3,
            method: "item/commandExecution/requestApproval".into(),
            params: json!({"threadId": "t", "turnId": "u", "itemId": "call_1"}),
            session_id: Some("cxs_1".into()),
            created_at: "2026-01-01T00:00:00Z".into(),
            deadline: Instant::now(),
            deadline_ms: now_ms() + 60_000,
            timeout_ms: 60_000,
            default_decision: Decision::Cancel,
        };
        let doc = serde_json::to_value(p.record()).unwrap();
        let back: PendingRecord = serde_json::from_value(doc).unwrap();
        let again = Pending::from_record(&back, Decision::Decline);
        assert_eq!(
            (
                again.request_id.as_str(),
                again.generation,
                again.default_decision
            ),
            ("req_1", 0, Decision::Cancel)
        );
        let left = again.deadline.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(50), "{left:?}");
        let method = "item/commandExecution/requestApproval";
        assert!(again.is_replayed_by(&json!(0), method, &p.params));
        assert!(!again.is_replayed_by(&json!(1), method, &p.params));
        let other_item = json!({"threadId": "t", "itemId": "call_2"});
        assert!(!again.is_replayed_by(&json!(0), method, &other_item));
    }
}
