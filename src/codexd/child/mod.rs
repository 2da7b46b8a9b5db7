//! The app-server child, by concern: `supervisor` (the restart loop, one generation at a
//! time, and the control requests it takes), `generation` (one connection to one process
//! and everything it owns), `policy` (backoff and crash loop, pure), `process` (the
//! command, spawn, stop), and the two transports behind the one [`Rpc`]: `stdio` (the
//! stdin writer; `pumps`, the threads on stdout and stderr) and `unix` (spawning a child
//! that listens on a socket, or attaching to one that already runs; `socket`, the
//! WebSocket connection and its thread; `pid_file`, the record beside the socket of the
//! app-server spawned there; `find`, which app-server runs on the socket, told from the
//! outside); `queue` is the byte-bounded channel to the core.
//!
//! A generation is one connection: in stdio mode one process, in unix mode possibly one of
//! several connections to the same long-lived process (codexd restarted, or the
//! connection dropped and codexd attached again).
//!
//! The child side never calls into the core: everything it has to say — a spawned
//! process, each stdout line, a ready handshake, an exit, a restart — goes as a
//! [`ChildEvent`] over one ordered channel, which the core's dispatcher applies
//! (`supervision.rs`). One channel keeps the order that matters: every line of a
//! generation reaches the core before that generation's exit.

mod find;
mod generation;
pub mod pid_file;
mod policy;
mod process;
mod pumps;
pub mod queue;
mod socket;
pub mod stdio;
mod supervisor;
mod unix;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::endpoint::Transport;
use crate::rpc::{Ask, Rpc, RpcError};

pub use find::{find, How};
pub use process::warn_missing as warn_missing_pass_env;
pub use pumps::{CutMessage, MAX_LINE};
pub use supervisor::{spawn_supervisor, Control};

/// How long initialize may take on a fresh child (spawn → response was ~0.1 s on the
/// native binary).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Bytes of stdout lines (and reports) that may wait for the core at once.
pub const QUEUE_BYTES: usize = 2 * MAX_LINE;

/// The connection to one generation of the child.
pub struct Link {
    pub generation: u64,
    pub pid: u32,
    pub rpc: Rpc,
}

impl Ask for Link {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn ask(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, RpcError> {
        self.rpc.request(method, params, timeout)
    }
}

/// What the child side reports to the core, in the order it happened.
pub enum ChildEvent {
    /// A new generation is about to be spawned (status `starting`).
    Starting,
    /// The process runs and `link` talks to it; its messages follow. `attached`: codexd
    /// connected to a unix-mode child that was already running instead of spawning one.
    Spawned {
        link: Arc<Link>,
        start_time: Option<String>,
        attached: bool,
        /// The socket of a unix-mode child (None: stdio).
        socket: Option<PathBuf>,
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
    /// stdout reached EOF, or the socket connection ended: no response of this
    /// generation can arrive any more.
    StreamClosed { generation: u64 },
    /// The child answered `initialize`.
    Ready {
        generation: u64,
        user_agent: Option<String>,
    },
    /// The process of the generation ended, or never got going. `requested`: codexd
    /// stopped it on request (a restart), which never counts towards the crash loop.
    Exited {
        generation: u64,
        reason: String,
        stderr_tail: String,
        status: Option<ExitStatus>,
        requested: bool,
    },
    /// Unix mode: the connection of `generation` ended but its process `pid` still runs;
    /// codexd attaches to it again (in-flight turns and approvals carry over).
    Disconnected {
        generation: u64,
        pid: u32,
        reason: String,
    },
    /// codexd stopped the child (it is stopping itself).
    Stopped {
        generation: u64,
        pid: u32,
        exit: String,
    },
    /// codexd is stopping and left its unix-mode child running for the next codexd.
    Detached { generation: u64, pid: u32 },
    /// The unix-mode app-server a previous codexd left running (`pid`) cannot be attached
    /// (`why`); what was left of it is stopped and a fresh one spawned, so its in-flight
    /// turns are lost.
    AttachFailed { pid: u32, why: String },
    /// Unix mode: an app-server already listened on the socket without codexd attached to
    /// it (recognised by its `how`); it was stopped before a new one was spawned.
    LeftBehindStopped { pid: u32, how: &'static str },
    /// The unix transport cannot start (`why`): codexd talks stdio from now on.
    TransportFallback { why: String },
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

/// A unix-mode app-server a previous codexd left running, recorded in daemon-state.json:
/// codexd tries to attach to it before it spawns anything.
#[derive(Debug)]
pub struct Adoptee {
    pub pid: u32,
    /// The OS start time recorded with `pid`: only that exact process is attached or killed.
    pub start_time: String,
    pub socket: PathBuf,
    /// Set when this codexd spawned it (it is our child: reap it).
    pub child: Option<std::process::Child>,
}

/// Everything the child side needs from the configuration.
#[derive(Debug)]
pub struct Settings {
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Variables passed from codexd's environment even when the scrub would drop them.
    pub pass_env: Vec<String>,
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
    pub transport: Transport,
    /// The app-server to attach to first (unix mode, recorded by a previous codexd).
    pub attach: Option<Adoptee>,
}

impl Settings {
    pub fn from_config(cfg: &Config, attach: Option<Adoptee>) -> Settings {
        Settings {
            command: cfg.server_command.clone(),
            args: cfg.server_args.clone(),
            cwd: cfg.server_cwd.clone(),
            pass_env: cfg.child_env.clone(),
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
                early_ms: cfg.crash_loop_early_ms,
                cooldown_ms: cfg.crash_loop_cooldown_ms,
            },
            transport: cfg.transport.clone(),
            attach,
        }
    }
}
