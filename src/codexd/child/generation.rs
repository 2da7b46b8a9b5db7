//! One generation: the process (spawned by this codexd, or adopted from a previous one),
//! the transport threads on it, and the [`Link`] the core talks through. Whatever the
//! transport, a generation is started the same way after its connection exists
//! ([`Generation::handshake`]), watched the same way ([`Generation::try_exit`]), and ended
//! the same way ([`Generation::finish`] joins every thread it owns, so the core has seen
//! all of its messages before the supervisor reports how it ended).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::proc::{is_zombie, kill_if_same, pid_alive};

use super::process::{self, describe_exit, StartError};
use super::pumps::Pumps;
use super::socket::SocketPump;
use super::{queue, Adoptee, ChildEvent, Link, Settings};
use crate::rpc::RpcError;

/// Bytes of a unix-mode child's log read back to explain a failed start.
const LOG_TAIL: u64 = 4096;
/// How long a failed start waits for the child's exit status before naming the failure.
const EXIT_SETTLE: Duration = Duration::from_millis(250);

/// The process of a generation.
pub enum Proc {
    /// Spawned by this codexd: waited on and reaped by the supervisor.
    Owned(Child),
    /// A unix-mode app-server a previous codexd started: watched by pid, and signalled only
    /// while its OS start time still matches the recorded one.
    Adopted { pid: u32, start_time: String },
}

/// The transport threads of a generation.
pub enum Io {
    Stdio {
        writer: Option<JoinHandle<()>>,
        pumps: Option<Pumps>,
    },
    Unix {
        pump: Option<SocketPump>,
        socket: PathBuf,
        /// The child's log (its stdout and stderr) and where this generation's part starts.
        log: PathBuf,
        log_from: u64,
    },
}

pub struct Generation {
    pub proc: Proc,
    pub start_time: Option<String>,
    pub link: Arc<Link>,
    pub io: Io,
    /// When the child answered initialize on this connection.
    pub ready_at: Option<Instant>,
}

/// Which step of the handshake failed; worded to follow "the app-server (pid N) ".
#[derive(Debug)]
pub enum HandshakeError {
    Initialize(RpcError),
    Initialized(RpcError),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Initialize(e) => write!(f, "failed the initialize handshake: {e}"),
            HandshakeError::Initialized(e) => write!(f, "could not send initialized: {e}"),
        }
    }
}

impl Generation {
    pub fn pid(&self) -> u32 {
        self.link.pid
    }

    /// How long it has been ready (None: it never answered initialize).
    pub fn ready_for(&self) -> Option<Duration> {
        self.ready_at.map(|t| t.elapsed())
    }

    /// `initialize` → response → `initialized`, then `Ready`.
    pub fn handshake(
        &mut self,
        s: &Settings,
        reports: &queue::Sender<ChildEvent>,
        timeout: Duration,
    ) -> Result<(), HandshakeError> {
        let init = self
            .link
            .rpc
            .request(
                "initialize",
                json!({
                    "clientInfo": {"name": "codexd", "title": "baa-codexd", "version": s.version},
                    "capabilities": {"experimentalApi": s.experimental_api},
                }),
                timeout,
            )
            .map_err(HandshakeError::Initialize)?;
        self.link
            .rpc
            .notify("initialized", None)
            .map_err(HandshakeError::Initialized)?;
        self.ready_at = Some(Instant::now());
        let user_agent = init
            .get("userAgent")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ev = ChildEvent::Ready {
            generation: self.link.generation,
            user_agent,
        };
        let weight = ev.weight();
        let _ = reports.send(ev, weight);
        Ok(())
    }

    /// Some once the process is gone: its status when it was ours (None for an adopted
    /// one, whose status only its parent can read).
    pub fn try_exit(&mut self) -> Option<Option<ExitStatus>> {
        match &mut self.proc {
            Proc::Owned(child) => match child.try_wait() {
                Ok(Some(status)) => Some(Some(status)),
                Ok(None) => None,
                Err(e) => {
                    log::error!("waiting on the app-server failed: {e}");
                    None
                }
            },
            Proc::Adopted { pid, .. } => (!pid_alive(*pid) || is_zombie(*pid)).then_some(None),
        }
    }

    /// Unix mode: why the connection ended, once it did (stdio: never; the process exit
    /// tells).
    pub fn connection_ended(&self) -> Option<String> {
        match &self.io {
            Io::Unix { pump: Some(p), .. } => p.ended(),
            _ => None,
        }
    }

    /// Stops the process: SIGTERM, SIGKILL after `grace`, reaped when ours. The status is
    /// None for an adopted process.
    pub fn kill(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.link.rpc.close();
        match &mut self.proc {
            Proc::Owned(child) => process::terminate(child, grace),
            Proc::Adopted { pid, start_time } => {
                kill_if_same(*pid, start_time, grace);
                None
            }
        }
    }

    /// Closes the connection, joins the transport threads (the process must be gone or
    /// left to run) and returns the tail of what the child wrote on stderr.
    pub fn finish(&mut self) -> String {
        self.link.rpc.close();
        match &mut self.io {
            Io::Stdio { writer, pumps } => {
                if let Some(w) = writer.take() {
                    if w.join().is_err() {
                        log::error!("the app-server stdin writer panicked");
                    }
                }
                pumps.take().map(Pumps::finish).unwrap_or_default()
            }
            Io::Unix {
                pump,
                log,
                log_from,
                ..
            } => {
                if let Some(p) = pump.take() {
                    p.finish();
                }
                log_tail(log, *log_from)
            }
        }
    }

    /// A start that failed after the spawn or the connect: kill what is left, join, and
    /// keep the stderr tail.
    pub fn fail(mut self, why: String) -> StartError {
        let mut why = why;
        // A child that exits closes its pipes a moment before it can be reaped: give the
        // exit status a short while, so the reason is the exit code rather than the EOF
        // the handshake saw first.
        let settle = Instant::now() + EXIT_SETTLE;
        loop {
            if let Some(Some(status)) = self.try_exit() {
                why = format!("{} before answering initialize", describe_exit(status));
                break;
            }
            if Instant::now() >= settle {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill(Duration::ZERO);
        StartError::Failed(why, self.finish())
    }

    /// Unix mode, after its connection ended: the still running process, to attach to
    /// again. The generation must be finished.
    pub fn into_adoptee(self) -> Option<Adoptee> {
        let Io::Unix { socket, .. } = self.io else {
            return None;
        };
        let start_time = self.start_time?;
        let pid = self.link.pid;
        let child = match self.proc {
            Proc::Owned(c) => Some(c),
            Proc::Adopted { .. } => None,
        };
        Some(Adoptee {
            pid,
            start_time,
            socket,
            child,
        })
    }
}

/// The last [`LOG_TAIL`] bytes of `path` written after `from`, lossily decoded.
pub fn log_tail(path: &Path, from: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // A rotation in between makes `from` meaningless: read the file's own tail.
    let from = if from > len { 0 } else { from };
    let start = len.saturating_sub(LOG_TAIL).max(from);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(LOG_TAIL).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
