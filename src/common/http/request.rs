//! A parsed HTTP request as handlers see it: owned, socket-free, easy to fake in tests.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::common::api_error::ApiError;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query string, percent-encoding kept as sent.
    pub path: String,
    /// Raw query string (without `?`), empty when absent.
    pub query: String,
    /// Header names lower-cased; values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote: SocketAddr,
    /// Per-request id echoed in JSON envelopes.
    pub request_id: String,
}

impl Request {
    /// A request built without a socket, for unit tests of handlers.
    pub fn fake(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let (path, query) = split_target(target);
        Self {
            method: method.to_string(),
            path,
            query,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
            request_id: "req_test".to_string(),
        }
    }

    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query parameters, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect()
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body as a JSON object. An empty body counts as `{}` so bodiless POSTs work.
    pub fn json_object(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ApiError::bad_request(
                "invalid_json",
                "Request body must be a JSON object.",
            )),
            Err(e) => Err(ApiError::invalid_json(&e)),
        }
    }

    /// The body parsed into `T`; bad JSON → 400 `invalid_json`, wrong shape → 400 `invalid_request`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let value = Value::Object(self.json_object()?);
        serde_json::from_value(value).map_err(|e| {
            ApiError::bad_request("invalid_request", format!("Invalid request body: {e}."))
        })
    }
}

/// Splits a request target into (path, query).
pub fn split_target(target: &str) -> (String, String) {
    match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    }
}

/// Decodes `%XX` escapes (invalid ones are kept literally) and `+` as a space. The `+` rule
/// is form encoding (what browsers and `curl --data-urlencode` send), which the
/// percent-encoding crate leaves out; it is applied first so that `%2B` stays a plus.
pub fn percent_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        let r = Request::fake(
            "GET",
            "/v1/tasks?status=queued&limit=5&q=a%20b+c&flag",
            &[],
            b"",
        );
        assert_eq!(r.path, "/v1/tasks");
        assert_eq!(r.query_param("status").as_deref(), Some("queued"));
        assert_eq!(r.query_param("q").as_deref(), Some("a b c"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("missing"), None);
    }

    #[test]
    fn percent_decode_keeps_bad_escapes() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("a+b%2Bc%"), "a b+c%");
        assert_eq!(percent_decode("%e2%9c%93%ff"), "\u{2713}\u{fffd}");
    }

    #[test]
    fn json_body_errors_are_clear() {
        let r = Request::fake("POST", "/", &[], b"{nope");
        assert_eq!(r.json_object().unwrap_err().code, "invalid_json");
        let r = Request::fake("POST", "/", &[], b"[1]");
        assert_eq!(r.json_object().unwrap_err().code, "invalid_json");
        let r = Request::fake("POST", "/", &[], b"");
        assert!(r.json_object().unwrap().is_empty());
    }
}
