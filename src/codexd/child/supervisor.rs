//! The supervisor thread: one generation of the child at a time — spawn, handshake, wait
//! for it to exit or for codexd to stop, then restart per the policy. It owns the `Child`
//! and is the only one that waits on it, so the child is always reaped; it owns every
//! thread of a generation (the stdin writer and the two output pumps) and joins them
//! before it reports the exit, so the core sees all of a generation's lines first.
//!
//! It reports to the core only through the queue (see `ChildEvent`); it never reads or
//! changes the core's state.

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::proc::process_start_time;
use baa::common::signals::StopFlag;
use baa::common::time::{now_ms, rfc3339_from_ms};

use super::policy::{Next, RestartPolicy};
use super::process::{self, describe_exit, StartError, MISSING_RECHECK};
use super::pumps::Pumps;
use super::{queue, ChildEvent, Link, Settings};
use crate::logfile::RotatingFile;
use crate::rpc::Rpc;

/// How long initialize may take (spawn → response was ~0.1 s on the native binary).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts the supervisor thread. It returns once `stop` is set and the child is stopped,
/// reaped and its threads joined; its last report is `Finished`.
pub fn spawn_supervisor(
    settings: Settings,
    stop: StopFlag,
    reports: queue::Sender<ChildEvent>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("codexd-supervisor".into())
        .spawn(move || {
            Supervisor {
                s: &settings,
                stop: &stop,
                reports: &reports,
            }
            .run()
        })
}

struct Supervisor<'a> {
    s: &'a Settings,
    stop: &'a StopFlag,
    reports: &'a queue::Sender<ChildEvent>,
}

/// One running generation and everything it owns.
struct Generation {
    child: Child,
    link: Arc<Link>,
    writer: Option<JoinHandle<()>>,
    pumps: Option<Pumps>,
}

impl Generation {
    /// Closes stdin, joins the writer and the pumps (the child must be reaped or dying),
    /// and returns the stderr tail.
    fn finish(mut self) -> String {
        self.link.rpc.close();
        if let Some(w) = self.writer.take() {
            if w.join().is_err() {
                log::error!("the app-server stdin writer panicked");
            }
        }
        self.pumps.take().map(Pumps::finish).unwrap_or_default()
    }
}

