//! The conductor's `/v1/codex*` proxy against a stub codexd started in the test: body
//! whitelists (and the dropped fields they name), status reshaping, the model list, error
//! mapping, and codexd going away and coming back.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::conductor;
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::{get, post};
use crate::support::stub::{json as reply, Stub};
use crate::support::tmp::TempDir;

fn codexd_stub(addr: &str) -> Stub {
    Stub::start(addr, |req| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/codexd/status") => reply(
            200,
            json!({"ok": true, "data": {
            "service": {"configuredBaseUrl": "x", "eventStreamPath": "/v1/codexd/events", "eventStreamUrl": "ws://127.0.0.1:9/v1/codexd/events", "listening": true, "resolvedBaseUrl": "http://127.0.0.1:9", "websocketClients": 2},
            "snapshot": {
                "identity": {"daemonId": "codexd-1", "nodeId": "mini-main", "repoRoot": "/r", "version": "0.1.0"},
                "daemon": {"started": true, "startedAt": "2026-11-21T00:00:00.000Z", "updatedAt": "2026-11-21T00:00:01.000Z", "mode": "app-server",
                    "child": {"endpoint": "stdio://codex-app-server", "lastError": null, "pid": 4242, "status": "running", "strategy": "spawn"}},
                "codex": {"version": "0.169.0", "runningVersion": "0.169.0", "cliVersion": "codex-cli 0.169.0", "userAgent": "codexd/0.169.0 (x)", "experimentalApi": false, "modelCheck": "catalog"},
                "account": {"loggedIn": true, "plan": "plus", "type": "chatgpt", "authRequired": true, "checkedAt": "2026-11-21T00:00:04.000Z", "error": null},
                "limits": {"primary": {"usedPercent": 100, "resetsAt": "2026-11-21T05:00:00.000Z", "windowMinutes": 300}, "secondary": null, "blockedUntil": "2026-11-21T05:00:00.000Z", "updatedAt": "2026-11-21T00:00:05.000Z", "error": null},
                "sessionRegistry": {"updatedAt": "2026-11-21T00:00:02.000Z", "sessions": [{"sessionId": "s1", "status": "active"}, {"sessionId": "s2", "status": "closed"}]},
                "recentEvents": {"updatedAt": "2026-11-21T00:00:03.000Z", "events": [{"seq": 1}, {"seq": 2}, {"seq": 3}]}
            }}}),
        ),
        ("GET", "/v1/codexd/sessions") => reply(
            200,
            json!({"ok": true, "data": {"sessions": [{"sessionId": "s1"}]}}),
        ),
        ("GET", "/v1/codexd/sessions/s1") => reply(
            200,
            json!({"ok": true, "data": {"session": {"sessionId": "s1", "lastTurnStatus": "completed"}, "recentEvents": []}}),
        ),
        ("GET", p) if p.starts_with("/v1/codexd/sessions/") => {
            let id = p.trim_start_matches("/v1/codexd/sessions/");
            reply(
                404,
                json!({"ok": false, "error": "not_found", "message": format!("Unknown codexd session \"{id}\"."), "details": {"sessionId": id}}),
            )
        }
        ("POST", "/v1/codexd/sessions") => reply(
            201,
            json!({"ok": true, "data": {"session": {"sessionId": "s9", "purpose": "duplex"}}}),
        ),
        ("POST", "/v1/codexd/turn") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            if body["sessionId"] == "s1" {
                reply(
                    202,
                    json!({"ok": true, "data": {"accepted": true, "session": {"sessionId": "s1"}, "turnId": "turn-1"}}),
                )
            } else {
                reply(
                    404,
                    json!({"ok": false, "error": "not_found", "message": "Unknown codexd session.", "details": {}}),
                )
            }
        }
        ("GET", "/v1/codexd/models") => reply(
            200,
            json!({"ok": true, "data": {"count": 1, "models": [{"id": "gpt-5.5", "reasoningEfforts": ["low", "high"]}]}}),
        ),
        ("POST", "/v1/codexd/turn/interrupt") => {
            reply(200, json!({"ok": true, "data": {"interrupted": true}}))
        }
        _ => reply(
            500,
            json!({"ok": false, "error": "boom", "message": "stub has no such route"}),
        ),
    })
}

fn conductor_for(dir: &TempDir, base: &str) -> Daemon {
    conductor::spawn(dir, "mini-main", "primary")
        .args(["--codexd-local-api", base])
        .start()
}

