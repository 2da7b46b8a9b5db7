//! codexd configuration: its settings table (every `BAA_CODEXD_*` variable of SPEC §5.1
//! and the others it reads, with their flags) and the pure step from flags + environment
//! to the plain [`Config`] it runs with. Unit-tested without a process.

use std::path::PathBuf;

use serde_json::{json, Value};

use baa::common::cli::{Cli, Command as CliCommand};
use baa::common::logging;
use baa::common::netaddr::ListenUrl;
use baa::common::runtime_root::{self, RUNTIME_ROOT};
use baa::common::settings::{Error, Resolver, Result, Setting};

use crate::endpoint::{self, Transport};

/// How codexd gets its app-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// codexd spawns and supervises the child itself.
    Spawn,
    /// No child: the app-server is managed elsewhere; status shows placeholders.
    External,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Spawn => "spawn",
            Strategy::External => "external",
        }
    }
}

/// The answer codexd gives an approval request nobody answered in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Decline,
    Cancel,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "accept" | "approve" | "approved" | "allow" => Some(Decision::Accept),
            "decline" | "deny" | "denied" | "reject" => Some(Decision::Decline),
            "cancel" => Some(Decision::Cancel),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Decline => "decline",
            Decision::Cancel => "cancel",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub repo_root: PathBuf,
    /// The configured base URL as written (normalized, no trailing slash).
    pub local_api_base: String,
    pub listen: ListenUrl,
    pub event_stream_path: String,
    pub mode: String,
    pub logs_dir: PathBuf,
    pub state_dir: PathBuf,
    pub strategy: Strategy,
    pub server_command: String,
    pub server_args: Vec<String>,
    pub server_cwd: Option<PathBuf>,
    /// Variables copied from codexd's environment into the child's (`BAA_CODEXD_CHILD_ENV`),
    /// past the scrub: the operator named them, e.g. the token an MCP server entry reads.
    pub child_env: Vec<String>,
    /// `child.endpoint` as shown: the configured label, or `unix://<resolved path>`.
    pub server_endpoint: String,
    /// How codexd talks to the child, from `BAA_CODEXD_SERVER_ENDPOINT`.
    pub transport: Transport,
    pub smoke_lifetime_ms: u64,
    pub version: String,
    pub node_id: String,
    /// How long a server request (approval) waits for an HTTP answer before the
    /// session's default decision is sent.
    pub approval_timeout_ms: u64,
    pub default_approval: Decision,
    /// Deadline of every JSON-RPC request to the child.
    pub request_timeout_ms: u64,
    pub restart_base_ms: u64,
    pub restart_max_ms: u64,
    /// Healthy uptime after which the restart backoff starts over.
    pub restart_reset_ms: u64,
    /// Failed starts within `crash_loop_window_ms` that put the child in `crash_loop`.
    pub crash_loop_max: u32,
    pub crash_loop_window_ms: u64,
    /// An exit codexd did not cause counts towards `crash_loop` only if the child had been
    /// ready for less than this (or never got ready): a child that ran healthy and was
    /// killed from outside is not a crash-loop signal.
    pub crash_loop_early_ms: u64,
    /// How long `crash_loop` lasts before one more attempt.
    pub crash_loop_cooldown_ms: u64,
    /// Grace between SIGTERM and SIGKILL when stopping the child.
    pub stop_grace_ms: u64,
    /// A thread that went idle while codexd still thinks a turn runs is reconciled with
    /// `thread/read` after this long.
    pub reconcile_idle_ms: u64,
    /// Events kept in memory and in `recent-events.json`.
    pub recent_events: usize,
    /// A session finished and idle this long leaves the hot registry for the archive
    /// (still readable by id); 0 keeps every session hot.
    pub session_retention_ms: u64,
    /// Open sessions held whole in memory, the most recently used; the others are read
    /// from their files when used (one with a running turn is always held).
    pub hot_sessions: usize,
    /// Size at which stdout.log / stderr.log rotate (one `.1` generation kept).
    pub log_max_bytes: u64,
    /// Size at which events.jsonl rotates to `events.<first>-<last>.jsonl`.
    pub event_log_max_bytes: u64,
    /// Rotated event log segments kept beside events.jsonl.
    pub event_log_keep: usize,
    /// Demo mode (`--demo` or `BAA_CODEXD_DEMO=1`): codexd runs the built-in loopback
    /// model provider and points the child's `CODEX_HOME` at [`Config::demo_codex_home`].
    pub demo: bool,
    /// Initialize the child with `experimentalApi: true`; without it codexd refuses
    /// experimental request fields with a 400 instead of letting the child reject them.
    pub experimental_api: bool,
    /// Check a requested model and effort against the app-server's `model/list`.
    pub model_check: ModelCheck,
}

/// Whether session and turn creates check `model` and `effort` against `model/list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelCheck {
    /// Unknown model or unsupported effort → 400 listing the allowed values.
    Catalog,
    /// No check: for providers whose models are not in codex's catalog (the catalog is
    /// built into codex and is the same whatever the provider).
    Off,
}

