//! codexd end to end against the real pinned `codex app-server` on the offline mock
//! provider: turns and their event stream, a second turn on the same thread, steer,
//! interrupt, a failed turn, approvals (answered over HTTP and by timeout), SIGKILL of the
//! child with respawn and resume, and a codexd restart on the same dirs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::check::compare;
use crate::support::codex::MockCodexHome;
use crate::support::codexd::*;
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::{get, post};
use crate::support::mock_model::reply_for_prompt;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn start(home: &MockCodexHome, dirs: &Dirs) -> Daemon {
    start_running(with_mock_codex(dirs, home))
}

#[test]
fn real_codex_turns_stream_events_and_support_steer_interrupt_and_failure() {
    let home = MockCodexHome::new("codexd-real-turns");
    let tmp = TempDir::new("codexd-real-turns-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start(&home, &dirs);
    let mut ws = events_ws(&d, None);
    let s = create_session(&d, json!({"cwd": home.work, "purpose": "duplex"}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    assert_eq!(s["modelProvider"], "mock", "{s}");

    // First turn: deltas, then turn/completed, then codexd's turn.completed, seq increasing.
    let tid = turn(&d, &sid, "hello codexd");
    let seen = read_until(&mut ws, T, "turn.completed", |e| {
        is_type(e, "turn.completed")
    });
    assert_contiguous(&seen);
    let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let first_delta = kinds
        .iter()
        .position(|k| *k == "item/agentMessage/delta")
        .unwrap_or_else(|| panic!("{kinds:?}"));
    let completed = kinds
        .iter()
        .position(|k| *k == "turn/completed")
        .unwrap_or_else(|| panic!("{kinds:?}"));
    assert!(first_delta < completed, "{kinds:?}");
    assert_eq!(seen[first_delta]["detail"]["sessionId"], sid.as_str());
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("hello codexd"),
        "{s}"
    );

    // Second turn on the same thread.
    let tid2 = turn(&d, &sid, "second turn");
    assert_ne!(tid2, tid);
    let s = wait_turn_done(&d, &sid, &tid2, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("second turn"),
        "{s}"
    );
    assert_eq!(s["threadId"], session(&d, &sid)["threadId"]);

    // Steer a slow turn: same turn id, and the turn finishes with the steer's reply.
    let tid3 = turn(&d, &sid, "slow please");
    read_until(&mut ws, T, "a delta of the slow turn", |e| {
        is_type(e, "item/agentMessage/delta") && e["detail"]["turnId"] == tid3.as_str()
    });
    let steer = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "input": "steer now", "expectedTurnId": tid3}),
    )
    .expect(202);
    assert_eq!(steer["data"]["turnId"], tid3.as_str(), "{steer}");
    let s = wait_turn_done(&d, &sid, &tid3, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("steer now"),
        "{s}"
    );

    // Interrupt a slow turn.
    let tid4 = turn(&d, &sid, "slow again");
    read_until(&mut ws, T, "a delta of the turn to interrupt", |e| {
        is_type(e, "item/agentMessage/delta") && e["detail"]["turnId"] == tid4.as_str()
    });
    post(
        &d.url("/v1/codexd/turn/interrupt"),
        &json!({"session_id": sid}),
    )
    .expect(200);
    let s = wait_turn_done(&d, &sid, &tid4, T);
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s}");

    // An upstream HTTP 500 is a failed turn, not a success.
    let tid5 = turn(&d, &sid, "fail500 now");
    let s = wait_turn_done(&d, &sid, &tid5, T);
    assert_eq!(s["lastTurnStatus"], "failed", "{s}");
    assert!(s["lastTurn"]["error"].is_object(), "{s}");
    read_until(&mut ws, T, "turn.failed", |e| is_type(e, "turn.failed"));
}

