//! The conductor's shared state: config, stores, lease, the Firefox bridge, the codexd
//! proxy, and the one place system-state changes are made. It knows no routes; the
//! request entry point and the table are in `routes`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use baa::common::api_error::{ok_envelope, ApiError};
use baa::common::http::guard::HostPolicy;
use baa::common::http::{Reply, Request, Response};
use baa::common::logging::{self, Opt};
use baa::common::store::JsonStore;

use crate::codex_hold::HoldGate;
use crate::codex_proxy::CodexProxy;
use crate::codexd_client::CodexdClient;
use crate::config::Config;
use crate::firefox::{self, Bridge};
use crate::host_ops::audit::Audit;
use crate::host_ops::exec::ExecSlots;
use crate::host_ops::file_slots::FileSlots;
use crate::host_ops::protect::Protected;
use crate::lease::Lease;
use crate::notify::Notifier;
use crate::schedules::clock::Clock;
use crate::schedules::store::ScheduleStore;
use crate::schedules::Schedules;
use crate::system::{Action, ChangeRequest, Mode, SystemStore};
use crate::tasks::codexd::Codexd;
use crate::tasks::control::{SchedulerState, StopReason};
use crate::tasks::model::Task;
use crate::tasks::store::TaskStore;

pub struct App {
    pub cfg: Config,
    /// `http://HOST:PORT` actually bound (the port may have been 0 in config).
    pub base_url: String,
    pub started_at: String,
    pub started: AtomicBool,
    pub store: Arc<JsonStore>,
    pub system: SystemStore,
    pub lease: Arc<Lease>,
    /// The Firefox bridge's clients and what they were last sent.
    pub bridge: Bridge,
    pub host_policy: HostPolicy,
    pub codex: CodexProxy,
    /// Whether codexd's account or rate limits hold new task turns (the scheduler asks).
    pub codex_hold: HoldGate,
    pub exec_slots: ExecSlots,
    /// Every git call of the task workspaces (stopped with the conductor).
    pub git: crate::workspace::git::Git,
    /// What the worktree janitor found on its last pass (for `/v1/runtime`).
    pub janitor: crate::workspace::janitor_stats::Stats,
    /// The cap on concurrent `files/read` and `files/write`.
    pub file_slots: FileSlots,
    /// What host ops must never touch (state and logs trees, our own /proc entry).
    pub protected_paths: Protected,
    /// Where host operations are recorded (`<logs>/conductor/audit.jsonl`).
    pub audit: Audit,
    /// Tasks, runs and task logs.
    pub tasks: Arc<TaskStore>,
    /// What the scheduler thread, the runs and the routes share.
    pub sched: SchedulerState,
    /// codexd as the runs call it (None when it is not configured).
    pub codexd: Option<Arc<Codexd>>,
    /// Notifications (webhooks, ntfy) and their outbox.
    pub notify: Arc<Notifier>,
    /// Schedules: their files, the clock they go by, the fire loop's wake-up.
    pub schedules: Schedules,
    /// The MCP endpoint's sessions (`/mcp`).
    pub mcp: crate::mcp::Sessions,
}

