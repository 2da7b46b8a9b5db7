//! Persistence of the core's state files and the status snapshot served over HTTP.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use baa::common::time::now_rfc3339;

use crate::core::Core;
use crate::sessions::Session;
use crate::state::{self, DaemonState};

impl Core {
    /// Writes the state files that changed.
    pub fn flush(&self) {
        self.sessions.flush();
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

    pub(crate) fn daemon_state(&self) -> DaemonState {
        let st = self.state();
        let pending_requests = st
            .pending
            .iter()
            .chain(st.replayable.iter())
            .map(crate::approvals::Pending::record)
            .collect();
        DaemonState {
            started: !self.stop.is_set(),
            started_at: self.started_at.clone(),
            updated_at: now_rfc3339(),
            mode: self.cfg.mode.clone(),
            pid: std::process::id(),
            last_seq: self.events.last_seq(),
            child: st.child.clone(),
            pending_requests,
        }
    }

    // ---- status -----------------------------------------------------------------------

    pub fn child_json(&self) -> Value {
        let st = self.state();
        let c = &st.child;
        json!({
            "endpoint": c.endpoint,
            "transport": c.transport,
            "socket": c.socket,
            "transportError": c.transport_error,
            "codexVersion": c.codex_version,
            "attached": c.attached,
            "startTime": c.start_time,
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
            "awaitingReplay": st.replayable.len(),
            "inflightRpc": self.current_link().map(|l| l.rpc.pending_count()).unwrap_or(0),
            "demo": self.cfg.demo,
        })
    }

    pub fn status_json(&self) -> Value {
        let listening = self.listening();
        let resolved = listening
            .clone()
            .unwrap_or_else(|| self.cfg.local_api_base.clone());
        let (account, limits) = self.account.status();
        let sessions_updated_at = self.sessions.updated_at();
        let sessions = self.sessions.list(Session::to_summary_json);
        let (open, in_memory) = self.sessions.counts();
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
                "codex": self.codex.json(),
                "account": account,
                "limits": limits,
                "sessionRegistry": {"updatedAt": sessions_updated_at, "count": open, "inMemory": in_memory, "sessions": sessions},
                "recentEvents": self.events.recent_snapshot(),
            },
        })
    }
}
