//! Drives the real, pinned `codex app-server` over stdio JSON-RPC.
//!
//! [`codex_binary`] installs the pinned CLI once per test process and returns the native
//! binary; [`AppServer`] spawns it in its own process group, pumps stdout and stderr on named
//! threads, and puts a timeout on every wait, so a protocol hang fails the test instead of
//! wedging CI. Dropping an `AppServer` kills the whole group and reaps the child.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use baa::common::codex_home::write_codex_home;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{json, Value};

use super::mock_model::MockModel;

/// Default bound on any single wait for a message from the app-server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Only the tail of stderr is kept: enough to explain a failure, bounded for chatty runs.
const STDERR_TAIL: usize = 64 * 1024;

/// Absolute path of the native codex binary, installing it (once per test process) with
/// `scripts/install-codex.sh`. Panics with the script's output if that fails.
#[track_caller]
pub fn codex_binary() -> PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let binary = BINARY
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = Command::new("bash")
                .arg(root.join("scripts/install-codex.sh"))
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run scripts/install-codex.sh: {e}"))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                return Err(format!(
                    "scripts/install-codex.sh failed ({}):\nstdout: {stdout}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let path = PathBuf::from(stdout.trim());
            if !path.is_file() {
                return Err(format!(
                    "install-codex.sh printed {path:?}, which is not a file"
                ));
            }
            Ok(path)
        })
        .clone();
    match binary {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// One running `codex app-server` child speaking JSONL over stdio.
pub struct AppServer {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
    pumps: Vec<JoinHandle<()>>,
    next_id: u64,
    /// Messages read while waiting for something else; later waits see them first.
    backlog: Vec<Value>,
}

impl AppServer {
    /// Spawns `codex app-server` with `CODEX_HOME=codex_home` in `cwd`.
    #[track_caller]
    pub fn spawn(codex_home: &Path, cwd: &Path) -> AppServer {
        let mut cmd = Command::new(codex_binary());
        cmd.arg("app-server")
            .current_dir(cwd)
            .env("CODEX_HOME", codex_home)
            // Credentials or endpoints from the developer's shell must never reach the mock run.
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("CODEX_API_KEY")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: Drop kills codex and every command it started in one go.
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("spawn {}: {e}", codex_binary().display()),
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");

        let (tx, rx) = crossbeam_channel::unbounded();
        let stdout_pump = thread::Builder::new()
            .name("codex-stdout".into())
            .spawn(move || {
                // No line-length cap: the app-server sends multi-MB lines on long threads.
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let msg = serde_json::from_str::<Value>(&line)
                        .unwrap_or_else(|_| json!({"unparsed": line}));
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn stdout pump");

        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_sink = Arc::clone(&stderr);
        let stderr_pump = thread::Builder::new()
            .name("codex-stderr".into())
            .spawn(move || {
                let mut pipe = stderr_pipe;
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = stderr_sink.lock().unwrap_or_else(|e| e.into_inner());
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > STDERR_TAIL {
                        let mut cut = s.len() - STDERR_TAIL;
                        while !s.is_char_boundary(cut) {
                            cut += 1;
                        }
                        s.drain(..cut);
                    }
                }
            })
            .expect("spawn stderr pump");

        AppServer {
            child,
            stdin,
            rx,
            stderr,
            pumps: vec![stdout_pump, stderr_pump],
            next_id: 1,
            backlog: Vec::new(),
        }
    }

    /// The last part of the child's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes one JSON message as a line.
    #[track_caller]
    pub fn send(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        let mut line = msg.to_string();
        line.push('\n');
        if let Err(e) = stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
        {
            panic!("write to app-server: {e}\nstderr:\n{}", self.stderr_tail())
        }
    }

    /// Sends a request and returns its id without waiting.
    #[track_caller]
    pub fn send_request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"id": id, "method": method, "params": params}));
        id
    }

    /// Sends a request and waits for its response: `Ok(result)` or `Err(error object)`.
    /// Notifications that arrive meanwhile stay in the backlog for later waits.
    #[track_caller]
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.send_request(method, params);
        let resp = self.take_where(
            READ_TIMEOUT,
            &format!("response to {method} (id {id})"),
            |m| m.get("method").is_none() && m.get("id") == Some(&json!(id)),
        );
        match resp.get("error") {
            Some(err) => Err(err.clone()),
            None => Ok(resp.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Like [`call`](Self::call) but panics on an error response.
    #[track_caller]
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params.clone()) {
            Ok(v) => v,
            Err(e) => panic!("{method} {params} failed: {e}"),
        }
    }

    #[track_caller]
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"method": method, "params": params}));
    }

    /// Answers a server→client request.
    #[track_caller]
    pub fn respond(&mut self, id: &Value, result: Value) {
        self.send(&json!({"id": id, "result": result}));
    }

    /// `initialize` + `initialized`; returns the initialize result.
    #[track_caller]
    pub fn initialize(&mut self) -> Value {
        let result = self.request(
            "initialize",
            json!({
                "clientInfo": {"name": "baa-it", "title": "baa integration tests", "version": "0.1.0"},
                "capabilities": {"experimentalApi": false},
            }),
        );
        self.notify("initialized", json!({}));
        result
    }

    /// Next message in arrival order (backlog first), or `None` after `timeout`.
    #[track_caller]
    pub fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        if !self.backlog.is_empty() {
            return Some(self.backlog.remove(0));
        }
        match self.rx.recv_timeout(timeout) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!(
                "app-server closed stdout (exit: {:?})\nstderr:\n{}",
                self.child.try_wait(),
                self.stderr_tail()
            ),
        }
    }

    /// Like [`next_message`](Self::next_message), but `None` also when stdout has closed;
    /// for draining what a child printed before it exited.
    pub fn next_message_or_eof(&mut self, timeout: Duration) -> Option<Value> {
        if !self.backlog.is_empty() {
            return Some(self.backlog.remove(0));
        }
        self.rx.recv_timeout(timeout).ok()
    }

    /// Reads messages in order until one satisfies `pred`; returns every message read,
    /// the matching one last. Panics (with what was seen) after `timeout`.
    #[track_caller]
    pub fn read_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(msg) = self.next_message(left) else {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; saw {} messages:\n{}\nstderr:\n{}",
                    seen.len(),
                    summarize(&seen),
                    self.stderr_tail()
                );
            };
            let hit = pred(&msg);
            seen.push(msg);
            if hit {
                return seen;
            }
        }
    }

    /// Removes and returns the first message satisfying `pred`, leaving the others (in order)
    /// for later reads. Used for responses, which may interleave with notifications.
    #[track_caller]
    fn take_where(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if pred(&m) => return m,
                Ok(m) => self.backlog.push(m),
                Err(e) => panic!(
                    "no {what} within {timeout:?} ({e}); backlog:\n{}\nstderr:\n{}",
                    summarize(&self.backlog),
                    self.stderr_tail()
                ),
            }
        }
    }

    /// Closes stdin (the app-server exits on EOF) and waits up to `timeout` for the exit.
    pub fn close_and_wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        self.stdin.take();
        // process_group(0) made the child a group leader, so its pid is the group id. While
        // the child is unreaped, or any member of its group lives, that id cannot be reused;
        // only after close_and_wait reaped it and every grandchild exited could it name another
        // group, which killpg then at worst fails to find.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: killpg takes plain integers and only sends a signal.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pumps end at EOF, which the kill guarantees for stdout and stderr (grandchildren
        // holding the pipes died with the group).
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
    }
}

