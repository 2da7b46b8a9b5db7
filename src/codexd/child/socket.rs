//! The unix transport's connection: a WebSocket client (tungstenite, blocking handshake
//! with timeouts) over the Unix socket the app-server listens on, and the one thread that
//! owns it afterwards.
//!
//! The socket thread is both transport halves of `child::stdio` in one: it writes what the
//! [`Rpc`](crate::rpc::Rpc) queues as text frames, and reports every inbound text frame as
//! a [`ChildEvent::Line`], so the dispatcher handles a frame exactly like a stdout line.
//! One thread owns the socket because a tungstenite `WebSocket` cannot be read and written
//! from two; it waits in poll(2) on the socket, on the Rpc's wake pipe (a message was
//! queued) and on its stop pipe, so it neither spins nor adds latency. The socket is
//! non-blocking after the handshake: a child that stops reading fills the socket, and the
//! frame waits in tungstenite's buffer while the thread keeps reading.
//!
//! A message over codexd's line limit is cut exactly like a stdout line ([`MAX_LINE`]:
//! its head is passed on as `LineCut`, a request in it is still answered); one over
//! [`MAX_MESSAGE`] cannot be read at all and ends the connection (codexd attaches again).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::TryRecvError;

use baa::common::sync::lock;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::pumps::{cut_message, CUT_HEAD, MAX_LINE};
use super::{queue, ChildEvent};
use crate::rpc::Outbound;

/// Longest message read at all (and held in memory at once): twice the line limit.
pub const MAX_MESSAGE: usize = 2 * MAX_LINE;

/// Bytes our frames may pile up in tungstenite's buffer while the child does not read;
/// past it the connection is given up (requests then fail as `ChildGone`).
const MAX_WRITE_BUFFER: usize = 64 * 1024 * 1024;

/// One connection attempt: connect to `path` and complete the WebSocket upgrade, each
/// socket read and write bounded by `timeout`. The error says what failed, for status.
pub fn connect(path: &Path, timeout: Duration) -> Result<WebSocket<UnixStream>, ConnectError> {
    let stream = UnixStream::connect(path).map_err(ConnectError::Refused)?;
    let io = |e: io::Error| ConnectError::Handshake(e.to_string());
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    match tungstenite::client::client_with_config("ws://localhost/", stream, Some(config)) {
        Ok((ws, _response)) => Ok(ws),
        Err(HandshakeError::Interrupted(_)) => Err(ConnectError::Handshake(format!(
            "no WebSocket upgrade within {} ms",
            timeout.as_millis()
        ))),
        Err(HandshakeError::Failure(e)) => Err(ConnectError::Handshake(e.to_string())),
    }
}

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing accepted the connection (no socket yet, or nobody listening on it).
    Refused(io::Error),
    /// Something accepted it but the WebSocket upgrade failed or timed out.
    Handshake(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused(e) => write!(f, "connect: {e}"),
            ConnectError::Handshake(e) => write!(f, "WebSocket upgrade: {e}"),
        }
    }
}

/// The socket thread of one generation.
pub struct SocketPump {
    thread: Option<JoinHandle<()>>,
    /// Why the connection ended, once it did.
    ended: Arc<Mutex<Option<String>>>,
}

impl SocketPump {
    /// Starts the thread on `ws`. Frames go to `reports` tagged with `generation`; what
    /// the Rpc queues goes out. It ends when the connection closes (reported as
    /// `StreamClosed`) or the Rpc is closed (a close frame is sent, best effort).
    pub fn start(
        generation: u64,
        ws: WebSocket<UnixStream>,
        out: Outbound,
        reports: queue::Sender<ChildEvent>,
    ) -> io::Result<SocketPump> {
        ws.get_ref().set_nonblocking(true)?;
        let ended = Arc::new(Mutex::new(None));
        let end = ended.clone();
        let thread = thread::Builder::new()
            .name(format!("codexd-socket-{generation}"))
            .spawn(move || {
                let why = run(generation, ws, &out, &reports);
                log::debug!("app-server connection {generation} ended: {why}");
                *lock(&end) = Some(why);
                let ev = ChildEvent::StreamClosed { generation };
                let weight = ev.weight();
                let _ = reports.send(ev, weight);
            })?;
        Ok(SocketPump {
            thread: Some(thread),
            ended,
        })
    }

