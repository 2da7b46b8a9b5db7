//! What a Codex user expects to know from codexd, against the real pinned `codex
//! app-server` on the mock provider: the model list and the create check (unknown model,
//! unsupported effort → 400 with the allowed values), the experimental API switch, the
//! codex version (status, `baa-codexd status`, the conductor's `/v1/codex`), and rate
//! limits from the provider's headers turning into `limits.blockedUntil` and back.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codex::{codex_binary, MockCodexHome};
use crate::support::codexd::*;
use crate::support::conductor;
use crate::support::daemon::{wait_for, Daemon, CODEXD};
use crate::support::http::{get, post};
use crate::support::mock_model::{reply_for_prompt, Reply};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

/// `codex-cli 0.169.0` as the pinned binary prints it.
fn pinned_cli_version() -> String {
    let out = Command::new(codex_binary())
        .arg("--version")
        .output()
        .expect("codex --version");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn status_snapshot(d: &Daemon) -> Value {
    get(&d.url("/v1/codexd/status")).expect(200)["data"]["snapshot"].clone()
}

/// Waits until the refresh thread has read the account (and run `--version`).
fn wait_account_read(d: &Daemon) -> Value {
    wait_for(T, || {
        let s = status_snapshot(d);
        (s["account"]["checkedAt"].is_string() && s["codex"]["cliVersion"].is_string()).then_some(s)
    })
    .unwrap_or_else(|| panic!("account never read: {:#}\n{}", status_snapshot(d), d.log()))
}

#[test]
fn real_codex_models_list_checks_model_and_effort_and_shows_the_version() {
    let home = MockCodexHome::new("codexd-models");
    let tmp = TempDir::new("codexd-models-dirs");
    let d = start_running(with_mock_codex(&Dirs::under(&tmp.child("root")), &home));

    // The catalog: visible models with their efforts; hidden ones on request.
    let m = get(&d.url("/v1/codexd/models")).expect(200)["data"].clone();
    let ids: Vec<&str> = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert!(ids.contains(&"gpt-5.5"), "{ids:?}");
    let gpt55 = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "gpt-5.5")
        .unwrap();
    assert_eq!(
        gpt55["reasoningEfforts"],
        json!(["low", "medium", "high", "xhigh"]),
        "{gpt55}"
    );
    assert_eq!(m["count"], ids.len());
    assert!(
        m["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["hidden"] == false),
        "{m}"
    );
    let all = get(&d.url("/v1/codexd/models?includeHidden=true&refresh=true")).expect(200);
    assert!(
        all["data"]["count"].as_u64() > m["count"].as_u64(),
        "hidden models: {all}"
    );
    get(&d.url("/v1/codexd/models?refresh=maybe")).expect_error(400, "invalid_query");

    // Session create: an unknown model is a 400 naming the allowed ones.
    let e = post(
        &d.url("/v1/codexd/sessions"),
        &json!({"cwd": home.work, "model": "gpt-9-imaginary"}),
    )
    .expect_error(400, "unknown_model");
    assert!(
        e["details"]["allowed"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("gpt-5.5"))),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|t| t.starts_with("Unknown model \"gpt-9-imaginary\". Allowed: ")),
        "{e}"
    );
    let s = create_session(&d, json!({"cwd": home.work, "model": "gpt-5.5"}));
    let sid = s["sessionId"].as_str().unwrap().to_string();

    // Turn create: an effort the (session's) model does not support is a 400; one it
    // supports runs.
    let e = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "input": "hi", "effort": "ultra"}),
    )
    .expect_error(400, "unsupported_effort");
    assert_eq!(
        e["details"],
        json!({"model": "gpt-5.5", "effort": "ultra", "allowed": ["low", "medium", "high", "xhigh"]})
    );
    let e = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "input": "hi", "model": "nope"}),
    )
    .expect_error(400, "unknown_model");
    assert_eq!(e["details"]["model"], "nope");
    let tid = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "input": "with effort", "effort": "high"}),
    )
    .expect(202)["data"]["turnId"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(
        done["lastTurn"]["finalMessage"],
        reply_for_prompt("with effort"),
        "{done}"
    );
    assert_eq!(done["reasoningEffort"], "high", "{done}");

    // Experimental fields, with the experimental API off: a 400 that says how to enable it.
    let e = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "input": "x", "collaborationMode": {"mode": "plan", "settings": {"model": "gpt-5.5"}}}),
    )
    .expect_error(400, "experimental_api_disabled");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|t| t.contains("BAA_CODEXD_EXPERIMENTAL_API=1")),
        "{e}"
    );
    assert_eq!(e["details"]["fields"], json!(["collaborationMode"]));
    post(
        &d.url("/v1/codexd/sessions"),
        &json!({"runtime_workspace_roots": ["/tmp"]}),
    )
    .expect_error(400, "experimental_api_disabled");

    // The version: status, the CLI and the conductor's /v1/codex.
    let cli = pinned_cli_version();
    let version = cli.split_whitespace().last().unwrap().to_string();
    let snap = wait_account_read(&d);
    assert_eq!(
        (&snap["codex"]["version"], &snap["codex"]["cliVersion"]),
        (&json!(version), &json!(cli)),
        "{:#}",
        snap["codex"]
    );
    assert!(
        snap["codex"]["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.contains(&format!("/{version}"))),
        "{:#}",
        snap["codex"]
    );
    let out = Command::new(CODEXD)
        .arg("status")
        .env("BAA_CODEXD_LOCAL_API_BASE", format!("http://{}", d.addr))
        .output()
        .expect("baa-codexd status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("codex: {version} ({cli})\n")),
        "{text}"
    );
    assert!(
        text.contains("account: none needed (the provider needs no OpenAI login)\n"),
        "{text}"
    );

    let dir = TempDir::new("codexd-models-conductor");
    let c = conductor::spawn(&dir, "mini-main", "primary")
        .args(["--codexd-local-api", &format!("http://{}", d.addr)])
        .start();
    let v = get(&c.url("/v1/codex")).expect(200)["data"].clone();
    assert_eq!(v["codex"]["version"], version.as_str(), "{v:#}");
    assert_eq!(v["account"]["auth_required"], false, "{v:#}");
    let via = get(&c.url("/v1/codex/models?include_hidden=true")).expect(200);
    assert_eq!(via["data"]["count"], all["data"]["count"], "{via}");
    // codexd's own session settings pass the proxy (they used to be dropped).
    let via_s = post(
        &c.url("/v1/codex/sessions"),
        &json!({"cwd": home.work, "approval_timeout_ms": 4321, "approvalDefault": "cancel"}),
    )
    .expect(201)["data"]
        .clone();
    assert_eq!(
        via_s["session"]["approvals"],
        json!({"default": "cancel", "timeoutMs": 4321}),
        "{via_s}"
    );
    let e = post(
        &c.url("/v1/codex/turn"),
        &json!({"sessionId": sid, "input": "x", "effort": "ultra", "temperature": 1}),
    )
    .expect_error(400, "unsupported_effort");
    assert_eq!(
        e["details"]["dropped_fields"],
        json!(["temperature"]),
        "{e}"
    );
    assert_eq!(
        e["details"]["upstream_details"]["allowed"],
        json!(["low", "medium", "high", "xhigh"]),
        "{e}"
    );
}

