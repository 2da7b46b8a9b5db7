//! codexd configuration: `BAA_CODEXD_*` environment (SPEC §5.1) overridden by CLI flags,
//! resolved into one plain struct. Parsing is pure (the environment is passed in as a
//! lookup function) so it is unit-tested without a process.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use baa::common::netaddr::ListenUrl;

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

/// A configuration error: exit code 2 with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Values given on the command line; each overrides its env var.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub repo_root: Option<String>,
    pub local_api: Option<String>,
    pub state_dir: Option<String>,
    pub logs_dir: Option<String>,
    pub server_strategy: Option<String>,
    pub server_command: Option<String>,
    pub server_args: Option<String>,
    pub server_cwd: Option<String>,
    /// `--demo`: answer turns from the built-in loopback model.
    pub demo: bool,
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
    pub server_endpoint: String,
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
    /// How long `crash_loop` lasts before one more attempt.
    pub crash_loop_cooldown_ms: u64,
    /// Grace between SIGTERM and SIGKILL when stopping the child.
    pub stop_grace_ms: u64,
    /// A thread that went idle while codexd still thinks a turn runs is reconciled with
    /// `thread/read` after this long.
    pub reconcile_idle_ms: u64,
    /// Events kept in memory and in `recent-events.json`.
    pub recent_events: usize,
    /// Size at which stdout.log / stderr.log rotate (one `.1` generation kept).
    pub log_max_bytes: u64,
    /// Demo mode (`--demo` or `BAA_CODEXD_DEMO=1`): codexd runs the built-in loopback
    /// model provider and points the child's `CODEX_HOME` at [`Config::demo_codex_home`].
    pub demo: bool,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn get(env: Env, key: &str) -> Option<String> {
    env(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn num<T: std::str::FromStr>(env: Env, key: &str, default: T) -> Result<T, ConfigError> {
    match get(env, key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ConfigError(format!("{key}={v:?} is not a valid number"))),
    }
}

/// A boolean variable: unset/empty → false; `1`, `true`, `yes`, `on` → true; `0`,
/// `false`, `no`, `off` → false; anything else is a configuration error.
fn flag_env(env: Env, key: &str) -> Result<bool, ConfigError> {
    match get(env, key).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(ConfigError(format!(
            "{key}={other:?} must be 1 or 0 (true/false)"
        ))),
    }
}

pub const DEFAULT_EVENT_STREAM_PATH: &str = "/v1/codexd/events";

/// `BAA_CODEXD_EVENT_STREAM_PATH`, normalized. Apart from `resolve`, `routes` reads it alone:
/// it is the only setting a route path depends on.
pub fn event_stream_path(env: Env) -> Result<String, ConfigError> {
    let mut path = get(env, "BAA_CODEXD_EVENT_STREAM_PATH")
        .unwrap_or_else(|| DEFAULT_EVENT_STREAM_PATH.into());
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let path = path.trim_end_matches('/').to_string();
    if path.is_empty() || path.contains(':') {
        return Err(ConfigError(
            "BAA_CODEXD_EVENT_STREAM_PATH must be a plain path such as /v1/codexd/events".into(),
        ));
    }
    Ok(path)
}

