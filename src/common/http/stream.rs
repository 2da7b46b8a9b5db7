//! The streamed reply: a response body written and flushed piece by piece as it is
//! produced, for server-sent events. The connection loop writes the head, hands the body a
//! [`StreamWriter`], and closes the connection when the body returns.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::status_line::status_and_headers;

/// Produces a streamed body through the writer it is given. It returns when the body is
/// complete, or with the error that cut it short (the client went away, the server is
/// stopping); either way the connection then closes.
pub type StreamBody = Box<dyn FnOnce(&mut StreamWriter<'_>) -> io::Result<()> + Send>;

/// A response whose body is written and flushed piece by piece as it is produced, for
/// server-sent events (`text/event-stream`).
///
/// The body is delimited by closing the connection (no `Content-Length`, no chunked
/// encoding). A stream is one long answer that ends the exchange anyway, so chunking would
/// only buy a keep-alive connection nobody reuses, at the price of a framing layer whose
/// half-written chunk could desynchronise it. A client can still tell a cut stream from a
/// complete one: SSE protocols end with their own final event (the Responses API's
/// `response.completed`).
pub struct Stream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: StreamBody,
}

impl Stream {
    /// A 200 `text/event-stream` whose events `body` writes.
    pub fn events(
        body: impl FnOnce(&mut StreamWriter<'_>) -> io::Result<()> + Send + 'static,
    ) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".to_string(), "text/event-stream".to_string())],
            body: Box::new(body),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Writes the head, then runs the body unless `head_only`. `stopping` says when the
    /// server wants its threads back. The caller closes the connection afterwards.
    pub fn write_to(
        self,
        stream: &TcpStream,
        head_only: bool,
        stopping: &dyn Fn() -> bool,
    ) -> io::Result<()> {
        let mut head = Vec::with_capacity(256);
        status_and_headers(&mut head, self.status, &self.headers);
        head.extend_from_slice(
            b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        );
        let mut out = stream;
        out.write_all(&head)?;
        out.flush()?;
        if head_only {
            return Ok(());
        }
        (self.body)(&mut StreamWriter { stream, stopping })
    }
}

/// How often [`StreamWriter::pause`] looks at the client and the server's stop flag.
const PAUSE_POLL: Duration = Duration::from_millis(50);

/// The body side of a [`Stream`]: every write goes out at once. Writes are bounded by the
/// connection's write timeout, so a client that stops reading ends the stream with an
/// error instead of holding the thread.
pub struct StreamWriter<'a> {
    stream: &'a TcpStream,
    stopping: &'a dyn Fn() -> bool,
}

