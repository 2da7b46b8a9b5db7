//! Conductor configuration: its settings table (every variable and flag it reads), and
//! the pure step from flags + environment to the typed [`Config`] it runs with, with the
//! start-up rules (where the local API may listen, dirs that must be set) and the warnings
//! shown by `config` and `/v1/runtime`.

use std::path::PathBuf;

use baa::common::cli::{Cli, Command as CliCommand};
use baa::common::logging::{LOG_FILE, LOG_MAX_BYTES};
use baa::common::netaddr::{is_tailscale_ip, ListenUrl};
use baa::common::runtime_root::{self, RUNTIME_ROOT};
use baa::common::secret::is_placeholder_token;
use baa::common::settings::{Resolver, Result, Setting};

pub const DEFAULT_LOCAL_API: &str = "http://127.0.0.1:4317";
pub const CODEXD_ENV: &str = "BAA_CODEXD_LOCAL_API_BASE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

/// The MCP endpoint's settings (`BAA_MCP_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    pub host_ops: bool,
    pub max_sessions: usize,
    pub session_idle_s: u64,
}

/// Everything the conductor runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: String,
    pub host: String,
    pub role: Role,
    pub control_api_base: String,
    /// The local API listen URL as configured (normalized), or the default.
    pub local_api_base: String,
    pub local_api: ListenUrl,
    pub local_api_configured: bool,
    pub local_api_allowed_hosts: Vec<String>,
    pub codexd_local_api_base: Option<String>,
    pub shared_token: Option<String>,
    pub priority: i64,
    pub heartbeat_interval_ms: u64,
    pub lease_ttl_sec: u64,
    pub lease_renew_interval_ms: u64,
    pub renew_failure_threshold: u32,
    pub state_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub runs_dir: PathBuf,
    pub worktrees_dir: PathBuf,
    pub tmp_dir: PathBuf,
    /// The checkout callers work in; `/describe` examples use it as their `cwd`.
    pub repo_root: PathBuf,
    /// Exact `moz-extension://<uuid>` origins allowed on `/ws/firefox`.
    pub firefox_origins: Vec<String>,
    pub max_connections: usize,
    pub max_body_bytes: usize,
    /// Total time a client has to send a request head (and the first one after connect).
    pub head_timeout_ms: u64,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout_ms: u64,
    /// Task runs (Codex turns through codexd) the scheduler keeps in flight at once.
    pub max_running_tasks: usize,
    /// Host `files/read` and `files/write` running at once; more answer `FILES_BUSY`.
    pub max_file_ops: usize,
    /// Finished tasks kept (with their runs and logs); older ones are pruned.
    pub task_retention: usize,
    /// First retry delay of a task whose run failed retryably; doubles per failure.
    pub task_backoff_ms: u64,
    /// Cap of that delay.
    pub task_backoff_max_ms: u64,
    /// Task workspaces: the allowed roots, the branch prefix, the commit author, how long
    /// a finished task's worktree is kept.
    pub workspaces: WorkspaceConfig,
    /// Notification targets, filter, signing key (`BAA_NOTIFY_*`).
    pub notify: crate::notify::settings::NotifyConfig,
    /// The MCP endpoint's limits and whether it offers the host-ops tools.
    pub mcp: McpConfig,
    /// Tests only: the file the schedules read the time from (`BAA_CONDUCTOR_CLOCK_FILE`).
    pub clock_file: Option<PathBuf>,
    pub version: String,
    pub warnings: Vec<String>,
}

impl Config {
    pub fn identity(&self) -> String {
        format!("{}@{}({})", self.node_id, self.host, self.role.as_str())
    }

    pub fn firefox_ws_url(&self) -> String {
        format!("ws://{}/ws/firefox", self.local_api.bind_addr())
    }

    pub fn usable_token(&self) -> Option<&str> {
        self.shared_token
            .as_deref()
            .filter(|t| !t.is_empty() && !is_placeholder_token(t))
    }

    pub fn uses_placeholder_token(&self) -> bool {
        self.shared_token
            .as_deref()
            .is_some_and(is_placeholder_token)
    }
}

/// How tasks get their workspaces (`BAA_CONDUCTOR_TASK_ROOTS` and the rest).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceConfig {
    /// A task's `cwd` must lie under one of these (canonical paths). Empty: no task may
    /// run until one is set.
    pub task_roots: Vec<PathBuf>,
    /// Whether `task_roots` was set (else it is the repo root, unless that is `/` or $HOME).
    pub task_roots_configured: bool,
    /// `baa/`: a task's branch is this plus its id.
    pub branch_prefix: String,
    /// `Name <email>` of the result commits.
    pub author_name: String,
    pub author_email: String,
    /// A finished task's worktree is removed this long after it finished (its branch stays).
    pub retention_s: u64,
}

/// The conductor's own commands; `help`, `settings` and `routes` are built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Config,
    /// `task …`: a client of a running conductor; handled before this parser (it has
    /// subcommands), listed here for the usage text.
    Task,
    /// `schedule …`: likewise.
    Schedule,
    /// `mcp-config`: likewise (prints, calls nothing).
    McpConfig,
}

pub const NODE_ID: Setting = Setting::env("BAA_NODE_ID")
    .flag("node-id", "ID")
    .default("mini-main")
    .help("node id: first part of identity (mini-main@mini(primary)) and the lease holder id");
pub const HOST: Setting = Setting::env("BAA_CONDUCTOR_HOST")
    .flag("host", "HOST")
    .default("mini")
    .help("host name in identity and in the controller record");
pub const ROLE: Setting = Setting::env("BAA_CONDUCTOR_ROLE")
    .flag("role", "ROLE")
    .default("primary")
    .help("primary contends for the lease; standby takes over only after it expires");
pub const CONTROL_API_BASE: Setting = Setting::env("BAA_CONTROL_API_BASE")
    .flag("control-api-base", "URL")
    .default("https://conductor.makefile.so")
    .help("compatibility name kept from the original system; reported, never called");
pub const LOCAL_API: Setting = Setting::env("BAA_CONDUCTOR_LOCAL_API")
    .flag("local-api", "URL")
    .default(DEFAULT_LOCAL_API)
    .help("listen URL http://HOST:PORT: loopback, or a listed Tailscale 100.64.0.0/10 address");
pub const LOCAL_API_ALLOWED_HOSTS: Setting = Setting::env("BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS")
    .flag("local-api-allowed-hosts", "CSV")
    .help("non-loopback hosts the local API may bind, each a Tailscale 100.64.0.0/10 address (unset: loopback only)");
pub const CODEXD_LOCAL_API: Setting = Setting::env(CODEXD_ENV)
    .flag("codexd-local-api", "URL")
    .help("codexd base URL for the /v1/codex* proxy (unset: those routes answer 503)");
