//! The thread that binds an address that was not up at start (a Tailscale address before
//! Tailscale is) and hands the listener to the running server. Named, owned by the daemon,
//! stopped with it; it warns once (at start, in `bind`) and logs once when bound.

use std::net::{SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::board::Listeners;
use crate::common::http::server::Acceptor;

/// A running retry; [`Retry::stop`] ends it within a moment.
pub struct Retry {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Retry {
    /// Tries `addr` every `every` until it binds or the retry is stopped.
    pub fn spawn(
        name: &str,
        addr: SocketAddr,
        every: Duration,
        acceptor: Acceptor,
        listeners: Listeners,
    ) -> std::io::Result<Retry> {
        let (stop, stopped) = bounded::<()>(1);
        let thread = thread::Builder::new()
            .name(format!("{name}-bind-retry"))
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    // Asked to stop, or the owner is gone.
                    _ => return,
                }
                if try_bind(addr, &acceptor, &listeners) {
                    return;
                }
            })?;
        Ok(Retry { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// One try; true once the address is served (or can never be: the server is stopping).
fn try_bind(addr: SocketAddr, acceptor: &Acceptor, listeners: &Listeners) -> bool {
    let socket = match TcpListener::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            // Warned once at start; each later failure only at debug.
            log::debug!("cannot listen on {addr} yet: {e}");
            listeners.set(addr, Err(e.to_string()));
            return false;
        }
    };
    match acceptor.accept_on(socket) {
        Ok(_) => {
            log::info!("now listening on http://{addr} too");
            listeners.set(addr, Ok(()));
        }
        Err(e) => {
            log::warn!("bound {addr} but cannot serve it: {e}");
            listeners.set(addr, Err(e.to_string()));
        }
    }
    true
}