impl App {
    pub fn new(
        cfg: Config,
        bound: SocketAddr,
        store: Arc<JsonStore>,
        lease: Arc<Lease>,
        tasks: Arc<TaskStore>,
        schedules: ScheduleStore,
    ) -> Self {
        let host_policy = HostPolicy::for_listener(bound, &cfg.local_api_allowed_hosts);
        let protected_paths = Protected::new(&[&cfg.state_dir, &cfg.logs_dir]);
        let audit = Audit::new(&cfg.logs_dir);
        // One client for the proxy and the task runs.
        let codexd_client = cfg
            .codexd_local_api_base
            .as_deref()
            .map(|b| Arc::new(CodexdClient::new(b)));
        let notify = Arc::new(Notifier::open(
            cfg.notify.clone(),
            &cfg.node_id,
            &format!("http://{bound}"),
            store.clone(),
        ));
        let mcp = crate::mcp::Sessions::new(
            cfg.mcp.max_sessions,
            std::time::Duration::from_secs(cfg.mcp.session_idle_s),
        );
        Self {
            mcp,
            notify,
            schedules: Schedules::new(schedules, Clock::new(cfg.clock_file.clone())),
            tasks,
            sched: SchedulerState::new(cfg.max_running_tasks),
            codexd: codexd_client.clone().map(|c| Arc::new(Codexd::new(c))),
            base_url: format!("http://{bound}"),
            started_at: baa::common::time::now_rfc3339(),
            started: AtomicBool::new(false),
            store,
            system: SystemStore::new(),
            lease,
            bridge: Bridge::default(),
            host_policy,
            codex: CodexProxy::with_client(codexd_client),
            codex_hold: HoldGate::default(),
            exec_slots: ExecSlots::default(),
            git: crate::workspace::git::Git::default(),
            janitor: crate::workspace::janitor_stats::Stats::default(),
            file_slots: FileSlots::new(cfg.max_file_ops),
            protected_paths,
            audit,
            cfg,
        }
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// The public system state, with the current lease holder and `drained` (draining and
    /// no task run in flight: a restart of codexd or the node is safe).
    pub fn system_state(&self) -> Result<Value, ApiError> {
        let state = self
            .system
            .load(&self.store)
            .map_err(|e| ApiError::internal(format!("Cannot read system state: {e}")))?;
        let mut json = state.to_json(self.lease.holder_id().as_deref());
        json["drained"] = Value::Bool(state.mode == Mode::Draining && self.nothing_runs());
        Ok(json)
    }

    /// No task is running and no run thread is in flight.
    pub fn nothing_runs(&self) -> bool {
        self.sched.in_flight() == 0 && self.tasks.runnable_running() == 0
    }

    /// 409 `not_leader` on a standby (only the lease holder changes state or tasks);
    /// `what` names the changes in the message ("changes", "system changes").
    pub fn require_leader(&self, what: &str) -> Result<(), ApiError> {
        let lease = self.lease.status();
        if lease.is_leader {
            return Ok(());
        }
        Err(ApiError::new(
            409,
            "not_leader",
            format!(
                "This conductor ({}) is standby; send {what} to the lease holder{}.",
                self.cfg.node_id,
                lease
                    .holder_id
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            ),
        )
        .with_details(serde_json::json!({ "holder_id": lease.holder_id })))
    }

    /// A task changed: the Firefox bridge hears of it, and notifications go out for a
    /// fresh outcome or a new approval wait.
    pub fn task_changed(&self, task: &Task) {
        self.bridge.push_task(task);
        self.notify.task_changed(task);
    }

    /// Pause/resume/drain, from HTTP or the Firefox bridge. Only the lease holder writes.
    pub fn change_system(&self, action: Action, req: &ChangeRequest) -> Result<Value, ApiError> {
        if req.interrupt && action != Action::Pause {
            return Err(ApiError::bad_request(
                "invalid_request",
                "interrupt applies only to pause.",
            )
            .with_details(serde_json::json!({ "field": "interrupt" })));
        }
        self.require_leader("system changes")?;
        let state = self
            .system
            .apply(&self.store, action, req)
            .map_err(|e| ApiError::internal(format!("Cannot persist system state: {e}")))?;
        let interrupted = if req.interrupt {
            self.sched.stop_all(StopReason::Pause)
        } else {
            0
        };
        logging::event(
            "mode.changed",
            &[
                ("mode", &state.mode.as_str()),
                ("version", &state.version),
                ("by", &Opt(state.requested_by.as_ref())),
                ("reason", &Opt(state.reason.as_ref())),
                ("interrupted", &interrupted),
            ],
        );
        self.sched.wake();
        let mut json = state.to_json(self.lease.holder_id().as_deref());
        json["drained"] = Value::Bool(state.mode == Mode::Draining && self.nothing_runs());
        self.broadcast_state(&json);
        Ok(json)
    }

    /// Pushes `state` to bridge clients unless that exact (version, holder) went out already.
    pub fn broadcast_state(&self, state: &Value) {
        self.bridge.push(state);
    }

    /// Records the state clients already have (sent on connect) without pushing it.
    pub fn mark_pushed(&self) {
        if let Ok(state) = self.system_state() {
            self.bridge.mark_pushed(&state);
        }
    }

    /// A success envelope for `req`.
    pub fn ok(&self, req: &Request, status: u16, data: Value) -> Reply {
        Reply::Http(Response::json_value(
            status,
            &ok_envelope(&req.request_id, data),
            false,
        ))
    }
}

impl firefox::Node for App {
    fn config(&self) -> &Config {
        &self.cfg
    }

    fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    fn is_leader(&self) -> bool {
        self.lease.status().is_leader
    }

    fn state(&self) -> Result<Value, ApiError> {
        self.system_state()
    }

    fn change(&self, action: Action, req: &ChangeRequest) -> Result<Value, ApiError> {
        self.change_system(action, req)
    }
}
