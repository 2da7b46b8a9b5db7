//! Messages from the child: routing responses, requests and notifications, and folding
//! notifications into session and turn state.

use std::time::Instant;

use serde_json::{json, Value};

use baa::common::time::now_rfc3339;

use crate::child::Link;
use crate::core::{str_at, Core};
use crate::events::Level;
use crate::sessions::{Session, TurnRecord};
use crate::turn_ops::{begin_turn, finish_turn};

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
        self.on_account_notification(method, &params);
        let mut finished: Option<(String, TurnRecord)> = None;
        let session_id = {
            let mut st = self.state();
            let session = thread_id.as_deref().and_then(|t| {
                st.sessions
                    .iter_mut()
                    .find(|s| s.thread_id.as_deref() == Some(t))
            });
            match session {
                None => None,
                Some(s) => {
                    let sid = s.session_id.clone();
                    let changed = apply_notification(s, method, &params, turn_id.as_deref());
                    if method == "turn/completed" {
                        finished = s
                            .last_turn
                            .clone()
                            .filter(|_| changed)
                            .map(|r| (sid.clone(), r));
                    }
                    if changed {
                        s.updated_at = now_rfc3339();
                        st.sessions_updated_at = Some(now_rfc3339());
                        self.mark_sessions_dirty();
                    }
                    Some(sid)
                }
            }
        };
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
        if let Some((sid, record)) = finished {
            self.emit_turn_finished(&sid, &record, "turn/completed");
        }
    }
}

/// Updates the session from one notification; returns true if it changed.
pub(crate) fn apply_notification(
    s: &mut Session,
    method: &str,
    params: &Value,
    turn_id: Option<&str>,
) -> bool {
    let is_current = |s: &Session| turn_id.is_none() || s.current_turn_id.as_deref() == turn_id;
    match method {
        "turn/started" => {
            s.has_rollout = true;
            if let Some(t) = turn_id {
                begin_turn(s, t);
            }
            true
        }
        "turn/completed" => {
            let turn = params.get("turn").cloned().unwrap_or(Value::Null);
            let tid = turn_id.unwrap_or_default();
            if s.last_turn_id.as_deref() == Some(tid) && s.current_turn_id.as_deref() != Some(tid) {
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
            let item = &params["item"];
            if str_at(item, &["type"]) == Some("agentMessage") && is_current(s) {
                if let (Some(cur), Some(text)) = (s.current.as_mut(), str_at(item, &["text"])) {
                    cur.last_message = Some(text.to_string());
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
            false
        }
        "thread/closed" | "thread/archived" => {
            s.status = if method == "thread/archived" {
                "archived"
            } else {
                "closed"
            }
            .into();
            true
        }
        _ => false,
    }
}