#[test]
fn codex_proxy_reshapes_and_whitelists() {
    let stub = codexd_stub("127.0.0.1:0");
    let dir = TempDir::new("proxy");
    let c = conductor_for(&dir, &format!("{}/", stub.base));

    let s = get(&c.url("/v1/codex")).expect(200)["data"].clone();
    assert_eq!(s["backend"], "independent_codexd");
    assert_eq!(s["daemon"]["daemon_id"], "codexd-1");
    assert_eq!(
        s["daemon"]["child"],
        json!({"endpoint": "stdio://codex-app-server", "last_error": null, "pid": 4242, "status": "running", "strategy": "spawn"})
    );
    assert_eq!(
        s["proxy"],
        json!({"route_prefix": "/v1/codex", "target_base_url": stub.base, "transport": "local_http"})
    );
    assert_eq!(
        s["recent_events"],
        json!({"count": 3, "updated_at": "2026-11-21T00:00:03.000Z"})
    );
    assert_eq!(
        s["sessions"],
        json!({"active_count": 1, "count": 2, "updated_at": "2026-11-21T00:00:02.000Z"})
    );
    assert_eq!(s["service"]["websocket_clients"], 2);
    assert_eq!(
        s["surface"],
        json!(["status", "sessions", "turn", "models"])
    );
    assert_eq!(
        (&s["codex"]["version"], &s["codex"]["cli_version"]),
        (&json!("0.169.0"), &json!("codex-cli 0.169.0"))
    );
    assert_eq!(
        (&s["account"]["logged_in"], &s["account"]["plan"]),
        (&json!(true), &json!("plus"))
    );
    assert_eq!(
        s["limits"]["primary"],
        json!({"used_percent": 100, "resets_at": "2026-11-21T05:00:00.000Z", "window_minutes": 300})
    );
    assert_eq!(s["limits"]["blocked_until"], "2026-11-21T05:00:00.000Z");
    assert!(!s.to_string().contains("/v1/codex/runs"), "{s}");

    assert_eq!(
        get(&c.url("/v1/codex/sessions")).expect(200)["data"]["sessions"][0]["sessionId"],
        "s1"
    );
    assert_eq!(
        get(&c.url("/v1/codex/sessions/s1")).expect(200)["data"]["session"]["lastTurnStatus"],
        "completed"
    );
    let nf = get(&c.url("/v1/codex/sessions/nope")).expect_error(404, "not_found");
    assert_eq!(nf["message"], "Unknown codexd session \"nope\".");
    assert_eq!(nf["details"]["upstream_error"], "not_found");

    let created = post(&c.url("/v1/codex/sessions"), &json!({"cwd": "/w", "purpose": "duplex", "model": "m", "approval_policy": "never", "env": {"SECRET": "x"}, "command": "rm -rf /"})).expect(201)["data"].clone();
    assert_eq!(created["session"]["sessionId"], "s9");
    assert_eq!(
        created["dropped_fields"],
        json!(["command", "env"]),
        "{created}"
    );
    assert_eq!(
        stub.last("/v1/codexd/sessions").unwrap().body,
        json!({"cwd": "/w", "purpose": "duplex", "model": "m", "approvalPolicy": "never"})
    );

    let turn = post(
        &c.url("/v1/codex/turn"),
        &json!({"session_id": "s1", "prompt": "hello", "bogus": true}),
    )
    .expect(202)["data"]
        .clone();
    assert_eq!(
        (turn["accepted"].clone(), turn["turnId"].clone()),
        (json!(true), json!("turn-1"))
    );
    assert_eq!(turn["dropped_fields"], json!(["bogus"]), "{turn}");
    assert_eq!(
        stub.last("/v1/codexd/turn").unwrap().body,
        json!({"sessionId": "s1", "input": "hello"})
    );

    post(
        &c.url("/v1/codex/turn/interrupt"),
        &json!({"sessionId": "s1", "extra": 1}),
    )
    .expect(200);
    assert_eq!(
        stub.last("/v1/codexd/turn/interrupt").unwrap().body,
        json!({"sessionId": "s1"})
    );

    // An error names the dropped fields too.
    let e = post(
        &c.url("/v1/codex/turn"),
        &json!({"sessionId": "gone", "input": "x", "temperature": 2}),
    )
    .expect_error(404, "not_found");
    assert_eq!(
        e["details"]["dropped_fields"],
        json!(["temperature"]),
        "{e}"
    );
    // A clean body gets no dropped_fields at all.
    let clean = post(
        &c.url("/v1/codex/turn"),
        &json!({"sessionId": "s1", "input": "x"}),
    )
    .expect(202);
    assert!(clean["data"].get("dropped_fields").is_none(), "{clean}");

    // The model list, with only its two query parameters passed on.
    let m = get(&c.url("/v1/codex/models?include_hidden=true&refresh=1&evil=x")).expect(200);
    assert_eq!(m["data"]["models"][0]["id"], "gpt-5.5", "{m}");
    assert_eq!(
        stub.last("/v1/codexd/models").unwrap().query,
        "includeHidden=true&refresh=1"
    );

    let d = get(&c.url("/describe")).expect(200)["data"]["codex"].clone();
    assert_eq!(
        (d["enabled"].clone(), d["target_base_url"].clone()),
        (json!(true), json!(stub.base))
    );
}

