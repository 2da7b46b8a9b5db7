//! Paths host operations refuse. Writes: the whole state and logs trees (the conductor's
//! and codexd's files: a replaced `events.jsonl` left codexd appending to a deleted inode)
//! and the conductor's own `/proc` entry. Reads: the conductor's own `/proc` entry, whose
//! `environ`, `mem` and `fd/` would hand out the token and every open file.
//!
//! Every path check takes a path already resolved by `canonicalize` (symlinks and `..`
//! gone), so `/proc/self`, `/proc/thread-self` and a symlink into a protected tree all land
//! on the real path checked here. A path can change between its check and its open, so a
//! read also checks the file it opened (`check_opened`) and a write the directory it
//! opened to write in (`check_write_opened`).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
#[cfg(any(target_os = "linux", target_os = "macos"))]
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

use super::OpError;

pub struct Protected {
    /// Canonical roots no write may land under.
    write_roots: Vec<PathBuf>,
    pid: u32,
}

impl Protected {
    /// `roots` that do not exist yet are skipped (the daemon creates its dirs first).
    pub fn new(roots: &[&Path]) -> Self {
        let mut write_roots: Vec<PathBuf> = roots
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        write_roots.dedup();
        Self {
            write_roots,
            pid: std::process::id(),
        }
    }

    /// For a read of the canonical path `real`.
    pub fn check_read(&self, real: &Path) -> Result<(), OpError> {
        if self.is_own_proc(real) {
            return Err(own_proc_error(real));
        }
        Ok(())
    }

    /// For a file already opened for a read of `shown`: refused if it is in fact our own
    /// `/proc` entry, whatever path led there (the path may have changed since it was
    /// checked). On Linux the kernel's name for the descriptor (`/proc/self/fd/N`) is
    /// checked like a path; if it cannot be read, a file on procfs is refused outright.
    /// Elsewhere there is no procfs to reach.
    pub fn check_opened(&self, file: &File, shown: &Path) -> Result<(), OpError> {
        match opened_path(file) {
            Some(real) if self.is_own_proc(&real) => Err(own_proc_error(shown)),
            Some(_) => Ok(()),
            None if on_procfs(file) => Err(own_proc_error(shown)),
            None => Ok(()),
        }
    }

    /// For a write whose canonical parent directory is `real_parent` (it may not exist
    /// yet; it is checked before anything is created).
    pub fn check_write(&self, real_parent: &Path, shown: &Path) -> Result<(), OpError> {
        if self.is_own_proc(real_parent) {
            return Err(own_proc_error(shown));
        }
        if let Some(root) = self.write_roots.iter().find(|r| real_parent.starts_with(r)) {
            return Err(OpError::new(
                "PROTECTED_PATH",
                format!(
                    "{} is inside {}, the daemons' state or logs; it cannot be written through host ops.",
                    shown.display(),
                    root.display()
                ),
            ));
        }
        Ok(())
    }

    /// For a write through the directory `dir`, already opened: the path checked by
    /// [`Self::check_write`] may have changed before the open, so the kernel's name for the
    /// directory actually opened is checked the same way. A directory whose name cannot be
    /// learnt is refused: there is no telling whether it is under a protected root.
    pub fn check_write_opened(&self, dir: &File, shown: &Path) -> Result<(), OpError> {
        match opened_path(dir) {
            Some(real) => self.check_write(&real, shown),
            None => Err(OpError::new(
                "WRITE_FAILED",
                format!(
                    "cannot tell where the directory of {} really is; nothing was written.",
                    shown.display()
                ),
            )),
        }
    }

    /// `/proc/<our pid>/…` or `/proc/<one of our thread ids>/…` (thread ids are valid
    /// `/proc` entries too, though not listed).
    fn is_own_proc(&self, real: &Path) -> bool {
        let mut parts = real.components();
        if parts.next() != Some(Component::RootDir)
            || parts.next() != Some(Component::Normal("proc".as_ref()))
        {
            return false;
        }
        let Some(Component::Normal(entry)) = parts.next() else {
            return false;
        };
        let Some(entry) = entry.to_str() else {
            return false;
        };
        if entry == "self" || entry == "thread-self" {
            return true;
        }
        match entry.parse::<u32>() {
            Ok(id) if id == self.pid => true,
            Ok(id) => Path::new("/proc/self/task").join(id.to_string()).exists(),
            Err(_) => false,
        }
    }
}

/// The path the kernel has for an open file (Linux).
#[cfg(target_os = "linux")]
fn opened_path(file: &File) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// The path the kernel has for an open file (macOS: `F_GETPATH`).
#[cfg(target_os = "macos")]
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: F_GETPATH writes at most PATH_MAX bytes, NUL included, into `buf`.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) } == -1 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    buf.truncate(len);
    Some(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn opened_path(_file: &File) -> Option<PathBuf> {
    None
}

/// True if `file` lives on the filesystem mounted at `/proc` (same device).
fn on_procfs(file: &File) -> bool {
    match (file.metadata(), std::fs::metadata("/proc/self")) {
        (Ok(f), Ok(p)) => f.dev() == p.dev(),
        _ => false,
    }
}

fn own_proc_error(shown: &Path) -> OpError {
    OpError::new(
        "PROTECTED_PATH",
        format!(
            "{} is the conductor's own process entry (its environment, memory and open files); host ops cannot reach it.",
            shown.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn own_proc_entries_are_refused() {
        let p = Protected::new(&[]);
        let me = std::process::id();
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        for path in [
            format!("/proc/{me}/environ"),
            format!("/proc/{me}"),
            format!("/proc/{tid}/mem"),
            "/proc/self/environ".to_string(),
        ] {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(&path));
            assert_eq!(
                p.check_read(&real).map_err(|e| e.code),
                Err("PROTECTED_PATH"),
                "{path} → {}",
                real.display()
            );
        }
        assert!(p.check_read(Path::new("/proc/1/status")).is_ok());
        assert!(p.check_read(Path::new("/proc/cpuinfo")).is_ok());
        assert!(p.check_read(Path::new("/etc/hostname")).is_ok());
    }

    #[test]
    fn writes_under_a_protected_root_are_refused() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("protect"));
        let state = dir.join("state");
        std::fs::create_dir_all(state.join("codexd")).unwrap();
        let p = Protected::new(&[&state, &dir.join("missing")]);
        let real = std::fs::canonicalize(state.join("codexd")).unwrap();
        assert_eq!(
            p.check_write(&real, &real).map_err(|e| e.code),
            Err("PROTECTED_PATH")
        );
        let outside = std::fs::canonicalize(&dir).unwrap();
        assert!(p.check_write(&outside, &outside).is_ok());
        // A sibling whose name merely starts like the root is not under it.
        assert!(p
            .check_write(&outside.join("state-other"), Path::new("x"))
            .is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
