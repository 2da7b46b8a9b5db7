//! The app-server child, by concern: `supervisor` (the restart loop, one generation at a
//! time), `policy` (backoff and crash loop, pure), `process` (the command, spawn, stop),
//! `pumps` (the threads on the child's stdout and stderr) and `queue` (the byte-bounded
//! channel to the core).
//!
//! The child side never calls into the core: everything it has to say — a spawned
//! process, each stdout line, a ready handshake, an exit, a restart — goes as a
//! [`ChildEvent`] over one ordered channel, which the core's dispatcher applies
//! (`supervision.rs`). One channel keeps the order that matters: every line of a
//! generation reaches the core before that generation's exit.

mod policy;
mod process;
mod pumps;
pub mod queue;
mod supervisor;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::rpc::Rpc;

pub use pumps::{CutMessage, MAX_LINE};
pub use supervisor::spawn_supervisor;

/// Bytes of stdout lines (and reports) that may wait for the core at once.
pub const QUEUE_BYTES: usize = 2 * MAX_LINE;

/// The connection to one generation of the child.
pub struct Link {
    pub generation: u64,
    pub pid: u32,
    pub rpc: Rpc,
}

/// What the child side reports to the core, in the order it happened.
pub enum ChildEvent {
    /// A new generation is about to be spawned (status `starting`).
    Starting,
    /// The process runs and `link` writes to its stdin; its lines follow.
    Spawned {
        link: Arc<Link>,
        start_time: Option<String>,
    },
    /// One stdout line (at most [`MAX_LINE`] bytes).
    Line { generation: u64, bytes: Vec<u8> },
    /// A stdout line over [`MAX_LINE`]: read to its end, but only its head is kept.
    LineCut {
        generation: u64,
        bytes: u64,
        head: Vec<u8>,
        message: CutMessage,
    },
    /// stdout reached EOF: no response of this generation can arrive any more.
    StdoutClosed { generation: u64 },
    /// The child answered `initialize`.
    Ready {
        generation: u64,
        user_agent: Option<String>,
    },
    /// The generation ended, or never got going: counts towards the restart policy.
    Exited {
        generation: u64,
        reason: String,
        stderr_tail: String,
        status: Option<ExitStatus>,
    },
    /// codexd stopped the child (it is stopping itself).
    Stopped {
        generation: u64,
        pid: u32,
        exit: String,
    },
    /// The command cannot be run at all; looked for again at `retry_at`.
    Unavailable { why: String, retry_at: String },
    /// The next start is in `delay_ms` (at `at`).
    Restarting {
        delay_ms: u64,
        attempt: u32,
        at: String,
    },
    /// Too many failures in the window: nothing runs until `retry_at`.
    CrashLoop {
        failures: usize,
        window_ms: u64,
        last_error: String,
        stderr_tail: String,
        retry_at: String,
    },
    /// The supervisor ended (codexd is stopping).
    Finished,
}

impl ChildEvent {
    /// What the event weighs in the queue: a line its bytes, anything else a nominal size.
    pub fn weight(&self) -> usize {
        match self {
            ChildEvent::Line { bytes, .. } => bytes.len(),
            ChildEvent::LineCut { head, .. } => head.len() + 64,
            _ => 256,
        }
    }
}

/// Everything the child side needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Demo mode: the CODEX_HOME the child gets (else it inherits the user's).
    pub codex_home: Option<PathBuf>,
    pub logs_dir: PathBuf,
    pub log_max_bytes: u64,
    pub version: String,
    /// `initialize` asks for the experimental API (`BAA_CODEXD_EXPERIMENTAL_API`).
    pub experimental_api: bool,
    pub request_timeout: Duration,
    pub stop_grace: Duration,
    pub restart: policy::Limits,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            command: cfg.server_command.clone(),
            args: cfg.server_args.clone(),
            cwd: cfg.server_cwd.clone(),
            codex_home: cfg.demo.then(|| cfg.demo_codex_home()),
            logs_dir: cfg.logs_dir.clone(),
            log_max_bytes: cfg.log_max_bytes,
            version: cfg.version.clone(),
            experimental_api: cfg.experimental_api,
            request_timeout: Duration::from_millis(cfg.request_timeout_ms),
            stop_grace: Duration::from_millis(cfg.stop_grace_ms),
            restart: policy::Limits {
                base_ms: cfg.restart_base_ms,
                max_ms: cfg.restart_max_ms,
                reset_ms: cfg.restart_reset_ms,
                crash_max: cfg.crash_loop_max,
                window_ms: cfg.crash_loop_window_ms,
                cooldown_ms: cfg.crash_loop_cooldown_ms,
            },
        }
    }
}
