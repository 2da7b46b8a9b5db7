//! Thin, checked wrappers over the few process syscalls the daemons need: signals to a
//! pid or a group, a process's start time (with the pid it names one process across pid
//! reuse), killing a recorded process only if it is still that process, the umask and
//! session of a spawned child, and readiness waits on the pipes and sockets to a child.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::sync::lock;

/// True if a process with this pid exists (it may belong to another user).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence/permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sends `sig` to the process group `pgid`.
pub fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    let pgid = signal_target(pgid, "refusing to signal group 0/1")?;
    // SAFETY: plain syscall with checked arguments.
    os_result(unsafe { libc::killpg(pgid, sig) })
}

/// Sends `sig` to one process.
pub fn kill_pid(pid: u32, sig: i32) -> io::Result<()> {
    let pid = signal_target(pid, "refusing to signal pid 0/1")?;
    // SAFETY: plain syscall with checked arguments.
    os_result(unsafe { libc::kill(pid, sig) })
}

/// `id` as a pid_t, refusing 0 and 1 (the caller's group, everything, init) and anything
/// that would wrap negative (a group again).
fn signal_target(id: u32, refusal: &'static str) -> io::Result<libc::pid_t> {
    if id <= 1 || id > i32::MAX as u32 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, refusal));
    }
    Ok(id as libc::pid_t)
}

fn os_result(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft open-files limit to the hard limit (launchd's default soft limit is
/// 256, which a few hundred connections exhaust). Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // macOS refuses values above OPEN_MAX even when the hard limit is "unlimited".
    let target = lim.rlim_max.min(65_536);
    if target > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(target);
    }
    Ok(lim.rlim_cur)
}

/// What this project reads from a `/proc/<pid>/stat` line (Linux).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z` (zombie), `X` (dead), …
    pub state: char,
    pub ppid: u32,
    pub session: u32,
    /// Field 22, in clock ticks since boot.
    pub start_time: String,
}

