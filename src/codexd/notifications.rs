//! Messages from the child: routing responses, requests and notifications, and folding
//! notifications into session and turn state.

use std::time::Instant;

use serde_json::{json, Value};

use baa::common::time::now_rfc3339;

use crate::child::Link;
use crate::core::Core;
use crate::events::Level;
use crate::json_path::str_at;
use crate::sessions::{Session, ThreadStatus, TurnRecord};
use crate::turn_ops::{begin_turn, finish_turn, is_finished};

impl Core {
    /// Handles one parsed stdout line of generation `link`. Runs on the dispatcher thread:
    /// it never waits on the child.
    pub fn handle_message(&self, link: &Link, msg: &Value) {
        let has_method = msg.get("method").and_then(Value::as_str).is_some();
        let has_id = msg.get("id").is_some_and(|v| !v.is_null());
        match (has_method, has_id) {
            (true, true) => self.on_server_request(link, msg),
            (true, false) => self.on_notification(link, msg),
            (false, true) => {
                if !link.rpc.on_response(msg) {
                    log::debug!("response for an unknown or expired request id: {}", msg["id"]);
                }
            }
            (false, false) => log::warn!("app-server sent a message that is neither request, response nor notification; ignored"),
        }
    }

    pub(crate) fn on_notification(&self, _link: &Link, msg: &Value) {
        let method = msg["method"].as_str().unwrap_or_default();
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let thread_id = str_at(&params, &["threadId"])
            .or_else(|| str_at(&params, &["thread", "id"]))
            .map(str::to_string);
        let turn_id = str_at(&params, &["turnId"])
            .or_else(|| str_at(&params, &["turn", "id"]))
            .map(str::to_string);
        self.account
            .on_notification(method, &params, &self.events, &|| {
                self.persist_daemon_state()
            });
        let session_id = thread_id
            .as_deref()
            .and_then(|t| self.sessions.id_of_thread(t));
        let mut finished: Option<TurnRecord> = None;
        if let Some(sid) = &session_id {
            let changed = self.sessions.with_mut(sid, |s| {
                let changed = apply_notification(s, method, &params, turn_id.as_deref());
                if changed {
                    s.updated_at = now_rfc3339();
                    if method == "turn/completed" {
                        finished = s.last_turn.clone();
                    }
                }
                changed
            });
            // The full record first: the session keeps only its summary.
            if let Some(record) = &finished {
                self.store_turn(sid, record);
            }
            if changed == Some(true) {
                self.sessions.mark_changed(sid);
                // A turn that opened or ended is on disk before the event that says so.
                if matches!(method, "turn/started" | "turn/completed") {
                    self.persist_or_log(sid);
                }
            }
        }
        let level = match method {
            "error" => Level::Error,
            "warning" | "configWarning" | "deprecationNotice" => Level::Warn,
            _ => Level::Info,
        };
        self.emit(
            level,
            method,
            method.to_string(),
            json!({
                "sessionId": session_id, "threadId": thread_id, "turnId": turn_id,
                "method": method, "params": params, "emittedAtMs": msg.get("emittedAtMs"),
            }),
        );
        if let (Some(sid), Some(record)) = (&session_id, finished) {
            self.emit_turn_finished(sid, &record, "turn/completed");
            // A request of that turn still waiting for its replay will not be asked again.
            self.abandon_replayable(Some(&record.turn_id), "its turn ended");
        }
    }
}

