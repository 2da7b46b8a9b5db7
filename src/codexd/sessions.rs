//! codexd sessions: one per app-server thread, persisted in session-registry.json. Also
//! which accepted request fields (`common::codex_fields`) go to the app-server, and the
//! normalisation of turn input.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;

/// Session fields passed through to `thread/start` / `thread/resume`.
pub const THREAD_FIELDS: &[&str] = &[
    "approvalPolicy",
    "baseInstructions",
    "config",
    "cwd",
    "developerInstructions",
    "ephemeral",
    "model",
    "modelProvider",
    "personality",
    "sandbox",
    "serviceTier",
];

/// Turn fields passed through to `turn/start` as per-turn overrides.
pub const TURN_OVERRIDES: &[&str] = &[
    "approvalPolicy",
    "collaborationMode",
    "cwd",
    "effort",
    "model",
    "outputSchema",
    "personality",
    "sandboxPolicy",
    "serviceTier",
    "summary",
];

/// The outcome of a finished turn, readable without a WebSocket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TurnRecord {
    pub turn_id: String,
    /// `completed`, `failed`, `interrupted` (or `inProgress` while running).
    pub status: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// The last agent message of the turn.
    pub final_message: Option<String>,
    pub error: Option<Value>,
    pub usage: Option<Value>,
    pub duration_ms: Option<u64>,
}

/// What codexd answers a session's approvals with when no HTTP caller does in time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSettings {
    pub default: String,
    pub timeout_ms: u64,
}

/// Progress of the running turn (memory only; a restart interrupts it anyway).
#[derive(Debug, Clone)]
pub struct TurnProgress {
    pub turn_id: String,
    pub started_at: String,
    pub last_message: Option<String>,
    pub error: Option<Value>,
    pub usage: Option<Value>,
    /// Set when the thread reported `idle` while this turn was still open.
    pub idle_since: Option<Instant>,
    pub reconciling: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    pub purpose: String,
    pub thread_id: Option<String>,
    pub status: String,
    pub endpoint: String,
    pub child_pid: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
    pub cwd: Option<String>,
    pub model: Option<String>,
    pub model_provider: Option<String>,
    pub service_tier: Option<String>,
    pub reasoning_effort: Option<String>,
    pub approval_policy: Option<Value>,
    pub sandbox: Option<Value>,
    pub current_turn_id: Option<String>,
    pub last_turn_id: Option<String>,
    pub last_turn_status: Option<String>,
    pub last_turn: Option<TurnRecord>,
    pub turn_count: u64,
    pub metadata: Value,
    pub approvals: ApprovalSettings,
    /// The thread/start parameters, kept to recreate a thread that never got a rollout.
    pub thread_params: Value,
    /// True once a turn started: only then does the thread exist on disk and can be resumed.
    pub has_rollout: bool,
    pub last_error: Option<String>,
    /// Child generation in which the thread was started or resumed (0 = not loaded).
    #[serde(skip)]
    pub loaded_generation: u64,
    #[serde(skip)]
    pub current: Option<TurnProgress>,
}

impl Session {
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.remove("threadParams");
            if let Some(cur) = &self.current {
                m.insert(
                    "currentTurn".into(),
                    json!({
                        "turnId": cur.turn_id,
                        "startedAt": cur.started_at,
                        "lastAgentMessage": cur.last_message,
                    }),
                );
            }
        }
        v
    }
}

/// `fields` picked from `m` (only those present and non-null).
pub fn pick(m: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| {
            m.get(*f)
                .filter(|v| !v.is_null())
                .map(|v| (f.to_string(), v.clone()))
        })
        .collect()
}

pub fn opt_string(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            format!("{key} must be a string."),
        )),
    }
}

/// Turn input: a string, one input item, or an array of items (SPEC §4.3, alias `prompt`).
pub fn normalize_input(body: &Map<String, Value>) -> Result<Value, ApiError> {
    let raw = body
        .get("input")
        .filter(|v| !v.is_null())
        .or_else(|| body.get("prompt").filter(|v| !v.is_null()));
    let bad = |msg: &str| ApiError::bad_request("invalid_input", msg.to_string());
    match raw {
        None => Err(bad(
            "input (or prompt) is required: a string or app-server input items.",
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Err(bad("input must not be empty.")),
        Some(Value::String(s)) => Ok(json!([{"type": "text", "text": s, "text_elements": []}])),
        Some(Value::Object(o)) if o.get("type").is_some_and(Value::is_string) => {
            Ok(Value::Array(vec![Value::Object(o.clone())]))
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            if items
                .iter()
                .all(|i| i.get("type").is_some_and(Value::is_string))
            {
                Ok(Value::Array(items.clone()))
            } else {
                Err(bad(
                    "every input item must be an object with a string \"type\".",
                ))
            }
        }
        Some(_) => Err(bad(
            "input must be a string, an input item {type, ...} or a non-empty array of items.",
        )),
    }
}

/// The session-registry.json document.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryFile {
    pub updated_at: Option<String>,
    pub sessions: Vec<Session>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn input_forms() {
        assert_eq!(
            normalize_input(&obj(json!({"prompt": "hi"}))).unwrap(),
            json!([{"type": "text", "text": "hi", "text_elements": []}])
        );
        assert_eq!(
            normalize_input(&obj(
                json!({"input": {"type": "localImage", "path": "/a.png"}})
            ))
            .unwrap(),
            json!([{"type": "localImage", "path": "/a.png"}])
        );
        for bad in [
            json!({}),
            json!({"input": 3}),
            json!({"input": []}),
            json!({"input": [{"x": 1}]}),
            json!({"input": " "}),
        ] {
            assert_eq!(
                normalize_input(&obj(bad.clone())).unwrap_err().code,
                "invalid_input",
                "{bad}"
            );
        }
    }
}
