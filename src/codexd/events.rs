//! The event stream: one strictly increasing `seq` that survives restarts, an in-memory
//! ring, the append-only `events.jsonl`, and fan-out to WebSocket subscribers.
//!
//! Emitting appends to the file, pushes to the ring and broadcasts while holding one lock,
//! and a subscriber takes its backlog under that same lock. So a reconnecting client
//! (`?since=<seq>`) gets every later event exactly once: those already emitted in its
//! backlog, the rest through its live queue. Broadcasting never blocks: the hub drops a
//! subscriber whose queue is full, so a slow client cannot stall the child's reader.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use baa::common::jsonl::JsonlLog;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;
use baa::common::ws::{Hub, Subscription};

/// Events held in memory for reconnects; older ones are read back from the JSONL.
const RING: usize = 2000;
/// How many frames a WebSocket subscriber may fall behind before it is dropped.
pub const SUBSCRIBER_QUEUE: usize = 4096;

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

pub struct Events {
    inner: Mutex<Inner>,
    hub: Hub,
    log_path: PathBuf,
}

struct Inner {
    seq: u64,
    ring: VecDeque<Value>,
    log: Option<JsonlLog>,
    recent_n: usize,
    updated_at: Option<String>,
    dirty: bool,
}

impl Events {
    /// Opens `events.jsonl` (repairing a torn tail) and continues `seq` after the highest
    /// of: the log's last record, `recent` (from recent-events.json) and `seq_hint`.
    pub fn open(log_path: PathBuf, recent: Vec<Value>, seq_hint: u64, recent_n: usize) -> Events {
        let log = match JsonlLog::open(&log_path, false) {
            Ok((log, _cut)) => Some(log),
            Err(e) => {
                log::error!(
                    "cannot open {}: {e}; events are kept in memory only",
                    log_path.display()
                );
                None
            }
        };
        let tail_seq = last_seq_in(&log_path).unwrap_or(0);
        let recent_seq = recent.iter().filter_map(seq_of).max().unwrap_or(0);
        let seq = tail_seq.max(recent_seq).max(seq_hint);
        let ring: VecDeque<Value> = recent.into_iter().filter(|e| seq_of(e).is_some()).collect();
        Events {
            inner: Mutex::new(Inner {
                seq,
                ring,
                log,
                recent_n,
                updated_at: None,
                dirty: false,
            }),
            hub: Hub::new(SUBSCRIBER_QUEUE),
            log_path,
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
        let event = json!({
            "seq": seq,
            "createdAt": now,
            "level": level.as_str(),
            "type": kind,
            "message": message,
            "detail": detail,
        });
        if let Some(log) = inner.log.as_mut() {
            if let Err(e) = log.append(&event) {
                log::warn!("append to {}: {e}", self.log_path.display());
            }
        }
        inner.ring.push_back(event.clone());
        while inner.ring.len() > RING {
            inner.ring.pop_front();
        }
        inner.updated_at = Some(now);
        inner.dirty = true;
        self.hub.broadcast(&event.to_string());
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
        inner.ring.iter().skip(skip).cloned().collect()
    }

    /// `{updatedAt, events}` for recent-events.json and the status route.
    pub fn recent_snapshot(&self) -> Value {
        let n = self.lock().recent_n;
        let updated_at = self.lock().updated_at.clone();
        json!({"updatedAt": updated_at, "events": self.recent(n)})
    }

    /// The recent-events.json content if anything changed since the last call.
    pub fn take_dirty(&self) -> Option<Value> {
        {
            let mut inner = self.lock();
            if !inner.dirty {
                return None;
            }
            inner.dirty = false;
        }
        Some(self.recent_snapshot())
    }

    /// Every held event with `seq > since`, oldest first, at most `limit`.
    pub fn since(&self, since: u64, limit: usize) -> Vec<Value> {
        let (front, ring): (u64, Vec<Value>) = {
            let inner = self.lock();
            let front = inner.ring.front().and_then(seq_of).unwrap_or(inner.seq + 1);
            let ring = inner
                .ring
                .iter()
                .filter(|e| seq_of(e).is_some_and(|s| s > since))
                .cloned()
                .collect();
            (front, ring)
        };
        let mut out = if since + 1 < front {
            self.read_log(since, front)
        } else {
            Vec::new()
        };
        out.extend(ring);
        out.truncate(limit);
        out
    }

    /// A live subscription plus the frames that must precede it: every event after
    /// `since` (none when `since` is None). No event is missing and none repeats.
    pub fn subscribe_since(&self, since: Option<u64>) -> (Subscription, Vec<String>) {
        let Some(since) = since else {
            return (self.hub.subscribe(), Vec::new());
        };
        loop {
            // Older events come from the file, read without holding the lock (the file
            // can be large); the ring part is taken together with the subscription.
            let front = {
                let inner = self.lock();
                inner.ring.front().and_then(seq_of).unwrap_or(inner.seq + 1)
            };
            let older = if since + 1 < front {
                self.read_log(since, front)
            } else {
                Vec::new()
            };
            let inner = self.lock();
            let now_front = inner.ring.front().and_then(seq_of).unwrap_or(inner.seq + 1);
            if now_front > front && since + 1 < now_front {
                // The ring moved on while we read the file; read again.
                continue;
            }
            let sub = self.hub.subscribe();
            let mut frames: Vec<String> = older.iter().map(Value::to_string).collect();
            frames.extend(
                inner
                    .ring
                    .iter()
                    .filter(|e| seq_of(e).is_some_and(|s| s > since))
                    .map(Value::to_string),
            );
            return (sub, frames);
        }
    }

    /// Events with `since < seq < before` from the JSONL file.
    fn read_log(&self, since: u64, before: u64) -> Vec<Value> {
        match JsonlLog::read_all(&self.log_path) {
            Ok(all) => all
                .into_iter()
                .filter(|e| seq_of(e).is_some_and(|s| s > since && s < before))
                .collect(),
            Err(e) => {
                log::warn!("read {}: {e}", self.log_path.display());
                Vec::new()
            }
        }
    }
}

pub fn seq_of(e: &Value) -> Option<u64> {
    e.get("seq").and_then(Value::as_u64)
}

/// The `seq` of the last parseable record, reading only the file's tail.
fn last_seq_in(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let window = len.min(1024 * 1024);
    f.seek(SeekFrom::Start(len - window)).ok()?;
    let mut buf = Vec::with_capacity(window as usize);
    f.read_to_end(&mut buf).ok()?;
    buf.split(|b| *b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .find_map(|v| seq_of(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(baa::common::ids::new_id("ev"));
        std::fs::create_dir_all(&d).unwrap();
        d.join("events.jsonl")
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
        let ev = Events::open(p.clone(), vec![], 0, 10);
        for i in 0..5 {
            ev.emit(Level::Info, "t", format!("e{i}"), json!({}));
        }
        drop(ev);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(b"{\"seq\":99,\"torn");
        std::fs::write(&p, bytes).unwrap();
        let ev = Events::open(p, vec![], 0, 10);
        assert_eq!(ev.emit(Level::Info, "t", "next", json!({})), 6);
    }

    #[test]
    fn since_reads_from_file_and_ring_without_gaps() {
        let p = tmp();
        let ev = Events::open(p, vec![], 0, 10);
        for _ in 0..(RING + 50) {
            ev.emit(Level::Info, "t", "x", json!({}));
        }
        let (sub, frames) = ev.subscribe_since(Some(10));
        let got = seqs(&frames);
        assert_eq!(got.first(), Some(&11));
        assert_eq!(got.last(), Some(&((RING + 50) as u64)));
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "gap in {got:?}");
        ev.emit(Level::Info, "t", "live", json!({}));
        let live = sub.rx.try_recv().unwrap();
        assert_eq!(seqs(&[live]), vec![(RING + 51) as u64]);
        assert_eq!(ev.since(RING as u64 + 49, 10).len(), 2);
        assert_eq!(ev.since(0, 5).len(), 5);
    }

    /// The bug behind the flaky `real_codex_approvals_are_answered_over_http_and_by_timeout`:
    /// the answer went to the child first and `request.timeout` was emitted after, so a
    /// quick child's reaction (a declined item) could get the earlier seq. Here the action
    /// wakes a "child" that emits at once, and dawdles before returning (a preempted
    /// thread): the answer's event must still come first.
    #[test]
    fn emit_after_orders_the_event_before_what_the_action_causes() {
        let ev = std::sync::Arc::new(Events::open(tmp(), vec![], 0, 10));
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
}
