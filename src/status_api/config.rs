//! status-api configuration: its settings table and the pure step from flags +
//! environment to the plain [`Config`] it runs with, unit-tested without a process.

use std::net::IpAddr;

use crate::common::cli::{Cli, Command as CliCommand};
use crate::common::logging::{LOG_FILE, LOG_MAX_BYTES};
use crate::common::netaddr::is_tailscale_ip;
use crate::common::runtime_root::{self, RUNTIME_ROOT};
use crate::common::settings::{Resolver, Result, Setting};

pub const DEFAULT_CONDUCTOR: &str = "http://127.0.0.1:4317";
pub const DEFAULT_CODEXD: &str = "http://127.0.0.1:4319";

/// status-api's one command; a bare `baa-status-api` (as launchd runs it) is `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
}

pub const HOST: Setting = Setting::env("BAA_STATUS_API_HOST")
    .flag("host", "HOST")
    .default("127.0.0.1")
    .help("listen host: loopback, localhost or a Tailscale 100.64.0.0/10 address");
pub const PORT: Setting = Setting::env("BAA_STATUS_API_PORT")
    .flag("port", "PORT")
    .default("4318")
    .help("listen port (0 picks a free one)");
pub const CONDUCTOR: Setting = Setting::env("BAA_CONDUCTOR_LOCAL_API")
    .flag("conductor-local-api", "URL")
    .default(DEFAULT_CONDUCTOR)
    .help("conductor base URL to aggregate (/v1/runtime, /v1/system/state); a Tailscale address is read at 127.0.0.1 on the same port, where the conductor also listens");
pub const CODEXD: Setting = Setting::env("BAA_CODEXD_LOCAL_API_BASE")
    .flag("codexd-local-api", "URL")
    .default(DEFAULT_CODEXD)
    .help("codexd base URL to aggregate (/v1/codexd/status)");
pub const LOGS_DIR: Setting = Setting::env("BAA_LOGS_DIR")
    .flag("logs-dir", "DIR")
    .derived("${BAA_RUNTIME_ROOT}/logs, else the conductor's /v1/runtime paths.logsDir")
    .help("the node's logs dir (launchd out/err under launchd/, codexd's under codexd/); the page's hints name those files");
pub const LABEL_PREFIX: Setting = Setting::env("BAA_LAUNCHD_LABEL_PREFIX")
    .flag("label-prefix", "PREFIX")
    .default("so.makefile")
    .help("launchd label prefix of the services, for the log file names in the page's hints");
pub const RUST_LOG: Setting = Setting::env("RUST_LOG")
    .default("info")
    .help("log filter (env_logger); logs go to stderr")
    .external();

/// Every variable status-api reads.
pub const SETTINGS: &[Setting] = &[
    HOST,
    PORT,
    CONDUCTOR,
    CODEXD,
    LOGS_DIR,
    RUNTIME_ROOT,
    LABEL_PREFIX,
    RUST_LOG,
    LOG_FILE,
    LOG_MAX_BYTES,
];

pub const CLI: Cli<Command> = Cli {
    binary: "baa-status-api",
    about: "read-only status page and JSON aggregate for the baa-conductor node",
    commands: &[CliCommand {
        name: "start",
        help: "serve GET / (HTML page), GET /v1/status (JSON), GET /healthz",
        json: false,
        run: Command::Start,
    }],
    bare: Some(Command::Start),
    settings: SETTINGS,
    notes: "Routes and fields: docs/api/status-api-interfaces.md.\n",
};

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Without a trailing slash.
    pub conductor_base: String,
    pub codexd_base: String,
    /// Where launchd's and codexd's logs are, for the hints; None when not given.
    pub logs_dir: Option<String>,
    pub label_prefix: String,
}

/// Flags + environment → the validated config.
pub fn resolve(r: &Resolver) -> Result<Config> {
    let host = r.string(&HOST)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if let Err(why) = check_listen_host(&host) {
        return Err(r.rule(&HOST, format!("refusing to listen on {host}: {why}")));
    }
    Ok(Config {
        host,
        port: r.number(&PORT, 0..=u16::MAX)?,
        conductor_base: conductor_base(r)?,
        codexd_base: base_url(r, &CODEXD)?,
        logs_dir: r
            .opt_path(&LOGS_DIR)
            .or(runtime_root::under(r, "logs"))
            .map(|p| p.display().to_string()),
        label_prefix: label_prefix(r)?,
    })
}

impl Config {
    /// `host:port` for `TcpListener::bind`.
    pub fn bind_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The page shows who paused automation and why: it must not be published beyond the
/// node and its tailnet, so only loopback and Tailscale (100.64.0.0/10) binds are allowed.
fn check_listen_host(host: &str) -> std::result::Result<(), &'static str> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() || is_tailscale_ip(ip) => Ok(()),
        Ok(_) => Err(
            "the status page may only listen on a loopback or a Tailscale 100.64.0.0/10 address",
        ),
        Err(_) => Err("expected an IP literal (loopback or Tailscale 100.64.0.0/10) or localhost"),
    }
}

/// A launchd label prefix is reverse-DNS text; anything else would only garble the hints.
fn label_prefix(r: &Resolver) -> Result<String> {
    let p = r.string(&LABEL_PREFIX)?;
    let ok = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(p)
    } else {
        Err(r.invalid(&LABEL_PREFIX, "expected letters, digits, '.', '-' or '_'"))
    }
}

