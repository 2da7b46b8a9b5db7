//! The daemon's shared core: configuration, state, the event stream and the link to the
//! current child, plus the operations the HTTP routes and the child's dispatcher perform.
//!
//! Locking: `state` may be held while emitting an event (the events lock is taken inside),
//! never the other way round, and never across a JSON-RPC call to the child. `thread_ops`
//! serializes thread loading (start/resume) so two turns cannot race to resume a thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::ids::new_id;
use baa::common::signals::StopFlag;
use baa::common::store::JsonStore;
use baa::common::time::now_rfc3339;

use crate::approvals::{self, Answer, Pending};
use crate::config::{Config, Decision, Strategy};
use crate::events::{Events, Level};
use crate::rpc::{Rpc, RpcError};
use crate::sessions::{
    self, normalize_input, opt_string, pick, whitelist, ApprovalSettings, RegistryFile, Session,
    TurnProgress, TurnRecord,
};
use crate::state::{self, ChildInfo, DaemonState, Identity};

/// The connection to one generation of the child.
pub struct Link {
    pub generation: u64,
    pub pid: u32,
    pub rpc: Rpc,
}

pub struct State {
    pub sessions: Vec<Session>,
    pub sessions_updated_at: Option<String>,
    pub child: ChildInfo,
    pub pending: Vec<Pending>,
}