    /// Why the connection ended (the peer closed it, or it failed); None while it lasts.
    pub fn ended(&self) -> Option<String> {
        lock(&self.ended).clone()
    }

    /// Joins the thread; the Rpc must be closed first (that is what stops it).
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the app-server socket thread panicked");
            }
        }
    }
}

/// The thread's loop; returns why it ended.
fn run(
    generation: u64,
    mut ws: WebSocket<UnixStream>,
    out: &Outbound,
    reports: &queue::Sender<ChildEvent>,
) -> String {
    loop {
        if out.stop.is_fired() {
            return close(&mut ws, "codexd closed the connection");
        }
        // Outbound: everything queued, then one flush.
        loop {
            match out.rx.try_recv() {
                Ok(msg) if msg.is_empty() => return close(&mut ws, "codexd closed the connection"),
                Ok(msg) => {
                    let text = String::from_utf8_lossy(&msg).into_owned();
                    match ws.write(Message::text(text)) {
                        Ok(()) => {}
                        // Buffered by tungstenite; the flush below (or a later one) sends it.
                        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        }
                        Err(e) => return format!("write: {e}"),
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return close(&mut ws, "codexd dropped the connection")
                }
            }
        }
        let want_write = match ws.flush() {
            Ok(()) => false,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => return format!("write: {e}"),
        };
        // Inbound: every complete frame available now.
        loop {
            let bytes = match ws.read() {
                Ok(Message::Text(t)) => t.as_bytes().to_vec(),
                Ok(Message::Binary(b)) => b.to_vec(),
                // Pings are answered by tungstenite itself; a close frame is answered and
                // the next read reports the end.
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return "the app-server closed the connection".into()
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    log::error!(
                        "the app-server sent a message over {MAX_MESSAGE} bytes ({e}); dropping the connection"
                    );
                    return format!("a message over {MAX_MESSAGE} bytes: {e}");
                }
                Err(e) => return format!("read: {e}"),
            };
            let ev = if bytes.len() > MAX_LINE {
                let head = bytes[..CUT_HEAD].to_vec();
                ChildEvent::LineCut {
                    generation,
                    bytes: bytes.len() as u64,
                    message: cut_message(&head),
                    head,
                }
            } else {
                ChildEvent::Line { generation, bytes }
            };
            let weight = ev.weight();
            if reports.send(ev, weight).is_err() {
                return "the core stopped listening".into();
            }
        }
        let wake = out.wake.as_deref().map(AsRawFd::as_raw_fd);
        if let Err(e) = wait(
            ws.get_ref().as_raw_fd(),
            want_write,
            wake,
            out.stop.as_raw_fd(),
        ) {
            return format!("poll: {e}");
        }
        if let Some(w) = &out.wake {
            w.drain();
        }
    }
}

/// Sends a close frame without waiting for the peer (non-blocking, best effort).
fn close(ws: &mut WebSocket<UnixStream>, why: &str) -> String {
    let _ = ws.close(None);
    let _ = ws.flush();
    why.to_string()
}

/// Blocks until the socket is readable (or writable, if `want_write`), the wake pipe rang
/// or the stop pipe fired. Hang-up and errors count as ready: the next read reports them.
fn wait(sock: RawFd, want_write: bool, wake: Option<RawFd>, stop: RawFd) -> io::Result<()> {
    let mut events = libc::POLLIN;
    if want_write {
        events |= libc::POLLOUT;
    }
    let pollfd = |fd, events| libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // A missing wake pipe is polled as fd -1, which poll(2) ignores.
    let mut fds = [
        pollfd(sock, events),
        pollfd(stop, libc::POLLIN),
        pollfd(wake.unwrap_or(-1), libc::POLLIN),
    ];
    loop {
        // SAFETY: three pollfds we own; no timeout, the stop pipe is the way out.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
