//! The conductor's shared state and the request entry point: guards first (Host, Origin),
//! then the route table, then one place that turns results into envelopes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use baa::common::api_error::{ok_envelope, ApiError};
use baa::common::http::guard::HostPolicy;
use baa::common::http::router::dispatch;
use baa::common::http::{Reply, Request, Response};
use baa::common::store::JsonStore;
use baa::common::ws::Hub;

use crate::codex_proxy::CodexProxy;
use crate::config::Config;
use crate::host_ops::exec::ExecSlots;
use crate::host_ops::protect::Protected;
use crate::lease::Lease;
use crate::routes::ROUTES;
use crate::system::{Action, ChangeRequest, SystemStore};

pub struct App {
    pub cfg: Config,
    /// `http://HOST:PORT` actually bound (the port may have been 0 in config).
    pub base_url: String,
    pub started_at: String,
    pub started: AtomicBool,
    pub store: Arc<JsonStore>,
    pub system: SystemStore,
    pub lease: Arc<Lease>,
    pub hub: Hub,
    pub firefox_clients: Arc<AtomicUsize>,
    /// (version, holder) of the last snapshot pushed to bridge clients, so each change is
    /// pushed once whether it came from this process or another conductor.
    last_pushed: Mutex<Option<(u64, Option<String>)>>,
    pub host_policy: HostPolicy,
    pub codex: CodexProxy,
    pub exec_slots: ExecSlots,
    /// What host ops must never touch (state and logs trees, our own /proc entry).
    pub protected_paths: Protected,
}

impl App {
    pub fn new(cfg: Config, bound: SocketAddr, store: Arc<JsonStore>, lease: Arc<Lease>) -> Self {
        let host_policy = HostPolicy::for_listener(bound, &cfg.local_api_allowed_hosts);
        let protected_paths = Protected::new(&[&cfg.state_dir, &cfg.logs_dir]);
        Self {
            base_url: format!("http://{bound}"),
            started_at: baa::common::time::now_rfc3339(),
            started: AtomicBool::new(false),
            store,
            system: SystemStore::new(),
            lease,
            hub: Hub::new(64),
            firefox_clients: Arc::new(AtomicUsize::new(0)),
            last_pushed: Mutex::new(None),
            host_policy,
            codex: CodexProxy::new(cfg.codexd_local_api_base.clone()),
            exec_slots: ExecSlots::default(),
            protected_paths,
            cfg,
        }
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// The public system state, with the current lease holder.
    pub fn system_state(&self) -> Result<Value, ApiError> {
        let state = self
            .system
            .load(&self.store)
            .map_err(|e| ApiError::internal(format!("Cannot read system state: {e}")))?;
        Ok(state.to_json(self.lease.holder_id().as_deref()))
    }

    /// Pause/resume/drain, from HTTP or the Firefox bridge. Only the lease holder writes.
    pub fn change_system(&self, action: Action, req: &ChangeRequest) -> Result<Value, ApiError> {
        let lease = self.lease.status();
        if !lease.is_leader {
            return Err(ApiError::new(
                409,
                "not_leader",
                format!(
                    "This conductor ({}) is standby; send system changes to the lease holder{}.",
                    self.cfg.node_id,
                    lease
                        .holder_id
                        .as_deref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                ),
            )
            .with_details(serde_json::json!({ "holder_id": lease.holder_id })));
        }
        let state = self
            .system
            .apply(&self.store, action, req)
            .map_err(|e| ApiError::internal(format!("Cannot persist system state: {e}")))?;
        log::info!(
            "system: mode → {} (version {}, by {:?}, reason {:?})",
            state.mode.as_str(),
            state.version,
            state.requested_by,
            state.reason
        );
        let json = state.to_json(lease.holder_id.as_deref());
        self.broadcast_state(&json);
        Ok(json)
    }

    /// Pushes `state` to bridge clients unless that exact (version, holder) went out already.
    pub fn broadcast_state(&self, state: &Value) {
        let key = (
            state["version"].as_u64().unwrap_or(0),
            state["holder_id"].as_str().map(str::to_string),
        );
        let mut last = self.last_pushed.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() == Some(&key) {
            return;
        }
        *last = Some(key);
        let frame = serde_json::json!({ "type": "state_snapshot", "data": state });
        self.hub.broadcast(&frame.to_string());
    }

    /// Records the state clients already have (sent on connect) without pushing it.
    pub fn mark_pushed(&self) {
        if let Ok(state) = self.system_state() {
            let key = (
                state["version"].as_u64().unwrap_or(0),
                state["holder_id"].as_str().map(str::to_string),
            );
            *self.last_pushed.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
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

/// Entry point for every request on the local API.
pub fn handle(app: &Arc<App>, req: &Request) -> Reply {
    let result = app
        .host_policy
        .check(req)
        .and_then(|_| {
            // The bridge has its own, stricter Origin rule.
            if req.path == "/ws/firefox" {
                Ok(())
            } else {
                app.host_policy.check_origin(req)
            }
        })
        .and_then(|_| dispatch(ROUTES, app, req));
    match result {
        Ok(reply) => reply,
        Err(e) => {
            if e.status >= 500 {
                log::warn!(
                    "{} {} → {} {}: {}",
                    req.method,
                    req.path,
                    e.status,
                    e.code,
                    e.message
                );
            } else {
                log::debug!("{} {} → {} {}", req.method, req.path, e.status, e.code);
            }
            Reply::Http(e.to_response(&req.request_id, false))
        }
    }
}