pub const SHARED_TOKEN: Setting = Setting::env("BAA_SHARED_TOKEN")
    .flag("shared-token", "TOKEN")
    .help(
        "bearer token for /v1/exec and /v1/files/*; prefer the token file (argv is visible to ps)",
    );
pub const SHARED_TOKEN_FILE: Setting = Setting::env("BAA_SHARED_TOKEN_FILE")
    .flag("shared-token-file", "PATH")
    .help("file holding the token, mode 0600 or stricter (looser is refused); used when BAA_SHARED_TOKEN is unset");
pub const PRIORITY: Setting = Setting::env("BAA_CONDUCTOR_PRIORITY")
    .flag("priority", "N")
    .default("0")
    .help("integer lease tie-break, shown in /v1/controllers");
pub const HEARTBEAT_INTERVAL_MS: Setting = Setting::env("BAA_CONDUCTOR_HEARTBEAT_INTERVAL_MS")
    .flag("heartbeat-interval-ms", "MS")
    .default("5000")
    .help("how often the controller record is refreshed (>= 1)");
pub const LEASE_TTL_SEC: Setting = Setting::env("BAA_CONDUCTOR_LEASE_TTL_SEC")
    .flag("lease-ttl-sec", "S")
    .default("30")
    .help("lease lifetime; a standby may take over after it expires (>= 1)");
pub const LEASE_RENEW_INTERVAL_MS: Setting = Setting::env("BAA_CONDUCTOR_LEASE_RENEW_INTERVAL_MS")
    .flag("lease-renew-interval-ms", "MS")
    .default("5000")
    .help("how often the leader renews; >= the TTL gives a warning (>= 1)");
pub const RENEW_FAILURE_THRESHOLD: Setting = Setting::env("BAA_CONDUCTOR_RENEW_FAILURE_THRESHOLD")
    .flag("renew-failure-threshold", "N")
    .default("2")
    .help("consecutive renew failures after which the leader is degraded (>= 1)");
pub const STATE_DIR: Setting = Setting::env("BAA_STATE_DIR")
    .flag("state-dir", "DIR")
    .derived("${BAA_RUNTIME_ROOT}/state")
    .help("conductor state files; never the current directory");
pub const LOGS_DIR: Setting = Setting::env("BAA_LOGS_DIR")
    .flag("logs-dir", "DIR")
    .derived("${BAA_RUNTIME_ROOT}/logs")
    .help("logs dir, created at start");
pub const RUNS_DIR: Setting = Setting::env("BAA_RUNS_DIR")
    .flag("runs-dir", "DIR")
    .derived("${BAA_RUNTIME_ROOT}/runs")
    .help("runs dir, created at start");
pub const WORKTREES_DIR: Setting = Setting::env("BAA_WORKTREES_DIR")
    .flag("worktrees-dir", "DIR")
    .derived("${BAA_RUNTIME_ROOT}/worktrees")
    .help("worktrees dir, created at start");
pub const TMP_DIR: Setting = Setting::env("BAA_TMP_DIR")
    .flag("tmp-dir", "DIR")
    .derived("${BAA_RUNTIME_ROOT}/tmp")
    .help("scratch dir, created at start");
pub const REPO_ROOT: Setting = Setting::env("BAA_CONDUCTOR_REPO_ROOT")
    .flag("repo-root", "DIR")
    .help("the checkout callers work in, the cwd of the /describe examples (unset: the working directory)");
pub const FIREFOX_ORIGINS: Setting = Setting::env("BAA_FIREFOX_ALLOWED_ORIGINS")
    .flag("firefox-origins", "CSV")
    .help("exact moz-extension://<uuid> origins allowed on /ws/firefox (unset: only clients without Origin)");
pub const MAX_CONNECTIONS: Setting = Setting::env("BAA_CONDUCTOR_MAX_CONNECTIONS")
    .flag("max-connections", "N")
    .default("512")
    .help("open connections (>= 4; lowered to fit the open-files limit); when full the longest-waiting one is closed, a fast 503 only when all are busy");
pub const MAX_BODY_BYTES: Setting = Setting::env("BAA_CONDUCTOR_MAX_BODY_BYTES")
    .flag("max-body-bytes", "N")
    .default("1048576")
    .help("request body limit; larger gets 413 (>= 1024)");
pub const HEAD_TIMEOUT_MS: Setting = Setting::env("BAA_CONDUCTOR_HEAD_TIMEOUT_MS")
    .flag("head-timeout-ms", "MS")
    .default("10000")
    .help("total time to receive a request head, the first one included (>= 100)");
pub const IDLE_TIMEOUT_MS: Setting = Setting::env("BAA_CONDUCTOR_IDLE_TIMEOUT_MS")
    .flag("idle-timeout-ms", "MS")
    .default("15000")
    .help("how long an idle keep-alive connection stays open (>= 100)");
pub const MAX_RUNNING_TASKS: Setting = Setting::env("BAA_CONDUCTOR_MAX_RUNNING_TASKS")
    .flag("max-running-tasks", "N")
    .default("1")
    .help("task runs (Codex turns through codexd) in flight at once on the leader (1-64)");
pub const MAX_FILE_OPS: Setting = Setting::env("BAA_CONDUCTOR_MAX_FILE_OPS")
    .flag("max-file-ops", "N")
    .default("4")
    .help("host files/read and files/write running at once (1-64); more answer FILES_BUSY");
pub const TASK_RETENTION: Setting = Setting::env("BAA_CONDUCTOR_TASK_RETENTION")
    .flag("task-retention", "N")
    .default("5000")
    .help(
        "finished tasks kept with their runs and logs; older ones are pruned, oldest first (>= 1)",
    );
pub const TASK_BACKOFF_MS: Setting = Setting::env("BAA_CONDUCTOR_TASK_BACKOFF_MS")
    .flag("task-backoff-ms", "MS")
    .default("10000")
    .help("delay before a task whose run failed retryably runs again; doubles per failure (>= 1)");
pub const TASK_BACKOFF_MAX_MS: Setting = Setting::env("BAA_CONDUCTOR_TASK_BACKOFF_MAX_MS")
    .flag("task-backoff-max-ms", "MS")
    .default("300000")
    .help("cap of that delay (>= 1)");
pub const TASK_ROOTS: Setting = Setting::env("BAA_CONDUCTOR_TASK_ROOTS")
    .flag("task-roots", "DIRS")
    .help("comma-separated absolute dirs a task's cwd must lie under (unset: the repo root; / and $HOME only when listed)");
pub const BRANCH_PREFIX: Setting = Setting::env("BAA_CONDUCTOR_BRANCH_PREFIX")
    .flag("branch-prefix", "PREFIX")
    .default("baa/")
    .help("a worktree task's branch is this prefix plus the task id");
pub const GIT_AUTHOR: Setting = Setting::env("BAA_CONDUCTOR_GIT_AUTHOR")
    .flag("git-author", "NAME <EMAIL>")
    .default("baa-conductor <baa-conductor@localhost>")
    .help("author and committer of a task's result commit");
