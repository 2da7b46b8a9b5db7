//! Reading one request head (request line + headers) under a *total* deadline, so a
//! client that trickles one header byte at a time cannot hold a thread for long.

use std::io;
use std::time::{Duration, Instant};

use super::socket::{is_timeout, Socket};

/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Bytes of `buf` the head occupied.
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }
}

#[derive(Debug)]
pub enum HeadError {
    /// The peer closed the connection before sending a byte of a new request.
    Closed,
    /// No complete head before the deadline; `partial` says whether any byte arrived.
    Timeout {
        partial: bool,
    },
    /// The head exceeds the byte or field limit.
    TooLarge,
    /// Not HTTP/1.x.
    Malformed(String),
    Io(io::Error),
}

/// Reads until `buf` holds a complete head, parses it, and returns it. Bytes past the head
/// (a body, a pipelined request or WebSocket frames) stay in `buf` after `head.len`.
/// `scratch` is the connection's read buffer, reused so no read zeroes a fresh one.
///
/// `idle_until` bounds the wait for the first byte; once it arrives the whole head must
/// be in within `head_timeout`.
pub fn read_head(
    socket: &mut Socket<'_>,
    buf: &mut Vec<u8>,
    scratch: &mut [u8],
    idle_until: Instant,
    head_timeout: Duration,
    max_head_bytes: usize,
) -> Result<Head, HeadError> {
    let mut deadline = if buf.is_empty() {
        idle_until
    } else {
        Instant::now() + head_timeout
    };
    loop {
        if !buf.is_empty() {
            if let Some(head) = try_parse(buf)? {
                // A head that completes inside the read that crossed the limit is still
                // over it: check its own length, not only the buffer's while partial.
                if head.len > max_head_bytes {
                    return Err(HeadError::TooLarge);
                }
                return Ok(head);
            }
            if buf.len() > max_head_bytes {
                return Err(HeadError::TooLarge);
            }
        }
        match socket.read_until(scratch, deadline) {
            Ok(0) if buf.is_empty() => return Err(HeadError::Closed),
            Ok(0) => return Err(HeadError::Malformed("connection closed mid-head".into())),
            Ok(n) => {
                if buf.is_empty() {
                    deadline = Instant::now() + head_timeout;
                }
                buf.extend_from_slice(&scratch[..n]);
            }
            Err(e) if is_timeout(&e) => {
                return Err(HeadError::Timeout {
                    partial: !buf.is_empty(),
                })
            }
            Err(e) if buf.is_empty() && is_reset(&e) => return Err(HeadError::Closed),
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

fn try_parse(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect();
            Ok(Some(Head {
                method: req.method.unwrap_or("").to_string(),
                target: req.path.unwrap_or("").to_string(),
                minor_version: req.version.unwrap_or(1),
                headers,
                len,
            }))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_head_and_keeps_rest() {
        let raw = b"POST /x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";
        let head = try_parse(raw).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/x?a=1");
        assert_eq!(head.header("host"), Some("h"));
        assert_eq!(&raw[head.len..], b"{}");
    }

    #[test]
    fn partial_and_garbage() {
        assert!(try_parse(b"GET / HTTP/1.1\r\nHost:").unwrap().is_none());
        assert!(matches!(
            try_parse(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    use std::net::TcpStream;

    /// Reads a head off a raw stream with a fresh scratch buffer.
    fn read(
        s: &TcpStream,
        buf: &mut Vec<u8>,
        idle_until: Instant,
        head_timeout: Duration,
        max: usize,
    ) -> Result<Head, HeadError> {
        let mut scratch = [0u8; 4096];
        read_head(
            &mut Socket::new(s),
            buf,
            &mut scratch,
            idle_until,
            head_timeout,
            max,
        )
    }

    /// A connected (client, server) pair on loopback.
    fn pair() -> (TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn complete_head_over_the_limit_in_one_read_is_too_large() {
        use std::io::Write;
        let (mut c, s) = pair();
        let mut raw = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 1100));
        raw.extend_from_slice(b"\r\n\r\n");
        c.write_all(&raw).unwrap();
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        let got = read(&s, &mut buf, deadline, Duration::from_secs(2), 1024);
        assert!(matches!(got, Err(HeadError::TooLarge)), "{got:?}");
    }

    #[test]
    fn deadline_is_total_and_idle_wait_is_separate() {
        use std::io::Write;
        let (mut c, s) = pair();
        // Silence until idle_until: a timeout with nothing received.
        let t0 = Instant::now();
        let mut buf = Vec::new();
        let got = read(
            &s,
            &mut buf,
            t0 + Duration::from_millis(200),
            Duration::from_secs(5),
            4096,
        );
        assert!(
            matches!(got, Err(HeadError::Timeout { partial: false })),
            "{got:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        // A trickle that never completes the head: each read is quick, the total is not.
        let writer = std::thread::spawn(move || {
            for _ in 0..20 {
                if c.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            c
        });
        let t0 = Instant::now();
        let got = read(
            &s,
            &mut buf,
            t0 + Duration::from_secs(5),
            Duration::from_millis(300),
            4096,
        );
        let took = t0.elapsed();
        assert!(
            matches!(got, Err(HeadError::Timeout { partial: true })),
            "{got:?}"
        );
        assert!(
            took < Duration::from_millis(900),
            "expected ~300ms, got {took:?}"
        );
        drop(writer.join());
    }

    #[test]
    fn pipelined_bytes_stay_in_the_buffer_and_close_is_reported() {
        use std::io::Write;
        let (mut c, s) = pair();
        c.write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
            .unwrap();
        drop(c);
        let mut buf = Vec::new();
        let far = Instant::now() + Duration::from_secs(2);
        let a = read(&s, &mut buf, far, Duration::from_secs(2), 4096).unwrap();
        assert_eq!(a.target, "/a");
        buf.drain(..a.len);
        let b = read(&s, &mut buf, far, Duration::from_secs(2), 4096).unwrap();
        assert_eq!(b.target, "/b");
        buf.drain(..b.len);
        let end = read(&s, &mut buf, far, Duration::from_secs(2), 4096);
        assert!(matches!(end, Err(HeadError::Closed)), "{end:?}");
    }

    #[test]
    fn too_many_headers() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert!(matches!(try_parse(&raw), Err(HeadError::TooLarge)));
    }
}
