//! The core's side of the child: starts the supervisor and the dispatcher thread that
//! applies, in order, everything the child side reports (`child::ChildEvent`): lifecycle
//! changes become state and events, stdout lines become routed responses, requests and
//! notifications. The child side never calls into the core; this is the only place its
//! reports reach it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitStatus;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use serde_json::{json, Value};

use baa::common::proc::{kill_if_same, KillOutcome};
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use crate::approvals::Pending;
use crate::child::{
    self, queue, ChildEvent, Control, CutMessage, Link, Settings, MAX_LINE, QUEUE_BYTES,
};
use crate::core::Core;
use crate::events::Level;
use crate::rpc::RpcError;
use crate::state::{ChildInfo, ChildStatus};

/// The supervisor and the dispatcher; both end once the stop flag is set.
pub struct ChildThreads {
    supervisor: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

impl ChildThreads {
    /// Starts supervising the configured child.
    pub fn start(core: &Arc<Core>) -> Result<ChildThreads, String> {
        let (tx, rx) = queue::queue::<ChildEvent>(QUEUE_BYTES);
        let c = core.clone();
        let dispatcher = thread::Builder::new()
            .name("codexd-dispatch".into())
            .spawn(move || dispatch(&c, rx))
            .map_err(|e| format!("cannot start the dispatcher thread: {e}"))?;
        let (control_tx, control_rx) = crossbeam_channel::bounded::<Control>(4);
        *lock(&core.control) = Some(control_tx);
        let settings = Settings::from_config(&core.cfg, core.take_adoptee());
        // Without a supervisor the dispatcher ends at once: its only sender is dropped.
        let supervisor = child::spawn_supervisor(settings, core.stop.clone(), tx, control_rx)
            .map_err(|e| format!("cannot start the supervisor thread: {e}"))?;
        Ok(ChildThreads {
            supervisor,
            dispatcher,
        })
    }

    /// Waits for the supervisor (it stops and reaps the child), then for the dispatcher
    /// to apply its last reports. The stop flag must be set.
    pub fn join(self) {
        if self.supervisor.join().is_err() {
            log::error!("the supervisor thread panicked");
        }
        // Every sender is gone now (the supervisor joined its pumps): recv ends.
        if self.dispatcher.join().is_err() {
            log::error!("the dispatcher thread panicked");
        }
    }
}

/// The dispatcher's memory of the generation whose reports it applies.
struct Dispatcher {
    link: Option<Arc<Link>>,
    start_time: Option<String>,
    garbage: u64,
}

fn dispatch(core: &Arc<Core>, rx: queue::Receiver<ChildEvent>) {
    let mut d = Dispatcher {
        link: None,
        start_time: None,
        garbage: 0,
    };
    // Blocks until a report comes; ends when every sender is gone and the queue is empty.
    while let Some(ev) = rx.recv() {
        // A bug on one message must not end the dispatching of all later ones.
        if catch_unwind(AssertUnwindSafe(|| d.apply(core, ev))).is_err() {
            log::error!("applying a report from the app-server child panicked; carried on");
        }
    }
}

impl Dispatcher {
    /// The link of `generation`, if it is the one the dispatcher knows.
    fn link_of(&self, generation: u64) -> Option<&Arc<Link>> {
        self.link.as_ref().filter(|l| l.generation == generation)
    }

