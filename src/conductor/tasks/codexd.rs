//! The calls a run makes to codexd, on the conductor's one codexd client
//! ([`CodexdClient`]), each answer parsed into its typed reply (`replies`), with failures
//! sorted by what they mean for exactly-once: [`CallError::NotSent`] (the connection was
//! never made, so codexd cannot have acted), [`CallError::Unknown`] (the request may have
//! reached codexd and the answer was lost), or [`CallError::Http`] (codexd answered with an
//! error envelope).
//!
//! A turn start goes out on the client's `Fresh` lane: a refused connect is then a clean
//! "not sent", and only a failure after the connect leaves the outcome unknown.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use baa::common::client::encode_component;

use super::replies::{SessionReply, TurnAccepted, TurnList, TurnRecord};
use crate::codexd_client::{CodexdClient, Lane, Method};

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

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NotSent(m) => write!(f, "codexd is unreachable: {m}"),
            CallError::Unknown(m) => write!(f, "codexd's answer was lost: {m}"),
            CallError::Http {
                status,
                code,
                message,
            } => write!(f, "codexd answered {status} {code}: {message}"),
        }
    }
}

impl CallError {
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

/// codexd's `{ok, data}` / `{error, message}` envelope.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    data: Value,
    error: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct SessionData {
    session: SessionReply,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage {
    #[serde(default)]
    last_seq: u64,
}

pub struct Codexd {
    client: Arc<CodexdClient>,
    /// Where codexd serves its event stream, read once from its status.
    events_path: OnceLock<String>,
}

impl Codexd {
    pub fn new(client: Arc<CodexdClient>) -> Codexd {
        Codexd {
            client,
            events_path: OnceLock::new(),
        }
    }

    pub fn base(&self) -> &str {
        self.client.base()
    }

    /// The `data` of a success, parsed as `T`.
    fn call<T: DeserializeOwned>(
        &self,
        lane: Lane,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, CallError> {
        let answer = self.client.request(lane, method, path, body).map_err(|e| {
            if e.not_sent() {
                CallError::NotSent(e.to_string())
            } else {
                CallError::Unknown(e.to_string())
            }
        })?;
        let status = answer.status;
        let v: Envelope = serde_json::from_str(&answer.body).map_err(|_| {
            CallError::Unknown(format!(
                "{} {path} answered HTTP {status} that is not JSON",
                method.as_str()
            ))
        })?;
        if (200..300).contains(&status) && v.ok {
            return serde_json::from_value(v.data).map_err(|e| {
                CallError::Unknown(format!("{} {path}: unexpected data: {e}", method.as_str()))
            });
        }
        Err(CallError::Http {
            status,
            code: v.error.unwrap_or_else(|| "codexd_error".into()),
            message: v.message.unwrap_or_else(|| "no message".into()),
        })
    }

    /// `POST /v1/codexd/sessions` → the session.
    pub fn create_session(&self, body: &Value) -> Result<SessionReply, CallError> {
        self.call::<SessionData>(Lane::Write, Method::Post, "/v1/codexd/sessions", Some(body))
            .map(|d| d.session)
    }

    /// `GET /v1/codexd/sessions/:id` → the session (its `lastTurn` in full).
    pub fn session(&self, id: &str) -> Result<SessionReply, CallError> {
        let path = format!("/v1/codexd/sessions/{}", encode_component(id));
        self.call::<SessionData>(Lane::Read, Method::Get, &path, None)
            .map(|d| d.session)
    }

    /// The record of `turn_id` from the session's turn history (newest 50).
    pub fn turn_record(
        &self,
        session_id: &str,
        turn_id: &str,
    ) -> Result<Option<TurnRecord>, CallError> {
        let path = format!(
            "/v1/codexd/sessions/{}/turns?limit=50",
            encode_component(session_id)
        );
        let list: TurnList = self.call(Lane::Read, Method::Get, &path, None)?;
        Ok(list.turns.into_iter().find(|t| t.turn_id == turn_id))
    }

    /// `POST /v1/codexd/turn` → the turn id.
    pub fn start_turn(&self, body: &Value) -> Result<String, CallError> {
        let d: Value = self.call(Lane::Fresh, Method::Post, "/v1/codexd/turn", Some(body))?;
        serde_json::from_value::<TurnAccepted>(d.clone())
            .map(|a| a.turn_id)
            .map_err(|_| CallError::Unknown(format!("the 202 names no turnId: {d}")))
    }

    /// `POST /v1/codexd/turn/interrupt`; a turn already over is not an error.
    pub fn interrupt(&self, session_id: &str, turn_id: &str) -> Result<(), CallError> {
        let body = json!({"sessionId": session_id, "turnId": turn_id});
        match self.call::<Value>(
            Lane::Write,
            Method::Post,
            "/v1/codexd/turn/interrupt",
            Some(&body),
        ) {
            Ok(_) | Err(CallError::Http { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The newest event's seq, from the polling form of the stream route.
    pub fn last_seq(&self, events_path: &str) -> Result<u64, CallError> {
        let path = format!("{events_path}?limit=1");
        let page: EventsPage = self.call(Lane::Read, Method::Get, &path, None)?;
        Ok(page.last_seq)
    }

    /// Where codexd serves its event stream (`BAA_CODEXD_EVENT_STREAM_PATH`), from its
    /// status the first time, then remembered: it is codexd's configuration, and a wrong
    /// path would only turn the stream off (the session poll carries a run alone).
    pub fn events_path(&self) -> Result<String, CallError> {
        if let Some(p) = self.events_path.get() {
            return Ok(p.clone());
        }
        let d: Value = self.call(Lane::Read, Method::Get, "/v1/codexd/status", None)?;
        let path = d
            .pointer("/service/eventStreamPath")
            .and_then(Value::as_str)
            .unwrap_or("/v1/codexd/events")
            .to_string();
        Ok(self.events_path.get_or_init(|| path).clone())
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
        let c = Codexd::new(Arc::new(CodexdClient::new(&format!(
            "http://127.0.0.1:{port}"
        ))));
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
