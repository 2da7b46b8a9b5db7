//! codexd in unix mode (`BAA_CODEXD_SERVER_ENDPOINT=unix://`) against the real pinned
//! `codex app-server` on the offline mock provider: the app-server outlives codexd, and a
//! restarted codexd attaches to it again. A turn in flight keeps streaming into the same
//! `seq` sequence and ends in `lastTurn`; a pending approval is replayed under its original
//! id and answered over HTTP; an app-server that died while codexd was down is replaced
//! and its turn marked interrupted; `POST /v1/codexd/child/restart` and `baa-codexd
//! stop-child` stop it on purpose.
//!
//! The mock model holds the turn's stream mid-way on a gate, so "codexd is restarted
//! while the turn streams" is a fact of the test, not a race against the clock.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::check::compare;
use crate::support::codex::MockCodexHome;
use crate::support::codexd::*;
use crate::support::daemon::{wait_for, Daemon, Spawn, CODEXD};
use crate::support::http::{get, post};
use crate::support::mock_model::{keywords, Gate, Reply};
use crate::support::tmp::TempDir;
use crate::support::ws::WsClient;

const T: Duration = Duration::from_secs(30);
const PARTS: [&str; 3] = ["first part, ", "second part, ", "third part"];

/// The mock: a prompt with `held` streams PARTS but stops after the first until `gate`
/// opens; everything else as usual.
fn held_model(home: &MockCodexHome, gate: &Gate) {
    let gate = gate.clone();
    home.mock.set_script(move |call| {
        if call.prompt.contains("held") && call.tool_output().is_none() {
            let chunks = PARTS.iter().map(|p| p.to_string()).collect();
            Reply::chunks(chunks, Duration::ZERO).paused_before(1, &gate)
        } else {
            keywords(call)
        }
    });
}

fn start_unix(home: &MockCodexHome, dirs: &Dirs) -> Daemon {
    start_running(with_mock_codex_unix(dirs, home))
}

