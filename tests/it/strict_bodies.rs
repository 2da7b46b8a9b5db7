//! What the conductor and codexd refuse at the door, and how they say so: a JSON key given
//! twice (in a body or a Firefox bridge frame), nesting too deep to be a real request (through the conductor's `/v1/codex*`
//! proxy and on codexd itself), a relative `cwd`, and the reason phrase on the raw status
//! line of a refused WebSocket upgrade (410 `since_expired`).

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::codexd::*;
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::{get, post, post_raw, raw, Resp};
use crate::support::tasks::{self, TaskConductor};
use crate::support::tmp::TempDir;
use crate::support::ws::connect;

const T: Duration = Duration::from_secs(30);

/// The depth limit of every JSON body (`baa::common::strict_json::MAX_DEPTH`).
const MAX_DEPTH: usize = 64;

/// codexd on its stub child, and a conductor whose proxy and worker point at it.
fn stack(tag: &str) -> (TempDir, Daemon, TaskConductor) {
    let dir = TempDir::new(tag);
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    (dir, codexd, c)
}

/// `{"a": {"a": … 1}}`, `depth` objects deep.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

#[track_caller]
fn post_bytes(url: &str, body: &str) -> Resp {
    post_raw(url, body.as_bytes(), &[])
}

/// A 400 `invalid_json` whose message names `key` and whose details hold it with `path`.
#[track_caller]
fn expect_duplicate(r: &Resp, key: &str, path: &str) {
    let err = r.expect_error(400, "invalid_json");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("\"{key}\"")),
        "message does not name {key}: {err}"
    );
    assert_eq!(err["details"]["duplicate_key"], key, "{err}");
    assert_eq!(err["details"]["path"], path, "{err}");
}

#[test]
fn duplicate_json_keys_get_a_400_naming_the_key_instead_of_the_last_one_winning() {
    let (_dir, codexd, c) = stack("strict-duplicates");
    // conductor: a task body with two titles, or two idempotency keys, queues nothing.
    let tasks_url = c.url("/v1/tasks");
    expect_duplicate(
        &post_bytes(
            &tasks_url,
            r#"{"title": "meant", "prompt": "p", "title": "last"}"#,
        ),
        "title",
        "$.title",
    );
    expect_duplicate(
        &post_bytes(
            &tasks_url,
            r#"{"title": "t", "prompt": "p", "idempotency_key": "k1", "idempotency_key": "k2"}"#,
        ),
        "idempotency_key",
        "$.idempotency_key",
    );
    // Any depth: inside the steps array.
    expect_duplicate(
        &post_bytes(
            &tasks_url,
            r#"{"title": "t", "steps": [{"prompt": "a"}, {"prompt": "b", "prompt": "c"}]}"#,
        ),
        "prompt",
        "$.steps[1].prompt",
    );
    let listed = get(&c.url("/v1/tasks")).expect(200);
    assert_eq!(listed["data"]["tasks"], json!([]), "{listed}");

    // The other conductor bodies are read by the same reader.
    expect_duplicate(
        &post_bytes(
            &c.url("/v1/system/pause"),
            r#"{"reason": "a", "reason": "b"}"#,
        ),
        "reason",
        "$.reason",
    );
    // A Firefox bridge frame naming its action twice is refused, not run as the last one.
    let mut ws = connect(&c.d.addr, "/ws/firefox", &[]).expect("ws connect");
    ws.ws
        .send(tungstenite::Message::text(
            r#"{"type": "action_request", "requestId": "r1", "action": "resume", "action": "pause"}"#,
        ))
        .unwrap();
    let err = ws
        .until(T, |v| v["type"] == "error")
        .expect("an error frame");
    assert_eq!(err["error"], "invalid_json", "{err}");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(msg.contains("\"action\""), "{err}");
    let state = get(&c.url("/v1/system/state")).expect(200);
    assert_eq!(state["data"]["mode"], "running", "{state}");
    // codexd, directly and through the proxy: nothing is created.
    let body = r#"{"purpose": "duplex", "metadata": {"owner": "a", "owner": "b"}}"#;
    expect_duplicate(
        &post_bytes(&codexd.url("/v1/codexd/sessions"), body),
        "owner",
        "$.metadata.owner",
    );
    expect_duplicate(
        &post_bytes(&c.url("/v1/codex/sessions"), body),
        "owner",
        "$.metadata.owner",
    );
    let sessions = get(&codexd.url("/v1/codexd/sessions")).expect(200);
    assert_eq!(sessions["data"]["sessions"], json!([]), "{sessions}");
    // The same body once per key is fine.
    c.create(json!({"title": "meant", "prompt": "p", "idempotency_key": "k1"}));
}