impl ModelCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelCheck::Catalog => "catalog",
            ModelCheck::Off => "off",
        }
    }
}

/// codexd's own commands; `help`, `settings` and `routes` are built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Status,
    Config,
    Smoke,
    StopChild,
}

pub const REPO_ROOT: Setting = Setting::env("BAA_CODEXD_REPO_ROOT")
    .flag("repo-root", "DIR")
    .derived("the working directory, as a label only")
    .help("repo root, reported as identity.repoRoot; when set, the dirs default to <root>/state/codexd and <root>/logs/codexd");
pub const LOCAL_API: Setting = Setting::env("BAA_CODEXD_LOCAL_API_BASE")
    .flag("local-api", "URL")
    .default("http://127.0.0.1:4319")
    .help("listen URL http://HOST:PORT; loopback only (port 0 picks a free port)");
pub const STATE_DIR: Setting = Setting::env("BAA_CODEXD_STATE_DIR")
    .flag("state-dir", "DIR")
    .derived("${BAA_STATE_DIR}/codexd, else ${BAA_RUNTIME_ROOT}/state/codexd, else <repo root>/state/codexd")
    .help("the four state files; one of the four must be set (never the current directory)");
pub const LOGS_DIR: Setting = Setting::env("BAA_CODEXD_LOGS_DIR")
    .flag("logs-dir", "DIR")
    .derived("${BAA_LOGS_DIR}/codexd, else ${BAA_RUNTIME_ROOT}/logs/codexd, else <repo root>/logs/codexd")
    .help("events.jsonl, stdout.log, stderr.log; one of the four must be set");
pub const SERVER_STRATEGY: Setting = Setting::env("BAA_CODEXD_SERVER_STRATEGY")
    .flag("server-strategy", "S")
    .default("spawn")
    .help("spawn (run and supervise the child) or external (no child)");
pub const SERVER_COMMAND: Setting = Setting::env("BAA_CODEXD_SERVER_COMMAND")
    .flag("server-command", "CMD")
    .default("codex")
    .help("the child binary: the native codex printed by scripts/install-codex.sh");
pub const SERVER_ARGS: Setting = Setting::env("BAA_CODEXD_SERVER_ARGS")
    .flag("server-args", "ARGS")
    .default("app-server")
    .help("the child's arguments, whitespace-separated");
pub const SERVER_CWD: Setting = Setting::env("BAA_CODEXD_SERVER_CWD")
    .flag("server-cwd", "DIR")
    .derived("codexd's working directory")
    .help("the child's working directory");
pub const CHILD_ENV: Setting = Setting::env("BAA_CODEXD_CHILD_ENV")
    .help("comma-separated names of variables copied from codexd's environment into the child's, even ones the scrub would drop (e.g. the variable an MCP server's bearer_token_env_var names)");
pub const DEMO: Setting = Setting::env("BAA_CODEXD_DEMO")
    .switch("demo")
    .help("run a built-in loopback model and point the child's CODEX_HOME at <state>/demo-codex-home, so turns complete without credentials");
pub const EXPERIMENTAL_API: Setting = Setting::env("BAA_CODEXD_EXPERIMENTAL_API")
    .switch("experimental-api")
    .help("initialize the child with experimentalApi, so experimental fields such as collaborationMode are accepted (without it they are a 400)");
pub const MODEL_CHECK: Setting = Setting::env("BAA_CODEXD_MODEL_CHECK")
    .flag("model-check", "C")
    .default("catalog")
    .help("catalog: an unknown model or unsupported effort is a 400 listing the allowed ones (from model/list); off: no check (models outside codex's catalog)");
pub const SHARED_STATE_DIR: Setting = Setting::env("BAA_STATE_DIR").help(
    "shared state dir; codexd uses its codexd/ subdirectory when BAA_CODEXD_STATE_DIR is unset",
);
pub const SHARED_LOGS_DIR: Setting = Setting::env("BAA_LOGS_DIR").help(
    "shared logs dir; codexd uses its codexd/ subdirectory when BAA_CODEXD_LOGS_DIR is unset",
);
pub const DEFAULT_EVENT_STREAM_PATH: &str = "/v1/codexd/events";

pub const EVENT_STREAM_PATH: Setting = Setting::env("BAA_CODEXD_EVENT_STREAM_PATH")
    .default(DEFAULT_EVENT_STREAM_PATH)
    .help("path of the event stream (WebSocket and plain GET)");
pub const MODE: Setting = Setting::env("BAA_CODEXD_MODE")
    .default("app-server")
    .help("the only supported mode");
pub const SERVER_ENDPOINT: Setting = Setting::env("BAA_CODEXD_SERVER_ENDPOINT")
    .default("stdio://codex-app-server")
    .help("stdio://… (JSON-RPC over the child's stdin/stdout) or unix://<absolute path> (the child listens there, outlives codexd and is re-attached; bare unix:// is <state dir>/app-server.sock; at most 103 bytes)");
