//! Listen-URL parsing and the address rules the daemons enforce at startup.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    /// Host as written (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// What a listen URL lacks. The message says what was expected without repeating the
/// input: the caller names the setting and shows the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenUrlError {
    NotHttp,
    HasPath,
    NoPort,
    BadPort,
    NoHost,
}

impl fmt::Display for ListenUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenUrlError::NotHttp => "expected http://HOST:PORT (plain http)",
            ListenUrlError::HasPath => "expected http://HOST:PORT with no path",
            ListenUrlError::NoPort => "expected http://HOST:PORT with a port",
            ListenUrlError::BadPort => "expected http://HOST:PORT with a port from 0 to 65535",
            ListenUrlError::NoHost => "expected http://HOST:PORT with a host",
        })
    }
}

impl std::error::Error for ListenUrlError {}

impl ListenUrl {
    /// Parses `http://host:port` (a trailing `/` is ignored). Only `http` is accepted.
    pub fn parse(url: &str) -> Result<Self, ListenUrlError> {
        let url = url.trim().trim_end_matches('/');
        let rest = url.strip_prefix("http://").ok_or(ListenUrlError::NotHttp)?;
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(ListenUrlError::HasPath);
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(inner) => inner.split_once("]:"),
            None => rest.rsplit_once(':'),
        }
        .ok_or(ListenUrlError::NoPort)?;
        let port: u16 = port.parse().map_err(|_| ListenUrlError::BadPort)?;
        if host.is_empty() {
            return Err(ListenUrlError::NoHost);
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` suitable for `TcpListener::bind`.
    pub fn bind_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// True for `localhost` and loopback IP literals.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost") || self.ip().is_some_and(|ip| ip.is_loopback())
    }
}

/// Tailscale's CGNAT range 100.64.0.0/10.
pub fn is_tailscale_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => in_cgnat(v4),
        IpAddr::V6(_) => false,
    }
}

fn in_cgnat(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 100 && (o[1] & 0b1100_0000) == 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            ListenUrl::parse("http://127.0.0.1:4317/").unwrap(),
            ListenUrl {
                host: "127.0.0.1".into(),
                port: 4317
            }
        );
        assert_eq!(
            ListenUrl::parse("http://[::1]:9").unwrap().bind_addr(),
            "[::1]:9"
        );
        let e = |url| ListenUrl::parse(url).unwrap_err();
        assert_eq!(e("https://127.0.0.1:1"), ListenUrlError::NotHttp);
        assert_eq!(e("http://127.0.0.1"), ListenUrlError::NoPort);
        assert_eq!(e("http://127.0.0.1:99999"), ListenUrlError::BadPort);
        assert_eq!(e("http://127.0.0.1:1/x"), ListenUrlError::HasPath);
        assert_eq!(e("http://:1"), ListenUrlError::NoHost);
        assert_eq!(
            e("http://[::1]").to_string(),
            "expected http://HOST:PORT with a port"
        );
    }

    #[test]
    fn cgnat_range() {
        assert!(is_tailscale_ip("100.64.0.1".parse().unwrap()));
        assert!(is_tailscale_ip("100.127.255.255".parse().unwrap()));
        assert!(!is_tailscale_ip("100.128.0.1".parse().unwrap()));
        assert!(!is_tailscale_ip("100.63.255.255".parse().unwrap()));
        assert!(!is_tailscale_ip("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn loopback_detection() {
        assert!(ListenUrl::parse("http://localhost:1")
            .unwrap()
            .is_loopback());
        assert!(ListenUrl::parse("http://127.0.0.2:1")
            .unwrap()
            .is_loopback());
        assert!(!ListenUrl::parse("http://0.0.0.0:1").unwrap().is_loopback());
    }
}