impl Supervisor<'_> {
    fn report(&self, ev: ChildEvent) {
        let weight = ev.weight();
        // Only fails when the core's dispatcher is gone, i.e. codexd is stopping.
        let _ = self.reports.send(ev, weight);
    }

    fn run(&self) {
        let mut policy = RestartPolicy::new(self.s.restart);
        let mut generation: u64 = 0;
        let mut unavailable = false;
        loop {
            if self.stop.is_set() {
                break;
            }
            generation += 1;
            if !unavailable {
                self.report(ChildEvent::Starting);
            }
            let started = Instant::now();
            let (reason, stderr_tail, status) = match self.start(generation) {
                Ok(mut gen) => match self.wait_exit(&mut gen) {
                    None => {
                        // Stop requested while the child was healthy.
                        self.stop_child(gen);
                        break;
                    }
                    Some(status) => {
                        let tail = gen.finish();
                        (describe_exit(status), tail, Some(status))
                    }
                },
                Err(StartError::Missing(why)) => {
                    // Not a crash: there is nothing to run. Say so, look again later.
                    generation -= 1;
                    unavailable = true;
                    let retry_at = rfc3339_from_ms(now_ms() + MISSING_RECHECK.as_millis() as u64);
                    self.report(ChildEvent::Unavailable { why, retry_at });
                    if self.stop.sleep(MISSING_RECHECK) {
                        break;
                    }
                    continue;
                }
                Err(StartError::Failed(desc, tail)) => (desc, tail, None),
            };
            unavailable = false;
            self.report(ChildEvent::Exited {
                generation,
                reason: reason.clone(),
                stderr_tail: stderr_tail.clone(),
                status,
            });
            if self.stop.is_set() {
                break;
            }
            match policy.on_exit(started.elapsed(), Instant::now()) {
                Next::CrashLoop { failures, cooldown } => {
                    self.report(ChildEvent::CrashLoop {
                        failures,
                        window_ms: self.s.restart.window_ms,
                        last_error: reason,
                        stderr_tail,
                        retry_at: rfc3339_from_ms(now_ms() + cooldown.as_millis() as u64),
                    });
                    if self.stop.sleep(cooldown) {
                        break;
                    }
                }
                Next::Restart { delay, attempt } => {
                    let delay_ms = delay.as_millis() as u64;
                    self.report(ChildEvent::Restarting {
                        delay_ms,
                        attempt,
                        at: rfc3339_from_ms(now_ms() + delay_ms),
                    });
                    if self.stop.sleep(delay) {
                        break;
                    }
                }
            }
        }
        self.report(ChildEvent::Finished);
    }

    /// Spawns generation `generation` and completes the initialize handshake.
    fn start(&self, generation: u64) -> Result<Generation, StartError> {
        let s = self.s;
        let mut child = process::spawn(s)?;
        let pid = child.id();
        let start_time = process_start_time(pid);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            process::kill(&mut child);
            return Err(StartError::Failed("pipes missing".into(), String::new()));
        };
        let (rpc, writer) = match Rpc::start(stdin, &format!("codexd-stdin-{generation}")) {
            Ok(r) => r,
            Err(e) => {
                process::kill(&mut child);
                return Err(StartError::Failed(
                    format!("stdin writer: {e}"),
                    String::new(),
                ));
            }
        };
        let link = Arc::new(Link {
            generation,
            pid,
            rpc,
        });
        // The core learns the generation (and records the pid at once: if codexd dies
        // now, the next start can find a stale child) before any of its lines.
        self.report(ChildEvent::Spawned {
            link: link.clone(),
            start_time,
        });
        let mut gen = Generation {
            child,
            link,
            writer: Some(writer),
            pumps: None,
        };
        let logs = &s.logs_dir;
        let pumps = Pumps::start(
            generation,
            (
                stdout,
                RotatingFile::open(logs.join("stdout.log"), s.log_max_bytes),
            ),
            (
                stderr,
                RotatingFile::open(logs.join("stderr.log"), s.log_max_bytes),
            ),
            self.reports.clone(),
        );
        match pumps {
            Ok(p) => gen.pumps = Some(p),
            Err(e) => return Err(self.fail(gen, format!("output threads: {e}"))),
        }
        let init = gen.link.rpc.request(
            "initialize",
            json!({
                "clientInfo": {"name": "codexd", "title": "baa-codexd", "version": s.version},
                "capabilities": {"experimentalApi": s.experimental_api},
            }),
            HANDSHAKE_TIMEOUT.min(s.request_timeout),
        );
        let init = match init {
            Ok(v) => v,
            Err(e) => {
                let mut why = format!("failed the initialize handshake: {e}");
                if let Ok(Some(status)) = gen.child.try_wait() {
                    why = format!("{} before answering initialize", describe_exit(status));
                }
                return Err(self.fail(gen, why));
            }
        };
        if let Err(e) = gen.link.rpc.notify("initialized", None) {
            return Err(self.fail(gen, format!("could not send initialized: {e}")));
        }
        let user_agent = init
            .get("userAgent")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.report(ChildEvent::Ready {
            generation,
            user_agent,
        });
        Ok(gen)
    }

    /// A start that failed after the spawn: kill, reap, join, keep the stderr tail.
    fn fail(&self, mut gen: Generation, why: String) -> StartError {
        process::kill(&mut gen.child);
        StartError::Failed(why, gen.finish())
    }

    /// Waits for the child to exit (Some) or for the stop flag (None).
    fn wait_exit(&self, gen: &mut Generation) -> Option<ExitStatus> {
        loop {
            match gen.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => log::error!("waiting on the app-server failed: {e}"),
            }
            if self.stop.is_set() {
                return None;
            }
            // Neither the child's exit nor the stop flag can be waited on together: look
            // every 20 ms.
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// codexd is stopping: SIGTERM, SIGKILL after the grace period, reap, join.
    fn stop_child(&self, mut gen: Generation) {
        let (generation, pid) = (gen.link.generation, gen.link.pid);
        gen.link.rpc.close();
        let status = process::terminate(&mut gen.child, self.s.stop_grace);
        gen.finish();
        let exit = status
            .map(describe_exit)
            .unwrap_or_else(|| "stopped".into());
        self.report(ChildEvent::Stopped {
            generation,
            pid,
            exit,
        });
    }
}
