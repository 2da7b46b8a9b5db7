//! The calls a run makes to codexd, each bounded in time, with failures sorted by what they
//! mean for exactly-once: [`CallError::NotSent`] (the connection was never made, so codexd
//! cannot have acted), [`CallError::Unknown`] (the request may have reached codexd and the
//! answer was lost), or [`CallError::Http`] (codexd answered with an error envelope).
//!
//! A turn start goes out on a fresh connection every time (no pooled keep-alive socket
//! that a codexd restart has closed under us): a refused connect is then a clean "not
//! sent", and only a failure after the connect leaves the outcome unknown.

use std::time::Duration;

use serde_json::{json, Value};

use baa::common::client::{encode_component, local_agent};

/// Why a call to codexd failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// Nothing reached codexd.
    NotSent(String),
    /// codexd may have received and acted on the request; its answer was lost.
    Unknown(String),
    /// codexd answered `status` with `{error, message, details}`.
    Http {
        status: u16,
        code: String,
        message: String,
    },
}

impl CallError {
    pub fn message(&self) -> String {
        match self {
            CallError::NotSent(m) => format!("codexd is unreachable: {m}"),
            CallError::Unknown(m) => format!("codexd's answer was lost: {m}"),
            CallError::Http {
                status,
                code,
                message,
            } => format!("codexd answered {status} {code}: {message}"),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A 4xx other than a conflict: the request itself is wrong and a retry cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self.status(), Some(s) if (400..500).contains(&s) && s != 409 && s != 404 && s != 410)
    }
}

pub struct Codexd {
    base: String,
    read: ureq::Agent,
    write: ureq::Agent,
    send: ureq::Agent,
}

impl Codexd {
    pub fn new(base: &str) -> Codexd {
        let send = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(1)))
            .timeout_global(Some(Duration::from_secs(45)))
            .http_status_as_error(false)
            .proxy(None)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        Codexd {
            base: base.trim_end_matches('/').to_string(),
            read: local_agent(Duration::from_secs(1), Duration::from_secs(5)),
            write: local_agent(Duration::from_secs(1), Duration::from_secs(45)),
            send,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn call(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.base);
        let result = match body {
            None if method == "GET" => agent.get(&url).header("Accept", "application/json").call(),
            None => agent
                .post(&url)
                .header("Accept", "application/json")
                .send_empty(),
            Some(b) => agent
                .post(&url)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(b).unwrap_or_default().as_slice()),
        };
        let mut resp = result.map_err(classify)?;
        let status = resp.status().as_u16();
        let raw = resp
            .body_mut()
            .with_config()
            .limit(32 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| CallError::Unknown(format!("reading the answer failed: {e}")))?;
        let v: Value = serde_json::from_str(&raw).map_err(|_| {
            CallError::Unknown(format!(
                "{method} {path} answered HTTP {status} that is not JSON"
            ))
        })?;
        if (200..300).contains(&status) && v.get("ok") == Some(&Value::Bool(true)) {
            return Ok(v.get("data").cloned().unwrap_or(Value::Null));
        }
        Err(CallError::Http {
            status,
            code: v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("codexd_error")
                .to_string(),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_string(),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call(&self.read, "GET", path, None)
    }

    /// `POST /v1/codexd/sessions` → the session.
    pub fn create_session(&self, body: &Value) -> Result<Value, CallError> {
        self.call(&self.write, "POST", "/v1/codexd/sessions", Some(body))
            .map(|d| d.get("session").cloned().unwrap_or(Value::Null))
    }

    /// `GET /v1/codexd/sessions/:id` → the session (its `lastTurn` in full).
    pub fn session(&self, id: &str) -> Result<Value, CallError> {
        self.get(&format!("/v1/codexd/sessions/{}", encode_component(id)))
            .map(|d| d.get("session").cloned().unwrap_or(Value::Null))
    }

    /// The record of `turn_id` from the session's turn history (newest 50).
    pub fn turn_record(&self, session_id: &str, turn_id: &str) -> Result<Option<Value>, CallError> {
        let d = self.get(&format!(
            "/v1/codexd/sessions/{}/turns?limit=50",
            encode_component(session_id)
        ))?;
        Ok(d.get("turns")
            .and_then(Value::as_array)
            .and_then(|ts| ts.iter().find(|t| t["turnId"] == turn_id).cloned()))
    }

    /// `POST /v1/codexd/turn` → the turn id.
    pub fn start_turn(&self, body: &Value) -> Result<String, CallError> {
        let d = self.call(&self.send, "POST", "/v1/codexd/turn", Some(body))?;
        d.get("turnId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| CallError::Unknown(format!("the 202 names no turnId: {d}")))
    }

    /// `POST /v1/codexd/turn/interrupt`; a turn already over is not an error.
    pub fn interrupt(&self, session_id: &str, turn_id: &str) -> Result<(), CallError> {
        match self.call(
            &self.write,
            "POST",
            "/v1/codexd/turn/interrupt",
            Some(&json!({"sessionId": session_id, "turnId": turn_id})),
        ) {
            Ok(_) => Ok(()),
            Err(CallError::Http { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The newest event's seq and the event stream's path, from the polling form of the
    /// stream route and the status document.
    pub fn last_seq(&self, events_path: &str) -> Result<u64, CallError> {
        let d = self.get(&format!("{events_path}?limit=1"))?;
        Ok(d.get("lastSeq").and_then(Value::as_u64).unwrap_or(0))
    }

    /// Where codexd serves its event stream (`BAA_CODEXD_EVENT_STREAM_PATH`).
    pub fn events_path(&self) -> Result<String, CallError> {
        let d = self.get("/v1/codexd/status")?;
        Ok(d.pointer("/service/eventStreamPath")
            .and_then(Value::as_str)
            .unwrap_or("/v1/codexd/events")
            .to_string())
    }
}

fn classify(e: ureq::Error) -> CallError {
    use std::io::ErrorKind;
    match &e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            CallError::NotSent(e.to_string())
        }
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            CallError::NotSent(e.to_string())
        }
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotFound
            ) =>
        {
            CallError::NotSent(e.to_string())
        }
        _ => CallError::Unknown(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_not_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Codexd::new(&format!("http://127.0.0.1:{port}"));
        let e = c
            .start_turn(&json!({"sessionId": "s", "input": "x"}))
            .unwrap_err();
        assert!(matches!(e, CallError::NotSent(_)), "{e:?}");
        assert!(!e.is_permanent());
        let http = CallError::Http {
            status: 400,
            code: "invalid_request".into(),
            message: "m".into(),
        };
        assert!(http.is_permanent());
        let busy = CallError::Http {
            status: 409,
            code: "turn_running".into(),
            message: "m".into(),
        };
        assert!(!busy.is_permanent());
    }
}