/// Updates the session from one notification; returns true if it changed in a way the
/// registry keeps (the running turn's progress is memory only).
pub(crate) fn apply_notification(
    s: &mut Session,
    method: &str,
    params: &Value,
    turn_id: Option<&str>,
) -> bool {
    let is_current = |s: &Session| {
        turn_id.is_none()
            || s.current_turn_id.as_deref() == turn_id
            || s.current.as_ref().and_then(|c| c.root_turn_id.as_deref()) == turn_id
    };
    match method {
        "turn/started" => {
            s.has_rollout = true;
            let Some(t) = turn_id else { return true };
            // A review runs its work as a sub-turn whose `rootTurnId` is the turn review/start
            // answered with; that root turn's turn/completed ends it.
            match str_at(params, &["turn", "rootTurnId"]).filter(|r| *r != t) {
                Some(r) if s.current_turn_id.as_deref() == Some(r) => {}
                Some(r) if !is_finished(s, r) => {
                    // The root is not open yet (its HTTP handler is behind): open the
                    // sub-turn, to be renamed to its root when that opens or completes.
                    begin_turn(s, t);
                    if let Some(c) = s.current.as_mut().filter(|c| c.turn_id == t) {
                        c.root_turn_id = Some(r.to_string());
                    }
                }
                _ => begin_turn(s, t),
            }
            true
        }
        "turn/completed" => {
            let turn = params.get("turn").cloned().unwrap_or(Value::Null);
            let tid = turn_id.unwrap_or_default();
            if is_finished(s, tid) {
                return false; // already closed (reconciled)
            }
            if s.current_turn_id.as_deref() != Some(tid) {
                // Completion of a turn we never saw start: record it anyway.
                begin_turn(s, tid);
            }
            finish_turn(s, &turn);
            true
        }
        "item/completed" => {
            if is_current(s) {
                if let Some(cur) = s.current.as_mut() {
                    cur.facts.add(&params["item"]);
                }
            }
            false
        }
        "turn/diff/updated" => {
            if let (true, Some(diff)) = (is_current(s), str_at(params, &["diff"])) {
                if let Some(cur) = s.current.as_mut() {
                    cur.on_diff(diff);
                }
            }
            false
        }
        "turn/plan/updated" => {
            if is_current(s) {
                if let Some(cur) = s.current.as_mut() {
                    cur.on_plan(params);
                }
            }
            false
        }
        "thread/tokenUsage/updated" => {
            if let Some(cur) = s.current.as_mut() {
                cur.usage = params.get("tokenUsage").cloned();
            }
            false
        }
        "error" => {
            let will_retry = params
                .get("willRetry")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !will_retry {
                if let Some(cur) = s.current.as_mut() {
                    cur.error = params.get("error").cloned();
                }
            }
            false
        }
        "thread/status/changed" => {
            let kind = str_at(params, &["status", "type"]).unwrap_or("");
            if let Some(cur) = s.current.as_mut() {
                if kind == "idle" || kind == "systemError" {
                    cur.idle_since.get_or_insert_with(Instant::now);
                } else {
                    cur.idle_since = None;
                }
            }
            // `threadStatus` follows the thread's; while codexd still holds a turn open it
            // stays `active` (the turn's end, or the watchdog, settles it).
            let next = match ThreadStatus::parse(kind) {
                Some(ThreadStatus::Idle | ThreadStatus::SystemError) if s.current.is_some() => {
                    ThreadStatus::Active
                }
                Some(k) => k,
                None => return false,
            };
            set_thread_status(s, next)
        }
        // Unloaded by the app-server (closed, or archived by another client): the next turn
        // resumes it first. The session stays open (`status` is codexd's, not the thread's).
        "thread/closed" | "thread/archived" => {
            s.loaded_generation = 0;
            set_thread_status(s, ThreadStatus::NotLoaded)
        }
        _ => false,
    }
}

