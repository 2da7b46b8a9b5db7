//! Session operations on the core: create (thread/start or thread/resume), lazy
//! re-loading of a session's thread on the current child, and session reads.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::registry::state_write_failed;
use baa::common::api_error::ApiError;
use baa::common::ids::new_id;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use crate::child::Link;
use crate::config::Decision;
use crate::core::Core;
use crate::events::Level;
use crate::experimental;
use crate::json_path::str_at;
use crate::rpc::RpcError;
use crate::rpc_http::rpc_error;
use baa::common::codex_fields::{whitelist, SESSION_CREATE, SESSION_EXPERIMENTAL, THREAD_FIELDS};

use crate::sessions::{opt_string, pick, ApprovalSettings, Session, SessionStatus, ThreadStatus};

impl Core {
    pub(crate) fn unknown_session(id: &str) -> ApiError {
        ApiError::not_found(format!("Unknown codexd session \"{id}\"."))
            .with_details(json!({"sessionId": id}))
    }

    /// One session, hot or archived, with its last turn's full record.
    pub fn session_json(&self, id: &str) -> Result<Value, ApiError> {
        let Some(mut s) = self.sessions.get(id) else {
            return self.archived_session(id).map(|s| s.to_json());
        };
        // The registry holds a summary; a running turn is shown from memory instead.
        if s.current.is_none() {
            self.fill_last_turn(&mut s);
        }
        Ok(s.to_json())
    }

    /// `s.lastTurn` as its full record from the turn file, when that has it.
    fn fill_last_turn(&self, s: &mut Session) {
        let full = s
            .last_turn
            .as_ref()
            .filter(|r| r.summary)
            .and_then(|r| self.sessions.files().turn(&s.session_id, &r.turn_id));
        if full.is_some() {
            s.last_turn = full;
        }
    }

    /// An archived session with its last turn's full record, or 404.
    pub(crate) fn archived_session(&self, id: &str) -> Result<Session, ApiError> {
        let mut s = self
            .sessions
            .files()
            .archived(id)
            .ok_or_else(|| Self::unknown_session(id))?;
        self.fill_last_turn(&mut s);
        Ok(s)
    }

    /// The hot sessions (`lastTurn` as a summary); with `archived`, the archived ones instead.
    pub fn sessions_json(&self, archived: bool) -> Vec<Value> {
        if archived {
            return self
                .sessions
                .files()
                .archived_all()
                .iter()
                .map(Session::to_summary_json)
                .collect();
        }
        self.sessions.list(Session::to_summary_json)
    }

    /// Makes sure `id` is in the hot registry and marks it used now, so the archive sweep
    /// leaves it alone while an operation on it is under way. A session archived for
    /// retention comes back; a deleted one is a 409; an unknown one a 404.
    pub(crate) fn ensure_hot(&self, id: &str) -> Result<(), ApiError> {
        // Memory only: it keeps the sweep away, and a turn's own change is written anyway.
        if self
            .sessions
            .with_mut(id, |s| s.updated_at = now_rfc3339())
            .is_some()
        {
            return Ok(());
        }
        let mut s = self.archived_session(id)?;
        if s.archive_reason.as_deref() == Some("deleted") {
            return Err(Self::deleted_session(id));
        }
        s.archived_at = None;
        s.archive_reason = None;
        s.status = SessionStatus::Active;
        s.thread_status = ThreadStatus::NotLoaded;
        s.loaded_generation = 0;
        s.updated_at = now_rfc3339();
        self.sessions
            .insert(s)
            .map_err(|e| state_write_failed(id, &e))?;
        self.sessions.files().unarchive(id);
        self.emit(
            Level::Info,
            "session.restored",
            format!("session {id} is back from the archive"),
            json!({"sessionId": id}),
        );
        Ok(())
    }

    pub(crate) fn deleted_session(id: &str) -> ApiError {
        ApiError::new(
            409,
            "session_deleted",
            format!("Session \"{id}\" was deleted (its thread is archived); fork it or create a session with its threadId to go on."),
        )
        .with_details(json!({"sessionId": id}))
    }

    /// Events that mention `session_id`, newest last.
    pub fn session_events(&self, session_id: &str, n: usize) -> Vec<Value> {
        self.events.recent_matching(n, |e| {
            str_at(e, &["detail", "sessionId"]) == Some(session_id)
        })
    }

