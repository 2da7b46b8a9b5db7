//! The app-server child: spawn, pumps, handshake, stop, and the restart policy.
//!
//! One supervisor thread owns the `Child` and is the only one that waits on it, so the
//! child is always reaped. Per generation it starts:
//! - a writer thread (in `rpc`) that owns stdin,
//! - a reader thread that pumps stdout lines (no practical length cap) into a bounded
//!   channel and copies them raw to `stdout.log`,
//! - a stderr thread that drains stderr to `stderr.log` and keeps a tail for diagnostics,
//! - a dispatcher thread that parses lines and hands them to the core.
//!
//! The child stays in codexd's process group: launchd kills the job's group when codexd
//! dies, and the app-server also exits on stdin EOF. It is stopped by pid with SIGTERM,
//! then SIGKILL after a grace period. Restarts use jittered exponential backoff (capped),
//! reset after sustained health; too many failures in a window enter `crash_loop`, where
//! codexd stays up, reports the last errors and waits a cool-down before trying again.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use serde_json::{json, Value};

use baa::common::proc::{kill_pid, pid_alive};
use baa::common::time::{now_ms, now_rfc3339, rfc3339_from_ms};

use crate::daemon::{Core, Link};
use crate::events::Level;
use crate::logfile::RotatingFile;
use crate::rpc::Rpc;
use crate::state::ChildInfo;

/// Longest stdout line accepted (app-server lines of several MB exist); a longer line is
/// a protocol error and is dropped.
const MAX_LINE: usize = 256 * 1024 * 1024;
/// Bytes of stderr kept in memory to explain a failed start.
const STDERR_TAIL: usize = 4096;
/// How often codexd looks again for a child command that does not exist (status
/// `unavailable`); cheap, and quick to notice a fresh `scripts/install-codex.sh`.
const MISSING_RECHECK: Duration = Duration::from_secs(10);
/// How long initialize may take (spawn → response was ~0.1 s on the native binary).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts the supervisor thread. It returns once the stop flag is set and the child is
/// stopped and reaped.
pub fn spawn_supervisor(core: Arc<Core>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("codexd-supervisor".into())
        .spawn(move || supervise(&core))
}

struct Running {
    child: Child,
    pid: u32,
    link: Arc<Link>,
    stderr_tail: Arc<Mutex<String>>,
    dispatcher_done: Receiver<()>,
}

fn supervise(core: &Arc<Core>) {
    let cfg = &core.cfg;
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut attempt: u32 = 0;
    let mut generation: u64 = 0;
    loop {
        if core.stop.is_set() {
            break;
        }
        generation += 1;
        if core.state().child.status != "unavailable" {
            set_status(core, "starting", None);
        }
        let started = Instant::now();
        let (desc, tail, status, uptime) = match start(core, generation) {
            Ok(mut running) => {
                let exit = wait_exit(core, &mut running);
                match exit {
                    None => {
                        // Stop requested while the child was healthy.
                        stop_child(core, running);
                        break;
                    }
                    Some(status) => {
                        // Let the dispatcher finish the child's last lines first.
                        let _ = running.dispatcher_done.recv_timeout(Duration::from_secs(2));
                        let tail = running
                            .stderr_tail
                            .lock()
                            .map(|t| t.clone())
                            .unwrap_or_default();
                        (describe_exit(status), tail, Some(status), started.elapsed())
                    }
                }
            }
            Err(StartError::Missing(why)) => {
                // Not a crash: there is nothing to run. Say so once, look again later.
                generation -= 1;
                mark_unavailable(core, &why);
                if core.stop.sleep(MISSING_RECHECK) {
                    break;
                }
                continue;
            }
            Err(StartError::Failed(desc, tail)) => (desc, tail, None, started.elapsed()),
        };
        if uptime >= Duration::from_millis(cfg.restart_reset_ms) {
            attempt = 0;
            failures.clear();
        }
        record_exit(core, generation, &desc, &tail, status);
        if core.stop.is_set() {
            break;
        }
        let now = Instant::now();
        failures.push_back(now);
        let window = Duration::from_millis(cfg.crash_loop_window_ms);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            failures.pop_front();
        }
        if failures.len() >= cfg.crash_loop_max as usize {
            let cooldown = Duration::from_millis(cfg.crash_loop_cooldown_ms);
            let retry_at = rfc3339_from_ms(now_ms() + cfg.crash_loop_cooldown_ms);
            set_status(core, "crash_loop", Some(retry_at.clone()));
            core.emit(
                Level::Error,
                "child.crash_loop",
                format!(
                    "codex app-server failed {} times within {} ms; not restarting until {retry_at}",
                    failures.len(),
                    cfg.crash_loop_window_ms
                ),
                json!({"failures": failures.len(), "lastError": desc, "stderrTail": tail, "retryAt": retry_at}),
            );
            if core.stop.sleep(cooldown) {
                break;
            }
            failures.clear();
            attempt = 0;
            continue;
        }
        let delay = backoff(cfg.restart_base_ms, cfg.restart_max_ms, attempt);
        attempt = attempt.saturating_add(1);
        let at = rfc3339_from_ms(now_ms() + delay.as_millis() as u64);
        set_status(core, "restarting", Some(at.clone()));
        core.emit(
            Level::Warn,
            "child.restarting",
            format!("restarting codex app-server in {} ms", delay.as_millis()),
            json!({"delayMs": delay.as_millis() as u64, "attempt": attempt, "at": at}),
        );
        if core.stop.sleep(delay) {
            break;
        }
    }
    set_status(core, "stopped", None);
}

