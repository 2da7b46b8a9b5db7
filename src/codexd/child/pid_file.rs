//! Unix mode: the pid file beside the socket (`<socket>.pid`), written atomically as soon
//! as codexd has spawned an app-server there. It names the process (pid and OS start
//! time) independently of `daemon-state.json`, so a codexd whose state file was lost or
//! damaged still finds the app-server it left running, instead of starting a second one
//! that would fight the first for the same threads.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use baa::common::store::{write_atomic, StoreError};
use baa::common::time::now_rfc3339;

/// The largest pid file read (a real one is ~200 bytes); anything bigger is not ours.
const MAX_BYTES: u64 = 64 * 1024;

/// What the pid file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PidRecord {
    pub pid: u32,
    /// [`process_start_time`](baa::common::proc::process_start_time) at spawn: with the
    /// pid it names exactly one process, across pid reuse.
    pub start_time: String,
    pub socket: String,
    #[serde(default)]
    pub written_at: String,
}

/// Why the pid file could not be read or written.
#[derive(Debug)]
pub enum PidFileError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    Store(StoreError),
    /// It exists but is not a pid record (or is oversized).
    Invalid {
        path: PathBuf,
        why: String,
    },
    /// The socket path has no parent or file name to put a pid file beside.
    NoPlace(PathBuf),
}

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidFileError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PidFileError::Store(e) => write!(f, "{e}"),
            PidFileError::Invalid { path, why } => {
                write!(f, "{} is not a pid record: {why}", path.display())
            }
            PidFileError::NoPlace(sock) => {
                write!(f, "no place for a pid file beside {}", sock.display())
            }
        }
    }
}

impl std::error::Error for PidFileError {}

/// `<socket>.pid`, beside the socket.
pub fn path_for(sock: &Path) -> Option<PathBuf> {
    let name = sock.file_name()?;
    let mut pid_name = name.to_os_string();
    pid_name.push(".pid");
    Some(sock.with_file_name(pid_name))
}

/// Records `pid` (started at `start_time`) as the app-server on `sock`; atomic (temp,
/// fsync, rename), so a reader sees the old record or the new one.
pub fn write(sock: &Path, pid: u32, start_time: &str) -> Result<(), PidFileError> {
    let path = path_for(sock).ok_or_else(|| PidFileError::NoPlace(sock.to_path_buf()))?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(PidFileError::NoPlace(sock.to_path_buf()));
    };
    let record = PidRecord {
        pid,
        start_time: start_time.to_string(),
        socket: sock.display().to_string(),
        written_at: now_rfc3339(),
    };
    let mut bytes = serde_json::to_vec_pretty(&record).map_err(|e| PidFileError::Invalid {
        path: path.clone(),
        why: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(dir, &name.to_string_lossy(), &bytes).map_err(PidFileError::Store)
}

/// The record, `Ok(None)` when there is no pid file. A record for another socket is
/// invalid (a copied state dir must not point at someone else's process).
pub fn read(sock: &Path) -> Result<Option<PidRecord>, PidFileError> {
    let Some(path) = path_for(sock) else {
        return Ok(None);
    };
    let io_err = |source| PidFileError::Io {
        path: path.clone(),
        source,
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let invalid = |why: String| PidFileError::Invalid {
        path: path.clone(),
        why,
    };
    // Checked before opening: a FIFO planted there must not block codexd's start.
    if !meta.is_file() || meta.len() > MAX_BYTES {
        return Err(invalid(format!(
            "not a regular file of at most {MAX_BYTES} bytes"
        )));
    }
    let bytes = std::fs::read(&path).map_err(io_err)?;
    let record: PidRecord = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if Path::new(&record.socket) != sock {
        return Err(invalid(format!("it names the socket {}", record.socket)));
    }
    Ok(Some(record))
}

/// Removes the pid file (the app-server it named was stopped on purpose).
pub fn remove(sock: &Path) {
    if let Some(path) = path_for(sock) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "baa-pidfile-{tag}-{}",
            baa::common::ids::new_id("t")
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_beside_the_socket() {
        let d = dir("rt");
        let sock = d.join("as.sock");
        assert_eq!(path_for(&sock), Some(d.join("as.sock.pid")));
        assert!(read(&sock).unwrap().is_none());
        write(&sock, 4242, "proc:99").unwrap();
        let r = read(&sock).unwrap().unwrap();
        assert_eq!((r.pid, r.start_time.as_str()), (4242, "proc:99"));
        remove(&sock);
        assert!(read(&sock).unwrap().is_none());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn garbage_another_socket_or_a_fifo_is_invalid_never_a_block() {
        let d = dir("bad");
        let sock = d.join("as.sock");
        let path = path_for(&sock).unwrap();
        std::fs::write(&path, b"{}").unwrap();
        assert!(matches!(read(&sock), Err(PidFileError::Invalid { .. })));
        std::fs::write(
            &path,
            br#"{"pid": 1, "startTime": "x", "socket": "/elsewhere.sock"}"#,
        )
        .unwrap();
        assert!(matches!(read(&sock), Err(PidFileError::Invalid { .. })));
        std::fs::remove_file(&path).unwrap();
        let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read(&sock), Err(PidFileError::Invalid { .. })));
        let _ = std::fs::remove_dir_all(d);
    }
}