pub const WORKTREE_RETENTION: Setting = Setting::env("BAA_CONDUCTOR_WORKTREE_RETENTION")
    .flag("worktree-retention", "DURATION")
    .default("7d")
    .help("how long a finished task's worktree is kept (seconds, or 30m, 12h, 7d); its branch stays until merged or discarded");
pub const MCP_HOST_OPS: Setting = Setting::env("BAA_MCP_HOST_OPS")
    .switch("mcp-host-ops")
    .help("1: the MCP endpoint (/mcp) also offers the host-ops tools host_exec, host_files_read and host_files_write (they still need the bearer token)");
pub const MCP_MAX_SESSIONS: Setting = Setting::env("BAA_MCP_MAX_SESSIONS")
    .flag("mcp-max-sessions", "N")
    .default("64")
    .help("MCP sessions held at once (1-4096); an initialize past it is refused until one ends or idles out");
pub const MCP_SESSION_IDLE_S: Setting = Setting::env("BAA_MCP_SESSION_IDLE_S")
    .flag("mcp-session-idle-s", "S")
    .default("1800")
    .help("an MCP session unused this long ends (seconds, >= 1); its client then gets 404 and initializes again");
/// Test-only (hidden): the schedules' time source.
pub const CLOCK_FILE: Setting = Setting::env("BAA_CONDUCTOR_CLOCK_FILE")
    .help("tests only, never set in production: a file holding the current time in epoch ms, which the schedule fire loop reads (every 50 ms) instead of the system clock")
    .hidden();
pub const RUST_LOG: Setting = Setting::env("RUST_LOG")
    .default("info")
    .help("log filter (env_logger); logs go to stderr")
    .external();

/// Every variable the conductor reads, flags first (the usage text keeps this order).
pub const SETTINGS: &[Setting] = &[
    NODE_ID,
    HOST,
    ROLE,
    CONTROL_API_BASE,
    LOCAL_API,
    LOCAL_API_ALLOWED_HOSTS,
    CODEXD_LOCAL_API,
    SHARED_TOKEN,
    SHARED_TOKEN_FILE,
    PRIORITY,
    HEARTBEAT_INTERVAL_MS,
    LEASE_TTL_SEC,
    LEASE_RENEW_INTERVAL_MS,
    RENEW_FAILURE_THRESHOLD,
    RUNTIME_ROOT,
    STATE_DIR,
    LOGS_DIR,
    RUNS_DIR,
    WORKTREES_DIR,
    TMP_DIR,
    REPO_ROOT,
    FIREFOX_ORIGINS,
    MAX_CONNECTIONS,
    MAX_BODY_BYTES,
    HEAD_TIMEOUT_MS,
    IDLE_TIMEOUT_MS,
    MAX_RUNNING_TASKS,
    MAX_FILE_OPS,
    TASK_RETENTION,
    TASK_BACKOFF_MS,
    TASK_BACKOFF_MAX_MS,
    TASK_ROOTS,
    BRANCH_PREFIX,
    GIT_AUTHOR,
    WORKTREE_RETENTION,
    MCP_HOST_OPS,
    MCP_MAX_SESSIONS,
    MCP_SESSION_IDLE_S,
    crate::notify::settings::URLS,
    crate::notify::settings::EVENTS,
    crate::notify::settings::SECRET,
    crate::notify::settings::SECRET_FILE,
    crate::notify::settings::CA_FILE,
    crate::notify::settings::INCLUDE_PROMPT,
    crate::notify::settings::HOLD_GRACE_MS,
    crate::notify::settings::ACTION_BASE,
    CLOCK_FILE,
    RUST_LOG,
    LOG_FILE,
    LOG_MAX_BYTES,
    // Passed on to /v1/exec commands (and HOME locates the TCC-protected folders).
    pass_on("PATH"),
    HOME,
    pass_on("USER"),
    pass_on("LOGNAME"),
    pass_on("LANG"),
    pass_on("LC_ALL"),
    pass_on("TMPDIR"),
    pass_on("SHELL"),
    Setting::env("MALLOC_ARENA_MAX")
        .help("glibc: when set, the conductor keeps glibc's arena handling (else it caps arenas at 2 at start)")
        .external()
        .hidden(),
    Setting::env("XPC_SERVICE_NAME")
        .help("set by launchd on macOS; /v1/exec then refuses a cwd in a TCC-protected folder")
        .external()
        .hidden(),
];

/// Also where the default task root stops (`workspace_config`).
const HOME: Setting = pass_on("HOME");

const fn pass_on(env: &'static str) -> Setting {
    Setting::env(env)
        .help("passed on to /v1/exec commands")
        .external()
        .hidden()
}

pub const CLI: Cli<Command> = Cli {
    binary: "baa-conductor",
    about: "the node's local control API (automation mode, lease, tasks, host ops, codex proxy)",
    commands: &[
        CliCommand {
            name: "start",
            help: "run the daemon in the foreground",
            json: false,
            run: Command::Start,
        },
        CliCommand {
            name: "config",
            help: "print the resolved configuration and warnings (never the token)",
            json: true,
            run: Command::Config,
        },
        CliCommand {
            name: "task",
            help: "queue and watch tasks on a running conductor: task add|list|show|logs|cancel|retry ('task --help')",
            json: true,
            run: Command::Task,
        },
        CliCommand {
            name: "schedule",
            help: "manage schedules on a running conductor: schedule add|list|show|enable|disable|rm ('schedule --help')",
            json: true,
            run: Command::Schedule,
        },
        CliCommand {
            name: "mcp-config",
            help: "print the MCP client config for this node: Codex config.toml and Claude Code ('mcp-config --help')",
            json: false,
            run: Command::McpConfig,
        },
    ],
    bare: None,
    settings: SETTINGS,
    notes: "Relative paths resolve against the working directory. Every variable: docs/runtime/environment.md.\n",
};

