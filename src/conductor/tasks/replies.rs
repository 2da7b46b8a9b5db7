//! codexd's answers as the task worker reads them, parsed once at the edge. Only the fields
//! a run uses are named; everything else codexd sends is ignored, and a field it omits is
//! `None` or empty, so older and newer codexd versions both parse.
//!
//! A session's `status` is deliberately absent except to tell `archived` apart: whether a
//! turn runs is read from `currentTurnId` and `lastTurnStatus`, never from `status` (which
//! says `active` for every open session in the original contract, and followed the thread
//! for a while); `threadStatus`, where codexd sends it, is kept for logs only.

use serde::Deserialize;
use serde_json::Value;

/// `data.session` of `POST /v1/codexd/sessions` and `GET /v1/codexd/sessions/:id`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionReply {
    pub session_id: String,
    pub thread_id: Option<String>,
    pub status: Option<String>,
    pub thread_status: Option<String>,
    pub current_turn_id: Option<String>,
    pub last_turn_id: Option<String>,
    pub last_turn_status: Option<String>,
    /// The last turn's record in full (the running one while a turn runs).
    pub last_turn: Option<TurnRecord>,
}

impl SessionReply {
    /// Deleted in codexd: a retry must not continue in it.
    pub fn is_archived(&self) -> bool {
        self.status.as_deref() == Some("archived")
    }
}

/// `data` of the 202 to `POST /v1/codexd/turn`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TurnAccepted {
    pub turn_id: String,
}

/// A turn's record: `lastTurn` of a session, or one of `GET …/turns`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TurnRecord {
    pub turn_id: String,
    pub status: String,
    pub completed_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub final_message: Option<String>,
    pub error: Option<Value>,
    pub usage: Option<Value>,
    pub commands: Vec<CommandRun>,
    pub file_changes: Vec<FileChange>,
}

impl TurnRecord {
    /// The error's `message`, if the record carries one.
    pub fn error_message(&self) -> Option<&str> {
        self.error.as_ref()?.get("message")?.as_str()
    }
}

/// `data` of `GET …/turns`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TurnList {
    pub turns: Vec<TurnRecord>,
}

/// A command a turn ran: from a turn record, or a live `commandExecution` item.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CommandRun {
    /// A string in records; the app-server's items may carry another shape.
    pub command: Value,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<u64>,
}

impl CommandRun {
    pub fn text(&self) -> String {
        match &self.command {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// A file a turn changed, as its record lists it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct FileChange {
    pub path: Option<String>,
    pub kind: Option<String>,
}

/// One frame of codexd's event stream (`{seq, type, detail}`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EventFrame {
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: EventDetail,
}

/// The part of an event's `detail` a run reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EventDetail {
    pub session_id: Option<String>,
    pub turn_id: Option<String>,
    pub request_id: Option<String>,
    pub method: Option<String>,
    /// The app-server's notification or request params, as sent.
    pub params: Value,
    pub deadline_at: Option<String>,
    pub default_decision: Option<String>,
    pub answered_by: Option<String>,
    pub reply: Value,
}

/// `params.item` of an `item/completed` notification: the kinds a run logs live.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Item {
    CommandExecution(CommandRun),
    FileChange {
        #[serde(default)]
        changes: Vec<ItemChange>,
    },
    #[serde(other)]
    Other,
}

/// One change of a live `fileChange` item; its `kind` is `{type}` or a bare string.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ItemChange {
    pub path: Option<String>,
    pub kind: Value,
}

impl ItemChange {
    pub fn kind(&self) -> &str {
        self.kind
            .get("type")
            .and_then(Value::as_str)
            .or(self.kind.as_str())
            .unwrap_or("update")
    }
}

impl EventDetail {
    /// The completed item, when this is an `item/completed` detail of a kind a run logs.
    pub fn item(&self) -> Option<Item> {
        serde_json::from_value(self.params.get("item")?.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sessions_parse_in_the_old_and_the_new_contract() {
        let old: SessionReply = serde_json::from_value(json!({
            "sessionId": "s1", "threadId": "t1", "status": "idle", "currentTurnId": null,
            "lastTurnId": "u1", "lastTurnStatus": "completed",
            "lastTurn": {"turnId": "u1", "status": "completed", "finalMessage": "hi",
                         "commands": [{"command": "ls", "exitCode": 0}], "fileChanges": []},
            "unknownField": 1
        }))
        .unwrap();
        assert_eq!(old.thread_status, None);
        assert_eq!(old.last_turn.as_ref().unwrap().commands[0].text(), "ls");
        let new: SessionReply = serde_json::from_value(json!({
            "sessionId": "s1", "status": "active", "threadStatus": "idle", "lastTurnId": null
        }))
        .unwrap();
        assert_eq!(new.thread_status.as_deref(), Some("idle"));
        assert!(!new.is_archived());
        assert_eq!((new.current_turn_id, new.last_turn), (None, None));
    }

    #[test]
    fn event_items_parse_by_type() {
        let f: EventFrame = serde_json::from_value(json!({"seq": 3, "type": "item/completed",
            "detail": {"sessionId": "s", "turnId": "t", "params": {"item": {"type": "fileChange",
            "changes": [{"path": "a", "kind": {"type": "add"}}, {"path": "b", "kind": "delete"}]}}}}))
        .unwrap();
        let Some(Item::FileChange { changes }) = f.detail.item() else {
            panic!("{f:?}")
        };
        assert_eq!((changes[0].kind(), changes[1].kind()), ("add", "delete"));
        let d = EventDetail {
            params: json!({"item": {"type": "agentMessage", "text": "x"}}),
            ..EventDetail::default()
        };
        assert_eq!(d.item(), Some(Item::Other));
        let d = EventDetail {
            params: json!({"item": {"type": "commandExecution", "command": ["ls", "-l"], "exitCode": 2}}),
            ..EventDetail::default()
        };
        let Some(Item::CommandExecution(c)) = d.item() else {
            panic!()
        };
        assert_eq!((c.text(), c.exit_code), ("[\"ls\",\"-l\"]".into(), Some(2)));
    }
}
