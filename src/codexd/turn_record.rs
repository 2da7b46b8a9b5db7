//! The turn record: what one turn did, readable without a WebSocket and after the event
//! ring has moved on (`lastTurn`, `GET /v1/codexd/sessions/:id/turns`). It is built two
//! ways from the same item facts: live, from the notifications of the running turn
//! ([`TurnProgress`]), and later, from the app-server's own `Turn` objects
//! (`thread/turns/list`, `thread/read`), which outlive codexd's memory but carry neither the
//! token usage nor the turn's unified diff, so codexd keeps its records of finished turns
//! (`session_store`) and [`TurnRecord::fill_from`] merges the two.
//!
//! Every list and text in a record is capped, so a turn that ran thousands of commands or
//! produced a huge diff still yields a record of bounded size.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::text;
use baa::common::time::{now_rfc3339, rfc3339_from_ms};

/// The turn's unified diff is kept up to this many bytes (`diffTruncated` says when cut).
pub const DIFF_CAP: usize = 256 * 1024;
/// Commands and file changes listed per record; `commandCount` / `fileChangeCount` count all.
pub const MAX_LISTED: usize = 200;
/// Each command line is kept up to this many bytes (heredocs can be long).
pub const COMMAND_TEXT_CAP: usize = 2048;
/// `finalMessage` in a summary (session lists, status, the registry file) is cut here.
pub const SUMMARY_MESSAGE_CAP: usize = 4096;

/// One command the turn ran (a `commandExecution` item).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CommandRun {
    pub command: String,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<u64>,
    /// `completed`, `failed` or `declined`.
    pub status: Option<String>,
}

/// One file the turn changed (a change of a `fileChange` item).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FileChange {
    pub path: String,
    /// `add`, `delete` or `update`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_path: Option<String>,
}

/// The outcome of a turn. Missing fields read as defaults, so records written by an older
/// codexd still load.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TurnRecord {
    pub turn_id: String,
    /// `turn`, `review` (a `review/start` turn) or `compact` (a context compaction).
    pub kind: Option<String>,
    /// `inProgress`, `completed`, `failed` or `interrupted`.
    pub status: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// The last agent message of the turn.
    pub final_message: Option<String>,
    pub error: Option<Value>,
    pub usage: Option<Value>,
    pub commands: Vec<CommandRun>,
    pub command_count: usize,
    pub file_changes: Vec<FileChange>,
    pub file_change_count: usize,
    /// The last `turn/diff/updated` of the turn, cut at [`DIFF_CAP`].
    pub diff: Option<String>,
    /// Size of the whole diff, also when cut or left out of a summary.
    pub diff_bytes: usize,
    pub diff_truncated: bool,
    /// The last `turn/plan/updated` (`{explanation, steps}`) or plan item (`{text}`).
    pub plan: Option<Value>,
    /// A review's findings as the app-server wrote them (`exitedReviewMode`).
    pub review: Option<String>,
    /// True in the summary form: commands, fileChanges, diff, plan and review are left out
    /// and finalMessage is cut; the full record is `GET /v1/codexd/sessions/:id`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub summary: bool,
}

impl TurnRecord {
    /// The record without its heavy parts, for lists, status and the registry file.
    pub fn summary(&self) -> TurnRecord {
        TurnRecord {
            commands: Vec::new(),
            file_changes: Vec::new(),
            diff: None,
            plan: None,
            review: None,
            final_message: self
                .final_message
                .as_deref()
                .map(|m| cap(m, SUMMARY_MESSAGE_CAP)),
            summary: true,
            ..self.clone()
        }
    }

