//! Where a client command (`task`, `schedule`, `mcp-config`, any command that talks to a
//! running conductor) finds it, without flags on the node: `--conductor-url`, else
//! `BAA_CONDUCTOR_LOCAL_API` (a shell with the daemon's environment), else node.env's
//! `BAA_CONDUCTOR_URL` (the installed node, see `common::node_env`), else
//! `http://127.0.0.1:4317`. The token likewise: `BAA_SHARED_TOKEN` /
//! `BAA_SHARED_TOKEN_FILE`, else node.env's `BAA_SHARED_TOKEN_FILE`. Where the URL came
//! from is kept, so "cannot reach" can say which setting to fix.

use std::fmt;
use std::path::{Path, PathBuf};

use baa::common::cli;
use baa::common::node_env::{self, NodeEnv};
use baa::common::settings::{Error, Flags, Resolver, Result, Setting};

use crate::config::{DEFAULT_LOCAL_API, SHARED_TOKEN, SHARED_TOKEN_FILE};

/// The `--conductor-url` flag and the daemon's own variable (its default is resolved
/// here, after node.env, not by the table).
pub const CONDUCTOR_URL: Setting = Setting::env("BAA_CONDUCTOR_LOCAL_API")
    .flag("conductor-url", "URL")
    .help("the running conductor's local API (http://HOST:PORT)");

/// The lookup order, for the client commands' usage texts.
pub const WHERE: &str = "\nWithout --conductor-url: env BAA_CONDUCTOR_LOCAL_API, else BAA_CONDUCTOR_URL in node.env\n($HOME/.config/baa-conductor/node.env, or the file BAA_NODE_ENV_FILE names), else\nhttp://127.0.0.1:4317. The token: env BAA_SHARED_TOKEN or BAA_SHARED_TOKEN_FILE, else\nBAA_SHARED_TOKEN_FILE in node.env.\n";

/// The settings a client command reads; the token from the environment only (argv is
/// visible to `ps`).
pub const SETTINGS: &[Setting] = &[CONDUCTOR_URL, SHARED_TOKEN, SHARED_TOKEN_FILE];

/// node.env's URL, checked with the same rule as the flag.
const NODE_URL: Setting = Setting::env(node_env::CONDUCTOR_URL);

/// Where the conductor's URL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    Flag,
    Env,
    NodeEnv(PathBuf),
    /// None of the above; node.env was looked for at this path (if any).
    Default(Option<PathBuf>),
}

impl fmt::Display for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlSource::Flag => f.write_str("from --conductor-url"),
            UrlSource::Env => f.write_str("from BAA_CONDUCTOR_LOCAL_API"),
            UrlSource::NodeEnv(p) => write!(f, "from BAA_CONDUCTOR_URL in {}", p.display()),
            UrlSource::Default(Some(p)) => write!(
                f,
                "the default: no --conductor-url, no BAA_CONDUCTOR_LOCAL_API, no BAA_CONDUCTOR_URL in {}",
                p.display()
            ),
            UrlSource::Default(None) => f.write_str(
                "the default: no --conductor-url, no BAA_CONDUCTOR_LOCAL_API, no node.env (HOME unset)",
            ),
        }
    }
}

/// The conductor a client talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://HOST:PORT`, no trailing slash.
    pub base: String,
    pub from: UrlSource,
}

/// A client command's view of its settings: flags, environment, working dir, node.env.
pub struct ClientSettings<'a> {
    flags: &'a Flags,
    env: &'a dyn Fn(&str) -> Option<String>,
    cwd: &'a Path,
    node: Option<NodeEnv>,
    /// Where node.env was looked for.
    node_path: Option<PathBuf>,
}

