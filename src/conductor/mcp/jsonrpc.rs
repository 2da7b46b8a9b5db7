//! JSON-RPC 2.0 as MCP uses it: telling a request from a notification or a stray
//! response, the standard error codes, and the answer envelopes. Nothing here knows a
//! method name.

use serde_json::{json, Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Transport refusals (no session header, too many sessions), as the official SDKs send them.
pub const SERVER_ERROR: i64 = -32000;
/// The session named by `Mcp-Session-Id` is unknown or expired (with HTTP 404).
pub const SESSION_NOT_FOUND: i64 = -32001;
/// `resources/read` of a URI that names nothing (MCP's own code).
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn to_json(&self) -> Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// One incoming message, once it is known to be well-formed.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Has an id: gets exactly one answer. `params` is `{}` when absent.
    Request {
        id: Value,
        method: String,
        params: Map<String, Value>,
    },
    /// No id: never answered.
    Notification { method: String },
    /// A client's answer to a server request. This server sends none, so it is dropped.
    Response,
}

/// A message that cannot be handled, with the id to answer it under (`null` when the id
/// itself is missing or unusable).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub id: Value,
    pub error: RpcError,
}

/// Checks one message's shape: `jsonrpc: "2.0"`, an id that is a string or an integer,
/// a string method, params that are an object. Takes the message so that its params
/// (which may be large) are moved, not copied.
pub fn classify(v: Value) -> Result<Message, Refused> {
    let refuse = |id: Value, error| Err(Refused { id, error });
    let Value::Object(mut m) = v else {
        return refuse(
            Value::Null,
            RpcError::invalid_request("A JSON-RPC message must be an object."),
        );
    };
    let id = match m.remove("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        Some(_) => {
            return refuse(
                Value::Null,
                RpcError::invalid_request("id must be a string or an integer (never null)."),
            )
        }
    };
    let answer_id = || id.clone().unwrap_or(Value::Null);
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return refuse(
            answer_id(),
            RpcError::invalid_request("jsonrpc must be the string \"2.0\"."),
        );
    }
    let method = match m.remove("method") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return refuse(
                answer_id(),
                RpcError::invalid_request("method must be a string."),
            )
        }
        None if id.is_some() && (m.contains_key("result") || m.contains_key("error")) => {
            return Ok(Message::Response)
        }
        None => {
            return refuse(
                answer_id(),
                RpcError::invalid_request("method is required."),
            )
        }
    };
    let Some(id) = id else {
        return Ok(Message::Notification { method });
    };
    let params = match m.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return refuse(id, RpcError::invalid_params("params must be an object.")),
    };
    Ok(Message::Request { id, method, params })
}

/// `{"jsonrpc": "2.0", "id", "result"}` around a result that is already JSON text (a
/// tool's answer is built as text: see `tool_call`).
pub fn result(id: &Value, result: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
    let mut s = String::with_capacity(40 + id.len() + result.len());
    s.push_str(r#"{"jsonrpc":"2.0","id":"#);
    s.push_str(&id);
    s.push_str(r#","result":"#);
    s.push_str(result);
    s.push('}');
    s
}

/// `{"jsonrpc": "2.0", "id", "error": {code, message, data?}}`.
pub fn error(id: &Value, e: &RpcError) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(v: Value) -> (Value, i64) {
        let r = classify(v).unwrap_err();
        (r.id, r.error.code)
    }

    #[test]
    fn requests_notifications_and_responses() {
        assert_eq!(
            classify(json!({"jsonrpc": "2.0", "id": 7, "method": "ping"})),
            Ok(Message::Request {
                id: json!(7),
                method: "ping".into(),
                params: Map::new()
            })
        );
        assert_eq!(
            classify(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            Ok(Message::Notification {
                method: "notifications/initialized".into()
            })
        );
        assert_eq!(
            classify(json!({"jsonrpc": "2.0", "id": "a", "result": {}})),
            Ok(Message::Response)
        );
    }

    #[test]
    fn malformed_messages_get_the_standard_codes() {
        let null = Value::Null;
        assert_eq!(code(json!([1])), (null.clone(), INVALID_REQUEST));
        assert_eq!(code(json!("ping")), (null.clone(), INVALID_REQUEST));
        assert_eq!(
            code(json!({"jsonrpc": "1.0", "id": 1, "method": "ping"})),
            (json!(1), INVALID_REQUEST)
        );
        assert_eq!(
            code(json!({"id": 1, "method": "ping"})),
            (json!(1), INVALID_REQUEST)
        );
        for bad_id in [json!(null), json!(1.5), json!([1]), json!({}), json!(true)] {
            assert_eq!(
                code(json!({"jsonrpc": "2.0", "id": bad_id, "method": "ping"})),
                (null.clone(), INVALID_REQUEST)
            );
        }
        assert_eq!(
            code(json!({"jsonrpc": "2.0", "id": 1, "method": 5})),
            (json!(1), INVALID_REQUEST)
        );
        assert_eq!(
            code(json!({"jsonrpc": "2.0", "id": 1})),
            (json!(1), INVALID_REQUEST)
        );
        assert_eq!(
            code(json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]})),
            (json!(1), INVALID_PARAMS)
        );
    }

    #[test]
    fn answers_carry_the_id() {
        let parsed = |s: String| serde_json::from_str::<Value>(&s).unwrap();
        assert_eq!(
            parsed(result(&json!("x\""), "{}")),
            json!({"jsonrpc": "2.0", "id": "x\"", "result": {}})
        );
        let e = RpcError::invalid_params("no").with_data(json!({"field": "name"}));
        assert_eq!(
            parsed(error(&json!(1), &e)),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "no", "data": {"field": "name"}}})
        );
    }
}