/// Reads frames until `pred` or the connection ends (codexd died); returns what it read.
fn read_until_closed(ws: &mut WsClient, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    while let Some(v) = ws.next_json(T) {
        let stop = pred(&v);
        seen.push(v);
        if stop {
            break;
        }
    }
    seen
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

/// Stops codexd with `stop` while a turn streams, starts it again, and checks the turn
/// finishes in the re-attached app-server with every event on the stream exactly once.
fn turn_survives_a_codexd_restart(label: &str, stop: impl FnOnce(&mut Daemon)) {
    let home = MockCodexHome::new(label);
    let tmp = TempDir::new(label);
    let dirs = Dirs::under(&tmp.child("root"));
    let _left = LeftChild::of(&dirs);
    let gate = Gate::new();
    held_model(&home, &gate);
    let mut d = start_unix(&home, &dirs);
    let app_pid = child_pid(&d);
    assert_eq!(child_status(&d)["transport"], "unix");
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let mut ws = events_ws(&d, Some(0));
    let tid = turn(&d, &sid, "held reply please");
    let before = read_until(&mut ws, T, "the first delta", |e| {
        is_type(e, "item/agentMessage/delta") && e["detail"]["turnId"] == tid.as_str()
    });
    assert_eq!(
        before.last().unwrap()["detail"]["params"]["delta"],
        PARTS[0]
    );

    stop(&mut d);
    // The client reads what the old codexd still sent, up to its end.
    let mut seen = before;
    seen.extend(read_until_closed(&mut ws, |_| false));
    assert!(
        baa::common::proc::pid_alive(app_pid),
        "the app-server died with codexd"
    );

    let d = start_running(with_mock_codex_unix(&dirs, &home));
    let c = wait_child(&d, T, "attached", |c| c["attached"] == true);
    assert_eq!(
        c["pid"], app_pid,
        "a new app-server instead of the old: {c}"
    );
    let last = *seqs(&seen).last().unwrap();
    let mut ws = events_ws(&d, Some(last));
    // What the app-server streams before the new connection resumed the thread reaches
    // nobody (only the final message can be read back); once resumed, it streams here.
    let mut after = read_until(&mut ws, T, "session.resumed", |e| {
        is_type(e, "session.resumed") && e["detail"]["sessionId"] == sid.as_str()
    });
    assert_eq!(after.last().unwrap()["detail"]["reattached"], true);
    // Only now does the model go on: the rest of the turn streams into the new codexd.
    gate.release();
    after.extend(read_until(&mut ws, T, "turn.completed", |e| {
        is_type(e, "turn.completed") && e["detail"]["turnId"] == tid.as_str()
    }));
    let mut all = seen;
    all.extend(after.iter().cloned());
    assert_contiguous(&all);
    let deltas: Vec<&str> = all
        .iter()
        .filter(|e| is_type(e, "item/agentMessage/delta") && e["detail"]["turnId"] == tid.as_str())
        .filter_map(|e| e["detail"]["params"]["delta"].as_str())
        .collect();
    assert_eq!(deltas, PARTS, "each delta once, in order");
    assert!(
        after.iter().any(|e| is_type(e, "child.attached")),
        "no child.attached among {:?}",
        after.iter().map(|e| e["type"].clone()).collect::<Vec<_>>()
    );
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    assert_eq!(s["lastTurn"]["finalMessage"], PARTS.concat(), "{s}");
    // The session goes on in the same thread.
    let tid2 = turn(&d, &sid, "after the re-attach");
    let s = wait_turn_done(&d, &sid, &tid2, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "mock reply: after the re-attach",
        "{s}"
    );
    assert_eq!(child_pid(&d), app_pid);
}

#[test]
fn real_codex_unix_turn_survives_codexd_sigkill() {
    turn_survives_a_codexd_restart("codexd-unix-kill9", |d| d.kill9());
}

#[test]
fn real_codex_unix_turn_survives_codexd_sigterm_which_leaves_the_child_running() {
    turn_survives_a_codexd_restart("codexd-unix-term", |d| {
        assert!(d.terminate(T).success(), "codexd exit; log:\n{}", d.log());
    });
}

#[test]
fn real_codex_unix_pending_approval_survives_a_codexd_restart_and_its_http_answer_completes_the_turn(
) {
    let home = MockCodexHome::new("codexd-unix-approval");
    let tmp = TempDir::new("codexd-unix-approval");
    let dirs = Dirs::under(&tmp.child("root"));
    let _left = LeftChild::of(&dirs);
    let mut d = start_unix(&home, &dirs);
    let app_pid = child_pid(&d);
    let s = create_session(
        &d,
        json!({"cwd": home.work, "approvalPolicy": "untrusted", "approvalTimeoutMs": 120000}),
    );
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let mut ws = events_ws(&d, None);
    let tid = turn(&d, &sid, "run the tool");
    let seen = read_until(&mut ws, T, "request.pending", |e| {
        is_type(e, "request.pending")
    });
    let pending = seen.last().unwrap()["detail"].clone();
    let rid = pending["requestId"].as_str().unwrap().to_string();

    assert!(d.terminate(T).success(), "codexd exit; log:\n{}", d.log());
    let d = start_running(with_mock_codex_unix(&dirs, &home));
    wait_child(&d, T, "attached", |c| c["pid"] == app_pid);
    // The app-server asks again once the thread is resumed; codexd keeps the id.
    let listed = wait_for(T, || {
        let v = get(&d.url("/v1/codexd/requests")).json();
        (v["data"]["count"] == 1).then_some(v)
    })
    .unwrap_or_else(|| panic!("the approval was not replayed; log:\n{}", d.log()));
    let again = &listed["data"]["requests"][0];
    assert_eq!(again["requestId"], rid.as_str(), "{listed}");
    assert_eq!(again["deadlineAt"], pending["deadlineAt"], "{listed}");
    post(
        &d.url(&format!("/v1/codexd/requests/{rid}")),
        &json!({"decision": "accept"}),
    )
    .expect(200);
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    let msg = s["lastTurn"]["finalMessage"].as_str().unwrap_or_default();
    assert!(msg.starts_with("mock tool result: "), "{s}");
    let events = get(&d.url("/v1/codexd/events?since=0&limit=1000")).json();
    let types: Vec<&str> = events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(types.contains(&"request.replayed"), "{types:?}");
    assert!(!types.contains(&"request.abandoned"), "{types:?}");
}

#[test]
fn real_codex_unix_app_server_killed_while_codexd_is_down_is_replaced_and_its_turn_interrupted() {
    let home = MockCodexHome::new("codexd-unix-dead");
    let tmp = TempDir::new("codexd-unix-dead");
    let dirs = Dirs::under(&tmp.child("root"));
    let _left = LeftChild::of(&dirs);
    let gate = Gate::new();
    held_model(&home, &gate);
    let mut d = start_unix(&home, &dirs);
    let app_pid = child_pid(&d);
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let mut ws = events_ws(&d, None);
    let tid = turn(&d, &sid, "held reply please");
    read_until(&mut ws, T, "the first delta", |e| {
        is_type(e, "item/agentMessage/delta")
    });
    d.kill9();
    baa::common::proc::kill_pid(app_pid, libc::SIGKILL).unwrap();
    wait_for(T, || {
        (!baa::common::proc::pid_alive(app_pid) || baa::common::proc::is_zombie(app_pid))
            .then_some(())
    })
    .expect("the app-server died");
    gate.release();

    let d = start_running(with_mock_codex_unix(&dirs, &home));
    let c = wait_child(&d, T, "replaced", |c| {
        c["pid"].as_u64().is_some_and(|p| p != u64::from(app_pid))
    });
    assert_eq!(c["attached"], false, "{c}");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s}");
    let why = s["lastTurn"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains(&format!("pid {app_pid}")) && why.contains("gone"),
        "{s}"
    );
    let events = get(&d.url("/v1/codexd/events?since=0&limit=1000")).body;
    assert!(events.contains("child.attach_failed"), "{events}");
    // The session continues on a fresh app-server.
    let tid = turn(&d, &sid, "on the new app-server");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "mock reply: on the new app-server",
        "{s}"
    );
}

