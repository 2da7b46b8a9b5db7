//! The core's side of the child: starts the supervisor and the dispatcher thread that
//! applies, in order, everything the child side reports (`child::ChildEvent`): each
//! lifecycle report becomes its change (`child_reports`, over the plain changes in
//! `child_changes`), stdout lines become routed responses, requests and notifications.
//! The child side never calls into the core; this is the only place its reports reach it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use serde_json::{json, Value};

use baa::common::sync::lock;

use crate::child::{self, queue, ChildEvent, Control, Link, Settings, QUEUE_BYTES};
use crate::core::Core;
use crate::events::Level;
use crate::start_error::StartError;
use crate::state::ChildStatus;

/// The supervisor and the dispatcher; both end once the stop flag is set.
pub struct ChildThreads {
    supervisor: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

impl ChildThreads {
    /// Starts supervising the configured child.
    pub fn start(core: &Arc<Core>) -> Result<ChildThreads, StartError> {
        let (tx, rx) = queue::queue::<ChildEvent>(QUEUE_BYTES);
        let c = core.clone();
        let dispatcher = thread::Builder::new()
            .name("codexd-dispatch".into())
            .spawn(move || dispatch(&c, rx))
            .map_err(|source| StartError::Thread {
                name: "dispatcher",
                source,
            })?;
        let (control_tx, control_rx) = crossbeam_channel::bounded::<Control>(4);
        *lock(&core.control) = Some(control_tx);
        let settings = Settings::from_config(&core.cfg, core.take_adoptee());
        child::warn_missing_pass_env(&settings.pass_env);
        // Without a supervisor the dispatcher ends at once: its only sender is dropped.
        let supervisor = child::spawn_supervisor(settings, core.stop.clone(), tx, control_rx)
            .map_err(|source| StartError::Thread {
                name: "supervisor",
                source,
            })?;
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
            ChildEvent::LeftBehindStopped { pid, how } => {
                core.emit(
                    Level::Warn,
                    "child.stale_killed",
                    format!("stopped the app-server pid {pid} left running on the socket without codexd attached (found by its {how})"),
                    json!({"pid": pid, "how": how}),
                );
            }
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
