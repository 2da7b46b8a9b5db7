//! One owner per directory: an exclusive, non-blocking `flock` on a lock file inside it,
//! held for the life of the process (the kernel drops it when the process dies, even by
//! SIGKILL, so a crash never leaves a stale lock). The holder writes its pid into the
//! file, so a refused second process can name the one that runs.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held lock; released on drop (or when the process ends).
pub struct DirLock {
    file: File,
    path: PathBuf,
}

/// Why [`DirLock::acquire`] failed.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; `pid` as it wrote it (None if unreadable).
    Held { path: PathBuf, pid: Option<u32> },
    /// The lock file could not be created or locked.
    Io { path: PathBuf, error: io::Error },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held {
                path,
                pid: Some(pid),
            } => {
                write!(f, "{} is held by pid {pid}", path.display())
            }
            LockError::Held { path, pid: None } => {
                write!(f, "{} is held by another process", path.display())
            }
            LockError::Io { path, error } => write!(f, "cannot lock {}: {error}", path.display()),
        }
    }
}

impl DirLock {
    /// Takes `dir/name` (creating the file, never the directory) without waiting, and
    /// writes this process's pid into it.
    pub fn acquire(dir: &Path, name: &str) -> Result<DirLock, LockError> {
        let path = dir.join(name);
        let io_err = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            // Like every state file: private. (Rust opens it close-on-exec, so a child
            // that outlives us never inherits the lock.)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        // SAFETY: flock on an fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    pid: text.trim().parse().ok(),
                    path,
                });
            }
            return Err(io_err(e));
        }
        // Only the holder writes, so a reader sees either the old pid or ours.
        let pid = format!("{}\n", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()));
        if let Err(e) = written {
            log::warn!("cannot write the pid into {}: {e}", path.display());
        }
        Ok(DirLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking an fd we own (closing it would release it too).
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = std::env::temp_dir().join(crate::common::ids::new_id("dirlock"));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir, "x.lock").unwrap();
        // flock locks belong to the open file description: a second open in this same
        // process conflicts exactly as another process would.
        match DirLock::acquire(&dir, "x.lock") {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!(
                "expected Held, got {:?}",
                other.map(|l| l.path().to_owned())
            ),
        }
        drop(first);
        let again = DirLock::acquire(&dir, "x.lock");
        assert!(again.is_ok(), "{:?}", again.err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