    /// A record built from the app-server's `Turn` object (items as given: `full` lists
    /// every command and file change, `summary` only the agent messages).
    pub fn from_app_turn(turn: &Value) -> TurnRecord {
        let mut facts = ItemFacts::default();
        for item in items_of(turn) {
            facts.add(item);
        }
        let secs = |k: &str| {
            turn.get(k)
                .and_then(Value::as_u64)
                .map(|s| rfc3339_from_ms(s.saturating_mul(1000)))
        };
        let mut record = TurnRecord {
            turn_id: text(turn, "id").unwrap_or_default(),
            status: text(turn, "status").unwrap_or_else(|| "completed".into()),
            started_at: secs("startedAt"),
            completed_at: secs("completedAt"),
            duration_ms: turn.get("durationMs").and_then(Value::as_u64),
            error: turn.get("error").filter(|e| !e.is_null()).cloned(),
            ..TurnRecord::default()
        };
        facts.write_into(&mut record);
        record
    }

    /// The record of a turn codexd never saw run (its `turn/completed` or `thread/read`
    /// Turn is all there is).
    pub fn closed(turn: &Value) -> TurnRecord {
        let mut record = TurnRecord::from_app_turn(turn);
        record.completed_at.get_or_insert_with(now_rfc3339);
        fail_if_errored(&mut record);
        record
    }

    /// Fills what this record lacks from `other`, a record of the same turn: the app-server's
    /// turns lack usage and the diff, and codexd's own may lack what a restart lost.
    pub fn fill_from(&mut self, other: &TurnRecord) {
        let TurnRecord {
            status,
            kind,
            started_at,
            completed_at,
            duration_ms,
            final_message,
            error,
            usage,
            commands,
            command_count,
            file_changes,
            file_change_count,
            diff,
            diff_bytes,
            diff_truncated,
            plan,
            review,
            ..
        } = other.clone();
        // codex writes its rollout after it reports the turn done: a history read right
        // after can still see the turn running, while codexd already holds how it ended.
        if self.status == "inProgress" && status != "inProgress" {
            self.status = status;
        }
        fill(&mut self.started_at, started_at);
        fill(&mut self.completed_at, completed_at);
        fill(&mut self.duration_ms, duration_ms);
        fill(&mut self.final_message, final_message);
        fill(&mut self.error, error);
        fill(&mut self.usage, usage);
        fill(&mut self.plan, plan);
        fill(&mut self.review, review);
        if self.kind.is_none() || self.kind.as_deref() == Some("turn") {
            self.kind = kind.or(self.kind.take());
        }
        if self.commands.is_empty() && command_count > 0 {
            self.commands = commands;
            self.command_count = command_count;
        }
        if self.file_changes.is_empty() && file_change_count > 0 {
            self.file_changes = file_changes;
            self.file_change_count = file_change_count;
        }
        if self.diff.is_none() && diff.is_some() {
            self.diff = diff;
            self.diff_bytes = diff_bytes;
            self.diff_truncated = diff_truncated;
        }
    }
}

/// Progress of the running turn, folded from its notifications (memory only: a restart
/// interrupts the turn, and its record is then what this held).
#[derive(Debug, Clone)]
pub struct TurnProgress {
    pub turn_id: String,
    /// Set on a sub-turn opened before its root turn (see `notifications`).
    pub root_turn_id: Option<String>,
    pub started_at: String,
    pub facts: ItemFacts,
    pub error: Option<Value>,
    pub usage: Option<Value>,
    pub diff: Option<String>,
    pub diff_bytes: usize,
    pub diff_truncated: bool,
    /// Set when the thread reported `idle` while this turn was still open.
    pub idle_since: Option<Instant>,
    pub reconciling: bool,
}

impl TurnProgress {
    pub fn new(turn_id: &str) -> TurnProgress {
        TurnProgress {
            turn_id: turn_id.to_string(),
            root_turn_id: None,
            started_at: now_rfc3339(),
            facts: ItemFacts::default(),
            error: None,
            usage: None,
            diff: None,
            diff_bytes: 0,
            diff_truncated: false,
            idle_since: None,
            reconciling: false,
        }
    }

    /// `turn/diff/updated`: the whole diff so far replaces the previous one.
    pub fn on_diff(&mut self, diff: &str) {
        self.diff_bytes = diff.len();
        self.diff_truncated = diff.len() > DIFF_CAP;
        self.diff = Some(cap(diff, DIFF_CAP));
    }

