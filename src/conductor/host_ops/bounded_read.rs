//! Reading a file a caller named without trusting what it says about itself.
//!
//! The reported size is not a bound: `/proc` files report 0 and `/proc/<pid>/pagemap`
//! streams gigabytes, so reading stops as soon as more than `cap` bytes came. A read may block for ever:
//! `/proc/kmsg` waits for the next kernel message, a FIFO for a writer. So only regular
//! files are opened (devices, FIFOs and sockets are refused from their `stat`), the open
//! is `O_NONBLOCK` (a FIFO swapped in after the `stat` cannot block it, and files that
//! honour the flag answer `EAGAIN` instead of sleeping), and the whole read runs under a
//! deadline with `poll` between attempts, so no request thread is held past it and a
//! SIGTERM never waits on one.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a bounded read gave up. Each variant names the exact condition.
#[derive(Debug)]
pub enum ReadError {
    /// The path (or a symlink target) does not exist.
    NotFound,
    /// The daemon's user may not open it.
    PermissionDenied,
    /// A directory: there is nothing to read.
    Directory,
    /// A character or block device, FIFO or socket: named by the `&str`.
    Special(&'static str),
    /// More than the cap (by the reported size, or by actually reading cap + 1 bytes).
    TooLarge,
    /// No end of file within the deadline.
    TimedOut,
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => ReadError::NotFound,
            io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
            _ => ReadError::Io(e),
        }
    }
}

/// Longest `poll` between two reads: a stream that trickles still meets the deadline.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Opens the regular file at `path` without blocking and without reading it, so the caller
/// can check what was actually opened (`Protected::check_opened`) before [`read_opened`].
/// Returns the file and its metadata (of the file opened, not of the path).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), ReadError> {
    let before = fs::metadata(path)?;
    check_type(&before)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    check_type(&meta)?;
    if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
        return Err(ReadError::Io(io::Error::other(
            "the file was replaced while it was being opened; retry",
        )));
    }
    Ok((file, meta))
}

/// Reads a file from [`open_regular`]: at most `cap` bytes, until `deadline`.
pub fn read_opened(
    file: File,
    meta: &Metadata,
    cap: u64,
    deadline: Instant,
) -> Result<Vec<u8>, ReadError> {
    if meta.len() > cap {
        return Err(ReadError::TooLarge);
    }
    read_capped(file, cap, deadline)
}

fn check_type(meta: &Metadata) -> Result<(), ReadError> {
    let t = meta.file_type();
    if t.is_file() {
        Ok(())
    } else if t.is_dir() {
        Err(ReadError::Directory)
    } else if t.is_char_device() {
        Err(ReadError::Special("a character device"))
    } else if t.is_block_device() {
        Err(ReadError::Special("a block device"))
    } else if t.is_fifo() {
        Err(ReadError::Special("a FIFO"))
    } else if t.is_socket() {
        Err(ReadError::Special("a socket"))
    } else {
        Err(ReadError::Special("not a regular file"))
    }
}

/// Reads until end of file, more than `cap` bytes (at most one buffer past it is ever
/// read, nothing past it kept), or `deadline`, whichever comes first.
/// `file` should be non-blocking; a blocking one is still bounded by its own reads.
pub fn read_capped(mut file: File, cap: u64, deadline: Instant) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Always whole buffers: some files refuse odd sizes (`pagemap` reads 8-byte
        // entries; a 1-byte read is EINVAL). The cap still bounds what is kept.
        match file.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if (out.len() + n) as u64 > cap {
                    return Err(ReadError::TooLarge);
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ReadError::TimedOut);
                }
                wait_readable(&file, left.min(POLL_SLICE))?;
            }
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(ReadError::TimedOut);
        }
    }
}

fn wait_readable(file: &File, wait: Duration) -> io::Result<()> {
    let mut fds = [libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one pollfd we own, length 1.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::FromRawFd;

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both fds are fresh and owned by nobody else.
        let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        (r, w)
    }

    #[test]
    fn a_stream_that_never_ends_times_out_instead_of_hanging() {
        let (r, _w) = pipe();
        let started = Instant::now();
        let e = read_capped(r, 1024, Instant::now() + Duration::from_millis(300));
        assert!(matches!(e, Err(ReadError::TimedOut)), "{e:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn reads_at_most_cap_plus_one_bytes() {
        // /dev/zero never ends: the cap, not the size, stops the read.
        let f = File::open("/dev/zero").unwrap();
        let e = read_capped(f, 1000, Instant::now() + Duration::from_secs(5));
        assert!(matches!(e, Err(ReadError::TooLarge)), "{e:?}");
        let (r, mut w) = pipe();
        std::io::Write::write_all(&mut w, b"0123456789").unwrap();
        drop(w);
        let got = read_capped(r, 10, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(got, b"0123456789");
    }

    #[test]
    fn special_files_are_refused_before_opening() {
        for (path, what) in [
            ("/dev/zero", "a character device"),
            ("/dev/null", "a character device"),
        ] {
            let e = open_regular(Path::new(path));
            assert!(
                matches!(e, Err(ReadError::Special(w)) if w == what),
                "{path}: {e:?}"
            );
        }
        let e = open_regular(Path::new("/"));
        assert!(matches!(e, Err(ReadError::Directory)), "{e:?}");
    }
}
