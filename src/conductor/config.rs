//! Conductor configuration: environment variables overridden by CLI flags, resolved into
//! one plain struct, with the startup rules (where the local API may listen) and the
//! warnings shown by `config` and `/v1/runtime`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use baa::common::netaddr::{is_tailscale_ip, ListenUrl};
use baa::common::secret::is_placeholder_token;

pub const DEFAULT_LOCAL_API: &str = "http://127.0.0.1:4317";
pub const DEFAULT_CONTROL_API_BASE: &str = "https://conductor.makefile.so";
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
    /// Exact `moz-extension://<uuid>` origins allowed on `/ws/firefox`.
    pub firefox_origins: Vec<String>,
    pub max_connections: usize,
    pub max_body_bytes: usize,
    /// Total time a client has to send a request head (and the first one after connect).
    pub head_timeout_ms: u64,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout_ms: u64,
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

/// A config problem that stops startup (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Config { json: bool },
    Help,
    Version,
}

/// Flags as typed, before merging with the environment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides(pub HashMap<&'static str, String>);

/// (flag, env var) pairs; the flag wins over the env var.
pub const SETTINGS: &[(&str, &str)] = &[
    ("node-id", "BAA_NODE_ID"),
    ("host", "BAA_CONDUCTOR_HOST"),
    ("role", "BAA_CONDUCTOR_ROLE"),
    ("control-api-base", "BAA_CONTROL_API_BASE"),
    ("local-api", "BAA_CONDUCTOR_LOCAL_API"),
    (
        "local-api-allowed-hosts",
        "BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS",
    ),
    ("codexd-local-api", CODEXD_ENV),
    ("shared-token", "BAA_SHARED_TOKEN"),
    ("shared-token-file", "BAA_SHARED_TOKEN_FILE"),
    ("priority", "BAA_CONDUCTOR_PRIORITY"),
    (
        "heartbeat-interval-ms",
        "BAA_CONDUCTOR_HEARTBEAT_INTERVAL_MS",
    ),
    ("lease-ttl-sec", "BAA_CONDUCTOR_LEASE_TTL_SEC"),
    (
        "lease-renew-interval-ms",
        "BAA_CONDUCTOR_LEASE_RENEW_INTERVAL_MS",
    ),
    (
        "renew-failure-threshold",
        "BAA_CONDUCTOR_RENEW_FAILURE_THRESHOLD",
    ),
    ("state-dir", "BAA_STATE_DIR"),
    ("logs-dir", "BAA_LOGS_DIR"),
    ("runs-dir", "BAA_RUNS_DIR"),
    ("worktrees-dir", "BAA_WORKTREES_DIR"),
    ("tmp-dir", "BAA_TMP_DIR"),
    ("firefox-origins", "BAA_FIREFOX_ALLOWED_ORIGINS"),
    ("max-connections", "BAA_CONDUCTOR_MAX_CONNECTIONS"),
    ("max-body-bytes", "BAA_CONDUCTOR_MAX_BODY_BYTES"),
    ("head-timeout-ms", "BAA_CONDUCTOR_HEAD_TIMEOUT_MS"),
    ("idle-timeout-ms", "BAA_CONDUCTOR_IDLE_TIMEOUT_MS"),
];

pub const USAGE: &str = "\
baa-conductor: the node's local control API (automation mode, lease, tasks, host ops, codex proxy)

USAGE:
    baa-conductor start [FLAGS]     run the daemon in the foreground
    baa-conductor config [FLAGS] [--json]
                                    print the resolved configuration and warnings
    baa-conductor routes [--json]   print the route table (nothing started, no config read)
    baa-conductor --help | --version

