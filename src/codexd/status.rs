//! Persistence of the core's state files and the status snapshot served over HTTP.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use baa::common::state_health;
use baa::common::time::now_rfc3339;

use crate::config::Strategy;
use crate::core::Core;
use crate::events::Level;
use crate::reattach::AttachFrom;
use crate::sessions::Session;
use crate::state::{self, ChildStatus, DaemonState};
use crate::state_file::Damage;

impl Core {
    /// Writes the state files that changed.
    pub fn flush(&self) {
        self.sessions.flush();
        if self.daemon_dirty.swap(false, Ordering::SeqCst) && !self.write_daemon_state() {
            self.mark_daemon_dirty();
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
        self.write_daemon_state();
    }

    /// Writes daemon-state.json (the store keeps its last-good copy) now; false if it failed. Its
    /// outcome is what `/readyz` says about the file.
    fn write_daemon_state(&self) -> bool {
        let doc = self.daemon_state();
        let settled = doc.child.status != ChildStatus::Starting;
        match self.store.write(state::DAEMON_STATE, &doc) {
            Ok(()) => {
                self.health.wrote(None, settled);
                true
            }
            Err(e) => {
                log::error!("state: {e}");
                self.health.wrote(Some(e.to_string()), settled);
                false
            }
        }
    }

    /// daemon-state.json was damaged at start: one warning event and a status warning
    /// saying what was wrong and how codexd healed it; not ready until it is rewritten.
    pub(crate) fn report_state_damage(&self, d: &Damage, attach: Option<(u32, AttachFrom)>) {
        let seq = self.events.last_seq();
        let mut said = format!("{} was {}", state::DAEMON_STATE, d.what);
        if let Some(to) = &d.moved_to {
            said.push_str(&format!(", moved aside to {}", to.display()));
        }
        said.push_str(if d.used_last_good {
            "; started from its last-good copy"
        } else {
            "; no last-good copy"
        });
        // The record an attach came from is the last-good copy when that was read.
        let from = |from: AttachFrom| match from {
            AttachFrom::Recorded if d.used_last_good => "last-good copy",
            other => other.as_str(),
        };
        match attach {
            Some((pid, f)) => said.push_str(&format!(
                "; the app-server pid {pid} is taken from its {}",
                from(f)
            )),
            None if self.cfg.transport.socket().is_some() => {
                said.push_str("; no app-server runs on the socket")
            }
            None => {}
        }
        said.push_str(&format!(
            "; events continue after seq {seq} (the highest on disk)"
        ));
        self.health.damaged(said.clone());
        self.emit(
            Level::Warn,
            "state.damaged",
            said,
            json!({
                "file": state::DAEMON_STATE,
                "what": d.what,
                "movedTo": d.moved_to,
                "lastGood": d.used_last_good,
                "unusable": d.unusable,
                "appServer": attach.map(|(pid, f)| json!({"pid": pid, "from": from(f)})),
                "seqContinuesAfter": seq,
            }),
        );
    }

    /// Why codexd cannot take a turn now (empty: ready): its state file, its child.
    pub fn not_ready(&self) -> Vec<String> {
        let mut out = self.health.not_ready();
        // Any other state file (sessions, events) that common::store cannot use now.
        out.extend(
            state_health::under(&self.cfg.state_dir)
                .into_iter()
                .filter(|p| p.level == state_health::Level::Unusable)
                .map(|p| format!("state file: {}", p.message)),
        );
        let st = self.state();
        if self.cfg.strategy == Strategy::Spawn && st.child.status != ChildStatus::Running {
            out.push(format!(
                "the app-server child is {}{}",
                st.child.status,
                st.child
                    .last_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
        out
    }

    /// Every state-file warning, for `/readyz` and the status: daemon-state.json's own (what
    /// was found at start and how it healed), then any other file common::store repaired
    /// from its last-good copy or cannot use.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.health.warnings();
        out.extend(
            state_health::under(&self.cfg.state_dir)
                .into_iter()
                .map(|p| format!("state file: {}", p.message)),
        );
        out
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
            limits_hold: self.account.persisted_hold(),
        }
    }

    /// Writes daemon-state.json now (a changed usage-limit hold, before it is announced);
    /// a failed write is tried again by the next flush.
    pub(crate) fn persist_daemon_state(&self) {
        if !self.write_daemon_state() {
            self.mark_daemon_dirty();
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
            "ready": self.not_ready().is_empty(),
            "warnings": self.warnings(),
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
