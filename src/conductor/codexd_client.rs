//! The conductor's one HTTP client to codexd, shared by the `/v1/codex*` proxy and the task
//! runs. It sends a request on one of three bounded agents and hands back the status and
//! the raw body; what an answer or a failure means is the caller's (the proxy maps it onto
//! the conductor's error envelope, a run sorts it by what it means for exactly-once).
//!
//! - `Read`: status and session reads, which should answer fast or not at all;
//! - `Write`: a session create or a turn start waits on the app-server child;
//! - `Fresh`: as `Write`, on a new connection every time (no pooled keep-alive socket that a
//!   codexd restart has closed under us), so a refused connect is a clean "not sent" and
//!   only a failure after the connect leaves the outcome unknown. A run's turn starts use it.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use baa::common::client::local_agent;

const CONNECT: Duration = Duration::from_secs(1);
const READ_TOTAL: Duration = Duration::from_secs(5);
const WRITE_TOTAL: Duration = Duration::from_secs(45);
/// The largest answer read (a session's turn history with diffs).
const BODY_LIMIT: u64 = 32 * 1024 * 1024;

/// Which agent, and so which time bounds, a request goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Read,
    Write,
    Fresh,
}

/// The HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "DELETE" => Method::Delete,
            _ => Method::Post,
        }
    }
}

/// An answer from codexd, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Why no answer was read.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// No connection was made: codexd cannot have seen the request.
    NotSent(String),
    /// A time bound ran out: `phase` is `{:?}` of which one; `connecting` when it was the
    /// connect (or the name lookup), so nothing was sent.
    Timeout { phase: String, connecting: bool },
    /// Connected, then failed before an answer's head arrived.
    Failed(String),
    /// The head arrived; reading the body failed.
    Body(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::NotSent(m) | TransportError::Failed(m) => f.write_str(m),
            TransportError::Timeout { phase, .. } => write!(f, "timeout: {phase}"),
            TransportError::Body(m) => f.write_str(m),
        }
    }
}

impl TransportError {
    /// Whether the request surely never reached codexd.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            TransportError::NotSent(_)
                | TransportError::Timeout {
                    connecting: true,
                    ..
                }
        )
    }
}

pub struct CodexdClient {
    base: String,
    read: ureq::Agent,
    write: ureq::Agent,
    fresh: ureq::Agent,
}

impl CodexdClient {
    pub fn new(base: &str) -> CodexdClient {
        let fresh = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT))
            .timeout_global(Some(WRITE_TOTAL))
            .http_status_as_error(false)
            .proxy(None)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        CodexdClient {
            base: base.to_string(),
            read: local_agent(CONNECT, READ_TOTAL),
            write: local_agent(CONNECT, WRITE_TOTAL),
            fresh,
        }
    }

    /// The base as configured (the proxy's messages name it so).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path` (with a JSON `body` when given) and reads the answer.
    pub fn request(
        &self,
        lane: Lane,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, TransportError> {
        let agent = match lane {
            Lane::Read => &self.read,
            Lane::Write => &self.write,
            Lane::Fresh => &self.fresh,
        };
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let result = match (method, body) {
            (Method::Get, _) => agent.get(&url).header("Accept", "application/json").call(),
            (Method::Delete, _) => agent
                .delete(&url)
                .header("Accept", "application/json")
                .call(),
            (Method::Post, Some(b)) => agent
                .post(&url)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(b).unwrap_or_default().as_slice()),
            (Method::Post, None) => agent
                .post(&url)
                .header("Accept", "application/json")
                .send_empty(),
        };
        let mut resp = result.map_err(classify)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(|e| TransportError::Body(e.to_string()))?;
        Ok(Answer { status, body })
    }
}

fn classify(e: ureq::Error) -> TransportError {
    use std::io::ErrorKind;
    match &e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            TransportError::NotSent(e.to_string())
        }
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotFound
            ) =>
        {
            TransportError::NotSent(e.to_string())
        }
        ureq::Error::Timeout(t) => TransportError::Timeout {
            phase: format!("{t:?}"),
            connecting: matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        },
        _ => TransportError::Failed(e.to_string()),
    }
}