/// `POST /v1/codexd/child/restart` replaces a unix-mode app-server; `baa-codexd
/// stop-child` stops the one a stopped codexd left, and refuses while codexd runs.
#[test]
fn real_codex_unix_child_is_restarted_and_stopped_on_purpose() {
    let home = MockCodexHome::new("codexd-unix-stop");
    let tmp = TempDir::new("codexd-unix-stop");
    let dirs = Dirs::under(&tmp.child("root"));
    let _left = LeftChild::of(&dirs);
    let mut d = start_unix(&home, &dirs);
    let first = child_pid(&d);
    let stop_child = || {
        Spawn::new(CODEXD)
            .arg("stop-child")
            .env("BAA_CODEXD_STATE_DIR", &dirs.state)
            .env("BAA_CODEXD_LOGS_DIR", &dirs.logs)
            .output()
    };
    let refused = stop_child();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("already runs on the state dir"),
        "{refused:?}"
    );
    compare(
        "first child alive",
        baa::common::proc::pid_alive(first),
        true,
    );

    let r = post(&d.url("/v1/codexd/child/restart"), &json!({})).expect(202);
    assert_eq!(r["data"]["previousPid"], first, "{r}");
    let c = wait_child(&d, T, "replaced", |c| {
        c["pid"].as_u64().is_some_and(|p| p != u64::from(first))
    });
    assert_eq!(c["transport"], "unix", "{c}");
    let second = c["pid"].as_u64().unwrap() as u32;
    wait_for(T, || {
        (!baa::common::proc::pid_alive(first) || baa::common::proc::is_zombie(first)).then_some(())
    })
    .expect("the first app-server stopped");

    assert!(d.terminate(T).success(), "codexd exit; log:\n{}", d.log());
    assert!(
        baa::common::proc::pid_alive(second),
        "SIGTERM took the child"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.state.join("daemon-state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["child"]["status"], "detached", "{state}");
    let stopped = stop_child();
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        stopped
            .stdout
            .contains(&format!("stopped the app-server pid {second}")),
        "{stopped:?}"
    );
    wait_for(T, || {
        (!baa::common::proc::pid_alive(second) || baa::common::proc::is_zombie(second))
            .then_some(())
    })
    .expect("stop-child stopped it");
}