#[test]
fn real_codex_experimental_api_on_accepts_collaboration_mode() {
    let home = MockCodexHome::new("codexd-experimental");
    let tmp = TempDir::new("codexd-experimental-dirs");
    let d = start_running(
        with_mock_codex(&Dirs::under(&tmp.child("root")), &home)
            .env("BAA_CODEXD_EXPERIMENTAL_API", "1"),
    );
    assert_eq!(status_snapshot(&d)["codex"]["experimentalApi"], true);
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "input": "plan it", "collaborationMode": {"mode": "plan", "settings": {"model": "gpt-5.5", "reasoning_effort": "low"}}}),
    )
    .expect(202)["data"]["turnId"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(done["lastTurnStatus"], "completed", "{done}");
    // The mode reached the model: the plan mode's effort overrode the default.
    let body = home.mock.requests().last().cloned().unwrap_or_default();
    assert_eq!(body["reasoning"]["effort"], "low", "{body}");
}

#[test]
fn real_codex_rate_limit_headers_set_blocked_until_and_it_clears() {
    let home = MockCodexHome::new("codexd-limits");
    let tmp = TempDir::new("codexd-limits-dirs");
    let d = start_running(with_mock_codex(&Dirs::under(&tmp.child("root")), &home));
    let snap = wait_account_read(&d);
    // The mock provider needs no OpenAI login, and has no account limits to read.
    assert_eq!(
        (
            &snap["account"]["loggedIn"],
            &snap["account"]["authRequired"]
        ),
        (&json!(false), &json!(false)),
        "{:#}",
        snap["account"]
    );
    assert_eq!(snap["limits"]["blockedUntil"], Value::Null);

    // The provider says: the 5-hour window is used up for 10 more seconds, counted from
    // its first answer (not from here: on a loaded machine the turn may start seconds
    // later, and a window already over is never reported as blocked).
    let first_reset = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let script_reset = first_reset.clone();
    home.mock.set_script(move |call| {
        let now_s = baa::common::time::now_ms() / 1000;
        let reset = match script_reset.compare_exchange(
            0,
            now_s + 10,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        ) {
            Ok(_) => now_s + 10,
            Err(earlier) => earlier,
        };
        Reply::text(reply_for_prompt(&call.prompt))
            .header("x-codex-primary-used-percent", "100")
            .header("x-codex-primary-window-minutes", "300")
            .header("x-codex-primary-reset-at", reset.to_string())
            .header("x-codex-secondary-used-percent", "12.5")
            .header("x-codex-secondary-window-minutes", "10080")
            .header("x-codex-secondary-reset-at", (reset + 3600).to_string())
    });
    let mut ws = events_ws(&d, None);
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "use it up");
    wait_turn_done(&d, &sid, &tid, T);
    let reset = first_reset.load(std::sync::atomic::Ordering::SeqCst);
    assert_ne!(reset, 0, "the mock model was never asked");
    let blocked = read_until(&mut ws, T, "limits.blocked", |e| {
        is_type(e, "limits.blocked")
    });
    let want = baa::common::time::rfc3339_from_ms(reset * 1000);
    assert_eq!(
        blocked.last().unwrap()["detail"]["blockedUntil"],
        want.as_str()
    );
    let limits = status_snapshot(&d)["limits"].clone();
    assert_eq!(
        limits["primary"],
        json!({"usedPercent": 100, "resetsAt": want, "windowMinutes": 300}),
        "{limits:#}"
    );
    assert_eq!(limits["secondary"]["usedPercent"], 13, "{limits:#}");
    assert_eq!(limits["source"], "account/rateLimits/updated");
    // Set only while in the future: it clears on its own once the window resets.
    if baa::common::time::now_ms() / 1000 < reset {
        assert_eq!(limits["blockedUntil"], want.as_str(), "{limits:#}");
    }
    wait_for(T, || {
        status_snapshot(&d)["limits"]["blockedUntil"]
            .is_null()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("still blocked: {:#}", status_snapshot(&d)["limits"]));
}

