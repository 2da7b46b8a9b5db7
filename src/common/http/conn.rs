//! One connection's life: keep-alive loop, body framing and limits, dispatch with panic
//! isolation, the lingering close, and the hand-over to WebSocket.

use std::io::Write;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use tungstenite::protocol::{Role, WebSocketConfig};

use super::config::{Handler, ServerConfig};
use super::head::{read_head, Head, HeadError};
use super::request::{split_target_owned, Request, RequestId};
use super::response::{Reply, Response, WsHandler};
use super::slots::{Slot, Slots};
use super::socket::{is_timeout, linger_close, Socket};
use super::status_line::status_and_headers;
use crate::common::api_error::ApiError;
use crate::common::logging;

/// What every connection of one server shares.
pub struct Context {
    pub cfg: ServerConfig,
    pub handler: Handler,
    pub slots: Slots,
}

impl Context {
    /// A JSON error response in the configured style, for errors the server itself makes.
    pub fn error_response(&self, err: &ApiError) -> Response {
        err.to_response(&RequestId::next(), self.cfg.pretty_json)
    }

    /// The head deadline now: shorter while the connection table is under pressure.
    fn head_timeout(&self) -> Duration {
        if self.slots.under_pressure() {
            self.cfg.head_timeout.min(self.cfg.pressure_head_timeout)
        } else {
            self.cfg.head_timeout
        }
    }
}

/// Serves `slot`'s connection until it closes, is evicted, or the server stops.
pub fn serve(slot: &Slot, peer: SocketAddr, cx: &Context) {
    let cfg = &cx.cfg;
    let tcp = &slot.stream;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(cfg.write_timeout));
    let mut socket = Socket::new(tcp);
    let mut buf: Vec<u8> = Vec::new();
    // Allocated (and zeroed) once per connection, not once per read.
    let mut scratch = vec![0u8; 16 * 1024];
    let mut first = true;
    loop {
        if cx.slots.stopping() || !cx.slots.begin_wait(slot) {
            return;
        }
        let head_timeout = cx.head_timeout();
        let wait = if first {
            head_timeout
        } else {
            cfg.idle_timeout
        };
        let head = match read_head(
            &mut socket,
            &mut buf,
            &mut scratch,
            Instant::now() + wait,
            head_timeout,
            cfg.max_head_bytes,
        ) {
            Ok(head) => head,
            // Evicted to make room, or stopped: the socket is already shut down.
            Err(_) if slot.evicted() => return,
            Err(HeadError::Closed)
            | Err(HeadError::Timeout { partial: false })
            | Err(HeadError::Io(_)) => return,
            Err(HeadError::Timeout { partial: true }) => {
                return fail(
                    slot,
                    cx,
                    ApiError::new(408, "request_timeout", "Request head not received in time."),
                );
            }
            Err(HeadError::TooLarge) => {
                return fail(
                    slot,
                    cx,
                    ApiError::new(
                        431,
                        "headers_too_large",
                        format!(
                            "Request head exceeds {} bytes or {} fields.",
                            cfg.max_head_bytes,
                            super::head::MAX_HEADERS
                        ),
                    ),
                );
            }
            Err(HeadError::Malformed(why)) => {
                return fail(
                    slot,
                    cx,
                    ApiError::bad_request("bad_request", format!("Malformed HTTP request: {why}.")),
                );
            }
        };
        if !cx.slots.begin_work(slot) {
            return;
        }
        first = false;

        if head.header_count("host") > 1 {
            // Two Hosts could make the Host check and a proxy in front disagree on which
            // daemon was meant (RFC 9112 §3.2: answer 400).
            return fail(
                slot,
                cx,
                ApiError::bad_request("bad_request", "Duplicate Host header."),
            );
        }
        let body = match read_body(&mut socket, &mut buf, &mut scratch, &head, cx) {
            Ok(body) => body,
            Err(Some(err)) => return fail(slot, cx, err),
            Err(None) => return,
        };
        let keep_alive = wants_keep_alive(&head);
        let request = into_request(head, body, peer);
        let started = Instant::now();
        let reply =
            catch_unwind(AssertUnwindSafe(|| (cx.handler)(&request))).unwrap_or_else(|_| {
                log::error!("handler panicked on {} {}", request.method, request.path);
                Reply::Http(
                    ApiError::internal("The request handler failed unexpectedly.")
                        .to_response(&request.request_id, cfg.pretty_json),
                )
            });
        match reply {
            Reply::Http(resp) => {
                access_log(&request, resp.status, started);
                let keep = keep_alive && !cx.slots.stopping();
                let bytes = resp.to_bytes(keep, request.method == "HEAD");
                if (&*tcp).write_all(&bytes).is_err() {
                    return;
                }
                if !keep {
                    // The same lingering close as the error path: a client that pipelined
                    // more requests behind `Connection: close` must read this response,
                    // not an RST.
                    if cx.slots.begin_linger(slot) {
                        linger_close(tcp);
                    }
                    return;
                }
            }
            Reply::Stream(body) => {
                access_log(&request, 200, started);
                // A stream is delimited by the close that follows it (see `http::stream`).
                let head_only = request.method == "HEAD";
                if let Err(e) = body.write_to(tcp, head_only, &|| cx.slots.stopping()) {
                    log::debug!("stream on {} ended early: {e}", request.path);
                } else if cx.slots.begin_linger(slot) {
                    linger_close(tcp);
                }
                return;
            }
            Reply::WebSocket(session) => {
                access_log(&request, 101, started);
                return upgrade(slot, cx, &request, session, std::mem::take(&mut buf));
            }
        }
    }
}

