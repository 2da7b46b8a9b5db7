//! The daemon's shared core: configuration, state, the event stream and the link to the
//! current child. Its operations live beside it, one concern per file: `session_ops`
//! (create/load sessions), `turn_ops` (start, steer, interrupt, reconcile),
//! `server_requests` (approvals), `notifications` (the child's messages), `supervision`
//! (what the child side reports), `reattach` (picking up a unix-mode app-server a previous
//! codexd left running), `status` (state files and the status snapshot), `history_ops`
//! (turn records and threads), `review_ops` and `lifecycle_ops` (delete, compact, fork,
//! the archive of idle sessions).
//!
//! The hot sessions are their own registry (`registry::Sessions`, with its own lock and
//! persistence): a change a client is told about is on disk before it is announced.
//!
//! Locking: `state` may be held while emitting an event (the events lock is taken inside),
//! never the other way round, and never across a JSON-RPC call to the child. The sessions'
//! lock is never held together with `state`, nor across a call out. `thread_ops`
//! serializes thread loading (start/resume) so two turns cannot race to resume a thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::signals::StopFlag;
use baa::common::store::JsonStore;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use crate::account::Account;
use crate::approvals::Pending;
use crate::child::{Adoptee, Control, Link};
use crate::codex_version::CodexVersion;
use crate::config::{Config, Strategy};
use crate::event_log::Limits;
use crate::events::{Events, Level};
use crate::models::Models;
use crate::registry::Sessions;
use crate::sessions::{Session, TurnRecord};
use crate::start_error::StartError;
use crate::state::{self, ChildInfo, DaemonState, Identity};
use crate::state_health::StateHealth;

pub struct State {
    pub child: ChildInfo,
    pub pending: Vec<Pending>,
    /// Requests a previous connection to the same unix-mode app-server left unanswered:
    /// registered again (same id and deadline) when the app-server replays them.
    pub replayable: Vec<Pending>,
}

pub struct Core {
    pub cfg: Config,
    pub events: Events,
    pub store: JsonStore,
    /// The hot sessions and every session file (`<state>/sessions/`).
    pub sessions: Sessions,
    pub identity: Identity,
    pub started_at: String,
    pub stop: StopFlag,
    pub(crate) state: Mutex<State>,
    pub(crate) link: Mutex<Option<Arc<Link>>>,
    pub(crate) listening: Mutex<Option<String>>,
    /// Demo mode: the built-in model's base URL and the CODEX_HOME the child gets.
    pub(crate) demo: Mutex<Option<Value>>,
    pub(crate) thread_ops: Mutex<()>,
    pub(crate) daemon_dirty: AtomicBool,
    /// The `model/list` catalog (`models.rs`).
    pub(crate) models: Models,
    /// Account and rate limits (`account.rs`).
    pub(crate) account: Account,
    /// The codex version (`codex_version.rs`).
    pub(crate) codex: CodexVersion,
    /// Requests to the supervisor (a restart on request); set once it runs.
    pub(crate) control: Mutex<Option<Sender<Control>>>,
    /// The unix-mode app-server to attach to at start, until the supervisor takes it.
    pub(crate) adoptee: Mutex<Option<Adoptee>>,
    /// Background jobs (resuming threads after an attach), joined by the ticker.
    pub(crate) jobs: Mutex<Vec<JoinHandle<()>>>,
    /// Whether daemon-state.json is usable (`/readyz`, status `warnings`).
    pub(crate) health: StateHealth,
}

// Re-exported for the session files that still import them from here.

