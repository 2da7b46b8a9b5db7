//! The error model of every HTTP API on the node: one place that turns a failure into
//! `{"ok": false, "request_id", "error", "message", "details"}` with the right status.

use serde_json::{json, Map, Value};

use crate::common::http::Response;
use crate::common::strict_json::StrictJsonError;

/// A failure to report to an HTTP caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// snake_case machine code, e.g. `not_found`, `invalid_json`.
    pub code: String,
    pub message: String,
    pub details: Option<Value>,
    /// Extra response headers (`Allow`, `WWW-Authenticate`).
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::not_found(format!("No route for {method} {path}."))
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: &[&str]) -> Self {
        Self::new(
            405,
            "method_not_allowed",
            format!(
                "{method} is not allowed on {path}; allowed: {}.",
                allow.join(", ")
            ),
        )
        .with_details(json!({ "allow": allow }))
        .with_header("Allow", allow.join(", "))
    }

    /// A body refused by the strict reader: not JSON, a key given twice, or too deep.
    /// `details` names the key or limit and the JSON path, for callers that branch on it.
    pub fn invalid_json(err: &StrictJsonError) -> Self {
        match err {
            StrictJsonError::Syntax(e) => Self::new(
                400,
                "invalid_json",
                format!("Request body is not valid JSON: {e}."),
            ),
            StrictJsonError::DuplicateKey { key, path } => Self::new(
                400,
                "invalid_json",
                format!("Request body gives the key \"{key}\" more than once (at {path}); send each key once."),
            )
            .with_details(json!({ "duplicate_key": key, "path": path })),
            StrictJsonError::TooDeep { limit, path } => Self::new(
                400,
                "invalid_json",
                format!("Request body nests objects and arrays deeper than the limit of {limit} levels (at {path})."),
            )
            .with_details(json!({ "max_depth": limit, "path": path })),
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "payload_too_large",
            format!("Request body exceeds the limit of {limit} bytes."),
        )
        .with_details(json!({ "limit_bytes": limit }))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal_error", message)
    }

    /// The JSON envelope body. `request_id` is omitted when empty.
    pub fn envelope(&self, request_id: &str) -> Value {
        let mut m = Map::new();
        m.insert("ok".into(), Value::Bool(false));
        if !request_id.is_empty() {
            m.insert("request_id".into(), Value::String(request_id.to_string()));
        }
        m.insert("error".into(), Value::String(self.code.clone()));
        m.insert("message".into(), Value::String(self.message.clone()));
        m.insert(
            "details".into(),
            self.details.clone().unwrap_or_else(|| json!({})),
        );
        Value::Object(m)
    }

    pub fn to_response(&self, request_id: &str, pretty: bool) -> Response {
        let mut resp = Response::json_value(self.status, &self.envelope(request_id), pretty);
        for (name, value) in &self.headers {
            resp = resp.with_header(name, value);
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The success envelope `{"ok": true, "request_id", "data"}`.
pub fn ok_envelope(request_id: &str, data: Value) -> Value {
    let mut m = Map::new();
    m.insert("ok".into(), Value::Bool(true));
    if !request_id.is_empty() {
        m.insert("request_id".into(), Value::String(request_id.to_string()));
    }
    m.insert("data".into(), data);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_every_field() {
        let e = ApiError::not_found("nope").with_details(json!({"x": 1}));
        assert_eq!(
            e.envelope("req_1"),
            json!({"ok": false, "request_id": "req_1", "error": "not_found", "message": "nope", "details": {"x": 1}})
        );
        assert_eq!(e.envelope("").get("request_id"), None);
    }

    #[test]
    fn method_not_allowed_sets_allow() {
        let e = ApiError::method_not_allowed("DELETE", "/x", &["GET", "POST"]);
        assert_eq!(e.status, 405);
        assert_eq!(
            e.headers,
            vec![("Allow".to_string(), "GET, POST".to_string())]
        );
    }
}
