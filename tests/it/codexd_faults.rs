//! codexd against its built-in stub child: the HTTP/WS contract, approvals, restarts and
//! fault injection (a child that exits at once, writes garbage, never answers, or never
//! sends `turn/completed`). Fast and deterministic; the real app-server is in codexd_real.

use std::time::Duration;

use serde_json::json;

use crate::support::check::compare;
use crate::support::codexd::*;
use crate::support::daemon::{wait_for, CODEXD};
use crate::support::http::{get, get_h, post, post_raw, request};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(15);

#[test]
fn stub_turn_streams_ordered_events_and_session_shows_the_outcome() {
    let tmp = TempDir::new("codexd-basic");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);

    let health = get(&d.url("/healthz"));
    assert!(
        health.body.contains("\"status\": \"ok\""),
        "{}",
        health.body
    );
    let status = get(&d.url("/v1/codexd/status"));
    assert!(
        status.body.contains("\"mode\": \"app-server\""),
        "{}",
        status.body
    );
    let data = status.json()["data"].clone();
    for key in [
        "configuredBaseUrl",
        "eventStreamPath",
        "eventStreamUrl",
        "listening",
        "resolvedBaseUrl",
        "websocketClients",
    ] {
        assert!(
            data["service"].get(key).is_some(),
            "service.{key} missing: {data}"
        );
    }
    let child = &data["snapshot"]["daemon"]["child"];
    for key in ["endpoint", "lastError", "pid", "status", "strategy"] {
        assert!(child.get(key).is_some(), "child.{key} missing: {child}");
    }
    assert!(
        data["snapshot"]["identity"]["daemonId"].is_string(),
        "{data}"
    );

    let mut ws = events_ws(&d, None);
    let s = create_session(
        &d,
        json!({"purpose": "worker", "metadata": {"k": "v"}, "cwd": "/tmp"}),
    );
    let sid = s["sessionId"].as_str().unwrap().to_string();
    assert_eq!(s["purpose"], "worker");
    // An open session is `active` (the original contract); its thread idles until a turn runs.
    assert_eq!(
        (&s["status"], &s["threadStatus"]),
        (&json!("active"), &json!("idle")),
        "{s}"
    );
    assert!(s["threadId"].is_string(), "{s}");
    let tid = turn(&d, &sid, "hello");
    let seen = read_until(&mut ws, T, "turn.completed", |e| {
        is_type(e, "turn.completed")
    });
    assert_contiguous(&seen);
    let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("{k} missing from {kinds:?}"))
    };
    assert!(
        pos("turn/started") < pos("item/agentMessage/delta"),
        "{kinds:?}"
    );
    assert!(
        pos("item/agentMessage/delta") < pos("turn/completed"),
        "{kinds:?}"
    );
    assert!(pos("turn/completed") < pos("turn.completed"), "{kinds:?}");
    let delta = &seen[pos("item/agentMessage/delta")];
    assert_eq!(delta["detail"]["sessionId"], sid.as_str(), "{delta}");
    for key in ["seq", "createdAt", "level", "type", "message", "detail"] {
        assert!(delta.get(key).is_some(), "event.{key} missing: {delta}");
    }

    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    assert_eq!(s["lastTurn"]["finalMessage"], "stub reply: hello", "{s}");
    assert!(s["lastTurn"]["usage"].is_object(), "{s}");
    let listed = get(&d.url("/v1/codexd/sessions")).expect(200);
    assert_eq!(listed["data"]["sessions"][0]["sessionId"], sid.as_str());
    let read = get(&d.url(&format!("/v1/codexd/sessions/{sid}"))).expect(200);
    assert!(
        read["data"]["recentEvents"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{read}"
    );
}

