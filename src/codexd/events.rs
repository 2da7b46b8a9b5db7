//! The event stream: one strictly increasing `seq` that survives restarts, an in-memory
//! ring of the newest events, the rotating on-disk log (`event_log.rs`), and fan-out to
//! WebSocket subscribers.
//!
//! Emitting appends to the log, pushes to the ring and broadcasts while holding one lock,
//! and a subscriber takes its backlog under that same lock: the ring's part as frames, the
//! older part as open file handles read afterwards. So a reconnecting client
//! (`?since=<seq>`) gets every later event exactly once: those already emitted in its
//! backlog, the rest through its live queue. A `since` older than anything kept is
//! refused ([`SinceError::Expired`]) rather than answered with a gap. Broadcasting never
//! blocks: the hub drops a subscriber whose queue is full, so a slow client cannot stall
//! the child's reader.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;
use baa::common::ws::{Hub, Subscription};

use crate::event_log::{EventLog, Limits, LogReader};
use crate::recent_events;

/// Events held in memory for reconnects; older ones are read back from the log.
const RING: usize = 2000;
/// The ring's bound in bytes of serialized events (large events keep fewer in memory).
const RING_BYTES: usize = 16 * 1024 * 1024;
/// What the ring is refilled from at start: at most this much of the log's tail.
const TAIL_BYTES: u64 = 4 * 1024 * 1024;
/// How many frames a WebSocket subscriber may fall behind before it is dropped.
pub const SUBSCRIBER_QUEUE: usize = 4096;
/// `recent-events.json` is rewritten at most this often (and once more at stop).
pub const RECENT_WRITE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Why a `since` cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinceError {
    /// The events right after `since` are no longer kept (rotated away, or their file
    /// was lost); `oldest_seq` is the oldest event that is.
    Expired { since: u64, oldest_seq: u64 },
    /// The log could not be read.
    Unreadable(String),
}

impl SinceError {
    pub fn to_api_error(&self) -> ApiError {
        match self {
            SinceError::Expired { since, oldest_seq } => ApiError::new(
                410,
                "since_expired",
                format!(
                    "Events after seq {since} are no longer kept; the oldest kept event is seq {oldest_seq}. Reconnect with since={} to read from there.",
                    oldest_seq.saturating_sub(1)
                ),
            )
            .with_details(json!({"since": since, "oldest_seq": oldest_seq})),
            SinceError::Unreadable(e) => {
                ApiError::internal(format!("The event log could not be read: {e}"))
            }
        }
    }
}

/// An event and its place in the ring's byte budget.
struct Held {
    seq: u64,
    event: Value,
    bytes: usize,
}

/// One event as a log line and WebSocket frame: `seq` first, so a binary search over the
/// log reads a few bytes per probe.
#[derive(Serialize)]
struct Record<'a> {
    seq: u64,
    #[serde(rename = "createdAt")]
    created_at: &'a str,
    level: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
    detail: &'a Value,
}

/// The frame text of an event held as a value (same key order as the log line).
fn frame(e: &Value) -> String {
    let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
    let record = Record {
        seq: seq_of(e).unwrap_or_default(),
        created_at: text("createdAt"),
        level: text("level"),
        kind: text("type"),
        message: text("message"),
        detail: e.get("detail").unwrap_or(&Value::Null),
    };
    serde_json::to_string(&record).unwrap_or_else(|_| e.to_string())
}

/// Where a part of the daemon announces what changed: the event stream ([`Events`]), or a
/// list in unit tests.
pub trait Announce {
    fn announce(&self, level: Level, kind: &str, message: String, detail: Value);
}

impl Announce for Events {
    fn announce(&self, level: Level, kind: &str, message: String, detail: Value) {
        self.emit(level, kind, message, detail);
    }
}

pub struct Events {
    inner: Mutex<Inner>,
    hub: Hub,
}

struct Inner {
    seq: u64,
    ring: VecDeque<Held>,
    ring_bytes: usize,
    log: EventLog,
    recent_n: usize,
    updated_at: Option<String>,
    dirty: bool,
    recent_written_at: Option<Instant>,
}

impl Inner {
    /// The oldest seq in the ring, or the next seq when it is empty.
    fn front(&self) -> u64 {
        self.ring.front().map(|h| h.seq).unwrap_or(self.seq + 1)
    }

