//! The persisted, bounded outbox: one entry per (event, target), pending until its target
//! answered 2xx (then `delivered`, written before the next send) or it ran out of tries
//! (`failed`). A pending entry found at start is sent again, so a receiver that was down,
//! or a conductor that was killed, still gets it exactly once after the 2xx is on disk.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::ids::new_id;
use baa::common::store::{JsonStore, StoreError};
use baa::common::time::{now_ms, now_rfc3339, rfc3339_from_ms};

use super::target::Target;

/// The state file under the state dir.
pub const FILE: &str = "notifications.json";
/// Entries kept; beyond it the oldest are dropped (a pending one with a log line).
pub const CAP: usize = 1000;
/// Tries per entry before it is given up.
pub const MAX_TRIES: u32 = 8;
/// First retry delay; doubles per try up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_MS: u64 = 1000;
pub const BACKOFF_MAX_MS: u64 = 300_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// This delivery's id (`X-Baa-Delivery`).
    pub id: String,
    /// The event's id (the body's `id`): the same for every target.
    pub event_id: String,
    pub kind: String,
    /// The target as configured (kept in the 0600 state file; shown redacted).
    pub target: String,
    pub status: Status,
    pub tries: u32,
    pub created_at: String,
    pub next_at_ms: u64,
    #[serde(default)]
    pub delivered_at: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The webhook body (ntfy's text is made from it).
    pub body: Value,
}

impl Entry {
    /// For `GET /v1/notifications`: no body, the target without path or credentials.
    pub fn to_json(&self) -> Value {
        json!({
            "delivery_id": self.id,
            "event_id": self.event_id,
            "kind": self.kind,
            "title": self.body.get("title"),
            "target": Target::redact(&self.target),
            "status": self.status,
            "tries": self.tries,
            "created_at": self.created_at,
            "next_try_at": (self.status == Status::Pending).then(|| rfc3339_from_ms(self.next_at_ms)),
            "delivered_at": self.delivered_at,
            "last_error": self.last_error,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Outbox {
    pub entries: Vec<Entry>,
    /// Changed since the last write.
    #[serde(skip)]
    pub dirty: bool,
}

impl Outbox {
    /// The stored outbox (a missing file: empty; a damaged one heals from its last-good copy).
    pub fn load(store: &JsonStore) -> Result<Outbox, StoreError> {
        Ok(store.read_or_warn::<Outbox>(FILE)?.unwrap_or_default())
    }

    /// Adds one pending entry per target unless the event was queued already (same id).
    /// Returns how many were added.
    pub fn push(&mut self, event_id: &str, kind: &str, body: &Value, targets: &[Target]) -> usize {
        if self.entries.iter().any(|e| e.event_id == event_id) {
            return 0;
        }
        let now = now_ms();
        for t in targets {
            self.entries.push(Entry {
                id: new_id("ntf"),
                event_id: event_id.to_string(),
                kind: kind.to_string(),
                target: t.raw().to_string(),
                status: Status::Pending,
                tries: 0,
                created_at: now_rfc3339(),
                next_at_ms: now,
                delivered_at: None,
                last_error: None,
                body: body.clone(),
            });
        }
        self.trim();
        self.dirty = true;
        targets.len()
    }

    fn trim(&mut self) {
        while self.entries.len() > CAP {
            let e = self.entries.remove(0);
            if e.status == Status::Pending {
                log::warn!(
                    "notify: outbox full ({CAP}); dropped the oldest pending delivery {} ({} to {})",
                    e.id,
                    e.kind,
                    Target::redact(&e.target)
                );
            }
        }
    }

    /// Pending entries due at `now`, oldest first.
    pub fn due(&self, now: u64) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.status == Status::Pending && e.next_at_ms <= now)
            .cloned()
            .collect()
    }

    /// When the next pending entry is due.
    pub fn next_due(&self) -> Option<u64> {
        self.entries
            .iter()
            .filter(|e| e.status == Status::Pending)
            .map(|e| e.next_at_ms)
            .min()
    }

    /// Records the outcome of one try of `id`.
    pub fn record(&mut self, id: &str, outcome: Result<(), String>) {
        let Some(e) = self.entries.iter_mut().find(|e| e.id == id) else {
            return;
        };
        e.tries += 1;
        self.dirty = true;
        match outcome {
            Ok(()) => {
                e.status = Status::Delivered;
                e.delivered_at = Some(now_rfc3339());
                e.last_error = None;
            }
            Err(err) if e.tries >= MAX_TRIES => {
                log::warn!(
                    "notify: gave up on delivery {} ({} to {}) after {} tries: {err}",
                    e.id,
                    e.kind,
                    Target::redact(&e.target),
                    e.tries
                );
                e.status = Status::Failed;
                e.last_error = Some(err);
            }
            Err(err) => {
                let delay = BACKOFF_MS
                    .saturating_mul(1 << (e.tries - 1).min(20))
                    .min(BACKOFF_MAX_MS);
                log::info!(
                    "notify: delivery {} to {} failed (try {}): {err}; again in {delay} ms",
                    e.id,
                    Target::redact(&e.target),
                    e.tries
                );
                e.next_at_ms = now_ms() + delay;
                e.last_error = Some(err);
            }
        }
    }

    /// Gives up on pending entries whose target is no longer configured.
    pub fn orphan(&mut self, targets: &[Target]) {
        for e in &mut self.entries {
            if e.status == Status::Pending && !targets.iter().any(|t| t.raw() == e.target) {
                e.status = Status::Failed;
                e.last_error = Some("the target is no longer in BAA_NOTIFY_URLS".into());
                self.dirty = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<Target> {
        vec![Target::parse("http://127.0.0.1:1/hook").unwrap()]
    }

    #[test]
    fn push_dedups_by_event_id_and_caps_the_size() {
        let mut o = Outbox::default();
        assert_eq!(o.push("e1", "task.failed", &json!({}), &targets()), 1);
        assert_eq!(o.push("e1", "task.failed", &json!({}), &targets()), 0);
        for i in 0..CAP + 5 {
            o.push(&format!("x{i}"), "task.failed", &json!({}), &targets());
        }
        assert_eq!(o.entries.len(), CAP);
        assert_eq!(o.entries[0].event_id, "x5");
    }

    #[test]
    fn retries_back_off_then_give_up() {
        let mut o = Outbox::default();
        o.push("e", "task.failed", &json!({}), &targets());
        let id = o.entries[0].id.clone();
        o.record(&id, Err("down".into()));
        assert_eq!(o.entries[0].status, Status::Pending);
        assert!(o.due(now_ms()).is_empty(), "backs off");
        for _ in 1..MAX_TRIES {
            o.record(&id, Err("down".into()));
        }
        assert_eq!(o.entries[0].status, Status::Failed);
        assert_eq!(o.next_due(), None);
    }

    #[test]
    fn a_2xx_marks_delivered() {
        let mut o = Outbox::default();
        o.push("e", "task.failed", &json!({}), &targets());
        let id = o.entries[0].id.clone();
        o.record(&id, Ok(()));
        assert_eq!(o.entries[0].status, Status::Delivered);
        assert!(o.due(u64::MAX).is_empty());
    }
}