#[test]
fn http_errors_are_json_envelopes() {
    let tmp = TempDir::new("codexd-errors");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    let v = get(&d.url("/v1/codexd/sessions/nope")).expect_error(404, "not_found");
    assert_eq!(v["message"], "Unknown codexd session \"nope\".");
    start_turn(&d, "nope", "hi").expect_error(404, "not_found");
    post_raw(&d.url("/v1/codexd/sessions"), b"{bad", &[]).expect_error(400, "invalid_json");
    post(&d.url("/v1/codexd/turn"), &json!({"input": "x"})).expect_error(400, "invalid_request");
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();
    post(&d.url("/v1/codexd/turn"), &json!({"session_id": sid})).expect_error(400, "invalid_input");
    post(&d.url("/v1/codexd/sessions"), &json!({"purpose": "other"}))
        .expect_error(400, "invalid_request");
    post(
        &d.url("/v1/codexd/turn/interrupt"),
        &json!({"sessionId": sid}),
    )
    .expect_error(409, "no_active_turn");
    post(
        &d.url("/v1/codexd/requests/req_x"),
        &json!({"decision": "accept"}),
    )
    .expect_error(404, "not_found");
    get(&d.url("/v1/nothing")).expect_error(404, "not_found");
    let r = request("DELETE", &d.url("/v1/codexd/sessions"));
    r.expect_error(405, "method_not_allowed");
    get_h(&d.url("/healthz"), &[("Host", "evil.example")]).expect_error(403, "forbidden_host");
    get(&d.url("/v1/codexd/events?since=x")).expect_error(400, "invalid_query");
    // Plain GET on the event path lists events (for curl users).
    let ev = get(&d.url("/v1/codexd/events?since=0&limit=3")).expect(200);
    assert_eq!(ev["data"]["events"][0]["seq"], 1, "{ev}");
}

#[test]
fn child_that_exits_at_once_enters_crash_loop_and_daemon_stays_up() {
    let tmp = TempDir::new("codexd-crashloop");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "exit")
        .env("BAA_CODEXD_RESTART_BASE_MS", "20")
        .env("BAA_CODEXD_CRASH_LOOP_MAX", "4")
        .env("BAA_CODEXD_CRASH_LOOP_COOLDOWN_MS", "1500")
        .start();
    let status = wait_for(T, || {
        let v = get(&d.url("/v1/codexd/status")).json();
        let child = v["data"]["snapshot"]["daemon"]["child"].clone();
        (child["status"] == "crash_loop").then_some(child)
    })
    .unwrap_or_else(|| panic!("no crash_loop: {}", get(&d.url("/v1/codexd/status")).body));
    assert!(
        status["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("code 3"),
        "{status}"
    );
    let exits = status["recentExits"].as_array().unwrap();
    assert!(exits.len() >= 4, "{status}");
    assert!(
        exits[0]["stderrTail"]
            .as_str()
            .unwrap()
            .contains("exiting at once"),
        "{status}"
    );
    assert_eq!(get(&d.url("/healthz")).status, 200);
    let v =
        post(&d.url("/v1/codexd/sessions"), &json!({})).expect_error(503, "app_server_unavailable");
    assert!(v["message"].as_str().unwrap().contains("crash_loop"), "{v}");
    // No respawn while in crash_loop: the next attempt comes once the cooldown is over,
    // at nextRestartAt, and not before.
    let restarts = status["restarts"].as_u64().unwrap();
    let ms = |v: &serde_json::Value| {
        v.as_str()
            .and_then(baa::common::time::ms_from_rfc3339)
            .unwrap_or_else(|| panic!("not a time: {v}"))
    };
    let retry_at = ms(&status["nextRestartAt"]);
    let before = exits.len();
    let later = wait_for(T, || {
        let c = child_status(&d);
        (c["restarts"].as_u64().unwrap_or(0) > restarts).then_some(c)
    })
    .unwrap_or_else(|| panic!("no attempt after the cooldown: {:#}", child_status(&d)));
    let new_exits = &later["recentExits"].as_array().unwrap()[before..];
    assert!(!new_exits.is_empty(), "{later:#}");
    for exit in new_exits {
        assert!(
            ms(&exit["at"]) >= retry_at,
            "respawned during crash_loop (before {}): {later:#}",
            status["nextRestartAt"]
        );
    }
}

