//! The HTTP clients for tests: [`Client`] (ureq) for well-formed calls, raw sockets for the
//! malformed ones. Every call has a timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "body is not JSON ({e}): status {} body {:?}",
                self.status, self.body
            ),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and returns the JSON body, printing both on mismatch.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self.json()
    }

    /// Asserts an error envelope with this status and code; returns the body.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        let v = self.expect(status);
        assert_eq!(v["ok"], Value::Bool(false), "{v}");
        assert_eq!(v["error"], code, "{v}");
        assert!(v["message"].is_string(), "{v}");
        v
    }
}

/// The tests' HTTP client: every call bounded in time, never proxied, non-2xx answers
/// returned (their JSON matters). It keeps connections alive between its own calls (ureq
/// pools per agent); the free functions below each use a fresh one.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        Client { agent }
    }

    #[track_caller]
    pub fn get(&self, url: &str) -> Resp {
        self.get_h(url, &[])
    }

    #[track_caller]
    pub fn get_h(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.call() {
            Ok(r) => collect(r),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    #[track_caller]
    pub fn post(&self, url: &str, body: &Value) -> Resp {
        self.post_raw(url, &serde_json::to_vec(body).unwrap(), &[])
    }

    #[track_caller]
    pub fn post_raw(&self, url: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send(body) {
            Ok(r) => collect(r),
            Err(e) => panic!("POST {url}: {e}"),
        }
    }

    /// A bodiless request with any method.
    #[track_caller]
    pub fn request(&self, method: &str, url: &str) -> Resp {
        let agent = &self.agent;
        let r = match method {
            "PUT" => agent.put(url).send_empty(),
            "DELETE" => agent.delete(url).call(),
            "PATCH" => agent.patch(url).send_empty(),
            "HEAD" => agent.head(url).call(),
            "GET" => agent.get(url).call(),
            "POST" => agent.post(url).send_empty(),
            other => panic!("unsupported method {other}"),
        };
        match r {
            Ok(r) => collect(r),
            Err(e) => panic!("{method} {url}: {e}"),
        }
    }
}

fn collect(mut r: ureq::http::Response<ureq::Body>) -> Resp {
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

#[track_caller]
pub fn get(url: &str) -> Resp {
    Client::new().get(url)
}

#[track_caller]
pub fn get_h(url: &str, headers: &[(&str, &str)]) -> Resp {
    Client::new().get_h(url, headers)
}

#[track_caller]
pub fn post(url: &str, body: &Value) -> Resp {
    Client::new().post(url, body)
}

#[track_caller]
pub fn post_h(url: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    Client::new().post_raw(url, &serde_json::to_vec(body).unwrap(), headers)
}

#[track_caller]
pub fn post_raw(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    Client::new().post_raw(url, body, headers)
}

#[track_caller]
pub fn request(method: &str, url: &str) -> Resp {
    Client::new().request(method, url)
}

/// Sends raw bytes and returns everything the server wrote before closing (or until the
/// read timeout).
#[track_caller]
pub fn raw(addr: &str, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw HTTP response text, or 0.
pub fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