    /// `turn/plan/updated`.
    pub fn on_plan(&mut self, params: &Value) {
        self.facts.plan = Some(json!({
            "explanation": params.get("explanation").cloned().unwrap_or(Value::Null),
            "steps": params.get("plan").cloned().unwrap_or(json!([])),
        }));
    }

    /// A turn that was already running when this codexd attached to its app-server (unix
    /// mode): its start time is unknown here (empty) until the app-server's Turn says it.
    pub fn resumed(turn_id: &str) -> TurnProgress {
        TurnProgress {
            started_at: String::new(),
            ..TurnProgress::new(turn_id)
        }
    }

    /// The record as it stands, with `status`.
    pub fn to_record(&self, status: &str) -> TurnRecord {
        let mut record = TurnRecord {
            turn_id: self.turn_id.clone(),
            status: status.to_string(),
            started_at: (!self.started_at.is_empty()).then(|| self.started_at.clone()),
            error: self.error.clone(),
            usage: self.usage.clone(),
            diff: self.diff.clone(),
            diff_bytes: self.diff_bytes,
            diff_truncated: self.diff_truncated,
            ..TurnRecord::default()
        };
        self.facts.write_into(&mut record);
        record
    }

    /// The record of this turn closed by `turn` (a `turn/completed` or `thread/read` Turn):
    /// its status, error and duration; the final message from its items when it has one.
    pub fn finish(&self, turn: &Value) -> TurnRecord {
        let from_app = TurnRecord::from_app_turn(turn);
        let mut record = self.to_record(&from_app.status);
        record.completed_at = Some(now_rfc3339());
        record.duration_ms = from_app.duration_ms;
        if from_app.error.is_some() {
            record.error = from_app.error.clone();
        }
        if from_app.final_message.is_some() {
            record.final_message = from_app.final_message.clone();
        }
        record.fill_from(&from_app);
        fail_if_errored(&mut record);
        record
    }
}

/// What a turn's items say, folded item by item (live or from a `Turn`).
#[derive(Debug, Clone, Default)]
pub struct ItemFacts {
    pub kind: Option<&'static str>,
    pub last_message: Option<String>,
    pub commands: Vec<CommandRun>,
    pub command_count: usize,
    pub file_changes: Vec<FileChange>,
    pub file_change_count: usize,
    pub plan: Option<Value>,
    pub review: Option<String>,
}

impl ItemFacts {
    /// Folds one completed item.
    pub fn add(&mut self, item: &Value) {
        match item.get("type").and_then(Value::as_str).unwrap_or("") {
            "agentMessage" => {
                if let Some(t) = text(item, "text") {
                    self.last_message = Some(t);
                }
            }
            "commandExecution" => {
                self.command_count += 1;
                if self.commands.len() < MAX_LISTED {
                    self.commands.push(CommandRun {
                        command: cap(&text(item, "command").unwrap_or_default(), COMMAND_TEXT_CAP),
                        exit_code: item.get("exitCode").and_then(Value::as_i64),
                        duration_ms: item.get("durationMs").and_then(Value::as_u64),
                        status: text(item, "status"),
                    });
                }
            }
            "fileChange" => {
                let changes = item.get("changes").and_then(Value::as_array);
                for c in changes.into_iter().flatten() {
                    self.file_change_count += 1;
                    if self.file_changes.len() < MAX_LISTED {
                        let kind = c.get("kind");
                        self.file_changes.push(FileChange {
                            path: text(c, "path").unwrap_or_default(),
                            kind: kind
                                .and_then(|k| text(k, "type"))
                                .or_else(|| kind.and_then(Value::as_str).map(str::to_string))
                                .unwrap_or_default(),
                            move_path: kind.and_then(|k| text(k, "move_path")),
                        });
                    }
                }
            }
            "plan" => {
                if let Some(t) = text(item, "text") {
                    self.plan = Some(json!({"text": t}));
                }
            }
            "enteredReviewMode" => self.kind = Some("review"),
            "exitedReviewMode" => {
                self.kind = Some("review");
                self.review = text(item, "review");
            }
            "contextCompaction" => self.kind = self.kind.or(Some("compact")),
            _ => {}
        }
    }

