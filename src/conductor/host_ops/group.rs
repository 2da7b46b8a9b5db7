//! Runs one exec'd shell, leader of its own session, on the request's own thread: no
//! helper threads to own or leak. One loop `poll`s the two output pipes, notices the
//! shell's exit without reaping it (`waitid(WNOWAIT)`, so its pid, the session and group
//! id, stays reserved), escalates a timeout (SIGTERM, then SIGKILL), and when the shell is
//! gone kills whatever it left in its group and session (`nohup cmd &` and `setpgid`
//! children included, see `session`) before reaping it.
//!
//! A process that calls `setsid` starts a session of its own and escapes all of this (and
//! on macOS, with no `/proc` to find a session's members, so does a `setpgid` one): exec
//! is not a sandbox.

use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::slots::{Slot, KILL_GRACE};
use baa::common::proc::set_nonblocking;

/// Per stream.
pub const OUTPUT_CAP: usize = 1024 * 1024;
/// How long output may keep coming after the shell exits (a background child still
/// holding the pipe) before the group is killed.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// After SIGKILL, how long to wait for the exit before giving up on the process.
const GIVE_UP: Duration = Duration::from_secs(5);
/// Longest sleep between two exit checks while nothing is written.
const MAX_NAP: Duration = Duration::from_millis(50);
/// `si_code` values of a child that ended (the same on Linux and macOS; the libc crate
/// has no macOS constants).
const CLD_EXITED: i32 = 1;
const CLD_KILLED: i32 = 2;
const CLD_DUMPED: i32 = 3;

/// What a finished command left.
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output was cut at the cap, or a pipe was still held open at the end.
    pub truncated: bool,
    /// Every byte read from stdout, kept or drained (a size without holding it all).
    pub stdout_len: u64,
    /// None when the shell could not be reaped (it did not die even after SIGKILL).
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// Killed because the conductor is stopping.
    pub aborted: bool,
}

/// Spawns `cmd` (already set up with piped stdout/stderr and a new session) and runs
/// it to the end under `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration, slot: &mut Slot) -> io::Result<Outcome> {
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id();
    slot.register(pid);
    let mut out = Stream::new(child.stdout.take());
    let mut err = Stream::new(child.stderr.take());

    let deadline = started + timeout;
    let mut exited = false;
    let mut drain_until = None;
    let mut term_at: Option<Instant> = None;
    let mut give_up_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut aborted = false;
    let mut nap = Duration::from_millis(1);
    loop {
        let now = Instant::now();
        if !exited && has_exited(pid) {
            exited = true;
            aborted = slot.killed_by_stop();
            drain_until = Some(now + DRAIN_TIMEOUT);
        }
        if let Some(until) = drain_until {
            if (out.closed() && err.closed()) || now >= until {
                break;
            }
        } else {
            if now >= deadline && term_at.is_none() {
                timed_out = true;
                term_at = Some(now);
                slot.signal(libc::SIGTERM);
            }
            if let Some(t) = term_at {
                if give_up_at.is_none() && now >= t + KILL_GRACE {
                    slot.signal(libc::SIGKILL);
                    give_up_at = Some(now + GIVE_UP);
                }
            }
            if give_up_at.is_some_and(|g| now >= g) {
                break;
            }
        }
        // Sleep until output arrives or the next thing is due.
        let next = [
            Some(now + nap),
            drain_until,
            (term_at.is_none() && !exited).then_some(deadline),
            term_at
                .filter(|_| give_up_at.is_none())
                .map(|t| t + KILL_GRACE),
            give_up_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + nap);
        let got = wait_and_pump(&mut out, &mut err, next.saturating_duration_since(now));
        nap = if got {
            Duration::from_millis(1)
        } else {
            (nap * 2).min(MAX_NAP)
        };
    }

    let status = if exited {
        // The shell is gone: kill what it left behind while its pid still pins the group,
        // take the last output the dying processes wrote, then reap.
        slot.finish_group();
        let until = Instant::now() + Duration::from_millis(200);
        while !(out.closed() && err.closed()) && Instant::now() < until {
            wait_and_pump(&mut out, &mut err, Duration::from_millis(20));
        }
        child.wait().ok()
    } else {
        log::warn!("exec: process group {pid} did not exit after SIGKILL; leaving it");
        None
    };
    Ok(Outcome {
        truncated: out.truncated || err.truncated || !out.closed() || !err.closed(),
        stdout_len: out.seen,
        stdout: out.kept,
        stderr: err.kept,
        status,
        timed_out,
        aborted: aborted || (!exited && slot.killed_by_stop()),
    })
}

/// True once `pid` (our child) has ended; it stays unreaped.
fn has_exited(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own child with a siginfo we own; WNOWAIT leaves it waitable.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // With WNOHANG and nothing to report the struct stays zeroed. The code check keeps a
    // stopped child (reported by some macOS versions) from reading as exited.
    rc == 0
        && info.si_signo == libc::SIGCHLD
        && matches!(info.si_code, CLD_EXITED | CLD_KILLED | CLD_DUMPED)
}

/// One output pipe, non-blocking, keeping the first `OUTPUT_CAP` bytes and draining
/// (discarding) the rest so the command never blocks on a full pipe.
struct Stream<R> {
    pipe: Option<R>,
    kept: Vec<u8>,
    /// Bytes read, kept or not.
    seen: u64,
    truncated: bool,
}

impl<R: Read + AsRawFd> Stream<R> {
    fn new(pipe: Option<R>) -> Self {
        if let Some(p) = &pipe {
            // Cannot fail on a fresh pipe; if it did, reads would merely block until output.
            if let Err(e) = set_nonblocking(p) {
                log::warn!("exec: cannot make an output pipe non-blocking: {e}");
            }
        }
        Self {
            pipe,
            kept: Vec::new(),
            seen: 0,
            truncated: false,
        }
    }

    fn closed(&self) -> bool {
        self.pipe.is_none()
    }

    /// Reads what is there now. True if anything was read or the pipe closed.
    fn pump(&mut self) -> bool {
        let mut any = false;
        let mut buf = [0u8; 16 * 1024];
        while let Some(p) = self.pipe.as_mut() {
            match p.read(&mut buf) {
                Ok(0) => {
                    self.pipe = None;
                    return true;
                }
                Ok(n) => {
                    any = true;
                    self.seen += n as u64;
                    let room = OUTPUT_CAP.saturating_sub(self.kept.len());
                    if n > room {
                        self.truncated = true;
                    }
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.pipe = None;
                    return true;
                }
            }
        }
        any
    }
}

/// Waits up to `wait` for either pipe to become readable (or just sleeps when both are
/// closed), then reads both. True if anything happened on a pipe.
fn wait_and_pump<A: Read + AsRawFd, B: Read + AsRawFd>(
    a: &mut Stream<A>,
    b: &mut Stream<B>,
    wait: Duration,
) -> bool {
    let mut fds: Vec<libc::pollfd> = [
        a.pipe.as_ref().map(|p| p.as_raw_fd()),
        b.pipe.as_ref().map(|p| p.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    .map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    })
    .collect();
    if fds.is_empty() {
        std::thread::sleep(wait);
        return false;
    }
    // Rounded up: a sub-millisecond wait must not become a busy loop.
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: a pollfd array we own, with its true length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    let got_a = a.pump();
    let got_b = b.pump();
    got_a || got_b
}
