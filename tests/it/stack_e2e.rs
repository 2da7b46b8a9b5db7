//! The whole stack end to end, as deployed: real `baa-codexd` supervising the real pinned
//! `codex app-server` (offline, on the loopback mock model), a real `baa-conductor` proxying
//! `/v1/codex*` to it, and a real `baa-status-api` observing both. Nothing is stubbed.
//!
//! One test walks the path in order, because each step depends on the state the
//! previous one left: two turns through the conductor, the answer read back from
//! `/v1/codex/sessions/:id`, an interrupt through the conductor, a paused system seen by the
//! status page, codexd stopped (conductor → 503 `codexd_unavailable`) and started again on the
//! same dirs and port (the old session takes another turn). Budget: well under 60 s.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::support::codex::{codex_binary, MockCodexHome};
use crate::support::codexd::{
    child_pid, codexd, start_running, wait_child_running, with_mock_codex, CodexApi, Dirs,
};
use crate::support::conductor::{self, TOKEN};
use crate::support::daemon::{wait_for, Daemon, Spawn};
use crate::support::http::{get, post};
use crate::support::mock_model::reply_for_prompt;
use crate::support::status_api;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

/// codexd on the real codex; `base` pins the listen URL (port 0 picks one).
fn start_codexd(home: &MockCodexHome, dirs: &Dirs, base: &str) -> Daemon {
    start_running(with_mock_codex(dirs, home).env("BAA_CODEXD_LOCAL_API_BASE", base))
}