FLAGS (each overrides the environment variable shown):
    --node-id <id>                      BAA_NODE_ID (default mini-main)
    --host <host>                       BAA_CONDUCTOR_HOST (default mini)
    --role <primary|standby>            BAA_CONDUCTOR_ROLE (default primary)
    --control-api-base <url>            BAA_CONTROL_API_BASE
    --local-api <http://host:port>      BAA_CONDUCTOR_LOCAL_API (default http://127.0.0.1:4317)
    --local-api-allowed-hosts <csv>     BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS (Tailscale 100.64.0.0/10 only)
    --codexd-local-api <url>            BAA_CODEXD_LOCAL_API_BASE
    --shared-token <token>              BAA_SHARED_TOKEN (prefer the env var or a file: argv is visible to ps)
    --shared-token-file <path>          BAA_SHARED_TOKEN_FILE
    --priority <int>                    BAA_CONDUCTOR_PRIORITY
    --heartbeat-interval-ms <ms>        BAA_CONDUCTOR_HEARTBEAT_INTERVAL_MS (default 5000)
    --lease-ttl-sec <s>                 BAA_CONDUCTOR_LEASE_TTL_SEC (default 30)
    --lease-renew-interval-ms <ms>      BAA_CONDUCTOR_LEASE_RENEW_INTERVAL_MS (default 5000)
    --renew-failure-threshold <n>       BAA_CONDUCTOR_RENEW_FAILURE_THRESHOLD (default 2)
    --state-dir/--logs-dir/--runs-dir/--worktrees-dir/--tmp-dir <path>
                                        BAA_STATE_DIR, BAA_LOGS_DIR, BAA_RUNS_DIR, BAA_WORKTREES_DIR, BAA_TMP_DIR
    --firefox-origins <csv>             BAA_FIREFOX_ALLOWED_ORIGINS (moz-extension://<uuid> list)
    --max-connections <n>               BAA_CONDUCTOR_MAX_CONNECTIONS (default 512)
    --max-body-bytes <n>                BAA_CONDUCTOR_MAX_BODY_BYTES (default 1048576)
    --head-timeout-ms <ms>              BAA_CONDUCTOR_HEAD_TIMEOUT_MS (default 10000; whole request head)
    --idle-timeout-ms <ms>              BAA_CONDUCTOR_IDLE_TIMEOUT_MS (default 15000; idle keep-alive)

EXIT CODES: 0 ok, 1 runtime failure, 2 usage or configuration error.
";

/// Parses the command line (without the program name).
pub fn parse_args(args: Vec<OsString>) -> Result<(Command, Overrides), ConfigError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut command: Option<Command> = None;
    let mut json = false;
    let mut overrides = Overrides::default();
    let usage = |m: String| ConfigError(m);
    while let Some(arg) = parser.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => return Ok((Command::Help, overrides)),
            Short('V') | Long("version") => return Ok((Command::Version, overrides)),
            Long("json") => json = true,
            Long(name) => {
                let Some((flag, _)) = SETTINGS.iter().find(|(f, _)| *f == name) else {
                    return Err(usage(format!("unknown flag --{name}; see --help")));
                };
                let value = parser
                    .value()
                    .map_err(|e| usage(e.to_string()))?
                    .into_string()
                    .map_err(|_| usage(format!("--{flag} must be valid UTF-8")))?;
                overrides.0.insert(flag, value);
            }
            Value(v) if command.is_none() => {
                command = Some(match v.to_str() {
                    Some("start") => Command::Start,
                    Some("config") => Command::Config { json: false },
                    other => {
                        return Err(usage(format!(
                            "unknown command {:?}; expected start or config",
                            other.unwrap_or("?")
                        )))
                    }
                });
            }
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    let command = match command {
        Some(Command::Config { .. }) => Command::Config { json },
        Some(c) => c,
        None => {
            return Err(usage(
                "missing command: start or config (see --help)".into(),
            ))
        }
    };
    Ok((command, overrides))
}

