//! A parsed HTTP request as handlers see it: owned, socket-free, easy to fake in tests.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::common::api_error::ApiError;
use crate::common::strict_json;

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
    /// Per-request id echoed in JSON envelopes; reads as a `&str`.
    pub request_id: RequestId,
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
            request_id: RequestId::from_static("req_test"),
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
    /// Every JSON body of the conductor and codexd is read here, strictly: a key given
    /// twice or nesting past [`strict_json::MAX_DEPTH`] is a 400 `invalid_json`.
    pub fn json_object(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(serde_json::Map::new());
        }
        match strict_json::from_slice(&self.body) {
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

/// `split_target` reusing the target's own allocation for the path.
pub fn split_target_owned(mut target: String) -> (String, String) {
    match target.find('?') {
        Some(i) => {
            let query = target[i + 1..].to_string();
            target.truncate(i);
            (target, query)
        }
        None => (target, String::new()),
    }
}

/// A request id such as `req_5f3a9c0d1e2b4a67`, held inline: making one costs no
/// allocation and no clock read (a per-process seed mixed with a counter), and most
/// requests (probes, plain-text answers) never print theirs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    text: [u8; ID_MAX],
    len: u8,
}

const ID_MAX: usize = 24;

impl RequestId {
    pub fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mixed = splitmix(seed ^ splitmix(n));
        let mut text = [0u8; ID_MAX];
        text[..4].copy_from_slice(b"req_");
        for (i, b) in text[4..20].iter_mut().enumerate() {
            let nibble = (mixed >> (60 - 4 * i)) & 0xf;
            *b = b"0123456789abcdef"[nibble as usize];
        }
        Self { text, len: 20 }
    }

    /// A fixed id (tests, fakes); cut to 24 bytes at a character boundary.
    pub fn from_static(s: &'static str) -> Self {
        let end = crate::common::text::prefix(s, ID_MAX).len();
        let mut text = [0u8; ID_MAX];
        text[..end].copy_from_slice(&s.as_bytes()[..end]);
        Self {
            text,
            len: end as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Always valid: built from ASCII or from a `&str` cut at a char boundary.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or("req")
    }
}

impl Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
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
    fn request_ids_are_unique_prefixed_and_read_as_str() {
        let (a, b) = (RequestId::next(), RequestId::next());
        assert_ne!(a, b);
        assert!(a.starts_with("req_") && a.len() == 20, "{a}");
        assert!(a[4..].bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(RequestId::from_static("req_test"), "req_test");
        assert_eq!(format!("{:?}", RequestId::from_static("x")), "\"x\"");
        let (p, q) = split_target_owned("/a/b?x=1&y".to_string());
        assert_eq!((p.as_str(), q.as_str()), ("/a/b", "x=1&y"));
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
        let r = Request::fake("POST", "/", &[], br#"{"title": "a", "title": "b"}"#);
        let err = r.json_object().unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (400, "invalid_json"));
        assert!(err.message.contains("\"title\""), "{}", err.message);
        assert_eq!(err.details.unwrap()["duplicate_key"], "title");
    }
}
