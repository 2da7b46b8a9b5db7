//! One app-server process: the command it runs (configured command, args and cwd, secrets
//! scrubbed from its environment, umask 077), spawning it, and stopping it.
//!
//! In stdio mode the child stays in codexd's process group: launchd kills the job's group
//! when codexd dies, and the app-server also exits on stdin EOF. In unix mode it is
//! started with `--listen unix://<path>` in a session of its own (setsid), its stdin on
//! /dev/null and its output appended to `stderr.log` directly (no pipe to a codexd that
//! may be gone), so it outlives codexd. Either way it is stopped by pid with SIGTERM, then
//! SIGKILL after a grace period, and a child this codexd spawned is always reaped by the
//! supervisor that owns it.

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use baa::common::proc::{kill_pid, set_child_umask, set_new_session};

use super::Settings;

/// How often codexd looks again for a child command that does not exist (status
/// `unavailable`); cheap, and quick to notice a fresh `scripts/install-codex.sh`.
pub const MISSING_RECHECK: Duration = Duration::from_secs(10);

/// The child's umask: the state and logs codex writes hold prompts and answers, so
/// nothing it creates is readable by group or others.
const CHILD_UMASK: u32 = 0o077;

/// Why a start attempt produced no running child.
pub enum StartError {
    /// The configured command does not exist or is not executable: status `unavailable`.
    Missing(String),
    /// It ran but failed (exit before/while answering initialize, handshake timeout…):
    /// counts towards the restart backoff and the crash loop. `(description, stderr tail)`.
    Failed(String, String),
    /// Unix mode: the socket transport cannot start at all (the child exited before its
    /// socket answered, e.g. it refuses `--listen`, or the socket never answered); codexd
    /// falls back to stdio. `(description, stderr tail)`.
    Transport(String, String),
}

/// Spawns the child with piped stdin, stdout and stderr (stdio mode).
pub fn spawn(s: &Settings) -> Result<Child, StartError> {
    let mut cmd = command(s);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    start(s, cmd)
}

/// Spawns the child listening on `socket` (unix mode): `--listen unix://<socket>`, a new
/// session, stdin on /dev/null, stdout and stderr appended to `log`.
pub fn spawn_listening(s: &Settings, socket: &Path, log: &File) -> Result<Child, StartError> {
    let out = log.try_clone().map_err(|e| {
        StartError::Failed(format!("cannot share its log file: {e}"), String::new())
    })?;
    let err = log.try_clone().map_err(|e| {
        StartError::Failed(format!("cannot share its log file: {e}"), String::new())
    })?;
    let mut cmd = command(s);
    cmd.arg("--listen")
        .arg(format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    set_new_session(&mut cmd);
    start(s, cmd)
}

fn start(s: &Settings, mut cmd: Command) -> Result<Child, StartError> {
    cmd.spawn().map_err(|e| {
        let cwd_ok = s.cwd.as_ref().is_none_or(|d| d.is_dir());
        match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied if cwd_ok => {
                StartError::Missing(missing_command_message(&s.command, &e))
            }
            _ => StartError::Failed(
                format!(
                    "could not be started ({} {}): {e}",
                    s.command,
                    s.args.join(" ")
                ),
                String::new(),
            ),
        }
    })
}

/// The child's command: configured command, args and cwd, with secrets scrubbed from its
/// environment (it needs CODEX_HOME, HOME, PATH — never our tokens) except the variables
/// the operator named in `BAA_CODEXD_CHILD_ENV` (an MCP server's bearer token variable).
fn command(s: &Settings) -> Command {
    let mut cmd = Command::new(&s.command);
    cmd.args(&s.args);
    if let Some(cwd) = &s.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(home) = &s.codex_home {
        // Demo mode: the built-in model's config; otherwise the user's CODEX_HOME passes.
        cmd.env("CODEX_HOME", home);
    }
    for k in scrubbed(std::env::vars_os().map(|(k, _)| k), &s.pass_env) {
        cmd.env_remove(k);
    }
    set_child_umask(&mut cmd, CHILD_UMASK);
    cmd
}

/// The names among `names` (codexd's environment) the child must not inherit: the
/// secrets and `BAA_*` ones, but never one named in `pass` (exact, case-sensitive, as the
/// child will look it up).
fn scrubbed(names: impl Iterator<Item = OsString>, pass: &[String]) -> Vec<OsString> {
    names
        .filter(|k| !pass.iter().any(|p| k == p.as_str()))
        .filter(|k| scrub_env(&k.to_string_lossy().to_ascii_uppercase()))
        .collect()
}

/// Logs once per name in `pass` that codexd's own environment lacks: the child will not
/// have it either (an MCP server whose token variable is missing fails its start-up).
pub fn warn_missing(pass: &[String]) {
    for name in pass.iter().filter(|n| std::env::var_os(n).is_none()) {
        log::warn!(
            "BAA_CODEXD_CHILD_ENV names {name}, which is not set in codexd's environment; the app-server will not have it"
        );
    }
}

/// True for variables the child must not inherit.
pub fn scrub_env(upper_name: &str) -> bool {
    upper_name.contains("TOKEN")
        || upper_name.contains("SECRET")
        || upper_name.contains("PASSWORD")
        || (upper_name.starts_with("BAA_") && !upper_name.starts_with("BAA_CODEXD_STUB_"))
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

pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "exited".to_string(),
    }
}

/// SIGTERM (the app-server exits at once on it and on stdin EOF), SIGKILL after `grace`,
/// and always reap. None only if waiting on it failed.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    let _ = kill_pid(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            log::warn!(
                "app-server pid {pid} ignored SIGTERM for {} ms; sending SIGKILL",
                grace.as_millis()
            );
            let _ = kill_pid(pid, libc::SIGKILL);
            return child.wait().ok();
        }
        // Nothing to block on that also honours the deadline: look every 10 ms.
        thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL and reap (a start that failed half-way). `Child::kill` knows whether the child
/// was already reaped, so this never signals a pid that may have been reused.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_named_variables_past_the_scrub() {
        let env = [
            "PATH",
            "BAA_MCP_TOKEN",
            "GITHUB_TOKEN",
            "BAA_SHARED_TOKEN",
            "baa_mcp_token",
        ]
        .map(OsString::from);
        let pass = ["BAA_MCP_TOKEN".to_string(), "HOME".to_string()];
        assert_eq!(
            scrubbed(env.clone().into_iter(), &pass),
            ["GITHUB_TOKEN", "BAA_SHARED_TOKEN", "baa_mcp_token"].map(OsString::from),
            "only the exact names listed pass"
        );
        assert_eq!(
            scrubbed(env.into_iter(), &[]),
            [
                "BAA_MCP_TOKEN",
                "GITHUB_TOKEN",
                "BAA_SHARED_TOKEN",
                "baa_mcp_token"
            ]
            .map(OsString::from)
        );
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
}