/// The access log, at debug: `event=http.request method=GET path=/v1/x status=200
/// duration_ms=3 remote=… request=…`. The path without its query, and no headers (the
/// token travels in one).
fn access_log(request: &Request, status: u16, started: Instant) {
    logging::debug_event(
        "http.request",
        &[
            ("method", &request.method),
            ("path", &request.path),
            ("status", &status),
            ("duration_ms", &started.elapsed().as_millis()),
            ("remote", &request.remote),
            ("request", &request.request_id.as_str()),
        ],
    );
}

/// Moves the parsed head into the request handlers see (no header copies).
fn into_request(head: Head, body: Vec<u8>, peer: SocketAddr) -> Request {
    let (path, query) = split_target_owned(head.target);
    Request {
        method: head.method,
        path,
        query,
        headers: head.headers,
        body,
        remote: peer,
        request_id: RequestId::next(),
    }
}

/// Answers the 101 and runs the WebSocket session on this thread. `leftover` holds bytes
/// the client sent after its handshake.
fn upgrade(slot: &Slot, cx: &Context, request: &Request, session: WsHandler, leftover: Vec<u8>) {
    let tcp = &slot.stream;
    let Some(accept) = websocket_accept(request) else {
        let err = ApiError::new(
            426,
            "upgrade_required",
            "This route speaks WebSocket: send a GET with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key.",
        )
        .with_header("Upgrade", "websocket");
        return fail(slot, cx, err);
    };
    // tungstenite owns its stream; the slot keeps the original handle so a stop can
    // still shut the connection down. WebSockets are few, so the extra fd is cheap.
    let Ok(owned) = tcp.try_clone() else {
        return fail(
            slot,
            cx,
            ApiError::new(
                503,
                "server_busy",
                "No file descriptor left for a WebSocket.",
            ),
        );
    };
    let mut response = Vec::with_capacity(160);
    status_and_headers(
        &mut response,
        101,
        &[
            ("Upgrade".into(), "websocket".into()),
            ("Connection".into(), "Upgrade".into()),
            ("Sec-WebSocket-Accept".into(), accept),
        ],
    );
    response.extend_from_slice(b"\r\n");
    if (&*tcp).write_all(&response).is_err() || !cx.slots.begin_websocket(slot) {
        return;
    }
    let max = cx.cfg.max_ws_message_bytes;
    let ws_cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(max.max(64 * 1024) * 2)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let ws =
        tungstenite::WebSocket::from_partially_read(owned, leftover, Role::Server, Some(ws_cfg));
    if catch_unwind(AssertUnwindSafe(move || session(ws))).is_err() {
        log::error!("websocket session on {} panicked", request.path);
    }
}