/// Equal-jitter exponential backoff: half the exponential step plus up to the other half.
pub fn backoff(base_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let exp = base_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms)
        .max(1);
    let jitter = jitter_u64() % (exp / 2 + 1);
    Duration::from_millis(exp / 2 + jitter)
}

fn jitter_u64() -> u64 {
    let id = baa::common::ids::new_id("j");
    u64::from_str_radix(id.trim_start_matches("j_"), 16).unwrap_or(0)
}

fn set_status(core: &Core, status: &str, next_restart_at: Option<String>) {
    {
        let mut st = core.state();
        if st.child.strategy == "external" {
            return;
        }
        st.child.status = status.to_string();
        st.child.next_restart_at = next_restart_at;
    }
    core.mark_daemon_dirty();
}

fn record_exit(core: &Core, generation: u64, desc: &str, tail: &str, status: Option<ExitStatus>) {
    let exit = json!({
        "at": now_rfc3339(),
        "generation": generation,
        "reason": desc,
        "code": status.and_then(|s| s.code()),
        "signal": status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        "stderrTail": last_lines(tail, 10),
    });
    {
        let mut st = core.state();
        st.child.restarts += 1;
        st.child.recent_exits.push_back(exit.clone());
        while st.child.recent_exits.len() > 10 {
            st.child.recent_exits.pop_front();
        }
    }
    core.on_child_exit(generation, desc);
    core.emit(
        Level::Error,
        "child.exited",
        format!("codex app-server (generation {generation}) {desc}"),
        exit,
    );
    core.flush();
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "exited".to_string(),
    }
}

