//! The unix transport's generations: spawning an app-server that listens on the socket
//! (`--listen unix://<path>`, own session, output appended to `stderr.log`), or attaching
//! to one that already runs (left by a previous codexd, or whose connection dropped).
//! Either way the connection is `socket`'s WebSocket and the handshake is the one every
//! generation does.
//!
//! A spawn records the new process in the pid file beside the socket (`pid_file`), and
//! first stops an app-server of this socket that runs without codexd attached to it.
//! A spawn that cannot get a socket to answer at all is a [`StartError::Transport`]:
//! codexd then falls back to stdio instead of staying down. An attach that fails is an
//! [`AttachError`]: the supervisor stops what is left of that process and spawns afresh.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use baa::common::logfile::rotate_if_over;
use baa::common::proc::{
    is_zombie, kill_if_same, pid_alive, process_start_time, KillOutcome, WakePipe,
};
use baa::common::signals::StopFlag;

use super::find::{self, Found};
use super::generation::{log_tail, Generation, Io, Proc};
use super::process::{self, describe_exit, StartError};
use super::socket::{self, ConnectError, SocketPump};
use super::{pid_file, queue, Adoptee, ChildEvent, Link, Settings};
use crate::rpc::Rpc;

/// How long a freshly spawned child may take until its socket answers (~0.1 s measured
/// on the native binary; a loaded machine and a cold disk take longer).
const SOCKET_WAIT: Duration = Duration::from_secs(20);
/// Bound on each connect + WebSocket upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a running app-server may take to answer `initialize` on a new connection.
const ATTACH_INIT: Duration = Duration::from_secs(10);
/// How often a spawn looks for its socket.
const SOCKET_POLL: Duration = Duration::from_millis(20);
/// How long a left-behind app-server may take to die after SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The child's stdout and stderr, under the logs dir (unix mode writes it directly).
fn log_path(s: &Settings) -> std::path::PathBuf {
    s.logs_dir.join("stderr.log")
}

/// Spawns an app-server listening on `socket`, connects and completes the handshake.
pub(super) fn spawn(
    s: &Settings,
    sock: &Path,
    generation: u64,
    reports: &queue::Sender<ChildEvent>,
    stop: &StopFlag,
) -> Result<Generation, StartError> {
    // Something already answering there: an app-server started on this very socket that
    // codexd lost track of is stopped first, so no thread ever has two writers; anything
    // else is not ours to talk to or to kill: say so instead of racing it.
    if let Ok(ws) = socket::connect(sock, CONNECT_TIMEOUT) {
        drop(ws);
        match find::listener(sock) {
            Some(left) => stop_left_behind(s, sock, &left, reports),
            None => {
                return Err(StartError::Transport(
                    format!(
                        "another process already listens on {}; codexd did not start it and will not use it",
                        sock.display()
                    ),
                    String::new(),
                ))
            }
        }
    }
    if let Some(dir) = sock.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let log = log_path(s);
    rotate_if_over(&log, s.log_max_bytes);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| {
            StartError::Failed(format!("cannot open {}: {e}", log.display()), String::new())
        })?;
    let log_from = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut child = process::spawn_listening(s, sock, &file)?;
    drop(file);
    let pid = child.id();
    let start_time = process_start_time(pid);
    // Recorded before anything else can fail: a codexd killed from here on (or one whose
    // daemon-state.json is lost) still finds this process.
    if let Some(st) = &start_time {
        if let Err(e) = pid_file::write(sock, pid, st) {
            log::warn!("cannot record the app-server pid {pid}: {e}");
        }
    }
    let deadline = Instant::now() + SOCKET_WAIT.min(s.request_timeout);
    let ws = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StartError::Transport(
                format!(
                    "the app-server {} before its socket {} answered (does this codex support --listen unix://?)",
                    describe_exit(status),
                    sock.display()
                ),
                log_tail(&log, log_from),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match socket::connect(sock, left.min(CONNECT_TIMEOUT)) {
            Ok(ws) => break ws,
            Err(ConnectError::Refused(_)) if !left.is_zero() && !stop.is_set() => {
                // Nothing to block on that also sees the socket appear: look again shortly.
                thread::sleep(SOCKET_POLL);
            }
            Err(e) => {
                process::kill(&mut child);
                let why = if stop.is_set() {
                    return Err(StartError::Failed(
                        "codexd is stopping".into(),
                        log_tail(&log, log_from),
                    ));
                } else {
                    format!(
                        "the socket {} did not answer within {} ms ({e})",
                        sock.display(),
                        SOCKET_WAIT.min(s.request_timeout).as_millis()
                    )
                };
                return Err(StartError::Transport(why, log_tail(&log, log_from)));
            }
        }
    };
    let mut gen = match connect_generation(
        generation,
        ws,
        Proc::Owned(child),
        start_time,
        sock,
        reports,
        false,
    ) {
        Ok(g) => g,
        Err((e, mut proc)) => {
            if let Proc::Owned(c) = &mut proc {
                process::kill(c);
            }
            return Err(StartError::Failed(e, log_tail(&log, log_from)));
        }
    };
    if let Io::Unix {
        log: l,
        log_from: from,
        ..
    } = &mut gen.io
    {
        *l = log.clone();
        *from = log_from;
    }
    let timeout = super::HANDSHAKE_TIMEOUT.min(s.request_timeout);
    if let Err(why) = gen.handshake(s, reports, timeout) {
        return Err(gen.fail(why.to_string()));
    }
    Ok(gen)
}