pub const SMOKE_LIFETIME_MS: Setting = Setting::env("BAA_CODEXD_SMOKE_LIFETIME_MS")
    .default("1500")
    .help("how long `smoke` keeps its daemon up");
pub const VERSION: Setting = Setting::env("BAA_CODEXD_VERSION")
    .default(env!("CARGO_PKG_VERSION"))
    .help("reported version");
pub const NODE_ID: Setting = Setting::env("BAA_NODE_ID")
    .default("mini")
    .help("reported as identity.nodeId");
pub const REQUEST_TIMEOUT_MS: Setting = Setting::env("BAA_CODEXD_REQUEST_TIMEOUT_MS")
    .default("30000")
    .help("deadline of every JSON-RPC request to the child (>= 1)");
pub const APPROVAL_TIMEOUT_MS: Setting = Setting::env("BAA_CODEXD_APPROVAL_TIMEOUT_MS")
    .default("60000")
    .help("how long an approval waits for an HTTP answer before the session's default is sent");
pub const DEFAULT_APPROVAL: Setting = Setting::env("BAA_CODEXD_DEFAULT_APPROVAL")
    .default("decline")
    .help("default answer to approvals: accept, decline or cancel");
pub const RESTART_BASE_MS: Setting = Setting::env("BAA_CODEXD_RESTART_BASE_MS")
    .default("500")
    .help("first restart delay (equal-jitter exponential backoff)");
pub const RESTART_MAX_MS: Setting = Setting::env("BAA_CODEXD_RESTART_MAX_MS")
    .default("30000")
    .help("backoff cap");
pub const RESTART_RESET_MS: Setting = Setting::env("BAA_CODEXD_RESTART_RESET_MS")
    .default("600000")
    .help("healthy uptime after which backoff and failure count reset");
pub const CRASH_LOOP_MAX: Setting = Setting::env("BAA_CODEXD_CRASH_LOOP_MAX")
    .default("10")
    .help("failed starts/exits within the window that enter crash_loop (>= 1)");
pub const CRASH_LOOP_WINDOW_MS: Setting = Setting::env("BAA_CODEXD_CRASH_LOOP_WINDOW_MS")
    .default("600000")
    .help("that window");
pub const CRASH_LOOP_EARLY_MS: Setting = Setting::env("BAA_CODEXD_CRASH_LOOP_EARLY_MS")
    .default("10000")
    .help("an exit codexd did not cause counts towards crash_loop only this soon after the child got ready (a failed start always counts)");
pub const CRASH_LOOP_COOLDOWN_MS: Setting = Setting::env("BAA_CODEXD_CRASH_LOOP_COOLDOWN_MS")
    .default("900000")
    .help("pause in crash_loop before one more attempt");
pub const STOP_GRACE_MS: Setting = Setting::env("BAA_CODEXD_STOP_GRACE_MS")
    .default("3000")
    .help("SIGTERM to SIGKILL grace when stopping the child");
pub const RECONCILE_IDLE_MS: Setting = Setting::env("BAA_CODEXD_RECONCILE_IDLE_MS")
    .default("2000")
    .help("an open turn idle this long is reconciled with thread/read");
pub const RECENT_EVENTS: Setting = Setting::env("BAA_CODEXD_RECENT_EVENTS")
    .default("200")
    .help("events kept in memory, in recent-events.json and in status (>= 1)");
pub const SESSION_RETENTION_MS: Setting = Setting::env("BAA_CODEXD_SESSION_RETENTION_MS")
    .default("604800000")
    .help("a session finished and idle this long moves from the hot set (<state>/sessions/hot/) to the archive under <state>/sessions/ (still readable by id; a new turn brings it back); 0 = never");
pub const HOT_SESSIONS: Setting = Setting::env("BAA_CODEXD_HOT_SESSIONS")
    .default("128")
    .help("open sessions held whole in memory, the most recently used; the others stay on disk (<state>/sessions/hot/) and are read when used (>= 1)");
pub const LOG_MAX_BYTES: Setting = Setting::env("BAA_CODEXD_LOG_MAX_BYTES")
    .default("10485760")
    .help("stdout.log / stderr.log rotate to .1 past this size");
pub const EVENT_LOG_MAX_BYTES: Setting = Setting::env("BAA_CODEXD_EVENT_LOG_MAX_BYTES")
    .default("67108864")
    .help("events.jsonl rotates to events.<first>-<last>.jsonl past this size (>= 4096)");
pub const EVENT_LOG_KEEP: Setting = Setting::env("BAA_CODEXD_EVENT_LOG_KEEP")
    .default("3")
    .help("rotated event log segments kept (older ones are deleted; ?since= before them gets 410 since_expired)");