#[test]
fn config_nested_126_deep_is_refused_at_once_not_held_until_a_504() {
    let (_dir, codexd, c) = stack("strict-depth");
    let deep = json!({"purpose": "duplex", "config": nested(126)});
    let urls = [
        codexd.url("/v1/codexd/sessions"),
        c.url("/v1/codex/sessions"),
    ];
    // Before, each of these held a codexd thread until the request timeout (a 504): the
    // app-server could not read a line that deep and never answered. Many at once, from
    // both doors.
    let started = Instant::now();
    let answers: Vec<(String, Resp, Duration)> = thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let url = urls[i % 2].clone();
                let deep = &deep;
                s.spawn(move || {
                    let t = Instant::now();
                    let r = post(&url, deep);
                    (url, r, t.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (url, r, took) in &answers {
        let err = r.expect_error(400, "invalid_json");
        assert_eq!(err["details"]["max_depth"], MAX_DEPTH, "{url}: {err}");
        let msg = err["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&MAX_DEPTH.to_string()), "{url}: {err}");
        let path = err["details"]["path"].as_str().unwrap_or_default();
        assert!(path.starts_with("$.config.a.a"), "{url}: {err}");
        eprintln!("{url}: 400 in {took:?}");
    }
    eprintln!("16 refusals in {:?}", started.elapsed());
    let sessions = get(&codexd.url("/v1/codexd/sessions")).expect(200);
    assert_eq!(sessions["data"]["sessions"], json!([]), "{sessions}");

    // At the limit (the body's object and 63 in `config`) it still reaches the child.
    let fits = json!({"purpose": "duplex", "config": nested(MAX_DEPTH - 1)});
    for url in &urls {
        let r = post(url, &fits).expect(201);
        assert!(r["data"]["session"]["sessionId"].is_string(), "{url}: {r}");
    }
    let over = json!({"purpose": "duplex", "config": nested(MAX_DEPTH)});
    for url in &urls {
        post(url, &over).expect_error(400, "invalid_json");
    }
}

/// A 400 `code` whose message and `details.field` name `cwd` (through the proxy, the
/// details are codexd's `upstream_details`).
#[track_caller]
fn expect_cwd_refused(r: &Resp, code: &str) {
    let err = r.expect_error(400, code);
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("cwd must be an absolute path"), "{err}");
    let details = &err["details"];
    let field = details.get("upstream_details").unwrap_or(details)["field"].clone();
    assert_eq!(field, "cwd", "{err}");
}

#[test]
fn codexd_refuses_a_relative_cwd_with_a_400_naming_the_field() {
    let (dir, codexd, c) = stack("strict-cwd");
    let work = dir.child("work");
    std::fs::create_dir_all(&work).unwrap();
    let work = work.display().to_string();
    let api = CodexApi::codexd(&codexd);
    let proxy = CodexApi::conductor(&c.d);

    for rel in ["repo", "./repo", "../repo", "~/repo"] {
        let body = json!({"purpose": "duplex", "cwd": rel});
        expect_cwd_refused(&post(&api.url("/sessions"), &body), "invalid_request");
        expect_cwd_refused(&post(&proxy.url("/sessions"), &body), "invalid_request");
    }
    assert_eq!(api.session_ids(false), Vec::<String>::new());

    // On a session made with an absolute cwd: a turn, a fork and a review may not move
    // it somewhere relative, and the session keeps its cwd.
    let s = api.create_session(json!({"purpose": "duplex", "cwd": work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let turn = json!({"sessionId": sid, "input": "hi", "cwd": "elsewhere"});
    expect_cwd_refused(&post(&api.url("/turn"), &turn), "invalid_request");
    expect_cwd_refused(&post(&proxy.url("/turn"), &turn), "invalid_request");
    expect_cwd_refused(
        &api.fork(&sid, json!({"cwd": "elsewhere"})),
        "invalid_request",
    );
    expect_cwd_refused(
        &api.review(json!({"cwd": "elsewhere", "target": "uncommittedChanges"})),
        "invalid_request",
    );
    expect_cwd_refused(&get(&api.url("/threads?cwd=elsewhere")), "invalid_query");
    let after = api.session(&sid);
    assert_eq!(after["cwd"], work.as_str(), "{after}");
    assert!(after["lastTurnId"].is_null(), "{after}");
    assert_eq!(api.session_ids(false), vec![sid.clone()]);
    // The same turn with an absolute cwd runs.
    let ok = json!({"sessionId": sid, "input": "hi", "cwd": work});
    let accepted = post(&api.url("/turn"), &ok).expect(202);
    assert_eq!(accepted["data"]["accepted"], true, "{accepted}");
}

/// The status line of a raw response: its first line.
fn status_line(resp: &str) -> &str {
    resp.split("\r\n").next().unwrap_or_default()
}

#[test]
fn websocket_410_carries_the_reason_text_gone_not_status() {
    let tmp = TempDir::new("strict-ws-410");
    let dirs = Dirs::under(&tmp.child("root"));
    // A 64 KiB event log keeping one rotated segment: one long turn rotates seq 1 away.
    let d = start_running(
        with_stub(&dirs, "normal")
            .env("BAA_CODEXD_EVENT_LOG_MAX_BYTES", (64 * 1024).to_string())
            .env("BAA_CODEXD_EVENT_LOG_KEEP", "1"),
    );
    let sid = create_session(&d, json!({}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let tid = turn(&d, &sid, "burst:8000");
    wait_turn_done(&d, &sid, &tid, T);
    // Positive sign first: plain GET says the events after 0 are gone.
    wait_for(T, || {
        (get(&d.url("/v1/codexd/events?since=0")).status == 410).then_some(())
    })
    .unwrap_or_else(|| panic!("since=0 never expired\nlog:\n{}", d.log()));

    // `raw` reads until the server closes or `wait` passes; an accepted upgrade stays open.
    let upgrade = |since: &str, wait: Duration| {
        let req = format!(
            "GET /v1/codexd/events{since} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            d.addr
        );
        raw(&d.addr, req.as_bytes(), wait)
    };
    let refused = upgrade("?since=0", Duration::from_secs(10));
    assert_eq!(status_line(&refused), "HTTP/1.1 410 Gone", "{refused}");
    assert!(refused.contains("\"since_expired\""), "{refused}");
    // A plain GET's status line too, and an upgrade that is accepted.
    let plain = raw(
        &d.addr,
        format!(
            "GET /v1/codexd/events?since=0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            d.addr
        )
        .as_bytes(),
        Duration::from_secs(10),
    );
    assert_eq!(status_line(&plain), "HTTP/1.1 410 Gone", "{plain}");
    let accepted = upgrade("", Duration::from_secs(2));
    assert_eq!(
        status_line(&accepted),
        "HTTP/1.1 101 Switching Protocols",
        "{accepted}"
    );
}
