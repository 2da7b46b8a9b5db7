//! DNS-rebinding and browser-CSRF defences, applied before routing on every daemon.
//!
//! A page in any browser on the node (or on a tailnet peer) can reach a loopback or
//! Tailscale listener. The Host header tells us which name the browser thinks it is
//! talking to; an `Origin` tells us a web page sent the request.

use std::net::SocketAddr;

use serde_json::json;

use super::request::Request;
use crate::common::api_error::ApiError;

/// The exact `Host` values (authority form, lower-case) a daemon answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    allowed: Vec<String>,
}

impl HostPolicy {
    /// Allows the bound address itself, `localhost`/loopback literals when bound to
    /// loopback, and `extra_hosts` (names or IPs configured by the operator), each with
    /// the bound port.
    pub fn for_listener(bound: SocketAddr, extra_hosts: &[String]) -> Self {
        let port = bound.port();
        let mut allowed = vec![authority(&bound.ip().to_string(), port)];
        if bound.ip().is_loopback() || bound.ip().is_unspecified() {
            for h in ["127.0.0.1", "localhost", "::1"] {
                allowed.push(authority(h, port));
            }
        }
        for h in extra_hosts {
            let h = h.trim();
            if !h.is_empty() {
                allowed.push(authority(h, port));
            }
        }
        allowed.sort();
        allowed.dedup();
        Self { allowed }
    }

    /// The union over every address a daemon listens on (loopback beside a Tailscale
    /// address: each admits its own names, and `localhost` only comes with loopback).
    pub fn for_listeners(bound: &[SocketAddr], extra_hosts: &[String]) -> Self {
        let mut allowed: Vec<String> = bound
            .iter()
            .flat_map(|b| Self::for_listener(*b, extra_hosts).allowed)
            .collect();
        allowed.sort();
        allowed.dedup();
        Self { allowed }
    }

    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// 403 `forbidden_host` unless the request's Host is one of ours.
    pub fn check(&self, req: &Request) -> Result<(), ApiError> {
        let host = req.header("host").unwrap_or("").trim().to_ascii_lowercase();
        if !host.is_empty() && self.allowed.contains(&host) {
            return Ok(());
        }
        // Never echo the rejected value back: it is attacker-chosen text.
        Err(ApiError::new(
            403,
            "forbidden_host",
            "The Host header does not name this daemon's listen address.",
        )
        .with_details(json!({ "allowed_hosts": self.allowed })))
    }

    /// 403 `forbidden_origin` if a web page sent this request: an `Origin` that is not
    /// this daemon's own `http://<host>`.
    pub fn check_origin(&self, req: &Request) -> Result<(), ApiError> {
        let Some(origin) = req.header("origin") else {
            return Ok(());
        };
        let origin = origin.trim().to_ascii_lowercase();
        let same_origin = origin
            .strip_prefix("http://")
            .is_some_and(|rest| self.allowed.iter().any(|a| a == rest));
        if same_origin {
            return Ok(());
        }
        Err(ApiError::new(
            403,
            "forbidden_origin",
            "Requests from web pages are refused; call this API from a local tool.",
        ))
    }
}

/// `host:port` with IPv6 literals bracketed, lower-case.
fn authority(host: &str, port: u16) -> String {
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if h.contains(':') {
        format!("[{h}]:{port}")
    } else {
        format!("{h}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, origin: Option<&str>) -> Request {
        let mut headers = vec![];
        if let Some(h) = host {
            headers.push(("Host", h));
        }
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        Request::fake("GET", "/", &headers, b"")
    }

    #[test]
    fn loopback_policy() {
        let p = HostPolicy::for_listener("127.0.0.1:4317".parse().unwrap(), &[]);
        for ok in [
            "127.0.0.1:4317",
            "localhost:4317",
            "LOCALHOST:4317",
            "[::1]:4317",
        ] {
            assert!(p.check(&req(Some(ok), None)).is_ok(), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("evil.example:4317"),
            Some("127.0.0.1.nip.io:4317"),
            Some("localhost6:4317"),
            Some("127.0.0.1:4318"),
            Some("127.0.0.1"),
            Some("mini.local:4317"),
        ] {
            let e = p.check(&req(bad, None)).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (403, "forbidden_host"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tailscale_policy_does_not_admit_localhost() {
        let p = HostPolicy::for_listener(
            "100.71.210.78:4317".parse().unwrap(),
            &["mini.tail-abc.ts.net".into()],
        );
        assert!(p.check(&req(Some("100.71.210.78:4317"), None)).is_ok());
        assert!(p
            .check(&req(Some("mini.tail-abc.ts.net:4317"), None))
            .is_ok());
        assert!(p.check(&req(Some("localhost:4317"), None)).is_err());
    }

    /// Issue 20: on a node whose conductor listens on Tailscale, the documented
    /// `curl http://127.0.0.1:4317/...` must pass the guard of the loopback listener beside it.
    #[test]
    fn loopback_beside_tailscale_admits_loopback_hosts() {
        let p = HostPolicy::for_listeners(
            &[
                "100.71.210.78:4317".parse().unwrap(),
                "127.0.0.1:4317".parse().unwrap(),
            ],
            &["100.71.210.78".into()],
        );
        for ok in ["100.71.210.78:4317", "127.0.0.1:4317", "localhost:4317"] {
            assert!(p.check(&req(Some(ok), None)).is_ok(), "{ok}");
        }
        assert!(p
            .check_origin(&req(None, Some("http://127.0.0.1:4317")))
            .is_ok());
        for bad in ["127.0.0.1:4318", "evil.example:4317", "100.71.210.78:4318"] {
            assert!(p.check(&req(Some(bad), None)).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let p = HostPolicy::for_listener("127.0.0.1:4317".parse().unwrap(), &[]);
        assert!(p.check_origin(&req(Some("127.0.0.1:4317"), None)).is_ok());
        assert!(p
            .check_origin(&req(None, Some("http://127.0.0.1:4317")))
            .is_ok());
        for bad in [
            "https://evil.example",
            "null",
            "moz-extension://abc",
            "http://127.0.0.1:9999",
        ] {
            let e = p.check_origin(&req(None, Some(bad))).unwrap_err();
            assert_eq!(e.code, "forbidden_origin", "{bad}");
        }
    }
}