pub const STUB_MODE: Setting = Setting::env("BAA_CODEXD_STUB_MODE")
    .default("normal")
    .help("read only by the built-in stub child (baa-codexd __stub-app-server, used by smoke and tests): normal, exit, exit-while:PATH, listen (serves --listen unix://PATH), garbage, silent, mute, no-complete, late-start")
    .external()
    .hidden();
pub const RUST_LOG: Setting = Setting::env("RUST_LOG")
    .default("info")
    .help("log filter (env_logger); logs go to stderr")
    .external();

/// Every variable codexd reads, flags first (the usage text keeps this order).
pub const SETTINGS: &[Setting] = &[
    LOCAL_API,
    STATE_DIR,
    LOGS_DIR,
    RUNTIME_ROOT,
    REPO_ROOT,
    SERVER_STRATEGY,
    SERVER_COMMAND,
    SERVER_ARGS,
    SERVER_CWD,
    CHILD_ENV,
    DEMO,
    EXPERIMENTAL_API,
    MODEL_CHECK,
    SHARED_STATE_DIR,
    SHARED_LOGS_DIR,
    EVENT_STREAM_PATH,
    MODE,
    SERVER_ENDPOINT,
    SMOKE_LIFETIME_MS,
    VERSION,
    NODE_ID,
    REQUEST_TIMEOUT_MS,
    APPROVAL_TIMEOUT_MS,
    DEFAULT_APPROVAL,
    RESTART_BASE_MS,
    RESTART_MAX_MS,
    RESTART_RESET_MS,
    CRASH_LOOP_MAX,
    CRASH_LOOP_WINDOW_MS,
    CRASH_LOOP_EARLY_MS,
    CRASH_LOOP_COOLDOWN_MS,
    STOP_GRACE_MS,
    RECONCILE_IDLE_MS,
    RECENT_EVENTS,
    SESSION_RETENTION_MS,
    HOT_SESSIONS,
    LOG_MAX_BYTES,
    EVENT_LOG_MAX_BYTES,
    EVENT_LOG_KEEP,
    STUB_MODE,
    RUST_LOG,
    logging::LOG_FILE,
    logging::LOG_MAX_BYTES,
];

pub const CLI: Cli<Command> = Cli {
    binary: "baa-codexd",
    about: "supervises codex app-server and serves Codex sessions over local HTTP/WS",
    commands: &[
        CliCommand {
            name: "start",
            help: "run the daemon (prints `baa-codexd listening on http://HOST:PORT`)",
            json: false,
            run: Command::Start,
        },
        CliCommand {
            name: "status",
            help: "ask the running daemon for /v1/codexd/status",
            json: true,
            run: Command::Status,
        },
        CliCommand {
            name: "config",
            help: "print the resolved configuration",
            json: true,
            run: Command::Config,
        },
        CliCommand {
            name: "smoke",
            help: "run the daemon against a built-in stub child and check its files",
            json: false,
            run: Command::Smoke,
        },
        CliCommand {
            name: "stop-child",
            help: "stop the app-server a stopped codexd left running (unix mode), by recorded pid + start time",
            json: false,
            run: Command::StopChild,
        },
    ],
    bare: None,
    settings: SETTINGS,
    notes: "Relative paths resolve against the working directory. More: docs/runtime/codexd.md.\n",
};

/// The listen URL, which must be loopback; also all `status` needs.
pub fn local_api(r: &Resolver) -> Result<(String, ListenUrl)> {
    let (base, listen) = r.listen_url(&LOCAL_API)?;
    if !listen.is_loopback() {
        return Err(r.rule(
            &LOCAL_API,
            format!("{base} is not a loopback address; codexd only listens on 127.0.0.1, ::1 or localhost"),
        ));
    }
    Ok((base, listen))
}

/// `BAA_CODEXD_EVENT_STREAM_PATH`, normalized. Apart from `resolve`, `routes` reads it
/// alone: it is the only setting a route path depends on.
pub fn event_stream_path(r: &Resolver) -> Result<String> {
    let mut path = r.string(&EVENT_STREAM_PATH)?;
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let path = path.trim_end_matches('/').to_string();
    if path.is_empty() || path.contains(':') {
        return Err(r.invalid(
            &EVENT_STREAM_PATH,
            "expected a plain path such as /v1/codexd/events",
        ));
    }
    Ok(path)
}

