//! WebSocket plumbing shared by the conductor's Firefox bridge and codexd's event stream:
//! a broadcast hub that drops slow subscribers instead of waiting for them, and a
//! single-owner session loop that pushes outbound frames and answers inbound ones. A
//! client that breaks the protocol gets a close frame with the RFC 6455 code (1002, 1007,
//! 1009) before the connection ends, not a bare TCP close.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::{Message, WebSocket};

use crate::common::http::socket::linger_close;
use crate::common::sync::lock;

/// Fan-out of text frames to every subscriber. A subscriber whose queue is full is
/// dropped: its session loop sees the channel close and disconnects the client.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    subs: Mutex<Vec<(u64, Sender<String>)>>,
    next_id: AtomicU64,
    queue: usize,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    pub rx: Receiver<String>,
    id: u64,
    hub: Arc<HubInner>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.hub.subs).retain(|(id, _)| *id != self.id);
    }
}

impl Hub {
    /// `queue` is how many frames a subscriber may fall behind before it is dropped.
    pub fn new(queue: usize) -> Self {
        Self {
            inner: Arc::new(HubInner {
                subs: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                queue: queue.max(1),
            }),
        }
    }

    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = bounded(self.inner.queue);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.subs).push((id, tx));
        Subscription {
            rx,
            id,
            hub: self.inner.clone(),
        }
    }

    /// Sends `text` to every subscriber without blocking; returns how many got it.
    pub fn broadcast(&self, text: &str) -> usize {
        let mut subs = lock(&self.inner.subs);
        let mut delivered = 0;
        subs.retain(|(id, tx)| match tx.try_send(text.to_string()) {
            Ok(()) => {
                delivered += 1;
                true
            }
            Err(TrySendError::Full(_)) => {
                log::warn!("websocket subscriber {id} fell behind; disconnecting it");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        delivered
    }

    pub fn len(&self) -> usize {
        lock(&self.inner.subs).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Longest an inbound frame waits to be read while no outbound traffic arrives.
    pub tick: Duration,
    pub ping_every: Duration,
    /// Close when nothing (not even a pong) came in for this long.
    pub idle_close: Duration,
    /// Bound on writing the `initial` frames (blocking mode).
    pub initial_write_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(25),
            ping_every: Duration::from_secs(15),
            idle_close: Duration::from_secs(50),
            initial_write_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    ClientClosed,
    /// The hub dropped this subscriber, or the outbound buffer overflowed.
    TooSlow,
    Idle,
    /// The client broke the protocol; it was sent a close frame with this code (1002
    /// protocol error, 1007 invalid UTF-8, 1009 message too big).
    Refused(u16),
    Error,
}

/// How a log line says it (`client closed`, `refused with close code 1009`).
impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::ClientClosed => f.write_str("client closed"),
            SessionEnd::TooSlow => f.write_str("too slow"),
            SessionEnd::Idle => f.write_str("idle"),
            SessionEnd::Refused(code) => write!(f, "refused with close code {code}"),
            SessionEnd::Error => f.write_str("error"),
        }
    }
}

