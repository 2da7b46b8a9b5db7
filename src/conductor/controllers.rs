//! Controller heartbeats: each conductor writes its own `controllers/<node_id>.json`
//! (one writer per file), and the list route reads them all.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use baa::common::store::{read_regular, JsonStore, StoreError};
use baa::common::time::{now_ms, now_rfc3339};

pub const DIR: &str = "controllers";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub controller_id: String,
    pub node_id: String,
    pub host: String,
    pub role: String,
    pub priority: i64,
    pub pid: u32,
    pub started_at: String,
    pub last_heartbeat_at: String,
    pub last_heartbeat_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub version: String,
}

/// Opens (creating) the controllers directory under the state dir, once at startup.
pub fn open_dir(state: &JsonStore) -> Result<JsonStore, StoreError> {
    JsonStore::open(state.dir().join(DIR))
}

/// Writes this controller's heartbeat into the controllers directory.
pub fn beat(dir: &JsonStore, hb: &mut Heartbeat) -> Result<(), StoreError> {
    hb.last_heartbeat_at = now_rfc3339();
    hb.last_heartbeat_ms = now_ms();
    let name = format!("{}.json", safe_name(&hb.node_id));
    dir.write(&name, hb)
}

fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every known controller in the public record shape, most recent heartbeat first.
/// `status` is `alive` within three heartbeat intervals, else `stale`.
pub fn list(state_dir: &Path, holder_id: Option<&str>) -> Vec<Value> {
    let dir = state_dir.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut beats: Vec<Heartbeat> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| {
            // Never blocks on a FIFO or reads a directory planted among the heartbeats.
            let (bytes, _) = read_regular(&e.path()).ok()??;
            serde_json::from_slice::<Heartbeat>(&bytes).ok()
        })
        .collect();
    beats.sort_by_key(|h| std::cmp::Reverse(h.last_heartbeat_ms));
    let now = now_ms();
    beats
        .into_iter()
        .map(|h| {
            let alive = now.saturating_sub(h.last_heartbeat_ms)
                <= h.heartbeat_interval_ms.saturating_mul(3);
            serde_json::json!({
                "controller_id": h.controller_id,
                "node_id": h.node_id,
                "host": h.host,
                "role": h.role,
                "priority": h.priority,
                "status": if alive { "alive" } else { "stale" },
                "lease_holder": holder_id == Some(h.node_id.as_str()),
                "last_heartbeat_at": h.last_heartbeat_at,
                "version": h.version,
                "pid": h.pid,
                "started_at": h.started_at,
            })
        })
        .collect()
}