/// The body length a head declares. RFC 9110 §8.6: `Content-Length = 1*DIGIT`, so a
/// sign, spaces inside or a list are refused rather than guessed at (a front proxy may
/// read them differently: request smuggling).
fn content_length(head: &Head, max: usize) -> Result<usize, ApiError> {
    let mut values = head
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v.as_str());
    let Some(first) = values.next() else {
        return Ok(0);
    };
    if values.any(|v| v != first) {
        return Err(ApiError::bad_request(
            "bad_request",
            "Conflicting Content-Length headers.",
        ));
    }
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "bad_request",
            "Content-Length must be a decimal number of bytes.",
        ));
    }
    match first.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        // Digits only, so a parse failure is an overflow: far over any limit.
        _ => Err(ApiError::payload_too_large(max)),
    }
}

/// Reads a `Content-Length` body. `Err(Some(e))` means answer `e` and close; `Err(None)`
/// means the peer went away.
fn read_body(
    socket: &mut Socket<'_>,
    buf: &mut Vec<u8>,
    scratch: &mut [u8],
    head: &Head,
    cx: &Context,
) -> Result<Vec<u8>, Option<ApiError>> {
    let cfg = &cx.cfg;
    if head.header("transfer-encoding").is_some() {
        // Chunked bodies are refused rather than half-supported: after one we could not
        // find the next request's start reliably.
        return Err(Some(ApiError::new(
            411,
            "length_required",
            "Chunked or encoded request bodies are not supported; send Content-Length.",
        )));
    }
    let len = content_length(head, cfg.max_body_bytes).map_err(Some)?;
    // Everything after the head starts the body; anything past `len` is the next
    // (pipelined) request and stays in `buf`.
    let have = (buf.len() - head.len).min(len);
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&buf[head.len..head.len + have]);
    buf.drain(..head.len + have);
    if body.len() < len
        && head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && socket.tcp().write_all(&interim(100)).is_err()
    {
        return Err(None);
    }
    while body.len() < len {
        let want = (len - body.len()).min(scratch.len());
        match socket.read_until(&mut scratch[..want], Instant::now() + cfg.body_timeout) {
            Ok(0) => {
                // The client half-closed before its body was complete: say so, it may
                // still be reading.
                return Err(Some(ApiError::bad_request(
                    "bad_request",
                    format!(
                        "Request body ended after {} of {len} bytes (Content-Length).",
                        body.len()
                    ),
                )));
            }
            Ok(n) => body.extend_from_slice(&scratch[..n]),
            Err(e) if is_timeout(&e) => {
                return Err(Some(ApiError::new(
                    408,
                    "request_timeout",
                    "Request body not received in time.",
                )))
            }
            Err(_) => return Err(None),
        }
    }
    Ok(body)
}

/// An interim (1xx) response head without headers, e.g. `100 Continue`.
fn interim(status: u16) -> Vec<u8> {
    let mut head = Vec::with_capacity(32);
    status_and_headers(&mut head, status, &[]);
    head.extend_from_slice(b"\r\n");
    head
}

