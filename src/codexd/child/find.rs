//! Unix mode: the app-server running on codexd's socket, found from the outside — from the
//! socket itself (the kernel names the process listening on it: `SO_PEERCRED` on Linux,
//! `LOCAL_PEERPID` on macOS) when that process's command line says it listens on exactly
//! this socket, else from the pid file beside the socket. Either way the process is named
//! by pid and OS start time, so nothing that merely reuses the pid is adopted or killed.
//!
//! codexd uses it when `daemon-state.json` does not name the app-server (lost, emptied,
//! garbage, or an older copy), and before it spawns one: there is never a second
//! app-server on the socket writing to the same threads.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use baa::common::proc::{is_zombie, pid_alive, process_start_time};

use super::pid_file;

/// How an app-server was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The pid file names it and that process (pid and start time) still runs; when
    /// something listens on the socket, it is this process.
    PidFile,
    /// It listens on the socket and its command line says `--listen unix://<socket>`
    /// (the pid file is missing, stale, or names another process).
    SocketPeer,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::PidFile => "pid file",
            How::SocketPeer => "socket peer",
        }
    }
}

/// A running app-server on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: u32,
    pub start_time: String,
    pub how: How,
}

/// The app-server codexd left on `sock`, if one runs. The socket's listener comes first
/// when it is an app-server of this socket: that is the process codexd would talk to, so
/// the one that must not get a twin. Else the pid file's process while it runs (it may
/// not answer: the attach then fails and that exact process is stopped).
pub fn find(sock: &Path) -> Option<Found> {
    let recorded = match pid_file::read(sock) {
        Ok(r) => r.filter(|r| same_process(r.pid, &r.start_time)),
        Err(e) => {
            log::warn!("{e}; looking at the socket only");
            None
        }
    };
    match (listener(sock), recorded) {
        (Some(l), Some(r)) if l.pid == r.pid => Some(Found {
            how: How::PidFile,
            ..l
        }),
        (Some(l), r) => {
            if let Some(r) = r {
                // A wrapper script's native child listens for it, for one.
                log::info!(
                    "the pid file names pid {}, but pid {} listens on {}; taking the listener",
                    r.pid,
                    l.pid,
                    sock.display()
                );
            }
            Some(l)
        }
        (None, Some(r)) => Some(Found {
            pid: r.pid,
            start_time: r.start_time,
            how: How::PidFile,
        }),
        (None, None) => None,
    }
}

/// The process listening on `sock`, if it is an app-server started on this socket.
pub fn listener(sock: &Path) -> Option<Found> {
    let stream = UnixStream::connect(sock).ok()?;
    let pid = peer_pid(&stream)?;
    drop(stream);
    if !listens_on(pid, sock) {
        log::warn!(
            "pid {pid} listens on {} but its command line does not name that socket: not codexd's app-server",
            sock.display()
        );
        return None;
    }
    let start_time = process_start_time(pid)?;
    Some(Found {
        pid,
        start_time,
        how: How::SocketPeer,
    })
}

/// True while `pid` is the process that started at `start_time` and has not exited.
pub fn same_process(pid: u32, start_time: &str) -> bool {
    pid_alive(pid) && !is_zombie(pid) && process_start_time(pid).as_deref() == Some(start_time)
}

/// True if `pid`'s command line has `--listen unix://<sock>` (or `--listen=unix://…`).
fn listens_on(pid: u32, sock: &Path) -> bool {
    let want = format!("unix://{}", sock.display());
    match cmdline(pid) {
        Some(Cmdline::Args(args)) => {
            let joined = format!("--listen={want}");
            args.windows(2).any(|w| w[0] == "--listen" && w[1] == want) || args.contains(&joined)
        }
        Some(Cmdline::Joined(line)) => [format!("--listen {want}"), format!("--listen={want}")]
            .iter()
            .any(|needle| contains_word(&line, needle)),
        None => false,
    }
}

/// A process's command line: its exact arguments, or (from `ps`) one line joined with
/// blanks, which a path with a blank in it (`Application Support`) cannot be split from.
enum Cmdline {
    Args(Vec<String>),
    Joined(String),
}

/// `/proc/<pid>/cmdline` on Linux, else `ps -o command=`.
fn cmdline(pid: u32) -> Option<Cmdline> {
    if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        return Some(Cmdline::Args(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        ));
    }
    let out = std::process::Command::new("ps")
        .args(["-ww", "-o", "command=", "-p", &pid.to_string()])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| Cmdline::Joined(String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// True if `needle` occurs in `line` as whole words: nothing but a blank or the line's
/// ends around it (so `…/as.sock` does not match `…/as.sock2`).
fn contains_word(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + needle.len()..].chars().next();
        before.is_none_or(char::is_whitespace) && after.is_none_or(char::is_whitespace)
    })
}

/// The pid of the process at the other end of a connected Unix socket (for a listening
/// socket: the process that called `listen`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_pid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the ucred we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn peer_pid(stream: &UnixStream) -> Option<u32> {
    let mut pid: libc::pid_t = 0;
    let mut len = std::mem::size_of::<libc::pid_t>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the pid_t we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_LOCAL,
            libc::LOCAL_PEERPID,
            (&mut pid as *mut libc::pid_t).cast(),
            &mut len,
        )
    };
    (rc == 0 && pid > 0).then_some(pid as u32)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
)))]
fn peer_pid(_stream: &UnixStream) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_joined_command_line_matches_only_the_whole_socket_path() {
        let line = "/opt/codex app-server --listen unix:///Users/me/Library/Application Support/baa/as.sock";
        let want = "--listen unix:///Users/me/Library/Application Support/baa/as.sock";
        assert!(contains_word(line, want));
        assert!(!contains_word(&format!("{line}2"), want));
        assert!(contains_word(&format!("{line} --verbose"), want));
        assert!(!contains_word(
            line,
            "--listen unix:///Users/me/Library/App"
        ));
    }

    #[test]
    fn the_socket_names_its_listener_and_a_stranger_is_not_adopted() {
        let d = std::env::temp_dir().join(format!("baa-find-{}", baa::common::ids::new_id("t")));
        std::fs::create_dir_all(&d).unwrap();
        let sock = d.join("as.sock");
        assert_eq!(find(&sock), None, "nothing listens yet");
        let _l = UnixListener::bind(&sock).unwrap();
        let s = UnixStream::connect(&sock).unwrap();
        assert_eq!(peer_pid(&s), Some(std::process::id()));
        // This test process listens, but not with `--listen unix://<sock>`.
        assert_eq!(listener(&sock), None);
        // A pid file naming a live process is believed (pid and start time) …
        let me = std::process::id();
        let start = process_start_time(me).unwrap();
        pid_file::write(&sock, me, &start).unwrap();
        assert_eq!(
            find(&sock).map(|f| (f.pid, f.how)),
            Some((me, How::PidFile))
        );
        // … and one whose start time differs (the pid was reused) is not.
        pid_file::write(&sock, me, "proc:1").unwrap();
        assert_eq!(find(&sock), None);
        let _ = std::fs::remove_dir_all(d);
    }
}