/// Builds the child's command: configured command, args and cwd, with secrets scrubbed
/// from its environment (it needs CODEX_HOME, HOME, PATH — never our tokens).
fn command(core: &Core) -> Command {
    let cfg = &core.cfg;
    let mut cmd = Command::new(&cfg.server_command);
    cmd.args(&cfg.server_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &cfg.server_cwd {
        cmd.current_dir(cwd);
    }
    if cfg.demo {
        // Demo mode: the built-in model's config; otherwise the user's CODEX_HOME passes.
        cmd.env("CODEX_HOME", cfg.demo_codex_home());
    }
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy().to_ascii_uppercase();
        if scrub_env(&name) {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// True for variables the child must not inherit.
pub fn scrub_env(upper_name: &str) -> bool {
    upper_name.contains("TOKEN")
        || upper_name.contains("SECRET")
        || upper_name.contains("PASSWORD")
        || (upper_name.starts_with("BAA_") && !upper_name.starts_with("BAA_CODEXD_STUB_"))
}

/// Why a start attempt produced no running child.
enum StartError {
    /// The configured command does not exist or is not executable: status `unavailable`.
    Missing(String),
    /// It ran but failed (exit before/while answering initialize, handshake timeout…):
    /// counts towards the restart backoff and the crash loop. `(description, stderr tail)`.
    Failed(String, String),
}

/// The `lastError` text for a command that cannot be run, with how to fix it.
pub fn missing_command_message(command: &str, err: &std::io::Error) -> String {
    format!(
        "the codex command {command:?} was not found or is not executable ({err}). \
         Install the pinned Codex CLI with scripts/install-codex.sh and set \
         BAA_CODEXD_SERVER_COMMAND (or --server-command) to the native binary it prints; \
         codexd looks again every {} s",
        MISSING_RECHECK.as_secs()
    )
}

/// Status `unavailable` with `why` as `lastError`; the event is emitted only when the
/// status or the reason changes, so a long wait for an install does not flood the log.
fn mark_unavailable(core: &Core, why: &str) {
    let changed = {
        let mut st = core.state();
        let changed =
            st.child.status != "unavailable" || st.child.last_error.as_deref() != Some(why);
        st.child.status = "unavailable".into();
        st.child.last_error = Some(why.to_string());
        st.child.pid = None;
        st.child.next_restart_at = Some(rfc3339_from_ms(
            now_ms() + MISSING_RECHECK.as_millis() as u64,
        ));
        changed
    };
    core.mark_daemon_dirty();
    if changed {
        log::error!("codex app-server unavailable: {why}");
        core.emit(
            Level::Error,
            "child.unavailable",
            format!("codex app-server unavailable: {why}"),
            json!({"command": core.cfg.server_command, "reason": why}),
        );
        core.flush();
    }
}

fn start(core: &Arc<Core>, generation: u64) -> Result<Running, StartError> {
    let cfg = &core.cfg;
    let mut child = command(core).spawn().map_err(|e| {
        let cwd_ok = cfg.server_cwd.as_ref().is_none_or(|d| d.is_dir());
        match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied if cwd_ok => {
                StartError::Missing(missing_command_message(&cfg.server_command, &e))
            }
            _ => StartError::Failed(
                format!(
                    "could not be started ({} {}): {e}",
                    cfg.server_command,
                    cfg.server_args.join(" ")
                ),
                String::new(),
            ),
        }
    })?;
    let pid = child.id();
    let start_time = process_start_time(pid);
    core.emit(
        Level::Info,
        "child.spawned",
        format!("spawned codex app-server pid {pid} (generation {generation})"),
        json!({"pid": pid, "generation": generation, "command": cfg.server_command, "args": cfg.server_args}),
    );
    // Record the pid at once: if codexd dies now, the next start can find a stale child.
    {
        let mut st = core.state();
        st.child.pid = Some(pid);
        st.child.start_time = start_time.clone();
    }
    core.mark_daemon_dirty();
    core.flush();

    let stdin = child.stdin.take().expect("stdin piped");
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    let fail = |child: &mut Child, why: String, tail: &Arc<Mutex<String>>| -> StartError {
        let _ = kill_pid(pid, libc::SIGKILL);
        let _ = child.wait();
        thread::sleep(Duration::from_millis(50));
        StartError::Failed(why, tail.lock().map(|t| t.clone()).unwrap_or_default())
    };

    let stderr_tail = Arc::new(Mutex::new(String::new()));
    let tail = stderr_tail.clone();
    let err_log = RotatingFile::open(cfg.logs_dir.join("stderr.log"), cfg.log_max_bytes);
    let spawned = thread::Builder::new()
        .name(format!("codexd-stderr-{generation}"))
        .spawn(move || stderr_pump(stderr, err_log, tail));
    if let Err(e) = spawned {
        return Err(fail(&mut child, format!("thread: {e}"), &stderr_tail));
    }

    let (rpc, _writer) = match Rpc::start(stdin, &format!("codexd-stdin-{generation}")) {
        Ok(r) => r,
        Err(e) => return Err(fail(&mut child, format!("thread: {e}"), &stderr_tail)),
    };
    let link = Arc::new(Link {
        generation,
        pid,
        rpc,
    });
    let (line_tx, line_rx) = bounded::<Vec<u8>>(65_536);
    let out_log = RotatingFile::open(cfg.logs_dir.join("stdout.log"), cfg.log_max_bytes);
    let spawned = thread::Builder::new()
        .name(format!("codexd-stdout-{generation}"))
        .spawn(move || stdout_pump(stdout, out_log, line_tx));
    if let Err(e) = spawned {
        return Err(fail(&mut child, format!("thread: {e}"), &stderr_tail));
    }
    let (done_tx, done_rx) = bounded::<()>(1);
    let (c, l) = (core.clone(), link.clone());
    let spawned = thread::Builder::new()
        .name(format!("codexd-dispatch-{generation}"))
        .spawn(move || {
            dispatch_loop(&c, &l, line_rx);
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        return Err(fail(&mut child, format!("thread: {e}"), &stderr_tail));
    }

    let init = link.rpc.request(
        "initialize",
        json!({
            "clientInfo": {"name": "codexd", "title": "baa-codexd", "version": cfg.version},
            "capabilities": {"experimentalApi": false},
        }),
        HANDSHAKE_TIMEOUT.min(Duration::from_millis(cfg.request_timeout_ms)),
    );
    let init = match init {
        Ok(v) => v,
        Err(e) => {
            link.rpc.close();
            let mut why = format!("failed the initialize handshake: {e}");
            if let Ok(Some(status)) = child.try_wait() {
                why = format!("{} before answering initialize", describe_exit(status));
            }
            return Err(fail(&mut child, why, &stderr_tail));
        }
    };
    if let Err(e) = link.rpc.notify("initialized", None) {
        link.rpc.close();
        return Err(fail(
            &mut child,
            format!("could not send initialized: {e}"),
            &stderr_tail,
        ));
    }
    let user_agent = init
        .get("userAgent")
        .and_then(Value::as_str)
        .map(str::to_string);
    core.on_child_ready(link.clone(), start_time, user_agent);
    Ok(Running {
        child,
        pid,
        link,
        stderr_tail,
        dispatcher_done: done_rx,
    })
}

/// Waits for the child to exit (Some) or for the stop flag (None).
fn wait_exit(core: &Core, running: &mut Running) -> Option<ExitStatus> {
    loop {
        match running.child.try_wait() {
            Ok(Some(status)) => {
                running.link.rpc.close();
                return Some(status);
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("waiting on the app-server failed: {e}");
            }
        }
        if core.stop.is_set() {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM (the app-server exits at once on it and on stdin EOF), SIGKILL after the grace
/// period, and always reap.
fn stop_child(core: &Core, mut running: Running) {
    let pid = running.pid;
    let grace = Duration::from_millis(core.cfg.stop_grace_ms);
    running.link.rpc.close();
    let _ = kill_pid(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    let status = loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            log::warn!("app-server pid {pid} ignored SIGTERM for {grace:?}; sending SIGKILL");
            let _ = kill_pid(pid, libc::SIGKILL);
            break running.child.wait().ok();
        }
        thread::sleep(Duration::from_millis(10));
    };
    let desc = status
        .map(describe_exit)
        .unwrap_or_else(|| "stopped".into());
    core.on_child_exit(running.link.generation, "codexd is stopping");
    {
        let mut st = core.state();
        st.child.pid = None;
        st.child.start_time = None;
    }
    core.emit(
        Level::Info,
        "child.stopped",
        format!("codex app-server pid {pid} stopped ({desc})"),
        json!({"pid": pid, "generation": running.link.generation, "exit": desc}),
    );
}

fn stdout_pump(stdout: impl Read, mut log: RotatingFile, tx: crossbeam_channel::Sender<Vec<u8>>) {
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                log::warn!("reading the app-server stdout: {e}");
                return;
            }
        }
        log.write(&line);
        if !line.ends_with(b"\n") {
            log.write(b"\n");
        }
        if line.len() > MAX_LINE {
            log::error!("app-server wrote a {} byte line; dropped", line.len());
            continue;
        }
        if tx.send(std::mem::take(&mut line)).is_err() {
            return;
        }
    }
}

/// Reads one line; a line longer than MAX_LINE is consumed but truncated so memory stays
/// bounded (the caller drops it).
fn read_line_capped(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let (done, used) = {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(total);
            }
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if out.len() <= MAX_LINE {
                        out.extend_from_slice(&buf[..=i]);
                    }
                    (true, i + 1)
                }
                None => {
                    if out.len() <= MAX_LINE {
                        out.extend_from_slice(buf);
                    }
                    (false, buf.len())
                }
            }
        };
        r.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

