//! The installed node's settings file, `node.env`: how a plain shell on the node (no
//! launchd environment) finds the conductor and the token. Written by install
//! (`scripts/runtime/`), read by the `baa-conductor` client commands.
//!
//! Format: `KEY=VALUE` lines; `#` comments and blank lines are skipped; no quotes, no
//! expansion, no `export`. Unknown keys are kept but nobody asks for them. A line without
//! `=` is reported (file:line) and skipped: one bad line must not hide the good ones.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Names another node.env than the default one (tests; an operator with two nodes).
pub const FILE_ENV: &str = "BAA_NODE_ENV_FILE";
/// The loopback URL a client on the node uses.
pub const CONDUCTOR_URL: &str = "BAA_CONDUCTOR_URL";
/// The shared token file (mode 600).
pub const SHARED_TOKEN_FILE: &str = "BAA_SHARED_TOKEN_FILE";

/// A read node.env: its values and the lines it skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeEnv {
    pub path: PathBuf,
    values: BTreeMap<String, String>,
    /// `FILE:LINE: ...` for each line that is not `KEY=VALUE`.
    pub warnings: Vec<String>,
}

/// A node.env that exists but cannot be read.
#[derive(Debug)]
pub struct ReadError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for ReadError {}

impl NodeEnv {
    /// Where node.env is: `BAA_NODE_ENV_FILE`, else `$HOME/.config/baa-conductor/node.env`;
    /// None without either.
    pub fn locate(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if let Some(p) = set(FILE_ENV) {
            return Some(PathBuf::from(p.trim()));
        }
        set("HOME").map(|h| Path::new(h.trim()).join(".config/baa-conductor/node.env"))
    }

    /// Reads the file at `path`; a missing file is `Ok(None)` (a dev machine has none).
    pub fn read(path: &Path) -> Result<Option<NodeEnv>, ReadError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(Self::parse(path, &text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ReadError {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Locates and reads node.env for a client command; a problem reading it is a warning
    /// (the other sources still work), returned with the file's own warnings.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> (Option<NodeEnv>, Vec<String>) {
        let Some(path) = Self::locate(env) else {
            return (None, Vec::new());
        };
        match Self::read(&path) {
            Ok(Some(n)) => {
                let w = n.warnings.clone();
                (Some(n), w)
            }
            Ok(None) => (None, Vec::new()),
            Err(e) => (None, vec![e.to_string()]),
        }
    }

    pub fn parse(path: &Path, text: &str) -> NodeEnv {
        let mut values = BTreeMap::new();
        let mut warnings = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    values.insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => warnings.push(format!(
                    "{}:{}: not KEY=VALUE, skipped",
                    path.display(),
                    i + 1
                )),
            }
        }
        NodeEnv {
            path: path.to_path_buf(),
            values,
            warnings,
        }
    }

    /// The value of `key`, None when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NodeEnv {
        NodeEnv::parse(Path::new("/n/node.env"), text)
    }

    #[test]
    fn reads_keys_skipping_comments_and_blank_lines() {
        let n = parse(
            "# written by install-mini.sh\n\nBAA_CONDUCTOR_URL=http://127.0.0.1:4317\n  BAA_SHARED_TOKEN_FILE = /h/.config/baa-conductor/shared-token.txt  \nBAA_SOMETHING_NEW=x\n",
        );
        assert_eq!(n.get(CONDUCTOR_URL), Some("http://127.0.0.1:4317"));
        assert_eq!(
            n.get(SHARED_TOKEN_FILE),
            Some("/h/.config/baa-conductor/shared-token.txt")
        );
        // Unknown keys are ignored by the readers, never an error.
        assert!(n.warnings.is_empty(), "{:?}", n.warnings);
        assert_eq!(n.get("BAA_RUNTIME_ROOT"), None);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line_and_the_rest_still_read() {
        let n = parse(
            "BAA_CONDUCTOR_URL=http://127.0.0.1:1\nexport\n=nokey\nBAA_SHARED_TOKEN_FILE=/t\n",
        );
        assert_eq!(
            n.warnings,
            vec![
                "/n/node.env:2: not KEY=VALUE, skipped".to_string(),
                "/n/node.env:3: not KEY=VALUE, skipped".to_string(),
            ]
        );
        assert_eq!(n.get(CONDUCTOR_URL), Some("http://127.0.0.1:1"));
        assert_eq!(n.get(SHARED_TOKEN_FILE), Some("/t"));
    }

    #[test]
    fn no_quotes_or_expansion() {
        let n = parse("BAA_CONDUCTOR_URL=\"http://x:1\"\nBAA_SHARED_TOKEN_FILE=$HOME/t\nEMPTY=\n");
        assert_eq!(n.get(CONDUCTOR_URL), Some("\"http://x:1\""));
        assert_eq!(n.get(SHARED_TOKEN_FILE), Some("$HOME/t"));
        assert_eq!(n.get("EMPTY"), None);
    }

    #[test]
    fn a_missing_file_is_none() {
        let path = std::env::temp_dir().join("baa-node-env-surely-missing/node.env");
        assert!(NodeEnv::read(&path).unwrap().is_none());
        let env = |k: &str| (k == FILE_ENV).then(|| path.display().to_string());
        assert_eq!(NodeEnv::load(&env), (None, Vec::new()));
    }

    #[test]
    fn located_by_variable_else_under_home() {
        let env = |k: &str| match k {
            "HOME" => Some("/Users/op".to_string()),
            _ => None,
        };
        assert_eq!(
            NodeEnv::locate(&env),
            Some(PathBuf::from("/Users/op/.config/baa-conductor/node.env"))
        );
        let env = |k: &str| match k {
            "HOME" => Some("/Users/op".to_string()),
            FILE_ENV => Some("/etc/other.env".to_string()),
            _ => None,
        };
        assert_eq!(NodeEnv::locate(&env), Some(PathBuf::from("/etc/other.env")));
        assert_eq!(NodeEnv::locate(&|_: &str| None), None);
    }
}
