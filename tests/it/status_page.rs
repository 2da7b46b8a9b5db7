//! The status page against a real conductor and a real codexd (its built-in stub child):
//! what it tells an operator when codexd is down or automation is paused (and that the
//! command it prints works), the Tasks card with a running and finished tasks, and an
//! events list without the child's token-usage and rate-limit noise.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{child_status, start_running, with_stub, CodexApi, Dirs};
use crate::support::conductor;
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::{get, post};
use crate::support::status_api;
use crate::support::tasks;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

/// A loopback port with nothing listening.
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn status(d: &Daemon) -> Value {
    get(&d.url("/v1/status")).expect(200)["data"].clone()
}

fn page(d: &Daemon) -> String {
    let p = get(&d.url("/"));
    assert_eq!(p.status, 200, "{}", p.body);
    p.body
}

/// The advice entry whose text starts with `prefix`.
fn advice<'a>(data: &'a Value, prefix: &str) -> &'a Value {
    data["advice"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["text"].as_str().is_some_and(|t| t.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no advice {prefix:?} in {:#}", data["advice"]))
}

#[test]
fn status_page_codexd_down_reads_codexd_unreachable_with_the_command_and_log() {
    let dir = TempDir::new("page-codexd-down");
    let codexd_base = closed_port_url();
    let c = conductor::spawn(&dir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", "replace-me")
        .start();
    let logs = dir.join("node-logs");
    let st = status_api::spawn(&c.base, &codexd_base)
        .args(["--logs-dir", &logs.display().to_string()])
        .start();

    let data = status(&st);
    assert_eq!(data["codexd"]["reachable"], false, "{data:#}");
    let a = advice(&data, "codexd unreachable");
    assert_eq!(a["level"], "error", "{a:#}");
    assert_eq!(
        a["commands"],
        json!([
            "scripts/runtime/status-launchd.sh --service codexd",
            "scripts/runtime/restart-launchd.sh --service codexd"
        ]),
        "{a:#}"
    );
    let log = format!("{}/launchd/so.makefile.baa-codexd.err.log", logs.display());
    assert_eq!(a["log"], log.as_str(), "{a:#}");

    let token = advice(
        &data,
        "conductor: BAA_SHARED_TOKEN is still the placeholder",
    );
    assert_eq!(
        token["commands"],
        json!([
            "(umask 077; openssl rand -hex 32 > ~/.config/baa-conductor/shared-token.txt)",
            "scripts/runtime/restart-launchd.sh --service conductor"
        ]),
        "{token:#}"
    );

    let html = page(&st);
    for want in [
        "<span class=\"badge bad\">codexd unreachable</span>",
        &format!("codexd unreachable at {codexd_base}"),
        "<pre class=\"cmd\">scripts/runtime/status-launchd.sh --service codexd</pre>",
        &format!("Log: <code>{log}</code>"),
        "<div class=\"word\">degraded</div>",
        "codex version unknown",
    ] {
        assert!(html.contains(want), "page lacks {want:?}:\n{html}");
    }
    let lower = html.to_lowercase();
    assert!(
        !lower.contains("codex child</h2><div class=\"big\"><span class=\"badge bad\">unreachable"),
        "codexd down shown as the child being unreachable:\n{html}"
    );
}

#[test]
fn status_page_paused_says_how_to_resume_and_the_command_resumes() {
    let dir = TempDir::new("page-paused");
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    let st = status_api::start(&c.base, &closed_port_url());
    post(
        &c.url("/v1/system/pause"),
        &json!({"requested_by": "alice", "reason": "deploy window"}),
    )
    .expect(200);

    let data = status(&st);
    let a = advice(&data, "automation is paused (by alice: deploy window)");
    let resume = a["commands"][0].as_str().unwrap_or_default().to_string();
    assert!(
        resume.starts_with(&format!("curl -s -X POST {}/v1/system/resume", c.base)),
        "{a:#}"
    );
    let html = page(&st);
    assert!(
        html.contains("automation is paused (by alice: deploy window)"),
        "{html}"
    );
    assert!(html.contains("/v1/system/resume"), "{html}");

    // The command the page prints is the one that resumes.
    let out = Command::new("sh")
        .arg("-c")
        .arg(&resume)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{resume}: {out:?}");
    let mode = wait_for(T, || {
        let m = status(&st)["automation"]["mode"].clone();
        (m == "running").then_some(m)
    });
    assert_eq!(mode, Some(json!("running")), "{:#}", status(&st));
    assert!(
        !status(&st)["advice"].to_string().contains("automation is"),
        "{:#}",
        status(&st)
    );
}

#[test]
fn status_tasks_card_shows_the_running_task_and_the_last_outcomes() {
    let dir = TempDir::new("page-tasks");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    let st = status_api::start(&c.d.base, &codexd.base);

    let ok = c.create(json!({"title": "say hello", "prompt": "hello"}));
    c.wait_status(&ok, "succeeded", T);
    let bad = c.create(json!({"title": "doomed", "prompt": "fail", "max_attempts": 1}));
    c.wait_status(&bad, "failed", T);
    // Ten deltas 3 s apart: running for the rest of the test, canceled at its end.
    let slow = c.create(
        json!({"title": "long one", "steps": [{"prompt": "slow:3000"}, {"prompt": "after"}]}),
    );
    c.wait_status(&slow, "running", T);

    let t = wait_for(T, || {
        let t = status(&st)["tasks"].clone();
        (t["running_tasks"].as_array().map(Vec::len) == Some(1)).then_some(t)
    })
    .unwrap_or_else(|| panic!("no running task in {:#}", status(&st)));
    assert_eq!(t["available"], true, "{t:#}");
    assert_eq!(
        (t["succeeded"].clone(), t["failed"].clone()),
        (json!(1), json!(1)),
        "{t:#}"
    );
    let r = &t["running_tasks"][0];
    assert_eq!(
        (r["title"].clone(), r["step"].clone(), r["steps"].clone()),
        (json!("long one"), json!(1), json!(2)),
        "{t:#}"
    );
    let recent: Vec<(&Value, &Value)> = t["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (&x["title"], &x["status"]))
        .collect();
    assert!(
        recent.contains(&(&json!("say hello"), &json!("succeeded"))),
        "{t:#}"
    );
    assert!(
        recent.contains(&(&json!("doomed"), &json!("failed"))),
        "{t:#}"
    );

    let html = page(&st);
    for want in [
        "<span class=\"badge good\">1 running</span>",
        "<b>long one</b>",
        "step 1 of 2 · running ",
        "<span class=\"badge good\">succeeded</span> <b>say hello</b>",
        "<span class=\"badge bad\">failed</span> <b>doomed</b>",
    ] {
        assert!(html.contains(want), "page lacks {want:?}:\n{html}");
    }
    c.cancel(&slow).expect(200);
    c.wait_status(&slow, "canceled", T);
}

#[test]
fn status_schedules_card_lists_each_schedule_with_its_next_fire() {
    let dir = TempDir::new("page-schedules");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    let st = status_api::start(&c.d.base, &codexd.base);
    let body = json!({"name": "nightly <tests>", "cron": "30 2 * * *", "timezone": "UTC",
                      "task": {"title": "t", "prompt": "p"}});
    let made = crate::support::http::post_h(
        &c.url("/v1/schedules"),
        &body,
        &[("Authorization", &format!("Bearer {}", conductor::TOKEN))],
    )
    .expect(201);
    let id = made["data"]["schedule"]["schedule_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait_for(T, || {
        let s = status(&st)["schedules"].clone();
        (s["count"] == 1).then_some(s)
    })
    .unwrap_or_else(|| panic!("no schedule in {:#}", status(&st)));
    assert_eq!(s["available"], true, "{s:#}");
    assert_eq!(s["schedules"][0]["schedule_id"], id.as_str(), "{s:#}");
    assert!(s["schedules"][0]["next_fire_at"]
        .as_str()
        .unwrap()
        .ends_with(":30:00.000Z"));
    let html = page(&st);
    for want in [
        "<h2>Schedules</h2>",
        "<b>nightly &lt;tests&gt;</b>",
        "<span class=\"mono\">30 2 * * *</span>",
        "never fired",
    ] {
        assert!(html.contains(want), "page lacks {want:?}:\n{html}");
    }
}

#[test]
fn status_tasks_card_says_when_the_conductor_is_unreachable() {
    let st = status_api::start(&closed_port_url(), &closed_port_url());
    let data = status(&st);
    assert_eq!(data["tasks"]["available"], false, "{data:#}");
    let html = page(&st);
    assert!(
        html.contains("conductor unreachable: tasks unknown"),
        "{html}"
    );
}

#[test]
fn status_events_leave_out_token_usage_and_rate_limit_notifications() {
    let dir = TempDir::new("page-events");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let api = CodexApi::codexd(&codexd);
    let sid = api.create_session(json!({"purpose": "duplex"}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    // `limit:` makes the stub send an account/rateLimits/updated; every turn also sends
    // thread/tokenUsage/updated and deltas.
    for input in ["hello", "limit:1"] {
        let turn = api.turn(&sid, input);
        api.wait_turn_done(&sid, &turn, T);
    }
    let st = status_api::start(&closed_port_url(), &codexd.base);
    let ev = wait_for(T, || {
        let ev = status(&st)["codexd"]["recentEvents"].clone();
        let types = ev["items"].to_string();
        (types.contains("turn.completed") && ev["hidden"].as_u64() > Some(0)).then_some(ev)
    })
    .unwrap_or_else(|| panic!("no lifecycle events: {:#}", status(&st)));
    let types: Vec<&str> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.iter().all(|t| t.contains('.') && !t.contains('/')),
        "notifications listed: {types:?}"
    );
    assert!(types.contains(&"session.created"), "{types:?}");
    let html = page(&st);
    assert!(!html.contains("thread/tokenUsage/updated"), "{html}");
    assert!(!html.contains("account/rateLimits/updated"), "{html}");
    assert!(html.contains("notifications not shown"), "{html}");
}

#[test]
fn status_page_crash_loop_offers_the_child_restart_and_the_command_restarts_it() {
    let dir = TempDir::new("page-crash-loop");
    let broken = dir.join("broken");
    std::fs::write(&broken, "while this file exists the stub exits at once").unwrap();
    let codexd = with_stub(
        &Dirs::under(&dir.child("cx")),
        &format!("exit-while:{}", broken.display()),
    )
    .env("BAA_CODEXD_RESTART_BASE_MS", "20")
    .env("BAA_CODEXD_CRASH_LOOP_MAX", "2")
    .start();
    let st = status_api::start(&closed_port_url(), &codexd.base);
    let data = wait_for(T, || {
        let d = status(&st);
        (d["codexd"]["child"]["status"] == "crash_loop").then_some(d)
    })
    .unwrap_or_else(|| panic!("no crash_loop: {:#}", child_status(&codexd)));
    let a = advice(&data, "codex app-server child is in a crash loop");
    assert_eq!(a["level"], "error", "{a:#}");
    let restart = a["commands"][0].as_str().unwrap_or_default().to_string();
    assert_eq!(
        restart,
        format!("curl -s -X POST {}/v1/codexd/child/restart", codexd.base),
        "{a:#}"
    );
    let html = page(&st);
    assert!(
        html.contains(&format!("<pre class=\"cmd\">{restart}</pre>")),
        "{html}"
    );

    // The cause fixed, the printed command brings the child back at once.
    std::fs::remove_file(&broken).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&restart)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{restart}: {out:?}");
    let running = wait_for(T, || {
        let d = status(&st);
        (d["codexd"]["child"]["status"] == "running").then_some(d)
    });
    assert!(running.is_some(), "{:#}", child_status(&codexd));
}

#[test]
fn status_page_waiting_approval_says_how_to_answer_and_the_command_answers() {
    let dir = TempDir::new("page-approval");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    let st = status_api::start(&c.d.base, &codexd.base);
    let id = c.create(json!({"title": "needs a yes", "prompt": "approval"}));

    let data = wait_for(T, || {
        let d = status(&st);
        d["advice"]
            .to_string()
            .contains("waits for an approval")
            .then_some(d)
    })
    .unwrap_or_else(|| panic!("no approval advice: {:#}\n{}", status(&st), c.explain(&id)));
    let a = advice(
        &data,
        "task \"needs a yes\" waits for an approval (command)",
    );
    let answer = a["commands"][0].as_str().unwrap_or_default().to_string();
    assert!(
        answer.contains("/v1/codex/requests/") && answer.contains("shared-token.txt"),
        "{a:#}"
    );
    let html = page(&st);
    assert!(html.contains("waiting for an approval (command)"), "{html}");

    // The printed command, with the token where the install keeps it, answers it.
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".config/baa-conductor")).unwrap();
    std::fs::write(
        home.join(".config/baa-conductor/shared-token.txt"),
        crate::support::conductor::TOKEN,
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&answer)
        .env("HOME", &home)
        .output()
        .expect("run sh");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ok\": true")
            || String::from_utf8_lossy(&out.stdout).contains("\"ok\":true"),
        "{answer}: {out:?}"
    );
    c.wait_status(&id, "succeeded", T);
}