/// Flags + environment → the validated config. Pure: the environment comes in through
/// the resolver's lookup function.
pub fn resolve(r: &Resolver) -> Result<Config> {
    let mut warnings = Vec::new();

    let role = match r.choice(&ROLE, &["primary", "standby"])? {
        "standby" => Role::Standby,
        _ => Role::Primary,
    };

    let allowed_hosts = r.list(&LOCAL_API_ALLOWED_HOSTS);
    if let Some(h) = allowed_hosts
        .iter()
        .find(|h| !h.parse().is_ok_and(is_tailscale_ip))
    {
        return Err(r.rule(
            &LOCAL_API_ALLOWED_HOSTS,
            format!("entry {h:?} is not a Tailscale 100.64.0.0/10 address"),
        ));
    }

    let local_api_configured = r.is_given(&LOCAL_API);
    if !local_api_configured {
        warnings.push(format!(
            "BAA_CONDUCTOR_LOCAL_API is not configured; listening on the default {DEFAULT_LOCAL_API}."
        ));
    }
    let (local_api_base, local_api) = r.listen_url(&LOCAL_API)?;
    if !may_listen(&local_api, &allowed_hosts) {
        return Err(r.rule(
            &LOCAL_API,
            format!(
                "refusing to listen on {}: the local API must bind a loopback address, or a Tailscale 100.64.0.0/10 address listed in BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS",
                local_api.host
            ),
        ));
    }

    let codexd_local_api_base = if r.is_given(&CODEXD_LOCAL_API) {
        Some(r.listen_url(&CODEXD_LOCAL_API)?.0)
    } else {
        warnings.push(format!(
            "{CODEXD_ENV} is not configured; /v1/codex routes will stay unavailable."
        ));
        None
    };

    let shared_token = r.secret(&SHARED_TOKEN, &SHARED_TOKEN_FILE)?;
    match shared_token.as_deref() {
        None => warnings.push("BAA_SHARED_TOKEN is not configured; host operations (/v1/exec, /v1/files/*) answer 503.".into()),
        Some(t) if is_placeholder_token(t) => warnings.push(
            "BAA_SHARED_TOKEN is still the placeholder value; host operations stay disabled until a real token is set.".into(),
        ),
        Some(t) if t.len() < 16 => warnings.push("BAA_SHARED_TOKEN is shorter than 16 characters; use a long random token.".into()),
        Some(_) => {}
    }

    let heartbeat_interval_ms = r.number(&HEARTBEAT_INTERVAL_MS, 1..=u64::MAX)?;
    let lease_ttl_sec = r.number(&LEASE_TTL_SEC, 1..=u64::MAX)?;
    let lease_renew_interval_ms = r.number(&LEASE_RENEW_INTERVAL_MS, 1..=u64::MAX)?;
    let renew_failure_threshold = r.number(&RENEW_FAILURE_THRESHOLD, 1..=u32::MAX)?;
    if lease_renew_interval_ms >= lease_ttl_sec.saturating_mul(1000) {
        warnings.push(
            "lease renew interval is >= lease TTL; leader renewals may race with lease expiry."
                .into(),
        );
    }

    let firefox_origins = r.list(&FIREFOX_ORIGINS);
    if let Some(o) = firefox_origins.iter().find(|o| {
        let uuid = o.strip_prefix("moz-extension://").unwrap_or("");
        uuid.is_empty() || uuid.contains('*') || uuid.contains('/')
    }) {
        return Err(r.rule(
            &FIREFOX_ORIGINS,
            format!("entry {o:?} must be an exact moz-extension://<uuid> origin"),
        ));
    }

    let node_id = r.string(&NODE_ID)?;
    let host = r.string(&HOST)?;
    let control_api_base = r.url(&CONTROL_API_BASE)?;
    let priority = r.number(&PRIORITY, i64::MIN..=i64::MAX)?;
    let max_connections = r.number(&MAX_CONNECTIONS, 4..=usize::MAX)?;
    let max_body_bytes = r.number(&MAX_BODY_BYTES, 1024..=usize::MAX)?;
    let head_timeout_ms = r.number(&HEAD_TIMEOUT_MS, 100..=u64::MAX)?;
    let idle_timeout_ms = r.number(&IDLE_TIMEOUT_MS, 100..=u64::MAX)?;
    let max_running_tasks = r.number(&MAX_RUNNING_TASKS, 1..=64)?;
    let max_file_ops = r.number(&MAX_FILE_OPS, 1..=64)?;
    let task_retention = r.number(&TASK_RETENTION, 1..=usize::MAX)?;
    let task_backoff_ms = r.number(&TASK_BACKOFF_MS, 1..=u64::MAX)?;
    let task_backoff_max_ms = r.number(&TASK_BACKOFF_MAX_MS, 1..=u64::MAX)?;
    let repo_root = r
        .opt_path(&REPO_ROOT)
        .unwrap_or_else(|| r.cwd().to_path_buf());
    let workspaces = workspace_config(r, &repo_root, &mut warnings)?;
    let notify = crate::notify::settings::resolve(r)?;
    let mcp = McpConfig {
        host_ops: r.bool(&MCP_HOST_OPS)?,
        max_sessions: r.number(&MCP_MAX_SESSIONS, 1..=4096)?,
        session_idle_s: r.number(&MCP_SESSION_IDLE_S, 1..=u64::MAX)?,
    };

    // Last, so a wrong value elsewhere is reported first; and all at once, so a person
    // starting it by hand learns every missing one from one try.
    let [state_dir, logs_dir, runs_dir, worktrees_dir, tmp_dir] = runtime_root::dirs(
        r,
        [
            (&STATE_DIR, "state"),
            (&LOGS_DIR, "logs"),
            (&RUNS_DIR, "runs"),
            (&WORKTREES_DIR, "worktrees"),
            (&TMP_DIR, "tmp"),
        ],
    )?;

    Ok(Config {
        node_id,
        host,
        role,
        control_api_base,
        local_api_base,
        local_api,
        local_api_configured,
        local_api_allowed_hosts: allowed_hosts,
        codexd_local_api_base,
        shared_token,
        priority,
        heartbeat_interval_ms,
        lease_ttl_sec,
        lease_renew_interval_ms,
        renew_failure_threshold,
        state_dir,
        logs_dir,
        runs_dir,
        worktrees_dir,
        tmp_dir,
        // launchd's WorkingDirectory is the checkout, so the cwd is the right fallback;
        // examples never carry a path of the machine they were written on.
        repo_root,
        firefox_origins,
        max_connections,
        max_body_bytes,
        head_timeout_ms,
        idle_timeout_ms,
        max_running_tasks,
        max_file_ops,
        task_retention,
        task_backoff_ms,
        task_backoff_max_ms,
        workspaces,
        notify,
        mcp,
        clock_file: r.opt_path(&CLOCK_FILE),
        version: env!("CARGO_PKG_VERSION").to_string(),
        warnings,
    })
}