#[test]
fn garbage_lines_from_the_child_are_ignored() {
    let tmp = TempDir::new("codexd-garbage");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "garbage").start();
    wait_child_running(&d, T);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();
    let tid = turn(&d, sid, "through the noise");
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "stub reply: through the noise",
        "{s}"
    );
    let stdout_log = std::fs::read_to_string(dirs.logs.join("stdout.log")).unwrap();
    assert!(
        stdout_log.contains("this is not json"),
        "raw stdout not logged"
    );
    let stderr_log = dirs.logs.join("stderr.log");
    assert!(stderr_log.exists(), "no {}", stderr_log.display());
}

#[test]
fn child_that_never_answers_hits_request_deadlines() {
    let tmp = TempDir::new("codexd-silent");
    let dirs = Dirs::under(&tmp.child("root"));
    // A child that ignores everything never finishes the handshake.
    let d = with_stub(&dirs, "silent")
        .env("BAA_CODEXD_REQUEST_TIMEOUT_MS", "300")
        .start();
    let err = wait_for(T, || {
        let v = get(&d.url("/v1/codexd/status")).json();
        let e = v["data"]["snapshot"]["daemon"]["child"]["lastError"]
            .as_str()
            .map(str::to_string);
        e.filter(|e| e.contains("initialize"))
    });
    assert!(err.is_some(), "{}", get(&d.url("/v1/codexd/status")).body);
    drop(d);
    // A child that answers initialize but nothing after: requests time out with 504.
    let dirs = Dirs::under(&tmp.child("root2"));
    let d = with_stub(&dirs, "mute")
        .env("BAA_CODEXD_REQUEST_TIMEOUT_MS", "300")
        .start();
    wait_child_running(&d, T);
    let started = std::time::Instant::now();
    post(&d.url("/v1/codexd/sessions"), &json!({})).expect_error(504, "app_server_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(&d.url("/healthz")).status, 200);
}

#[test]
fn approvals_are_answered_over_http_or_by_timeout() {
    let tmp = TempDir::new("codexd-approvals");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    let mut ws = events_ws(&d, None);

    let s = create_session(&d, json!({"approvalTimeoutMs": 60000}));
    let sid = s["sessionId"].as_str().unwrap();
    let tid = turn(&d, sid, "needs approval");
    let seen = read_until(&mut ws, T, "request.pending", |e| {
        is_type(e, "request.pending")
    });
    let pending = seen.last().unwrap();
    let rid = pending["detail"]["requestId"].as_str().unwrap();
    assert_eq!(pending["detail"]["sessionId"], sid, "{pending}");
    let list = get(&d.url("/v1/codexd/requests")).expect(200);
    assert_eq!(list["data"]["requests"][0]["requestId"], rid, "{list}");
    let answered = post(
        &d.url(&format!("/v1/codexd/requests/{rid}")),
        &json!({"decision": "accept"}),
    )
    .expect(200);
    assert_eq!(
        answered["data"]["reply"]["result"]["decision"], "accept",
        "{answered}"
    );
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(s["lastTurn"]["finalMessage"], "decision: accept", "{s}");
    post(
        &d.url(&format!("/v1/codexd/requests/{rid}")),
        &json!({"decision": "accept"}),
    )
    .expect_error(404, "not_found");

    let s2 = create_session(
        &d,
        json!({"approvalTimeoutMs": 300, "approval_default": "decline"}),
    );
    let sid2 = s2["sessionId"].as_str().unwrap();
    let tid2 = turn(&d, sid2, "approval please");
    read_until(&mut ws, T, "request.timeout", |e| {
        is_type(e, "request.timeout")
    });
    let s2 = wait_turn_done(&d, sid2, &tid2, T);
    assert_eq!(s2["lastTurn"]["finalMessage"], "decision: decline", "{s2}");
}

#[test]
fn interrupt_steer_and_failed_turn_on_the_stub() {
    let tmp = TempDir::new("codexd-stub-turns");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();

    let tid = turn(&d, sid, "slow:200");
    let steer = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "prompt": "more", "expectedTurnId": tid}),
    )
    .expect(202);
    assert_eq!(steer["data"]["turnId"], tid.as_str(), "{steer}");
    assert_eq!(steer["data"]["steered"], true, "{steer}");
    let s = wait_turn_done(&d, sid, &tid, T);
    assert!(
        s["lastTurn"]["finalMessage"]
            .as_str()
            .unwrap()
            .contains("steered: more"),
        "{s}"
    );

    let tid = turn(&d, sid, "slow:500");
    let r = post(
        &d.url("/v1/codexd/turn/interrupt"),
        &json!({"sessionId": sid}),
    )
    .expect(200);
    assert_eq!(r["data"]["turnId"], tid.as_str());
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s}");

    let tid = turn(&d, sid, "please fail");
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "failed", "{s}");
    assert_eq!(
        s["lastTurn"]["error"]["message"], "stub failure requested",
        "{s}"
    );
}