    /// `POST /v1/codexd/sessions`.
    pub fn create_session(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let b = whitelist(body, SESSION_CREATE);
        experimental::check(self.cfg.experimental_api, &b, SESSION_EXPERIMENTAL)?;
        let purpose = opt_string(&b, "purpose")?.unwrap_or_else(|| "duplex".into());
        if purpose != "duplex" && purpose != "worker" {
            return Err(ApiError::bad_request(
                "invalid_request",
                "purpose must be \"duplex\" or \"worker\".",
            ));
        }
        let metadata = match b.get("metadata") {
            None | Some(Value::Null) => json!({}),
            Some(m @ Value::Object(_)) => m.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "metadata must be an object.",
                ))
            }
        };
        for key in [
            "cwd",
            "model",
            "modelProvider",
            "serviceTier",
            "baseInstructions",
            "developerInstructions",
        ] {
            opt_string(&b, key)?;
        }
        let thread_id = opt_string(&b, "threadId")?;
        let default = match opt_string(&b, "approvalDefault")? {
            Some(d) => Decision::parse(&d).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    "approvalDefault must be accept, decline or cancel.",
                )
            })?,
            // A caller who asked the app-server never to ask wants its questions accepted.
            None if b.get("approvalPolicy").and_then(Value::as_str) == Some("never") => {
                Decision::Accept
            }
            None => self.cfg.default_approval,
        };
        let timeout_ms = match b.get("approvalTimeoutMs") {
            None | Some(Value::Null) => self.cfg.approval_timeout_ms,
            Some(v) => v.as_u64().ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    "approvalTimeoutMs must be a non-negative integer.",
                )
            })?,
        };
        self.models.check_request(
            self.current_link().as_deref(),
            opt_string(&b, "model")?.as_deref(),
            None,
            None,
        )?;
        let mut thread_params = pick(&b, THREAD_FIELDS);
        thread_params.extend(pick(&b, SESSION_EXPERIMENTAL));
        let link = self.link()?;
        let (result, resumed) = match &thread_id {
            Some(tid) => {
                let mut p = thread_params.clone();
                p.remove("ephemeral");
                p.insert("threadId".into(), json!(tid));
                p.insert("excludeTurns".into(), json!(true));
                let r = link
                    .rpc
                    .request("thread/resume", Value::Object(p), self.timeout());
                (r, true)
            }
            None => (
                link.rpc.request(
                    "thread/start",
                    Value::Object(thread_params.clone()),
                    self.timeout(),
                ),
                false,
            ),
        };
        let result = result.map_err(rpc_error)?;
        let mut session = new_session(
            purpose,
            metadata,
            ApprovalSettings {
                default: default.as_str().into(),
                timeout_ms,
            },
            Value::Object(thread_params),
            &link,
            &self.cfg.server_endpoint,
        );
        session.has_rollout = resumed;
        apply_thread_result(&mut session, &result);
        self.add_session(session, json!({"resumed": resumed}))
    }

    /// Puts a new session in the hot registry, writes it and says so; returns it as JSON.
    pub(crate) fn add_session(&self, session: Session, extra: Value) -> Result<Value, ApiError> {
        let json = session.to_json();
        let (sid, tid) = (session.session_id.clone(), session.thread_id.clone());
        self.sessions
            .insert(session)
            .map_err(|e| state_write_failed(&sid, &e))?;
        let mut detail = json!({"sessionId": sid, "threadId": tid});
        if let (Some(d), Some(e)) = (detail.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        self.emit(
            Level::Info,
            "session.created",
            format!(
                "session {sid} created on thread {}",
                tid.as_deref().unwrap_or("?")
            ),
            detail,
        );
        Ok(json)
    }

    /// Makes sure the session's thread is loaded in the current child: `thread/resume`
    /// after a restart, or a new `thread/start` for a thread that never had a turn (it has
    /// no rollout and cannot be resumed). Returns the link and the thread id to use.
    pub(crate) fn ensure_loaded(&self, session_id: &str) -> Result<(Arc<Link>, String), ApiError> {
        let _ops = lock(&self.thread_ops);
        let link = self.link()?;
        let (thread_id, loaded, has_rollout, params) = self
            .sessions
            .read(session_id, |s| {
                (
                    s.thread_id.clone(),
                    s.loaded_generation,
                    s.has_rollout,
                    s.thread_params.clone(),
                )
            })
            .ok_or_else(|| Self::unknown_session(session_id))?;
        if let (Some(tid), true) = (&thread_id, loaded == link.generation) {
            return Ok((link, tid.clone()));
        }
        if let (Some(tid), true) = (&thread_id, has_rollout) {
            let mut p = Map::new();
            p.insert("threadId".into(), json!(tid));
            p.insert("excludeTurns".into(), json!(true));
            if let Some(m) = params.as_object() {
                p.extend(pick(m, &["approvalPolicy", "sandbox", "cwd"]));
            }
            match link
                .rpc
                .request("thread/resume", Value::Object(p), self.timeout())
            {
                Ok(result) => {
                    self.sessions.update(session_id, |s| {
                        apply_thread_result(s, &result);
                        s.loaded_generation = link.generation;
                        s.child_pid = Some(link.pid);
                    });
                    self.persist_or_log(session_id);
                    self.emit(
                        Level::Info,
                        "session.resumed",
                        format!("session {session_id}: thread {tid} resumed in the new app-server"),
                        json!({"sessionId": session_id, "threadId": tid, "generation": link.generation}),
                    );
                    return Ok((link, tid.clone()));
                }
                Err(RpcError::Server { message, .. }) if message.contains("no rollout") => {
                    log::warn!(
                        "session {session_id}: thread {tid} has no rollout; starting a new thread"
                    );
                }
                Err(e) => return Err(rpc_error(e)),
            }
        }
        let result = link
            .rpc
            .request("thread/start", params, self.timeout())
            .map_err(rpc_error)?;
        let mut new_tid = String::new();
        self.sessions.update(session_id, |s| {
            apply_thread_result(s, &result);
            s.loaded_generation = link.generation;
            s.child_pid = Some(link.pid);
            s.has_rollout = false;
            new_tid = s.thread_id.clone().unwrap_or_default();
        });
        // The session's new thread is on disk before anyone hears of it.
        self.persist_or_log(session_id);
        self.emit(
            Level::Warn,
            "session.thread_recreated",
            format!(
                "session {session_id}: thread {} had no turns on disk; started thread {new_tid}",
                thread_id.as_deref().unwrap_or("?")
            ),
            json!({"sessionId": session_id, "oldThreadId": thread_id, "threadId": new_tid}),
        );
        Ok((link, new_tid))
    }

    /// Runs `call` on the session's thread, loaded in the current child; when the child lost
    /// the thread under us (it restarted), loads it again and retries once.
    pub(crate) fn with_thread<T>(
        &self,
        session_id: &str,
        call: impl Fn(&Link, &str) -> Result<T, RpcError>,
    ) -> Result<(Arc<Link>, T), ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (link, thread_id) = self.ensure_loaded(session_id)?;
            match call(&link, &thread_id) {
                Ok(v) => return Ok((link, v)),
                Err(RpcError::Server { message, .. })
                    if attempt == 1 && message.contains("thread not found") =>
                {
                    self.mark_unloaded(session_id);
                }
                Err(e) => return Err(rpc_error(e)),
            }
        }
    }

    pub(crate) fn mark_unloaded(&self, session_id: &str) {
        // Memory only (`loadedGeneration` is not persisted).
        self.sessions
            .with_mut(session_id, |s| s.loaded_generation = 0);
    }
}