fn workspace_config(
    r: &Resolver,
    repo_root: &std::path::Path,
    warnings: &mut Vec<String>,
) -> Result<WorkspaceConfig> {
    let listed = r.list(&TASK_ROOTS);
    let task_roots_configured = !listed.is_empty();
    let mut task_roots = Vec::new();
    for item in &listed {
        let p = std::path::Path::new(item);
        if !p.is_absolute() {
            return Err(r.rule(
                &TASK_ROOTS,
                format!("entry {item:?} must be an absolute directory"),
            ));
        }
        match std::fs::canonicalize(p) {
            Ok(c) => task_roots.push(c),
            Err(e) => warnings.push(format!(
                "task root {item} cannot be resolved ({e}); tasks under it are refused"
            )),
        }
    }
    if !task_roots_configured {
        // The repo root by default, but never `/` or the home directory (nor a directory
        // holding it) by accident: a daemon started from there would let a task write
        // anywhere. Listing one on purpose is allowed.
        let home = r
            .opt_string(&HOME)
            .and_then(|h| std::fs::canonicalize(h).ok());
        match std::fs::canonicalize(repo_root) {
            Ok(c) if too_broad_for_default(&c, home.as_deref()) => warnings.push(format!(
                "no task may run: the repo root {} is / or $HOME (or holds $HOME), which is a task root only when BAA_CONDUCTOR_TASK_ROOTS lists it",
                repo_root.display()
            )),
            Ok(c) => task_roots.push(c),
            Err(e) => warnings.push(format!(
                "the repo root {} cannot be resolved ({e}); set BAA_CONDUCTOR_TASK_ROOTS",
                repo_root.display()
            )),
        }
    }
    let branch_prefix = r.string(&BRANCH_PREFIX)?;
    if !valid_branch_prefix(&branch_prefix) {
        return Err(r.rule(
            &BRANCH_PREFIX,
            format!("{branch_prefix:?} must be letters, digits, '.', '_', '-' and '/' segments, ending in '/' or '-'"),
        ));
    }
    let author = r.string(&GIT_AUTHOR)?;
    let Some((author_name, author_email)) = parse_author(&author) else {
        return Err(r.rule(&GIT_AUTHOR, format!("{author:?} must read `Name <email>`")));
    };
    let retention = r.string(&WORKTREE_RETENTION)?;
    let Some(retention_s) = parse_duration_s(&retention) else {
        return Err(r.rule(
            &WORKTREE_RETENTION,
            format!("{retention:?} must be seconds or a number with s, m, h or d (7d)"),
        ));
    };
    Ok(WorkspaceConfig {
        task_roots,
        task_roots_configured,
        branch_prefix,
        author_name,
        author_email,
        retention_s,
    })
}

/// `/`, $HOME, or a directory that holds $HOME (`/Users`): never the default task root.
fn too_broad_for_default(root: &std::path::Path, home: Option<&std::path::Path>) -> bool {
    root.parent().is_none() || home.is_some_and(|h| h.starts_with(root))
}

/// `baa/`, `tasks/baa-`: segments git accepts in a branch name, so `<prefix><task_id>`
/// is one.
fn valid_branch_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && (p.ends_with('/') || p.ends_with('-'))
        && !p.starts_with(['/', '-', '.'])
        && !p.contains("..")
        && !p.contains("//")
        && !p.contains("/.")
        && !p.contains(".lock/")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

/// `Name <email>` → (name, email).
fn parse_author(s: &str) -> Option<(String, String)> {
    let (name, rest) = s.trim().split_once('<')?;
    let email = rest.strip_suffix('>')?.trim();
    let name = name.trim();
    let bad = |t: &str| t.is_empty() || t.contains(['<', '>', '\n', '\0']);
    (!bad(name) && !bad(email)).then(|| (name.to_string(), email.to_string()))
}