fn wants_keep_alive(head: &Head) -> bool {
    let has = |token: &str| {
        head.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    match head.minor_version {
        0 => has("keep-alive"),
        _ => !has("close"),
    }
}

/// `Sec-WebSocket-Accept` for a valid upgrade request, else None.
fn websocket_accept(req: &Request) -> Option<String> {
    let upgrade = req.header("upgrade")?.eq_ignore_ascii_case("websocket");
    let connection = req
        .header("connection")?
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let version = req.header("sec-websocket-version")? == "13";
    let key = req.header("sec-websocket-key")?;
    if !(upgrade && connection && version && req.method == "GET" && !key.is_empty()) {
        return None;
    }
    Some(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Answers `err` and closes, lingering so the client reads the answer (e.g. a 413 for a
/// body it is still uploading) instead of an RST.
fn fail(slot: &Slot, cx: &Context, err: ApiError) {
    let tcp = &slot.stream;
    let resp: Response = cx.error_response(&err);
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(2)));
    if (&*tcp).write_all(&resp.to_bytes(false, false)).is_err() {
        return;
    }
    if cx.slots.begin_linger(slot) {
        linger_close(tcp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        let mut buf = raw.as_bytes().to_vec();
        buf.extend_from_slice(b"\r\n");
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut fields);
        let len = match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("{other:?}"),
        };
        Head {
            method: req.method.unwrap_or("").to_string(),
            target: req.path.unwrap_or("").to_string(),
            minor_version: req.version.unwrap_or(1),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect(),
            len,
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        let cl = |v: &str| {
            content_length(
                &head(&format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n")),
                100,
            )
            .map_err(|e| (e.status, e.message))
        };
        assert_eq!(cl("2"), Ok(2));
        assert_eq!(cl("0002"), Ok(2));
        for bad in ["+2", "-1", "2 2", "2,2", "0x10", "1e3"] {
            assert_eq!(cl(bad).map_err(|e| e.0), Err(400), "{bad:?}");
        }
        assert_eq!(cl("101").map_err(|e| e.0), Err(413));
        assert_eq!(cl("99999999999999999999999").map_err(|e| e.0), Err(413));
        let none = head("GET / HTTP/1.1\r\n");
        assert_eq!(content_length(&none, 100).map_err(|e| e.status), Ok(0));
    }

    #[test]
    fn keep_alive_reads_connection_tokens() {
        let ka = |raw: &str| wants_keep_alive(&head(raw));
        assert!(ka("GET / HTTP/1.1\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: close\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: TE, Close\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n"));
    }

    fn context(cfg: ServerConfig) -> Context {
        let handler: Handler =
            std::sync::Arc::new(|_: &Request| Response::text(200, "ok\n").into());
        let slots = Slots::new(cfg.max_connections);
        Context {
            cfg,
            handler,
            slots,
        }
    }

    /// The default deadline for a first request head is 10 s (`ServerConfig::default`,
    /// which the daemons start from), cut to the 1 s pressure timeout once half the slots
    /// are taken. Pinned here rather than waited for against a daemon.
    #[test]
    fn default_head_timeout_is_10s_and_1s_under_pressure() {
        let cx = context(ServerConfig {
            max_connections: 4,
            ..ServerConfig::default()
        });
        assert_eq!(cx.head_timeout(), Duration::from_secs(10));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _clients: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap())
            .collect();
        let _held: Vec<_> = (0..2)
            .map(|_| cx.slots.admit(l.accept().unwrap().0).ok().unwrap())
            .collect();
        assert!(cx.slots.under_pressure());
        assert_eq!(cx.head_timeout(), Duration::from_secs(1));
    }

    /// A connection that never sends a byte is closed at the head timeout without an
    /// answer (here 300 ms; the same path the 10 s default takes).
    #[test]
    fn a_silent_connection_is_closed_unanswered_at_the_head_timeout() {
        use std::io::Read;
        let cfg = ServerConfig {
            head_timeout: Duration::from_millis(300),
            ..ServerConfig::default()
        };
        let handler = context(ServerConfig::default()).handler;
        let server = super::super::Server::bind("127.0.0.1:0", cfg, handler).unwrap();
        let mut c = std::net::TcpStream::connect(server.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t0 = Instant::now();
        let mut got = Vec::new();
        let read = c.read_to_end(&mut got);
        let took = t0.elapsed();
        assert!(read.is_ok() && got.is_empty(), "{read:?} {got:?}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(5),
            "closed after {took:?}, expected ~300 ms"
        );
        server.stop(Duration::from_secs(1));
    }
}