/// A new session on a thread of `link`'s child, before the thread's facts are applied.
pub(crate) fn new_session(
    purpose: String,
    metadata: Value,
    approvals: ApprovalSettings,
    thread_params: Value,
    link: &Link,
    endpoint: &str,
) -> Session {
    let now = now_rfc3339();
    Session {
        session_id: new_id("cxs"),
        purpose,
        thread_id: None,
        status: SessionStatus::Active,
        thread_status: ThreadStatus::Idle,
        endpoint: endpoint.to_string(),
        child_pid: Some(link.pid),
        created_at: now.clone(),
        updated_at: now,
        cwd: None,
        model: None,
        model_provider: None,
        service_tier: None,
        reasoning_effort: None,
        approval_policy: None,
        sandbox: None,
        current_turn_id: None,
        last_turn_id: None,
        last_turn_status: None,
        last_turn: None,
        turn_count: 0,
        metadata,
        approvals,
        thread_params,
        has_rollout: false,
        last_error: None,
        forked_from: None,
        archived_at: None,
        archive_reason: None,
        loaded_generation: link.generation,
        current: None,
    }
}

/// Copies thread facts from a thread/start, thread/resume or thread/fork result into the
/// session; its `threadStatus` follows the thread's (a running turn keeps it `active`).
pub(crate) fn apply_thread_result(s: &mut Session, r: &Value) {
    if let Some(id) = str_at(r, &["thread", "id"]) {
        s.thread_id = Some(id.to_string());
    }
    let kind = str_at(r, &["thread", "status", "type"]).and_then(ThreadStatus::parse);
    if let (Some(kind), None) = (kind, &s.current) {
        s.thread_status = kind;
    }
    let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(v) = text("model") {
        s.model = Some(v);
    }
    if let Some(v) = text("modelProvider") {
        s.model_provider = Some(v);
    }
    if let Some(v) = text("cwd") {
        s.cwd = Some(v);
    }
    if let Some(v) = text("serviceTier") {
        s.service_tier = Some(v);
    }
    if let Some(v) = text("reasoningEffort") {
        s.reasoning_effort = Some(v);
    }
    if let Some(v) = r.get("approvalPolicy").filter(|v| !v.is_null()) {
        s.approval_policy = Some(v.clone());
    }
    if let Some(v) = r.get("sandbox").filter(|v| !v.is_null()) {
        s.sandbox = Some(v.clone());
    }
}
