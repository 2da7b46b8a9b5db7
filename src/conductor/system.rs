//! The automation mode (running / paused / draining): who set it, why, when, and a version
//! that goes up by one on every change. Persisted before a write is acknowledged.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::store::{JsonStore, StoreError};
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

pub const FILE: &str = "system-state.json";
const MAX_REQUESTED_BY: usize = 200;
const MAX_REASON: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Running,
    Paused,
    Draining,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Running => "running",
            Mode::Paused => "paused",
            Mode::Draining => "draining",
        }
    }
}

/// The action names shared by the HTTP routes and the Firefox bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Drain,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "drain" => Some(Action::Drain),
            _ => None,
        }
    }

    fn target(self) -> Mode {
        match self {
            Action::Pause => Mode::Paused,
            Action::Resume => Mode::Running,
            Action::Drain => Mode::Draining,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemState {
    pub mode: Mode,
    pub updated_at: String,
    pub requested_by: Option<String>,
    pub reason: Option<String>,
    pub version: u64,
}

impl SystemState {
    fn initial() -> Self {
        Self {
            mode: Mode::Running,
            updated_at: now_rfc3339(),
            requested_by: None,
            reason: None,
            version: 0,
        }
    }

    /// The public shape, with the current lease holder.
    pub fn to_json(&self, holder_id: Option<&str>) -> Value {
        json!({
            "mode": self.mode.as_str(),
            "holder_id": holder_id,
            "updated_at": self.updated_at,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "version": self.version,
        })
    }
}

/// Who asked for a mode change and why (validated caller input).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeRequest {
    pub requested_by: Option<String>,
    pub reason: Option<String>,
}

impl ChangeRequest {
    /// Reads `requested_by`/`requestedBy` and `reason` from a JSON object.
    pub fn from_json(body: &serde_json::Map<String, Value>) -> Result<Self, ApiError> {
        let field = |names: &[&str], max: usize| -> Result<Option<String>, ApiError> {
            for name in names {
                match body.get(*name) {
                    None | Some(Value::Null) => continue,
                    Some(Value::String(s)) => {
                        let s = s.trim();
                        if s.chars().count() > max {
                            return Err(ApiError::bad_request(
                                "invalid_request",
                                format!("{name} must be at most {max} characters."),
                            ));
                        }
                        return Ok(Some(s.to_string()).filter(|s| !s.is_empty()));
                    }
                    Some(_) => {
                        return Err(ApiError::bad_request(
                            "invalid_request",
                            format!("{name} must be a string."),
                        ))
                    }
                }
            }
            Ok(None)
        };
        Ok(Self {
            requested_by: field(&["requested_by", "requestedBy"], MAX_REQUESTED_BY)?,
            reason: field(&["reason"], MAX_REASON)?,
        })
    }
}

/// Reads and changes the system state file.
pub struct SystemStore {
    lock: Mutex<()>,
}

impl Default for SystemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemStore {
    pub fn new() -> Self {
        Self {
            lock: Mutex::new(()),
        }
    }

    /// The current state; a missing or corrupt file reads as the initial `running` state.
    pub fn load(&self, store: &JsonStore) -> Result<SystemState, StoreError> {
        Ok(store
            .read_or_warn::<SystemState>(FILE)?
            .unwrap_or_else(SystemState::initial))
    }

    /// Applies `action`, persists it, and returns the new state.
    pub fn apply(
        &self,
        store: &JsonStore,
        action: Action,
        req: &ChangeRequest,
    ) -> Result<SystemState, StoreError> {
        let _guard = lock(&self.lock);
        let current = self.load(store)?;
        let next = SystemState {
            mode: action.target(),
            updated_at: now_rfc3339(),
            requested_by: req.requested_by.clone(),
            reason: req.reason.clone(),
            version: current.version + 1,
        };
        store.write(FILE, &next)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_persists_and_bumps_version() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        let sys = SystemStore::new();
        assert_eq!(sys.load(&store).unwrap().mode, Mode::Running);
        let req = ChangeRequest {
            requested_by: Some("ops".into()),
            reason: Some("maintenance".into()),
        };
        let s = sys.apply(&store, Action::Pause, &req).unwrap();
        assert_eq!((s.mode, s.version), (Mode::Paused, 1));
        let s = sys
            .apply(&store, Action::Drain, &ChangeRequest::default())
            .unwrap();
        assert_eq!(
            (s.mode, s.version, s.requested_by.clone()),
            (Mode::Draining, 2, None)
        );
        assert_eq!(sys.load(&store).unwrap(), s);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn change_request_validation() {
        let ok = serde_json::from_str::<serde_json::Map<String, Value>>(
            r#"{"requestedBy":"a","reason":" b "}"#,
        )
        .unwrap();
        assert_eq!(
            ChangeRequest::from_json(&ok).unwrap(),
            ChangeRequest {
                requested_by: Some("a".into()),
                reason: Some("b".into())
            }
        );
        let bad =
            serde_json::from_str::<serde_json::Map<String, Value>>(r#"{"reason": 5}"#).unwrap();
        assert_eq!(
            ChangeRequest::from_json(&bad).unwrap_err().code,
            "invalid_request"
        );
    }
}