    /// A reader of the events after `since` that are older than the ring (None when the
    /// ring holds them all), or why they are gone.
    fn disk_before_ring(&mut self, since: u64) -> Result<Option<LogReader>, SinceError> {
        let front = self.front();
        if since.saturating_add(1) >= front {
            return Ok(None);
        }
        match self.log.sources(since, self.seq + 1) {
            Ok(sources) => Ok(Some(LogReader::new(sources, since, front))),
            Err(oldest) => Err(SinceError::Expired {
                since,
                oldest_seq: oldest.min(front),
            }),
        }
    }

    fn push(&mut self, held: Held) {
        self.ring_bytes += held.bytes;
        self.ring.push_back(held);
        // Always keep the newest event, however large.
        while self.ring.len() > 1 && (self.ring.len() > RING || self.ring_bytes > RING_BYTES) {
            if let Some(old) = self.ring.pop_front() {
                self.ring_bytes -= old.bytes;
            }
        }
    }
}

/// What a subscriber receives before its live queue: the events after its `since`, read
/// from disk first, then from the ring (taken under the lock, as frames).
pub struct Replay {
    disk: Option<LogReader>,
    ring: VecDeque<String>,
}

impl Replay {
    /// The next frame of the disk part, in seq order; an error if the log cannot be read
    /// (the caller must then end the stream, never skip ahead).
    pub fn next_disk_frame(&mut self) -> io::Result<Option<String>> {
        let Some(disk) = self.disk.as_mut() else {
            return Ok(None);
        };
        match disk.next_line()? {
            Some((_, line)) => String::from_utf8(line)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            None => {
                self.disk = None;
                Ok(None)
            }
        }
    }

    /// The next frame: the disk part, then the ring's.
    #[cfg(test)]
    pub fn next_frame(&mut self) -> io::Result<Option<String>> {
        match self.next_disk_frame()? {
            Some(f) => Ok(Some(f)),
            None => Ok(self.ring.pop_front()),
        }
    }

    /// The ring's frames not yet taken (call once the disk part is sent).
    pub fn rest(self) -> Vec<String> {
        self.ring.into()
    }
}

