//! Size-based log rotation, the one way every log here is rotated: `<file>` becomes
//! `<file>.1`, older ones shift up to a kept number and the oldest drops off. The daemon's
//! own log (`logging`), the host-ops audit log, and the codex child's raw stdout/stderr
//! ([`RotatingFile`], [`rotate_if_over`]) all go through [`rotate_files`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `<path>.{keep-1}` → `<path>.{keep}`, …, `<path>` → `<path>.1`. Missing ones are skipped.
pub fn rotate_files(path: &Path, keep: u32) -> io::Result<()> {
    let numbered = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    for n in (1..keep).rev() {
        match fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(path, numbered(1))
}

/// Rotates `path` (one old copy kept) when it is over `max` bytes (at least 1 KiB): for a
/// log another process appends to, rotated only between its runs.
pub fn rotate_if_over(path: &Path, max: u64) {
    if fs::metadata(path).is_ok_and(|m| m.len() > max.max(1024)) {
        let _ = rotate_files(path, 1);
    }
}

/// A size-capped log file written by this process: when it passes its cap it is renamed to
/// `<name>.1` (replacing the previous one) and a fresh file is started, so the two
/// together never exceed about twice the cap.
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    max_bytes: u64,
}

impl RotatingFile {
    pub fn open(path: PathBuf, max_bytes: u64) -> Self {
        let (file, written) = match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                (Some(f), len)
            }
            Err(e) => {
                log::warn!("cannot open {}: {e}", path.display());
                (None, 0)
            }
        };
        Self {
            path,
            file,
            written,
            max_bytes: max_bytes.max(1024),
        }
    }

    /// Appends `bytes`; a failing disk is logged once per rotation, never fatal.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.written >= self.max_bytes {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(bytes) {
                log::warn!(
                    "write {}: {e}; dropping this log until it rotates",
                    self.path.display()
                );
                self.file = None;
            }
        }
        self.written += bytes.len() as u64;
    }

    fn rotate(&mut self) {
        self.file = None;
        let _ = rotate_files(&self.path, 1);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e: io::Error| log::warn!("reopen {}: {e}", self.path.display()))
            .ok();
        self.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_files_shifts_and_drops_the_oldest() {
        let dir = std::env::temp_dir().join(crate::common::ids::new_id("logrot"));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.err.log");
        for (name, body) in [
            ("x.err.log", "live"),
            ("x.err.log.1", "one"),
            ("x.err.log.2", "two"),
            ("x.err.log.3", "three"),
        ] {
            fs::write(dir.join(name), body).unwrap();
        }
        rotate_files(&p, 3).unwrap();
        let read = |n: &str| fs::read_to_string(dir.join(n)).ok();
        assert_eq!(
            (
                read("x.err.log"),
                read("x.err.log.1"),
                read("x.err.log.2"),
                read("x.err.log.3")
            ),
            (
                None,
                Some("live".into()),
                Some("one".into()),
                Some("two".into())
            )
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn rotates_past_the_cap() {
        let dir = std::env::temp_dir().join(crate::common::ids::new_id("rot"));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("stderr.log");
        let mut f = RotatingFile::open(p.clone(), 1024);
        for _ in 0..3 {
            f.write(&[b'x'; 700]);
        }
        let cur = fs::metadata(&p).unwrap().len();
        let old = fs::metadata(dir.join("stderr.log.1")).unwrap().len();
        assert_eq!((cur, old), (700, 1400));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn rotate_if_over_leaves_a_small_file_and_moves_a_large_one() {
        let dir = std::env::temp_dir().join(crate::common::ids::new_id("rotif"));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("app-server.log");
        fs::write(&p, [b'x'; 1024]).unwrap();
        rotate_if_over(&p, 10);
        assert!(p.exists(), "1 KiB is the floor of the cap");
        fs::write(&p, [b'x'; 1025]).unwrap();
        rotate_if_over(&p, 10);
        let moved = fs::metadata(dir.join("app-server.log.1"))
            .map(|m| m.len())
            .ok();
        assert_eq!((p.exists(), moved), (false, Some(1025)));
        let _ = fs::remove_dir_all(dir);
    }
}
