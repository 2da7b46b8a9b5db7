//! Listen-URL parsing and the address rules the daemons enforce at startup.

use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    /// Host as written (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl ListenUrl {
    /// Parses `http://host:port` (a trailing `/` is ignored). Only `http` is accepted.
    /// Errors say what was expected without repeating the input: the caller names the
    /// setting and shows the value.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| "expected http://HOST:PORT (plain http)".to_string())?;
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err("expected http://HOST:PORT with no path".into());
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, p) = inner
                .split_once("]:")
                .ok_or_else(|| "expected http://HOST:PORT with a port".to_string())?;
            (h.to_string(), p)
        } else {
            let (h, p) = rest
                .rsplit_once(':')
                .ok_or_else(|| "expected http://HOST:PORT with a port".to_string())?;
            (h.to_string(), p)
        };
        let port: u16 = port
            .parse()
            .map_err(|_| "expected http://HOST:PORT with a port from 0 to 65535".to_string())?;
        if host.is_empty() {
            return Err("expected http://HOST:PORT with a host".into());
        }
        Ok(Self { host, port })
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
        assert!(ListenUrl::parse("https://127.0.0.1:1").is_err());
        assert!(ListenUrl::parse("http://127.0.0.1").is_err());
        assert!(ListenUrl::parse("http://127.0.0.1:99999").is_err());
        assert!(ListenUrl::parse("http://127.0.0.1:1/x").is_err());
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
