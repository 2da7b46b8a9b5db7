//! `GET /v1/codexd/events` (the path is `BAA_CODEXD_EVENT_STREAM_PATH`): a page of events
//! as JSON, or, with `Upgrade: websocket`, every event as a frame, replaying after
//! `?since=<seq>` first. A `since` older than the oldest kept event is answered 410
//! `since_expired` with `details.oldest_seq` before any upgrade, never with a gap.
//!
//! The replay can reach far back into the log, so it is not collected in memory: the
//! disk part is read and sent here, frame by frame, before the common session loop takes
//! over with the ring's part and the live queue. If the log cannot be read part-way, the
//! stream is closed (1011) so the client reconnects with its last seq instead of silently
//! missing events.

use std::net::TcpStream;
use std::sync::Arc;

use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::{Message, WebSocket};

use baa::common::api_error::{ok_envelope, ApiError};
use baa::common::http::router::Params;
use baa::common::http::{Reply, Request, Response};
use baa::common::ws::{run_session, SessionEnd, SessionOptions};

use crate::core::Core;
use crate::events::Replay;

/// Frames written between flushes while replaying from disk.
const FLUSH_EVERY: usize = 256;

/// The route handler.
pub fn events(core: &Arc<Core>, req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let since = match req.query_param("since") {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                "since must be a non-negative integer (an event seq).",
            )
        })?),
    };
    let upgrade = req
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        let limit = match req.query_param("limit") {
            None => 200,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| ApiError::bad_request("invalid_query", "limit must be 1..1000."))?,
        };
        let list = match since {
            Some(s) => core.events.since(s, limit).map_err(|e| e.to_api_error())?,
            None => core.events.recent(limit),
        };
        let data = json!({
            "count": list.len(),
            "lastSeq": core.events.last_seq(),
            "oldestSeq": core.events.oldest_seq(),
            "events": list,
        });
        return Ok(Response::json_value(200, &ok_envelope("", data), true).into());
    }
    let (sub, mut replay) = core
        .events
        .subscribe_since(since)
        .map_err(|e| e.to_api_error())?;
    let core = core.clone();
    Ok(Reply::WebSocket(Box::new(move |mut ws| {
        let opts = SessionOptions::default();
        if let Err(end) = send_replay(&mut ws, &mut replay, &core, &opts) {
            log::debug!("event stream client left during replay: {end}");
            return;
        }
        let ring = replay.rest();
        let end = run_session(ws, ring, &sub.rx, |_| Vec::new(), &opts);
        log::debug!("event stream client left: {end}");
        drop(sub);
    })))
}

/// Sends the disk part of the replay (blocking, each write bounded by the session's
/// initial write timeout).
fn send_replay(
    ws: &mut WebSocket<TcpStream>,
    replay: &mut Replay,
    core: &Core,
    opts: &SessionOptions,
) -> Result<(), SessionEnd> {
    let _ = ws
        .get_ref()
        .set_write_timeout(Some(opts.initial_write_timeout));
    let mut sent = 0usize;
    loop {
        let frame = match replay.next_disk_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                log::error!("event replay: the log could not be read: {e}; closing the stream");
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Error,
                    reason: Utf8Bytes::from_static("event log unreadable; reconnect with since"),
                }));
                let _ = ws.flush();
                return Err(SessionEnd::Error);
            }
        };
        if ws.write(Message::text(frame)).is_err() {
            return Err(SessionEnd::Error);
        }
        sent += 1;
        if sent % FLUSH_EVERY == 0 {
            if ws.flush().is_err() {
                return Err(SessionEnd::Error);
            }
            if core.stop.is_set() {
                let _ = ws.close(None);
                let _ = ws.flush();
                return Err(SessionEnd::Error);
            }
        }
    }
    ws.flush().map_err(|_| SessionEnd::Error)
}
