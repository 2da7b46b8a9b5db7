//! codexd sessions: one per app-server thread, held by the hot registry (`registry.rs`,
//! one file each; finished and idle ones move to `session_store`'s archive). Also picking the
//! accepted request fields (`common::codex_fields`) that go to the app-server, and the
//! normalisation of turn input.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;

pub use crate::turn_record::{TurnProgress, TurnRecord};

/// What codexd answers a session's approvals with when no HTTP caller does in time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSettings {
    pub default: String,
    pub timeout_ms: u64,
}

/// Whether the session is open: `active` while it is, whatever its last turn did (the
/// original contract, which `sessions.active_count` counts); `archived` once deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionStatus {
    Archived,
    /// Also what a file from before `threadStatus` reads as (its `status` was the thread's).
    #[default]
    #[serde(other)]
    Active,
}

/// The state of the session's thread in the app-server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ThreadStatus {
    Idle,
    /// A turn runs (codexd keeps it `active` until the turn's end is recorded).
    Active,
    SystemError,
    /// Not loaded in the current app-server (after a restart, or closed by it): the next
    /// turn resumes it first.
    #[default]
    #[serde(other)]
    NotLoaded,
}

impl ThreadStatus {
    /// The app-server's `ThreadStatus.type`; None for one codexd does not know.
    pub fn parse(kind: &str) -> Option<ThreadStatus> {
        match kind {
            "idle" => Some(ThreadStatus::Idle),
            "active" => Some(ThreadStatus::Active),
            "systemError" => Some(ThreadStatus::SystemError),
            "notLoaded" => Some(ThreadStatus::NotLoaded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    pub purpose: String,
    pub thread_id: Option<String>,
    pub status: SessionStatus,
    #[serde(default)]
    pub thread_status: ThreadStatus,
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
    /// The most recent turn, running or finished.
    pub last_turn_id: Option<String>,
    /// `inProgress` from the 202 until the turn ends, then its outcome.
    pub last_turn_status: Option<String>,
    /// The record of the last finished turn (`to_json` shows the running one instead).
    pub last_turn: Option<TurnRecord>,
    pub turn_count: u64,
    pub metadata: Value,
    pub approvals: ApprovalSettings,
    /// The thread/start parameters, kept to recreate a thread that never got a rollout.
    pub thread_params: Value,
    /// True once a turn started: only then does the thread exist on disk and can be resumed.
    pub has_rollout: bool,
    pub last_error: Option<String>,
    /// The session this one was forked from (`POST /v1/codexd/sessions/:id/fork`).
    #[serde(default)]
    pub forked_from: Option<String>,
    /// Set when the session left the hot registry: `archiveReason` is `retention` (finished
    /// and idle too long; a new turn brings it back) or `deleted` (its thread is archived).
    #[serde(default)]
    pub archived_at: Option<String>,
    #[serde(default)]
    pub archive_reason: Option<String>,
    /// Child generation in which the thread was started or resumed (0 = not loaded).
    #[serde(skip)]
    pub loaded_generation: u64,
    #[serde(skip)]
    pub current: Option<TurnProgress>,
}

impl Session {
    /// The session as served: `lastTurn` is the record of the last turn, the running one
    /// (status `inProgress`, filled as it goes) while a turn runs.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.remove("threadParams");
            if let Some(cur) = &self.current {
                m.insert(
                    "currentTurn".into(),
                    json!({
                        "turnId": cur.turn_id,
                        // Empty for a turn found running after an attach (unknown).
                        "startedAt": (!cur.started_at.is_empty()).then_some(&cur.started_at),
                        "lastAgentMessage": cur.facts.last_message,
                    }),
                );
                let running = serde_json::to_value(cur.to_record("inProgress"));
                m.insert("lastTurn".into(), running.unwrap_or(Value::Null));
            }
        }
        v
    }

    /// [`to_json`](Self::to_json) with `lastTurn` in its summary form, for lists and status.
    pub fn to_summary_json(&self) -> Value {
        let mut v = self.to_json();
        let last = self
            .current
            .as_ref()
            .map(|c| c.to_record("inProgress"))
            .or_else(|| self.last_turn.clone());
        if let (Some(m), Some(r)) = (v.as_object_mut(), last) {
            let summary = serde_json::to_value(r.summary()).unwrap_or(Value::Null);
            m.insert("lastTurn".into(), summary);
        }
        v
    }

    /// A session as read from a file: `archived` exactly when deleted (an older file held
    /// the thread's state in `status`).
    pub fn loaded(mut self) -> Session {
        self.status = if self.archive_reason.as_deref() == Some("deleted") {
            SessionStatus::Archived
        } else {
            SessionStatus::Active
        };
        self
    }

    /// The copy written to the hot and archive files: `lastTurn` as a summary
    /// (the full record is in the session's turn file).
    pub fn stored_form(&self) -> Session {
        Session {
            last_turn: self.last_turn.as_ref().map(TurnRecord::summary),
            current: None,
            ..self.clone()
        }
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

/// The `session-registry.json` document of codexd before per-session files (read once,
/// to migrate it: `registry.rs`).
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
