//! How the core takes each report of the child side (`supervision` decides which): the
//! change to the child's record (`child_changes`) under the state lock, then what it means
//! for sessions, pending requests and the link, the event that announces it, and the state
//! file. Also the two acts on the child the core starts itself: a restart on request and
//! killing a child a previous codexd left behind.

use std::process::ExitStatus;
use std::sync::Arc;

use serde_json::{json, Value};

use baa::common::proc::{kill_if_same, KillOutcome};
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use crate::approvals::Pending;
use crate::child::{Control, CutMessage, Link, MAX_LINE};
use crate::child_changes as changes;
use crate::core::Core;
use crate::events::Level;
use crate::rpc::RpcError;
use crate::state::{ChildInfo, ChildStatus};

impl Core {
    pub(crate) fn set_child_status(&self, status: ChildStatus, next_restart_at: Option<String>) {
        if changes::set_status(&mut self.state().child, status, next_restart_at) {
            self.mark_daemon_dirty();
        }
    }

    pub(crate) fn on_child_spawned(
        &self,
        link: &Link,
        start_time: Option<String>,
        attached: bool,
        socket: Option<std::path::PathBuf>,
    ) {
        let (pid, generation) = (link.pid, link.generation);
        let socket = socket.map(|p| p.display().to_string());
        if attached {
            log::info!("attaching to the running app-server pid {pid} (generation {generation})");
        } else {
            self.emit(
                Level::Info,
                "child.spawned",
                format!("spawned codex app-server pid {pid} (generation {generation})"),
                json!({"pid": pid, "generation": generation, "command": self.cfg.server_command, "args": self.cfg.server_args, "socket": socket}),
            );
        }
        changes::spawned(&mut self.state().child, pid, start_time, socket, attached);
        self.mark_daemon_dirty();
        self.flush();
    }

    /// The child answered `initialize`: its link becomes the current one. After an
    /// attach, the threads of running turns are resumed on the new connection.
    pub fn on_child_ready(
        self: &Arc<Self>,
        link: Arc<Link>,
        start_time: Option<String>,
        user_agent: Option<String>,
    ) {
        let (generation, pid) = (link.generation, link.pid);
        let version = user_agent
            .as_deref()
            .and_then(crate::codex_version::version_from_user_agent);
        let attached = {
            let mut st = self.state();
            let now = now_rfc3339();
            changes::ready(
                &mut st.child,
                generation,
                pid,
                start_time,
                version.clone(),
                now,
            )
        };
        // Memory only: written with the session's next change.
        self.sessions.child_ready(Some(pid));
        self.codex.set_user_agent(user_agent.clone());
        self.set_link(Some(link.clone()));
        self.mark_daemon_dirty();
        self.flush();
        let (kind, what) = if attached {
            ("child.attached", "attached to the running")
        } else {
            ("child.ready", "ready:")
        };
        let socket = self.state().child.socket.clone();
        self.emit(
            Level::Info,
            kind,
            format!("{what} codex app-server (pid {pid}, generation {generation})"),
            json!({"pid": pid, "generation": generation, "userAgent": user_agent, "codexVersion": version, "attached": attached, "socket": socket}),
        );
        if attached {
            self.schedule_resume(link);
        }
    }

    /// Generation `generation` is gone with its process: pending requests are dropped,
    /// running turns are interrupted, threads must be resumed before the next turn.
    pub fn on_child_exit(&self, generation: u64, description: &str) {
        self.close_generation(generation);
        let abandoned: Vec<Pending> = {
            let mut st = self.state();
            changes::gone(&mut st.child, description);
            changes::take_generation(&mut st.pending, generation)
        };
        // Threads live in the child: none is loaded until a turn resumes it.
        self.sessions.for_each_mut(|s| {
            s.thread_status = crate::sessions::ThreadStatus::NotLoaded;
            false
        });
        for p in abandoned {
            self.emit(
                Level::Warn,
                "request.abandoned",
                format!("{} was never answered: the app-server exited", p.method),
                json!({"requestId": p.request_id, "method": p.method, "sessionId": p.session_id}),
            );
        }
        self.abandon_replayable(None, "the app-server exited");
        self.interrupt_orphaned_turns(description);
        self.mark_daemon_dirty();
    }

