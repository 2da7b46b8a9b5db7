//! The state files under the state dir, and the records codexd keeps about itself
//! and its child between restarts.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::ids::new_id;
use baa::common::store::JsonStore;
use baa::common::time::now_rfc3339;

use crate::approvals::PendingRecord;

pub const IDENTITY: &str = "identity.json";
pub const DAEMON_STATE: &str = "daemon-state.json";
pub const RECENT_EVENTS: &str = "recent-events.json";
/// The daemon's own files; the sessions have one each under `sessions/` (`registry.rs`).
pub const ALL_FILES: [&str; 3] = [IDENTITY, DAEMON_STATE, RECENT_EVENTS];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub daemon_id: String,
    pub node_id: String,
    pub repo_root: String,
    pub version: String,
    pub created_at: String,
}

impl Identity {
    /// Keeps the persisted daemon id; node, root and version follow the configuration.
    pub fn load_or_create(
        store: &JsonStore,
        node_id: &str,
        repo_root: &str,
        version: &str,
    ) -> Identity {
        let old: Option<Identity> = store.read_or_warn(IDENTITY).unwrap_or_else(|e| {
            log::warn!("state: {e}");
            None
        });
        let (daemon_id, created_at) = match old {
            Some(o) => (o.daemon_id, o.created_at),
            None => (new_id("codexd"), now_rfc3339()),
        };
        Identity {
            daemon_id,
            node_id: node_id.to_string(),
            repo_root: repo_root.to_string(),
            version: version.to_string(),
            created_at,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "daemonId": self.daemon_id,
            "nodeId": self.node_id,
            "repoRoot": self.repo_root,
            "version": self.version,
        })
    }
}

/// Where the child is in its life, serialized as the strings the status JSON has always
/// shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildStatus {
    /// Being spawned or answering `initialize`.
    #[default]
    Starting,
    /// Answered `initialize`; requests go to it.
    Running,
    /// Exited; the next start waits out the backoff (`nextRestartAt`).
    Restarting,
    /// Failed too often within the window; nothing runs until `nextRestartAt`.
    CrashLoop,
    /// The command does not exist or is not executable; looked for again periodically.
    Unavailable,
    /// `BAA_CODEXD_SERVER_STRATEGY=external`: no child.
    External,
    /// Unix mode: codexd stopped and left the app-server running for the next codexd,
    /// which attaches to it (the pid, start time and socket stay recorded).
    Detached,
    /// codexd stopped it. A status this codexd does not know (from an older or newer
    /// state file) reads as `stopped`: it is history, not a live state.
    #[serde(other)]
    Stopped,
}

impl ChildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildStatus::Starting => "starting",
            ChildStatus::Running => "running",
            ChildStatus::Restarting => "restarting",
            ChildStatus::CrashLoop => "crash_loop",
            ChildStatus::Unavailable => "unavailable",
            ChildStatus::Stopped => "stopped",
            ChildStatus::External => "external",
            ChildStatus::Detached => "detached",
        }
    }
}

impl std::fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What codexd knows about its child. Missing fields read as defaults, so an older or
/// hand-edited file still yields the pid and start time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChildInfo {
    pub strategy: String,
    pub endpoint: String,
    /// `stdio` or `unix`: the transport in use (stdio after a fallback from unix).
    pub transport: String,
    /// Unix mode: the socket the app-server listens on.
    pub socket: Option<String>,
    /// Why the unix transport could not be used (codexd fell back to stdio).
    pub transport_error: Option<String>,
    pub status: ChildStatus,
    pub pid: Option<u32>,
    /// The child's start time as the OS reports it; with `pid` it identifies a stale child
    /// (stdio) or the app-server to attach to (unix).
    pub start_time: Option<String>,
    /// The codex version the child reported in `initialize` (its userAgent).
    pub codex_version: Option<String>,
    /// True when the running child was attached to, not spawned, by this codexd.
    pub attached: bool,
    pub generation: u64,
    pub started_at: Option<String>,
    pub last_error: Option<String>,
    pub restarts: u64,
    pub next_restart_at: Option<String>,
    pub recent_exits: VecDeque<Value>,
}

impl ChildInfo {
    pub fn new(strategy: &str, endpoint: &str, transport: &str, socket: Option<String>) -> Self {
        Self {
            strategy: strategy.to_string(),
            endpoint: endpoint.to_string(),
            transport: transport.to_string(),
            socket,
            transport_error: None,
            codex_version: None,
            attached: false,
            status: if strategy == "external" {
                ChildStatus::External
            } else {
                ChildStatus::Starting
            },
            pid: None,
            start_time: None,
            generation: 0,
            started_at: None,
            last_error: None,
            restarts: 0,
            next_restart_at: None,
            recent_exits: VecDeque::new(),
        }
    }
}

/// daemon-state.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DaemonState {
    pub started: bool,
    pub started_at: String,
    pub updated_at: String,
    pub mode: String,
    pub pid: u32,
    pub last_seq: u64,
    pub child: ChildInfo,
    /// Requests of the child waiting for an answer; in unix mode the app-server replays
    /// them to the next codexd, which keeps their ids and deadlines.
    pub pending_requests: Vec<PendingRecord>,
    /// The usage-limit hold (`account.rs`): read back at start, so a restarted codexd
    /// reports it until its time passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_hold: Option<LimitsHold>,
}

/// `limitsHold` of daemon-state.json: new turns should wait until `blockedUntil`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LimitsHold {
    /// RFC 3339.
    pub blocked_until: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_status_serializes_as_the_strings_it_always_had() {
        let all = [
            (ChildStatus::Starting, "starting"),
            (ChildStatus::Running, "running"),
            (ChildStatus::Restarting, "restarting"),
            (ChildStatus::CrashLoop, "crash_loop"),
            (ChildStatus::Unavailable, "unavailable"),
            (ChildStatus::Stopped, "stopped"),
            (ChildStatus::External, "external"),
            (ChildStatus::Detached, "detached"),
        ];
        for (status, text) in all {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(text));
            assert_eq!(status.to_string(), text);
            let back: ChildStatus = serde_json::from_value(json!(text)).unwrap();
            assert_eq!(back, status);
        }
        let unknown: ChildStatus = serde_json::from_value(json!("hibernating")).unwrap();
        assert_eq!(unknown, ChildStatus::Stopped);
    }

    #[test]
    fn a_daemon_state_with_an_unknown_status_still_names_the_stale_child() {
        let doc = json!({"child": {"status": "from-the-future", "pid": 42, "startTime": "proc:1"}});
        let st: DaemonState = serde_json::from_value(doc).unwrap();
        assert_eq!(
            (st.child.pid, st.child.start_time.as_deref()),
            (Some(42), Some("proc:1"))
        );
    }
}
