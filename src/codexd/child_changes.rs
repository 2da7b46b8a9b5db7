//! What each report of the child side changes in codexd's record of its child
//! ([`ChildInfo`]) and of the requests the child asked (`pending`, `replayable`): plain
//! functions over those values, no lock, no event, no disk. `child_reports` applies them
//! under the state lock and announces the result; `supervision` decides which one a report
//! means.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde_json::{json, Value};

use crate::approvals::Pending;
use crate::state::{ChildInfo, ChildStatus};

/// Exits kept in `recentExits`.
pub const RECENT_EXITS: usize = 10;
/// Lines of the child's stderr an exit keeps.
const EXIT_STDERR_LINES: usize = 10;

/// A new status (with when the next start is due); false, and nothing changed, when codexd
/// runs no child (`external`).
pub fn set_status(
    child: &mut ChildInfo,
    status: ChildStatus,
    next_restart_at: Option<String>,
) -> bool {
    if child.strategy == "external" {
        return false;
    }
    child.status = status;
    child.next_restart_at = next_restart_at;
    true
}

/// A process was spawned (or, `attached`, found running) and is being connected to.
pub fn spawned(
    child: &mut ChildInfo,
    pid: u32,
    start_time: Option<String>,
    socket: Option<String>,
    attached: bool,
) {
    child.pid = Some(pid);
    child.start_time = start_time;
    child.transport = if socket.is_some() { "unix" } else { "stdio" }.into();
    if socket.is_some() {
        child.socket = socket;
    }
    child.attached = attached;
}

/// Generation `generation` answered `initialize` at `now`. Returns whether it was attached
/// to rather than spawned.
pub fn ready(
    child: &mut ChildInfo,
    generation: u64,
    pid: u32,
    start_time: Option<String>,
    codex_version: Option<String>,
    now: String,
) -> bool {
    child.status = ChildStatus::Running;
    child.pid = Some(pid);
    child.start_time = start_time;
    child.generation = generation;
    child.started_at = Some(now);
    child.next_restart_at = None;
    child.codex_version = codex_version;
    child.attached
}

/// The requests generation `generation` asked, taken out of `pending`.
pub fn take_generation(pending: &mut Vec<Pending>, generation: u64) -> Vec<Pending> {
    let (gone, keep): (Vec<Pending>, Vec<Pending>) =
        pending.drain(..).partition(|p| p.generation == generation);
    *pending = keep;
    gone
}

/// The process is gone (`description` says how): no pid, and the reason as `lastError`.
pub fn gone(child: &mut ChildInfo, description: &str) {
    child.pid = None;
    child.start_time = None;
    child.last_error = Some(description.to_string());
}

/// Unix mode: the connection of `generation` ended while its app-server runs on; its
/// requests wait in `replayable` for the next connection to replay them.
pub fn disconnected(
    child: &mut ChildInfo,
    pending: &mut Vec<Pending>,
    replayable: &mut Vec<Pending>,
    generation: u64,
    reason: &str,
) {
    replayable.extend(take_generation(pending, generation));
    child.last_error = Some(reason.to_string());
}

/// codexd stops and leaves its unix-mode child running: every request waits for the next
/// codexd. Returns the socket, for the event.
pub fn detached(
    child: &mut ChildInfo,
    pending: &mut Vec<Pending>,
    replayable: &mut Vec<Pending>,
) -> Option<String> {
    replayable.append(pending);
    child.status = ChildStatus::Detached;
    child.socket.clone()
}

/// The unix transport cannot start: stdio from now on, and why.
pub fn transport_fallback(child: &mut ChildInfo, why: &str) {
    child.transport = "stdio".into();
    child.transport_error = Some(why.to_string());
    child.last_error = Some(format!("unix socket transport unusable: {why}"));
}

/// One `recentExits` entry.
pub fn exit_record(
    at: String,
    generation: u64,
    reason: &str,
    stderr_tail: &str,
    status: Option<ExitStatus>,
    requested: bool,
) -> Value {
    json!({
        "at": at,
        "generation": generation,
        "reason": reason,
        "code": status.and_then(|s| s.code()),
        "signal": status.and_then(|s| s.signal()),
        "stderrTail": last_lines(stderr_tail, EXIT_STDERR_LINES),
        "requested": requested,
    })
}

/// An exit counted and kept (the last [`RECENT_EXITS`]). A restart on request starts the
/// next child at once, without a backoff report: `starting` now.
pub fn exited(child: &mut ChildInfo, exit: Value, requested: bool) {
    if requested {
        child.status = ChildStatus::Starting;
    }
    child.restarts += 1;
    child.recent_exits.push_back(exit);
    while child.recent_exits.len() > RECENT_EXITS {
        child.recent_exits.pop_front();
    }
}

/// Codexd stopped the child.
pub fn stopped(child: &mut ChildInfo) {
    child.pid = None;
    child.start_time = None;
}

