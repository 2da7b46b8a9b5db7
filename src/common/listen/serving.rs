//! One HTTP server over every listener a daemon has: those bound at start, and the one
//! the retry thread binds later. Stopped as one.

use std::time::Duration;

use super::bind::Bound;
use super::retry::Retry;
use crate::common::http::{Handler, Server, ServerConfig, ServerHandle};

/// A daemon's server and the retry of its waiting address (if any).
pub struct Serving {
    server: ServerHandle,
    retry: Option<Retry>,
}

impl Serving {
    /// Serves `bound` with `handler`; a waiting address is tried every
    /// [`super::RETRY_EVERY`].
    pub fn start(bound: Bound, cfg: ServerConfig, handler: Handler) -> std::io::Result<Serving> {
        Self::start_retrying_every(bound, cfg, handler, super::RETRY_EVERY)
    }

    fn start_retrying_every(
        bound: Bound,
        cfg: ServerConfig,
        handler: Handler,
        every: Duration,
    ) -> std::io::Result<Serving> {
        let name = cfg.name.clone();
        let mut sockets = bound.sockets.into_iter();
        let Some((first, _)) = sockets.next() else {
            return Err(std::io::Error::other("no listener to serve"));
        };
        let server = Server::start(first, cfg, handler)?;
        let acceptor = server.acceptor();
        for (socket, _) in sockets {
            acceptor.accept_on(socket)?;
        }
        let retry = match bound.waiting {
            Some(addr) => Some(Retry::spawn(&name, addr, every, acceptor, bound.listeners)?),
            None => None,
        };
        Ok(Serving { server, retry })
    }

    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Ends the retry, then stops the server (see [`ServerHandle::stop`]).
    pub fn stop(self, grace: Duration) -> bool {
        if let Some(r) = self.retry {
            r.stop();
        }
        self.server.stop(grace)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::Arc;

    use super::*;
    use crate::common::http::{Reply, Response};
    use crate::common::listen::board::{Listener, Listeners};

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// The waiting address is served once it can be bound: here another loopback port
    /// stands in for the Tailscale address, held at first by a socket of the test's own.
    #[test]
    fn a_waiting_address_is_served_once_it_binds() {
        let lo = TcpListener::bind("127.0.0.1:0").unwrap();
        let lo_addr = lo.local_addr().unwrap();
        let waiting: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let blocker = TcpListener::bind(waiting).unwrap();
        let listeners = Listeners::new(vec![
            Listener {
                addr: waiting,
                bound: false,
                error: Some("in use".into()),
            },
            Listener {
                addr: lo_addr,
                bound: true,
                error: None,
            },
        ]);
        let bound = Bound {
            sockets: vec![(lo, lo_addr)],
            waiting: Some(waiting),
            listeners: listeners.clone(),
        };
        let handler: Handler = Arc::new(|_| Reply::Http(Response::text(200, "ok\n")));
        let cfg = ServerConfig {
            name: "retry-test".into(),
            ..ServerConfig::default()
        };
        let serving =
            Serving::start_retrying_every(bound, cfg, handler, Duration::from_millis(20)).unwrap();
        assert!(TcpStream::connect(lo_addr).is_ok());
        drop(blocker);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !listeners.snapshot()[0].bound {
            assert!(std::time::Instant::now() < deadline, "never bound");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(listeners.snapshot()[0].error.is_none());
        assert!(TcpStream::connect(waiting).is_ok());
        assert!(serving.stop(Duration::from_secs(1)));
        assert!(TcpStream::connect(lo_addr).is_err(), "still accepting");
    }
}