/// Flags + environment → the validated config. Pure: the environment comes in through
/// the resolver's lookup function.
pub fn resolve(r: &Resolver) -> Result<Config> {
    let (local_api_base, listen) = local_api(r)?;
    let event_stream_path = event_stream_path(r)?;

    let mode = r.choice(&MODE, &["app-server"])?.to_string();
    let strategy = match r.choice(&SERVER_STRATEGY, &["spawn", "external"])? {
        "external" => Strategy::External,
        _ => Strategy::Spawn,
    };
    let default_approval_text = r.string(&DEFAULT_APPROVAL)?;
    let default_approval = Decision::parse(&default_approval_text)
        .ok_or_else(|| r.invalid(&DEFAULT_APPROVAL, "expected accept, decline or cancel"))?;

    // Read every source before choosing, so each row counts as read.
    let repo_root = r.opt_path(&REPO_ROOT);
    let own_state = r.opt_path(&STATE_DIR);
    let own_logs = r.opt_path(&LOGS_DIR);
    let shared_state = r.opt_path(&SHARED_STATE_DIR);
    let shared_logs = r.opt_path(&SHARED_LOGS_DIR);
    let runtime_state = runtime_root::under(r, "state");
    let runtime_logs = runtime_root::under(r, "logs");
    let under_repo = |sub: &str| repo_root.as_ref().map(|root| root.join(sub));
    let state_dir = own_state.or_else(|| {
        shared_state
            .or(runtime_state)
            .or_else(|| under_repo("state"))
            .map(|d| d.join("codexd"))
    });
    let logs_dir = own_logs.or_else(|| {
        shared_logs
            .or(runtime_logs)
            .or_else(|| under_repo("logs"))
            .map(|d| d.join("codexd"))
    });

    let mut cfg = Config {
        local_api_base,
        listen,
        event_stream_path,
        mode,
        strategy,
        server_command: r.string(&SERVER_COMMAND)?,
        server_args: r
            .string(&SERVER_ARGS)?
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        server_cwd: r.opt_path(&SERVER_CWD),
        child_env: child_env(r)?,
        server_endpoint: r.string(&SERVER_ENDPOINT)?,
        transport: Transport::Stdio,
        smoke_lifetime_ms: r.number(&SMOKE_LIFETIME_MS, 0..=u64::MAX)?,
        version: r.string(&VERSION)?,
        node_id: r.string(&NODE_ID)?,
        approval_timeout_ms: r.number(&APPROVAL_TIMEOUT_MS, 0..=u64::MAX)?,
        default_approval,
        request_timeout_ms: r.number(&REQUEST_TIMEOUT_MS, 1..=u64::MAX)?,
        restart_base_ms: r.number(&RESTART_BASE_MS, 0..=u64::MAX)?,
        restart_max_ms: r.number(&RESTART_MAX_MS, 0..=u64::MAX)?,
        restart_reset_ms: r.number(&RESTART_RESET_MS, 0..=u64::MAX)?,
        crash_loop_max: r.number(&CRASH_LOOP_MAX, 1..=u32::MAX)?,
        crash_loop_window_ms: r.number(&CRASH_LOOP_WINDOW_MS, 0..=u64::MAX)?,
        crash_loop_early_ms: r.number(&CRASH_LOOP_EARLY_MS, 0..=u64::MAX)?,
        crash_loop_cooldown_ms: r.number(&CRASH_LOOP_COOLDOWN_MS, 0..=u64::MAX)?,
        stop_grace_ms: r.number(&STOP_GRACE_MS, 0..=u64::MAX)?,
        reconcile_idle_ms: r.number(&RECONCILE_IDLE_MS, 0..=u64::MAX)?,
        recent_events: r.number(&RECENT_EVENTS, 1..=usize::MAX)?,
        session_retention_ms: r.number(&SESSION_RETENTION_MS, 0..=u64::MAX)?,
        hot_sessions: r.number(&HOT_SESSIONS, 1..=usize::MAX)?,
        log_max_bytes: r.number(&LOG_MAX_BYTES, 0..=u64::MAX)?,
        event_log_max_bytes: r.number(&EVENT_LOG_MAX_BYTES, 4096..=u64::MAX)?,
        event_log_keep: r.number(&EVENT_LOG_KEEP, 0..=100_000)?,
        demo: r.bool(&DEMO)?,
        experimental_api: r.bool(&EXPERIMENTAL_API)?,
        model_check: match r.choice(&MODEL_CHECK, &["catalog", "off"])? {
            "off" => ModelCheck::Off,
            _ => ModelCheck::Catalog,
        },
        // Last, so a wrong value elsewhere is reported first.
        state_dir: state_dir.ok_or_else(|| missing_dir(&STATE_DIR, &SHARED_STATE_DIR))?,
        logs_dir: logs_dir.ok_or_else(|| missing_dir(&LOGS_DIR, &SHARED_LOGS_DIR))?,
        repo_root: repo_root.unwrap_or_else(|| r.cwd().to_path_buf()),
    };
    // After the state dir: a bare `unix://` names a socket under it.
    cfg.transport = endpoint::parse(&cfg.server_endpoint, &cfg.state_dir)
        .map_err(|e| r.invalid(&SERVER_ENDPOINT, e.to_string()))?;
    if let Transport::Unix(path) = &cfg.transport {
        cfg.server_endpoint = format!("unix://{}", path.display());
    }
    Ok(cfg)
}

