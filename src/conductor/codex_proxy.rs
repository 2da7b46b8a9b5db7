//! `/v1/codex*`: the conductor holds no Codex state; every call is a bounded local HTTP
//! call to codexd (on the conductor's one codexd client, `codexd_client`), with request bodies whitelisted and upstream failures mapped onto the
//! conductor's error model. A field the whitelist drops is never dropped silently: a
//! success lists it in `data.dropped_fields`, an error in `details.dropped_fields`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::client::encode_component;
use baa::common::codex_fields::{dropped, whitelist, TURN_CREATE};

use crate::codexd_client::{CodexdClient, Lane, Method, TransportError};
use crate::config::CODEXD_ENV;

/// What to do when codexd does not answer: how an operator checks it, on a dev machine
/// and on the Mac.
pub fn check_hint(base: &str) -> String {
    format!(
        "check codexd: curl -s {base}/healthz; on the Mac, scripts/runtime/status-launchd.sh (in the checkout) shows whether launchd runs it and where its log is"
    )
}

pub struct CodexProxy {
    client: Option<Arc<CodexdClient>>,
}

impl CodexProxy {
    /// A proxy with a client of its own (tests; the app shares one with the task runs).
    #[cfg(test)]
    pub fn new(base: Option<String>) -> Self {
        Self::with_client(base.map(|b| Arc::new(CodexdClient::new(&b))))
    }

    /// A proxy on the conductor's one codexd client (shared with the task runs).
    pub fn with_client(client: Option<Arc<CodexdClient>>) -> Self {
        Self { client }
    }

    pub fn base(&self) -> Option<&str> {
        self.client.as_deref().map(CodexdClient::base)
    }

    /// Calls codexd and returns `(status, data)` of a success envelope.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ApiError> {
        let Some(client) = self.client.as_deref() else {
            return Err(ApiError::new(
                503,
                "codexd_not_configured",
                "Independent codexd local API is not configured for /v1/codex routes.",
            )
            .with_details(json!({ "env_var": CODEXD_ENV })));
        };
        let base = client.base();
        // The message is the contract's; how to check codexd goes in `details.hint`.
        let unavailable = |cause: String| {
            ApiError::new(
                503,
                "codexd_unavailable",
                format!("Independent codexd is unavailable at {base}."),
            )
            .with_details(json!({ "cause": cause, "target_base_url": base, "upstream_path": path, "hint": check_hint(base) }))
        };
        let m = Method::parse(method);
        // Reads answer fast or not at all; writes wait on the app-server child.
        let lane = if m == Method::Get {
            Lane::Read
        } else {
            Lane::Write
        };
        let answer = match client.request(lane, m, path, body) {
            Ok(a) => a,
            Err(TransportError::Timeout { phase, .. }) => {
                return Err(ApiError::new(
                    504,
                    "codexd_timeout",
                    format!("Independent codexd at {base} did not answer {method} {path} in time."),
                )
                .with_details(json!({ "cause": format!("timeout: {phase}"), "target_base_url": base, "upstream_path": path })))
            }
            Err(TransportError::Body(e)) => {
                return Err(unavailable(format!("reading the response failed: {e}")))
            }
            Err(e) => return Err(unavailable(e.to_string())),
        };
        let status = answer.status;
        let invalid = |what: &str| {
            ApiError::new(
                502,
                "codexd_invalid_response",
                format!("Independent codexd returned {what} for {method} {path}."),
            )
            .with_details(json!({ "target_base_url": base, "upstream_path": path, "upstream_status": status }))
        };
        let parsed: Value =
            serde_json::from_str(&answer.body).map_err(|_| invalid("invalid JSON"))?;
        if !(200..300).contains(&status) {
            if let (Some(code), Some(message)) = (
                parsed.get("error").and_then(Value::as_str),
                parsed.get("message").and_then(Value::as_str),
            ) {
                let code = if status == 404 { "not_found" } else { code };
                return Err(ApiError::new(status, code, message).with_details(json!({
                    "target_base_url": base,
                    "upstream_details": parsed.get("details").cloned().unwrap_or(Value::Null),
                    "upstream_error": parsed.get("error").cloned().unwrap_or(Value::Null),
                    "upstream_path": path,
                    "upstream_status": status,
                })));
            }
            let code = if status >= 500 {
                "codexd_unavailable"
            } else {
                "codexd_proxy_error"
            };
            return Err(ApiError::new(
                status,
                code,
                format!("Independent codexd returned HTTP {status} for {method} {path}."),
            )
            .with_details(json!({ "target_base_url": base, "upstream_path": path })));
        }
        if parsed.get("ok") != Some(&Value::Bool(true)) {
            return Err(invalid("an unexpected payload"));
        }
        Ok((status, parsed.get("data").cloned().unwrap_or(Value::Null)))
    }
}

