//! Command line + environment → the plain `Config` the daemon runs with.
//!
//! Two pure steps, as in ripgrep: `parse_args` turns argv into `RawArgs` (what was typed),
//! `Config::resolve` merges it with the environment and validates. Both are unit-tested
//! without a process; `main.rs` only wires them to the real argv/env.

use std::fmt;
use std::net::IpAddr;

use crate::common::netaddr::{is_tailscale_ip, ListenUrl};

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 4318;
pub const DEFAULT_CONDUCTOR: &str = "http://127.0.0.1:4317";
pub const DEFAULT_CODEXD: &str = "http://127.0.0.1:4319";

pub const USAGE: &str = "\
baa-status-api: read-only status page and JSON aggregate for the baa-conductor node

USAGE:
    baa-status-api [OPTIONS]
    baa-status-api routes [--json]   print the route table; nothing is started

OPTIONS:
    --host HOST                  listen host (env BAA_STATUS_API_HOST, default 127.0.0.1);
                                 must be loopback or a Tailscale 100.64.0.0/10 address
    --port PORT                  listen port (env BAA_STATUS_API_PORT, default 4318; 0 = any free)
    --conductor-local-api URL    conductor base URL (env BAA_CONDUCTOR_LOCAL_API,
                                 default http://127.0.0.1:4317)
    --codexd-local-api URL       codexd base URL (env BAA_CODEXD_LOCAL_API_BASE,
                                 default http://127.0.0.1:4319)
    -h, --help                   print this help
    -V, --version                print the version

ROUTES:
    GET /          HTML status page
    GET /v1/status JSON aggregate of conductor and codexd status
    GET /healthz   ok
";

/// What the command line said, before defaults and validation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawArgs {
    pub host: Option<String>,
    pub port: Option<String>,
    pub conductor: Option<String>,
    pub codexd: Option<String>,
    pub help: bool,
    pub version: bool,
}

/// A usage or configuration mistake; the process exits 2 with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub fn parse_args<I>(args: I) -> Result<RawArgs, ConfigError>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut raw = RawArgs::default();
    let err = |e: lexopt::Error| ConfigError(e.to_string());
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Long("host") => raw.host = Some(value(&mut p)?),
            Long("port") => raw.port = Some(value(&mut p)?),
            Long("conductor-local-api") => raw.conductor = Some(value(&mut p)?),
            Long("codexd-local-api") => raw.codexd = Some(value(&mut p)?),
            Short('h') | Long("help") => raw.help = true,
            Short('V') | Long("version") => raw.version = true,
            other => return Err(err(other.unexpected())),
        }
    }
    Ok(raw)
}

fn value(p: &mut lexopt::Parser) -> Result<String, ConfigError> {
    p.value()
        .map_err(|e| ConfigError(e.to_string()))?
        .into_string()
        .map_err(|_| ConfigError("option value is not valid UTF-8".into()))
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Without a trailing slash.
    pub conductor_base: String,
    pub codexd_base: String,
}

impl Config {
    /// Flags win over env, env over defaults. Empty env values count as unset, because
    /// launchd plists and shell scripts often write `KEY=` for "not configured".
    pub fn resolve(
        raw: &RawArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let pick = |flag: &Option<String>, key: &str, default: &str| -> String {
            flag.clone()
                .or_else(|| env(key).filter(|v| !v.trim().is_empty()))
                .unwrap_or_else(|| default.to_string())
                .trim()
                .to_string()
        };
        let host = pick(&raw.host, "BAA_STATUS_API_HOST", DEFAULT_HOST);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        check_listen_host(&host)?;
        let port_text = pick(&raw.port, "BAA_STATUS_API_PORT", &DEFAULT_PORT.to_string());
        let port: u16 = port_text
            .parse()
            .map_err(|_| ConfigError(format!("invalid port {port_text:?}: expected 0-65535")))?;
        let conductor_base = base_url(
            &pick(&raw.conductor, "BAA_CONDUCTOR_LOCAL_API", DEFAULT_CONDUCTOR),
            "conductor local API (BAA_CONDUCTOR_LOCAL_API / --conductor-local-api)",
        )?;
        let codexd_base = base_url(
            &pick(&raw.codexd, "BAA_CODEXD_LOCAL_API_BASE", DEFAULT_CODEXD),
            "codexd local API (BAA_CODEXD_LOCAL_API_BASE / --codexd-local-api)",
        )?;
        Ok(Self {
            host,
            port,
            conductor_base,
            codexd_base,
        })
    }

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
fn check_listen_host(host: &str) -> Result<(), ConfigError> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() || is_tailscale_ip(ip) => Ok(()),
        Ok(_) => Err(ConfigError(format!(
            "refusing to listen on {host}: BAA_STATUS_API_HOST must be a loopback address or a \
             Tailscale 100.64.0.0/10 address"
        ))),
        Err(_) => Err(ConfigError(format!(
            "refusing to listen on {host:?}: BAA_STATUS_API_HOST must be an IP literal \
             (loopback or Tailscale 100.64.0.0/10) or localhost"
        ))),
    }
}

/// `http://host:port`, trailing slashes dropped.
fn base_url(url: &str, what: &str) -> Result<String, ConfigError> {
    let parsed = ListenUrl::parse(url).map_err(|e| ConfigError(format!("{what}: {e}")))?;
    Ok(format!("http://{}", parsed.bind_addr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> RawArgs {
        parse_args(a.iter().map(|s| s.to_string())).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults() {
        let c = Config::resolve(&RawArgs::default(), no_env).unwrap();
        assert_eq!(c.bind_addr(), "127.0.0.1:4318");
        assert_eq!(c.conductor_base, "http://127.0.0.1:4317");
        assert_eq!(c.codexd_base, "http://127.0.0.1:4319");
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
        let c = Config::resolve(&args(&["--port", "0"]), env).unwrap();
        assert_eq!(c.host, "100.71.210.78");
        assert_eq!(c.port, 0);
        assert_eq!(c.conductor_base, "http://100.71.210.78:4317");
        assert_eq!(c.codexd_base, DEFAULT_CODEXD);
    }

    #[test]
    fn refuses_public_and_wildcard_hosts() {
        for host in ["0.0.0.0", "192.168.1.10", "::", "100.128.0.1", "mini.local"] {
            let e = Config::resolve(&args(&["--host", host]), no_env).unwrap_err();
            assert!(e.0.contains("refusing"), "{host}: {e}");
        }
        for host in ["127.0.0.1", "::1", "localhost", "100.64.0.1"] {
            assert!(
                Config::resolve(&args(&["--host", host]), no_env).is_ok(),
                "{host}"
            );
        }
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::resolve(&args(&["--port", "99999"]), no_env).is_err());
        assert!(Config::resolve(&args(&["--conductor-local-api", "127.0.0.1:1"]), no_env).is_err());
        assert!(parse_args(["--nope"]).is_err());
        assert!(args(&["--help"]).help);
        assert!(args(&["-V"]).version);
    }
}
