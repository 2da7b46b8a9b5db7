//! Server-initiated requests from the app-server (approvals and the like). An unanswered
//! approval blocks its turn for ever, so every request gets an answer: from an HTTP caller
//! within the session's timeout, or else the session's default decision.
//!
//! This file holds the pure parts: the pending-request record and how a decision becomes
//! the reply `result` each method expects.

use std::time::Instant;

use serde_json::{json, Value};

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
    pub timeout_ms: u64,
    pub default_decision: Decision,
}

impl Pending {
    pub fn to_json(&self) -> Value {
        json!({
            "requestId": self.request_id,
            "method": self.method,
            "sessionId": self.session_id,
            "threadId": self.params.get("threadId"),
            "turnId": self.params.get("turnId"),
            "itemId": self.params.get("itemId"),
            "createdAt": self.created_at,
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
}
