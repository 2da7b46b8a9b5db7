//! The supervisor thread: one generation of the child at a time — spawn (or attach to a
//! unix-mode app-server that already runs), handshake, wait for it to end, for codexd to
//! stop or for a restart request, then start the next per the policy. It owns the
//! process of each generation it spawned and is the only one that waits on it, so the
//! child is always reaped; it owns every thread of a generation and joins them before it
//! reports the end, so the core sees all of a generation's messages first.
//!
//! It reports to the core only through the queue (see `ChildEvent`) and takes requests
//! only through its control channel ([`Control`]); it never reads or changes the core's
//! state.

use std::io;
use std::process::ExitStatus;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use baa::common::proc::kill_if_same;
use baa::common::signals::StopFlag;
use baa::common::time::{now_ms, rfc3339_from_ms};

use super::generation::Generation;
use super::policy::{Next, RestartPolicy};
use super::process::{self, describe_exit, StartError, MISSING_RECHECK};
use super::unix::AttachError;
use super::{queue, stdio, unix, Adoptee, ChildEvent, Settings};
use crate::endpoint::Transport;

/// How often the supervisor looks at the child, the stop flag and its control channel.
const WATCH: Duration = Duration::from_millis(20);
/// Unix mode: after the connection ended, how long the process may take to exit before
/// codexd takes it for a lost connection to a live process (and attaches again).
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// What the core may ask of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop the running child (if any) and start a fresh one now: no backoff, a clean
    /// failure count, and out of `crash_loop` or an `unavailable` wait at once.
    Restart,
}

/// Starts the supervisor thread. It returns once `stop` is set and the child is stopped
/// (stdio) or left running (unix), and its threads joined; its last report is `Finished`.
pub fn spawn_supervisor(
    settings: Settings,
    stop: StopFlag,
    reports: queue::Sender<ChildEvent>,
    control: Receiver<Control>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("codexd-supervisor".into())
        .spawn(move || {
            Supervisor {
                s: settings,
                stop,
                reports,
                control,
            }
            .run()
        })
}

struct Supervisor {
    s: Settings,
    stop: StopFlag,
    reports: queue::Sender<ChildEvent>,
    control: Receiver<Control>,
}

/// What the next generation starts from.
enum Target {
    Spawn,
    Attach(Adoptee),
}

/// How a running generation ended.
enum Ended {
    Exited(Option<ExitStatus>),
    /// Unix mode: the connection ended (why), the process still runs.
    Disconnected(String),
    Stop,
    Restart,
}

/// How a wait between generations ended.
#[derive(PartialEq)]
enum Pause {
    Elapsed,
    Restart,
    Stop,
}

impl Supervisor {
    fn report(&self, ev: ChildEvent) {
        let weight = ev.weight();
        // Only fails when the core's dispatcher is gone, i.e. codexd is stopping.
        let _ = self.reports.send(ev, weight);
    }

    fn run(mut self) {
        let mut policy = RestartPolicy::new(self.s.restart);
        let mut generation: u64 = 0;
        let mut unavailable = false;
        let mut target = match self.s.attach.take() {
            Some(a) => Target::Attach(a),
            None => Target::Spawn,
        };
        loop {
            if self.stop.is_set() {
                break;
            }
            generation += 1;
            if !unavailable {
                self.report(ChildEvent::Starting);
            }
            let started = match std::mem::replace(&mut target, Target::Spawn) {
                Target::Spawn => self.spawn(generation),
                Target::Attach(a) => match unix::attach(&self.s, a, generation, &self.reports) {
                    Ok(gen) => Ok(gen),
                    Err(e) => {
                        self.give_up_attach(e);
                        continue;
                    }
                },
            };
            let (reason, stderr_tail, status, ready_for) = match started {
                Ok(mut gen) => match self.wait_end(&mut gen) {
                    Ended::Stop => {
                        self.stop_generation(gen);
                        break;
                    }
                    Ended::Restart => {
                        self.restart_generation(gen);
                        policy.reset();
                        unavailable = false;
                        continue;
                    }
                    Ended::Disconnected(why) => {
                        let ready_for = gen.ready_for();
                        let (generation, pid) = (gen.link.generation, gen.pid());
                        gen.finish();
                        let reason = format!(
                            "the connection ended ({why}) while the app-server kept running"
                        );
                        self.report(ChildEvent::Disconnected {
                            generation,
                            pid,
                            reason: reason.clone(),
                        });
                        if let Some(a) = gen.into_adoptee() {
                            target = Target::Attach(a);
                        }
                        // Attaching again goes through the policy like a restart would, so a
                        // connection that keeps dropping backs off and can end in crash_loop.
                        if self.after_exit(&mut policy, ready_for, reason, String::new())
                            == Pause::Stop
                        {
                            break;
                        }
                        continue;
                    }
                    Ended::Exited(status) => {
                        let tail = gen.finish();
                        let reason = match status {
                            Some(st) => describe_exit(st),
                            None => format!(
                                "pid {} exited (not codexd's child: its exit status is unknown)",
                                gen.pid()
                            ),
                        };
                        (reason, tail, status, gen.ready_for())
                    }
                },
                Err(StartError::Missing(why)) => {
                    // Not a crash: there is nothing to run. Say so, look again later.
                    generation -= 1;
                    unavailable = true;
                    let retry_at = rfc3339_from_ms(now_ms() + MISSING_RECHECK.as_millis() as u64);
                    self.report(ChildEvent::Unavailable { why, retry_at });
                    match self.pause(MISSING_RECHECK) {
                        Pause::Stop => break,
                        Pause::Restart => policy.reset(),
                        Pause::Elapsed => {}
                    }
                    continue;
                }
                Err(StartError::Transport(why, tail)) => {
                    let why = with_tail(&why, &tail);
                    log::error!("unix socket transport unusable, falling back to stdio: {why}");
                    self.report(ChildEvent::TransportFallback { why });
                    self.s.transport = Transport::Stdio;
                    continue;
                }
                Err(StartError::Failed(desc, tail)) => (desc, tail, None, None),
            };
            unavailable = false;
            self.report(ChildEvent::Exited {
                generation,
                reason: reason.clone(),
                stderr_tail: stderr_tail.clone(),
                status,
                requested: false,
            });
            if self.stop.is_set() {
                break;
            }
            if self.after_exit(&mut policy, ready_for, reason, stderr_tail) == Pause::Stop {
                break;
            }
        }
        self.report(ChildEvent::Finished);
    }

