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

/// Sends `sig` to every live process in session `sid` except this one; returns how many
/// were signalled. A no-op without `/proc`.
pub fn signal_session(sid: u32, sig: i32) -> usize {
    let me = std::process::id();
    members(sid)
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| baa::common::proc::kill_pid(*pid, sig).is_ok())
        .count()
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
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| live_session(&stat))
                == Some(sid)
        })
        .collect()
}

/// The session id in a `/proc/<pid>/stat` line, None for a zombie or a dead process (or a
/// line that does not parse). The command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn live_session(stat: &str) -> Option<u32> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // ppid, pgrp, then session.
    fields.nth(2)?.parse().ok()
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