impl Events {
    /// Opens the log (repairing a torn tail, pruning and finishing an interrupted
    /// rotation), refills the ring from its tail, and continues `seq` after the highest
    /// of: the log's last record, `recent` (from recent-events.json) and `seq_hint`.
    /// `recent` fills the ring only when the log has nothing.
    pub fn open(
        log_path: PathBuf,
        limits: Limits,
        recent: Vec<Value>,
        seq_hint: u64,
        recent_n: usize,
    ) -> Events {
        let log = EventLog::open(log_path, limits);
        let tail_seq = log.last_seq().unwrap_or(0);
        let recent_seq = recent.iter().filter_map(seq_of).max().unwrap_or(0);
        let seq = tail_seq.max(recent_seq).max(seq_hint);
        let mut from_disk = log.tail(RING, TAIL_BYTES);
        if from_disk.is_empty() {
            from_disk = recent;
        }
        let mut inner = Inner {
            seq,
            ring: VecDeque::new(),
            ring_bytes: 0,
            log,
            recent_n,
            updated_at: None,
            dirty: false,
            recent_written_at: None,
        };
        let mut last = 0;
        for event in from_disk {
            match seq_of(&event) {
                Some(s) if s > last => {
                    last = s;
                    let bytes = event.to_string().len();
                    inner.push(Held {
                        seq: s,
                        event,
                        bytes,
                    });
                }
                _ => {}
            }
        }
        Events {
            inner: Mutex::new(inner),
            hub: Hub::new(SUBSCRIBER_QUEUE),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Records and broadcasts one event; returns its seq.
    pub fn emit(&self, level: Level, kind: &str, message: impl Into<String>, detail: Value) -> u64 {
        let mut inner = self.lock();
        self.record(&mut inner, level, kind, message.into(), detail)
    }

    /// Runs `act` and, if it succeeds, records the event — both under the event lock, so
    /// every event caused by `act` gets a later seq. For an answer sent to the child: the
    /// child's reaction is emitted by the dispatcher, which waits for this lock, so it can
    /// never overtake the event that says the answer was sent. `act` must not block (a
    /// queue `try_send` is fine) and must not emit.
    pub fn emit_after<E>(
        &self,
        act: impl FnOnce() -> Result<(), E>,
        level: Level,
        kind: &str,
        message: impl Into<String>,
        detail: Value,
    ) -> Result<u64, E> {
        let mut inner = self.lock();
        act()?;
        Ok(self.record(&mut inner, level, kind, message.into(), detail))
    }

    fn record(
        &self,
        inner: &mut Inner,
        level: Level,
        kind: &str,
        message: String,
        detail: Value,
    ) -> u64 {
        inner.seq += 1;
        let seq = inner.seq;
        let now = now_rfc3339();
        let record = Record {
            seq,
            created_at: &now,
            level: level.as_str(),
            kind,
            message: &message,
            detail: &detail,
        };
        // Serializing a Value cannot fail (its map keys are strings); the fallback keeps
        // the event anyway.
        let mut text = serde_json::to_string(&record).unwrap_or_else(|e| {
            json!({"seq": seq, "createdAt": now, "level": level.as_str(), "type": kind,
                   "message": format!("event not serializable: {e}"), "detail": null})
            .to_string()
        });
        text.push('\n');
        if let Err(e) = inner.log.append(seq, text.as_bytes()) {
            log::warn!("append to {}: {e}", inner.log.path().display());
        }
        text.pop();
        self.hub.broadcast(&text);
        crate::event_lines::log_event(kind, &detail);
        let bytes = text.len();
        let event = json!({
            "seq": seq,
            "createdAt": now,
            "level": level.as_str(),
            "type": kind,
            "message": message,
            "detail": detail,
        });
        inner.push(Held { seq, event, bytes });
        inner.updated_at = Some(now);
        inner.dirty = true;
        seq
    }

    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    pub fn websocket_clients(&self) -> usize {
        self.hub.len()
    }

    /// The newest `n` events, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Value> {
        let inner = self.lock();
        let skip = inner.ring.len().saturating_sub(n);
        inner
            .ring
            .iter()
            .skip(skip)
            .map(|h| h.event.clone())
            .collect()
    }

    /// The newest `n` events in the ring that `keep` accepts, oldest first. Walks the ring
    /// from its newest end and clones only what it returns (a session read asks for a few
    /// of its own events out of thousands).
    pub fn recent_matching(&self, n: usize, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let inner = self.lock();
        let mut out: Vec<Value> = inner
            .ring
            .iter()
            .rev()
            .filter(|h| keep(&h.event))
            .take(n)
            .map(|h| h.event.clone())
            .collect();
        out.reverse();
        out
    }

    /// `{updatedAt, events}` for recent-events.json and the status route: the newest
    /// `BAA_CODEXD_RECENT_EVENTS` events, each cut to a few KiB and all together to a
    /// bounded size (see `recent_events.rs`); the whole events stay in the log.
    pub fn recent_snapshot(&self) -> Value {
        let (n, updated_at) = {
            let inner = self.lock();
            (inner.recent_n, inner.updated_at.clone())
        };
        json!({"updatedAt": updated_at, "events": recent_events::bounded(self.recent(n))})
    }

    /// The recent-events.json content if anything changed since it was last written and
    /// that was at least [`RECENT_WRITE_EVERY`] ago: a burst of events rewrites it once,
    /// not once per flush.
    pub fn take_dirty(&self) -> Option<Value> {
        {
            let mut inner = self.lock();
            let due = inner
                .recent_written_at
                .is_none_or(|t| t.elapsed() >= RECENT_WRITE_EVERY);
            if !inner.dirty || !due {
                return None;
            }
            inner.dirty = false;
            inner.recent_written_at = Some(Instant::now());
        }
        Some(self.recent_snapshot())
    }

    /// The oldest event still readable with `since` (the ring's or the log's).
    pub fn oldest_seq(&self) -> u64 {
        let inner = self.lock();
        let front = inner.front();
        inner.log.oldest(inner.seq + 1).min(front)
    }

    /// Every event with `seq > since`, oldest first, at most `limit`: from the log for
    /// what is older than the ring (a binary search, then `limit` lines), then the ring.
    pub fn since(&self, since: u64, limit: usize) -> Result<Vec<Value>, SinceError> {
        let (disk, ring) = {
            let mut inner = self.lock();
            let disk = inner.disk_before_ring(since)?;
            let ring: Vec<Value> = inner
                .ring
                .iter()
                .filter(|h| h.seq > since)
                .take(limit)
                .map(|h| h.event.clone())
                .collect();
            (disk, ring)
        };
        let mut out = Vec::new();
        if let Some(mut reader) = disk {
            while out.len() < limit {
                match reader.next_line() {
                    Ok(Some((_, line))) => {
                        if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                            out.push(v);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(SinceError::Unreadable(e.to_string())),
                }
            }
        }
        out.extend(ring);
        out.truncate(limit);
        Ok(out)
    }

    /// A live subscription plus what must precede it: every event after `since` (none
    /// when `since` is None). No event is missing and none repeats.
    pub fn subscribe_since(
        &self,
        since: Option<u64>,
    ) -> Result<(Subscription, Replay), SinceError> {
        let Some(since) = since else {
            let replay = Replay {
                disk: None,
                ring: VecDeque::new(),
            };
            return Ok((self.hub.subscribe(), replay));
        };
        let mut inner = self.lock();
        let disk = inner.disk_before_ring(since)?;
        let ring: VecDeque<String> = inner
            .ring
            .iter()
            .filter(|h| h.seq > since)
            .map(|h| frame(&h.event))
            .collect();
        let sub = self.hub.subscribe();
        Ok((sub, Replay { disk, ring }))
    }
}

pub fn seq_of(e: &Value) -> Option<u64> {
    e.get("seq").and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(baa::common::ids::new_id("ev"));
        std::fs::create_dir_all(&d).unwrap();
        d.join("events.jsonl")
    }

    const BIG: Limits = Limits {
        max_bytes: 64 << 20,
        keep: 3,
    };

    fn drain(mut replay: Replay) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = replay.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    fn seqs(frames: &[String]) -> Vec<u64> {
        frames
            .iter()
            .map(|f| seq_of(&serde_json::from_str(f).unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn seq_continues_after_reopen_and_torn_tail() {
        let p = tmp();
        let ev = Events::open(p.clone(), BIG, vec![], 0, 10);
        for i in 0..5 {
            ev.emit(Level::Info, "t", format!("e{i}"), json!({}));
        }
        drop(ev);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(b"{\"seq\":99,\"torn");
        std::fs::write(&p, bytes).unwrap();
        let ev = Events::open(p, BIG, vec![], 0, 10);
        assert_eq!(ev.emit(Level::Info, "t", "next", json!({})), 6);
    }

    #[test]
    fn since_reads_from_file_and_ring_without_gaps() {
        let p = tmp();
        let ev = Events::open(p, BIG, vec![], 0, 10);
        for _ in 0..(RING + 50) {
            ev.emit(Level::Info, "t", "x", json!({}));
        }
        let (sub, replay) = ev.subscribe_since(Some(10)).unwrap();
        let frames = drain(replay);
        let got = seqs(&frames);
        assert_eq!(got.first(), Some(&11));
        assert_eq!(got.last(), Some(&((RING + 50) as u64)));
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "gap in {got:?}");
        ev.emit(Level::Info, "t", "live", json!({}));
        let live = sub.rx.try_recv().unwrap();
        assert_eq!(seqs(&[live]), vec![(RING + 51) as u64]);
        assert_eq!(ev.since(RING as u64 + 49, 10).unwrap().len(), 2);
        assert_eq!(ev.since(0, 5).unwrap().len(), 5);
    }

    /// The bug behind the flaky `real_codex_approvals_are_answered_over_http_and_by_timeout`:
    /// the answer went to the child first and `request.timeout` was emitted after, so a
    /// quick child's reaction (a declined item) could get the earlier seq. Here the action
    /// wakes a "child" that emits at once, and dawdles before returning (a preempted
    /// thread): the answer's event must still come first.
    #[test]
    fn emit_after_orders_the_event_before_what_the_action_causes() {
        let ev = std::sync::Arc::new(Events::open(tmp(), BIG, vec![], 0, 10));
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let ev2 = ev.clone();
        let child = std::thread::spawn(move || {
            rx.recv().unwrap();
            ev2.emit(Level::Info, "child.reaction", "reacted", json!({}))
        });
        let answered = ev
            .emit_after(
                || {
                    tx.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    Ok::<(), ()>(())
                },
                Level::Warn,
                "request.timeout",
                "answered",
                json!({}),
            )
            .unwrap();
        let reaction = child.join().unwrap();
        assert!(
            answered < reaction,
            "answer seq {answered}, reaction seq {reaction}"
        );
        let failed = ev.emit_after(
            || Err("gone"),
            Level::Warn,
            "request.timeout",
            "x",
            json!({}),
        );
        assert_eq!(failed, Err("gone"));
        assert_eq!(ev.last_seq(), reaction, "a failed action must not emit");
    }
    const SMALL: Limits = Limits {
        max_bytes: 512 * 1024,
        keep: 2,
    };

    #[test]
    fn since_older_than_the_kept_segments_is_expired_with_the_oldest_seq() {
        let p = tmp();
        let ev = Events::open(p, SMALL, vec![], 0, 10);
        let n = (RING * 4) as u64;
        for _ in 0..n {
            ev.emit(Level::Info, "t", "x", json!({"pad": "p".repeat(100)}));
        }
        let oldest = ev.oldest_seq();
        assert!(oldest > 1 && oldest < n - RING as u64, "oldest {oldest}");
        assert_eq!(
            ev.since(0, 10),
            Err(SinceError::Expired {
                since: 0,
                oldest_seq: oldest
            })
        );
        let e = ev.subscribe_since(Some(oldest - 2)).err().unwrap();
        let api = e.to_api_error();
        assert_eq!((api.status, api.code.as_str()), (410, "since_expired"));
        assert_eq!(api.details.unwrap()["oldest_seq"], oldest);
        // From the oldest kept on: every event once, in order, across segments and ring.
        let (_sub, replay) = ev.subscribe_since(Some(oldest - 1)).unwrap();
        let got = seqs(&drain(replay));
        assert_eq!(got, (oldest..=n).collect::<Vec<_>>());
        let page = ev.since(oldest + 5, 1000).unwrap();
        assert_eq!(seq_of(&page[0]), Some(oldest + 6));
        assert_eq!(page.len(), 1000);
    }

    #[test]
    fn recent_matching_gives_the_newest_matches_oldest_first() {
        let ev = Events::open(tmp(), SMALL, vec![], 0, 10);
        for i in 0..50 {
            let sid = if i % 5 == 0 { "a" } else { "b" };
            ev.emit(Level::Info, "t", "x", json!({"sessionId": sid}));
        }
        let got = ev.recent_matching(3, |e| e["detail"]["sessionId"] == "a");
        let got: Vec<u64> = got.iter().filter_map(seq_of).collect();
        assert_eq!(got, [36, 41, 46]);
        assert!(ev.recent_matching(3, |_| false).is_empty());
    }

    #[test]
    fn restart_after_rotation_continues_seq_and_refills_the_ring_from_the_log() {
        let p = tmp();
        let ev = Events::open(p.clone(), SMALL, vec![], 0, 10);
        for _ in 0..3000 {
            ev.emit(Level::Info, "t", "x", json!({"pad": "p".repeat(50)}));
        }
        let oldest = ev.oldest_seq();
        drop(ev);
        let ev = Events::open(p, SMALL, vec![json!({"seq": 7})], 0, 10);
        assert_eq!(ev.last_seq(), 3000);
        assert_eq!(ev.recent(1)[0]["seq"], 3000);
        assert_eq!(ev.oldest_seq(), oldest);
        assert_eq!(ev.emit(Level::Info, "t", "next", json!({})), 3001);
        let (_sub, replay) = ev.subscribe_since(Some(oldest - 1)).unwrap();
        assert_eq!(seqs(&drain(replay)), (oldest..=3001).collect::<Vec<_>>());
    }

    #[test]
    fn recent_events_json_is_written_at_most_once_per_interval() {
        let ev = Events::open(tmp(), BIG, vec![], 0, 10);
        ev.emit(Level::Info, "t", "x", json!({}));
        assert!(ev.take_dirty().is_some());
        ev.emit(Level::Info, "t", "y", json!({}));
        assert!(ev.take_dirty().is_none(), "rewritten within the interval");
        ev.lock().recent_written_at = Instant::now().checked_sub(RECENT_WRITE_EVERY);
        let doc = ev.take_dirty().expect("due again");
        assert_eq!(doc["events"].as_array().map(Vec::len), Some(2));
    }
}