/// The turn body: whitelist plus `prompt` → `input` when `input` is absent.
pub fn turn_body(body: &Map<String, Value>) -> Map<String, Value> {
    let mut out = whitelist(body, TURN_CREATE);
    if let Some(p) = out.remove("prompt") {
        out.entry("input").or_insert(p);
    }
    out
}

/// A whitelisted request body and the fields the whitelist dropped.
pub struct Forwarded {
    pub body: Value,
    pub dropped: Vec<String>,
}

impl Forwarded {
    /// `raw` through the `allowed` lists (`codex_fields`).
    pub fn new(raw: &Map<String, Value>, allowed: &[&[&str]]) -> Forwarded {
        Forwarded {
            body: Value::Object(whitelist(raw, allowed)),
            dropped: dropped(raw, allowed),
        }
    }

    /// The turn body ([`turn_body`]).
    pub fn turn(raw: &Map<String, Value>) -> Forwarded {
        Forwarded {
            body: Value::Object(turn_body(raw)),
            dropped: dropped(raw, TURN_CREATE),
        }
    }

    /// Sends the body and names the dropped fields in the answer: `data.dropped_fields`
    /// on success, `details.dropped_fields` on an error (only when some were dropped).
    pub fn send(&self, proxy: &CodexProxy, path: &str) -> Result<(u16, Value), ApiError> {
        match proxy.call("POST", path, Some(&self.body)) {
            Ok((status, mut data)) => {
                if let (false, Some(m)) = (self.dropped.is_empty(), data.as_object_mut()) {
                    m.insert("dropped_fields".into(), json!(self.dropped));
                }
                Ok((status, data))
            }
            Err(mut e) if !self.dropped.is_empty() => {
                let mut details = e.details.take().unwrap_or_else(|| json!({}));
                if let Some(m) = details.as_object_mut() {
                    m.insert("dropped_fields".into(), json!(self.dropped));
                }
                Err(e.with_details(details))
            }
            Err(e) => Err(e),
        }
    }
}

/// `?name=value&…` of the query parameters in `allowed` that `pairs` carries (decoded
/// pairs, re-encoded for the upstream URL); empty when none is given.
pub fn forward_query(pairs: &[(String, String)], allowed: &[&str]) -> String {
    let kept: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| allowed.contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

fn field<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p).unwrap_or(&Value::Null);
    }
    cur
}

