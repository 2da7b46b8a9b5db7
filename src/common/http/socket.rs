//! Socket reads under a deadline without a `setsockopt` per read, and the lingering close.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How far the receive timeout already set on the socket may differ from the one a read
/// needs before it is set again. A keep-alive connection waits with the same idle timeout
/// before every request, so it pays one `setsockopt` per connection, not one per read; a
/// deadline can overshoot by at most this much, and an early wake-up just reads again.
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// A connection's socket as its thread reads it: remembers the receive timeout it set.
pub struct Socket<'a> {
    tcp: &'a TcpStream,
    read_timeout: Option<Duration>,
}

impl<'a> Socket<'a> {
    pub fn new(tcp: &'a TcpStream) -> Self {
        Self {
            tcp,
            read_timeout: None,
        }
    }

    pub fn tcp(&self) -> &'a TcpStream {
        self.tcp
    }

    /// One `read` that gives up at `deadline`: `Ok(0)` at end of stream, an error of kind
    /// `TimedOut` once the deadline has passed.
    pub fn read_until(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let left = deadline - now;
            let close_enough = self
                .read_timeout
                .is_some_and(|set| set <= left + TIMEOUT_SLACK && left <= set + TIMEOUT_SLACK);
            if !close_enough {
                self.tcp.set_read_timeout(Some(left))?;
                self.read_timeout = Some(left);
            }
            match (&*self.tcp).read(buf) {
                // The timeout set may end a little before the deadline: check it again.
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Bounds on the lingering close: enough for a client to finish sending a rejected body
/// of a few MiB on loopback, never long enough to pin a thread.
pub const LINGER: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Closes our side after the last response and drains what the client still sends until
/// it closes too (bounded by `LINGER` and `LINGER_BYTES`). Closing a socket with unread
/// input makes the kernel send RST, and a client that pipelined more requests, or is
/// still uploading a rejected body, then loses the response it was about to read.
pub fn linger_close(tcp: &TcpStream) {
    if tcp.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut socket = Socket::new(tcp);
    let mut drained = 0usize;
    let mut scratch = [0u8; 4096];
    while drained < LINGER_BYTES {
        match socket.read_until(&mut scratch, deadline) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn read_until_honours_the_deadline_and_reuses_the_timeout() {
        let (mut c, s) = pair();
        let mut socket = Socket::new(&s);
        let mut buf = [0u8; 16];
        let t0 = Instant::now();
        let got = socket.read_until(&mut buf, t0 + Duration::from_millis(150));
        let took = t0.elapsed();
        assert_eq!(got.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_millis(600),
            "{took:?}"
        );
        // Same wait again: the timeout already set is reused.
        let before = socket.read_timeout;
        c.write_all(b"hi").unwrap();
        let n = socket
            .read_until(&mut buf, Instant::now() + Duration::from_millis(150))
            .unwrap();
        assert_eq!((&buf[..n], socket.read_timeout), (&b"hi"[..], before));
    }
}
