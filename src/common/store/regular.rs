//! Reading a state path without ever blocking on what is there: only a regular file is
//! read, and anything else is an error that says what it is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::{io_err, StoreError};
use super::kind::FileKind;

/// Identifies one version of a file: an atomic rename always brings a new inode, and an
/// in-place edit changes the size or mtime. Used to cache a parsed file safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileKey {
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// The modification time as a `SystemTime` (before the epoch clamps to it).
    pub fn modified(&self) -> SystemTime {
        let ns = u64::try_from(self.mtime_ns.max(0)).unwrap_or(u64::MAX);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

/// Opens `path` with `opts` without ever blocking on what is there: `O_NONBLOCK` (a FIFO
/// opens at once instead of waiting for its other end) and `O_NOFOLLOW` (a state file is
/// never a symlink: writes replace the name, so reads do not follow one either), then
/// `fstat` on the open descriptor. Anything but a regular file is `NotRegular`.
/// `O_NONBLOCK` changes nothing for a regular file's reads and writes.
pub fn open_regular(path: &Path, opts: &mut OpenOptions) -> Result<File, StoreError> {
    opts.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    match opts.open(path) {
        Ok(f) => {
            let meta = f.metadata().map_err(|e| io_err(path, e))?;
            if meta.file_type().is_file() {
                Ok(f)
            } else {
                Err(StoreError::NotRegular {
                    path: path.to_path_buf(),
                    kind: FileKind::of(meta.file_type()),
                })
            }
        }
        Err(e) => {
            // O_NOFOLLOW refuses a symlink (ELOOP); a socket cannot be opened (ENXIO), nor
            // a FIFO for writing with no reader: say what is there rather than the errno.
            if e.kind() != io::ErrorKind::NotFound {
                if let Ok(m) = fs::symlink_metadata(path) {
                    if !m.file_type().is_file() {
                        return Err(StoreError::NotRegular {
                            path: path.to_path_buf(),
                            kind: FileKind::of(m.file_type()),
                        });
                    }
                }
            }
            Err(io_err(path, e))
        }
    }
}

/// A whole regular file and the key of exactly the inode that was read; `None` when it
/// does not exist.
pub fn read_regular(path: &Path) -> Result<Option<(Vec<u8>, FileKey)>, StoreError> {
    let mut f = match open_regular(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata().map_err(|e| io_err(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
    Ok(Some((bytes, FileKey::of(&meta))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::store::test_support::tmpdir;
    use crate::common::store::JsonStore;
    use serde_json::Value;

    #[test]
    fn symlink_socket_and_device_at_a_state_path_are_refused() {
        let d = tmpdir("kinds");
        let target = d.join("elsewhere.json");
        fs::write(&target, b"{}").unwrap();
        std::os::unix::fs::symlink(&target, d.join("link.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.json")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock.json")).unwrap();
        let s = JsonStore::open(&d).unwrap();
        for (name, kind) in [
            ("link.json", FileKind::Symlink),
            ("zero.json", FileKind::Symlink),
            ("sock.json", FileKind::Socket),
        ] {
            match s.read::<Value>(name) {
                Err(StoreError::NotRegular { kind: k, .. }) => assert_eq!(k, kind, "{name}"),
                other => panic!("{name}: expected NotRegular, got {other:?}"),
            }
        }
        match read_regular(Path::new("/dev/null")) {
            Err(StoreError::NotRegular {
                kind: FileKind::CharDevice,
                ..
            }) => {}
            other => panic!("expected a character device, got {other:?}"),
        }
    }
}