/// Why an attach failed, and the process it was for (so the caller can stop it).
pub struct AttachError {
    pub why: String,
    pub adoptee: Adoptee,
}

/// Attaches to the running app-server `a`: it must still be that process (pid and start
/// time), its socket must accept a connection and it must answer `initialize`, each
/// within a bound.
pub(super) fn attach(
    s: &Settings,
    mut a: Adoptee,
    generation: u64,
    reports: &queue::Sender<ChildEvent>,
) -> Result<Generation, AttachError> {
    let alive = match &mut a.child {
        Some(c) => matches!(c.try_wait(), Ok(None)),
        None => {
            pid_alive(a.pid)
                && !is_zombie(a.pid)
                && process_start_time(a.pid).as_deref() == Some(a.start_time.as_str())
        }
    };
    if !alive {
        let why = format!("the app-server pid {} is gone", a.pid);
        return Err(AttachError { why, adoptee: a });
    }
    let ws = match socket::connect(&a.socket, CONNECT_TIMEOUT) {
        Ok(ws) => ws,
        Err(e) => {
            let why = format!(
                "the app-server pid {} does not answer on {} ({e})",
                a.pid,
                a.socket.display()
            );
            return Err(AttachError { why, adoptee: a });
        }
    };
    let proc = match a.child.take() {
        Some(c) => Proc::Owned(c),
        None => Proc::Adopted {
            pid: a.pid,
            start_time: a.start_time.clone(),
        },
    };
    let mut gen = match connect_generation(
        generation,
        ws,
        proc,
        Some(a.start_time.clone()),
        &a.socket,
        reports,
        true,
    ) {
        Ok(g) => g,
        Err((why, proc)) => {
            if let Proc::Owned(c) = proc {
                a.child = Some(c);
            }
            return Err(AttachError { why, adoptee: a });
        }
    };
    if let Io::Unix { log, log_from, .. } = &mut gen.io {
        *log = log_path(s);
        *log_from = std::fs::metadata(&*log).map(|m| m.len()).unwrap_or(0);
    }
    if let Err(why) = gen.handshake(s, reports, ATTACH_INIT.min(s.request_timeout)) {
        let why = format!("the app-server pid {} {why}", a.pid);
        gen.finish();
        let adoptee = gen.into_adoptee().unwrap_or(a);
        return Err(AttachError { why, adoptee });
    }
    // An app-server spawned before pid files existed, or whose file was lost: record it.
    let recorded = pid_file::read(&a.socket).ok().flatten();
    if recorded.is_none_or(|r| r.pid != a.pid || r.start_time != a.start_time) {
        if let Err(e) = pid_file::write(&a.socket, a.pid, &a.start_time) {
            log::warn!("cannot record the app-server pid {}: {e}", a.pid);
        }
    }
    Ok(gen)
}

/// Stops an app-server found on the socket that codexd is not attached to (that exact
/// process: pid and start time), and waits until it is gone so the new one can listen.
fn stop_left_behind(s: &Settings, sock: &Path, left: &Found, reports: &queue::Sender<ChildEvent>) {
    let Found {
        pid, start_time, ..
    } = left;
    log::warn!(
        "an app-server (pid {pid}) already listens on {} without codexd attached to it; stopping it before starting another",
        sock.display()
    );
    let outcome = kill_if_same(*pid, start_time, s.stop_grace);
    // SIGKILL is not waited for by kill_if_same; the socket is free only once it is gone.
    let deadline = Instant::now() + STOP_WAIT;
    while find::same_process(*pid, start_time) && Instant::now() < deadline {
        thread::sleep(SOCKET_POLL);
    }
    if outcome == KillOutcome::Killed {
        let ev = ChildEvent::LeftBehindStopped {
            pid: *pid,
            how: left.how.as_str(),
        };
        let weight = ev.weight();
        let _ = reports.send(ev, weight);
    }
}

/// The Rpc, the socket thread and the link over an upgraded connection; reports
/// `Spawned` before any message of the generation. On error the process comes back.
fn connect_generation(
    generation: u64,
    ws: tungstenite::WebSocket<std::os::unix::net::UnixStream>,
    proc: Proc,
    start_time: Option<String>,
    sock: &Path,
    reports: &queue::Sender<ChildEvent>,
    attached: bool,
) -> Result<Generation, (String, Proc)> {
    let pid = match &proc {
        Proc::Owned(c) => c.id(),
        Proc::Adopted { pid, .. } => *pid,
    };
    let rpc = WakePipe::new().and_then(|w| Rpc::new(Some(Arc::new(w))));
    let (rpc, out) = match rpc {
        Ok(r) => r,
        Err(e) => return Err((format!("cannot set up the connection: {e}"), proc)),
    };
    let link = Arc::new(Link {
        generation,
        pid,
        rpc,
    });
    // Reported before the socket thread starts, so the core knows the generation before
    // any of its messages.
    let ev = ChildEvent::Spawned {
        link: link.clone(),
        start_time: start_time.clone(),
        attached,
        socket: Some(sock.to_path_buf()),
    };
    let weight = ev.weight();
    let _ = reports.send(ev, weight);
    let pump = match SocketPump::start(generation, ws, out, reports.clone()) {
        Ok(p) => p,
        Err(e) => {
            link.rpc.close();
            return Err((format!("cannot start the socket thread: {e}"), proc));
        }
    };
    Ok(Generation {
        proc,
        start_time,
        link,
        io: Io::Unix {
            pump: Some(pump),
            socket: sock.to_path_buf(),
            log: std::path::PathBuf::new(),
            log_from: 0,
        },
        ready_at: None,
    })
}