/// The proxy used to whitelist only the SPEC §4.3 fields, so codexd's own session settings
/// (`approvalTimeoutMs`, `approvalDefault`) and experimental turn fields never arrived.
#[test]
fn proxy_dropped_codexd_approval_settings_without_a_word() {
    let stub = codexd_stub("127.0.0.1:0");
    let dir = TempDir::new("proxy-approval-fields");
    let c = conductor_for(&dir, &stub.base);
    let created = post(
        &c.url("/v1/codex/sessions"),
        &json!({"purpose": "worker", "approval_timeout_ms": 1500, "approvalDefault": "accept", "permissions": {"x": 1}}),
    )
    .expect(201)["data"]
        .clone();
    assert_eq!(
        stub.last("/v1/codexd/sessions").unwrap().body,
        json!({"purpose": "worker", "approvalTimeoutMs": 1500, "approvalDefault": "accept", "permissions": {"x": 1}})
    );
    assert!(created.get("dropped_fields").is_none(), "{created}");
    post(
        &c.url("/v1/codex/turn"),
        &json!({"sessionId": "s1", "input": "x", "collaborationMode": {"mode": "plan"}, "additional_context": "y"}),
    )
    .expect(202);
    assert_eq!(
        stub.last("/v1/codexd/turn").unwrap().body,
        json!({"sessionId": "s1", "input": "x", "collaborationMode": {"mode": "plan"}, "additionalContext": "y"})
    );
}