fn stderr_pump(mut stderr: impl Read, mut log: RotatingFile, tail: Arc<Mutex<String>>) {
    let mut buf = [0u8; 8192];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                log.write(&buf[..n]);
                if let Ok(mut t) = tail.lock() {
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if t.len() > STDERR_TAIL {
                        let mut cut = t.len() - STDERR_TAIL;
                        while !t.is_char_boundary(cut) {
                            cut += 1;
                        }
                        t.drain(..cut);
                    }
                }
            }
        }
    }
}

fn dispatch_loop(core: &Core, link: &Link, rx: Receiver<Vec<u8>>) {
    let mut garbage = 0u64;
    loop {
        let line = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed: no response can arrive any more.
                link.rpc.close();
                break;
            }
        };
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(v @ Value::Object(_)) => core.handle_message(link, &v),
            _ => {
                garbage += 1;
                // Rate-limited: a child spewing garbage must not flood our log.
                if garbage <= 5 || garbage.is_power_of_two() {
                    log::warn!(
                        "app-server wrote a line that is not a JSON object ({} bytes; {garbage} so far); ignored",
                        text.len()
                    );
                }
            }
        }
    }
}

/// The OS start time of `pid`: `/proc/<pid>/stat` field 22 on Linux, `ps -o lstart=`
/// elsewhere. With the pid it identifies a process across pid reuse.
pub fn process_start_time(pid: u32) -> Option<String> {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let after = stat.rsplit_once(')')?.1;
        return after
            .split_whitespace()
            .nth(19)
            .map(|s| format!("proc:{s}"));
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

/// Kills the child a previous codexd recorded, if that exact process (pid and start time)
/// is still alive. Never by name.
pub fn kill_stale(core: &Core, prev: &ChildInfo) {
    let (Some(pid), Some(start)) = (prev.pid, prev.start_time.as_deref()) else {
        return;
    };
    if pid == std::process::id() || !pid_alive(pid) {
        return;
    }
    if process_start_time(pid).as_deref() != Some(start) {
        log::info!("recorded child pid {pid} is now another process; leaving it alone");
        return;
    }
    log::warn!("killing stale app-server pid {pid} left by a previous codexd");
    let _ = kill_pid(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_millis(core.cfg.stop_grace_ms);
    while pid_alive(pid) && !is_zombie(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if pid_alive(pid) && !is_zombie(pid) {
        let _ = kill_pid(pid, libc::SIGKILL);
    }
    core.emit(
        Level::Warn,
        "child.stale_killed",
        format!("killed stale app-server pid {pid} left by a previous codexd"),
        json!({"pid": pid, "startTime": start}),
    );
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, a)| a.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        for attempt in 0..40 {
            let d = backoff(500, 30_000, attempt).as_millis() as u64;
            let exp = (500u64 << attempt.min(20)).min(30_000);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d} vs {exp}");
        }
    }

    #[test]
    fn scrubs_secrets_but_not_codex_needs() {
        for bad in [
            "BAA_SHARED_TOKEN",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "BAA_CODEXD_LOCAL_API_BASE",
        ] {
            assert!(scrub_env(bad), "{bad}");
        }
        for ok in [
            "CODEX_HOME",
            "HOME",
            "PATH",
            "RUST_LOG",
            "OPENAI_API_KEY",
            "BAA_CODEXD_STUB_MODE",
        ] {
            assert!(!scrub_env(ok), "{ok}");
        }
    }

    #[test]
    fn own_start_time_is_stable() {
        let a = process_start_time(std::process::id());
        assert!(a.is_some());
        assert_eq!(a, process_start_time(std::process::id()));
    }

    #[test]
    fn long_lines_are_read_whole() {
        let big = format!("{{\"x\":\"{}\"}}\nnext\n", "a".repeat(5_000_000));
        let mut r = BufReader::new(big.as_bytes());
        let mut line = Vec::new();
        read_line_capped(&mut r, &mut line).unwrap();
        assert_eq!(line.len(), 5_000_009);
        line.clear();
        read_line_capped(&mut r, &mut line).unwrap();
        assert_eq!(line, b"next\n");
    }
}