/// Merges flags over environment and validates. `env` returns a variable's value;
/// `cwd` anchors relative directories.
pub fn resolve(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Config, ConfigError> {
    let get = |flag: &str| -> Option<String> {
        let var = SETTINGS.iter().find(|(f, _)| *f == flag).map(|(_, v)| *v)?;
        overrides
            .0
            .get(flag)
            .cloned()
            .or_else(|| env(var))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut warnings = Vec::new();

    let role = match get("role").as_deref() {
        None | Some("primary") => Role::Primary,
        Some("standby") => Role::Standby,
        Some(other) => {
            return Err(ConfigError(format!(
                "conductor role must be primary or standby, got {other:?}"
            )))
        }
    };

    let allowed_hosts: Vec<String> = get("local-api-allowed-hosts")
        .map(|csv| {
            csv.split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for h in &allowed_hosts {
        let ok = h.parse().is_ok_and(is_tailscale_ip);
        if !ok {
            return Err(ConfigError(format!(
                "BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS entry {h:?} is not a Tailscale 100.64.0.0/10 address"
            )));
        }
    }

    let (local_api_base, local_api_configured) = match get("local-api") {
        Some(v) => (normalize_base(&v), true),
        None => {
            warnings.push(format!(
                "BAA_CONDUCTOR_LOCAL_API is not configured; listening on the default {DEFAULT_LOCAL_API}."
            ));
            (DEFAULT_LOCAL_API.to_string(), false)
        }
    };
    let local_api = ListenUrl::parse(&local_api_base)
        .map_err(|e| ConfigError(format!("BAA_CONDUCTOR_LOCAL_API: {e}")))?;
    check_listen_host(&local_api, &allowed_hosts)?;

    let codexd_local_api_base = match get("codexd-local-api") {
        Some(v) => {
            let v = normalize_base(&v);
            ListenUrl::parse(&v).map_err(|e| ConfigError(format!("{CODEXD_ENV}: {e}")))?;
            Some(v)
        }
        None => {
            warnings.push(format!(
                "{CODEXD_ENV} is not configured; /v1/codex routes will stay unavailable."
            ));
            None
        }
    };

    let shared_token = match (get("shared-token"), get("shared-token-file")) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => {
            let raw = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("cannot read shared token file {path}: {e}")))?;
            Some(raw.trim().to_string()).filter(|t| !t.is_empty())
        }
        (None, None) => None,
    };
    match shared_token.as_deref() {
        None => warnings.push("BAA_SHARED_TOKEN is not configured; host operations (/v1/exec, /v1/files/*) answer 503.".into()),
        Some(t) if is_placeholder_token(t) => warnings.push(
            "BAA_SHARED_TOKEN is still the placeholder value; host operations stay disabled until a real token is set.".into(),
        ),
        Some(t) if t.len() < 16 => warnings.push("BAA_SHARED_TOKEN is shorter than 16 characters; use a long random token.".into()),
        Some(_) => {}
    }

    let heartbeat_interval_ms =
        number(get("heartbeat-interval-ms"), 5_000, "heartbeat interval", 1)?;
    let lease_ttl_sec = number(get("lease-ttl-sec"), 30, "lease TTL", 1)?;
    let lease_renew_interval_ms = number(
        get("lease-renew-interval-ms"),
        5_000,
        "lease renew interval",
        1,
    )?;
    let renew_failure_threshold = number(
        get("renew-failure-threshold"),
        2,
        "renew failure threshold",
        1,
    )? as u32;
    if lease_renew_interval_ms >= lease_ttl_sec * 1000 {
        warnings.push(
            "lease renew interval is >= lease TTL; leader renewals may race with lease expiry."
                .into(),
        );
    }
    let priority = match get("priority") {
        None => 0,
        Some(v) => v.parse::<i64>().map_err(|_| {
            ConfigError(format!("conductor priority must be an integer, got {v:?}"))
        })?,
    };

    let dir = |flag: &str, default: &str| -> PathBuf {
        let p = PathBuf::from(get(flag).unwrap_or_else(|| default.to_string()));
        if p.is_absolute() {
            p
        } else {
            cwd.join(p)
        }
    };
    let firefox_origins: Vec<String> = get("firefox-origins")
        .map(|csv| {
            csv.split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for o in &firefox_origins {
        let uuid = o.strip_prefix("moz-extension://").unwrap_or("");
        if uuid.is_empty() || uuid.contains('*') || uuid.contains('/') {
            return Err(ConfigError(format!(
                "BAA_FIREFOX_ALLOWED_ORIGINS entry {o:?} must be an exact moz-extension://<uuid> origin"
            )));
        }
    }

    Ok(Config {
        node_id: get("node-id").unwrap_or_else(|| "mini-main".into()),
        host: get("host").unwrap_or_else(|| "mini".into()),
        role,
        control_api_base: normalize_base(
            &get("control-api-base").unwrap_or_else(|| DEFAULT_CONTROL_API_BASE.into()),
        ),
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
        state_dir: dir("state-dir", "state"),
        logs_dir: dir("logs-dir", "logs"),
        runs_dir: dir("runs-dir", "runs"),
        worktrees_dir: dir("worktrees-dir", "worktrees"),
        tmp_dir: dir("tmp-dir", "tmp"),
        firefox_origins,
        max_connections: number(get("max-connections"), 512, "max connections", 4)? as usize,
        max_body_bytes: number(get("max-body-bytes"), 1024 * 1024, "max body bytes", 1024)?
            as usize,
        head_timeout_ms: number(get("head-timeout-ms"), 10_000, "head timeout ms", 100)?,
        idle_timeout_ms: number(get("idle-timeout-ms"), 15_000, "idle timeout ms", 100)?,
        version: env!("CARGO_PKG_VERSION").to_string(),
        warnings,
    })
}

/// The local API may bind loopback, or a host that is both listed in the allowed hosts
/// and inside Tailscale's 100.64.0.0/10. Everything else is refused at startup.
fn check_listen_host(url: &ListenUrl, allowed: &[String]) -> Result<(), ConfigError> {
    if url.is_loopback() {
        return Ok(());
    }
    let listed = allowed.iter().any(|h| h == &url.host);
    let tailscale = url.ip().is_some_and(is_tailscale_ip);
    if listed && tailscale {
        return Ok(());
    }
    Err(ConfigError(format!(
        "refusing to listen on {}: the local API must bind a loopback address, or a Tailscale 100.64.0.0/10 address listed in BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS",
        url.host
    )))
}

fn normalize_base(v: &str) -> String {
    v.trim().trim_end_matches('/').to_string()
}

fn number(v: Option<String>, default: u64, what: &str, min: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ConfigError(format!(
                "{what} must be an integer >= {min}, got {s:?}"
            ))),
        },
    }
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

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn resolve_with(flags: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut full = vec!["start"];
        full.extend_from_slice(flags);
        let (_, o) = parse_args(args(&full)).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&o, &|k| env.get(k).cloned(), Path::new("/srv/baa"))
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse_args(args(&["start"])).unwrap().0, Command::Start);
        assert_eq!(
            parse_args(args(&["config", "--json"])).unwrap().0,
            Command::Config { json: true }
        );
        assert_eq!(parse_args(args(&["--help"])).unwrap().0, Command::Help);
        assert_eq!(
            parse_args(args(&["--version"])).unwrap().0,
            Command::Version
        );
        assert!(parse_args(args(&[])).is_err());
        assert!(parse_args(args(&["run"])).is_err());
        assert!(parse_args(args(&["start", "--bogus", "1"])).is_err());
        assert!(parse_args(args(&["start", "--role"])).is_err());
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
                ("BAA_CONDUCTOR_HOST", "mini"),
                ("BAA_CONDUCTOR_LOCAL_API", "http://127.0.0.1:4317/"),
            ],
        )
        .unwrap();
        assert_eq!(c.node_id, "flag-node");
        assert_eq!(c.identity(), "flag-node@mini(primary)");
        assert_eq!(c.local_api_base, "http://127.0.0.1:4317");
        assert_eq!(
            c.codexd_local_api_base.as_deref(),
            Some("http://127.0.0.1:4319")
        );
        assert_eq!(c.firefox_ws_url(), "ws://127.0.0.1:4317/ws/firefox");
        assert_eq!(c.state_dir, PathBuf::from("/srv/baa/state"));
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
        let e = resolve_with(&["--local-api", "http://100.71.210.78:4317"], &[]).unwrap_err();
        assert!(e.0.contains("refusing to listen on 100.71.210.78"), "{e}");
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
        let e = resolve_with(
            &[
                "--local-api",
                "http://192.168.1.5:4317",
                "--local-api-allowed-hosts",
                "192.168.1.5",
            ],
            &[],
        )
        .unwrap_err();
        assert!(e.0.contains("not a Tailscale"), "{e}");
        // Wildcards and LAN addresses never.
        assert!(resolve_with(&["--local-api", "http://0.0.0.0:4317"], &[]).is_err());
    }

    #[test]
    fn bad_values_are_config_errors() {
        assert!(resolve_with(&["--role", "leader"], &[]).is_err());
        assert!(resolve_with(&["--priority", "high"], &[]).is_err());
        assert!(resolve_with(&["--lease-ttl-sec", "0"], &[]).is_err());
        assert!(resolve_with(&["--local-api", "127.0.0.1:4317"], &[]).is_err());
        assert!(resolve_with(&["--firefox-origins", "moz-extension://*"], &[]).is_err());
        assert!(resolve_with(&["--firefox-origins", "moz-extension://0f7d-uuid"], &[]).is_ok());
        assert!(resolve_with(&["--head-timeout-ms", "10"], &[]).is_err());
        assert!(resolve_with(&[], &[("BAA_CONDUCTOR_IDLE_TIMEOUT_MS", "soon")]).is_err());
    }

    #[test]
    fn http_timeouts_default_and_override() {
        let c = resolve_with(&[], &[]).unwrap();
        assert_eq!((c.head_timeout_ms, c.idle_timeout_ms), (10_000, 15_000));
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
}
