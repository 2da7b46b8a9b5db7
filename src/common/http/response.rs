//! What a handler returns: a complete response written in one `write_all`, a body streamed
//! as it is produced (server-sent events), or a request to take the connection over as a
//! WebSocket.

use std::io::{self, Write};
use std::net::TcpStream;

use serde_json::Value;

use super::status_line::{push_decimal, status_and_headers};
use super::stream::Stream;

/// A WebSocket session body: runs on the connection's own thread once the 101 is sent.
pub type WsHandler = Box<dyn FnOnce(tungstenite::WebSocket<TcpStream>) + Send>;

pub enum Reply {
    Http(Response),
    /// A body written piece by piece on the connection's thread; see [`Stream`].
    Stream(Stream),
    /// Upgrade to WebSocket; the server validates the handshake headers first.
    WebSocket(WsHandler),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Http(r)
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_string(), content_type.to_string())],
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/html; charset=utf-8", body.into())
    }

    /// JSON body; `pretty` gives 2-space indentation with `"key": value` spacing.
    pub fn json_value(status: u16, value: &Value, pretty: bool) -> Self {
        let mut body = if pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        }
        .unwrap_or_else(|_| b"{\"ok\":false,\"error\":\"internal_error\"}".to_vec());
        body.push(b'\n');
        Self::new(status, "application/json", body)
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Serializes head and body; `head_only` omits the body (HEAD requests). Written
    /// straight into one buffer: no `format!` or header copy per response.
    pub fn to_bytes(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        status_and_headers(&mut out, self.status, &self.headers);
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(&mut out, self.body.len());
        out.extend_from_slice(
            b"\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        );
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"Connection: close\r\n\r\n".as_slice()
        });
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }

    pub fn write_to(
        &self,
        stream: &mut TcpStream,
        keep_alive: bool,
        head_only: bool,
    ) -> io::Result<()> {
        stream.write_all(&self.to_bytes(keep_alive, head_only))?;
        stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::http::status_line::reason;

    #[test]
    fn serializes_with_length_and_connection() {
        let r = Response::text(200, "ok\n").with_header("X-A", "b\r\nInjected: 1");
        let s = String::from_utf8(r.to_bytes(true, false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"), "{s}");
        assert!(s.contains("Content-Length: 3\r\n"), "{s}");
        assert!(s.contains("Connection: keep-alive\r\n"), "{s}");
        assert!(s.contains("X-A: b  Injected: 1\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\nok\n"), "{s}");
    }

    #[test]
    fn lengths_and_statuses_are_written_in_decimal() {
        for (len, status) in [(0usize, 204u16), (9, 200), (10, 404), (1_048_576, 503)] {
            let r = Response::new(status, "text/plain", vec![b'x'; len]);
            let s = String::from_utf8(r.to_bytes(false, true)).unwrap();
            assert!(
                s.starts_with(&format!("HTTP/1.1 {status} {}\r\n", reason(status))),
                "{s}"
            );
            assert!(s.contains(&format!("\r\nContent-Length: {len}\r\n")), "{s}");
            assert!(s.ends_with("Connection: close\r\n\r\n"), "{s}");
        }
    }

    #[test]
    fn pretty_json_has_spaced_keys() {
        let r = Response::json_value(200, &serde_json::json!({"status": "ok"}), true);
        let s = String::from_utf8(r.body).unwrap();
        assert!(s.contains("\"status\": \"ok\""), "{s}");
    }
}
