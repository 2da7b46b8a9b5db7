//! Size-capped log files for the child's raw stdout and stderr: when a file passes its cap
//! it is renamed to `<name>.1` (replacing the previous one) and a fresh file is started,
//! so the two together never exceed about twice the cap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

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
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let _ = fs::rename(&self.path, PathBuf::from(old));
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
    fn rotates_past_the_cap() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("rot"));
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
}
