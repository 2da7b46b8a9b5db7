//! The listener: an accept loop that never dies, a connection cap with a fast 503, one
//! named thread per connection, and a graceful stop that lets in-flight requests finish.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::conn;
use super::request::Request;
use super::response::Reply;
use crate::common::api_error::ApiError;
use crate::common::sync::lock;

/// The application: turns a request into a reply. Runs on the connection's thread.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Prefix for thread names (`<name>-accept`, `<name>-conn`).
    pub name: String,
    /// Connections served at once (HTTP and WebSocket); more get an immediate 503.
    pub max_connections: usize,
    /// Total time allowed to receive a request head once its first byte arrived, and for
    /// the first request's first byte after accept.
    pub head_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Longest pause allowed while a body is being received.
    pub body_timeout: Duration,
    /// Longest a single response write may block on a client that does not read.
    pub write_timeout: Duration,
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    /// Largest WebSocket message accepted from a client.
    pub max_ws_message_bytes: usize,
    /// Pretty-print the JSON error bodies the server itself produces.
    pub pretty_json: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "http".to_string(),
            max_connections: 512,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_head_bytes: 32 * 1024,
            max_body_bytes: 1024 * 1024,
            max_ws_message_bytes: 1024 * 1024,
            pretty_json: false,
        }
    }
}

/// What a connection is doing, so a stop can close idle ones at once and wait for busy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
    Idle,
    Busy,
    WebSocket,
}

pub(super) struct Shared {
    pub(super) cfg: ServerConfig,
    pub(super) handler: Handler,
    stopping: AtomicBool,
    active: AtomicUsize,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, (TcpStream, ConnState)>>,
}

impl Shared {
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(super) fn set_state(&self, id: u64, state: ConnState) {
        if let Some(entry) = lock(&self.conns).get_mut(&id) {
            entry.1 = state;
        }
    }

    /// Produces a JSON error response in the configured style.
    pub(super) fn error_response(&self, err: &ApiError) -> super::Response {
        err.to_response(&crate::common::ids::new_id("req"), self.cfg.pretty_json)
    }
}

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
        let shared = Arc::new(Shared {
            cfg,
            handler,
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("{}-accept", shared.cfg.name))
            .spawn(move || accept_loop(listener, s))?;
        Ok(ServerHandle {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        })
    }
}

/// Owner of a running server. Dropping it without `stop` leaves the server running until
/// the process exits.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections currently open (HTTP and WebSocket).
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes idle and WebSocket connections, and waits up to `grace` for
    /// requests in flight to finish. Returns false if some were still running at the end.
    pub fn stop(mut self, grace: Duration) -> bool {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_millis(200));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + grace;
        loop {
            for (stream, state) in lock(&self.shared.conns).values() {
                if *state != ConnState::Busy {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
            if self.shared.active.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                log::warn!(
                    "stop: {} connection(s) still busy after {:?}",
                    self.shared.active.load(Ordering::SeqCst),
                    grace
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

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut last_error_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if shared.stopping() {
                    return;
                }
                admit(stream, peer, &shared);
            }
            Err(e) => {
                if shared.stopping() {
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

fn admit(mut stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let active = shared.active.fetch_add(1, Ordering::SeqCst);
    if active >= shared.cfg.max_connections {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        // Answer on the accept thread with a short write timeout: one small write into an
        // empty socket buffer, so it cannot stall accepting.
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let err = ApiError::new(
            503,
            "server_busy",
            format!(
                "Too many connections (limit {}); retry shortly.",
                shared.cfg.max_connections
            ),
        )
        .with_header("Retry-After", "1");
        let _ = stream.write_all(&shared.error_response(&err).to_bytes(false, false));
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if let Ok(clone) = stream.try_clone() {
        lock(&shared.conns).insert(id, (clone, ConnState::Idle));
    }
    let s = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("{}-conn", shared.cfg.name))
        .stack_size(512 * 1024)
        .spawn(move || {
            let _guard = ConnGuard { shared: &s, id };
            conn::serve(stream, peer, &s, id);
        });
    if let Err(e) = spawned {
        log::warn!("could not start a connection thread: {e}");
        lock(&shared.conns).remove(&id);
        shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Releases the connection's slot however its thread ends (including a panic).
struct ConnGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.id);
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}