impl Config {
    /// Resolves the configuration from an env lookup and flags.
    pub fn resolve(env: Env, flags: &Flags, cwd: &Path) -> Result<Config, ConfigError> {
        let pick = |flag: &Option<String>, key: &str| -> Option<String> {
            flag.clone()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .or_else(|| get(env, key))
        };
        let repo_root = pick(&flags.repo_root, "BAA_CODEXD_REPO_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| cwd.to_path_buf());
        let repo_root = absolute(&repo_root, cwd);

        let base = pick(&flags.local_api, "BAA_CODEXD_LOCAL_API_BASE")
            .unwrap_or_else(|| "http://127.0.0.1:4319".to_string());
        let base = base.trim_end_matches('/').to_string();
        let listen = ListenUrl::parse(&base)
            .map_err(|e| ConfigError(format!("BAA_CODEXD_LOCAL_API_BASE: {e}")))?;
        if !listen.is_loopback() {
            return Err(ConfigError(format!(
                "BAA_CODEXD_LOCAL_API_BASE={base} is not a loopback address; codexd only listens on 127.0.0.1, ::1 or localhost"
            )));
        }

        let event_stream_path = event_stream_path(env)?;

        let mode = get(env, "BAA_CODEXD_MODE").unwrap_or_else(|| "app-server".into());
        if mode != "app-server" {
            return Err(ConfigError(format!(
                "BAA_CODEXD_MODE={mode:?} is not supported; the only mode is app-server"
            )));
        }

        let state_dir = pick(&flags.state_dir, "BAA_CODEXD_STATE_DIR")
            .map(PathBuf::from)
            .or_else(|| get(env, "BAA_STATE_DIR").map(|d| PathBuf::from(d).join("codexd")))
            .unwrap_or_else(|| repo_root.join("state").join("codexd"));
        let logs_dir = pick(&flags.logs_dir, "BAA_CODEXD_LOGS_DIR")
            .map(PathBuf::from)
            .or_else(|| get(env, "BAA_LOGS_DIR").map(|d| PathBuf::from(d).join("codexd")))
            .unwrap_or_else(|| repo_root.join("logs").join("codexd"));

        let strategy = match pick(&flags.server_strategy, "BAA_CODEXD_SERVER_STRATEGY")
            .as_deref()
            .unwrap_or("spawn")
        {
            "spawn" => Strategy::Spawn,
            "external" => Strategy::External,
            other => {
                return Err(ConfigError(format!(
                    "BAA_CODEXD_SERVER_STRATEGY={other:?} must be spawn or external"
                )))
            }
        };
        let server_command = pick(&flags.server_command, "BAA_CODEXD_SERVER_COMMAND")
            .unwrap_or_else(|| "codex".into());
        let server_args = pick(&flags.server_args, "BAA_CODEXD_SERVER_ARGS")
            .unwrap_or_else(|| "app-server".into())
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let server_cwd =
            pick(&flags.server_cwd, "BAA_CODEXD_SERVER_CWD").map(|d| absolute(Path::new(&d), cwd));
        let server_endpoint = get(env, "BAA_CODEXD_SERVER_ENDPOINT")
            .unwrap_or_else(|| "stdio://codex-app-server".into());

        let default_approval = match get(env, "BAA_CODEXD_DEFAULT_APPROVAL") {
            None => Decision::Decline,
            Some(v) => Decision::parse(&v).ok_or_else(|| {
                ConfigError(format!(
                    "BAA_CODEXD_DEFAULT_APPROVAL={v:?} must be accept, decline or cancel"
                ))
            })?,
        };

        let cfg = Config {
            repo_root: repo_root.clone(),
            local_api_base: base,
            listen,
            event_stream_path,
            mode,
            logs_dir: absolute(&logs_dir, cwd),
            state_dir: absolute(&state_dir, cwd),
            strategy,
            server_command,
            server_args,
            server_cwd,
            server_endpoint,
            smoke_lifetime_ms: num(env, "BAA_CODEXD_SMOKE_LIFETIME_MS", 1500)?,
            version: get(env, "BAA_CODEXD_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            node_id: get(env, "BAA_NODE_ID").unwrap_or_else(|| "mini".into()),
            approval_timeout_ms: num(env, "BAA_CODEXD_APPROVAL_TIMEOUT_MS", 60_000)?,
            default_approval,
            request_timeout_ms: num(env, "BAA_CODEXD_REQUEST_TIMEOUT_MS", 30_000)?,
            restart_base_ms: num(env, "BAA_CODEXD_RESTART_BASE_MS", 500)?,
            restart_max_ms: num(env, "BAA_CODEXD_RESTART_MAX_MS", 30_000)?,
            restart_reset_ms: num(env, "BAA_CODEXD_RESTART_RESET_MS", 600_000)?,
            crash_loop_max: num(env, "BAA_CODEXD_CRASH_LOOP_MAX", 10)?,
            crash_loop_window_ms: num(env, "BAA_CODEXD_CRASH_LOOP_WINDOW_MS", 600_000)?,
            crash_loop_cooldown_ms: num(env, "BAA_CODEXD_CRASH_LOOP_COOLDOWN_MS", 900_000)?,
            stop_grace_ms: num(env, "BAA_CODEXD_STOP_GRACE_MS", 3_000)?,
            reconcile_idle_ms: num(env, "BAA_CODEXD_RECONCILE_IDLE_MS", 2_000)?,
            recent_events: num(env, "BAA_CODEXD_RECENT_EVENTS", 200usize)?.max(1),
            log_max_bytes: num(env, "BAA_CODEXD_LOG_MAX_BYTES", 10 * 1024 * 1024)?,
            demo: flags.demo || flag_env(env, "BAA_CODEXD_DEMO")?,
        };
        if cfg.request_timeout_ms == 0 {
            return Err(ConfigError(
                "BAA_CODEXD_REQUEST_TIMEOUT_MS must be greater than 0".into(),
            ));
        }
        if cfg.crash_loop_max == 0 {
            return Err(ConfigError(
                "BAA_CODEXD_CRASH_LOOP_MAX must be greater than 0".into(),
            ));
        }
        Ok(cfg)
    }

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
                "endpoint": self.server_endpoint,
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
                "crashLoopCooldownMs": self.crash_loop_cooldown_ms,
                "stopGraceMs": self.stop_grace_ms,
            },
            "smokeLifetimeMs": self.smoke_lifetime_ms,
            "demo": self.demo,
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
                "approvals: default={} timeout_ms={}",
                self.default_approval.as_str(),
                self.approval_timeout_ms
            ),
            format!("version: {}", self.version),
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

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(pairs: &[(&str, &str)], flags: Flags) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| map.get(k).cloned();
        Config::resolve(&env, &flags, Path::new("/repo"))
    }

    #[test]
    fn defaults() {
        let c = resolve(&[], Flags::default()).unwrap();
        assert_eq!(c.local_api_base, "http://127.0.0.1:4319");
        assert_eq!(c.event_stream_path, "/v1/codexd/events");
        assert_eq!(c.state_dir, PathBuf::from("/repo/state/codexd"));
        assert_eq!(c.logs_dir, PathBuf::from("/repo/logs/codexd"));
        assert_eq!(c.strategy, Strategy::Spawn);
        assert_eq!(c.server_command, "codex");
        assert_eq!(c.server_args, vec!["app-server".to_string()]);
        assert_eq!(c.default_approval, Decision::Decline);
        assert_eq!(
            c.event_stream_url("http://127.0.0.1:4319"),
            "ws://127.0.0.1:4319/v1/codexd/events"
        );
    }

    #[test]
    fn shared_dirs_and_flags() {
        let c = resolve(
            &[
                ("BAA_STATE_DIR", "/var/baa/state"),
                ("BAA_LOGS_DIR", "/var/baa/logs"),
                ("BAA_CODEXD_SERVER_ARGS", "app-server  --listen stdio://"),
                ("BAA_CODEXD_LOCAL_API_BASE", "http://127.0.0.1:4000/"),
            ],
            Flags {
                local_api: Some("http://localhost:0".into()),
                logs_dir: Some("rel/logs".into()),
                ..Flags::default()
            },
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/baa/state/codexd"));
        assert_eq!(c.logs_dir, PathBuf::from("/repo/rel/logs"));
        assert_eq!(c.local_api_base, "http://localhost:0");
        assert_eq!(c.server_args, vec!["app-server", "--listen", "stdio://"]);
    }

    #[test]
    fn refuses_non_loopback_and_bad_values() {
        let e = resolve(
            &[("BAA_CODEXD_LOCAL_API_BASE", "http://0.0.0.0:4319")],
            Flags::default(),
        )
        .unwrap_err();
        assert!(e.0.contains("not a loopback"), "{e}");
        let e = resolve(
            &[("BAA_CODEXD_LOCAL_API_BASE", "http://100.71.210.78:4319")],
            Flags::default(),
        )
        .unwrap_err();
        assert!(e.0.contains("not a loopback"), "{e}");
        for (k, v) in [
            ("BAA_CODEXD_MODE", "exec"),
            ("BAA_CODEXD_SERVER_STRATEGY", "fork"),
            ("BAA_CODEXD_DEFAULT_APPROVAL", "maybe"),
            ("BAA_CODEXD_APPROVAL_TIMEOUT_MS", "soon"),
            ("BAA_CODEXD_REQUEST_TIMEOUT_MS", "0"),
        ] {
            assert!(resolve(&[(k, v)], Flags::default()).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn demo_from_flag_or_env() {
        assert!(!resolve(&[], Flags::default()).unwrap().demo);
        let c = resolve(&[("BAA_CODEXD_DEMO", "1")], Flags::default()).unwrap();
        assert!(c.demo);
        assert_eq!(
            c.demo_codex_home(),
            PathBuf::from("/repo/state/codexd/demo-codex-home")
        );
        assert!(
            !resolve(&[("BAA_CODEXD_DEMO", "off")], Flags::default())
                .unwrap()
                .demo
        );
        let flagged = Flags {
            demo: true,
            ..Flags::default()
        };
        assert!(resolve(&[], flagged).unwrap().demo);
        let e = resolve(&[("BAA_CODEXD_DEMO", "maybe")], Flags::default()).unwrap_err();
        assert!(e.0.contains("BAA_CODEXD_DEMO"), "{e}");
    }

    #[test]
    fn decisions_parse() {
        assert_eq!(Decision::parse("Accept"), Some(Decision::Accept));
        assert_eq!(Decision::parse("deny"), Some(Decision::Decline));
        assert_eq!(Decision::parse("cancel"), Some(Decision::Cancel));
        assert_eq!(Decision::parse("yes"), None);
    }
}
