//! Following codexd's event stream for one run: a tungstenite client on a `TcpStream` with
//! read timeouts, connected to `<events path>?since=<last seq seen>` so a reconnect (codexd
//! restarted, or dropped us for lagging) loses nothing that codexd still holds.
//!
//! The stream is a fast path, never the only one: the run also polls its session (the
//! worker decides how often), so a stream that cannot be had at all costs latency, not
//! correctness. An answer of 410 `since_expired` (codexd no longer holds events that old)
//! turns the stream off for the rest of the run; the session poll carries on alone.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::{Message, WebSocket};

/// Bound on the TCP connect and on the upgrade handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Wait between reconnect attempts.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

pub struct EventStream {
    /// `HOST:PORT` of codexd.
    authority: String,
    path: String,
    since: u64,
    ws: Option<WebSocket<TcpStream>>,
    next_try: Instant,
    /// The stream answered 410: only the session poll is left.
    pub expired: bool,
    pub last_error: Option<String>,
}

impl EventStream {
    /// A stream of the events after `since` from codexd at `base` (`http://HOST:PORT`).
    pub fn new(base: &str, path: &str, since: u64) -> EventStream {
        EventStream {
            authority: base
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            path: path.to_string(),
            since,
            ws: None,
            next_try: Instant::now(),
            expired: false,
            last_error: None,
        }
    }

    pub fn connected(&self) -> bool {
        self.ws.is_some()
    }

    /// The seq of the last event read.
    #[cfg(test)]
    pub fn since(&self) -> u64 {
        self.since
    }

    /// The next event within about `wait`; `None` when there was none (or no connection:
    /// the caller polls meanwhile).
    pub fn next(&mut self, wait: Duration) -> Option<Value> {
        if self.ws.is_none() {
            if !self.expired && Instant::now() >= self.next_try {
                self.connect();
            }
            if self.ws.is_none() {
                // The caller's tick: it polls the session between calls.
                std::thread::sleep(wait);
                return None;
            }
        }
        let ws = self.ws.as_mut()?;
        let _ = ws
            .get_mut()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                        if seq <= self.since {
                            continue; // already seen (a replay overlapping what we read)
                        }
                        self.since = seq;
                    }
                    return Some(v);
                }
                // Pings are answered by tungstenite on the next write or flush.
                Ok(_) => {
                    let _ = ws.flush();
                    continue;
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => {
                    self.drop_connection(format!("event stream lost: {e}"));
                    return None;
                }
            }
        }
    }

    fn drop_connection(&mut self, why: String) {
        log::debug!("tasks: {why}");
        self.last_error = Some(why);
        self.ws = None;
        self.next_try = Instant::now() + RECONNECT_EVERY;
    }

    fn connect(&mut self) {
        self.next_try = Instant::now() + RECONNECT_EVERY;
        let addr = match self
            .authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
        {
            Some(a) => a,
            None => {
                self.last_error = Some(format!("cannot resolve {}", self.authority));
                return;
            }
        };
        let stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                self.last_error = Some(format!("connect: {e}"));
                return;
            }
        };
        let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
        let _ = stream.set_write_timeout(Some(CONNECT_TIMEOUT));
        let _ = stream.set_nodelay(true);
        let url = format!("ws://{}{}?since={}", self.authority, self.path, self.since);
        match tungstenite::client(url.as_str(), stream) {
            Ok((ws, _)) => {
                self.ws = Some(ws);
                self.last_error = None;
            }
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)))
                if resp.status().as_u16() == 410 =>
            {
                log::info!(
                    "tasks: codexd no longer holds events after seq {}; following by session poll only",
                    self.since
                );
                self.expired = true;
                self.last_error = Some("since_expired".into());
            }
            Err(e) => self.last_error = Some(format!("upgrade: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_gives_no_events_and_says_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = EventStream::new(&format!("http://127.0.0.1:{port}"), "/v1/codexd/events", 7);
        assert_eq!(s.next(Duration::from_millis(10)), None);
        assert!(!s.connected());
        assert!(
            s.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("connect")),
            "{:?}",
            s.last_error
        );
        assert_eq!(s.since(), 7);
    }
}