#[test]
fn codex_proxy_maps_upstream_failures() {
    // Non-JSON and non-envelope answers.
    let junk = Stub::start("127.0.0.1:0", |req| match req.path.as_str() {
        "/v1/codexd/status" => baa::common::http::Response::text(200, "<html>proxy error</html>"),
        "/v1/codexd/sessions" => reply(200, json!({"sessions": []})),
        _ => baa::common::http::Response::text(503, "busy"),
    });
    let dir = TempDir::new("proxy-junk");
    let c = conductor_for(&dir, &junk.base);
    get(&c.url("/v1/codex")).expect_error(502, "codexd_invalid_response");
    get(&c.url("/v1/codex/sessions")).expect_error(502, "codexd_invalid_response");
    get(&c.url("/v1/codex/sessions/x")).expect_error(502, "codexd_invalid_response");

    // Not configured.
    let c2 = conductor::start("proxy-none");
    let e = get(&c2.url("/v1/codex")).expect_error(503, "codexd_not_configured");
    assert_eq!(e["details"]["env_var"], "BAA_CODEXD_LOCAL_API_BASE");
    post(
        &c2.url("/v1/codex/turn"),
        &json!({"sessionId": "s1", "input": "x"}),
    )
    .expect_error(503, "codexd_not_configured");

    // Wedged: accepts connections but never answers → a bounded 504, not a hung thread.
    let wedged = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", wedged.local_addr().unwrap());
    let dir3 = TempDir::new("proxy-wedged");
    let c3 = conductor_for(&dir3, &base);
    let started = Instant::now();
    get(&c3.url("/v1/codex")).expect_error(504, "codexd_timeout");
    let took = started.elapsed();
    println!("wedged codexd answered 504 after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(get(&c3.url("/healthz")).status, 200);
}

#[test]
fn codex_proxy_follows_codexd_going_away_and_coming_back() {
    let mut stub = codexd_stub("127.0.0.1:0");
    let addr = stub.base.trim_start_matches("http://").to_string();
    let dir = TempDir::new("proxy-flip");
    let c = conductor_for(&dir, &stub.base);
    get(&c.url("/v1/codex")).expect(200);
    stub.stop();
    let e = get(&c.url("/v1/codex")).expect_error(503, "codexd_unavailable");
    assert_eq!(
        e["message"],
        format!("Independent codexd is unavailable at {}.", stub.base)
    );
    assert!(!e.to_string().to_lowercase().contains("bridge"), "{e}");
    assert_eq!(e["details"]["upstream_path"], "/v1/codexd/status");
    post(&c.url("/v1/codex/sessions"), &json!({})).expect_error(503, "codexd_unavailable");
    assert_eq!(
        get(&c.url("/describe")).status,
        200,
        "describe must not depend on codexd"
    );
    // Same port again: no conductor restart needed.
    let back = wait_for(Duration::from_secs(5), || {
        std::panic::catch_unwind(|| codexd_stub(&addr)).ok()
    })
    .expect("rebind stub");
    let s: Value = get(&c.url("/v1/codex")).expect(200);
    assert_eq!(s["data"]["daemon"]["child"]["status"], "running");
    drop(back);
}

#[test]
fn codex_proxy_forwards_turns_threads_review_and_the_session_lifecycle() {
    let stub = Stub::start("127.0.0.1:0", |req| {
        let ok = |status, data: Value| reply(status, json!({"ok": true, "data": data}));
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/codexd/sessions/s%201/turns") => {
                ok(200, json!({"turns": [], "nextCursor": null}))
            }
            ("GET", "/v1/codexd/threads") => ok(200, json!({"threads": [], "nextCursor": null})),
            ("POST", "/v1/codexd/review") => ok(202, json!({"accepted": true, "turnId": "rv-1"})),
            ("DELETE", "/v1/codexd/sessions/s1") => ok(200, json!({"deleted": true})),
            ("DELETE", "/v1/codexd/sessions/busy") => reply(
                409,
                json!({"ok": false, "error": "turn_running", "message": "Session \"busy\" is running turn t; wait for it to end or interrupt it first."}),
            ),
            ("POST", "/v1/codexd/sessions/s1/compact") => {
                ok(202, json!({"accepted": true, "turnId": "c-1"}))
            }
            ("POST", "/v1/codexd/sessions/s1/fork") => {
                ok(201, json!({"session": {"sessionId": "s2"}}))
            }
            _ => reply(
                500,
                json!({"ok": false, "error": "boom", "message": "stub has no such route"}),
            ),
        }
    });
    let dir = TempDir::new("proxy-history");
    let c = conductor_for(&dir, &stub.base);
    let client = crate::support::http::Client::new();

    get(&c.url("/v1/codex/sessions/s%201/turns?limit=5&cursor=a%2Fb&bogus=1")).expect(200);
    let seen = stub.last("/v1/codexd/sessions/s%201/turns").unwrap();
    assert_eq!(seen.query, "limit=5&cursor=a%2Fb");
    get(&c.url("/v1/codex/threads?cwd=%2Fw%20x&search=walrus&archived=true&x=1")).expect(200);
    assert_eq!(
        stub.last("/v1/codexd/threads").unwrap().query,
        "cwd=%2Fw%20x&search=walrus&archived=true"
    );
    get(&c.url("/v1/codex/threads")).expect(200);
    assert_eq!(stub.last("/v1/codexd/threads").unwrap().query, "");

    let r = post(
        &c.url("/v1/codex/review"),
        &json!({"session_id": "s1", "target": {"baseBranch": "main"}, "env": {"A": "b"}}),
    )
    .expect(202);
    assert_eq!(r["data"]["turnId"], "rv-1");
    assert_eq!(
        stub.last("/v1/codexd/review").unwrap().body,
        json!({"sessionId": "s1", "target": {"baseBranch": "main"}})
    );

    assert_eq!(
        client
            .request("DELETE", &c.url("/v1/codex/sessions/s1"))
            .expect(200)["data"]["deleted"],
        true
    );
    let busy = client
        .request("DELETE", &c.url("/v1/codex/sessions/busy"))
        .expect_error(409, "turn_running");
    assert_eq!(busy["details"]["upstream_status"], 409, "{busy}");

    post(&c.url("/v1/codex/sessions/s1/compact"), &json!({"x": 1})).expect(202);
    assert_eq!(
        stub.last("/v1/codexd/sessions/s1/compact").unwrap().body,
        json!({})
    );
    let f = post(
        &c.url("/v1/codex/sessions/s1/fork"),
        &json!({"last_turn_id": "t1", "purpose": "worker", "command": "rm -rf /"}),
    )
    .expect(201);
    assert_eq!(f["data"]["session"]["sessionId"], "s2");
    assert_eq!(
        stub.last("/v1/codexd/sessions/s1/fork").unwrap().body,
        json!({"lastTurnId": "t1", "purpose": "worker"})
    );

    // Listed on the business surface with ready curls.
    let business = get(&c.url("/describe/business")).expect(200)["data"].to_string();
    for path in [
        "/v1/codex/sessions/:session_id/turns",
        "/v1/codex/threads",
        "/v1/codex/review",
        "/v1/codex/sessions/:session_id/compact",
        "/v1/codex/sessions/:session_id/fork",
    ] {
        assert!(business.contains(path), "{path} not on /describe/business");
    }
    let caps = get(&c.url("/v1/capabilities")).expect(200)["data"].clone();
    let delete_listed = caps["write_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["method"] == "DELETE" && r["path"] == "/v1/codex/sessions/:session_id");
    assert!(delete_listed, "{caps:#}");
}