#[test]
fn real_codex_approvals_are_answered_over_http_and_by_timeout() {
    let home = MockCodexHome::new("codexd-real-approval");
    let tmp = TempDir::new("codexd-real-approval-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start(&home, &dirs);
    let mut ws = events_ws(&d, None);

    let s = create_session(
        &d,
        json!({"cwd": home.work, "approvalPolicy": "untrusted", "approvalTimeoutMs": 60000}),
    );
    let sid = s["sessionId"].as_str().unwrap().to_string();
    assert_eq!(s["approvals"]["default"], "decline", "{s}");
    let tid = turn(&d, &sid, "run the tool");
    let seen = read_until(&mut ws, T, "request.pending", |e| {
        is_type(e, "request.pending")
    });
    let p = &seen.last().unwrap()["detail"];
    assert_eq!(p["method"], "item/commandExecution/requestApproval", "{p}");
    assert_eq!(p["sessionId"], sid.as_str(), "{p}");
    let rid = p["requestId"].as_str().unwrap();
    post(
        &d.url(&format!("/v1/codexd/requests/{rid}")),
        &json!({"decision": "accept"}),
    )
    .expect(200);
    let seen = read_until(&mut ws, T, "commandExecution completed", |e| {
        is_type(e, "item/completed") && e["detail"]["params"]["item"]["type"] == "commandExecution"
    });
    assert_eq!(
        seen.last().unwrap()["detail"]["params"]["item"]["status"],
        "completed",
        "{}",
        seen.last().unwrap()
    );
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");

    // Nobody answers: after the session's timeout codexd declines and the turn goes on.
    let s2 = create_session(
        &d,
        json!({"cwd": home.work, "approvalPolicy": "untrusted", "approvalTimeoutMs": 500}),
    );
    let sid2 = s2["sessionId"].as_str().unwrap().to_string();
    let tid2 = turn(&d, &sid2, "tool without an answer");
    let seen = read_until(&mut ws, T, "request.timeout", |e| {
        is_type(e, "request.timeout")
    });
    assert_eq!(
        seen.last().unwrap()["detail"]["reply"]["result"]["decision"],
        "decline"
    );
    let seen = read_until(&mut ws, T, "declined commandExecution", |e| {
        is_type(e, "item/completed") && e["detail"]["params"]["item"]["type"] == "commandExecution"
    });
    assert_eq!(
        seen.last().unwrap()["detail"]["params"]["item"]["status"],
        "declined",
        "{}",
        seen.last().unwrap()
    );
    let s2 = wait_turn_done(&d, &sid2, &tid2, T);
    assert_eq!(s2["lastTurnStatus"], "completed", "{s2}");
}

#[test]
fn real_codex_child_sigkill_respawns_and_codexd_restart_continues_sessions_and_seq() {
    let home = MockCodexHome::new("codexd-real-restart");
    let tmp = TempDir::new("codexd-real-restart-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start(&home, &dirs);
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "before the kill");
    wait_turn_done(&d, &sid, &tid, T);
    // A session without turns has no rollout: after a respawn it gets a new thread.
    let empty = create_session(&d, json!({"cwd": home.work}));
    let empty_sid = empty["sessionId"].as_str().unwrap().to_string();

    let old = child_pid(&d);
    let killed_at = Instant::now();
    baa::common::proc::kill_pid(old, libc::SIGKILL).unwrap();
    let new_pid = wait_for(T, || {
        let v = get(&d.url("/v1/codexd/status")).json();
        let c = &v["data"]["snapshot"]["daemon"]["child"];
        (c["status"] == "running" && c["pid"].as_u64().is_some_and(|p| p as u32 != old))
            .then(|| c["pid"].as_u64().unwrap())
    })
    .expect("child respawned");
    eprintln!(
        "respawn after SIGKILL took {:?} (new pid {new_pid})",
        killed_at.elapsed()
    );
    let tid = turn(&d, &sid, "after the respawn");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("after the respawn"),
        "{s}"
    );
    let old_thread = empty["threadId"].clone();
    let tid_e = turn(&d, &empty_sid, "first turn after respawn");
    let e = wait_turn_done(&d, &empty_sid, &tid_e, T);
    assert_eq!(e["lastTurnStatus"], "completed", "{e}");
    assert_ne!(
        e["threadId"], old_thread,
        "an empty thread cannot be resumed; expected a new one"
    );

    let mark = get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["lastSeq"]
        .as_u64()
        .unwrap();
    let child_before_stop = child_pid(&d);
    compare("exit code after SIGTERM", d.terminate(T).code(), Some(0));
    assert!(
        !baa::common::proc::pid_alive(child_before_stop),
        "child outlived codexd"
    );

    let d = start(&home, &dirs);
    let mut ws = events_ws(&d, Some(mark));
    let replay = read_until(&mut ws, T, "daemon.started", |e| {
        is_type(e, "daemon.started")
    });
    assert_eq!(replay[0]["seq"].as_u64().unwrap(), mark + 1);
    assert_contiguous(&replay);
    let listed = get(&d.url("/v1/codexd/sessions")).expect(200);
    assert_eq!(
        listed["data"]["sessions"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    let tid = turn(&d, &sid, "after the restart");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("after the restart"),
        "{s}"
    );
    assert_eq!(s["threadId"], session(&d, &sid)["threadId"]);
    let live = read_until(&mut ws, T, "turn.completed", |e| {
        is_type(e, "turn.completed")
    });
    let mut all = replay;
    all.extend(live);
    assert_contiguous(&all);
}
