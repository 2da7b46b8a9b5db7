//! A blocking WebSocket test client with timeouts (tungstenite over a plain TcpStream).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub struct WsClient {
    pub ws: WebSocket<TcpStream>,
}

/// Connects to `ws://addr{path}` with extra handshake headers. Err carries the HTTP status
/// of a refused handshake (e.g. 403), or 0 for other failures.
pub fn connect(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<WsClient, u16> {
    let stream =
        TcpStream::connect_timeout(&addr.parse().expect("socket addr"), Duration::from_secs(5))
            .map_err(|_| 0u16)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("ws request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tungstenite::client(req, stream) {
        Ok((ws, _)) => Ok(WsClient { ws }),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            Err(resp.status().as_u16())
        }
        Err(_) => Err(0),
    }
}

impl WsClient {
    #[track_caller]
    pub fn send_json(&mut self, v: &Value) {
        self.ws.send(Message::text(v.to_string())).expect("ws send");
    }

    /// Next JSON text frame within `timeout` (pings are answered and skipped).
    pub fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).ok();
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("json frame"))
                }
                Ok(_) => continue,
                // A read on a socket with SO_RCVTIMEO fails with EINTR when any signal
                // reaches the thread, whatever SA_RESTART says (signal(7)): not an end of
                // the stream, nothing was consumed, read again. Seen as a stream that
                // "closed" mid-test, about one full run in three.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads frames until one satisfies `pred`, within `timeout`.
    pub fn until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while let Some(v) = self.next_json(deadline.saturating_duration_since(Instant::now())) {
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
