//! The listener: an accept loop that never dies, admission through the connection table
//! (see `slots`), one named thread per connection, and a graceful stop that lets
//! in-flight requests finish. A server may accept on more than one listener (loopback and
//! a Tailscale address), all sharing one connection table and one handler.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::config::{Handler, ServerConfig};
use super::conn::{self, Context};
use super::slots::{self, Refusal, Slots};
use crate::common::api_error::ApiError;

pub struct Server;

impl Server {
    /// Binds `addr` and starts serving on a background accept thread.
    pub fn bind(addr: &str, cfg: ServerConfig, handler: Handler) -> std::io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr)?;
        Self::start(listener, cfg, handler)
    }

    pub fn start(
        listener: TcpListener,
        cfg: ServerConfig,
        handler: Handler,
    ) -> std::io::Result<ServerHandle> {
        let addr = listener.local_addr()?;
        let cap = connection_cap(&cfg);
        let cx = Arc::new(Context {
            cfg,
            handler,
            slots: Slots::new(cap),
        });
        let acceptor = Acceptor(Arc::new(Accepts {
            cx: cx.clone(),
            threads: Mutex::new(Vec::new()),
        }));
        acceptor.accept_on(listener)?;
        Ok(ServerHandle { addr, cx, acceptor })
    }
}

/// Adds listeners to a running server (one accept thread each); cloned into whoever binds
/// a listener later, such as the thread retrying a Tailscale address.
#[derive(Clone)]
pub struct Acceptor(Arc<Accepts>);

struct Accepts {
    cx: Arc<Context>,
    /// Each accept thread with the address that wakes it at the stop.
    threads: Mutex<Vec<(SocketAddr, JoinHandle<()>)>>,
}

impl Acceptor {
    /// Serves `listener` with the server's handler and connection table. Refused once the
    /// server is stopping: its accept thread would never be woken.
    pub fn accept_on(&self, listener: TcpListener) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let mut threads = crate::common::sync::lock(&self.0.threads);
        if self.0.cx.slots.stopping() {
            return Err(std::io::Error::other("the server is stopping"));
        }
        let c = self.0.cx.clone();
        let thread = thread::Builder::new()
            .name(format!("{}-accept", c.cfg.name))
            .spawn(move || accept_loop(listener, c))?;
        threads.push((addr, thread));
        Ok(addr)
    }

    /// Wakes every blocking accept() with a connection of our own and joins its thread.
    /// Called after `begin_stop`, so a late `accept_on` is refused rather than missed.
    fn join_all(&self) {
        let threads = std::mem::take(&mut *crate::common::sync::lock(&self.0.threads));
        for (addr, thread) in threads {
            let _ = TcpStream::connect_timeout(&wake_addr(addr), Duration::from_millis(200));
            let _ = thread.join();
        }
    }
}

/// The configured cap, lowered to what the open-files limit can carry.
fn connection_cap(cfg: &ServerConfig) -> usize {
    let Some(nofile) = slots::nofile_limit() else {
        return cfg.max_connections;
    };
    let fit = slots::fd_cap(nofile);
    if fit < cfg.max_connections {
        log::warn!(
            "{}: serving at most {fit} connections, not {}: the open-files limit is {nofile} and {} descriptors are kept for state writes, logs and child processes (raise the limit, e.g. launchd NumberOfFiles)",
            cfg.name,
            cfg.max_connections,
            slots::FD_RESERVE
        );
        return fit;
    }
    cfg.max_connections
}

/// Owner of a running server. Dropping it without `stop` leaves the server running until
/// the process exits.
pub struct ServerHandle {
    /// The first listener's address.
    addr: SocketAddr,
    cx: Arc<Context>,
    acceptor: Acceptor,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds listeners to this server, now or later.
    pub fn acceptor(&self) -> Acceptor {
        self.acceptor.clone()
    }

    /// Connections currently open (HTTP and WebSocket).
    pub fn connections(&self) -> usize {
        self.cx.slots.open()
    }

    /// The connection cap in force (the configured one, or less under a low open-files
    /// limit).
    pub fn max_connections(&self) -> usize {
        self.cx.slots.cap()
    }

    /// Stops accepting, closes idle and WebSocket connections, and waits up to `grace` for
    /// requests in flight to finish. Returns false if some were still running at the end.
    pub fn stop(self, grace: Duration) -> bool {
        self.cx.slots.begin_stop();
        self.acceptor.join_all();
        let deadline = Instant::now() + grace;
        loop {
            // Again each round: a connection that finished its request is idle now.
            self.cx.slots.begin_stop();
            if self.cx.slots.open() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                log::warn!(
                    "stop: {} connection(s) still busy after {} ms",
                    self.cx.slots.open(),
                    grace.as_millis()
                );
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn wake_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn accept_loop(listener: TcpListener, cx: Arc<Context>) {
    let mut last_error_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if cx.slots.stopping() {
                    return;
                }
                admit(stream, peer, &cx);
            }
            Err(e) => {
                if cx.slots.stopping() {
                    return;
                }
                // EMFILE/ENFILE/ECONNABORTED and friends: log (rate-limited), back off, go on.
                // An accept loop that exits leaves a daemon that is "up" but deaf.
                let now = Instant::now();
                if last_error_log.is_none_or(|t| now.duration_since(t) > Duration::from_secs(5)) {
                    log::warn!("accept failed: {e} ({suppressed} similar errors suppressed)");
                    last_error_log = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn admit(stream: TcpStream, peer: SocketAddr, cx: &Arc<Context>) {
    let slot = match cx.slots.admit(stream) {
        Ok(slot) => slot,
        Err((stream, why)) => return refuse(stream, why, cx),
    };
    let c = cx.clone();
    let s = slot.clone();
    let spawned = thread::Builder::new()
        .name(format!("{}-conn", cx.cfg.name))
        .stack_size(512 * 1024)
        .spawn(move || {
            let _release = Release { cx: &c, slot: &s };
            conn::serve(&s, peer, &c);
        });
    if let Err(e) = spawned {
        log::warn!("could not start a connection thread: {e}");
        let _ = slot.stream.shutdown(Shutdown::Both);
        cx.slots.release(&slot);
    }
}

/// Every slot is busy: answer on the accept thread with a short write timeout (one small
/// write into an empty socket buffer, so it cannot stall accepting).
fn refuse(mut stream: TcpStream, why: Refusal, cx: &Context) {
    log::debug!("refused a connection: {why}");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let err = ApiError::new(
        503,
        "server_busy",
        format!(
            "Too many connections (limit {}); retry shortly.",
            cx.slots.cap()
        ),
    )
    .with_header("Retry-After", "1");
    let _ = stream.write_all(&cx.error_response(&err).to_bytes(false, false));
    let _ = stream.shutdown(Shutdown::Both);
}

/// Gives the connection's slot back however its thread ends (including a panic).
struct Release<'a> {
    cx: &'a Context,
    slot: &'a slots::Slot,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.cx.slots.release(self.slot);
    }
}
