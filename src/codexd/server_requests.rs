//! Requests the child sends us (approvals and the like): recording them as pending,
//! answering them over HTTP or by policy when their timeout passes. None is left unanswered.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::ids::new_id;
use baa::common::time::{now_ms, now_rfc3339};

use crate::approvals::{self, Answer, Pending};
use crate::child::Link;
use crate::config::Decision;
use crate::core::Core;
use crate::events::Level;
use crate::json_path::str_at;
use crate::rpc_http::rpc_error;

impl Core {
    pub fn pending_json(&self) -> Vec<Value> {
        self.state().pending.iter().map(Pending::to_json).collect()
    }

    /// `POST /v1/codexd/requests/:request_id` with `{decision}` or a raw `{result}`.
    pub fn answer_request(
        &self,
        request_id: &str,
        body: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let decision = match body.get("decision") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Decision::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    "decision must be accept, decline or cancel.",
                )
            })?),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "decision must be a string.",
                ))
            }
        };
        let raw = body.get("result").filter(|v| !v.is_null()).cloned();
        if decision.is_none() && raw.is_none() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "Send {\"decision\": \"accept\"|\"decline\"|\"cancel\"} or a raw {\"result\": {...}}.",
            ));
        }
        let pending = {
            let mut st = self.state();
            let idx = st
                .pending
                .iter()
                .position(|p| p.request_id == request_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "Unknown or already answered request \"{request_id}\"."
                    ))
                })?;
            st.pending.remove(idx)
        };
        // No longer pending on disk before the answer (and its event) goes out.
        self.mark_daemon_dirty();
        self.flush();
        let answer = match (raw, decision) {
            (Some(r), _) => Answer::Result(r),
            (None, Some(d)) => approvals::answer_for(&pending.method, &pending.params, d),
            (None, None) => unreachable!("checked above"),
        };
        self.send_answer(&pending, &answer, "http")?;
        Ok(
            json!({"answered": true, "requestId": request_id, "method": pending.method, "reply": answer_json(&answer)}),
        )
    }

    pub(crate) fn send_answer(
        &self,
        p: &Pending,
        answer: &Answer,
        by: &str,
    ) -> Result<(), ApiError> {
        let link = self
            .current_link()
            .filter(|l| l.generation == p.generation)
            .ok_or_else(|| {
                ApiError::new(
                    409,
                    "request_expired",
                    "The app-server that asked this has exited.",
                )
            })?;
        let timeout = by == "timeout";
        let detail = json!({
            "requestId": p.request_id, "method": p.method, "sessionId": p.session_id,
            "answeredBy": by, "reply": answer_json(answer),
        });
        // Sent under the event lock: the child's reaction to the answer (an item declined,
        // a turn going on) is always emitted after `request.timeout`/`request.answered`,
        // never before — a client reading the stream sees cause, then effect.
        self.events
            .emit_after(
                || match answer {
                    Answer::Result(r) => link.rpc.respond(&p.child_id, r.clone()),
                    Answer::Error { code, message } => {
                        link.rpc.respond_error(&p.child_id, *code, message)
                    }
                },
                if timeout { Level::Warn } else { Level::Info },
                if timeout {
                    "request.timeout"
                } else {
                    "request.answered"
                },
                format!("{} answered by {by}", p.method),
                detail,
            )
            .map_err(rpc_error)?;
        Ok(())
    }

    pub(crate) fn on_server_request(&self, link: &Link, msg: &Value) {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let child_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let thread_id = str_at(&params, &["threadId"]).map(str::to_string);
        let settings = thread_id
            .as_deref()
            .and_then(|t| self.sessions.id_of_thread(t))
            .and_then(|sid| {
                self.sessions
                    .read(&sid, |s| (sid.clone(), s.approvals.clone()))
            });
        let session_id = settings.as_ref().map(|s| s.0.clone());
        let known = approvals::is_decision_request(&method)
            || matches!(
                method.as_str(),
                "item/tool/requestUserInput" | "item/tool/call"
            );
        if !known {
            let answer = approvals::answer_for(&method, &params, Decision::Decline);
            if let Answer::Error { code, message } = &answer {
                let _ = link.rpc.respond_error(&child_id, *code, message);
            }
            self.emit(
                Level::Warn,
                "request.refused",
                format!("{method} is not supported; answered with an error"),
                json!({"method": method, "sessionId": session_id, "params": params}),
            );
            return;
        }
        // A request a previous connection to this app-server left unanswered, asked again
        // after its thread was resumed: same requestId, same deadline.
        if let Some(mut p) = self.take_replayed(&child_id, &method, &params) {
            p.generation = link.generation;
            p.params = params;
            let detail = p.to_json();
            let rid = p.request_id.clone();
            self.state().pending.push(p);
            self.mark_daemon_dirty();
            self.flush();
            self.emit(
                Level::Info,
                "request.replayed",
                format!("{method} {rid} was asked again by the re-attached app-server; it still waits for an answer"),
                detail,
            );
            return;
        }
        let (default, timeout_ms) = match &settings {
            Some((_, a)) => (
                Decision::parse(&a.default).unwrap_or(self.cfg.default_approval),
                a.timeout_ms,
            ),
            None => (self.cfg.default_approval, self.cfg.approval_timeout_ms),
        };
        let pending = Pending {
            request_id: new_id("req"),
            child_id,
            generation: link.generation,
            method: method.clone(),
            params,
            session_id: session_id.clone(),
            created_at: now_rfc3339(),
            deadline: Instant::now() + Duration::from_millis(timeout_ms),
            deadline_ms: now_ms().saturating_add(timeout_ms),
            timeout_ms,
            default_decision: default,
        };
        let detail = pending.to_json();
        let rid = pending.request_id.clone();
        self.state().pending.push(pending);
        // Recorded at once: in unix mode the app-server outlives codexd and replays it.
        self.mark_daemon_dirty();
        self.flush();
        self.emit(
            Level::Warn,
            "request.pending",
            format!(
                "{method} waits for an answer: POST /v1/codexd/requests/{rid} within {timeout_ms} ms, else {}",
                default.as_str()
            ),
            detail,
        );
    }

    // ---- child messages ---------------------------------------------------------------
}

pub(crate) fn answer_json(a: &Answer) -> Value {
    match a {
        Answer::Result(r) => json!({"result": r}),
        Answer::Error { code, message } => json!({"error": {"code": code, "message": message}}),
    }
}