#[test]
fn missing_turn_completed_is_reconciled_with_thread_read() {
    let tmp = TempDir::new("codexd-reconcile");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "no-complete")
        .env("BAA_CODEXD_RECONCILE_IDLE_MS", "300")
        .start();
    wait_child_running(&d, T);
    let mut ws = events_ws(&d, None);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();
    let tid = turn(&d, sid, "lost completion");
    let seen = read_until(&mut ws, T, "turn.completed", |e| {
        is_type(e, "turn.completed")
    });
    assert_eq!(
        seen.last().unwrap()["detail"]["source"],
        "reconcile",
        "{:?}",
        seen.last()
    );
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "stub reply: lost completion",
        "{s}"
    );
}

#[test]
fn restart_keeps_sessions_and_seq_and_since_replays_exactly_the_missed_events() {
    let tmp = TempDir::new("codexd-restart");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    let old_child = child_pid(&d);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "one");
    wait_turn_done(&d, &sid, &tid, T);
    let mark = get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["lastSeq"]
        .as_u64()
        .unwrap();
    // Events the reconnecting client will have missed.
    let tid = turn(&d, &sid, "two");
    wait_turn_done(&d, &sid, &tid, T);
    let status = d.terminate(T);
    assert!(status.success(), "codexd exit: {status:?}");
    assert!(
        !baa::common::proc::pid_alive(old_child),
        "child {old_child} survived codexd's stop"
    );

    let d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    let mut ws = events_ws(&d, Some(mark));
    let replay = read_until(&mut ws, T, "daemon.started", |e| {
        is_type(e, "daemon.started")
    });
    assert_eq!(
        replay[0]["seq"].as_u64().unwrap(),
        mark + 1,
        "{}",
        replay[0]
    );
    assert_contiguous(&replay);
    let s = session(&d, &sid);
    assert_eq!(s["lastTurn"]["finalMessage"], "stub reply: two", "{s}");
    let tid = turn(&d, &sid, "three");
    let live = read_until(&mut ws, T, "turn.completed", |e| {
        is_type(e, "turn.completed")
    });
    let mut all = replay.clone();
    all.extend(live);
    assert_contiguous(&all);
    assert!(
        all.iter().any(|e| is_type(e, "session.resumed")),
        "no session.resumed"
    );
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurn"]["finalMessage"], "stub reply: three", "{s}");
}

#[test]
fn slow_websocket_client_is_dropped_without_stalling_the_child() {
    let tmp = TempDir::new("codexd-slow-ws");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    let sleeper = events_ws(&d, None); // never reads
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();
    let tid = turn(&d, sid, "burst:20000");
    let s = wait_turn_done(&d, sid, &tid, Duration::from_secs(60));
    assert_eq!(s["lastTurn"]["finalMessage"], "burst of 20000", "{s}");
    let clients = wait_for(T, || {
        let n =
            get(&d.url("/v1/codexd/status")).json()["data"]["service"]["websocketClients"].as_u64();
        (n == Some(0)).then_some(())
    });
    assert!(clients.is_some(), "slow client still subscribed");
    drop(sleeper);
}