/// `3600`, `90s`, `30m`, `12h`, `7d` → seconds.
pub fn parse_duration_s(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.trim().parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Seconds as the largest whole unit (`7d`, `12h`, `90s`), the way the setting is written.
fn show_duration_s(s: u64) -> String {
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The local API may bind loopback, or a host that is both listed in the allowed hosts
/// and inside Tailscale's 100.64.0.0/10. Everything else is refused at startup.
fn may_listen(url: &ListenUrl, allowed: &[String]) -> bool {
    url.is_loopback()
        || (allowed.iter().any(|h| h == &url.host) && url.ip().is_some_and(is_tailscale_ip))
}

/// A config for other modules' unit tests: `flags` over an empty environment, dirs under
/// the system temp dir.
#[cfg(test)]
pub fn for_test(flags: &[(&'static str, &str)]) -> Config {
    let mut f = baa::common::settings::Flags::default();
    let tmp = std::env::temp_dir().join("baa-conductor-unit");
    for (dir, flag) in [
        ("state", "state-dir"),
        ("logs", "logs-dir"),
        ("runs", "runs-dir"),
        ("worktrees", "worktrees-dir"),
        ("tmp", "tmp-dir"),
    ] {
        f.set(flag, tmp.join(dir).display().to_string());
    }
    for (k, v) in flags {
        f.set(k, v.to_string());
    }
    let env = |_: &str| None;
    resolve(&Resolver::new(
        SETTINGS,
        &f,
        &env,
        std::path::Path::new("/"),
    ))
    .expect("test config")
}

/// The `config` command's text form.
pub fn render_text(c: &Config) -> String {
    let mut lines = vec![
        format!("identity: {}", c.identity()),
        format!("control_api_base: {}", c.control_api_base),
        format!(
            "codexd_local_api_base: {}",
            c.codexd_local_api_base
                .as_deref()
                .unwrap_or("not-configured")
        ),
        format!(
            "local_api_base: {}{}",
            c.local_api_base,
            if c.local_api_configured {
                ""
            } else {
                " (default)"
            }
        ),
        format!("firefox_ws_url: {}", c.firefox_ws_url()),
        format!(
            "local_api_allowed_hosts: {}",
            if c.local_api_allowed_hosts.is_empty() {
                "loopback-only".to_string()
            } else {
                c.local_api_allowed_hosts.join(",")
            }
        ),
        format!("priority: {}", c.priority),
        format!(
            "shared_token: {}",
            match c.shared_token.as_deref() {
                None => "not-configured",
                Some(t) if is_placeholder_token(t) => "placeholder",
                Some(_) => "configured",
            }
        ),
        format!("heartbeat_interval_ms: {}", c.heartbeat_interval_ms),
        format!("lease_ttl_sec: {}", c.lease_ttl_sec),
        format!("lease_renew_interval_ms: {}", c.lease_renew_interval_ms),
        format!("renew_failure_threshold: {}", c.renew_failure_threshold),
        format!("max_running_tasks: {}", c.max_running_tasks),
        format!("max_file_ops: {}", c.max_file_ops),
        format!("task_retention: {}", c.task_retention),
        format!(
            "task_roots: {}{}",
            if c.workspaces.task_roots.is_empty() {
                "none (no task may run)".to_string()
            } else {
                c.workspaces
                    .task_roots
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            if c.workspaces.task_roots_configured {
                ""
            } else {
                " (default: the repo root)"
            }
        ),
        format!("branch_prefix: {}", c.workspaces.branch_prefix),
        format!(
            "git_author: {} <{}>",
            c.workspaces.author_name, c.workspaces.author_email
        ),
        format!(
            "worktree_retention: {}",
            show_duration_s(c.workspaces.retention_s)
        ),
        format!("state_dir: {}", c.state_dir.display()),
        format!("logs_dir: {}", c.logs_dir.display()),
        format!("runs_dir: {}", c.runs_dir.display()),
        format!("worktrees_dir: {}", c.worktrees_dir.display()),
        format!("tmp_dir: {}", c.tmp_dir.display()),
        format!(
            "firefox_origins: {}",
            if c.firefox_origins.is_empty() {
                "none (loopback tools without Origin only)".to_string()
            } else {
                c.firefox_origins.join(",")
            }
        ),
    ];
    if c.warnings.is_empty() {
        lines.push("warnings: none".into());
    } else {
        for w in &c.warnings {
            lines.push(format!("warning: {w}"));
        }
    }
    lines.join("\n") + "\n"
}

/// The `config --json` form; never includes the token itself.
pub fn render_json(c: &Config) -> serde_json::Value {
    serde_json::json!({
        "identity": c.identity(),
        "nodeId": c.node_id,
        "host": c.host,
        "role": c.role.as_str(),
        "controlApiBase": c.control_api_base,
        "localApiBase": c.local_api_base,
        "localApiConfigured": c.local_api_configured,
        "localApiAllowedHosts": c.local_api_allowed_hosts,
        "firefoxWsUrl": c.firefox_ws_url(),
        "codexdLocalApiBase": c.codexd_local_api_base,
        "hasSharedToken": c.shared_token.is_some(),
        "usesPlaceholderToken": c.uses_placeholder_token(),
        "priority": c.priority,
        "heartbeatIntervalMs": c.heartbeat_interval_ms,
        "leaseTtlSec": c.lease_ttl_sec,
        "leaseRenewIntervalMs": c.lease_renew_interval_ms,
        "renewFailureThreshold": c.renew_failure_threshold,
        "maxRunningTasks": c.max_running_tasks,
        "maxFileOps": c.max_file_ops,
        "taskRetention": c.task_retention,
        "taskBackoffMs": c.task_backoff_ms,
        "taskBackoffMaxMs": c.task_backoff_max_ms,
        "workspaces": {
            "taskRoots": c.workspaces.task_roots,
            "taskRootsConfigured": c.workspaces.task_roots_configured,
            "branchPrefix": c.workspaces.branch_prefix,
            "gitAuthor": format!("{} <{}>", c.workspaces.author_name, c.workspaces.author_email),
            "worktreeRetentionS": c.workspaces.retention_s,
        },
        "mcp": {
            "hostOps": c.mcp.host_ops,
            "maxSessions": c.mcp.max_sessions,
            "sessionIdleS": c.mcp.session_idle_s,
        },
        "paths": {
            "stateDir": c.state_dir, "logsDir": c.logs_dir, "runsDir": c.runs_dir,
            "worktreesDir": c.worktrees_dir, "tmpDir": c.tmp_dir,
        },
        "firefoxOrigins": c.firefox_origins,
        "warnings": c.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use baa::common::settings::Flags;
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};

    const DIRS: &[&str] = &[
        "--state-dir",
        "/srv/baa/state",
        "--logs-dir",
        "/srv/baa/logs",
        "--runs-dir",
        "runs",
        "--worktrees-dir",
        "/srv/baa/worktrees",
        "--tmp-dir",
        "/srv/baa/tmp",
    ];

    fn flags(args: &[&str]) -> Flags {
        let mut full = vec!["start"];
        full.extend_from_slice(args);
        CLI.parse(full.into_iter().map(OsString::from).collect())
            .unwrap()
            .flags
    }

    /// Resolves `args` (plus the dirs) over `env`; also returns the rows nobody read.
    fn resolve_all(args: &[&str], env: &[(&str, &str)]) -> (Result<Config>, Vec<String>) {
        let mut with_dirs = DIRS.to_vec();
        with_dirs.extend_from_slice(args);
        let f = flags(&with_dirs);
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        let r = Resolver::new(SETTINGS, &f, &lookup, Path::new("/srv/baa"));
        let c = resolve(&r);
        (c, r.unread())
    }

    fn resolve_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config> {
        resolve_all(args, env).0
    }

    fn err(args: &[&str], env: &[(&str, &str)]) -> String {
        match resolve_with(args, env) {
            Ok(_) => panic!("{args:?} {env:?} resolved"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_row_of_the_table_is_read() {
        let (c, unread) = resolve_all(&[], &[]);
        assert!(c.is_ok(), "{c:?}");
        assert_eq!(unread, Vec::<String>::new());
    }

    #[test]
    fn flags_override_env_and_slashes_are_trimmed() {
        let c = resolve_with(
            &[
                "--node-id",
                "flag-node",
                "--codexd-local-api",
                "http://127.0.0.1:4319/",
            ],
            &[
                ("BAA_NODE_ID", "env-node"),
                ("BAA_CONDUCTOR_HOST", " mini "),
                ("BAA_CONDUCTOR_LOCAL_API", "http://127.0.0.1:4317/"),
                ("BAA_CONTROL_API_BASE", "https://conductor.example/"),
            ],
        )
        .unwrap();
        assert_eq!(c.node_id, "flag-node");
        assert_eq!(c.identity(), "flag-node@mini(primary)");
        assert_eq!(c.local_api_base, "http://127.0.0.1:4317");
        assert_eq!(c.control_api_base, "https://conductor.example");
        assert_eq!(
            c.codexd_local_api_base.as_deref(),
            Some("http://127.0.0.1:4319")
        );
        assert_eq!(c.firefox_ws_url(), "ws://127.0.0.1:4317/ws/firefox");
        assert_eq!(c.state_dir, PathBuf::from("/srv/baa/state"));
        // An explicit relative dir is anchored at the working directory.
        assert_eq!(c.runs_dir, PathBuf::from("/srv/baa/runs"));
    }

    /// Resolves `args` over `env` without the test dirs, in the working directory `/cwd`.
    fn resolve_bare(args: &[&str], env: &[(&str, &str)]) -> Result<Config> {
        let f = flags(args);
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        resolve(&Resolver::new(SETTINGS, &f, &lookup, Path::new("/cwd")))
    }

    fn dirs_of(c: &Config) -> [&Path; 5] {
        [
            &c.state_dir,
            &c.logs_dir,
            &c.runs_dir,
            &c.worktrees_dir,
            &c.tmp_dir,
        ]
        .map(PathBuf::as_path)
    }

    #[test]
    fn the_runtime_root_implies_each_dir() {
        let want =
            ["state", "logs", "runs", "worktrees", "tmp"].map(|d| Path::new("/srv/baa").join(d));
        let c = resolve_bare(&[], &[("BAA_RUNTIME_ROOT", "/srv/baa/")]).unwrap();
        assert_eq!(dirs_of(&c), want.each_ref().map(PathBuf::as_path));
        // The flag wins over the variable; a relative root is anchored at the cwd.
        let c = resolve_bare(&["--root", "node"], &[("BAA_RUNTIME_ROOT", "/srv/baa")]).unwrap();
        assert_eq!(c.tmp_dir, PathBuf::from("/cwd/node/tmp"));
        assert_eq!(c.state_dir, PathBuf::from("/cwd/node/state"));
    }

    #[test]
    fn an_explicit_dir_overrides_the_root() {
        let c = resolve_bare(
            &["--root", "/srv/baa", "--runs-dir", "/data/runs"],
            &[("BAA_LOGS_DIR", "/var/log/baa"), ("BAA_STATE_DIR", " ")],
        )
        .unwrap();
        assert_eq!(
            dirs_of(&c),
            [
                Path::new("/srv/baa/state"),
                Path::new("/var/log/baa"),
                Path::new("/data/runs"),
                Path::new("/srv/baa/worktrees"),
                Path::new("/srv/baa/tmp"),
            ]
        );
        // All five given: no root needed.
        let c = resolve_with(&[], &[]).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/baa/state"));
    }

    #[test]
    fn no_root_and_no_dirs_is_one_line_naming_the_root() {
        let e = resolve_bare(&[], &[("BAA_STATE_DIR", "")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "BAA_RUNTIME_ROOT (or --root) is not set: set it to the directory that holds state/, logs/, runs/, worktrees/ and tmp/ (runtime dirs never default to the current directory)"
        );
        // Some dirs but not all: the others are named as well.
        let e = resolve_bare(&["--state-dir", "/s"], &[("BAA_TMP_DIR", "/t")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "BAA_RUNTIME_ROOT (or --root) is not set, nor BAA_LOGS_DIR (or --logs-dir), BAA_RUNS_DIR (or --runs-dir), BAA_WORKTREES_DIR (or --worktrees-dir); set the root or each of these (runtime dirs never default to the current directory)"
        );
    }

    #[test]
    fn warnings_for_missing_pieces() {
        let c = resolve_with(&[], &[]).unwrap();
        let w = c.warnings.join("\n");
        assert!(
            w.contains("BAA_CONDUCTOR_LOCAL_API is not configured"),
            "{w}"
        );
        assert!(w.contains("/v1/codex routes will stay unavailable"), "{w}");
        assert!(w.contains("BAA_SHARED_TOKEN is not configured"), "{w}");

        let c = resolve_with(
            &["--lease-ttl-sec", "5", "--lease-renew-interval-ms", "5000"],
            &[("BAA_SHARED_TOKEN", "replace-me")],
        )
        .unwrap();
        let w = c.warnings.join("\n");
        assert!(w.contains("renew interval is >= lease TTL"), "{w}");
        assert!(w.contains("placeholder"), "{w}");
        assert!(c.uses_placeholder_token());
        assert_eq!(c.usable_token(), None);
    }

    #[test]
    fn allowed_hosts_rule() {
        // Loopback always.
        assert!(resolve_with(&["--local-api", "http://localhost:4317"], &[]).is_ok());
        // A Tailscale address only when listed.
        let e = err(&["--local-api", "http://100.71.210.78:4317"], &[]);
        assert!(
            e.starts_with("--local-api: refusing to listen on 100.71.210.78"),
            "{e}"
        );
        assert!(resolve_with(
            &[
                "--local-api",
                "http://100.71.210.78:4317",
                "--local-api-allowed-hosts",
                "100.71.210.78"
            ],
            &[]
        )
        .is_ok());
        // Listed hosts must themselves be Tailscale addresses.
        let e = err(
            &["--local-api", "http://192.168.1.5:4317"],
            &[("BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS", "192.168.1.5")],
        );
        assert_eq!(
            e,
            "BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS: entry \"192.168.1.5\" is not a Tailscale 100.64.0.0/10 address"
        );
        // Wildcards and LAN addresses never.
        assert!(resolve_with(&["--local-api", "http://0.0.0.0:4317"], &[]).is_err());
    }

    #[test]
    fn bad_values_name_their_source() {
        assert_eq!(
            err(&["--role", "leader"], &[]),
            "--role: expected primary or standby, got \"leader\""
        );
        assert_eq!(
            err(&[], &[("BAA_CONDUCTOR_ROLE", "leader")]),
            "BAA_CONDUCTOR_ROLE=\"leader\": expected primary or standby"
        );
        assert_eq!(
            err(&["--priority", "high"], &[]),
            "--priority: expected an integer, got \"high\""
        );
        assert_eq!(
            err(&["--lease-ttl-sec", "0"], &[]),
            "--lease-ttl-sec: expected an integer >= 1, got \"0\""
        );
        assert_eq!(
            err(&[], &[("BAA_CONDUCTOR_RENEW_FAILURE_THRESHOLD", "4294967296")]),
            "BAA_CONDUCTOR_RENEW_FAILURE_THRESHOLD=\"4294967296\": expected an integer from 1 to 4294967295"
        );
        assert_eq!(
            err(&["--local-api", "127.0.0.1:4317"], &[]),
            "--local-api: expected http://HOST:PORT (plain http), got \"127.0.0.1:4317\""
        );
        assert!(err(&["--firefox-origins", "moz-extension://*"], &[])
            .starts_with("--firefox-origins: entry \"moz-extension://*\""));
        assert!(resolve_with(&["--firefox-origins", "moz-extension://0f7d-uuid"], &[]).is_ok());
        assert!(err(&["--head-timeout-ms", "10"], &[]).contains(">= 100"));
        assert!(err(&[], &[("BAA_CONDUCTOR_IDLE_TIMEOUT_MS", "soon")])
            .starts_with("BAA_CONDUCTOR_IDLE_TIMEOUT_MS=\"soon\""));
        assert!(err(&["--control-api-base", "conductor.makefile.so"], &[])
            .starts_with("--control-api-base: expected an http:// or https:// URL"));
    }

    #[test]
    fn http_timeouts_default_and_override() {
        let c = resolve_with(&[], &[]).unwrap();
        assert_eq!((c.head_timeout_ms, c.idle_timeout_ms), (10_000, 15_000));
        assert_eq!((c.max_connections, c.max_body_bytes), (512, 1024 * 1024));
        let c = resolve_with(
            &["--head-timeout-ms", "1500"],
            &[
                ("BAA_CONDUCTOR_HEAD_TIMEOUT_MS", "900"),
                ("BAA_CONDUCTOR_IDLE_TIMEOUT_MS", "2500"),
            ],
        )
        .unwrap();
        assert_eq!((c.head_timeout_ms, c.idle_timeout_ms), (1500, 2500));
    }

    #[test]
    fn text_render_never_shows_token() {
        let c = resolve_with(&[], &[("BAA_SHARED_TOKEN", "s3cret-s3cret-s3cret")]).unwrap();
        let text = render_text(&c);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("codexd_local_api_base: not-configured"),
            "{text}"
        );
        assert!(
            text.contains("local_api_allowed_hosts: loopback-only"),
            "{text}"
        );
        assert!(!render_json(&c).to_string().contains("s3cret"));
    }

    /// A real directory (the roots are canonicalized), removed by the caller.
    fn scratch_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(baa::common::ids::new_id(&format!("cfg-{tag}")));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::canonicalize(&d).unwrap()
    }

    #[test]
    fn task_roots_are_absolute_and_default_to_the_repo_root_but_never_to_slash_or_home() {
        let d = scratch_dir("roots");
        let (repo, home) = (d.join("home/me/src/app"), d.join("home/me"));
        std::fs::create_dir_all(&repo).unwrap();
        let s = |p: &Path| p.display().to_string();
        let home_env = [("HOME", s(&home))];
        let env: Vec<(&str, &str)> = home_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ws = |args: &[&str]| resolve_with(args, &env).unwrap();

        // Relative entries are refused, naming the setting.
        assert_eq!(
            err(&["--task-roots", "src,/tmp"], &[]),
            "--task-roots: entry \"src\" must be an absolute directory"
        );
        assert!(err(&[], &[("BAA_CONDUCTOR_TASK_ROOTS", "./x")])
            .starts_with("BAA_CONDUCTOR_TASK_ROOTS"));

        // Listed: canonical, in order; one that does not exist is a warning, not a root.
        let c = ws(&[
            "--task-roots",
            &format!("{}, {}/../me/src ,/no/such/dir", s(&repo), s(&home)),
        ]);
        assert_eq!(c.workspaces.task_roots, [repo.clone(), home.join("src")]);
        assert!(c.workspaces.task_roots_configured);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("/no/such/dir cannot be resolved")),
            "{:?}",
            c.warnings
        );

        // Unset: the repo root.
        let c = ws(&["--repo-root", &s(&repo)]);
        assert_eq!(c.workspaces.task_roots, vec![repo.clone()]);
        assert!(!c.workspaces.task_roots_configured);

        // Unset, and the repo root is /, $HOME or holds $HOME: no root, and a warning that
        // names the setting.
        for broad in [PathBuf::from("/"), home.clone(), d.join("home")] {
            let c = ws(&["--repo-root", &s(&broad)]);
            assert!(
                c.workspaces.task_roots.is_empty(),
                "{broad:?}: {:?}",
                c.workspaces
            );
            let w = c.warnings.join("\n");
            assert!(
                w.contains("no task may run") && w.contains("BAA_CONDUCTOR_TASK_ROOTS lists it"),
                "{broad:?}: {w}"
            );
        }
        // Listed on purpose, they are roots.
        let c = ws(&[
            "--task-roots",
            &format!("/,{}", s(&home)),
            "--repo-root",
            "/",
        ]);
        assert_eq!(c.workspaces.task_roots, [PathBuf::from("/"), home.clone()]);
        assert!(!c.warnings.iter().any(|w| w.contains("no task may run")));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn branch_prefix_author_and_retention_parse_or_name_their_setting() {
        let c = resolve_with(&[], &[]).unwrap();
        let w = &c.workspaces;
        assert_eq!(w.branch_prefix, "baa/");
        assert_eq!(
            (w.author_name.as_str(), w.author_email.as_str()),
            ("baa-conductor", "baa-conductor@localhost")
        );
        assert_eq!(w.retention_s, 7 * 86_400);

        for ok in ["baa/", "tasks/baa-", "team.x/ai_runs/"] {
            let c = resolve_with(&["--branch-prefix", ok], &[]).unwrap();
            assert_eq!(c.workspaces.branch_prefix, ok);
        }
        for bad in [
            "baa",
            "/baa/",
            "-x/",
            ".x/",
            "a..b/",
            "a//b/",
            "a/.b/",
            "x.lock/y/",
            "a b/",
            "a~/",
            "ä/",
        ] {
            let e = err(&["--branch-prefix", bad], &[]);
            assert!(
                e.starts_with("--branch-prefix: ") && e.contains("must be"),
                "{bad}: {e}"
            );
        }
        assert!(err(&[], &[("BAA_CONDUCTOR_BRANCH_PREFIX", "x")])
            .starts_with("BAA_CONDUCTOR_BRANCH_PREFIX"));

        let c = resolve_with(
            &[],
            &[(
                "BAA_CONDUCTOR_GIT_AUTHOR",
                "  Jane Q. Doe  < jane@example.com > ",
            )],
        )
        .unwrap();
        assert_eq!(
            (
                c.workspaces.author_name.as_str(),
                c.workspaces.author_email.as_str()
            ),
            ("Jane Q. Doe", "jane@example.com")
        );
        for bad in [
            "Jane",
            "<jane@example.com>",
            "Jane <>",
            "Jane <j@e",
            "Jane j@e>",
            "Ja<ne <j@e>",
            "Jane <j<@e>",
        ] {
            let e = err(&["--git-author", bad], &[]);
            assert!(
                e.starts_with("--git-author: ") && e.contains("Name <email>"),
                "{bad}: {e}"
            );
        }

        for (text, secs) in [
            ("7d", 604_800),
            ("12h", 43_200),
            ("30m", 1_800),
            ("90s", 90),
            ("3600", 3_600),
            ("0", 0),
        ] {
            let c = resolve_with(&[], &[("BAA_CONDUCTOR_WORKTREE_RETENTION", text)]).unwrap();
            assert_eq!(c.workspaces.retention_s, secs, "{text}");
            assert_eq!(
                show_duration_s(secs),
                if text == "3600" {
                    "1h"
                } else if text == "0" {
                    "0s"
                } else {
                    text
                }
            );
        }
        for bad in ["7w", "d", "-1", "1.5h", "7 days", "99999999999999999999d"] {
            let e = err(&["--worktree-retention", bad], &[]);
            assert!(
                e.starts_with("--worktree-retention: ") && e.contains("(7d)"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_config_command_shows_the_workspace_settings() {
        let c = resolve_with(
            &[
                "--task-roots",
                "/",
                "--branch-prefix",
                "ai/",
                "--worktree-retention",
                "12h",
            ],
            &[("BAA_CONDUCTOR_GIT_AUTHOR", "Bot <bot@example.com>")],
        )
        .unwrap();
        let text = render_text(&c);
        for line in [
            "task_roots: /\n",
            "branch_prefix: ai/\n",
            "git_author: Bot <bot@example.com>\n",
            "worktree_retention: 12h\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        let json = render_json(&c);
        assert_eq!(json["workspaces"]["worktreeRetentionS"], 43_200);
        assert_eq!(json["workspaces"]["gitAuthor"], "Bot <bot@example.com>");
        // Unset roots over a repo root that cannot be resolved: none, said plainly.
        let text = render_text(&resolve_with(&["--repo-root", "/no/such/dir"], &[]).unwrap());
        assert!(
            text.contains("task_roots: none (no task may run) (default: the repo root)"),
            "{text}"
        );
    }

    #[test]
    fn usage_lists_every_flag_and_variable() {
        let usage = CLI.usage();
        for s in SETTINGS.iter().filter(|s| !s.hidden) {
            assert!(
                usage.contains(&s.name()),
                "usage lacks {}:\n{usage}",
                s.name()
            );
            if let Some(e) = s.env {
                assert!(usage.contains(e), "usage lacks {e}:\n{usage}");
            }
        }
    }
}