    fn apply(&mut self, core: &Arc<Core>, ev: ChildEvent) {
        match ev {
            ChildEvent::Starting => core.set_child_status(ChildStatus::Starting, None),
            ChildEvent::Spawned {
                link,
                start_time,
                attached,
                socket,
            } => {
                core.on_child_spawned(&link, start_time.clone(), attached, socket);
                self.link = Some(link);
                self.start_time = start_time;
            }
            ChildEvent::Line { generation, bytes } => match self.link_of(generation) {
                Some(link) => {
                    let link = link.clone();
                    self.line(core, &link, &bytes);
                }
                None => log::debug!("a line of an old generation {generation}; ignored"),
            },
            ChildEvent::LineCut {
                generation,
                bytes,
                head,
                message,
            } => {
                let link = self.link_of(generation).cloned();
                core.on_line_cut(link.as_deref(), generation, bytes, &head, message);
            }
            ChildEvent::StreamClosed { generation } => {
                // No response can arrive any more; every line before this one is applied.
                if let Some(link) = self.link_of(generation) {
                    link.rpc.close();
                }
            }
            ChildEvent::Ready {
                generation,
                user_agent,
            } => {
                if let Some(link) = self.link_of(generation) {
                    core.on_child_ready(link.clone(), self.start_time.clone(), user_agent);
                }
            }
            ChildEvent::Exited {
                generation,
                reason,
                stderr_tail,
                status,
                requested,
            } => core.record_exit(generation, &reason, &stderr_tail, status, requested),
            ChildEvent::Disconnected {
                generation,
                pid,
                reason,
            } => core.on_child_disconnected(generation, pid, &reason),
            ChildEvent::Stopped {
                generation,
                pid,
                exit,
            } => core.on_child_stopped(generation, pid, &exit),
            ChildEvent::Detached { generation, pid } => core.on_child_detached(generation, pid),
            ChildEvent::AttachFailed { pid, why } => core.on_attach_failed(pid, &why),
            ChildEvent::TransportFallback { why } => core.on_transport_fallback(&why),
            ChildEvent::Unavailable { why, retry_at } => core.mark_unavailable(&why, retry_at),
            ChildEvent::Restarting {
                delay_ms,
                attempt,
                at,
            } => {
                core.set_child_status(ChildStatus::Restarting, Some(at.clone()));
                core.emit(
                    Level::Warn,
                    "child.restarting",
                    format!("restarting codex app-server in {delay_ms} ms"),
                    json!({"delayMs": delay_ms, "attempt": attempt, "at": at}),
                );
            }
            ChildEvent::CrashLoop {
                failures,
                window_ms,
                last_error,
                stderr_tail,
                retry_at,
            } => {
                core.set_child_status(ChildStatus::CrashLoop, Some(retry_at.clone()));
                core.emit(
                    Level::Error,
                    "child.crash_loop",
                    format!(
                        "codex app-server failed {failures} times within {window_ms} ms; not restarting until {retry_at}"
                    ),
                    json!({"failures": failures, "lastError": last_error, "stderrTail": stderr_tail, "retryAt": retry_at}),
                );
            }
            // A detached child runs on: its status says so for the next codexd.
            ChildEvent::Finished if core.state().child.status == ChildStatus::Detached => {}
            ChildEvent::Finished => core.set_child_status(ChildStatus::Stopped, None),
        }
    }

    /// One stdout line: a response goes to its waiter, the rest to the core.
    fn line(&mut self, core: &Core, link: &Link, bytes: &[u8]) {
        let text = bytes.trim_ascii();
        if text.is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(v @ Value::Object(_)) => core.handle_message(link, &v),
            _ => {
                self.garbage += 1;
                let garbage = self.garbage;
                // Rate-limited: a child spewing garbage must not flood our log.
                if garbage <= 5 || garbage.is_power_of_two() {
                    log::warn!(
                        "app-server wrote a line that is not a JSON object ({} bytes; {garbage} so far); ignored",
                        text.len()
                    );
                }
            }
        }
    }
}

impl Core {
    pub(crate) fn set_child_status(&self, status: ChildStatus, next_restart_at: Option<String>) {
        {
            let mut st = self.state();
            if st.child.strategy == "external" {
                return;
            }
            st.child.status = status;
            st.child.next_restart_at = next_restart_at;
        }
        self.mark_daemon_dirty();
    }