impl StreamWriter<'_> {
    /// Writes and flushes `bytes`; fails once the server is stopping.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if (self.stopping)() {
            return Err(io::Error::other("server stopping"));
        }
        let mut out = self.stream;
        out.write_all(bytes)?;
        out.flush()
    }

    /// One server-sent event: an `event:` line when `name` is given, then `data` as one
    /// `data:` line per line of it (the SSE framing for multi-line data).
    pub fn event(&mut self, name: Option<&str>, data: &str) -> io::Result<()> {
        let mut frame = String::with_capacity(data.len() + 32);
        if let Some(name) = name {
            frame.push_str("event: ");
            // A line break in the name would start a field of its own.
            frame.push_str(&name.replace(['\r', '\n'], " "));
            frame.push('\n');
        }
        for line in data.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
            frame.push_str("data: ");
            frame.push_str(line);
            frame.push('\n');
        }
        frame.push('\n');
        self.write(frame.as_bytes())
    }

    /// Waits `gap` between two pieces of the body. Ends early with an error when the
    /// client hangs up or the server is stopping, so a paced producer never outlives its
    /// reader. (A closed peer is seen by a zero-byte peek: writes into a half-closed
    /// socket can still succeed for a while.)
    pub fn pause(&mut self, gap: Duration) -> io::Result<()> {
        let until = Instant::now() + gap;
        loop {
            if (self.stopping)() {
                return Err(io::Error::other("server stopping"));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let step = left.min(PAUSE_POLL).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(step))?;
            let mut probe = [0u8; 1];
            match self.stream.peek(&mut probe) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "client went away",
                    ))
                }
                // The client sent something (a pipelined request we will never serve):
                // peek would return at once, so wait out the step instead.
                Ok(_) => std::thread::sleep(step),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpStream;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crossbeam_channel::{bounded, Receiver, Sender};

    use super::*;
    use crate::common::http::{Reply, Request, Server, ServerConfig, ServerHandle};

    const T: Duration = Duration::from_secs(5);

    fn serve(body: impl Fn() -> Stream + Send + Sync + 'static) -> ServerHandle {
        let handler = Arc::new(move |_: &Request| Reply::Stream(body()));
        let cfg = ServerConfig {
            name: "stream-test".into(),
            ..ServerConfig::default()
        };
        Server::bind("127.0.0.1:0", cfg, handler).expect("bind")
    }

    fn get(server: &ServerHandle, method: &str) -> TcpStream {
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(format!("{method} /events HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        s
    }

    /// Reads until `needle` has arrived (or EOF / timeout); returns everything read.
    fn read_until(s: &mut TcpStream, got: &mut String, needle: &str) {
        let mut buf = [0u8; 1024];
        while !got.contains(needle) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => panic!("no {needle:?} before EOF/timeout; got {got:?}"),
                Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    }

    fn channel<T>() -> (Sender<T>, Receiver<T>) {
        bounded(1)
    }

    #[test]
    fn events_go_out_as_produced_and_the_close_ends_the_body() {
        let (go_tx, go_rx) = channel::<()>();
        let server = serve(move || {
            let go = go_rx.clone();
            Stream::events(move |w| {
                w.event(Some("one"), "{\"n\":1}")?;
                // The client must see event one while the producer is still running.
                go.recv_timeout(T).map_err(io::Error::other)?;
                w.event(Some("two\nx"), "a\nb\r\nc")?;
                w.event(None, "")
            })
            .with_header("X-Extra", "1")
        });
        let mut s = get(&server, "GET");
        let mut got = String::new();
        read_until(&mut s, &mut got, "data: {\"n\":1}\n\n");
        let (head, first) = got.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        for line in [
            "Content-Type: text/event-stream",
            "Connection: close",
            "Cache-Control: no-store",
            "X-Extra: 1",
        ] {
            assert!(head.contains(line), "no {line:?} in {head:?}");
        }
        assert!(
            !head.to_ascii_lowercase().contains("content-length")
                && !head.to_ascii_lowercase().contains("transfer-encoding"),
            "a stream is close-delimited: {head:?}"
        );
        assert_eq!(first, "event: one\ndata: {\"n\":1}\n\n");
        go_tx.send(()).unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).expect("read to EOF");
        assert_eq!(
            rest, "event: two x\ndata: a\ndata: b\ndata: c\n\ndata: \n\n",
            "multi-line data is one data line per line"
        );
        assert!(server.stop(T));
    }

    #[test]
    fn head_request_gets_the_head_only() {
        let server = serve(|| Stream::events(|w| w.event(None, "never sent")));
        let mut s = get(&server, "HEAD");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read to EOF");
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got:?}");
        assert!(got.ends_with("\r\n\r\n"), "{got:?}");
        assert!(server.stop(T));
    }

    #[test]
    fn pause_ends_as_soon_as_the_client_hangs_up() {
        let (done_tx, done_rx) = channel::<(io::ErrorKind, Duration)>();
        let server = serve(move || {
            let done = done_tx.clone();
            Stream::events(move |w| {
                w.event(None, "first")?;
                let t0 = Instant::now();
                let err = w.pause(Duration::from_secs(30)).unwrap_err();
                let _ = done.send((err.kind(), t0.elapsed()));
                Err(err)
            })
        });
        let mut s = get(&server, "GET");
        let mut got = String::new();
        read_until(&mut s, &mut got, "data: first\n\n");
        drop(s);
        let (kind, waited) = done_rx.recv_timeout(T).expect("pause did not end");
        assert_eq!(kind, io::ErrorKind::BrokenPipe, "after {waited:?}");
        assert!(server.stop(T));
    }

    #[test]
    fn stopping_the_server_ends_a_paused_stream_within_the_grace() {
        let server = serve(|| {
            Stream::events(|w| {
                w.event(None, "first")?;
                w.pause(Duration::from_secs(30))?;
                w.event(None, "never")
            })
        });
        let mut s = get(&server, "GET");
        let mut got = String::new();
        read_until(&mut s, &mut got, "data: first\n\n");
        let t0 = Instant::now();
        assert!(server.stop(T), "the stream was still running after {T:?}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        assert!(!rest.contains("never"), "{rest:?}");
    }

    #[test]
    fn pause_without_trouble_waits_the_whole_gap() {
        let (done_tx, done_rx) = channel::<Duration>();
        let server = serve(move || {
            let done = done_tx.clone();
            Stream::events(move |w| {
                let t0 = Instant::now();
                w.pause(Duration::from_millis(120))?;
                let _ = done.send(t0.elapsed());
                w.event(None, "after")
            })
        });
        let mut s = get(&server, "GET");
        let mut got = String::new();
        read_until(&mut s, &mut got, "data: after\n\n");
        let waited = done_rx.recv_timeout(T).expect("pause result");
        assert!(waited >= Duration::from_millis(120), "{waited:?}");
        assert!(server.stop(T));
    }
}