    fn write_into(&self, r: &mut TurnRecord) {
        r.kind = Some(self.kind.unwrap_or("turn").to_string());
        r.final_message = self.last_message.clone();
        r.commands = self.commands.clone();
        r.command_count = self.command_count;
        r.file_changes = self.file_changes.clone();
        r.file_change_count = self.file_change_count;
        r.plan = self.plan.clone();
        r.review = self.review.clone();
    }
}

/// A "completed" turn that carries an error did not succeed.
fn fail_if_errored(r: &mut TurnRecord) {
    if r.status == "completed" && r.error.is_some() {
        r.status = "failed".into();
    }
}

fn items_of(turn: &Value) -> impl Iterator<Item = &Value> {
    turn.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn fill<T>(slot: &mut Option<T>, other: Option<T>) {
    if slot.is_none() {
        *slot = other;
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cap(s: &str, max: usize) -> String {
    text::prefix(s, max).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(cmd: &str, exit: i64) -> Value {
        json!({"type": "commandExecution", "id": "c", "command": cmd, "exitCode": exit, "durationMs": 12, "status": "failed"})
    }

    #[test]
    fn a_full_app_turn_lists_commands_file_changes_and_the_final_message() {
        let turn = json!({
            "id": "t1", "status": "completed", "startedAt": 1_795_000_000, "completedAt": 1_795_000_001,
            "durationMs": 900, "error": null,
            "items": [
                {"type": "userMessage", "id": "u", "content": []},
                command("/bin/bash -lc 'exit 3'", 3),
                {"type": "fileChange", "id": "p", "status": "completed", "changes": [
                    {"path": "/w/a.txt", "kind": {"type": "add"}, "diff": "x"},
                    {"path": "/w/b.txt", "kind": {"type": "update", "move_path": "/w/c.txt"}, "diff": "y"}]},
                {"type": "agentMessage", "id": "m", "text": "done"},
            ],
        });
        let r = TurnRecord::from_app_turn(&turn);
        assert_eq!(
            (r.turn_id.as_str(), r.status.as_str(), r.kind.as_deref()),
            ("t1", "completed", Some("turn"))
        );
        assert_eq!(r.started_at.as_deref(), Some("2026-11-18T11:06:40.000Z"));
        assert_eq!(r.final_message.as_deref(), Some("done"));
        assert_eq!(
            r.commands,
            vec![CommandRun {
                command: "/bin/bash -lc 'exit 3'".into(),
                exit_code: Some(3),
                duration_ms: Some(12),
                status: Some("failed".into()),
            }]
        );
        assert_eq!(
            serde_json::to_value(&r.file_changes).unwrap(),
            json!([{"path": "/w/a.txt", "kind": "add"}, {"path": "/w/b.txt", "kind": "update", "movePath": "/w/c.txt"}])
        );
        assert_eq!((r.command_count, r.file_change_count), (1, 2));
    }

    #[test]
    fn a_review_turn_keeps_its_findings() {
        let turn = json!({"id": "t", "status": "completed", "items": [
            {"type": "enteredReviewMode", "id": "e", "review": "current changes"},
            {"type": "exitedReviewMode", "id": "x", "review": "- [P1] bad thing"},
            {"type": "agentMessage", "id": "m", "text": "- [P1] bad thing"},
        ]});
        let r = TurnRecord::from_app_turn(&turn);
        assert_eq!(r.kind.as_deref(), Some("review"));
        assert_eq!(r.review.as_deref(), Some("- [P1] bad thing"));
    }

    #[test]
    fn progress_caps_the_diff_and_the_listed_commands() {
        let mut p = TurnProgress::new("t");
        let big = "é".repeat(DIFF_CAP);
        p.on_diff(&big);
        for i in 0..(MAX_LISTED + 5) {
            p.facts.add(&command(&format!("cmd {i}"), 0));
        }
        let r = p.to_record("inProgress");
        assert_eq!(r.diff_bytes, big.len());
        assert!(r.diff_truncated);
        let kept = r.diff.as_deref().unwrap_or_default();
        assert!(
            kept.len() <= DIFF_CAP && big.starts_with(kept),
            "{}",
            kept.len()
        );
        assert_eq!(
            (r.commands.len(), r.command_count),
            (MAX_LISTED, MAX_LISTED + 5)
        );
    }

    #[test]
    fn finishing_takes_status_error_and_message_from_the_turn_and_the_rest_from_progress() {
        let mut p = TurnProgress::new("t");
        p.facts.add(&command("ls", 0));
        p.usage = Some(json!({"total": {"totalTokens": 15}}));
        p.on_diff("diff --git a/x b/x\n");
        let done = json!({"id": "t", "status": "completed", "durationMs": 5,
            "error": {"message": "stream closed"}, "items": [{"type": "agentMessage", "text": "partial"}]});
        let r = p.finish(&done);
        assert_eq!(r.status, "failed", "a completed turn with an error failed");
        assert_eq!(r.final_message.as_deref(), Some("partial"));
        assert_eq!(r.command_count, 1);
        assert_eq!(r.diff.as_deref(), Some("diff --git a/x b/x\n"));
        assert!(r.usage.is_some() && r.completed_at.is_some(), "{r:?}");
    }

    #[test]
    fn fill_from_adds_usage_and_diff_to_an_app_turn() {
        let mut app = TurnRecord::from_app_turn(
            &json!({"id": "t", "status": "completed", "items": [command("ls", 0)]}),
        );
        let mut ours = TurnProgress::new("t");
        ours.usage = Some(json!({"n": 1}));
        ours.on_diff("d");
        app.fill_from(&ours.to_record("completed"));
        assert_eq!(
            (app.usage, app.diff.as_deref()),
            (Some(json!({"n": 1})), Some("d"))
        );
        assert_eq!(app.command_count, 1);
    }

    #[test]
    fn history_read_before_codex_wrote_the_turns_end_said_in_progress_with_no_items() {
        // What `thread/turns/list` gives right after `turn/completed`, before the rollout
        // has the turn's end: running, no items.
        let mut app =
            TurnRecord::from_app_turn(&json!({"id": "t", "status": "inProgress", "items": []}));
        let mut ours = TurnProgress::new("t");
        ours.facts.add(&command("ls", 0));
        let mut kept = ours.to_record("completed");
        kept.final_message = Some("done".into());
        app.fill_from(&kept);
        assert_eq!(
            (
                app.status.as_str(),
                app.command_count,
                app.final_message.as_deref()
            ),
            ("completed", 1, Some("done"))
        );
        // A turn codexd still sees running stays running.
        let mut app =
            TurnRecord::from_app_turn(&json!({"id": "t", "status": "inProgress", "items": []}));
        app.fill_from(&TurnProgress::new("t").to_record("inProgress"));
        assert_eq!(app.status, "inProgress");
    }

    #[test]
    fn the_summary_drops_heavy_fields_and_cuts_the_message() {
        let mut p = TurnProgress::new("t");
        p.facts.add(&command("ls", 0));
        p.on_diff("d");
        p.facts.last_message = Some("m".repeat(SUMMARY_MESSAGE_CAP * 2));
        let s = p.to_record("completed").summary();
        assert!(
            s.summary && s.commands.is_empty() && s.diff.is_none(),
            "{s:?}"
        );
        assert_eq!((s.command_count, s.diff_bytes), (1, 1));
        assert_eq!(s.final_message.map(|m| m.len()), Some(SUMMARY_MESSAGE_CAP));
        let v = serde_json::to_value(p.to_record("completed")).unwrap();
        assert!(v.get("summary").is_none(), "{v}");
    }
}
