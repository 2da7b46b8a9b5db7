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
use baa::common::time::now_rfc3339;

use crate::approvals::Pending;
use crate::child::{self, queue, ChildEvent, CutMessage, Link, Settings, MAX_LINE, QUEUE_BYTES};
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
        // Without a supervisor the dispatcher ends at once: its only sender is dropped.
        let supervisor =
            child::spawn_supervisor(Settings::from_config(&core.cfg), core.stop.clone(), tx)
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

fn dispatch(core: &Core, rx: queue::Receiver<ChildEvent>) {
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

    fn apply(&mut self, core: &Core, ev: ChildEvent) {
        match ev {
            ChildEvent::Starting => core.set_child_status(ChildStatus::Starting, None),
            ChildEvent::Spawned { link, start_time } => {
                core.on_child_spawned(&link, start_time.clone());
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
            ChildEvent::StdoutClosed { generation } => {
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
            } => core.record_exit(generation, &reason, &stderr_tail, status),
            ChildEvent::Stopped {
                generation,
                pid,
                exit,
            } => core.on_child_stopped(generation, pid, &exit),
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

    fn on_child_spawned(&self, link: &Link, start_time: Option<String>) {
        let (pid, generation) = (link.pid, link.generation);
        self.emit(
            Level::Info,
            "child.spawned",
            format!("spawned codex app-server pid {pid} (generation {generation})"),
            json!({"pid": pid, "generation": generation, "command": self.cfg.server_command, "args": self.cfg.server_args}),
        );
        {
            let mut st = self.state();
            st.child.pid = Some(pid);
            st.child.start_time = start_time;
        }
        self.mark_daemon_dirty();
        self.flush();
    }

    /// The child answered `initialize`: its link becomes the current one.
    pub fn on_child_ready(
        &self,
        link: Arc<Link>,
        start_time: Option<String>,
        user_agent: Option<String>,
    ) {
        let (generation, pid) = (link.generation, link.pid);
        {
            let mut st = self.state();
            st.child.status = ChildStatus::Running;
            st.child.pid = Some(pid);
            st.child.start_time = start_time;
            st.child.generation = generation;
            st.child.started_at = Some(now_rfc3339());
            st.child.next_restart_at = None;
            for s in st.sessions.iter_mut() {
                s.child_pid = Some(pid);
            }
        }
        self.set_user_agent(user_agent.clone());
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

    /// Generation `generation` is gone: pending requests are dropped, running turns are
    /// interrupted, threads must be resumed before the next turn.
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
                // Threads live in the child: none is loaded until a turn resumes it.
                if s.status != "archived" {
                    s.status = "notLoaded".into();
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

    fn record_exit(&self, generation: u64, desc: &str, tail: &str, status: Option<ExitStatus>) {
        let exit = json!({
            "at": now_rfc3339(),
            "generation": generation,
            "reason": desc,
            "code": status.and_then(|s| s.code()),
            "signal": status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
            "stderrTail": last_lines(tail, 10),
        });
        {
            let mut st = self.state();
            st.child.restarts += 1;
            st.child.recent_exits.push_back(exit.clone());
            while st.child.recent_exits.len() > 10 {
                st.child.recent_exits.pop_front();
            }
        }
        self.on_child_exit(generation, desc);
        self.emit(
            Level::Error,
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