impl<'a> ClientSettings<'a> {
    /// Reads node.env (located through `env`); its problems are returned as warnings.
    pub fn new(
        flags: &'a Flags,
        env: &'a dyn Fn(&str) -> Option<String>,
        cwd: &'a Path,
    ) -> (Self, Vec<String>) {
        let node_path = NodeEnv::locate(env);
        let (node, warnings) = NodeEnv::load(env);
        let s = ClientSettings {
            flags,
            env,
            cwd,
            node,
            node_path,
        };
        (s, warnings)
    }

    /// As [`ClientSettings::new`], printing node.env's warnings on stderr (once: callers
    /// build this once per command).
    pub fn for_command(
        binary: &str,
        flags: &'a Flags,
        env: &'a dyn Fn(&str) -> Option<String>,
        cwd: &'a Path,
    ) -> Self {
        let (s, warnings) = Self::new(flags, env, cwd);
        for w in warnings {
            cli::error_line(binary, &format!("warning: {w}"));
        }
        s
    }

    /// The conductor's URL and where it came from.
    pub fn target(&self) -> Result<Target> {
        let r = Resolver::new(SETTINGS, self.flags, self.env, self.cwd);
        if let Some(g) = r.given(&CONDUCTOR_URL) {
            let from = match g.origin {
                baa::common::settings::Origin::Flag(_) => UrlSource::Flag,
                _ => UrlSource::Env,
            };
            return Ok(target(r.url(&CONDUCTOR_URL)?, from));
        }
        if let Some(node) = &self.node {
            if node.get(node_env::CONDUCTOR_URL).is_some() {
                let lookup = |k: &str| node.get(k).map(str::to_string);
                let nr = Resolver::new(
                    std::slice::from_ref(&NODE_URL),
                    self.flags,
                    &lookup,
                    self.cwd,
                );
                let url = nr
                    .url(&NODE_URL)
                    .map_err(|e| Error::rule(format!("{e} (in {})", node.path.display())))?;
                return Ok(target(url, UrlSource::NodeEnv(node.path.clone())));
            }
        }
        Ok(target(
            DEFAULT_LOCAL_API.to_string(),
            UrlSource::Default(self.node_path.clone()),
        ))
    }

    /// The bearer token: the environment's, else the file node.env names; None without.
    pub fn token(&self) -> Result<Option<String>> {
        let r = Resolver::new(SETTINGS, self.flags, self.env, self.cwd);
        if let Some(t) = r.secret(&SHARED_TOKEN, &SHARED_TOKEN_FILE)? {
            return Ok(Some(t));
        }
        let Some(node) = &self.node else {
            return Ok(None);
        };
        if node.get(node_env::SHARED_TOKEN_FILE).is_none() {
            return Ok(None);
        }
        let lookup = |k: &str| {
            (k == node_env::SHARED_TOKEN_FILE)
                .then(|| node.get(k).map(str::to_string))
                .flatten()
        };
        let no_flags = Flags::default();
        let nr = Resolver::new(SETTINGS, &no_flags, &lookup, self.cwd);
        nr.secret(&SHARED_TOKEN, &SHARED_TOKEN_FILE)
            .map_err(|e| Error::rule(format!("{e} (named in {})", node.path.display())))
    }
}

/// What a client command of this process talks to: the conductor, and the token when
/// `with_token` (a command that only reads leaves a bad token file alone). Flags, then
/// the process's environment, then node.env (its warnings printed once).
pub fn for_this_process(
    binary: &str,
    flags: &Flags,
    with_token: bool,
) -> Result<(Target, Option<String>)> {
    let env = |k: &str| std::env::var(k).ok();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let settings = ClientSettings::for_command(binary, flags, &env, &cwd);
    let target = settings.target()?;
    let token = if with_token { settings.token()? } else { None };
    Ok((target, token))
}

