//! Which codex codexd runs: the version in the running child's `initialize` userAgent
//! (`codexd/0.169.0 (Debian 12.0.0; x86_64) …`), and what `<command> --version` prints
//! (`codex-cli 0.169.0`) — the binary on disk, which differs from the running one after
//! an upgrade until the child restarts. Shown in `/v1/codexd/status` as `snapshot.codex`.

use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::proc::kill_group;
use baa::common::signals::StopFlag;
use baa::common::sync::lock;

use crate::config::ModelCheck;

/// How long `--version` may take (a few ms normally; a wedged binary must not hold the
/// refresh thread).
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// `--version` output read at most.
const VERSION_MAX_BYTES: u64 = 4096;

/// The codex codexd runs: the binary's command and what it and the running child said.
pub struct CodexVersion {
    command: String,
    /// Shown beside the version (`BAA_CODEXD_EXPERIMENTAL_API`, `BAA_CODEXD_MODEL_CHECK`).
    experimental_api: bool,
    model_check: ModelCheck,
    info: Mutex<CodexInfo>,
}

/// What is known about the codex binary and the running child.
#[derive(Debug, Default, Clone)]
struct CodexInfo {
    /// The running child's `initialize` userAgent.
    pub user_agent: Option<String>,
    /// Child generation `--version` last ran for (0: never).
    pub cli_generation: u64,
    /// First line of `<command> --version`.
    pub cli_version: Option<String>,
    pub cli_error: Option<String>,
}

/// `0.169.0` from a userAgent `originator/0.169.0 (os; arch) terminal (client; version)`.
pub fn version_from_user_agent(ua: &str) -> Option<String> {
    let first = ua.split_whitespace().next()?;
    let (_, v) = first.split_once('/')?;
    (!v.is_empty()).then(|| v.to_string())
}

/// The last word of `codex-cli 0.169.0`.
pub fn version_from_cli(line: &str) -> Option<String> {
    line.split_whitespace().last().map(str::to_string)
}

/// Why `<command> --version` gave no version.
#[derive(Debug)]
pub enum VersionError {
    Spawn {
        command: String,
        source: io::Error,
    },
    Timeout {
        command: String,
    },
    Wait {
        command: String,
        source: io::Error,
    },
    /// It failed, or printed nothing: its exit status and first line.
    Failed {
        command: String,
        status: ExitStatus,
        line: String,
    },
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::Spawn { command, source } => {
                write!(f, "cannot run {command} --version: {source}")
            }
            VersionError::Timeout { command } => write!(
                f,
                "{command} --version did not finish within {} s",
                VERSION_TIMEOUT.as_secs()
            ),
            VersionError::Wait { command, source } => {
                write!(f, "waiting for {command} --version: {source}")
            }
            VersionError::Failed {
                command,
                status,
                line,
            } => write!(f, "{command} --version: {status}, printed {line:?}"),
        }
    }
}

/// Runs `command --version` (stdin closed, its own process group, killed after
/// [`VERSION_TIMEOUT`] or once `stop` is set) and returns the first line it printed.
pub fn cli_version(command: &str, stop: &StopFlag) -> Result<String, VersionError> {
    let command_name = || command.to_string();
    let mut child = Command::new(command)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| VersionError::Spawn {
            command: command_name(),
            source,
        })?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline && !stop.is_set() => {
                thread::sleep(Duration::from_millis(10))
            }
            Ok(None) => {
                // Its own group (process_group(0) above): take anything it started along.
                let _ = kill_group(child.id(), libc::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
                return Err(VersionError::Timeout {
                    command: command_name(),
                });
            }
            Err(source) => {
                return Err(VersionError::Wait {
                    command: command_name(),
                    source,
                })
            }
        }
    };
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(VERSION_MAX_BYTES).read_to_string(&mut out);
    }
    let line = out.lines().next().unwrap_or("").trim().to_string();
    if !status.success() || line.is_empty() {
        return Err(VersionError::Failed {
            command: command_name(),
            status,
            line,
        });
    }
    Ok(line)
}

impl CodexVersion {
    pub fn new(command: &str, experimental_api: bool, model_check: ModelCheck) -> CodexVersion {
        CodexVersion {
            command: command.to_string(),
            experimental_api,
            model_check,
            info: Mutex::new(CodexInfo::default()),
        }
    }

    /// Runs `--version` once per child generation (refresh thread).
    pub fn refresh_cli(&self, generation: u64, stop: &StopFlag) {
        if lock(&self.info).cli_generation == generation {
            return;
        }
        let result = cli_version(&self.command, stop);
        let mut c = lock(&self.info);
        c.cli_generation = generation;
        match result {
            Ok(line) => {
                c.cli_version = Some(line);
                c.cli_error = None;
            }
            Err(e) => c.cli_error = Some(e.to_string()),
        }
    }

    pub fn set_user_agent(&self, user_agent: Option<String>) {
        lock(&self.info).user_agent = user_agent;
    }

    /// `snapshot.codex` of the status: `version` is the running child's, else the binary's.
    pub fn json(&self) -> Value {
        let c = lock(&self.info).clone();
        let running = c.user_agent.as_deref().and_then(version_from_user_agent);
        let cli = c.cli_version.as_deref().and_then(version_from_cli);
        json!({
            "version": running.clone().or(cli),
            "runningVersion": running,
            "userAgent": c.user_agent,
            "cliVersion": c.cli_version,
            "cliError": c.cli_error,
            "command": self.command,
            "experimentalApi": self.experimental_api,
            "modelCheck": self.model_check.as_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            version_from_user_agent("codexd/0.169.0 (Debian 12.0.0; x86_64) xterm (codexd; 0.1.0)"),
            Some("0.169.0".into())
        );
        assert_eq!(
            version_from_user_agent("stub-app-server/0.0.0"),
            Some("0.0.0".into())
        );
        assert_eq!(version_from_user_agent("no-version"), None);
        assert_eq!(
            version_from_cli("codex-cli 0.169.0"),
            Some("0.169.0".into())
        );
    }

    #[test]
    fn the_binary_is_asked_once_per_child_and_the_running_version_wins() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("codexver"));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("codex");
        let count = dir.join("runs");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho x >> {}\necho codex-cli 1.2.3\n",
                count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let v = CodexVersion::new(script.to_str().unwrap(), false, ModelCheck::Catalog);
        let stop = StopFlag::new();
        v.refresh_cli(1, &stop);
        v.refresh_cli(1, &stop);
        let runs = || std::fs::read_to_string(&count).unwrap().lines().count();
        assert_eq!(runs(), 1);
        assert_eq!(
            (&v.json()["version"], &v.json()["cliVersion"]),
            (&json!("1.2.3"), &json!("codex-cli 1.2.3"))
        );
        v.set_user_agent(Some("codexd/1.3.0 (Linux; x86_64)".into()));
        assert_eq!(
            (&v.json()["version"], &v.json()["runningVersion"]),
            (&json!("1.3.0"), &json!("1.3.0"))
        );
        v.refresh_cli(2, &stop);
        assert_eq!(runs(), 2, "a new child: asked again");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn cli_version_of_a_real_and_a_missing_command() {
        let stop = StopFlag::new();
        let sh = cli_version("/bin/sh", &stop);
        // Some shells reject --version; either way the answer is a clear Ok or Err, no hang.
        assert!(
            sh.is_ok()
                || sh
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("--version")),
            "{sh:?}"
        );
        let e = cli_version("/nonexistent/codex", &stop)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot run /nonexistent/codex --version"),
            "{e}"
        );
    }
}
