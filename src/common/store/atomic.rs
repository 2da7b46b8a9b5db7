//! Atomic, durable writes: a synced temp file in the same directory, renamed over the
//! target, then the directory synced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::{io_err, rename_err, StoreError};
use super::kind::FileKind;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file this old has no live writer (a write takes milliseconds), even when the pid
/// in its name now belongs to another process (pid reuse after a kill -9 and restart).
pub(super) const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// The permission bits a file written by [`write_atomic_with`] ends up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// 0600: state files (they hold prompts, answers and tokens' neighbours).
    Private,
    /// Exactly these bits, umask notwithstanding (an overwrite keeping the old file's mode).
    Exact(u32),
    /// What a plain create would give: 0666 minus the umask.
    UmaskDefault,
}

/// The pid embedded in one of our temp file names, if `name` is one.
pub(super) fn temp_owner(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let _counter = parts.next()?;
    parts.next()?.parse().ok()
}

/// temp in the same dir → write → fsync → rename → fsync dir, as a 0600 state file.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic_with(dir, name, bytes, FileMode::Private)
}

/// The atomic write with the final mode set on the temp before the rename, so the file is
/// never visible with wider bits than asked for. The temp is removed on any failure before
/// the rename.
pub fn write_atomic_with(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: FileMode,
) -> Result<(), StoreError> {
    let tmp = write_temp(dir, name, bytes, mode)?;
    let target = dir.join(name);
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(rename_err(&target, e));
    }
    sync_dir(dir)
}

/// [`write_atomic_with`] relative to the open directory `dir` (`shown` names it in errors):
/// the temp is created, renamed and synced through the descriptor, never by path, so a
/// directory on the path swapped for a symlink after the caller checked what `dir` is
/// cannot move the write elsewhere. `name` is a single path component.
pub fn write_atomic_at(
    dir: &File,
    shown: &Path,
    name: &str,
    bytes: &[u8],
    mode: FileMode,
) -> Result<(), StoreError> {
    let target = shown.join(name);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(StoreError::BadName(name.to_string()));
    }
    let c_target = c_name(name).map_err(|e| io_err(&target, e))?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{name}.{}.{n}.tmp", std::process::id());
    let tmp = shown.join(&tmp_name);
    let c_tmp = c_name(&tmp_name).map_err(|e| io_err(&tmp, e))?;
    let created = match mode {
        FileMode::Private | FileMode::Exact(_) => 0o600,
        FileMode::UmaskDefault => 0o666,
    };
    let fd = dir.as_raw_fd();
    // SAFETY: `fd` is open for the call; `c_tmp` is a NUL-terminated name. O_EXCL with
    // O_NOFOLLOW: never an existing file, never through a symlink planted at the name.
    let raw = unsafe {
        libc::openat(
            fd,
            c_tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            created as libc::c_uint,
        )
    };
    if raw < 0 {
        return Err(io_err(&tmp, io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a descriptor just opened and owned by nothing else.
    let mut f = unsafe { File::from_raw_fd(raw) };
    let written = (|| {
        if let FileMode::Exact(bits) = mode {
            f.set_permissions(fs::Permissions::from_mode(bits & 0o7777))?;
        }
        f.write_all(bytes)?;
        f.sync_all()
    })();
    drop(f);
    let unlink_tmp = || {
        // SAFETY: as above; a failed unlink leaves a temp the stale sweep removes.
        unsafe { libc::unlinkat(fd, c_tmp.as_ptr(), 0) };
    };
    if let Err(e) = written {
        unlink_tmp();
        return Err(io_err(&tmp, e));
    }
    // SAFETY: both names are NUL-terminated and relative to the same open directory.
    if unsafe { libc::renameat(fd, c_tmp.as_ptr(), fd, c_target.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        unlink_tmp();
        return Err(match e.raw_os_error() {
            Some(libc::EISDIR) => StoreError::NotRegular {
                path: target,
                kind: FileKind::Directory,
            },
            _ => io_err(&target, e),
        });
    }
    dir.sync_all().map_err(|e| io_err(shown, e))
}

fn c_name(name: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

/// A rename is only durable once the directory entry is.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// A synced temp beside `name` holding `bytes`, with its final mode; removed on failure.
pub(super) fn write_temp(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: FileMode,
) -> Result<PathBuf, StoreError> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        match mode {
            // Created private; an exact mode is applied below, once the file is ours.
            FileMode::Private | FileMode::Exact(_) => opts.mode(0o600),
            FileMode::UmaskDefault => opts.mode(0o666),
        };
        let mut f = opts.open(&tmp).map_err(|e| io_err(&tmp, e))?;
        if let FileMode::Exact(bits) = mode {
            f.set_permissions(fs::Permissions::from_mode(bits & 0o7777))
                .map_err(|e| io_err(&tmp, e))?;
        }
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::store::test_support::tmpdir;

    /// The defect `write_atomic_at` exists for: a write by path after a check of the path
    /// followed a directory swapped for a symlink. Through the descriptor the write lands
    /// in the directory that was opened, wherever the path points now.
    #[test]
    fn write_at_lands_in_the_opened_dir_after_a_dir_symlink_swap() {
        let d = tmpdir("at");
        let (opened, moved, elsewhere) = (d.join("dir"), d.join("moved"), d.join("protected"));
        fs::create_dir_all(&opened).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        let dir = File::open(&opened).unwrap();
        fs::rename(&opened, &moved).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &opened).unwrap();
        write_atomic_at(&dir, &opened, "x.sh", b"new", FileMode::Exact(0o750)).unwrap();
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        let names: Vec<_> = fs::read_dir(&moved)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.sh"], "only the file, no temp left behind");
        let meta = fs::metadata(moved.join("x.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
        assert_eq!(fs::read(moved.join("x.sh")).unwrap(), b"new");
        // A directory in the way is named as such; its temp is removed.
        fs::create_dir(moved.join("sub")).unwrap();
        let e = write_atomic_at(&dir, &opened, "sub", b"x", FileMode::UmaskDefault).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(fs::read_dir(&moved).unwrap().count(), 2);
        assert!(matches!(
            write_atomic_at(&dir, &opened, "../x", b"x", FileMode::Private),
            Err(StoreError::BadName(_))
        ));
        let _ = fs::remove_dir_all(d);
    }
}
