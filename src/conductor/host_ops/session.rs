//! Signalling every process of an exec's session, not just its process group.
//!
//! Each exec'd shell leads a new session (setsid at spawn), so its pid is both the group id
//! and the session id. A child that leaves the group with `setpgid`/`setpgrp` (a job-control
//! shell, a daemonizing tool) stays in the session: a process can only move to a group of
//! its own session. So signalling the session reaches it where a `killpg` does not.
//! A child that calls `setsid` itself starts a session of its own and still escapes.
//!
//! Linux only: the members are found in `/proc/<pid>/stat` (field 6, the session id). macOS
//! has no `/proc` and no call that lists a session, so there only the group is signalled
//! and a `setpgid` child escapes as a `setsid` one does (docs/api/control-interfaces.md).
//!
//! The session id must name this exec's session: callers signal only while the leader is
//! registered and unreaped (its pid, the session id, cannot be reused until it is reaped).
//! Each member is pinned with a pidfd and checked again before its signal, so a member's
//! pid reused between the scan and the signal is not hit.

use baa::common::proc::Stat;

/// Sends `sig` to every live process in session `sid` except this one; returns how many
/// were signalled. A no-op without `/proc`.
pub fn signal_session(sid: u32, sig: i32) -> usize {
    let me = std::process::id();
    members(sid)
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| signal_member(*pid, sid, sig))
        .count()
}

/// Signals `pid` if it is still a live member of `sid` once pinned by a pidfd (which names
/// one process): a member that exited after the scan and whose pid was reused is left
/// alone. Without pidfds (Linux before 5.3, or a seccomp filter) a plain `kill` after the
/// same check.
#[cfg(target_os = "linux")]
fn signal_member(pid: u32, sid: u32, sig: i32) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: pidfd_open(pid, 0) returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd < 0 {
        let gone = std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        return !gone
            && session_of(pid) == Some(sid)
            && baa::common::proc::kill_pid(pid, sig).is_ok();
    }
    // SAFETY: a descriptor pidfd_open just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if session_of(pid) != Some(sid) {
        return false;
    }
    // SAFETY: pidfd_send_signal(pidfd, sig, NULL info, 0 flags) on our descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// No `/proc`, so no members were listed.
#[cfg(not(target_os = "linux"))]
fn signal_member(_pid: u32, _sid: u32, _sig: i32) -> bool {
    false
}

fn session_of(pid: u32) -> Option<u32> {
    Stat::of(pid).and_then(live)
}

/// SIGKILLs the session until no live member is left (a member may fork between a scan and
/// its kill), at most a few rounds; returns how many kills were sent.
pub fn kill_session(sid: u32) -> usize {
    let mut sent = 0;
    for _ in 0..20 {
        let n = signal_session(sid, libc::SIGKILL);
        if n == 0 {
            break;
        }
        sent += n;
    }
    sent
}

/// Live (not zombie) processes whose session id is `sid`.
fn members(sid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| session_of(*pid) == Some(sid))
        .collect()
}

/// The session id in a `/proc/<pid>/stat` line, None for a zombie or a dead process (or a
/// line that does not parse).
#[cfg(test)]
fn live_session(stat: &str) -> Option<u32> {
    Stat::parse(stat).and_then(live)
}

/// The session id of a process that is not a zombie or dead.
fn live(stat: Stat) -> Option<u32> {
    (!matches!(stat.state, 'Z' | 'X')).then_some(stat.session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_from_the_last_paren() {
        assert_eq!(
            live_session("4242 (a b) c) S 1 4240 4200 0 -1 4194560"),
            Some(4200)
        );
        assert_eq!(live_session("4242 (sleep) Z 1 4240 4200 0"), None);
        assert_eq!(live_session("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_session_lists_us() {
        // SAFETY: getsid(0) only reads our own session id.
        let sid = unsafe { libc::getsid(0) } as u32;
        assert!(members(sid).contains(&std::process::id()));
    }
}