pub struct Core {
    pub cfg: Config,
    pub events: Events,
    pub store: JsonStore,
    pub identity: Identity,
    pub started_at: String,
    pub stop: StopFlag,
    state: Mutex<State>,
    link: Mutex<Option<Arc<Link>>>,
    listening: Mutex<Option<String>>,
    /// Demo mode: the built-in model's base URL and the CODEX_HOME the child gets.
    demo: Mutex<Option<Value>>,
    thread_ops: Mutex<()>,
    sessions_dirty: AtomicBool,
    daemon_dirty: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An RPC failure as an HTTP error.
pub fn rpc_error(e: RpcError) -> ApiError {
    match &e {
        RpcError::Timeout { .. } => ApiError::new(504, "app_server_timeout", e.to_string()),
        RpcError::ChildGone | RpcError::Backlogged => {
            ApiError::new(503, "app_server_unavailable", e.to_string())
        }
        RpcError::Server {
            code,
            message,
            data,
        } => ApiError::new(
            400,
            "app_server_rejected",
            format!("The app-server refused the request: {message}"),
        )
        .with_details(
            json!({"upstreamCode": code, "upstreamMessage": message, "upstreamData": data}),
        ),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

impl Core {
    /// Creates the dirs, loads the state files and opens the event log. A session whose
    /// turn was running when codexd stopped has that turn marked `interrupted`.
    pub fn open(cfg: Config, stop: StopFlag) -> Result<Arc<Core>, String> {
        std::fs::create_dir_all(&cfg.logs_dir)
            .map_err(|e| format!("cannot create {}: {e}", cfg.logs_dir.display()))?;
        let store = JsonStore::open(&cfg.state_dir).map_err(|e| e.to_string())?;
        let identity = Identity::load_or_create(
            &store,
            &cfg.node_id,
            &cfg.repo_root.display().to_string(),
            &cfg.version,
        );
        let previous: Option<DaemonState> = store.read_or_warn(state::DAEMON_STATE).unwrap_or(None);
        let registry: RegistryFile = store
            .read_or_warn(state::SESSION_REGISTRY)
            .unwrap_or(None)
            .unwrap_or_default();
        let recent: Vec<Value> = store
            .read_or_warn::<Value>(state::RECENT_EVENTS)
            .unwrap_or(None)
            .and_then(|v| v.get("events").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        let seq_hint = previous.as_ref().map(|p| p.last_seq).unwrap_or(0);
        let events = Events::open(
            cfg.logs_dir.join("events.jsonl"),
            recent,
            seq_hint,
            cfg.recent_events,
        );
        let mut child = ChildInfo::new(cfg.strategy.as_str(), &cfg.server_endpoint);
        if let Some(prev) = &previous {
            child.restarts = 0;
            child.recent_exits = prev.child.recent_exits.clone();
        }
        let core = Arc::new(Core {
            events,
            store,
            identity,
            started_at: now_rfc3339(),
            stop,
            state: Mutex::new(State {
                sessions: registry.sessions,
                sessions_updated_at: registry.updated_at,
                child,
                pending: Vec::new(),
            }),
            link: Mutex::new(None),
            listening: Mutex::new(None),
            demo: Mutex::new(None),
            thread_ops: Mutex::new(()),
            sessions_dirty: AtomicBool::new(true),
            daemon_dirty: AtomicBool::new(true),
            cfg,
        });
        core.interrupt_orphaned_turns("codexd restarted while the turn was running");
        if let Some(prev) = previous {
            crate::child::kill_stale(&core, &prev.child);
        }
        Ok(core)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn emit(&self, level: Level, kind: &str, message: impl Into<String>, detail: Value) -> u64 {
        self.events.emit(level, kind, message, detail)
    }

    pub fn mark_sessions_dirty(&self) {
        self.sessions_dirty.store(true, Ordering::SeqCst);
    }

    pub fn mark_daemon_dirty(&self) {
        self.daemon_dirty.store(true, Ordering::SeqCst);
    }

    pub fn set_listening(&self, base: &str) {
        *lock(&self.listening) = Some(base.to_string());
    }

    pub fn listening(&self) -> Option<String> {
        lock(&self.listening).clone()
    }

    /// Records that the child talks to the built-in model at `model_base_url` through
    /// the CODEX_HOME at `codex_home` (demo mode).
    pub fn set_demo(&self, model_base_url: &str, codex_home: &std::path::Path) {
        *lock(&self.demo) = Some(json!({
            "modelBaseUrl": model_base_url,
            "codexHome": codex_home,
            "note": "demo mode: the codex child answers from codexd's built-in loopback model (no credentials, no network); replies are canned",
        }));
    }

    /// `null` outside demo mode.
    pub fn demo_json(&self) -> Value {
        lock(&self.demo).clone().unwrap_or(Value::Null)
    }

    // ---- child link -------------------------------------------------------------------

    pub fn set_link(&self, link: Option<Arc<Link>>) {
        *lock(&self.link) = link;
    }

    pub fn current_link(&self) -> Option<Arc<Link>> {
        lock(&self.link).clone()
    }

    /// The live child connection, or 503 saying why there is none.
    fn link(&self) -> Result<Arc<Link>, ApiError> {
        if let Some(l) = self.current_link() {
            if !l.rpc.is_closed() {
                return Ok(l);
            }
        }
        let st = self.state();
        let child = &st.child;
        let message = match self.cfg.strategy {
            Strategy::External => "codexd runs with BAA_CODEXD_SERVER_STRATEGY=external and has no app-server child to talk to.".to_string(),
            Strategy::Spawn => format!(
                "The codex app-server child is not available (status {}{}).",
                child.status,
                child.last_error.as_ref().map(|e| format!(", last error: {e}")).unwrap_or_default()
            ),
        };
        Err(ApiError::new(503, "app_server_unavailable", message).with_details(json!({
            "child": {"status": child.status, "lastError": child.last_error, "nextRestartAt": child.next_restart_at}
        })))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.request_timeout_ms)
    }

    /// Called by the supervisor once a new child answered `initialize`.
    pub fn on_child_ready(
        &self,
        link: Arc<Link>,
        start_time: Option<String>,
        user_agent: Option<String>,
    ) {
        let (generation, pid) = (link.generation, link.pid);
        {
            let mut st = self.state();
            st.child.status = "running".into();
            st.child.pid = Some(pid);
            st.child.start_time = start_time;
            st.child.generation = generation;
            st.child.started_at = Some(now_rfc3339());
            st.child.next_restart_at = None;
            for s in st.sessions.iter_mut() {
                s.child_pid = Some(pid);
            }
        }
        self.set_link(Some(link));
        self.mark_daemon_dirty();
        self.mark_sessions_dirty();
        self.flush();
        self.emit(
            Level::Info,
            "child.ready",
            format!("codex app-server ready (pid {pid}, generation {generation})"),
            json!({"pid": pid, "generation": generation, "userAgent": user_agent}),
        );
    }

    /// Called by the supervisor when generation `generation` is gone: pending requests are
    /// dropped, running turns are interrupted, threads must be resumed before the next turn.
    pub fn on_child_exit(&self, generation: u64, description: &str) {
        if let Some(l) = self.current_link() {
            if l.generation == generation {
                l.rpc.close();
                self.set_link(None);
            }
        }
        let abandoned: Vec<Pending> = {
            let mut st = self.state();
            st.child.pid = None;
            st.child.start_time = None;
            st.child.last_error = Some(description.to_string());
            let (gone, keep): (Vec<Pending>, Vec<Pending>) = st
                .pending
                .drain(..)
                .partition(|p| p.generation == generation);
            st.pending = keep;
            for s in st.sessions.iter_mut() {
                if s.loaded_generation == generation {
                    s.loaded_generation = 0;
                }
                s.child_pid = None;
            }
            gone
        };
        for p in abandoned {
            self.emit(
                Level::Warn,
                "request.abandoned",
                format!("{} was never answered: the app-server exited", p.method),
                json!({"requestId": p.request_id, "method": p.method, "sessionId": p.session_id}),
            );
        }
        self.interrupt_orphaned_turns(description);
        self.mark_daemon_dirty();
    }

    /// Marks every running turn `interrupted` (the child that ran it is gone).
    fn interrupt_orphaned_turns(&self, why: &str) {
        let mut finished = Vec::new();
        {
            let mut st = self.state();
            for s in st.sessions.iter_mut() {
                let Some(turn_id) = s.current_turn_id.take() else {
                    continue;
                };
                let cur = s.current.take();
                let record = TurnRecord {
                    turn_id: turn_id.clone(),
                    status: "interrupted".into(),
                    started_at: cur.as_ref().map(|c| c.started_at.clone()),
                    completed_at: Some(now_rfc3339()),
                    final_message: cur.as_ref().and_then(|c| c.last_message.clone()),
                    error: Some(json!({"message": why})),
                    usage: cur.as_ref().and_then(|c| c.usage.clone()),
                    duration_ms: None,
                };
                s.last_turn_id = Some(turn_id.clone());
                s.last_turn_status = Some("interrupted".into());
                s.last_turn = Some(record);
                s.updated_at = now_rfc3339();
                finished.push((s.session_id.clone(), turn_id));
            }
        }
        if !finished.is_empty() {
            self.mark_sessions_dirty();
        }
        for (sid, tid) in finished {
            self.emit(
                Level::Warn,
                "turn.interrupted",
                format!("turn {tid} of session {sid} interrupted: {why}"),
                json!({"sessionId": sid, "turnId": tid, "reason": why}),
            );
        }
    }

    // ---- sessions ---------------------------------------------------------------------

    fn unknown_session(id: &str) -> ApiError {
        ApiError::not_found(format!("Unknown codexd session \"{id}\"."))
            .with_details(json!({"sessionId": id}))
    }

    pub fn session_json(&self, id: &str) -> Result<Value, ApiError> {
        let st = self.state();
        st.sessions
            .iter()
            .find(|s| s.session_id == id)
            .map(Session::to_json)
            .ok_or_else(|| Self::unknown_session(id))
    }

    pub fn sessions_json(&self) -> Vec<Value> {
        self.state().sessions.iter().map(Session::to_json).collect()
    }

    /// Events that mention `session_id`, newest last.
    pub fn session_events(&self, session_id: &str, n: usize) -> Vec<Value> {
        let all = self.events.recent(usize::MAX);
        let mut v: Vec<Value> = all
            .into_iter()
            .filter(|e| str_at(e, &["detail", "sessionId"]) == Some(session_id))
            .collect();
        let skip = v.len().saturating_sub(n);
        v.drain(..skip);
        v
    }

    /// `POST /v1/codexd/sessions`.
    pub fn create_session(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let b = whitelist(body, sessions::SESSION_FIELDS);
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
        let thread_params = pick(&b, sessions::THREAD_FIELDS);
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
        let now = now_rfc3339();
        let mut session = Session {
            session_id: new_id("cxs"),
            purpose,
            thread_id: None,
            status: "active".into(),
            endpoint: self.cfg.server_endpoint.clone(),
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
            approvals: ApprovalSettings {
                default: default.as_str().into(),
                timeout_ms,
            },
            thread_params: Value::Object(thread_params),
            has_rollout: resumed,
            last_error: None,
            loaded_generation: link.generation,
            current: None,
        };
        apply_thread_result(&mut session, &result);
        let json = session.to_json();
        let (sid, tid) = (session.session_id.clone(), session.thread_id.clone());
        {
            let mut st = self.state();
            st.sessions.push(session);
            st.sessions_updated_at = Some(now_rfc3339());
        }
        self.mark_sessions_dirty();
        self.flush();
        self.emit(
            Level::Info,
            "session.created",
            format!(
                "session {sid} created on thread {}",
                tid.as_deref().unwrap_or("?")
            ),
            json!({"sessionId": sid, "threadId": tid, "resumed": resumed}),
        );
        Ok(json)
    }

    /// Makes sure the session's thread is loaded in the current child: `thread/resume`
    /// after a restart, or a new `thread/start` for a thread that never had a turn (it has
    /// no rollout and cannot be resumed). Returns the link and the thread id to use.
    fn ensure_loaded(&self, session_id: &str) -> Result<(Arc<Link>, String), ApiError> {
        let _ops = lock(&self.thread_ops);
        let link = self.link()?;
        let (thread_id, loaded, has_rollout, params) = {
            let st = self.state();
            let s = st
                .sessions
                .iter()
                .find(|s| s.session_id == session_id)
                .ok_or_else(|| Self::unknown_session(session_id))?;
            (
                s.thread_id.clone(),
                s.loaded_generation,
                s.has_rollout,
                s.thread_params.clone(),
            )
        };
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
                    self.update_session(session_id, |s| {
                        apply_thread_result(s, &result);
                        s.loaded_generation = link.generation;
                        s.child_pid = Some(link.pid);
                    });
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
        self.update_session(session_id, |s| {
            apply_thread_result(s, &result);
            s.loaded_generation = link.generation;
            s.child_pid = Some(link.pid);
            s.has_rollout = false;
            new_tid = s.thread_id.clone().unwrap_or_default();
        });
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

    fn update_session(&self, session_id: &str, f: impl FnOnce(&mut Session)) {
        let mut st = self.state();
        if let Some(s) = st.sessions.iter_mut().find(|s| s.session_id == session_id) {
            f(s);
            s.updated_at = now_rfc3339();
        }
        st.sessions_updated_at = Some(now_rfc3339());
        drop(st);
        self.mark_sessions_dirty();
    }

    fn mark_unloaded(&self, session_id: &str) {
        self.update_session(session_id, |s| s.loaded_generation = 0);
    }

    /// `POST /v1/codexd/turn`: 202 `{accepted, session, turnId}`.
    pub fn start_turn(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let b = whitelist(body, sessions::TURN_FIELDS);
        let session_id = opt_string(&b, "sessionId")?
            .ok_or_else(|| ApiError::bad_request("invalid_request", "sessionId is required."))?;
        let input = normalize_input(&b)?;
        let expected = opt_string(&b, "expectedTurnId")?;
        // Unknown session → 404 before anything else.
        self.session_json(&session_id)?;
        let mut attempt = 0;
        let (turn_id, steered, link) = loop {
            attempt += 1;
            let (link, thread_id) = self.ensure_loaded(&session_id)?;
            let result = match &expected {
                Some(exp) => link
                    .rpc
                    .request(
                        "turn/steer",
                        json!({"threadId": thread_id, "expectedTurnId": exp, "input": input}),
                        self.timeout(),
                    )
                    .map(|r| (str_at(&r, &["turnId"]).unwrap_or(exp).to_string(), true)),
                None => {
                    let mut p = pick(&b, sessions::TURN_OVERRIDES);
                    p.insert("threadId".into(), json!(thread_id));
                    p.insert("input".into(), input.clone());
                    link.rpc
                        .request("turn/start", Value::Object(p), self.timeout())
                        .and_then(|r| {
                            str_at(&r, &["turn", "id"])
                                .map(|id| (id.to_string(), false))
                                .ok_or(RpcError::Server {
                                    code: 0,
                                    message: "turn/start result has no turn id".into(),
                                    data: r.clone(),
                                })
                        })
                }
            };
            match result {
                Ok((tid, steered)) => break (tid, steered, link),
                // The child lost the thread (it restarted under us): load it and retry once.
                Err(RpcError::Server { message, .. })
                    if attempt == 1 && message.contains("thread not found") =>
                {
                    self.mark_unloaded(&session_id);
                }
                Err(e) => return Err(rpc_error(e)),
            }
        };
        let overrides = pick(
            &b,
            &["model", "effort", "serviceTier", "cwd", "approvalPolicy"],
        );
        self.update_session(&session_id, |s| {
            s.has_rollout = true;
            s.child_pid = Some(link.pid);
            if let Some(m) = overrides.get("model").and_then(Value::as_str) {
                s.model = Some(m.to_string());
            }
            if let Some(m) = overrides.get("effort").and_then(Value::as_str) {
                s.reasoning_effort = Some(m.to_string());
            }
            if let Some(m) = overrides.get("serviceTier").and_then(Value::as_str) {
                s.service_tier = Some(m.to_string());
            }
            if let Some(m) = overrides.get("cwd").and_then(Value::as_str) {
                s.cwd = Some(m.to_string());
            }
            if let Some(m) = overrides.get("approvalPolicy") {
                s.approval_policy = Some(m.clone());
            }
            begin_turn(s, &turn_id);
        });
        self.emit(
            Level::Info,
            "turn.accepted",
            format!(
                "{} turn {turn_id} on session {session_id}",
                if steered { "steered" } else { "started" }
            ),
            json!({"sessionId": session_id, "turnId": turn_id, "steered": steered}),
        );
        Ok(json!({
            "accepted": true,
            "session": self.session_json(&session_id)?,
            "turnId": turn_id,
            "steered": steered,
        }))
    }

    /// `POST /v1/codexd/turn/interrupt`.
    pub fn interrupt_turn(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let b = whitelist(body, &["sessionId", "turnId"]);
        let session_id = opt_string(&b, "sessionId")?
            .ok_or_else(|| ApiError::bad_request("invalid_request", "sessionId is required."))?;
        let (thread_id, current, loaded) = {
            let st = self.state();
            let s = st
                .sessions
                .iter()
                .find(|s| s.session_id == session_id)
                .ok_or_else(|| Self::unknown_session(&session_id))?;
            (
                s.thread_id.clone(),
                s.current_turn_id.clone(),
                s.loaded_generation,
            )
        };
        let turn_id = opt_string(&b, "turnId")?.or(current).ok_or_else(|| {
            ApiError::new(
                409,
                "no_active_turn",
                format!("Session \"{session_id}\" has no running turn."),
            )
        })?;
        let link = self.link()?;
        if loaded != link.generation {
            return Err(ApiError::new(
                409,
                "no_active_turn",
                format!("Session \"{session_id}\" has no running turn in the current app-server."),
            ));
        }
        link.rpc
            .request(
                "turn/interrupt",
                json!({"threadId": thread_id, "turnId": turn_id}),
                self.timeout(),
            )
            .map_err(rpc_error)?;
        self.emit(
            Level::Info,
            "turn.interrupt_requested",
            format!("interrupt requested for turn {turn_id} of session {session_id}"),
            json!({"sessionId": session_id, "turnId": turn_id}),
        );
        Ok(json!({"interrupted": true, "sessionId": session_id, "turnId": turn_id}))
    }

    // ---- server requests (approvals) --------------------------------------------------

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

    fn send_answer(&self, p: &Pending, answer: &Answer, by: &str) -> Result<(), ApiError> {
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
        let sent = match answer {
            Answer::Result(r) => link.rpc.respond(&p.child_id, r.clone()),
            Answer::Error { code, message } => link.rpc.respond_error(&p.child_id, *code, message),
        };
        sent.map_err(rpc_error)?;
        self.emit(
            if by == "timeout" {
                Level::Warn
            } else {
                Level::Info
            },
            if by == "timeout" {
                "request.timeout"
            } else {
                "request.answered"
            },
            format!("{} answered by {by}", p.method),
            json!({
                "requestId": p.request_id, "method": p.method, "sessionId": p.session_id,
                "answeredBy": by, "reply": answer_json(answer),
            }),
        );
        Ok(())
    }

    fn on_server_request(&self, link: &Link, msg: &Value) {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let child_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let thread_id = str_at(&params, &["threadId"]).map(str::to_string);
        let settings = {
            let st = self.state();
            thread_id.as_deref().and_then(|t| {
                st.sessions
                    .iter()
                    .find(|s| s.thread_id.as_deref() == Some(t))
                    .map(|s| (s.session_id.clone(), s.approvals.clone()))
            })
        };
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
            timeout_ms,
            default_decision: default,
        };
        let detail = pending.to_json();
        let rid = pending.request_id.clone();
        self.state().pending.push(pending);
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

    fn on_notification(&self, _link: &Link, msg: &Value) {
        let method = msg["method"].as_str().unwrap_or_default();
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let thread_id = str_at(&params, &["threadId"])
            .or_else(|| str_at(&params, &["thread", "id"]))
            .map(str::to_string);
        let turn_id = str_at(&params, &["turnId"])
            .or_else(|| str_at(&params, &["turn", "id"]))
            .map(str::to_string);
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

    fn emit_turn_finished(&self, session_id: &str, r: &TurnRecord, source: &str) {
        let (level, kind) = match r.status.as_str() {
            "completed" => (Level::Info, "turn.completed"),
            "interrupted" => (Level::Warn, "turn.interrupted"),
            _ => (Level::Error, "turn.failed"),
        };
        self.emit(
            level,
            kind,
            format!("turn {} of session {session_id} {}", r.turn_id, r.status),
            json!({
                "sessionId": session_id, "turnId": r.turn_id, "status": r.status,
                "finalMessage": r.final_message, "error": r.error, "usage": r.usage, "source": source,
            }),
        );
    }

    // ---- periodic work ----------------------------------------------------------------

    /// Answers expired server requests with their default, starts reconciliation of turns
    /// whose thread went idle without `turn/completed`, and writes dirty state files.
    pub fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        let expired: Vec<Pending> = {
            let mut st = self.state();
            let (gone, keep): (Vec<Pending>, Vec<Pending>) =
                st.pending.drain(..).partition(|p| p.deadline <= now);
            st.pending = keep;
            gone
        };
        for p in expired {
            let answer = approvals::answer_for(&p.method, &p.params, p.default_decision);
            if let Err(e) = self.send_answer(&p, &answer, "timeout") {
                log::warn!("could not answer {} after its timeout: {e}", p.request_id);
            }
        }
        let idle = Duration::from_millis(self.cfg.reconcile_idle_ms);
        let due: Vec<(String, String, String)> = {
            let mut st = self.state();
            st.sessions
                .iter_mut()
                .filter_map(|s| {
                    let tid = s.thread_id.clone()?;
                    let cur = s.current.as_mut()?;
                    let idle_long_enough = cur
                        .idle_since
                        .is_some_and(|t| now.duration_since(t) >= idle);
                    if cur.reconciling || !idle_long_enough {
                        return None;
                    }
                    cur.reconciling = true;
                    Some((s.session_id.clone(), tid, cur.turn_id.clone()))
                })
                .collect()
        };
        for (sid, tid, turn) in due {
            let core = self.clone();
            let _ = std::thread::Builder::new()
                .name("codexd-reconcile".into())
                .spawn(move || core.reconcile(&sid, &tid, &turn));
        }
        self.flush();
    }

    /// `turn/completed` never came although the thread is idle: read the thread and close
    /// the turn with what the app-server recorded.
    fn reconcile(&self, session_id: &str, thread_id: &str, turn_id: &str) {
        let Some(link) = self.current_link() else {
            return;
        };
        let result = link.rpc.request(
            "thread/read",
            json!({"threadId": thread_id, "includeTurns": true}),
            self.timeout(),
        );
        let turn = result.as_ref().ok().and_then(|r| {
            r.pointer("/thread/turns")
                .and_then(Value::as_array)
                .and_then(|turns| {
                    turns
                        .iter()
                        .find(|t| str_at(t, &["id"]) == Some(turn_id))
                        .cloned()
                })
        });
        let status = turn
            .as_ref()
            .and_then(|t| str_at(t, &["status"]))
            .unwrap_or("inProgress");
        if status == "inProgress" {
            self.update_session(session_id, |s| {
                if let Some(c) = s.current.as_mut() {
                    c.reconciling = false;
                    c.idle_since = None;
                }
            });
            return;
        }
        let turn = turn.unwrap_or(Value::Null);
        let mut record = None;
        self.update_session(session_id, |s| {
            if s.current_turn_id.as_deref() == Some(turn_id) {
                record = Some(finish_turn(s, &turn));
            }
        });
        if let Some(r) = record {
            log::warn!(
                "turn {turn_id}: no turn/completed from the app-server; reconciled as {}",
                r.status
            );
            self.emit_turn_finished(session_id, &r, "reconcile");
        }
    }

    /// Writes the state files that changed.
    pub fn flush(&self) {
        if self.sessions_dirty.swap(false, Ordering::SeqCst) {
            let doc = {
                let st = self.state();
                RegistryFile {
                    updated_at: st.sessions_updated_at.clone(),
                    sessions: st.sessions.clone(),
                }
            };
            if let Err(e) = self.store.write(state::SESSION_REGISTRY, &doc) {
                log::error!("state: {e}");
                self.mark_sessions_dirty();
            }
        }
        if self.daemon_dirty.swap(false, Ordering::SeqCst) {
            let doc = self.daemon_state();
            if let Err(e) = self.store.write(state::DAEMON_STATE, &doc) {
                log::error!("state: {e}");
                self.mark_daemon_dirty();
            }
        }
        if let Some(doc) = self.events.take_dirty() {
            if let Err(e) = self.store.write(state::RECENT_EVENTS, &doc) {
                log::error!("state: {e}");
            }
            // lastSeq in daemon-state follows the events.
            self.mark_daemon_dirty();
        }
    }

    /// Writes every state file now (start and stop).
    pub fn flush_all(&self) {
        if let Err(e) = self.store.write(state::IDENTITY, &self.identity) {
            log::error!("state: {e}");
        }
        self.mark_sessions_dirty();
        self.mark_daemon_dirty();
        self.flush();
        if let Err(e) = self
            .store
            .write(state::RECENT_EVENTS, &self.events.recent_snapshot())
        {
            log::error!("state: {e}");
        }
        let doc = self.daemon_state();
        if let Err(e) = self.store.write(state::DAEMON_STATE, &doc) {
            log::error!("state: {e}");
        }
    }

    fn daemon_state(&self) -> DaemonState {
        let st = self.state();
        DaemonState {
            started: !self.stop.is_set(),
            started_at: self.started_at.clone(),
            updated_at: now_rfc3339(),
            mode: self.cfg.mode.clone(),
            pid: std::process::id(),
            last_seq: self.events.last_seq(),
            child: st.child.clone(),
        }
    }

    // ---- status -----------------------------------------------------------------------

    pub fn child_json(&self) -> Value {
        let st = self.state();
        let c = &st.child;
        json!({
            "endpoint": c.endpoint,
            "lastError": c.last_error,
            "pid": c.pid,
            "status": c.status,
            "strategy": c.strategy,
            "generation": c.generation,
            "startedAt": c.started_at,
            "restarts": c.restarts,
            "nextRestartAt": c.next_restart_at,
            "recentExits": c.recent_exits,
            "pendingRequests": st.pending.len(),
            "inflightRpc": self.current_link().map(|l| l.rpc.pending_count()).unwrap_or(0),
            "demo": self.cfg.demo,
        })
    }

    pub fn status_json(&self) -> Value {
        let listening = self.listening();
        let resolved = listening
            .clone()
            .unwrap_or_else(|| self.cfg.local_api_base.clone());
        let (sessions_updated_at, sessions) = {
            let st = self.state();
            (
                st.sessions_updated_at.clone(),
                st.sessions.iter().map(Session::to_json).collect::<Vec<_>>(),
            )
        };
        json!({
            "service": {
                "configuredBaseUrl": self.cfg.local_api_base,
                "eventStreamPath": self.cfg.event_stream_path,
                "eventStreamUrl": self.cfg.event_stream_url(&resolved),
                "listening": listening.is_some(),
                "resolvedBaseUrl": resolved,
                "websocketClients": self.events.websocket_clients(),
            },
            "snapshot": {
                "identity": self.identity.to_json(),
                "daemon": {
                    "started": true,
                    "startedAt": self.started_at,
                    "updatedAt": now_rfc3339(),
                    "mode": self.cfg.mode,
                    "pid": std::process::id(),
                    "lastSeq": self.events.last_seq(),
                    "demo": self.cfg.demo,
                    "demoModel": self.demo_json(),
                    "child": self.child_json(),
                },
                "sessionRegistry": {"updatedAt": sessions_updated_at, "sessions": sessions},
                "recentEvents": self.events.recent_snapshot(),
            },
        })
    }
}

fn answer_json(a: &Answer) -> Value {
    match a {
        Answer::Result(r) => json!({"result": r}),
        Answer::Error { code, message } => json!({"error": {"code": code, "message": message}}),
    }
}

/// Copies thread facts from a thread/start or thread/resume result into the session.
fn apply_thread_result(s: &mut Session, r: &Value) {
    if let Some(id) = str_at(r, &["thread", "id"]) {
        s.thread_id = Some(id.to_string());
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

/// Opens `turn_id` as the running turn unless it is already open or already finished
/// (its `turn/completed` may arrive before the HTTP handler gets here).
fn begin_turn(s: &mut Session, turn_id: &str) {
    if s.current_turn_id.as_deref() == Some(turn_id) || s.last_turn_id.as_deref() == Some(turn_id) {
        return;
    }
    s.current_turn_id = Some(turn_id.to_string());
    s.turn_count += 1;
    s.current = Some(TurnProgress {
        turn_id: turn_id.to_string(),
        started_at: now_rfc3339(),
        last_message: None,
        error: None,
        usage: None,
        idle_since: None,
        reconciling: false,
    });
}

/// Closes the running turn from a Turn object (`turn/completed` or `thread/read`).
fn finish_turn(s: &mut Session, turn: &Value) -> TurnRecord {
    let cur = s.current.take();
    let turn_id = str_at(turn, &["id"])
        .map(str::to_string)
        .or_else(|| s.current_turn_id.clone())
        .unwrap_or_default();
    let error = turn
        .get("error")
        .filter(|e| !e.is_null())
        .cloned()
        .or_else(|| cur.as_ref().and_then(|c| c.error.clone()));
    let mut status = str_at(turn, &["status"]).unwrap_or("completed").to_string();
    // A "completed" turn that carries an error did not succeed.
    if status == "completed" && error.is_some() {
        status = "failed".into();
    }
    let final_message = turn
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .rev()
                .find(|i| str_at(i, &["type"]) == Some("agentMessage"))
                .and_then(|i| str_at(i, &["text"]))
                .map(str::to_string)
        })
        .or_else(|| cur.as_ref().and_then(|c| c.last_message.clone()));
    let record = TurnRecord {
        turn_id: turn_id.clone(),
        status: status.clone(),
        started_at: cur.as_ref().map(|c| c.started_at.clone()),
        completed_at: Some(now_rfc3339()),
        final_message,
        error,
        usage: cur.as_ref().and_then(|c| c.usage.clone()),
        duration_ms: turn.get("durationMs").and_then(Value::as_u64),
    };
    s.current_turn_id = None;
    s.last_turn_id = Some(turn_id);
    s.last_turn_status = Some(status);
    s.last_turn = Some(record.clone());
    if record.status == "failed" {
        s.last_error = record
            .error
            .as_ref()
            .and_then(|e| str_at(e, &["message"]).map(str::to_string));
    }
    record
}

/// Updates the session from one notification; returns true if it changed.
fn apply_notification(
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
