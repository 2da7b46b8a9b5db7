//! Binding at start. A loopback (or any non-Tailscale) address binds or the start fails,
//! as before. A Tailscale address brings loopback at the same port along: loopback must
//! bind, the Tailscale one may fail (Tailscale not up yet) and is then retried.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use super::board::{Listener, Listeners};
use crate::common::netaddr::is_tailscale_ip;

/// What a daemon was handed at start.
#[derive(Debug)]
pub struct Bound {
    /// Bound now, each with its address; the first is the one announced.
    pub sockets: Vec<(TcpListener, SocketAddr)>,
    /// A Tailscale address that could not be bound yet (same port as loopback).
    pub waiting: Option<SocketAddr>,
    /// All of them, for the Host guard and `/v1/runtime`.
    pub listeners: Listeners,
}

impl Bound {
    /// The announced address (what tests and scripts read from stdout); `bind` always
    /// binds at least one.
    pub fn announced(&self) -> Option<SocketAddr> {
        self.sockets.first().map(|(_, a)| *a)
    }
}

/// Why a daemon cannot listen: the start-up fails with this line.
#[derive(Debug)]
pub enum BindError {
    Bind { addr: String, source: io::Error },
    LocalAddr(io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            BindError::LocalAddr(e) => write!(f, "cannot read the bound address: {e}"),
        }
    }
}

impl std::error::Error for BindError {}

/// Binds `spec` (`host:port`), and loopback beside a Tailscale address.
pub fn bind(spec: &str) -> Result<Bound, BindError> {
    match tailnet(spec) {
        Some(addr) => bind_tailnet(addr),
        None => {
            let (socket, addr) = bind_one(spec)?;
            Ok(Bound {
                sockets: vec![(socket, addr)],
                waiting: None,
                listeners: Listeners::single(addr),
            })
        }
    }
}

/// The address when `spec` is a Tailscale IP literal with a port.
fn tailnet(spec: &str) -> Option<SocketAddr> {
    spec.parse::<SocketAddr>()
        .ok()
        .filter(|a| is_tailscale_ip(a.ip()))
}

fn loopback(port: u16) -> String {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string()
}

fn bind_tailnet(addr: SocketAddr) -> Result<Bound, BindError> {
    match bind_one(&addr.to_string()) {
        Ok((tail, tail_addr)) => {
            // Port 0 picked one for the Tailscale address: loopback takes the same.
            let (lo, lo_addr) = bind_one(&loopback(tail_addr.port()))?;
            let listeners = Listeners::new(vec![bound(tail_addr), bound(lo_addr)]);
            Ok(Bound {
                sockets: vec![(tail, tail_addr), (lo, lo_addr)],
                waiting: None,
                listeners,
            })
        }
        Err(BindError::Bind { source, .. }) => {
            let (lo, lo_addr) = bind_one(&loopback(addr.port()))?;
            let waiting = SocketAddr::new(addr.ip(), lo_addr.port());
            let error = source.to_string();
            log::warn!(
                "cannot listen on {waiting} yet ({error}); serving on {lo_addr} and trying {waiting} again every {} s",
                super::RETRY_EVERY.as_secs()
            );
            let listeners = Listeners::new(vec![
                Listener {
                    addr: waiting,
                    bound: false,
                    error: Some(error),
                },
                bound(lo_addr),
            ]);
            Ok(Bound {
                sockets: vec![(lo, lo_addr)],
                waiting: Some(waiting),
                listeners,
            })
        }
        Err(e) => Err(e),
    }
}

fn bound(addr: SocketAddr) -> Listener {
    Listener {
        addr,
        bound: true,
        error: None,
    }
}

fn bind_one(spec: &str) -> Result<(TcpListener, SocketAddr), BindError> {
    let socket = TcpListener::bind(spec).map_err(|source| BindError::Bind {
        addr: spec.to_string(),
        source,
    })?;
    let addr = socket.local_addr().map_err(BindError::LocalAddr)?;
    Ok((socket, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tailscale_literals_bring_loopback_along() {
        assert_eq!(
            tailnet("100.64.0.1:4317"),
            Some("100.64.0.1:4317".parse().unwrap())
        );
        for other in [
            "127.0.0.1:4317",
            "localhost:4317",
            "[::1]:4317",
            "10.0.0.1:1",
        ] {
            assert_eq!(tailnet(other), None, "{other}");
        }
    }

    #[test]
    fn tailscale_address_not_up_serves_loopback_and_waits() {
        // 100.64.0.1 is not an address of the test machine: the bind fails as it does on a
        // Mac whose Tailscale has not come up yet.
        let b = bind("100.64.0.1:0").expect("loopback binds");
        assert_eq!(b.sockets.len(), 1);
        let lo = b.announced().expect("one socket");
        assert!(lo.ip().is_loopback() && lo.port() != 0, "{lo}");
        let waiting = b.waiting.expect("the tailnet address waits");
        assert_eq!(
            waiting,
            SocketAddr::new("100.64.0.1".parse().unwrap(), lo.port())
        );
        let all = b.listeners.snapshot();
        assert_eq!(all[0].addr, waiting);
        assert!(!all[0].bound && all[0].error.is_some());
        assert!(all[1].bound && all[1].addr == lo);
    }

    #[test]
    fn loopback_in_use_fails_the_start() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = bind(&format!("100.64.0.1:{port}")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot listen on 127.0.0.1:{port}:")),
            "{e}"
        );
    }
}
