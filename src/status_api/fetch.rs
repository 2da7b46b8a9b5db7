//! Fetching the upstream status documents: the only part of the aggregate that does I/O.
//!
//! One named thread per upstream call, all in parallel, each bounded by the agent's
//! connect/total timeouts, and the caller waits no longer than that bound even if a thread
//! were to hang — a late answer is dropped. What comes back is merged by `aggregate::build`,
//! a pure function.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::values::clip;

/// Where the upstreams are and how long they may take.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub conductor_base: String,
    pub codexd_base: String,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
}

/// One upstream call: the envelope's `data`, or why it is unavailable.
pub type Fetched = Result<Value, FetchError>;

/// Why an upstream's document is missing; its Display is the one line the page shows.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// The HTTP client's reason (connection refused, timeout, …).
    Unreachable(String),
    /// The body could not be read (the client's reason).
    Read(String),
    NotJson {
        status: u16,
    },
    /// A non-2xx status or `ok: false`, with the envelope's error code and message.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    NoThread(String),
    NoAnswer {
        ms: u128,
    },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unreachable(why) => f.write_str(why),
            FetchError::Read(why) => write!(f, "reading the reply failed: {why}"),
            FetchError::NotJson { status } => write!(f, "HTTP {status}: the reply is not JSON"),
            FetchError::Refused {
                status,
                code,
                message,
            } => f.write_str(&clip(&format!("HTTP {status} {code}: {message}"))),
            FetchError::NoThread(why) => write!(f, "could not start a fetch thread: {why}"),
            FetchError::NoAnswer { ms } => write!(f, "no answer within {ms} ms"),
        }
    }
}

/// Everything the aggregate is built from.
#[derive(Debug, Clone)]
pub struct Raw {
    pub runtime: Fetched,
    pub system_state: Fetched,
    pub codexd_status: Fetched,
    /// The conductor's `GET /v1/tasks/summary`.
    pub tasks: Fetched,
    /// The conductor's `GET /v1/schedules`.
    pub schedules: Fetched,
}

/// Upstream replies larger than this are treated as broken rather than buffered.
const MAX_REPLY_BYTES: u64 = 4 * 1024 * 1024;

pub fn fetch_all(up: &Upstreams) -> Raw {
    let agent = crate::common::client::local_agent(up.connect_timeout, up.total_timeout);
    let calls = [
        ("runtime", format!("{}/v1/runtime", up.conductor_base)),
        ("state", format!("{}/v1/system/state", up.conductor_base)),
        ("codexd", format!("{}/v1/codexd/status", up.codexd_base)),
        ("tasks", format!("{}/v1/tasks/summary", up.conductor_base)),
        ("schedules", format!("{}/v1/schedules", up.conductor_base)),
    ];
    let (tx, rx) = crossbeam_channel::bounded::<(usize, Fetched)>(calls.len());
    let mut results: Vec<Option<Fetched>> = vec![None; calls.len()];
    for (i, (name, url)) in calls.iter().enumerate() {
        let (tx, agent, url) = (tx.clone(), agent.clone(), url.clone());
        let spawned = thread::Builder::new()
            .name(format!("status-fetch-{name}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = tx.send((i, fetch_data(&agent, &url)));
            });
        if let Err(e) = spawned {
            results[i] = Some(Err(FetchError::NoThread(e.to_string())));
        }
    }
    drop(tx);
    // The agent enforces `total_timeout` per call; the margin covers thread start-up.
    let deadline = Instant::now() + up.total_timeout + Duration::from_millis(250);
    while results.iter().any(Option::is_none) {
        match rx.recv_deadline(deadline) {
            Ok((i, r)) => results[i] = Some(r),
            Err(_) => break,
        }
    }
    let mut take = |i: usize| {
        results[i].take().unwrap_or(Err(FetchError::NoAnswer {
            ms: up.total_timeout.as_millis(),
        }))
    };
    Raw {
        runtime: take(0),
        system_state: take(1),
        codexd_status: take(2),
        tasks: take(3),
        schedules: take(4),
    }
}

/// GET `url`, expecting our JSON envelope; returns its `data` (or the whole document when
/// there is no `data`, so a bare object from an older peer still shows).
fn fetch_data(agent: &ureq::Agent, url: &str) -> Fetched {
    let mut resp = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_string()
        .map_err(|e| FetchError::Read(e.to_string()))?;
    let v: Value = serde_json::from_str(&body).map_err(|_| FetchError::NotJson { status })?;
    if !(200..300).contains(&status) || v.get("ok") == Some(&Value::Bool(false)) {
        let text =
            |key: &str, or: &str| v.get(key).and_then(Value::as_str).unwrap_or(or).to_string();
        return Err(FetchError::Refused {
            status,
            code: text("error", "error"),
            message: text("message", ""),
        });
    }
    Ok(v.get("data").cloned().unwrap_or(v))
}