    fn on_child_spawned(
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
        {
            let mut st = self.state();
            st.child.pid = Some(pid);
            st.child.start_time = start_time;
            st.child.transport = if socket.is_some() { "unix" } else { "stdio" }.into();
            if socket.is_some() {
                st.child.socket = socket;
            }
            st.child.attached = attached;
        }
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
            st.child.status = ChildStatus::Running;
            st.child.pid = Some(pid);
            st.child.start_time = start_time;
            st.child.generation = generation;
            st.child.started_at = Some(now_rfc3339());
            st.child.next_restart_at = None;
            st.child.codex_version = version.clone();
            st.child.attached
        };
        // Memory only: written with the session's next change.
        self.sessions.for_each_mut(|s| {
            s.child_pid = Some(pid);
            false
        });
        self.set_user_agent(user_agent.clone());
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
            st.child.pid = None;
            st.child.start_time = None;
            st.child.last_error = Some(description.to_string());
            let (gone, keep): (Vec<Pending>, Vec<Pending>) = st
                .pending
                .drain(..)
                .partition(|p| p.generation == generation);
            st.pending = keep;
            gone
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
        self.sessions.for_each_mut(|s| {
            if s.loaded_generation == generation {
                s.loaded_generation = 0;
            }
            s.child_pid = None;
            false
        });
    }

    /// Unix mode: the connection of `generation` ended while its app-server runs on:
    /// its turns keep running and its requests wait to be replayed on the next connection.
    fn on_child_disconnected(&self, generation: u64, pid: u32, reason: &str) {
        self.close_generation(generation);
        {
            let mut st = self.state();
            let (lost, keep): (Vec<Pending>, Vec<Pending>) = st
                .pending
                .drain(..)
                .partition(|p| p.generation == generation);
            st.pending = keep;
            st.replayable.extend(lost);
            st.child.last_error = Some(reason.to_string());
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
    fn on_child_detached(&self, generation: u64, pid: u32) {
        self.close_generation(generation);
        let socket = {
            let mut st = self.state();
            let lost: Vec<Pending> = st.pending.drain(..).collect();
            st.replayable.extend(lost);
            st.child.status = ChildStatus::Detached;
            st.child.socket.clone()
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
    fn on_transport_fallback(&self, why: &str) {
        {
            let mut st = self.state();
            st.child.transport = "stdio".into();
            st.child.transport_error = Some(why.to_string());
            st.child.last_error = Some(format!("unix socket transport unusable: {why}"));
        }
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

    fn record_exit(
        &self,
        generation: u64,
        desc: &str,
        tail: &str,
        status: Option<ExitStatus>,
        requested: bool,
    ) {
        let exit = json!({
            "at": now_rfc3339(),
            "generation": generation,
            "reason": desc,
            "code": status.and_then(|s| s.code()),
            "signal": status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
            "stderrTail": last_lines(tail, 10),
            "requested": requested,
        });
        {
            let mut st = self.state();
            if requested {
                // The supervisor starts the next one at once, without a backoff report.
                st.child.status = ChildStatus::Starting;
            }
            st.child.restarts += 1;
            st.child.recent_exits.push_back(exit.clone());
            while st.child.recent_exits.len() > 10 {
                st.child.recent_exits.pop_front();
            }
        }
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

    fn on_child_stopped(&self, generation: u64, pid: u32, exit: &str) {
        self.on_child_exit(generation, "codexd is stopping");
        {
            let mut st = self.state();
            st.child.pid = None;
            st.child.start_time = None;
        }
        self.emit(
            Level::Info,
            "child.stopped",
            format!("codex app-server pid {pid} stopped ({exit})"),
            json!({"pid": pid, "generation": generation, "exit": exit}),
        );
    }

    /// Status `unavailable` with `why` as `lastError`; the event is emitted only when the
    /// status or the reason changes, so a long wait for an install does not flood the log.
    fn mark_unavailable(&self, why: &str, retry_at: String) {
        let changed = {
            let mut st = self.state();
            let changed = st.child.status != ChildStatus::Unavailable
                || st.child.last_error.as_deref() != Some(why);
            st.child.status = ChildStatus::Unavailable;
            st.child.last_error = Some(why.to_string());
            st.child.pid = None;
            st.child.next_restart_at = Some(retry_at);
            changed
        };
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
    fn on_line_cut(
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

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
