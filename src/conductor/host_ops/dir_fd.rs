//! Directories held open for a write. A path can change between its check and its use (a
//! directory swapped for a symlink to a protected tree), so `files/write` opens its parent
//! once, checks the directory it actually opened, and does everything else through that
//! descriptor: each step below opens one component with `O_NOFOLLOW`, never a path.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::Path;

/// What is at a name inside an open directory (the name itself, not a symlink's target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub is_dir: bool,
    pub is_file: bool,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
}

/// Opens the directory at `path`; a symlink as its last component is refused (`ELOOP`).
pub fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// The directory `name` inside `dir`, created (0777 minus the umask, as `mkdir -p` does)
/// if it is missing. A symlink planted at `name` is refused, not followed.
pub fn make_dir_at(dir: &File, name: &OsStr) -> io::Result<File> {
    let c = c_name(name)?;
    // SAFETY: `dir` is open for the call; `c` is a NUL-terminated single component.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o777) } != 0 {
        let e = io::Error::last_os_error();
        // Another writer created it first: fine, it is opened below like any other.
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    // SAFETY: as above.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// What is at `name` inside `dir`, without following a symlink; `None` if nothing is.
pub fn entry_at(dir: &File, name: &OsStr) -> io::Result<Option<Entry>> {
    let c = c_name(name)?;
    // SAFETY: a zeroed `stat` is a valid value for fstatat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open, `c` NUL-terminated, `st` a valid out pointer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(e),
        };
    }
    let kind = st.st_mode & libc::S_IFMT;
    // `st_mode` is a u32 on Linux, a u16 on macOS.
    #[allow(clippy::useless_conversion)]
    Ok(Some(Entry {
        is_dir: kind == libc::S_IFDIR,
        is_file: kind == libc::S_IFREG,
        mode: u32::from(st.st_mode) & 0o7777,
    }))
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_and_creates_without_following_symlinks() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("dirfd"));
        std::fs::create_dir_all(dir.join("target")).unwrap();
        std::os::unix::fs::symlink(dir.join("target"), dir.join("link")).unwrap();
        let root = open_dir(&dir).unwrap();
        assert!(
            open_dir(&dir.join("link")).is_err(),
            "a symlink was followed"
        );
        assert!(make_dir_at(&root, OsStr::new("link")).is_err());
        let made = make_dir_at(&root, OsStr::new("new")).unwrap();
        // Twice is fine: the second finds the first's directory.
        make_dir_at(&root, OsStr::new("new")).unwrap();
        assert!(dir.join("new").is_dir());
        drop(made);
        std::fs::write(dir.join("f"), b"x").unwrap();
        let f = entry_at(&root, OsStr::new("f")).unwrap().unwrap();
        assert!(f.is_file && !f.is_dir, "{f:?}");
        let l = entry_at(&root, OsStr::new("link")).unwrap().unwrap();
        assert!(
            !l.is_file && !l.is_dir,
            "the link itself, not its target: {l:?}"
        );
        assert_eq!(entry_at(&root, OsStr::new("none")).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