    fn spawn(&self, generation: u64) -> Result<Generation, StartError> {
        match &self.s.transport {
            Transport::Stdio => stdio::start(&self.s, generation, &self.reports),
            Transport::Unix(sock) => {
                unix::spawn(&self.s, sock, generation, &self.reports, &self.stop)
            }
        }
    }

    /// The policy's answer to an exit, then its wait: backoff or crash loop. A restart
    /// request during the wait cuts it short with a clean count.
    fn after_exit(
        &self,
        policy: &mut RestartPolicy,
        ready_for: Option<Duration>,
        last_error: String,
        stderr_tail: String,
    ) -> Pause {
        let wait = match policy.on_exit(ready_for, Instant::now()) {
            Next::CrashLoop { failures, cooldown } => {
                self.report(ChildEvent::CrashLoop {
                    failures,
                    window_ms: self.s.restart.window_ms,
                    last_error,
                    stderr_tail,
                    retry_at: rfc3339_from_ms(now_ms() + cooldown.as_millis() as u64),
                });
                cooldown
            }
            Next::Restart { delay, attempt } => {
                let delay_ms = delay.as_millis() as u64;
                self.report(ChildEvent::Restarting {
                    delay_ms,
                    attempt,
                    at: rfc3339_from_ms(now_ms() + delay_ms),
                });
                delay
            }
        };
        let pause = self.pause(wait);
        if pause == Pause::Restart {
            policy.reset();
        }
        pause
    }

    /// Waits `d`, or less if codexd stops or a restart is requested.
    fn pause(&self, d: Duration) -> Pause {
        let deadline = Instant::now() + d;
        loop {
            if self.stop.is_set() {
                return Pause::Stop;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Pause::Elapsed;
            }
            // The control channel can be waited on, the stop flag only looked at.
            match self.control.recv_timeout(left.min(WATCH)) {
                Ok(Control::Restart) => return Pause::Restart,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => thread::sleep(left.min(WATCH)),
            }
        }
    }

    /// Waits for the generation to end, for the stop flag or for a restart request.
    fn wait_end(&self, gen: &mut Generation) -> Ended {
        loop {
            if let Some(status) = gen.try_exit() {
                return Ended::Exited(status);
            }
            if let Some(why) = gen.connection_ended() {
                // The process usually exits right after its socket closed: tell the two
                // apart before attaching again to something that is going away.
                let deadline = Instant::now() + DISCONNECT_GRACE;
                while Instant::now() < deadline {
                    if let Some(status) = gen.try_exit() {
                        return Ended::Exited(status);
                    }
                    thread::sleep(WATCH);
                }
                return Ended::Disconnected(why);
            }
            if self.stop.is_set() {
                return Ended::Stop;
            }
            // Neither the child's exit nor the stop flag can be waited on together with
            // the control channel: wait on the channel, look at the rest every 20 ms.
            match self.control.recv_timeout(WATCH) {
                Ok(Control::Restart) => return Ended::Restart,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => thread::sleep(WATCH),
            }
        }
    }

    /// codexd is stopping. stdio: SIGTERM, SIGKILL after the grace period, reap, join.
    /// unix: close the connection and leave the app-server running for the next codexd.
    fn stop_generation(&self, mut gen: Generation) {
        let (generation, pid) = (gen.link.generation, gen.pid());
        if matches!(gen.io, super::generation::Io::Unix { .. }) {
            gen.finish();
            self.report(ChildEvent::Detached { generation, pid });
            return;
        }
        let status = gen.kill(self.s.stop_grace);
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

    /// A restart on request: stop the running child (never counted as a failure).
    fn restart_generation(&self, mut gen: Generation) {
        let generation = gen.link.generation;
        let status = gen.kill(self.s.stop_grace);
        let stderr_tail = gen.finish();
        let how = status
            .map(describe_exit)
            .unwrap_or_else(|| "was stopped".into());
        self.report(ChildEvent::Exited {
            generation,
            reason: format!("stopped on request to restart it ({how})"),
            stderr_tail,
            status,
            requested: true,
        });
    }

    /// The app-server to attach to is gone or does not answer: stop what is left of it
    /// (that exact process only) and let the next generation spawn afresh.
    fn give_up_attach(&self, e: AttachError) {
        let AttachError { why, mut adoptee } = e;
        match adoptee.child.as_mut() {
            Some(c) => {
                let _ = process::terminate(c, self.s.stop_grace);
            }
            None => {
                kill_if_same(adoptee.pid, &adoptee.start_time, self.s.stop_grace);
            }
        }
        log::warn!("cannot attach to the app-server: {why}; spawning a new one");
        self.report(ChildEvent::AttachFailed {
            pid: adoptee.pid,
            why,
        });
    }
}

fn with_tail(why: &str, tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        return why.to_string();
    }
    let last: Vec<&str> = tail.lines().rev().take(3).collect();
    let last: Vec<&str> = last.into_iter().rev().collect();
    format!("{why}; its last output: {}", last.join(" | "))
}
