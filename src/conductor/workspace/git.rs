//! Runs `git` for the workspace module: one command at a time per call, in its own
//! session (killed whole on a timeout, like an exec), with a clean environment, hooks off,
//! and a clear error. The only place the conductor starts git.
//!
//! Why hooks are off: the conductor's own commits and worktrees record what a task's turns
//! did; a repo's pre-commit or post-checkout hook could block, prompt, or change the
//! result, and it runs without anyone watching. The operator's own commits keep them.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::host_ops::group;
use crate::host_ops::slots::ExecSlots;

/// Most git calls here are quick; a huge repo's `worktree add` is the slow one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a call waits for one of the slots before it gives up.
const SLOT_WAIT: Duration = Duration::from_secs(30);

/// Why a git call failed. `Busy` and `DiskFull` are retryable: another git process holds
/// the repo, or the disk is full; neither is the task's fault.
#[derive(Debug, Clone, PartialEq)]
pub enum GitError {
    /// git could not be started (not installed, or the conductor is stopping).
    Spawn(String),
    TimedOut {
        args: String,
        after: Duration,
    },
    /// `index.lock` (or another `.lock`) is held by another git process.
    Busy {
        args: String,
        stderr: String,
    },
    DiskFull {
        args: String,
        stderr: String,
    },
    Failed {
        args: String,
        code: Option<i32>,
        stderr: String,
    },
}

impl GitError {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            GitError::Busy { .. }
                | GitError::DiskFull { .. }
                | GitError::TimedOut { .. }
                | GitError::Spawn(_)
        )
    }

    /// A stable code for a task's error or an API error.
    pub fn code(&self) -> &'static str {
        match self {
            GitError::Spawn(_) => "git_unavailable",
            GitError::TimedOut { .. } => "git_timeout",
            GitError::Busy { .. } => "repo_busy",
            GitError::DiskFull { .. } => "disk_full",
            GitError::Failed { .. } => "git_failed",
        }
    }

    pub fn stderr(&self) -> &str {
        match self {
            GitError::Busy { stderr, .. }
            | GitError::DiskFull { stderr, .. }
            | GitError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

impl fmt::Display for GitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitError::Spawn(e) => write!(f, "cannot run git: {e}"),
            GitError::TimedOut { args, after } => {
                write!(f, "git {args} took longer than {} s and was killed", after.as_secs())
            }
            GitError::Busy { args, stderr } => write!(
                f,
                "the repository is locked by another git process (git {args}: {}); it is tried again later",
                first_line(stderr)
            ),
            GitError::DiskFull { args, stderr } => write!(
                f,
                "the disk is full (git {args}: {}); free space and retry",
                first_line(stderr)
            ),
            GitError::Failed { args, code, stderr } => write!(
                f,
                "git {args} failed ({}): {}",
                code.map_or("killed".to_string(), |c| format!("exit {c}")),
                first_line(stderr)
            ),
        }
    }
}

fn first_line(s: &str) -> &str {
    let s = s.trim();
    let line = s
        .lines()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .or_else(|| s.lines().next())
        .unwrap_or("");
    match line.char_indices().nth(300) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// What a successful call printed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub stdout: String,
    /// stdout was cut at the cap (1 MiB).
    pub truncated: bool,
    /// How long stdout was, cut or not.
    pub stdout_len: u64,
    /// The exit code (0 unless the call allowed others, see [`Git::run_status`]).
    pub code: i32,
}

impl Output {
    /// stdout without its trailing newline.
    pub fn line(&self) -> &str {
        self.stdout.trim_end_matches(['\n', '\r'])
    }
}

/// The git runner: its own slots, so a conductor stop ends every git call with it.
pub struct Git {
    slots: ExecSlots,
    program: String,
    timeout: Duration,
}

impl Default for Git {
    fn default() -> Self {
        Git::new("git", DEFAULT_TIMEOUT)
    }
}

impl Git {
    pub fn new(program: &str, timeout: Duration) -> Git {
        Git {
            slots: ExecSlots::default(),
            program: program.to_string(),
            timeout,
        }
    }