/// The conductor's base. It is this node's conductor (the variable is the one it listens
/// on), and one listening on a Tailscale address also listens on loopback at the same
/// port: read it there, so the page works while Tailscale is not up (as at boot).
fn conductor_base(r: &Resolver) -> Result<String> {
    let (_, parsed) = r.listen_url(&CONDUCTOR)?;
    if parsed.ip().is_some_and(is_tailscale_ip) {
        return Ok(format!("http://127.0.0.1:{}", parsed.port));
    }
    Ok(format!("http://{}", parsed.bind_addr()))
}

/// `http://host:port`, trailing slashes dropped.
fn base_url(r: &Resolver, s: &Setting) -> Result<String> {
    let (_, parsed) = r.listen_url(s)?;
    Ok(format!("http://{}", parsed.bind_addr()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::settings::Flags;
    use std::ffi::OsString;
    use std::path::Path;

    fn flags(args: &[&str]) -> Flags {
        CLI.parse(args.iter().map(OsString::from).collect())
            .unwrap()
            .flags
    }

    fn resolve_with(args: &[&str], env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let f = flags(args);
        resolve(&Resolver::new(SETTINGS, &f, &env, Path::new("/")))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn every_row_of_the_table_is_read() {
        let f = Flags::default();
        let r = Resolver::new(SETTINGS, &f, &no_env, Path::new("/"));
        assert!(resolve(&r).is_ok());
        assert_eq!(r.unread(), Vec::<String>::new());
    }

    #[test]
    fn defaults() {
        let c = resolve_with(&[], no_env).unwrap();
        assert_eq!(c.bind_addr(), "127.0.0.1:4318");
        assert_eq!(c.conductor_base, "http://127.0.0.1:4317");
        assert_eq!(c.codexd_base, "http://127.0.0.1:4319");
        assert_eq!(c.logs_dir, None);
        assert_eq!(c.label_prefix, "so.makefile");
    }

    #[test]
    fn logs_dir_and_label_prefix() {
        let env = |k: &str| match k {
            "BAA_LOGS_DIR" => Some("/var/log/baa".to_string()),
            "BAA_LAUNCHD_LABEL_PREFIX" => Some("com.example".to_string()),
            _ => None,
        };
        let c = resolve_with(&[], env).unwrap();
        assert_eq!(c.logs_dir.as_deref(), Some("/var/log/baa"));
        assert_eq!(c.label_prefix, "com.example");
        let e = resolve_with(&["--label-prefix", "a b"], no_env).unwrap_err();
        assert!(e.to_string().starts_with("--label-prefix"), "{e}");
    }

    #[test]
    fn the_runtime_root_implies_the_logs_dir_unless_it_is_given() {
        let env = |k: &str| (k == "BAA_RUNTIME_ROOT").then(|| "/srv/baa".to_string());
        let c = resolve_with(&[], env).unwrap();
        assert_eq!(c.logs_dir.as_deref(), Some("/srv/baa/logs"));
        let c = resolve_with(&["--logs-dir", "/var/log/baa"], env).unwrap();
        assert_eq!(c.logs_dir.as_deref(), Some("/var/log/baa"));
        let c = resolve_with(&["--root", "/other"], no_env).unwrap();
        assert_eq!(c.logs_dir.as_deref(), Some("/other/logs"));
    }

    #[test]
    fn flags_override_env_and_slashes_are_trimmed() {
        let env = |k: &str| match k {
            "BAA_STATUS_API_HOST" => Some("100.71.210.78".to_string()),
            "BAA_STATUS_API_PORT" => Some("5000".to_string()),
            "BAA_CONDUCTOR_LOCAL_API" => Some("http://100.71.210.78:4317/".to_string()),
            "BAA_CODEXD_LOCAL_API_BASE" => Some(String::new()),
            _ => None,
        };
        let c = resolve_with(&["start", "--port", "0"], env).unwrap();
        assert_eq!(c.host, "100.71.210.78");
        assert_eq!(c.port, 0);
        // Issue 20: a Tailscale conductor is read over the loopback listener beside it.
        assert_eq!(c.conductor_base, "http://127.0.0.1:4317");
        assert_eq!(c.codexd_base, DEFAULT_CODEXD);
    }

    #[test]
    fn refuses_public_and_wildcard_hosts() {
        for host in ["0.0.0.0", "192.168.1.10", "::", "100.128.0.1", "mini.local"] {
            let e = resolve_with(&["--host", host], no_env).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("--host: refusing to listen on {host}")),
                "{host}: {e}"
            );
        }
        for host in ["127.0.0.1", "::1", "localhost", "100.64.0.1"] {
            assert!(resolve_with(&["--host", host], no_env).is_ok(), "{host}");
        }
    }

    #[test]
    fn bad_values_are_errors() {
        let e = resolve_with(&["--port", "99999"], no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--port: expected an integer from 0 to 65535, got \"99999\""
        );
        let env = |k: &str| (k == "BAA_STATUS_API_PORT").then(|| "http".to_string());
        let e = resolve_with(&[], env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "BAA_STATUS_API_PORT=\"http\": expected an integer from 0 to 65535"
        );
        assert!(resolve_with(&["--conductor-local-api", "127.0.0.1:1"], no_env).is_err());
        assert!(CLI.parse(vec![OsString::from("--nope")]).is_err());
    }
}
