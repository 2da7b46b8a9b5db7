//! `BAA_CODEXD_SERVER_ENDPOINT`: how codexd talks to its app-server child, parsed once at
//! start. `stdio://…` (the default) speaks newline-delimited JSON-RPC over the child's
//! stdin and stdout, and the child lives and dies with codexd. `unix://<absolute path>`
//! starts the child with `--listen unix://<path>` in its own session and speaks the same
//! JSON-RPC as WebSocket text frames over that Unix socket, so the child outlives codexd
//! and a restarted codexd attaches to it again. A bare `unix://` means
//! `<state dir>/app-server.sock`, which keeps the launchd template free of paths.

use std::fmt;
use std::path::{Path, PathBuf};

/// macOS's `sun_path` is 104 bytes including the terminating NUL; Linux allows 107. A path
/// that fits macOS fits everywhere.
pub const MAX_SOCKET_PATH: usize = 103;

/// The socket file a bare `unix://` names, under codexd's state dir.
pub const DEFAULT_SOCKET: &str = "app-server.sock";

/// The transport to the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// JSON-RPC lines over the child's stdin/stdout.
    Stdio,
    /// WebSocket over the Unix socket at this absolute path.
    Unix(PathBuf),
}

impl Transport {
    /// `stdio` or `unix`, as status and daemon-state.json show it.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Unix(_) => "unix",
        }
    }

    pub fn socket(&self) -> Option<&Path> {
        match self {
            Transport::Stdio => None,
            Transport::Unix(p) => Some(p),
        }
    }
}

/// Why an endpoint was refused. The message is the reason only; the caller names the
/// variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    UnknownScheme,
    /// The path after `unix://`, as written.
    Relative(String),
    TooLong(PathBuf),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::UnknownScheme => {
                f.write_str("expected stdio://codex-app-server or unix://<absolute socket path>")
            }
            EndpointError::Relative(rest) => write!(
                f,
                "the socket path {rest:?} is relative; write unix:///absolute/path (or unix:// for <state dir>/{DEFAULT_SOCKET})"
            ),
            EndpointError::TooLong(path) => write!(
                f,
                "the socket path {} is {} bytes; macOS allows at most {MAX_SOCKET_PATH} (a Unix socket address holds 104 bytes with its NUL): choose a shorter path",
                path.display(),
                path.as_os_str().len()
            ),
        }
    }
}

impl std::error::Error for EndpointError {}

/// Parses the endpoint. A bare `unix://` resolves under `state_dir`.
pub fn parse(endpoint: &str, state_dir: &Path) -> Result<Transport, EndpointError> {
    let endpoint = endpoint.trim();
    if endpoint.starts_with("stdio://") {
        return Ok(Transport::Stdio);
    }
    let Some(rest) = endpoint.strip_prefix("unix://") else {
        return Err(EndpointError::UnknownScheme);
    };
    let path = if rest.is_empty() {
        state_dir.join(DEFAULT_SOCKET)
    } else {
        PathBuf::from(rest)
    };
    if !path.is_absolute() {
        return Err(EndpointError::Relative(rest.to_string()));
    }
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(EndpointError::TooLong(path));
    }
    Ok(Transport::Unix(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_unix_and_the_default_socket() {
        let state = Path::new("/var/baa/state/codexd");
        assert_eq!(
            parse("stdio://codex-app-server", state),
            Ok(Transport::Stdio)
        );
        assert_eq!(
            parse("unix:///run/baa/as.sock", state),
            Ok(Transport::Unix("/run/baa/as.sock".into()))
        );
        assert_eq!(
            parse("unix://", state),
            Ok(Transport::Unix(
                "/var/baa/state/codexd/app-server.sock".into()
            ))
        );
    }

    #[test]
    fn refuses_relative_long_and_unknown_endpoints() {
        let state = Path::new("/s");
        let e = parse("unix://rel/as.sock", state).unwrap_err().to_string();
        assert!(e.contains("relative"), "{e}");
        let long = format!("unix:///{}", "a".repeat(MAX_SOCKET_PATH));
        let e = parse(&long, state).unwrap_err().to_string();
        assert!(
            e.contains("104 bytes") && e.contains("104 bytes with its NUL"),
            "{e}"
        );
        let fits = format!("unix:///{}", "a".repeat(MAX_SOCKET_PATH - 1));
        assert!(parse(&fits, state).is_ok());
        let e = parse("ws://127.0.0.1:1", state).unwrap_err().to_string();
        assert!(e.starts_with("expected stdio://"), "{e}");
    }
}