fn set_thread_status(s: &mut Session, status: ThreadStatus) -> bool {
    let changed = s.thread_status != status;
    s.thread_status = status;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::SessionStatus;

    fn session() -> Session {
        serde_json::from_value(json!({
            "sessionId": "cxs_t", "purpose": "duplex", "threadId": "th", "status": "active",
            "threadStatus": "idle",
            "endpoint": "stdio://x", "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z", "turnCount": 0, "metadata": {},
            "approvals": {"default": "decline", "timeoutMs": 1000}, "threadParams": {},
            "hasRollout": false,
        }))
        .unwrap()
    }

    fn apply(s: &mut Session, method: &str, params: Value) -> bool {
        let turn_id = str_at(&params, &["turnId"])
            .or_else(|| str_at(&params, &["turn", "id"]))
            .map(str::to_string);
        apply_notification(s, method, &params, turn_id.as_deref())
    }

    fn completed(id: &str) -> Value {
        json!({"threadId": "th", "turn": {"id": id, "status": "completed", "items": [
            {"type": "agentMessage", "text": format!("answer {id}")}]}})
    }

    #[test]
    fn last_turn_status_was_null_during_a_first_turn_and_stale_during_later_ones() {
        let mut s = session();
        begin_turn(&mut s, "t1");
        assert_eq!(
            (
                s.last_turn_id.as_deref(),
                s.last_turn_status.as_deref(),
                s.thread_status
            ),
            (Some("t1"), Some("inProgress"), ThreadStatus::Active)
        );
        assert_eq!(s.to_json()["lastTurn"]["status"], "inProgress");
        apply(&mut s, "turn/completed", completed("t1"));
        assert_eq!(s.last_turn_status.as_deref(), Some("completed"));
        assert_eq!(
            (s.status, s.thread_status),
            (SessionStatus::Active, ThreadStatus::Idle)
        );
        begin_turn(&mut s, "t2");
        let v = s.to_json();
        assert_eq!(
            (
                &v["lastTurnId"],
                &v["lastTurnStatus"],
                &v["lastTurn"]["turnId"]
            ),
            (&json!("t2"), &json!("inProgress"), &json!("t2")),
            "{v}"
        );
    }

    #[test]
    fn a_turn_completed_before_its_http_handler_opened_it_stays_finished() {
        let mut s = session();
        apply(
            &mut s,
            "turn/started",
            json!({"turn": {"id": "t1", "rootTurnId": "t1"}}),
        );
        apply(&mut s, "turn/completed", completed("t1"));
        begin_turn(&mut s, "t1");
        assert_eq!((s.current_turn_id.as_deref(), s.turn_count), (None, 1));
        assert_eq!(s.last_turn_status.as_deref(), Some("completed"));
    }

    #[test]
    fn a_review_sub_turn_that_starts_before_its_root_is_opened_becomes_the_root() {
        let mut s = session();
        // The sub-turn's turn/started reaches codexd before the review handler opens the
        // root turn; its items already carry the root's id.
        apply(
            &mut s,
            "turn/started",
            json!({"turn": {"id": "sub", "rootTurnId": "root"}}),
        );
        apply(
            &mut s,
            "item/completed",
            json!({"turnId": "root", "item": {"type": "exitedReviewMode", "review": "- [P1] x"}}),
        );
        begin_turn(&mut s, "root");
        assert_eq!(
            (s.current_turn_id.as_deref(), s.turn_count),
            (Some("root"), 1)
        );
        apply(&mut s, "turn/completed", completed("root"));
        let r = s.last_turn.clone().unwrap();
        assert_eq!(
            (r.turn_id.as_str(), r.kind.as_deref(), r.review.as_deref()),
            ("root", Some("review"), Some("- [P1] x"))
        );
        // Opened in the usual order, the sub-turn is part of the running root.
        begin_turn(&mut s, "root2");
        apply(
            &mut s,
            "turn/started",
            json!({"turn": {"id": "sub2", "rootTurnId": "root2"}}),
        );
        assert_eq!(
            (s.current_turn_id.as_deref(), s.turn_count),
            (Some("root2"), 2)
        );
    }

    #[test]
    fn the_thread_status_follows_the_thread_and_the_session_stays_active() {
        let mut s = session();
        let status = |s: &mut Session, kind: &str| {
            apply(
                s,
                "thread/status/changed",
                json!({"threadId": "th", "status": {"type": kind}}),
            );
            serde_json::to_value(s.thread_status).unwrap()
        };
        assert_eq!(status(&mut s, "active"), "active");
        assert_eq!(status(&mut s, "idle"), "idle");
        assert_eq!(status(&mut s, "systemError"), "systemError");
        assert_eq!(status(&mut s, "bogus"), "systemError", "unknown: unchanged");
        begin_turn(&mut s, "t1");
        assert_eq!(status(&mut s, "idle"), "active", "a turn is still open");
        apply(&mut s, "turn/completed", completed("t1"));
        assert_eq!(s.thread_status, ThreadStatus::Idle);
        apply(&mut s, "thread/closed", json!({"threadId": "th"}));
        assert_eq!(s.thread_status, ThreadStatus::NotLoaded);
        status(&mut s, "idle");
        apply(&mut s, "thread/archived", json!({"threadId": "th"}));
        assert_eq!(s.thread_status, ThreadStatus::NotLoaded);
        let v = s.to_json();
        assert_eq!(
            (&v["status"], &v["threadStatus"]),
            (&json!("active"), &json!("notLoaded")),
            "{v}"
        );
    }

    #[test]
    fn a_file_from_before_thread_status_reads_as_an_open_or_a_deleted_session() {
        let old = |status: &str, reason: Value| {
            let mut v = serde_json::to_value(session()).unwrap();
            v["status"] = json!(status);
            v["archiveReason"] = reason;
            v.as_object_mut().unwrap().remove("threadStatus");
            let s: Session = serde_json::from_value(v).unwrap();
            let s = s.loaded();
            (s.status, s.thread_status)
        };
        let open = (SessionStatus::Active, ThreadStatus::NotLoaded);
        for status in ["idle", "active", "notLoaded", "systemError"] {
            assert_eq!(old(status, Value::Null), open, "{status}");
            assert_eq!(old(status, json!("retention")), open, "{status}");
        }
        assert_eq!(
            old("archived", json!("deleted")),
            (SessionStatus::Archived, ThreadStatus::NotLoaded)
        );
    }

    #[test]
    fn items_diff_and_plan_of_the_running_turn_land_in_its_record() {
        let mut s = session();
        begin_turn(&mut s, "t1");
        apply(
            &mut s,
            "item/completed",
            json!({"turnId": "t1", "item": {
            "type": "commandExecution", "command": "ls", "exitCode": 2, "durationMs": 5, "status": "failed"}}),
        );
        apply(
            &mut s,
            "item/completed",
            json!({"turnId": "t1", "item": {
            "type": "fileChange", "changes": [{"path": "/w/a", "kind": {"type": "add"}}]}}),
        );
        apply(
            &mut s,
            "item/completed",
            json!({"turnId": "other", "item": {
            "type": "commandExecution", "command": "not ours"}}),
        );
        apply(
            &mut s,
            "turn/diff/updated",
            json!({"turnId": "t1", "diff": "diff --git"}),
        );
        apply(
            &mut s,
            "turn/plan/updated",
            json!({"turnId": "t1", "plan": [{"step": "a", "status": "completed"}]}),
        );
        apply(&mut s, "turn/completed", completed("t1"));
        let r = serde_json::to_value(s.last_turn.clone().unwrap()).unwrap();
        assert_eq!(
            r["commands"],
            json!([{"command": "ls", "exitCode": 2, "durationMs": 5, "status": "failed"}]),
            "{r}"
        );
        assert_eq!(
            r["fileChanges"],
            json!([{"path": "/w/a", "kind": "add"}]),
            "{r}"
        );
        assert_eq!(
            (&r["diff"], &r["diffTruncated"]),
            (&json!("diff --git"), &json!(false))
        );
        assert_eq!(r["plan"]["steps"][0]["step"], "a", "{r}");
        assert_eq!(r["finalMessage"], "answer t1");
    }
}
