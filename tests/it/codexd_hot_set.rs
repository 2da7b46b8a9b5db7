//! codexd with more open sessions than it holds in memory (`BAA_CODEXD_HOT_SESSIONS`), stub
//! child: the sessions past the hot set stay on disk only, and are still listed, counted,
//! read with their full last turn and able to take a turn, before and after a restart.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::*;
use crate::support::conductor;
use crate::support::daemon::Daemon;
use crate::support::http::get;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);
const HOT: usize = 2;
const SESSIONS: usize = 5;

fn start(dirs: &Dirs) -> Daemon {
    start_running(with_stub(dirs, "normal").env("BAA_CODEXD_HOT_SESSIONS", HOT.to_string()))
}

#[track_caller]
fn registry(d: &Daemon) -> Value {
    get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["sessionRegistry"].clone()
}

/// Every open session is listed and counted, `active`, while at most the hot set (and
/// none running) is held in memory.
#[track_caller]
fn check_all_listed(d: &Daemon, api: &CodexApi, ids: &[String]) {
    assert_eq!(api.session_ids(false), ids);
    let reg = registry(d);
    let listed = reg["sessions"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<&Value> = listed.iter().map(|s| &s["status"]).collect();
    assert_eq!(statuses, vec![&json!("active"); ids.len()], "{reg:#}");
    assert_eq!(reg["count"], json!(ids.len()), "{reg:#}");
    let in_memory = reg["inMemory"].as_u64().unwrap_or(u64::MAX);
    assert!(in_memory <= HOT as u64, "{in_memory} in memory: {reg:#}");
}

/// The full record of the last turn, from the turn file (memory holds a summary).
#[track_caller]
fn check_full_last_turn(api: &CodexApi, sid: &str, bytes: usize) {
    let s = api.session(sid);
    let last = &s["lastTurn"];
    assert_eq!(last["summary"], Value::Null, "{s:#}");
    assert_eq!(last["commands"].as_array().map(Vec::len), Some(1), "{s:#}");
    let diff = last["diff"].as_str().unwrap_or_default();
    assert!(
        diff.len() >= bytes - 100,
        "{} bytes of diff: {s:#}",
        diff.len()
    );
}

#[test]
fn sessions_evicted_from_the_hot_set_are_listed_read_and_take_a_turn_before_and_after_a_restart() {
    let tmp = TempDir::new("hot-set");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start(&dirs);
    let api = CodexApi::codexd(&d);
    let mut ids = Vec::new();
    for i in 0..SESSIONS {
        let s = api.create_session(json!({"cwd": "/tmp", "metadata": {"n": i}}));
        let sid = s["sessionId"].as_str().unwrap().to_string();
        let tid = api.turn(&sid, "diff:4096");
        let done = api.wait_turn_done(&sid, &tid, T);
        assert_eq!(done["lastTurnStatus"], "completed", "{done:#}");
        ids.push(sid);
    }
    check_all_listed(&d, &api, &ids);
    // The oldest is long out of memory: read back whole, then it takes a turn.
    check_full_last_turn(&api, &ids[0], 4096);
    let tid = api.turn(&ids[0], "after eviction");
    let s = api.wait_turn_done(&ids[0], &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "stub reply: after eviction",
        "{s:#}"
    );
    assert_eq!(s["turnCount"], 2, "{s:#}");
    check_all_listed(&d, &api, &ids);

    d.terminate(T);
    let d = start(&dirs);
    let api = CodexApi::codexd(&d);
    check_all_listed(&d, &api, &ids);
    check_full_last_turn(&api, &ids[1], 4096);
    let s = api.session(&ids[0]);
    assert_eq!(
        (&s["turnCount"], &s["metadata"], &s["threadStatus"]),
        (&json!(2), &json!({"n": 0}), &json!("notLoaded")),
        "{s:#}"
    );
    // The conductor counts them from codexd's status: every open session, `active`.
    let cdir = TempDir::new("hot-set-conductor");
    let c = conductor::spawn(&cdir, "mini-main", "primary")
        .env("BAA_CODEXD_LOCAL_API_BASE", &d.base)
        .start();
    let v = get(&c.url("/v1/codex")).expect(200);
    assert_eq!(
        v["data"]["sessions"],
        json!({"active_count": SESSIONS, "count": SESSIONS, "updated_at": v["data"]["sessions"]["updated_at"]}),
        "{v:#}"
    );
    for sid in &ids[2..4] {
        let tid = api.turn(sid, "after the restart");
        let s = api.wait_turn_done(sid, &tid, T);
        assert_eq!(
            s["lastTurn"]["finalMessage"], "stub reply: after the restart",
            "{s:#}"
        );
    }
    check_all_listed(&d, &api, &ids);
}