/// A child that cannot list models (the stub answers `model/list` with "unknown variant")
/// must not block creates: they go on unchecked, and the log says so.
#[test]
fn model_list_failure_lets_creates_through_with_a_log_line() {
    let tmp = TempDir::new("codexd-models-stub");
    let d = start_running(with_stub(&Dirs::under(&tmp.child("root")), "normal"));
    let s = create_session(&d, json!({"model": "anything-goes"}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = post(
        &d.url("/v1/codexd/turn"),
        &json!({"sessionId": sid, "input": "hi", "effort": "whatever"}),
    )
    .expect(202)["data"]["turnId"]
        .as_str()
        .unwrap()
        .to_string();
    wait_turn_done(&d, &sid, &tid, T);
    wait_for(T, || {
        d.log()
            .contains("model/list is not available")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no log line about model/list:\n{}", d.log()));
    get(&d.url("/v1/codexd/models")).expect_error(400, "app_server_rejected");
}

/// The stub's `limit:SECS` turn feeds `account/rateLimits/updated` as the real child does.
#[test]
fn stub_rate_limit_update_sets_blocked_until_for_its_window() {
    let tmp = TempDir::new("codexd-limits-stub");
    let d = start_running(with_stub(&Dirs::under(&tmp.child("root")), "normal"));
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "limit:2");
    wait_turn_done(&d, &sid, &tid, T);
    let blocked = wait_for(T, || {
        let l = status_snapshot(&d)["limits"].clone();
        l["blockedUntil"].is_string().then_some(l)
    })
    .unwrap_or_else(|| panic!("never blocked: {:#}", status_snapshot(&d)["limits"]));
    assert_eq!(blocked["primary"]["usedPercent"], 100, "{blocked:#}");
    wait_for(T, || {
        status_snapshot(&d)["limits"]["blockedUntil"]
            .is_null()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("still blocked: {:#}", status_snapshot(&d)["limits"]));
}

/// Issue 19: `blockedUntil` was held in memory only, so a restarted codexd forgot that the
/// account is rate-limited. It is persisted (daemon-state.json `limitsHold`) and read back:
/// the restarted codexd reports the same hold, and its reason, until the reset time.
#[test]
fn stub_codexd_restart_keeps_the_rate_limit_hold_until_its_reset() {
    let tmp = TempDir::new("codexd-limits-restart");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start_running(with_stub(&dirs, "normal"));
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "limit:6");
    wait_turn_done(&d, &sid, &tid, T);
    let before = wait_for(T, || {
        let l = status_snapshot(&d)["limits"].clone();
        l["blockedUntil"].is_string().then_some(l)
    })
    .unwrap_or_else(|| panic!("never blocked: {:#}", status_snapshot(&d)["limits"]));
    assert_eq!(before["blockedReason"], "primary rate-limit window used up");
    assert_eq!(before["blockedRestored"], false, "{before:#}");
    let state = std::fs::read_to_string(dirs.state.join("daemon-state.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state["limitsHold"]["blockedUntil"], before["blockedUntil"],
        "persisted when it changed: {state:#}"
    );
    d.terminate(T);
    let d = start_running(with_stub(&dirs, "normal"));
    let after = status_snapshot(&d)["limits"].clone();
    assert_eq!(after["blockedUntil"], before["blockedUntil"], "{after:#}");
    assert_eq!(after["blockedReason"], before["blockedReason"], "{after:#}");
    assert_eq!(after["blockedRestored"], true, "{after:#}");
    let events = status_snapshot(&d)["recentEvents"].to_string();
    assert!(events.contains("limits.restored"), "no event: {events}");
    // It ends by itself at the reset time.
    wait_for(T, || {
        status_snapshot(&d)["limits"]["blockedUntil"]
            .is_null()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("still blocked: {:#}", status_snapshot(&d)["limits"]));
}