#[test]
fn config_smoke_and_external_strategy() {
    let out = std::process::Command::new(CODEXD)
        .args(["config", "--json"])
        .env("BAA_CODEXD_LOCAL_API_BASE", "http://192.168.1.10:4319")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a loopback"),
        "{out:?}"
    );
    let out = std::process::Command::new(CODEXD)
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let tmp = TempDir::new("codexd-smoke");
    let out = std::process::Command::new(CODEXD)
        .arg("smoke")
        .env("BAA_CODEXD_STATE_DIR", tmp.child("state"))
        .env("BAA_CODEXD_LOGS_DIR", tmp.child("logs"))
        .env("BAA_CODEXD_SMOKE_LIFETIME_MS", "300")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("smoke: PASS"), "{stdout}");

    let dirs = Dirs::under(&tmp.child("ext"));
    let d = codexd(&dirs)
        .env("BAA_CODEXD_SERVER_STRATEGY", "external")
        .start();
    let v = get(&d.url("/v1/codexd/status")).expect(200);
    assert_eq!(
        v["data"]["snapshot"]["daemon"]["child"]["status"], "external",
        "{v}"
    );
    assert_eq!(
        v["data"]["snapshot"]["daemon"]["child"]["strategy"], "external",
        "{v}"
    );
    post(&d.url("/v1/codexd/sessions"), &json!({})).expect_error(503, "app_server_unavailable");
}

/// The OS start time codexd records for a pid (Linux: /proc/<pid>/stat field 22).
fn proc_start_time(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    format!("proc:{}", after.split_whitespace().nth(19).unwrap())
}

#[test]
fn stale_child_is_killed_only_when_pid_and_start_time_match() {
    if !std::path::Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: needs /proc");
        return;
    }
    let tmp = TempDir::new("codexd-stale");
    let dirs = Dirs::under(&tmp.child("root"));
    std::fs::create_dir_all(&dirs.state).unwrap();
    let mut stale = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let write = |pid: u32, start: &str| {
        std::fs::write(
            dirs.state.join("daemon-state.json"),
            json!({"lastSeq": 0, "child": {"pid": pid, "startTime": start}}).to_string(),
        )
        .unwrap();
    };
    // Same pid, different start time: a recycled pid is left alone.
    write(other.id(), "proc:1");
    let mut d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    assert!(
        other.try_wait().unwrap().is_none(),
        "an unrelated process was killed"
    );
    compare("exit code after SIGTERM", d.terminate(T).code(), Some(0));
    // Exact match: killed on start.
    write(stale.id(), &proc_start_time(stale.id()));
    let d = with_stub(&dirs, "normal").start();
    let status = wait_for(T, || stale.try_wait().unwrap());
    assert!(status.is_some(), "stale child survived; log:\n{}", d.log());
    let events = get(&d.url("/v1/codexd/events?since=0&limit=1000")).body;
    assert!(events.contains("child.stale_killed"), "{events}");
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn child_killed_mid_turn_interrupts_the_turn_and_the_session_continues() {
    let tmp = TempDir::new("codexd-midturn");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "normal").start();
    wait_child_running(&d, T);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();
    let tid = turn(&d, sid, "slow:500");
    let old = child_pid(&d);
    baa::common::proc::kill_pid(old, libc::SIGKILL).unwrap();
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s}");
    assert!(
        s["lastTurn"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "{s}"
    );
    wait_for(T, || {
        (child_pid_opt(&d).is_some_and(|p| p != old)).then_some(())
    })
    .expect("respawn");
    wait_child_running(&d, T);
    let tid = turn(&d, sid, "after the kill");
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "stub reply: after the kill",
        "{s}"
    );
}

fn child_pid_opt(d: &crate::support::daemon::Daemon) -> Option<u32> {
    get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["child"]["pid"]
        .as_u64()
        .map(|p| p as u32)
}

/// Regression: the app-server answers `turn/start` before the turn is active, so an
/// interrupt sent at once was refused with "no active turn to interrupt" (a 400 to the
/// caller) although the turn then ran. codexd now retries briefly while the turn is current.
#[test]
fn interrupt_right_after_turn_start_is_not_refused() {
    let tmp = TempDir::new("codexd-late-start");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = with_stub(&dirs, "late-start").start();
    wait_child_running(&d, T);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();
    let tid = turn(&d, sid, "slow:500");
    let r = post(
        &d.url("/v1/codexd/turn/interrupt"),
        &json!({"sessionId": sid}),
    )
    .expect(200);
    assert_eq!(r["data"]["turnId"], tid.as_str(), "{r}");
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s}");
}
