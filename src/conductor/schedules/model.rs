//! The schedule record, as stored in `<state>/schedules/<id>.json` and shown by the routes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a fire does while the schedule's previous task has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the fire while the previous task is queued or running.
    #[default]
    Skip,
    /// Queue one task behind a running one; skip while one already waits.
    BufferOne,
    /// Always queue.
    Allow,
}

impl Overlap {
    pub const NAMES: &'static [&'static str] = &["skip", "buffer_one", "allow"];

    pub fn parse(s: &str) -> Option<Overlap> {
        match s {
            "skip" => Some(Overlap::Skip),
            "buffer_one" => Some(Overlap::BufferOne),
            "allow" => Some(Overlap::Allow),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::Allow => "allow",
        }
    }
}

/// What became of a fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its task was queued on time.
    Fired,
    /// Missed while no conductor fired (down, or a takeover), queued late within
    /// `catchup_window_s`.
    CaughtUp,
    /// Skipped: the previous task was still queued or running (`overlap`).
    SkippedOverlap,
    /// Skipped: missed by more than `catchup_window_s`.
    SkippedMissed,
    /// The task could not be created (its cwd gone, a disk error); logged.
    Failed,
}

/// The last fire: when it was due, the task it made (or, for a skip, the task it waited
/// on), and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastFire {
    pub at: String,
    #[serde(default)]
    pub task_id: Option<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireCounts {
    /// Tasks queued on time.
    #[serde(default)]
    pub fired: u64,
    /// Fires skipped (overlap, or missed beyond the catch-up window).
    #[serde(default)]
    pub skipped: u64,
    /// Missed fires queued late.
    #[serde(default)]
    pub caught_up: u64,
    /// Fires whose task could not be created.
    #[serde(default)]
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub schedule_id: String,
    pub name: String,
    pub cron: String,
    /// An IANA name (the node's zone when none was given).
    pub timezone: String,
    /// The task body, as `POST /v1/tasks` takes it (without `idempotency_key`: each fire
    /// sets its own).
    pub task: Map<String, Value>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub catchup_window_s: u64,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    /// The next fire time (RFC 3339 UTC); none while disabled or when the expression never
    /// fires again.
    #[serde(default)]
    pub next_fire_at: Option<String>,
    #[serde(default)]
    pub last_fire: Option<LastFire>,
    #[serde(default)]
    pub counts: FireCounts,
}