    /// `git -C dir args…`, an error unless it exits 0.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Result<Output, GitError> {
        self.run_env(dir, args, &[])
    }

    /// The same with extra environment (an author, an index file).
    pub fn run_env(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Output, GitError> {
        let out = self.run_status(dir, args, env, &[0])?;
        Ok(out)
    }

    /// `git -C dir args…`, where any exit code in `ok` is an answer (`diff --quiet` says
    /// "changes" with 1).
    pub fn run_status(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        ok: &[i32],
    ) -> Result<Output, GitError> {
        let shown = args.join(" ");
        let mut cmd = Command::new(&self.program);
        cmd.arg("-C")
            .arg(dir)
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.quotePath=false",
            ])
            .args(args)
            .env_clear()
            .envs(base_env())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        baa::common::proc::set_new_session(&mut cmd);
        let mut slot = self.take_slot()?;
        let outcome = group::run(&mut cmd, self.timeout, &mut slot)
            .map_err(|e| GitError::Spawn(format!("{}: {e}", self.program)))?;
        drop(slot);
        let stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
        if outcome.timed_out {
            return Err(GitError::TimedOut {
                args: shown,
                after: self.timeout,
            });
        }
        if outcome.aborted {
            return Err(GitError::Spawn("the conductor is stopping".into()));
        }
        let code = outcome.status.and_then(|s| s.code());
        match code {
            Some(c) if ok.contains(&c) => Ok(Output {
                stdout: String::from_utf8_lossy(&outcome.stdout).into_owned(),
                truncated: outcome.truncated,
                stdout_len: outcome.stdout_len,
                code: c,
            }),
            _ => Err(classify(shown, code, stderr)),
        }
    }

    fn take_slot(&self) -> Result<crate::host_ops::slots::Slot<'_>, GitError> {
        let deadline = Instant::now() + SLOT_WAIT;
        loop {
            match self.slots.take() {
                Ok(s) => return Ok(s),
                Err(e) if e.code == "EXEC_BUSY" && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(GitError::Spawn(e.message)),
            }
        }
    }

    /// Ends running git calls for a conductor stop (each is killed after a short grace).
    pub fn stop_all(&self) -> usize {
        self.slots.stop_all()
    }
}

fn classify(args: String, code: Option<i32>, stderr: String) -> GitError {
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("no space left on device") || lower.contains("disk quota exceeded") {
        GitError::DiskFull { args, stderr }
    } else if lower.contains(".lock': file exists")
        || lower.contains(".lock': file exists.")
        || lower.contains("another git process seems to be running")
        || (lower.contains("unable to create") && lower.contains(".lock"))
    {
        GitError::Busy { args, stderr }
    } else {
        GitError::Failed { args, code, stderr }
    }
}

/// PATH and the locale-free basics; nothing of the conductor's own environment (its token)
/// and no `GIT_*` variable that could point git at another repository.
fn base_env() -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| {
                "/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()
            }),
        ),
        ("LC_ALL".to_string(), "C".to_string()),
        ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
        ("GIT_OPTIONAL_LOCKS".to_string(), "0".to_string()),
    ];
    for k in ["HOME", "USER", "LOGNAME", "TMPDIR"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_index_lock_and_a_full_disk_are_retryable() {
        let busy = classify(
            "commit".into(),
            Some(128),
            "fatal: Unable to create '/r/.git/index.lock': File exists.\n\nAnother git process seems to be running".into(),
        );
        assert_eq!((busy.code(), busy.retryable()), ("repo_busy", true));
        let full = classify(
            "add -A".into(),
            Some(128),
            "error: unable to write file: No space left on device".into(),
        );
        assert_eq!((full.code(), full.retryable()), ("disk_full", true));
        let bad = classify(
            "rev-parse".into(),
            Some(128),
            "fatal: ambiguous argument 'nope'".into(),
        );
        assert_eq!((bad.code(), bad.retryable()), ("git_failed", false));
        assert!(bad.to_string().contains("ambiguous argument"), "{bad}");
    }

    #[test]
    fn runs_git_and_reports_a_failure() {
        let git = Git::default();
        let dir = std::env::temp_dir();
        let v = git.run(&dir, &["--version"]).unwrap();
        assert!(v.line().starts_with("git version"), "{}", v.stdout);
        let e = git.run(&dir, &["no-such-subcommand-x"]).unwrap_err();
        assert_eq!(e.code(), "git_failed", "{e}");
        let missing = Git::new("/nonexistent/git", DEFAULT_TIMEOUT);
        assert_eq!(
            missing.run(&dir, &["--version"]).unwrap_err().code(),
            "git_unavailable"
        );
    }
}