    /// Closes the link of `generation` and marks every thread unloaded: a new connection
    /// must resume them. Requests of that connection wait for their replay (unix mode)
    /// unless the caller abandons them.
    fn close_generation(&self, generation: u64) {
        if let Some(l) = self.current_link() {
            if l.generation == generation {
                l.rpc.close();
                self.set_link(None);
            }
        }
        self.sessions.generation_closed(generation);
    }

    /// Unix mode: the connection of `generation` ended while its app-server runs on:
    /// its turns keep running and its requests wait to be replayed on the next connection.
    pub(crate) fn on_child_disconnected(&self, generation: u64, pid: u32, reason: &str) {
        self.close_generation(generation);
        {
            let st = &mut *self.state();
            changes::disconnected(
                &mut st.child,
                &mut st.pending,
                &mut st.replayable,
                generation,
                reason,
            );
        }
        self.emit(
            Level::Warn,
            "child.disconnected",
            format!("lost the connection to the app-server pid {pid} ({reason}); attaching again"),
            json!({"pid": pid, "generation": generation, "reason": reason}),
        );
        self.mark_daemon_dirty();
        self.flush();
    }

    /// codexd is stopping and left its unix-mode child running: its pid, start time,
    /// running turns and unanswered requests stay recorded for the next codexd.
    pub(crate) fn on_child_detached(&self, generation: u64, pid: u32) {
        self.close_generation(generation);
        let socket = {
            let st = &mut *self.state();
            changes::detached(&mut st.child, &mut st.pending, &mut st.replayable)
        };
        self.emit(
            Level::Info,
            "child.detached",
            format!("left the codex app-server pid {pid} running for the next codexd"),
            json!({"pid": pid, "generation": generation, "socket": socket}),
        );
        self.mark_daemon_dirty();
    }

    /// The unix transport cannot start: stdio from now on, and status says why.
    pub(crate) fn on_transport_fallback(&self, why: &str) {
        changes::transport_fallback(&mut self.state().child, why);
        self.emit(
            Level::Error,
            "child.transport_fallback",
            format!("the unix socket transport could not start ({why}); using stdio instead"),
            json!({"reason": why, "endpoint": self.cfg.server_endpoint}),
        );
        self.mark_daemon_dirty();
        self.flush();
    }

    /// `POST /v1/codexd/child/restart`: asks the supervisor to stop the child and start a
    /// fresh one now (also out of `crash_loop` and `unavailable`).
    pub fn request_restart(&self) -> Result<Value, baa::common::api_error::ApiError> {
        use baa::common::api_error::ApiError;
        if self.cfg.strategy == crate::config::Strategy::External {
            return Err(ApiError::new(
                409,
                "no_child",
                "codexd runs with BAA_CODEXD_SERVER_STRATEGY=external and has no child to restart.",
            ));
        }
        // Read before the request: the supervisor may act on it at once.
        let (pid, status) = {
            let st = self.state();
            (st.child.pid, st.child.status)
        };
        // Sent under the event lock (like an answer to the child): the child's exit that
        // the request causes is always emitted after `child.restart_requested`.
        let sent = self.events.emit_after(
            || {
                lock(&self.control)
                    .as_ref()
                    .ok_or(())?
                    .try_send(Control::Restart)
                    .map_err(|_| ())
            },
            Level::Info,
            "child.restart_requested",
            format!(
                "restart of the codex app-server requested (pid {}, status {status})",
                pid.map_or("-".to_string(), |p| p.to_string())
            ),
            json!({"pid": pid, "status": status}),
        );
        if sent.is_err() {
            return Err(ApiError::new(
                503,
                "restart_unavailable",
                "The supervisor is not taking requests (codexd is starting, stopping, or a restart is already queued).",
            ));
        }
        Ok(json!({"accepted": true, "previousPid": pid, "previousStatus": status}))
    }