impl Core {
    /// Creates the dirs, loads the state files and opens the event log. A session whose
    /// turn was running when codexd stopped has that turn marked `interrupted`.
    pub fn open(cfg: Config, stop: StopFlag) -> Result<Arc<Core>, StartError> {
        std::fs::create_dir_all(&cfg.logs_dir).map_err(|source| StartError::CreateDir {
            dir: cfg.logs_dir.clone(),
            source,
        })?;
        let store = JsonStore::open(&cfg.state_dir).map_err(StartError::Store)?;
        let identity = Identity::load_or_create(
            &store,
            &cfg.node_id,
            &cfg.repo_root.display().to_string(),
            &cfg.version,
        );
        // A damaged daemon-state.json is healed below (the app-server from its socket,
        // the seq from the event log) and reported once the event stream is open.
        let loaded = crate::state_file::load(&store);
        let previous: Option<DaemonState> = loaded.state;
        let sessions = Sessions::open(&store, cfg.hot_sessions).map_err(StartError::Store)?;
        let recent: Vec<Value> = store
            .read_or_warn::<Value>(state::RECENT_EVENTS)
            .unwrap_or(None)
            .and_then(|v| v.get("events").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        let seq_hint = previous.as_ref().map(|p| p.last_seq).unwrap_or(0);
        let events = Events::open(
            cfg.logs_dir.join("events.jsonl"),
            Limits {
                max_bytes: cfg.event_log_max_bytes,
                keep: cfg.event_log_keep,
            },
            recent,
            seq_hint,
            cfg.recent_events,
        );
        let socket = cfg.transport.socket().map(|p| p.display().to_string());
        let mut child = ChildInfo::new(
            cfg.strategy.as_str(),
            &cfg.server_endpoint,
            cfg.transport.kind(),
            socket,
        );
        if let Some(prev) = &previous {
            child.restarts = 0;
            child.recent_exits = prev.child.recent_exits.clone();
        }
        let request_timeout = Duration::from_millis(cfg.request_timeout_ms);
        let core = Arc::new(Core {
            events,
            store,
            sessions,
            identity,
            started_at: now_rfc3339(),
            stop,
            state: Mutex::new(State {
                child,
                pending: Vec::new(),
                replayable: Vec::new(),
            }),
            link: Mutex::new(None),
            listening: Mutex::new(None),
            demo: Mutex::new(None),
            thread_ops: Mutex::new(()),
            daemon_dirty: AtomicBool::new(true),
            models: Models::new(cfg.model_check, request_timeout),
            account: Account::new(request_timeout),
            codex: CodexVersion::new(&cfg.server_command, cfg.experimental_api, cfg.model_check),
            control: Mutex::new(None),
            adoptee: Mutex::new(None),
            jobs: Mutex::new(Vec::new()),
            health: StateHealth::default(),
            cfg,
        });
        // The usage-limit hold outlives codexd (a hold whose time passed is dropped).
        let hold = previous.as_ref().and_then(|p| p.limits_hold.as_ref());
        if core.account.restore(hold) {
            let h = hold.map(|h| (h.blocked_until.clone(), h.reason.clone()));
            let (until, reason) = h.unwrap_or_default();
            core.emit(
                Level::Warn,
                "limits.restored",
                format!("codex rate limit: the hold persisted by the last run stands until {until} ({reason})"),
                json!({"blockedUntil": until, "reason": reason}),
            );
        }
        // A unix-mode app-server the previous codexd left running keeps its turns and
        // approvals: the supervisor attaches to it first. Otherwise today's reconciliation.
        let attach = core.prepare_attach(previous.as_ref());
        if attach.is_none() {
            core.interrupt_orphaned_turns("codexd restarted while the turn was running");
            if let Some(prev) = &previous {
                core.abandon_records(&prev.pending_requests, "codexd restarted");
                core.kill_stale_child(&prev.child);
            }
        }
        if let Some(damage) = loaded.damage {
            core.report_state_damage(&damage, attach);
        }
        Ok(core)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn emit(&self, level: Level, kind: &str, message: impl Into<String>, detail: Value) -> u64 {
        self.events.emit(level, kind, message, detail)
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
    pub(crate) fn link(&self) -> Result<Arc<Link>, ApiError> {
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

    /// Writes session `id` now if it changed (the persistence rule in `registry.rs`); a
    /// failure is the 500 the caller answers instead of announcing the change.
    pub(crate) fn persist(&self, session_id: &str) -> Result<(), ApiError> {
        self.sessions
            .persist(session_id)
            .map_err(|e| crate::registry::state_write_failed(session_id, &e))
    }

    /// [`persist`](Self::persist) where nobody can be answered with an error (the change
    /// is announced as an event all the same, and written again on the next flush).
    pub(crate) fn persist_or_log(&self, session_id: &str) {
        if let Err(e) = self.sessions.persist(session_id) {
            log::error!("session {session_id}: {e}");
        }
    }

    /// Appends a finished turn's record to the session's turn file. Called before the
    /// session that says the turn ended is written: the session holds only a summary of it
    /// (`registry.rs`), and a read of the session finds the full record in the file.
    pub(crate) fn store_turn(&self, session_id: &str, record: &crate::sessions::TurnRecord) {
        match self.sessions.files().append_turn(session_id, record) {
            Ok(()) => self.sessions.turn_stored(session_id, &record.turn_id),
            Err(e) => log::error!(
                "session {session_id}: cannot store the record of turn {}: {e}",
                record.turn_id
            ),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.request_timeout_ms)
    }

    /// Marks every running turn `interrupted` (the child that ran it is gone).
    pub(crate) fn interrupt_orphaned_turns(&self, why: &str) {
        let mut finished = Vec::new();
        self.sessions.for_each_mut(|s| {
            let Some(record) = interrupt_current(s, why) else {
                return false;
            };
            finished.push((s.session_id.clone(), record));
            true
        });
        for (sid, record) in finished {
            self.turn_interrupted(&sid, &record, why);
        }
    }

    /// An interrupted turn: its record stored, the session written, then announced.
    pub(crate) fn turn_interrupted(&self, session_id: &str, record: &TurnRecord, why: &str) {
        self.store_turn(session_id, record);
        self.persist_or_log(session_id);
        let tid = &record.turn_id;
        self.emit(
            Level::Warn,
            "turn.interrupted",
            format!("turn {tid} of session {session_id} interrupted: {why}"),
            json!({"sessionId": session_id, "turnId": tid, "reason": why}),
        );
    }
}

/// Closes the session's running turn as `interrupted` with `why`; None when none runs.
pub(crate) fn interrupt_current(s: &mut Session, why: &str) -> Option<TurnRecord> {
    let turn_id = s.current_turn_id.take()?;
    // Progress is memory only: after a codexd restart only the id is known.
    let mut record = match s.current.take() {
        Some(cur) => cur.to_record("interrupted"),
        None => TurnRecord {
            status: "interrupted".into(),
            kind: Some("turn".into()),
            ..Default::default()
        },
    };
    record.turn_id = turn_id.clone();
    record.completed_at = Some(now_rfc3339());
    record.error = Some(json!({"message": why}));
    s.last_turn_id = Some(turn_id);
    s.last_turn_status = Some("interrupted".into());
    s.last_turn = Some(record.clone());
    s.updated_at = now_rfc3339();
    Some(record)
}
