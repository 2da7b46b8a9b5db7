//! Runs a real daemon binary and learns its address from the first stdout line,
//! `<name> listening on http://HOST:PORT`. Killed and reaped on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};

pub const CONDUCTOR: &str = env!("CARGO_BIN_EXE_baa-conductor");
pub const CODEXD: &str = env!("CARGO_BIN_EXE_baa-codexd");
pub const STATUS_API: &str = env!("CARGO_BIN_EXE_baa-status-api");

/// What a finished command printed.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub struct Daemon {
    pub child: Child,
    /// `http://HOST:PORT` as announced by the daemon.
    pub base: String,
    /// `HOST:PORT`.
    pub addr: String,
    /// Everything the daemon printed on stderr so far (its log).
    pub stderr: Arc<Mutex<String>>,
    /// Further stdout lines.
    pub stdout: Receiver<String>,
}

/// Builder over a daemon command line.
pub struct Spawn {
    cmd: Command,
    timeout: Duration,
}

impl Spawn {
    pub fn new(bin: &str) -> Self {
        let mut cmd = Command::new(bin);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env("RUST_LOG", "info");
        // Keep the caller's BAA_* environment out of the daemon under test.
        for (k, _) in std::env::vars() {
            if k.starts_with("BAA_") {
                cmd.env_remove(k);
            }
        }
        Self {
            cmd,
            timeout: Duration::from_secs(20),
        }
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cmd.current_dir(dir.into());
        self
    }

    /// Runs a command that ends by itself (not a daemon) and collects what it printed;
    /// killed and reported as a failure after 30 s.
    #[track_caller]
    pub fn output(mut self) -> Ran {
        let mut child = match self.cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("spawn {:?}: {e}", self.cmd),
        };
        let mut pipes = (child.stdout.take(), child.stderr.take());
        let read = |p: Option<Box<dyn Read + Send>>| {
            thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut p) = p {
                    let _ = p.read_to_string(&mut s);
                }
                s
            })
        };
        let out = read(pipes.0.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let err = read(pipes.1.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let status = wait_for(Duration::from_secs(30), || child.try_wait().ok().flatten());
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            child.wait().expect("reap a command that hung")
        });
        Ran {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }

    /// Starts the process and waits for its `listening on` line.
    #[track_caller]
    pub fn start(self) -> Daemon {
        match self.try_start() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts the process; Err carries the exit status and stderr if it never listened.
    pub fn try_start(mut self) -> Result<Daemon, String> {
        let mut child = self
            .cmd
            .spawn()
            .map_err(|e| format!("spawn {:?}: {e}", self.cmd))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let out = child.stdout.take().expect("stdout piped");
        let (tx, rx) = unbounded();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(idx) = line.find("listening on http://") {
                        let base = line[idx + "listening on ".len()..].trim().to_string();
                        let addr = base.trim_start_matches("http://").to_string();
                        return Ok(Daemon {
                            child,
                            base,
                            addr,
                            stderr,
                            stdout: rx,
                        });
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        thread::sleep(Duration::from_millis(100));
                        let log = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                        return Err(format!(
                            "daemon exited with {status} before listening; stderr:\n{log}"
                        ));
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        let log = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                        return Err(format!(
                            "daemon did not announce its address in time; stderr:\n{log}"
                        ));
                    }
                }
            }
        }
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    #[track_caller]
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    pub fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM, then waits up to `timeout` for exit; SIGKILL and panic if it does not.
    #[track_caller]
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A daemon that died under a failing test (a stray SIGKILL leaves no log line) shows
        // as an exit status here, not as a stall.
        let exited = self.child.try_wait();
        if let Ok(None) = exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            if let Ok(Some(status)) = exited {
                eprintln!("---- the daemon had already exited: {status} ----");
            }
            eprintln!("---- daemon log ----\n{}", self.log());
        }
    }
}

/// Polls `f` every 25 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_for_every(timeout, Duration::from_millis(25), f)
}

/// [`wait_for`] polling every `every` (a benchmark wants a tighter loop).
pub fn wait_for_every<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}