/// The command cannot be run (`why`); looked for again at `retry_at`. Returns whether the
/// status or the reason changed (a long wait for an install is announced once).
pub fn unavailable(child: &mut ChildInfo, why: &str, retry_at: String) -> bool {
    let changed =
        child.status != ChildStatus::Unavailable || child.last_error.as_deref() != Some(why);
    child.status = ChildStatus::Unavailable;
    child.last_error = Some(why.to_string());
    child.pid = None;
    child.next_restart_at = Some(retry_at);
    changed
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::PendingRecord;
    use crate::config::Decision;

    fn child() -> ChildInfo {
        ChildInfo::new("spawn", "stdio://", "stdio", None)
    }

    fn request(id: &str, generation: u64) -> Pending {
        let record = PendingRecord {
            request_id: id.into(),
            child_id: json!(id),
            method: "item/commandExecution/requestApproval".into(),
            params: json!({}),
            session_id: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            deadline_ms: 0,
            timeout_ms: 0,
            default_decision: "decline".into(),
        };
        let mut p = Pending::from_record(&record, Decision::Decline);
        p.generation = generation;
        p
    }

    fn ids(list: &[Pending]) -> Vec<&str> {
        list.iter().map(|p| p.request_id.as_str()).collect()
    }

    #[test]
    fn an_external_child_keeps_its_status() {
        let mut c = ChildInfo::new("external", "ws://x", "stdio", None);
        assert!(!set_status(
            &mut c,
            ChildStatus::Restarting,
            Some("t".into())
        ));
        assert_eq!((c.status, c.next_restart_at), (ChildStatus::External, None));
        let mut c = child();
        assert!(set_status(&mut c, ChildStatus::CrashLoop, Some("t".into())));
        assert_eq!(
            (c.status, c.next_restart_at.as_deref()),
            (ChildStatus::CrashLoop, Some("t"))
        );
    }

    #[test]
    fn spawned_then_ready_records_the_process_and_the_transport() {
        let mut c = child();
        c.next_restart_at = Some("earlier".into());
        spawned(
            &mut c,
            42,
            Some("st".into()),
            Some("/run/codex.sock".into()),
            true,
        );
        assert_eq!(
            (c.pid, c.transport.as_str(), c.socket.as_deref(), c.attached),
            (Some(42), "unix", Some("/run/codex.sock"), true)
        );
        spawned(&mut c, 43, None, None, false);
        assert_eq!(
            (c.transport.as_str(), c.socket.as_deref()),
            ("stdio", Some("/run/codex.sock")),
            "a stdio child leaves the recorded socket"
        );
        let attached = ready(
            &mut c,
            7,
            43,
            Some("st2".into()),
            Some("0.1.0".into()),
            "now".into(),
        );
        assert!(!attached);
        assert_eq!(
            (
                c.status,
                c.generation,
                c.started_at.as_deref(),
                c.next_restart_at,
                c.codex_version.as_deref()
            ),
            (ChildStatus::Running, 7, Some("now"), None, Some("0.1.0"))
        );
    }

    #[test]
    fn a_disconnect_keeps_that_generations_requests_for_replay() {
        let mut c = child();
        let mut pending = vec![request("a", 1), request("b", 2), request("c", 1)];
        let mut replayable = vec![request("old", 0)];
        disconnected(&mut c, &mut pending, &mut replayable, 1, "eof");
        assert_eq!(
            (ids(&pending), ids(&replayable)),
            (vec!["b"], vec!["old", "a", "c"])
        );
        assert_eq!(c.last_error.as_deref(), Some("eof"));
        assert_eq!(detached(&mut c, &mut pending, &mut replayable), None);
        assert_eq!(
            (ids(&pending), ids(&replayable)),
            (vec![], vec!["old", "a", "c", "b"])
        );
        assert_eq!(c.status, ChildStatus::Detached);
    }

    #[test]
    fn exits_are_counted_and_the_last_ten_kept() {
        let mut c = child();
        c.status = ChildStatus::Running;
        for n in 0..12 {
            exited(&mut c, json!(n), false);
        }
        assert_eq!(c.restarts, 12);
        assert_eq!(c.recent_exits.front(), Some(&json!(2)));
        assert_eq!(
            c.status,
            ChildStatus::Running,
            "the supervisor reports the backoff"
        );
        exited(&mut c, json!("asked"), true);
        assert_eq!(
            c.status,
            ChildStatus::Starting,
            "a requested restart starts at once"
        );
        gone(&mut c, "killed by signal 9");
        assert_eq!(
            (c.pid, c.last_error.as_deref()),
            (None, Some("killed by signal 9"))
        );
    }

    #[test]
    fn an_exit_record_keeps_the_last_stderr_lines() {
        let tail: String = (1..=12).map(|n| format!("line {n}\n")).collect();
        let e = exit_record("at".into(), 3, "exited with code 1", &tail, None, false);
        assert_eq!(
            e["stderrTail"],
            (3..=12)
                .map(|n| format!("line {n}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            (&e["code"], &e["signal"], &e["generation"]),
            (&Value::Null, &Value::Null, &json!(3))
        );
    }

    #[test]
    fn unavailable_is_a_change_only_when_the_status_or_reason_is_new() {
        let mut c = child();
        c.pid = Some(9);
        assert!(unavailable(&mut c, "not found", "t1".into()));
        assert!(!unavailable(&mut c, "not found", "t2".into()));
        assert_eq!((c.pid, c.next_restart_at.as_deref()), (None, Some("t2")));
        assert!(unavailable(&mut c, "not executable", "t3".into()));
    }

    #[test]
    fn a_transport_fallback_says_why() {
        let mut c = child();
        transport_fallback(&mut c, "no --listen");
        assert_eq!(
            (
                c.transport.as_str(),
                c.transport_error.as_deref(),
                c.last_error.as_deref()
            ),
            (
                "stdio",
                Some("no --listen"),
                Some("unix socket transport unusable: no --listen")
            )
        );
    }
}