fn target(url: String, from: UrlSource) -> Target {
    Target {
        base: url.trim_end_matches('/').to_string(),
        from,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    struct Node {
        dir: PathBuf,
    }

    impl Node {
        fn new(tag: &str, text: &str) -> Node {
            let dir = std::env::temp_dir()
                .join(format!("baa-client-target-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join(".config/baa-conductor")).unwrap();
            std::fs::write(dir.join(".config/baa-conductor/node.env"), text).unwrap();
            Node { dir }
        }

        fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
            let mut m: HashMap<String, String> = extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.insert("HOME".into(), self.dir.display().to_string());
            m
        }
    }

    impl Drop for Node {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn resolve(
        flags: &[(&'static str, &str)],
        env: &HashMap<String, String>,
    ) -> (Result<Target>, Result<Option<String>>, Vec<String>) {
        let mut f = Flags::default();
        for (k, v) in flags {
            f.set(k, v.to_string());
        }
        let lookup = |k: &str| env.get(k).cloned();
        let (s, warnings) = ClientSettings::new(&f, &lookup, Path::new("/"));
        (s.target(), s.token(), warnings)
    }

    #[test]
    fn flag_then_env_then_node_env_then_loopback() {
        let node = Node::new("order", "BAA_CONDUCTOR_URL=http://127.0.0.1:5000/\n");
        let node_file = node.dir.join(".config/baa-conductor/node.env");
        let env = node.env(&[("BAA_CONDUCTOR_LOCAL_API", "http://127.0.0.1:6000")]);
        let (t, ..) = resolve(&[("conductor-url", "http://127.0.0.1:7000")], &env);
        assert_eq!(t.unwrap().from, UrlSource::Flag);
        let t = resolve(&[], &env).0.unwrap();
        assert_eq!(
            (t.base.as_str(), t.from),
            ("http://127.0.0.1:6000", UrlSource::Env)
        );
        let t = resolve(&[], &node.env(&[])).0.unwrap();
        assert_eq!(
            (t.base.as_str(), t.from),
            (
                "http://127.0.0.1:5000",
                UrlSource::NodeEnv(node_file.clone())
            )
        );
        let elsewhere = node.env(&[("BAA_NODE_ENV_FILE", "/nonexistent/node.env")]);
        let t = resolve(&[], &elsewhere).0.unwrap();
        assert_eq!(t.base, "http://127.0.0.1:4317");
        assert_eq!(
            t.from.to_string(),
            "the default: no --conductor-url, no BAA_CONDUCTOR_LOCAL_API, no BAA_CONDUCTOR_URL in /nonexistent/node.env"
        );
    }

    #[test]
    fn a_bad_node_env_url_names_the_file_and_bad_lines_warn() {
        let node = Node::new("bad", "oops\nBAA_CONDUCTOR_URL=127.0.0.1:5000\n");
        let (t, _, warnings) = resolve(&[], &node.env(&[]));
        let e = t.unwrap_err().to_string();
        assert!(
            e.contains("BAA_CONDUCTOR_URL") && e.contains("node.env"),
            "{e}"
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].ends_with("node.env:1: not KEY=VALUE, skipped"),
            "{warnings:?}"
        );
    }

    #[test]
    fn token_from_env_else_the_file_node_env_names() {
        let node = Node::new("token", "");
        let file = node.dir.join(".config/baa-conductor/shared-token.txt");
        std::fs::write(&file, "node-token-0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            node.dir.join(".config/baa-conductor/node.env"),
            format!("BAA_SHARED_TOKEN_FILE={}\n", file.display()),
        )
        .unwrap();
        let (_, token, _) = resolve(&[], &node.env(&[]));
        assert_eq!(
            token.unwrap().as_deref(),
            Some("node-token-0123456789abcdef")
        );
        let (_, token, _) = resolve(&[], &node.env(&[("BAA_SHARED_TOKEN", "env-token")]));
        assert_eq!(token.unwrap().as_deref(), Some("env-token"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, token, _) = resolve(&[], &node.env(&[]));
        let e = token.unwrap_err().to_string();
        assert!(e.contains("node.env"), "{e}");
    }
}