/// `BAA_CODEXD_CHILD_ENV`: variable names, each `[A-Za-z_][A-Za-z0-9_]*`.
fn child_env(r: &Resolver) -> Result<Vec<String>> {
    let names = r.list(&CHILD_ENV);
    if let Some(bad) = names.iter().find(|n| !is_variable_name(n)) {
        return Err(r.invalid(
            &CHILD_ENV,
            format!(
                "{bad:?} is not a variable name (letters, digits and _, not starting with a digit)"
            ),
        ));
    }
    Ok(names)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn missing_dir(own: &Setting, shared: &Setting) -> Error {
    runtime_root::not_set(&[
        own.both_names(),
        shared.both_names(),
        REPO_ROOT.both_names(),
    ])
}

impl Config {
    /// The CODEX_HOME codexd writes and hands the child in demo mode.
    pub fn demo_codex_home(&self) -> PathBuf {
        self.state_dir.join("demo-codex-home")
    }

    /// `ws://host:port<path>` for the event stream at the configured base.
    pub fn event_stream_url(&self, base: &str) -> String {
        format!(
            "{}{}",
            base.replacen("http://", "ws://", 1),
            self.event_stream_path
        )
    }

    /// The resolved configuration as JSON (for `config --json`).
    pub fn to_json(&self) -> Value {
        json!({
            "repoRoot": self.repo_root,
            "localApiBase": self.local_api_base,
            "eventStreamPath": self.event_stream_path,
            "mode": self.mode,
            "logsDir": self.logs_dir,
            "stateDir": self.state_dir,
            "server": {
                "strategy": self.strategy.as_str(),
                "command": self.server_command,
                "args": self.server_args,
                "cwd": self.server_cwd,
                "childEnv": self.child_env,
                "endpoint": self.server_endpoint,
                "transport": self.transport.kind(),
            },
            "version": self.version,
            "nodeId": self.node_id,
            "approvals": {
                "timeoutMs": self.approval_timeout_ms,
                "default": self.default_approval.as_str(),
            },
            "requestTimeoutMs": self.request_timeout_ms,
            "restart": {
                "baseMs": self.restart_base_ms,
                "maxMs": self.restart_max_ms,
                "resetAfterMs": self.restart_reset_ms,
                "crashLoopMax": self.crash_loop_max,
                "crashLoopWindowMs": self.crash_loop_window_ms,
                "crashLoopEarlyMs": self.crash_loop_early_ms,
                "crashLoopCooldownMs": self.crash_loop_cooldown_ms,
                "stopGraceMs": self.stop_grace_ms,
            },
            "eventLog": {
                "maxBytes": self.event_log_max_bytes,
                "keep": self.event_log_keep,
            },
            "smokeLifetimeMs": self.smoke_lifetime_ms,
            "sessionRetentionMs": self.session_retention_ms,
            "hotSessions": self.hot_sessions,
            "demo": self.demo,
            "experimentalApi": self.experimental_api,
            "modelCheck": self.model_check.as_str(),
        })
    }

    /// `key: value` lines for `config`.
    pub fn to_lines(&self) -> Vec<String> {
        vec![
            format!("mode: {}", self.mode),
            format!("local_api_base: {}", self.local_api_base),
            format!("event_stream_path: {}", self.event_stream_path),
            format!("repo_root: {}", self.repo_root.display()),
            format!("state_dir: {}", self.state_dir.display()),
            format!("logs_dir: {}", self.logs_dir.display()),
            format!("server_strategy: {}", self.strategy.as_str()),
            format!("server_command: {}", self.server_command),
            format!("server_args: {}", self.server_args.join(" ")),
            format!(
                "server_cwd: {}",
                self.server_cwd
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "inherit".into())
            ),
            format!("server_endpoint: {}", self.server_endpoint),
            format!(
                "child_env: {}",
                if self.child_env.is_empty() {
                    "none".to_string()
                } else {
                    self.child_env.join(",")
                }
            ),
            format!(
                "approvals: default={} timeout_ms={}",
                self.default_approval.as_str(),
                self.approval_timeout_ms
            ),
            format!("version: {}", self.version),
            format!(
                "experimental_api: {}",
                if self.experimental_api { "on" } else { "off" }
            ),
            format!("model_check: {}", self.model_check.as_str()),
            format!(
                "demo: {}",
                if self.demo {
                    "on (built-in loopback model)"
                } else {
                    "off"
                }
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baa::common::settings::Flags;
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::path::Path;

    fn flags(args: &[&str]) -> Flags {
        let mut full = vec!["start"];
        full.extend_from_slice(args);
        CLI.parse(full.into_iter().map(OsString::from).collect())
            .unwrap()
            .flags
    }

    /// Resolves `args` over `env` from the working directory `/cwd`; also returns the rows
    /// nobody read.
    fn resolve_all(args: &[&str], env: &[(&str, &str)]) -> (Result<Config>, Vec<String>) {
        let f = flags(args);
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| map.get(k).cloned();
        let r = Resolver::new(SETTINGS, &f, &lookup, Path::new("/cwd"));
        let c = resolve(&r);
        (c, r.unread())
    }

    /// With a repo root, the way launchd and dev.sh run it.
    fn resolve_rooted(args: &[&str], env: &[(&str, &str)]) -> Result<Config> {
        let mut env = env.to_vec();
        env.push(("BAA_CODEXD_REPO_ROOT", "/repo"));
        resolve_all(args, &env).0
    }

    fn err(args: &[&str], env: &[(&str, &str)]) -> String {
        match resolve_rooted(args, env) {
            Ok(_) => panic!("{args:?} {env:?} resolved"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_row_of_the_table_is_read() {
        let (c, unread) = resolve_all(&["--repo-root", "/repo"], &[]);
        assert!(c.is_ok(), "{c:?}");
        assert_eq!(unread, Vec::<String>::new());
    }

    #[test]
    fn defaults() {
        let c = resolve_rooted(&[], &[]).unwrap();
        assert_eq!(c.local_api_base, "http://127.0.0.1:4319");
        assert_eq!(c.event_stream_path, "/v1/codexd/events");
        assert_eq!(c.state_dir, PathBuf::from("/repo/state/codexd"));
        assert_eq!(c.logs_dir, PathBuf::from("/repo/logs/codexd"));
        assert_eq!(c.strategy, Strategy::Spawn);
        assert_eq!(c.server_command, "codex");
        assert_eq!(c.server_args, vec!["app-server".to_string()]);
        assert_eq!(c.default_approval, Decision::Decline);
        assert_eq!(c.version, env!("CARGO_PKG_VERSION"));
        assert_eq!((c.recent_events, c.crash_loop_max), (200, 10));
        assert_eq!((c.event_log_max_bytes, c.event_log_keep), (64 << 20, 3));
        assert_eq!(
            c.event_stream_url("http://127.0.0.1:4319"),
            "ws://127.0.0.1:4319/v1/codexd/events"
        );
    }

    #[test]
    fn shared_dirs_and_flags() {
        let c = resolve_rooted(
            &[
                "--local-api",
                "http://localhost:0",
                "--logs-dir",
                "rel/logs",
            ],
            &[
                ("BAA_STATE_DIR", "/var/baa/state"),
                ("BAA_LOGS_DIR", "/var/baa/logs"),
                ("BAA_CODEXD_SERVER_ARGS", "app-server  --listen stdio://"),
                ("BAA_CODEXD_LOCAL_API_BASE", "http://127.0.0.1:4000/"),
            ],
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/baa/state/codexd"));
        assert_eq!(c.logs_dir, PathBuf::from("/cwd/rel/logs"));
        assert_eq!(c.local_api_base, "http://localhost:0");
        assert_eq!(c.server_args, vec!["app-server", "--listen", "stdio://"]);
        assert_eq!(c.repo_root, PathBuf::from("/repo"));
    }

    #[test]
    fn dirs_never_default_to_the_working_directory() {
        let e = resolve_all(&[], &[]).0.unwrap_err().to_string();
        assert_eq!(
            e,
            "BAA_RUNTIME_ROOT (or --root) is not set, nor BAA_CODEXD_STATE_DIR (or --state-dir), BAA_STATE_DIR, BAA_CODEXD_REPO_ROOT (or --repo-root); set the root or each of these (runtime dirs never default to the current directory)"
        );
        let e = resolve_all(&[], &[("BAA_STATE_DIR", "/s")])
            .0
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("BAA_RUNTIME_ROOT (or --root) is not set, nor BAA_CODEXD_LOGS_DIR (or --logs-dir), BAA_LOGS_DIR,"),
            "{e}"
        );
        let c = resolve_all(&["--state-dir", "/s", "--logs-dir", "/l"], &[])
            .0
            .unwrap();
        assert_eq!(c.repo_root, PathBuf::from("/cwd"), "a label only");
    }

    #[test]
    fn the_runtime_root_implies_the_dirs_and_the_others_override_it() {
        let root = [("BAA_RUNTIME_ROOT", "/srv/baa")];
        let c = resolve_all(&[], &root).0.unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/baa/state/codexd"));
        assert_eq!(c.logs_dir, PathBuf::from("/srv/baa/logs/codexd"));
        // Over the repo root (a label, the last resort), under the shared and own dirs.
        let c = resolve_all(
            &["--repo-root", "/repo", "--logs-dir", "/l"],
            &[("BAA_STATE_DIR", "/s"), root[0]],
        )
        .0
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/s/codexd"));
        assert_eq!(c.logs_dir, PathBuf::from("/l"));
        let c = resolve_all(&["--root", "/flag", "--repo-root", "/repo"], &root)
            .0
            .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/flag/state/codexd"));
        assert_eq!(c.logs_dir, PathBuf::from("/flag/logs/codexd"));
    }

    #[test]
    fn refuses_non_loopback_and_bad_values() {
        let e = err(&[], &[("BAA_CODEXD_LOCAL_API_BASE", "http://0.0.0.0:4319")]);
        assert_eq!(
            e,
            "BAA_CODEXD_LOCAL_API_BASE: http://0.0.0.0:4319 is not a loopback address; codexd only listens on 127.0.0.1, ::1 or localhost"
        );
        let e = err(&["--local-api", "http://100.71.210.78:4319"], &[]);
        assert!(e.starts_with("--local-api: "), "{e}");
        assert_eq!(
            err(&["--server-strategy", "x"], &[]),
            "--server-strategy: expected spawn or external, got \"x\""
        );
        for (k, v, want) in [
            ("BAA_CODEXD_MODE", "exec", "BAA_CODEXD_MODE=\"exec\": expected app-server"),
            (
                "BAA_CODEXD_SERVER_STRATEGY",
                "fork",
                "BAA_CODEXD_SERVER_STRATEGY=\"fork\": expected spawn or external",
            ),
            (
                "BAA_CODEXD_DEFAULT_APPROVAL",
                "maybe",
                "BAA_CODEXD_DEFAULT_APPROVAL=\"maybe\": expected accept, decline or cancel",
            ),
            (
                "BAA_CODEXD_APPROVAL_TIMEOUT_MS",
                "soon",
                "BAA_CODEXD_APPROVAL_TIMEOUT_MS=\"soon\": expected an integer >= 0",
            ),
            (
                "BAA_CODEXD_REQUEST_TIMEOUT_MS",
                "0",
                "BAA_CODEXD_REQUEST_TIMEOUT_MS=\"0\": expected an integer >= 1",
            ),
            (
                "BAA_CODEXD_CRASH_LOOP_MAX",
                "4294967296",
                "BAA_CODEXD_CRASH_LOOP_MAX=\"4294967296\": expected an integer from 1 to 4294967295",
            ),
            (
                "BAA_CODEXD_EVENT_LOG_MAX_BYTES",
                "100",
                "BAA_CODEXD_EVENT_LOG_MAX_BYTES=\"100\": expected an integer >= 4096",
            ),
            (
                "BAA_CODEXD_EVENT_STREAM_PATH",
                "ws://x",
                "BAA_CODEXD_EVENT_STREAM_PATH=\"ws://x\": expected a plain path such as /v1/codexd/events",
            ),
        ] {
            assert_eq!(err(&[], &[(k, v)]), want);
        }
    }

    #[test]
    fn demo_from_flag_or_env() {
        assert!(!resolve_rooted(&[], &[]).unwrap().demo);
        let c = resolve_rooted(&[], &[("BAA_CODEXD_DEMO", "1")]).unwrap();
        assert!(c.demo);
        assert_eq!(
            c.demo_codex_home(),
            PathBuf::from("/repo/state/codexd/demo-codex-home")
        );
        assert!(
            !resolve_rooted(&[], &[("BAA_CODEXD_DEMO", "off")])
                .unwrap()
                .demo
        );
        assert!(resolve_rooted(&["--demo"], &[]).unwrap().demo);
        let e = err(&[], &[("BAA_CODEXD_DEMO", "maybe")]);
        assert!(e.starts_with("BAA_CODEXD_DEMO=\"maybe\""), "{e}");
    }

    #[test]
    fn experimental_api_and_model_check() {
        let c = resolve_rooted(&[], &[]).unwrap();
        assert_eq!(
            (c.experimental_api, c.model_check),
            (false, ModelCheck::Catalog)
        );
        let c = resolve_rooted(
            &["--experimental-api"],
            &[("BAA_CODEXD_MODEL_CHECK", "off")],
        )
        .unwrap();
        assert_eq!((c.experimental_api, c.model_check), (true, ModelCheck::Off));
        let c = resolve_rooted(&[], &[("BAA_CODEXD_EXPERIMENTAL_API", "1")]).unwrap();
        assert!(c.experimental_api);
        assert_eq!(
            err(&["--model-check", "strict"], &[]),
            "--model-check: expected catalog or off, got \"strict\""
        );
    }

    #[test]
    fn child_env_names_are_validated() {
        assert!(resolve_rooted(&[], &[]).unwrap().child_env.is_empty());
        let c = resolve_rooted(&[], &[("BAA_CODEXD_CHILD_ENV", " BAA_MCP_TOKEN, _x1 ,")]).unwrap();
        assert_eq!(c.child_env, vec!["BAA_MCP_TOKEN", "_x1"]);
        for bad in ["1X", "A-B", "A B", "A=B", "\u{e9}"] {
            let e = err(&[], &[("BAA_CODEXD_CHILD_ENV", bad)]);
            assert_eq!(
                e,
                format!(
                    "BAA_CODEXD_CHILD_ENV={bad:?}: {bad:?} is not a variable name (letters, digits and _, not starting with a digit)"
                )
            );
        }
    }

    #[test]
    fn decisions_parse() {
        assert_eq!(Decision::parse("Accept"), Some(Decision::Accept));
        assert_eq!(Decision::parse("deny"), Some(Decision::Decline));
        assert_eq!(Decision::parse("cancel"), Some(Decision::Cancel));
        assert_eq!(Decision::parse("yes"), None);
    }
}
