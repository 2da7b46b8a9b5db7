//! One connection's life: keep-alive loop, body framing and limits, dispatch with panic
//! isolation, and the hand-over to WebSocket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use tungstenite::protocol::{Role, WebSocketConfig};

use super::head::{is_timeout, read_head, Head, HeadError};
use super::request::{split_target, Request};
use super::response::{Reply, Response};
use super::server::{ConnState, Shared};
use crate::common::api_error::ApiError;
use crate::common::ids::new_id;

pub(super) fn serve(mut stream: TcpStream, peer: SocketAddr, shared: &Shared, id: u64) {
    let cfg = &shared.cfg;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(cfg.write_timeout));
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        if shared.stopping() {
            return;
        }
        shared.set_state(id, ConnState::Idle);
        let wait = if first {
            cfg.head_timeout
        } else {
            cfg.idle_timeout
        };
        let head = match read_head(
            &mut stream,
            &mut buf,
            Instant::now() + wait,
            cfg.head_timeout,
            cfg.max_head_bytes,
        ) {
            Ok(head) => head,
            Err(HeadError::Closed)
            | Err(HeadError::Timeout { partial: false })
            | Err(HeadError::Io(_)) => return,
            Err(HeadError::Timeout { partial: true }) => {
                return fail(
                    &mut stream,
                    shared,
                    ApiError::new(408, "request_timeout", "Request head not received in time."),
                );
            }
            Err(HeadError::TooLarge) => {
                return fail(
                    &mut stream,
                    shared,
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
                    &mut stream,
                    shared,
                    ApiError::bad_request("bad_request", format!("Malformed HTTP request: {why}.")),
                );
            }
        };
        shared.set_state(id, ConnState::Busy);
        first = false;

        let body = match read_body(&mut stream, &mut buf, &head, shared) {
            Ok(body) => body,
            Err(Some(err)) => return fail(&mut stream, shared, err),
            Err(None) => return,
        };
        let keep_alive = wants_keep_alive(&head);
        let (path, query) = split_target(&head.target);
        let request = Request {
            method: head.method.clone(),
            path,
            query,
            headers: head.headers.clone(),
            body,
            remote: peer,
            request_id: new_id("req"),
        };

        let reply =
            catch_unwind(AssertUnwindSafe(|| (shared.handler)(&request))).unwrap_or_else(|_| {
                log::error!("handler panicked on {} {}", request.method, request.path);
                Reply::Http(
                    ApiError::internal("The request handler failed unexpectedly.")
                        .to_response(&request.request_id, cfg.pretty_json),
                )
            });
        match reply {
            Reply::Http(resp) => {
                let keep = keep_alive && !shared.stopping();
                if resp
                    .write_to(&mut stream, keep, request.method == "HEAD")
                    .is_err()
                    || !keep
                {
                    return;
                }
            }
            Reply::Stream(body) => {
                // A stream is delimited by the close that follows it (see response::Stream).
                let head_only = request.method == "HEAD";
                if let Err(e) = body.write_to(&mut stream, head_only, &|| shared.stopping()) {
                    log::debug!("stream on {} ended early: {e}", request.path);
                }
                return;
            }
            Reply::WebSocket(session) => {
                let Some(accept) = websocket_accept(&head) else {
                    let err = ApiError::new(
                        426,
                        "upgrade_required",
                        "This route speaks WebSocket: send a GET with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key.",
                    )
                    .with_header("Upgrade", "websocket");
                    return fail(&mut stream, shared, err);
                };
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if stream.write_all(response.as_bytes()).is_err() {
                    return;
                }
                shared.set_state(id, ConnState::WebSocket);
                let ws_cfg = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0)
                    .max_write_buffer_size(cfg.max_ws_message_bytes.max(64 * 1024) * 2)
                    .max_message_size(Some(cfg.max_ws_message_bytes))
                    .max_frame_size(Some(cfg.max_ws_message_bytes));
                let ws = tungstenite::WebSocket::from_partially_read(
                    stream,
                    buf,
                    Role::Server,
                    Some(ws_cfg),
                );
                if catch_unwind(AssertUnwindSafe(move || session(ws))).is_err() {
                    log::error!("websocket session on {} panicked", request.path);
                }
                return;
            }
        }
    }
}

/// Reads a `Content-Length` body. `Err(Some(e))` means answer `e` and close; `Err(None)`
/// means the peer went away.
fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &Head,
    shared: &Shared,
) -> Result<Vec<u8>, Option<ApiError>> {
    let cfg = &shared.cfg;
    if head.header("transfer-encoding").is_some() {
        // Chunked bodies are refused rather than half-supported: after one we could not
        // find the next request's start reliably.
        return Err(Some(ApiError::new(
            411,
            "length_required",
            "Chunked or encoded request bodies are not supported; send Content-Length.",
        )));
    }
    let lengths: Vec<&str> = head
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let len = match lengths.as_slice() {
        [] => 0,
        [first, rest @ ..] if rest.iter().all(|v| v == first) => match first.parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                return Err(Some(ApiError::bad_request(
                    "bad_request",
                    "Content-Length is not a number.",
                )))
            }
        },
        _ => {
            return Err(Some(ApiError::bad_request(
                "bad_request",
                "Conflicting Content-Length headers.",
            )))
        }
    };
    if len > cfg.max_body_bytes {
        return Err(Some(ApiError::payload_too_large(cfg.max_body_bytes)));
    }
    // Everything after the head starts the body; anything past `len` is the next
    // (pipelined) request and stays in `buf`.
    let mut body: Vec<u8> = buf.split_off(head.len);
    buf.clear();
    if body.len() > len {
        *buf = body.split_off(len);
    }
    if body.len() < len
        && head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        return Err(None);
    }
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < len {
        let _ = stream.set_read_timeout(Some(cfg.body_timeout));
        let want = (len - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {
                return Err(Some(ApiError::new(
                    408,
                    "request_timeout",
                    "Request body not received in time.",
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(None),
        }
    }
    Ok(body)
}

fn wants_keep_alive(head: &Head) -> bool {
    let connection = head.header("connection").map(|v| v.to_ascii_lowercase());
    match head.minor_version {
        0 => connection.is_some_and(|v| v.contains("keep-alive")),
        _ => !connection.is_some_and(|v| v.contains("close")),
    }
}

/// `Sec-WebSocket-Accept` for a valid upgrade request, else None.
fn websocket_accept(head: &Head) -> Option<String> {
    let upgrade = head.header("upgrade")?.eq_ignore_ascii_case("websocket");
    let connection = head
        .header("connection")?
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let version = head.header("sec-websocket-version")? == "13";
    let key = head.header("sec-websocket-key")?;
    if !(upgrade && connection && version && head.method == "GET" && !key.is_empty()) {
        return None;
    }
    Some(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Answers `err` and closes. The close lingers: we half-close and drain what the client is
/// still sending for a moment, because closing a socket with unread input makes the kernel
/// send RST, and the client then loses the error response (e.g. a 413 for a body it is
/// still uploading).
fn fail(stream: &mut TcpStream, shared: &Shared, err: ApiError) {
    let resp: Response = shared.error_response(&err);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if resp.write_to(stream, false, false).is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut drained = 0usize;
    let mut scratch = [0u8; 16 * 1024];
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Bounds on the lingering close: enough for a client to finish sending a rejected body
/// of a few MiB on loopback, never long enough to pin a thread.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;