/// Reshapes codexd's status into the conductor's `GET /v1/codex` data.
pub fn reshape_status(data: &Value, target: &str, routes: Value) -> Value {
    let snapshot = field(data, &["snapshot"]);
    let service = field(data, &["service"]);
    let identity = field(snapshot, &["identity"]);
    let daemon = field(snapshot, &["daemon"]);
    let child = field(daemon, &["child"]);
    let sessions = field(snapshot, &["sessionRegistry", "sessions"])
        .as_array()
        .cloned()
        .unwrap_or_default();
    let events = field(snapshot, &["recentEvents", "events"])
        .as_array()
        .map_or(0, Vec::len);
    let codex = field(snapshot, &["codex"]);
    let account = field(snapshot, &["account"]);
    let limits = field(snapshot, &["limits"]);
    let window = |name: &str| {
        let w = field(limits, &[name]);
        if w.is_object() {
            json!({"used_percent": w.get("usedPercent"), "resets_at": w.get("resetsAt"), "window_minutes": w.get("windowMinutes")})
        } else {
            Value::Null
        }
    };
    json!({
        "backend": "independent_codexd",
        "daemon": {
            "daemon_id": identity.get("daemonId"),
            "node_id": identity.get("nodeId"),
            "version": identity.get("version"),
            "started": daemon.get("started"),
            "started_at": daemon.get("startedAt"),
            "updated_at": daemon.get("updatedAt"),
            "child": {
                "endpoint": child.get("endpoint"),
                "last_error": child.get("lastError"),
                "pid": child.get("pid"),
                "status": child.get("status"),
                "strategy": child.get("strategy"),
            },
        },
        "codex": {
            "version": codex.get("version"),
            "running_version": codex.get("runningVersion"),
            "cli_version": codex.get("cliVersion"),
            "user_agent": codex.get("userAgent"),
            "experimental_api": codex.get("experimentalApi"),
            "model_check": codex.get("modelCheck"),
        },
        "account": {
            "logged_in": account.get("loggedIn"),
            "plan": account.get("plan"),
            "type": account.get("type"),
            "auth_required": account.get("authRequired"),
            "checked_at": account.get("checkedAt"),
            "error": account.get("error"),
        },
        "limits": {
            "primary": window("primary"),
            "secondary": window("secondary"),
            "blocked_until": limits.get("blockedUntil"),
            "updated_at": limits.get("updatedAt"),
            "error": limits.get("error"),
        },
        "proxy": { "route_prefix": "/v1/codex", "target_base_url": target, "transport": "local_http" },
        "recent_events": { "count": events, "updated_at": field(snapshot, &["recentEvents", "updatedAt"]) },
        "routes": routes,
        "service": {
            "event_stream_url": service.get("eventStreamUrl"),
            "listening": service.get("listening"),
            "resolved_base_url": service.get("resolvedBaseUrl"),
            "websocket_clients": service.get("websocketClients"),
        },
        "sessions": {
            "active_count": sessions.iter().filter(|s| s.get("status").and_then(Value::as_str) == Some("active")).count(),
            "count": sessions.len(),
            "updated_at": field(snapshot, &["sessionRegistry", "updatedAt"]),
        },
        "surface": ["status", "sessions", "turn", "models"],
        "notes": [
            "This conductor route proxies the independent codexd daemon.",
            "Only status, session, turn and model-list operations are exposed on this surface."
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use baa::common::codex_fields::{SESSION_CREATE, SESSION_FIELDS};

    #[test]
    fn whitelists_and_aliases() {
        let body =
            json!({"sessionId": "s1", "prompt": "hi", "bogus": 1, "approval_policy": "never"});
        let out = turn_body(body.as_object().unwrap());
        assert_eq!(
            Value::Object(out),
            json!({"sessionId": "s1", "input": "hi", "approvalPolicy": "never"})
        );
        let body = json!({"session_id": "s1", "input": "a", "prompt": "b"});
        assert_eq!(
            Value::Object(turn_body(body.as_object().unwrap())),
            json!({"sessionId": "s1", "input": "a"})
        );
        let body = json!({"cwd": "/x", "thread_id": "t", "purpose": "duplex", "env": {"A": "b"}});
        assert_eq!(
            Value::Object(whitelist(body.as_object().unwrap(), SESSION_FIELDS)),
            json!({"cwd": "/x", "threadId": "t", "purpose": "duplex"})
        );
    }

    #[test]
    fn turn_body_keeps_codexd_fields_and_names_the_rest() {
        let raw = json!({"sessionId": "s1", "prompt": "hi", "collaboration_mode": {"mode": "plan"}, "bogus": 1, "env": {}});
        let f = Forwarded::turn(raw.as_object().unwrap());
        assert_eq!(
            f.body,
            json!({"sessionId": "s1", "input": "hi", "collaborationMode": {"mode": "plan"}})
        );
        assert_eq!(f.dropped, ["bogus", "env"]);
        let raw = json!({"purpose": "worker", "approval_timeout_ms": 500, "approvalDefault": "accept", "command": "x"});
        let f = Forwarded::new(raw.as_object().unwrap(), SESSION_CREATE);
        assert_eq!(
            f.body,
            json!({"purpose": "worker", "approvalTimeoutMs": 500, "approvalDefault": "accept"})
        );
        assert_eq!(f.dropped, ["command"]);
    }

    #[test]
    fn forwarded_queries_keep_only_allowed_names_and_are_encoded() {
        let pairs = vec![
            ("cwd".to_string(), "/a b/c&d".to_string()),
            ("bogus".to_string(), "x".to_string()),
            ("limit".to_string(), "5".to_string()),
        ];
        assert_eq!(
            forward_query(&pairs, &["cwd", "limit"]),
            "?cwd=%2Fa%20b%2Fc%26d&limit=5"
        );
        assert_eq!(forward_query(&pairs, &["cursor"]), "");
    }

    #[test]
    fn unconfigured_is_503() {
        let e = CodexProxy::new(None)
            .call("GET", "/v1/codexd/status", None)
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (503, "codexd_not_configured"));
        assert_eq!(e.details.unwrap()["env_var"], CODEXD_ENV);
    }

    #[test]
    fn closed_port_is_unavailable_without_the_word_bridge() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let e = CodexProxy::new(Some(base.clone()))
            .call("GET", "/v1/codexd/status", None)
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (503, "codexd_unavailable"));
        assert_eq!(
            e.message,
            format!("Independent codexd is unavailable at {base}.")
        );
        assert!(!e.message.contains("bridge"));
        // Issue 20: "codexd is down" says how to check it.
        assert_eq!(
            e.details.unwrap()["hint"],
            format!("check codexd: curl -s {base}/healthz; on the Mac, scripts/runtime/status-launchd.sh (in the checkout) shows whether launchd runs it and where its log is")
        );
    }
}