    pub(crate) fn record_exit(
        &self,
        generation: u64,
        desc: &str,
        tail: &str,
        status: Option<ExitStatus>,
        requested: bool,
    ) {
        let exit = changes::exit_record(now_rfc3339(), generation, desc, tail, status, requested);
        changes::exited(&mut self.state().child, exit.clone(), requested);
        let why = if requested {
            "the app-server was restarted on request (POST /v1/codexd/child/restart)"
        } else {
            desc
        };
        self.on_child_exit(generation, why);
        self.emit(
            if requested { Level::Warn } else { Level::Error },
            "child.exited",
            format!("codex app-server (generation {generation}) {desc}"),
            exit,
        );
        self.flush();
    }

    pub(crate) fn on_child_stopped(&self, generation: u64, pid: u32, exit: &str) {
        self.on_child_exit(generation, "codexd is stopping");
        changes::stopped(&mut self.state().child);
        self.emit(
            Level::Info,
            "child.stopped",
            format!("codex app-server pid {pid} stopped ({exit})"),
            json!({"pid": pid, "generation": generation, "exit": exit}),
        );
    }

    /// Status `unavailable` with `why` as `lastError`; the event is emitted only when the
    /// status or the reason changes, so a long wait for an install does not flood the log.
    pub(crate) fn mark_unavailable(&self, why: &str, retry_at: String) {
        let changed = changes::unavailable(&mut self.state().child, why, retry_at);
        self.mark_daemon_dirty();
        if changed {
            log::error!("codex app-server unavailable: {why}");
            self.emit(
                Level::Error,
                "child.unavailable",
                format!("codex app-server unavailable: {why}"),
                json!({"command": self.cfg.server_command, "reason": why}),
            );
            self.flush();
        }
    }

    /// A stdout line over the limit: recorded as an error event; if it was a request it
    /// is answered with an error (a turn must never wait on it), if it was a response its
    /// caller gets an error now instead of a timeout.
    pub(crate) fn on_line_cut(
        &self,
        link: Option<&Link>,
        generation: u64,
        bytes: u64,
        head: &[u8],
        message: CutMessage,
    ) {
        let (kind, id) = match &message {
            CutMessage::Request(id) => ("request", id.clone()),
            CutMessage::Response(id) => ("response", id.clone()),
            CutMessage::Other => ("other", Value::Null),
        };
        let answered = match (link, &message) {
            (Some(l), CutMessage::Request(id)) => l
                .rpc
                .respond_error(
                    id,
                    -32600,
                    &format!("codexd cannot read a {bytes}-byte request (limit {MAX_LINE} bytes)"),
                )
                .is_ok(),
            (Some(l), CutMessage::Response(id)) => l.rpc.fail(
                id,
                RpcError::TooLarge {
                    bytes,
                    limit: MAX_LINE,
                },
            ),
            _ => false,
        };
        log::error!("app-server wrote a {bytes} byte line (limit {MAX_LINE}); cut");
        self.emit(
            Level::Error,
            "child.line_too_long",
            format!(
                "the app-server wrote a {bytes}-byte line, over codexd's {MAX_LINE}-byte limit; it was cut and not read"
            ),
            json!({
                "generation": generation, "bytes": bytes, "limitBytes": MAX_LINE,
                "message": kind, "id": id, "answered": answered,
                "head": String::from_utf8_lossy(head),
            }),
        );
    }

    /// Kills the child a previous codexd recorded, if that exact process (pid and start
    /// time) is still alive. Never by name.
    pub(crate) fn kill_stale_child(&self, prev: &ChildInfo) {
        let (Some(pid), Some(start)) = (prev.pid, prev.start_time.as_deref()) else {
            return;
        };
        let grace = std::time::Duration::from_millis(self.cfg.stop_grace_ms);
        match kill_if_same(pid, start, grace) {
            KillOutcome::Gone => {}
            KillOutcome::Reused => {
                log::info!("recorded child pid {pid} is now another process; leaving it alone");
            }
            KillOutcome::Killed => {
                log::warn!("killed stale app-server pid {pid} left by a previous codexd");
                self.emit(
                    Level::Warn,
                    "child.stale_killed",
                    format!("killed stale app-server pid {pid} left by a previous codexd"),
                    json!({"pid": pid, "startTime": start}),
                );
            }
        }
    }
}