#[test]
fn whole_stack_turns_interrupt_pause_codexd_restart_and_status_page() {
    let home = MockCodexHome::new("stack-e2e");
    let tmp = TempDir::new("stack-e2e-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut cx = start_codexd(&home, &dirs, "http://127.0.0.1:0");
    let codexd_base = cx.base.clone();

    let cdir = TempDir::new("stack-e2e-conductor");
    let c = conductor::spawn(&cdir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("BAA_CODEXD_LOCAL_API_BASE", &codexd_base)
        .start();
    let st = status_api::start(&c.base, &codexd_base);
    let api = CodexApi::conductor(&c);

    // The proxy sees the live codexd and its running child.
    let v = get(&c.url("/v1/codex")).expect(200);
    assert_eq!(v["data"]["backend"], "independent_codexd", "{v}");
    assert_eq!(v["data"]["daemon"]["child"]["status"], "running", "{v}");
    assert_eq!(v["data"]["proxy"]["target_base_url"], codexd_base.as_str());
    for path in ["/describe", "/describe/business", "/v1/capabilities"] {
        let body = get(&c.url(path)).body;
        assert!(
            body.contains("/v1/codex/turn/interrupt"),
            "{path} does not list the interrupt route: {body}"
        );
        assert!(
            !body.contains("/v1/codex/runs"),
            "{path} lists /v1/codex/runs: {body}"
        );
    }

    // A session and two turns through the conductor; answers read back from the session.
    let v = api.create_session(json!({"purpose": "duplex", "cwd": home.work, "bogusField": 1}));
    let sid = v["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no sessionId: {v}"))
        .to_string();
    assert_eq!(v["modelProvider"], "mock", "{v}");

    let t1 = api.turn(&sid, "first question");
    let s = api.wait_turn_done(&sid, &t1, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s:#}");
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("first question"),
        "{s:#}"
    );
    let t2 = api.turn(&sid, "second question");
    assert_ne!(t1, t2);
    let s = api.wait_turn_done(&sid, &t2, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s:#}");
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("second question"),
        "{s:#}"
    );
    // The original contract: an open session is `active` whatever its last turn did, so the
    // node counts it (the seeds' conductor test asserts `active_count: 1` the same way).
    let v = get(&c.url("/v1/codex")).expect(200);
    assert_eq!(
        (
            &v["data"]["sessions"]["count"],
            &v["data"]["sessions"]["active_count"]
        ),
        (&json!(1), &json!(1)),
        "{v:#}"
    );
    assert_eq!(
        (&s["status"], &s["threadStatus"]),
        (&json!("active"), &json!("idle")),
        "{s:#}"
    );
    let list = get(&c.url("/v1/codex/sessions")).expect(200);
    assert!(
        list["data"]["sessions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["sessionId"] == sid.as_str())),
        "{list}"
    );

    // A slow turn (~10 s of streaming), interrupted through the conductor.
    let t3 = api.turn(&sid, "slow answer please");
    wait_for(T, || {
        (api.session(&sid)["currentTurnId"] == t3.as_str()).then_some(())
    })
    .unwrap_or_else(|| panic!("slow turn never running: {:#}", api.session(&sid)));
    let v = post(
        &c.url("/v1/codex/turn/interrupt"),
        &json!({"sessionId": sid}),
    )
    .expect(200);
    assert_eq!(v["ok"], true, "{v}");
    let s = api.wait_turn_done(&sid, &t3, T);
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s:#}");
    // Nothing left to interrupt: codexd's 409 comes through unchanged.
    post(
        &c.url("/v1/codex/turn/interrupt"),
        &json!({"sessionId": sid}),
    )
    .expect_error(409, "no_active_turn");

    // Pause through the conductor; the status API shows who and why, the child and session.
    post(
        &c.url("/v1/system/pause"),
        &json!({"requested_by": "e2e-operator", "reason": "stack test window"}),
    )
    .expect(200);
    let pid = child_pid(&cx);
    let d = get(&st.url("/v1/status")).expect(200)["data"].clone();
    assert_eq!(d["conductor"]["reachable"], true, "{d:#}");
    assert_eq!(d["codexd"]["reachable"], true, "{d:#}");
    assert_eq!(d["automation"]["mode"], "paused", "{d:#}");
    assert_eq!(d["automation"]["requestedBy"], "e2e-operator", "{d:#}");
    assert_eq!(d["automation"]["reason"], "stack test window", "{d:#}");
    assert_eq!(d["codexd"]["child"]["status"], "running", "{d:#}");
    assert_eq!(d["codexd"]["child"]["pid"], pid, "{d:#}");
    assert_eq!(d["codexd"]["child"]["restarts"], 0, "{d:#}");
    let item = d["codexd"]["sessions"]["items"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["sessionId"] == sid.as_str()).cloned())
        .unwrap_or_else(|| panic!("session {sid} missing: {d:#}"));
    assert_eq!(item["lastTurnStatus"], "interrupted", "{item}");
    assert_eq!(item["status"], "active", "{item}");
    assert_eq!(d["codexd"]["sessions"]["active"], 1, "{d:#}");
    assert_eq!(item["lastTurnId"], t3.as_str(), "{item}");
    let page = get(&st.url("/"));
    assert_eq!(page.status, 200);
    for needle in [
        "paused",
        "e2e-operator",
        "stack test window",
        &pid.to_string(),
        &sid,
        "interrupted",
    ] {
        assert!(
            page.body.contains(needle),
            "status page lacks {needle:?}:\n{}",
            page.body
        );
    }

    // codexd goes away: the conductor degrades to 503 with the exact message, keeps answering.
    let exit = cx.terminate(T);
    assert!(exit.success(), "codexd exit: {exit:?}\n{}", cx.log());
    let want = format!("Independent codexd is unavailable at {codexd_base}.");
    for (method, path, body) in [
        ("GET", "/v1/codex".to_string(), None),
        ("GET", "/v1/codex/sessions".to_string(), None),
        ("GET", format!("/v1/codex/sessions/{sid}"), None),
        (
            "POST",
            "/v1/codex/turn".to_string(),
            Some(json!({"sessionId": sid, "input": "nobody home"})),
        ),
    ] {
        let r = match &body {
            Some(b) => post(&c.url(&path), b),
            None => get(&c.url(&path)),
        };
        let v = r.expect_error(503, "codexd_unavailable");
        assert_eq!(v["message"], want.as_str(), "{method} {path}: {v}");
    }
    get(&c.url("/describe")).expect(200);
    let d = get(&st.url("/v1/status")).expect(200)["data"].clone();
    assert_eq!(d["codexd"]["reachable"], false, "{d:#}");
    assert_eq!(d["conductor"]["reachable"], true, "{d:#}");

    // codexd comes back on the same dirs and port; the conductor notices without a restart,
    // and the old session (its thread resumed) takes another turn.
    let cx2 = start_codexd(&home, &dirs, &codexd_base);
    assert_eq!(cx2.base, codexd_base);
    wait_for(T, || (get(&c.url("/v1/codex")).status == 200).then_some(()))
        .unwrap_or_else(|| panic!("conductor never saw codexd again"));
    let t4 = api.turn(&sid, "after the restart");
    let s = api.wait_turn_done(&sid, &t4, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s:#}");
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        reply_for_prompt("after the restart"),
        "{s:#}"
    );
    let d = get(&st.url("/v1/status")).expect(200)["data"].clone();
    assert_eq!(d["codexd"]["reachable"], true, "{d:#}");
    assert_eq!(d["codexd"]["child"]["pid"], child_pid(&cx2), "{d:#}");

    let mut cx2 = cx2;
    assert!(cx2.terminate(T).success(), "{}", cx2.log());
}

/// A newcomer without any codex binary: codexd stays up and says what to do, the session
/// routes answer 503 through the conductor too, and nothing spins.
#[test]
fn missing_codex_binary_is_a_clear_unavailable_child_not_a_crash_loop() {
    let tmp = TempDir::new("stack-no-codex");
    let dirs = Dirs::under(&tmp.child("root"));
    let cx = codexd(&dirs)
        .env("BAA_CODEXD_SERVER_COMMAND", "codex-not-installed")
        .start();
    let child = wait_for(T, || {
        let v = get(&cx.url("/v1/codexd/status")).json();
        let c = v["data"]["snapshot"]["daemon"]["child"].clone();
        (c["status"] == "unavailable").then_some(c)
    })
    .unwrap_or_else(|| panic!("child never unavailable:\n{}", cx.log()));
    let err = child["lastError"].as_str().unwrap_or_default();
    for needle in [
        "codex-not-installed",
        "not found",
        "scripts/install-codex.sh",
        "BAA_CODEXD_SERVER_COMMAND",
    ] {
        assert!(err.contains(needle), "lastError lacks {needle:?}: {child}");
    }
    // It looks again later (nextRestartAt), and meanwhile nothing spins: checked again
    // below, once the conductor's part has run.
    assert!(child["nextRestartAt"].is_string(), "{child}");
    assert_eq!(
        child["restarts"], 0,
        "a missing binary is not a crash: {child}"
    );
    get(&cx.url("/healthz")).expect(200);

    let cdir = TempDir::new("stack-no-codex-conductor");
    let c = conductor::spawn(&cdir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("BAA_CODEXD_LOCAL_API_BASE", &cx.base)
        .start();
    let v = get(&c.url("/v1/codex")).expect(200);
    assert_eq!(v["data"]["daemon"]["child"]["status"], "unavailable", "{v}");
    let v = post(&c.url("/v1/codex/sessions"), &json!({"purpose": "duplex"}))
        .expect_error(503, "app_server_unavailable");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("scripts/install-codex.sh")),
        "{v}"
    );
    let c2 =
        get(&cx.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["child"].clone();
    assert_eq!(c2["status"], "unavailable", "{c2}");
    assert_eq!(c2["restarts"], 0, "a missing binary is not a crash: {c2}");
}

/// `baa-codexd start --demo`: its own loopback model and CODEX_HOME; a turn completes with
/// no CODEX_HOME given by the caller.
#[test]
fn demo_mode_answers_a_turn_from_the_built_in_model() {
    let tmp = TempDir::new("stack-demo");
    let (dirs, _) = demo_dirs(&tmp);
    let cx = demo_codexd(&tmp, &dirs)
        .env("CODEX_HOME", tmp.child("caller").join("codex-home"))
        .start();
    let status = wait_child_running(&cx, T);
    let daemon = &status["data"]["snapshot"]["daemon"];
    assert_eq!(daemon["demo"], true, "{daemon}");
    let home = dirs.state.join("demo-codex-home");
    assert_eq!(daemon["demoModel"]["codexHome"], home.display().to_string());
    assert!(
        home.join("config.toml").is_file(),
        "no config.toml in {home:?}"
    );
    assert!(
        !tmp.child("caller").join("codex-home").exists(),
        "the caller's CODEX_HOME was used"
    );
    let api = CodexApi::codexd(&cx);
    let s = api.create_session(json!({"purpose": "duplex"}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = api.turn(&sid, "Say hello");
    let s = api.wait_turn_done(&sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "mock reply: Say hello",
        "{s}"
    );
}

/// Demo mode could not show an approval: its model only answered text. Now "run the
/// command `CMD`" makes codex run CMD, which under `untrusted` waits for an answer; once
/// accepted the command runs and the model says what it printed.
#[test]
fn demo_model_answered_only_text_so_no_approval_could_be_tried() {
    let tmp = TempDir::new("stack-demo-approval");
    let (dirs, work) = demo_dirs(&tmp);
    let cx = demo_codexd(&tmp, &dirs).start();
    wait_child_running(&cx, T);
    let api = CodexApi::codexd(&cx);
    let s = api
        .create_session(json!({"purpose": "duplex", "cwd": work, "approvalPolicy": "untrusted"}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = api.turn(&sid, "Run the command `echo approved`");
    answer_the_pending_request(&cx, &sid, "accept");
    let s = api.wait_turn_done(&sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    assert_eq!(
        s["lastTurn"]["finalMessage"], "mock reply: ran `echo approved`: approved",
        "{s}"
    );

    // Declined: the command does not run, the turn goes on and the model says so.
    let tid = api.turn(&sid, "Run the command `echo declined`");
    answer_the_pending_request(&cx, &sid, "decline");
    let s = api.wait_turn_done(&sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    let said = s["lastTurn"]["finalMessage"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("mock reply: `echo declined` was not run: ") && said.contains("rejected"),
        "{s}"
    );
}

/// Waits for `sid`'s approval request on codexd and answers it with `decision`.
#[track_caller]
fn answer_the_pending_request(cx: &Daemon, sid: &str, decision: &str) {
    let rid = wait_for(T, || {
        let v = get(&cx.url("/v1/codexd/requests")).json();
        let r = &v["data"]["requests"][0];
        (r["sessionId"] == sid).then(|| r["requestId"].as_str().unwrap().to_string())
    })
    .unwrap_or_else(|| panic!("an approval request of {sid} is pending"));
    post(
        &cx.url(&format!("/v1/codexd/requests/{rid}")),
        &json!({ "decision": decision }),
    )
    .expect(200);
}

/// A demo codexd's dirs under `tmp`, and the work dir its child runs in.
fn demo_dirs(tmp: &TempDir) -> (Dirs, PathBuf) {
    let work = tmp.child("work");
    std::fs::create_dir_all(&work).unwrap();
    (Dirs::under(&tmp.child("root")), work)
}

/// `baa-codexd start --demo` over the real codex, its child in `tmp`'s work dir.
fn demo_codexd(tmp: &TempDir, dirs: &Dirs) -> Spawn {
    codexd(dirs)
        .arg("--demo")
        .env("BAA_CODEXD_SERVER_COMMAND", codex_binary())
        .env("BAA_CODEXD_SERVER_CWD", tmp.child("work"))
}