impl Stat {
    /// `pid`'s stat line, None without `/proc` or once the process is gone.
    pub fn of(pid: u32) -> Option<Stat> {
        Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The command name may hold spaces and parentheses, so the fields are counted from
    /// the last `)`.
    pub fn parse(line: &str) -> Option<Stat> {
        let fields: Vec<&str> = line.rsplit_once(')')?.1.split_whitespace().collect();
        Some(Stat {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            session: fields.get(3)?.parse().ok()?,
            start_time: fields.get(19).map_or_else(String::new, |s| s.to_string()),
        })
    }
}

/// The OS start time of `pid`: `/proc/<pid>/stat` field 22 on Linux, `ps -o lstart=`
/// elsewhere. With the pid it identifies a process across pid reuse.
pub fn process_start_time(pid: u32) -> Option<String> {
    if std::path::Path::new("/proc/self/stat").exists() {
        return Stat::of(pid)
            .filter(|s| !s.start_time.is_empty())
            .map(|s| format!("proc:{}", s.start_time));
    }
    let out = Command::new("ps")
        .args(["-o", "lstart=", "-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then(|| format!("ps:{s}"))
}

/// True if `pid` has exited but is not reaped yet (Linux; elsewhere always false, and a
/// zombie then simply reads as alive until its parent reaps it).
pub fn is_zombie(pid: u32) -> bool {
    Stat::of(pid).is_some_and(|s| s.state == 'Z')
}

/// What [`kill_if_same`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// No such process (or it is this process).
    Gone,
    /// The pid now belongs to another process (its start time differs); left alone.
    Reused,
    /// It was the recorded process and got SIGTERM, then SIGKILL after `grace`.
    Killed,
}

/// Kills the process a previous run recorded as `pid` started at `start_time` (from
/// [`process_start_time`]), if that exact process is still alive: SIGTERM, then SIGKILL
/// after `grace`. Never by name, never a process that merely reuses the pid.
pub fn kill_if_same(pid: u32, start_time: &str, grace: Duration) -> KillOutcome {
    if pid == std::process::id() || !pid_alive(pid) {
        return KillOutcome::Gone;
    }
    if process_start_time(pid).as_deref() != Some(start_time) {
        return KillOutcome::Reused;
    }
    let _ = kill_pid(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    // Not our child, so there is nothing to wait on: look every 20 ms.
    while pid_alive(pid) && !is_zombie(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if pid_alive(pid) && !is_zombie(pid) {
        let _ = kill_pid(pid, libc::SIGKILL);
    }
    KillOutcome::Killed
}

/// Makes `cmd`'s process start with umask `mask` (e.g. 0o077: nothing it creates is
/// readable by group or others), whatever the umask of this process.
pub fn set_child_umask(cmd: &mut Command, mask: u32) {
    let mask = mask as libc::mode_t;
    // SAFETY: runs in the forked child before exec; umask(2) is async-signal-safe, takes
    // no lock and cannot fail.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
}

/// Makes `cmd`'s process the leader of a new session (setsid): it has no controlling
/// terminal and is in no process group of ours, so a signal to our group (launchd stops a
/// job by its group) does not reach it. For a child meant to outlive this process.
pub fn set_new_session(cmd: &mut Command) {
    // SAFETY: runs in the forked child before exec; setsid(2) is async-signal-safe and
    // cannot fail in a freshly forked child (it is never a group leader).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Puts `fd` in non-blocking mode (for our end of a pipe to a child: a write then never
/// waits on a child that stopped reading).
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on an fd the caller owns, with checked results.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Which readiness [`wait_ready`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Read,
    Write,
}

/// A stop signal that a thread blocked in [`wait_ready`] notices at once, without
/// waking up periodically to look: firing it closes the write end of a pipe, which makes
/// the read end readable (EOF) for every waiter, for good.
pub struct StopPipe {
    tx: Mutex<Option<OwnedFd>>,
    rx: OwnedFd,
}

impl StopPipe {
    pub fn new() -> io::Result<StopPipe> {
        let (rx, tx) = cloexec_pipe()?;
        Ok(StopPipe {
            tx: Mutex::new(Some(tx)),
            rx,
        })
    }

    /// Wakes every waiter, now and later.
    pub fn fire(&self) {
        lock(&self.tx).take();
    }

    pub fn is_fired(&self) -> bool {
        lock(&self.tx).is_none()
    }
}

impl AsRawFd for StopPipe {
    /// The read end: readable (EOF) once fired, for a caller that polls more than one fd.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.rx.as_raw_fd()
    }
}

/// A wake-up for a thread blocked in poll(2) on more than a queue: [`WakePipe::wake`]
/// makes the read end readable until the waiter [`WakePipe::drain`]s it. Unlike
/// [`StopPipe`] it rings any number of times; both ends are non-blocking, so a wake never
/// blocks (a full pipe already says "wake up").
pub struct WakePipe {
    rx: OwnedFd,
    tx: OwnedFd,
}

impl WakePipe {
    pub fn new() -> io::Result<WakePipe> {
        let (rx, tx) = cloexec_pipe()?;
        set_nonblocking(&rx)?;
        set_nonblocking(&tx)?;
        Ok(WakePipe { rx, tx })
    }

    pub fn wake(&self) {
        // SAFETY: a one-byte write from a buffer we own to a pipe we own; EAGAIN (full)
        // is fine, the waiter is woken already.
        let _ = unsafe { libc::write(self.tx.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    /// Empties the pipe (call after waking, before looking at the work).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a buffer we own from a non-blocking pipe we own.
            let n = unsafe { libc::read(self.rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
        }
    }
}

impl AsRawFd for WakePipe {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.rx.as_raw_fd()
    }
}

/// A pipe whose ends are not inherited by the children we spawn (`std::io::pipe` does the
/// same, but only from Rust 1.87).
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // Atomic where the OS can: no fork on another thread can inherit the fds in between.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: pipe2(2) fills the two-element array we own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    // SAFETY: pipe(2) fills the two-element array we own.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by pipe(2) and are owned by nobody else.
    let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    for fd in [&rx, &tx] {
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((rx, tx))
}

/// Blocks until `fd` is ready (true) or `stop` fires (false, even if `fd` is ready too).
/// Hang-up and errors on `fd` count as ready: the next read or write reports them.
pub fn wait_ready(fd: &impl AsRawFd, ready: Ready, stop: &StopPipe) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: match ready {
                Ready::Read => libc::POLLIN,
                Ready::Write => libc::POLLOUT,
            },
            revents: 0,
        },
        libc::pollfd {
            fd: stop.rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: two pollfds we own; no timeout, the stop pipe is the way out.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc > 0 {
            return Ok(fds[1].revents == 0);
        }
        let e = io::Error::last_os_error();
        if rc < 0 && e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_group_zero_refused() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(kill_group(0, 0).is_err());
        assert!(kill_pid(1, 0).is_err());
    }

    #[test]
    fn own_start_time_is_stable() {
        let a = process_start_time(std::process::id());
        assert!(a.is_some(), "no start time for our own pid");
        assert_eq!(a, process_start_time(std::process::id()));
    }

    #[test]
    fn kill_if_same_spares_a_reused_pid_and_kills_the_recorded_process() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = process_start_time(pid).expect("start time");
        let other = format!("{start}-not-this-one");
        assert_eq!(
            kill_if_same(pid, &other, Duration::from_secs(2)),
            KillOutcome::Reused
        );
        assert!(pid_alive(pid), "a reused pid was killed");
        assert_eq!(
            kill_if_same(pid, &start, Duration::from_secs(2)),
            KillOutcome::Killed
        );
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM),
            "{status:?}"
        );
    }

    #[test]
    fn child_umask_applies_to_files_it_creates() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(crate::common::ids::new_id("umask"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("made-by-child");
        let mut cmd = Command::new("touch");
        cmd.arg(&file);
        set_child_umask(&mut cmd, 0o077);
        assert!(cmd.status().unwrap().success());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn wait_ready_sees_data_and_wakes_on_stop() {
        use std::io::Write;
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"x\n").unwrap();
        let stop = StopPipe::new().unwrap();
        assert!(wait_ready(&out, Ready::Read, &stop).unwrap());
        stop.fire();
        assert!(stop.is_fired());
        assert!(!wait_ready(&out, Ready::Read, &stop).unwrap());
        drop(stdin);
        child.wait().unwrap();
    }
}