/// Runs one WebSocket session until it ends. `initial` frames go out first (blocking, with
/// a timeout); then frames from `outbox` are pushed as they arrive, and every inbound
/// text frame is passed to `on_text`, whose replies are sent back in order.
pub fn run_session(
    mut ws: WebSocket<TcpStream>,
    initial: Vec<String>,
    outbox: &Receiver<String>,
    mut on_text: impl FnMut(&str) -> Vec<String>,
    opts: &SessionOptions,
) -> SessionEnd {
    let _ = ws
        .get_ref()
        .set_write_timeout(Some(opts.initial_write_timeout));
    for text in initial {
        if ws.send(Message::text(text)).is_err() {
            return SessionEnd::Error;
        }
    }
    let end = pump(&mut ws, outbox, &mut on_text, opts);
    if matches!(end, SessionEnd::Idle | SessionEnd::TooSlow) {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
    let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
    end
}

/// The close code RFC 6455 §7.4.1 gives an inbound error, when the client broke the
/// protocol (rather than went away).
fn close_code(e: &tungstenite::Error) -> Option<(CloseCode, &'static str)> {
    match e {
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        tungstenite::Error::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        tungstenite::Error::Utf8(_) => {
            Some((CloseCode::Invalid, "text message is not valid UTF-8"))
        }
        tungstenite::Error::Capacity(_) => Some((CloseCode::Size, "message too big")),
        _ => None,
    }
}

/// Sends the close frame for a protocol error (blocking, bounded) and drains what the
/// client still sends, so it reads the code instead of an RST for unread input.
fn refuse(
    ws: &mut WebSocket<TcpStream>,
    code: CloseCode,
    reason: &'static str,
    opts: &SessionOptions,
) -> SessionEnd {
    let tcp = ws.get_ref();
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_write_timeout(Some(opts.initial_write_timeout));
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = ws.flush();
    linger_close(ws.get_ref());
    SessionEnd::Refused(code.into())
}

fn pump(
    ws: &mut WebSocket<TcpStream>,
    outbox: &Receiver<String>,
    on_text: &mut impl FnMut(&str) -> Vec<String>,
    opts: &SessionOptions,
) -> SessionEnd {
    if ws.get_ref().set_nonblocking(true).is_err() {
        return SessionEnd::Error;
    }
    let mut last_inbound = Instant::now();
    let mut last_ping = Instant::now();
    loop {
        let mut pending: Vec<String> = Vec::new();
        match outbox.recv_timeout(opts.tick) {
            Ok(text) => {
                pending.push(text);
                pending.extend(outbox.try_iter());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return SessionEnd::TooSlow,
        }
        for text in pending {
            if let Some(end) = write(ws, Message::text(text)) {
                return end;
            }
        }
        // Drain everything readable now.
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    last_inbound = Instant::now();
                    for reply in on_text(t.as_str()) {
                        if let Some(end) = write(ws, Message::text(reply)) {
                            return end;
                        }
                    }
                }
                Ok(Message::Binary(_)) => {
                    last_inbound = Instant::now();
                    let reply = r#"{"type":"error","error":"binary_not_supported","message":"Send JSON text frames."}"#;
                    if let Some(end) = write(ws, Message::text(reply)) {
                        return end;
                    }
                }
                Ok(_) => last_inbound = Instant::now(),
                Err(tungstenite::Error::Io(e)) if would_block(&e) => break,
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => return SessionEnd::ClientClosed,
                Err(e) => {
                    let Some((code, reason)) = close_code(&e) else {
                        return SessionEnd::Error;
                    };
                    log::warn!("websocket client refused with {}: {e}", u16::from(code));
                    return refuse(ws, code, reason, opts);
                }
            }
        }
        if let Err(e) = ws.flush() {
            if !matches!(&e, tungstenite::Error::Io(io) if would_block(io)) {
                return SessionEnd::Error;
            }
        }
        let now = Instant::now();
        if now.duration_since(last_inbound) > opts.idle_close {
            return SessionEnd::Idle;
        }
        if now.duration_since(last_ping) >= opts.ping_every {
            last_ping = now;
            if let Some(end) = write(ws, Message::Ping(Vec::new().into())) {
                return end;
            }
        }
    }
}

/// Queues and tries to flush one frame; returns why the session must end, if it must.
fn write(ws: &mut WebSocket<TcpStream>, msg: Message) -> Option<SessionEnd> {
    match ws.write(msg) {
        Ok(()) => {}
        Err(tungstenite::Error::Io(e)) if would_block(&e) => {}
        Err(tungstenite::Error::WriteBufferFull(_)) => return Some(SessionEnd::TooSlow),
        Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
            return Some(SessionEnd::ClientClosed)
        }
        Err(_) => return Some(SessionEnd::Error),
    }
    match ws.flush() {
        Ok(()) => None,
        Err(tungstenite::Error::Io(e)) if would_block(&e) => None,
        Err(_) => Some(SessionEnd::Error),
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_map_to_rfc_close_codes() {
        use tungstenite::error::CapacityError;
        let code = |e: tungstenite::Error| close_code(&e).map(|(c, _)| u16::from(c));
        assert_eq!(
            code(tungstenite::Error::Protocol(
                ProtocolError::NonZeroReservedBits
            )),
            Some(1002)
        );
        assert_eq!(
            code(tungstenite::Error::Utf8(String::from("bad"))),
            Some(1007)
        );
        assert_eq!(
            code(tungstenite::Error::Capacity(
                CapacityError::MessageTooLong {
                    size: 2,
                    max_size: 1
                }
            )),
            Some(1009)
        );
        assert_eq!(
            code(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            None
        );
    }

    #[test]
    fn hub_drops_full_and_gone_subscribers() {
        let hub = Hub::new(2);
        let fast = hub.subscribe();
        let slow = hub.subscribe();
        assert_eq!(hub.broadcast("a"), 2);
        assert_eq!(fast.rx.try_recv().unwrap(), "a");
        assert_eq!(hub.broadcast("b"), 2);
        assert_eq!(fast.rx.try_recv().unwrap(), "b");
        // `slow` now holds 2 frames: the third broadcast overflows it.
        assert_eq!(hub.broadcast("c"), 1);
        assert_eq!(hub.len(), 1);
        drop(fast);
        assert_eq!(hub.len(), 0);
        assert_eq!(slow.rx.try_iter().count(), 2);
    }
}
