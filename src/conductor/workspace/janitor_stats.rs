//! What `/v1/runtime` shows of the worktree janitor: its passes and the worktrees dir's
//! last measure. Apart from the janitor, so the app holds it without holding the thread.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use super::usage::Usage;

/// What `/v1/runtime` shows of the janitor (the last pass and the last measure).
#[derive(Default)]
pub struct Stats(Mutex<Seen>);

#[derive(Default)]
struct Seen {
    passes: u64,
    last_pass_at: Option<String>,
    last_pass_ms: u64,
    removed_total: u64,
    failed_total: u64,
    last_error: Option<String>,
    usage: Option<(Usage, String)>,
}

impl Stats {
    /// A pass that removed `removed` worktrees and failed on `failed` (the last failure's
    /// message), and the walk's measure when it made one.
    pub fn record(
        &self,
        removed: u64,
        failed: u64,
        last_error: Option<String>,
        usage: Option<Usage>,
        took: Duration,
    ) {
        let mut s = lock(&self.0);
        let at = now_rfc3339();
        s.passes += 1;
        s.last_pass_ms = took.as_millis() as u64;
        s.removed_total += removed;
        s.failed_total += failed;
        if last_error.is_some() {
            s.last_error = last_error;
        }
        if let Some(u) = usage {
            s.usage = Some((u, at.clone()));
        }
        s.last_pass_at = Some(at);
    }

    /// `/v1/runtime` `worktrees`.
    pub fn to_json(&self, dir: &Path, retention_s: u64) -> Value {
        let s = lock(&self.0);
        let u = s.usage.as_ref();
        json!({
            "dir": dir,
            "retention_s": retention_s,
            "count": u.map(|(u, _)| u.count),
            "bytes": u.map(|(u, _)| u.bytes),
            "approximate": u.is_some_and(|(u, _)| u.approximate),
            "measured_at": u.map(|(_, at)| at),
            "measure_ms": u.map(|(u, _)| u.took_ms),
            "passes": s.passes,
            "last_pass_at": s.last_pass_at,
            "last_pass_ms": s.last_pass_ms,
            "removed_total": s.removed_total,
            "failed_total": s.failed_total,
            "last_error": s.last_error,
        })
    }
}