/// `method` of a message, or "" for responses.
pub fn method(msg: &Value) -> &str {
    msg.get("method").and_then(Value::as_str).unwrap_or("")
}

/// One line per message: method (or response id) and a truncated body. Keeps failure output
/// readable when a turn produced dozens of notifications.
pub fn summarize(msgs: &[Value]) -> String {
    msgs.iter()
        .map(|m| {
            let s = m.to_string();
            let short: String = s.chars().take(300).collect();
            let label = match m.get("method").and_then(Value::as_str) {
                Some(meth) if m.get("id").is_some() => format!("request {meth}"),
                Some(meth) => meth.to_string(),
                None => format!("response {}", m.get("id").unwrap_or(&Value::Null)),
            };
            format!("  {label}: {short}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A mock provider (answering by [`keywords`](super::mock_model::keywords) until a test sets
/// another script) plus a `CODEX_HOME` configured for it and a scratch working directory, all
/// removed on drop. Anything that runs Codex offline (this rig, codexd tests) starts here.
pub struct MockCodexHome {
    pub mock: MockModel,
    pub home: PathBuf,
    pub work: PathBuf,
    // Declared last so the directory outlives every process that may still be writing to it.
    _tmp: crate::support::tmp::TempDir,
}

impl MockCodexHome {
    #[track_caller]
    pub fn new(label: &str) -> MockCodexHome {
        let tmp = crate::support::tmp::TempDir::new(label);
        let mock = MockModel::start();
        let home = tmp.child("codex-home");
        if let Err(e) = write_codex_home(&home, &mock.base_url()) {
            panic!("write config.toml: {e}");
        }
        let work = tmp.child("work");
        MockCodexHome {
            mock,
            home,
            work,
            _tmp: tmp,
        }
    }

    /// Spawns `codex app-server` on this home and completes the handshake.
    #[track_caller]
    pub fn app_server(&self) -> AppServer {
        let mut app = AppServer::spawn(&self.home, &self.work);
        app.initialize();
        app
    }
}
