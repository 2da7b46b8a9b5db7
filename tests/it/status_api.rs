//! baa-status-api driven as a real process against stub upstreams started in the test:
//! the aggregate and the page for a paused node, dead and wedged peers, the read-only
//! surface, the Host/Origin guards and the startup refusal of public listen addresses.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::daemon::STATUS_API;
use crate::support::http::{get, get_h, request};
use crate::support::status_api::start as status_api;
use crate::support::stub::{json as reply, Stub};

/// A stub upstream answering fixed JSON per path (404 envelope otherwise).
fn stub(routes: Vec<(&'static str, Value)>) -> Stub {
    Stub::start("127.0.0.1:0", move |req| {
        match routes.iter().find(|(p, _)| *p == req.path) {
            Some((_, body)) => reply(200, body.clone()),
            None => reply(
                404,
                json!({"ok": false, "error": "not_found", "message": "no such stub route"}),
            ),
        }
    })
}

fn conductor_stub() -> Stub {
    stub(vec![
        (
            "/v1/runtime",
            json!({"ok": true, "request_id": "req_1", "data": {
                "identity": "mini-main@mini(primary)",
                "controlApi": {"baseUrl": "https://conductor.makefile.so", "localApiBase": "http://127.0.0.1:4317",
                    "hasSharedToken": true, "usesPlaceholderToken": false},
                "codexd": {"localApiBase": "http://127.0.0.1:4319"},
                "daemon": {"nodeId": "mini-main", "host": "mini", "role": "primary",
                    "leaseState": "leader", "schedulerEnabled": true},
                "runtime": {"pid": 4242, "started": true, "startedAt": "2026-05-01T10:00:00.000Z"},
                "warnings": []
            }}),
        ),
        (
            "/v1/system/state",
            json!({"ok": true, "request_id": "req_2", "data": {
                "mode": "paused", "holder_id": "mini-main", "updated_at": "2026-05-01T11:30:00.000Z",
                "requested_by": "alice-cli", "reason": "deploy window <script>alert(1)</script>",
                "version": 7
            }}),
        ),
    ])
}

fn codexd_stub() -> Stub {
    stub(vec![(
        "/v1/codexd/status",
        json!({"ok": true, "data": {
            "service": {"configuredBaseUrl": "http://127.0.0.1:4319", "eventStreamPath": "/v1/codexd/events",
                "listening": true, "resolvedBaseUrl": "http://127.0.0.1:4319", "websocketClients": 0},
            "snapshot": {
                "identity": {"daemonId": "codexd-mini", "nodeId": "mini-main", "repoRoot": "/Users/me/baa", "version": "0.1.0"},
                "daemon": {"started": true, "startedAt": "2026-05-01T10:00:02.000Z", "updatedAt": "2026-05-01T11:59:00.000Z",
                    "mode": "app-server",
                    "child": {"endpoint": "stdio://codex-app-server", "lastError": null, "pid": 31337,
                        "status": "running", "strategy": "spawn", "restarts": 1}},
                "sessionRegistry": {"updatedAt": "2026-05-01T11:58:00.000Z", "sessions": [
                    {"sessionId": "sess-alpha", "purpose": "duplex", "status": "active", "threadId": "th-1",
                     "model": "gpt-5-codex", "lastTurnId": "turn-9", "lastTurnStatus": "completed",
                     "updatedAt": "2026-05-01T11:58:00.000Z"}
                ]},
                "recentEvents": {"updatedAt": "2026-05-01T11:58:00.000Z", "events": [
                    {"seq": 41, "createdAt": "2026-05-01T11:57:00.000Z", "level": "info", "type": "turn.started", "message": "turn started", "detail": {}},
                    {"seq": 42, "createdAt": "2026-05-01T11:58:00.000Z", "level": "info", "type": "turn.completed", "message": "turn completed", "detail": {}}
                ]}
            }
        }}),
    )])
}

/// A loopback port with nothing listening.
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

#[test]
fn status_aggregates_paused_conductor_and_running_child() {
    let (c, x) = (conductor_stub(), codexd_stub());
    let d = status_api(&c.base.clone(), &x.base.clone());

    let v = get(&d.url("/v1/status")).expect(200);
    assert_eq!(v["ok"], true, "{v:#}");
    assert!(v["request_id"].is_string(), "{v:#}");
    let data = &v["data"];
    assert_eq!(data["conductor"]["reachable"], true, "{data:#}");
    assert_eq!(data["conductor"]["error"], Value::Null, "{data:#}");
    assert_eq!(data["conductor"]["baseUrl"], c.base.clone());
    assert_eq!(data["conductor"]["systemState"]["mode"], "paused");
    assert_eq!(
        data["conductor"]["runtime"]["identity"],
        "mini-main@mini(primary)"
    );
    assert_eq!(data["node"]["role"], "primary");
    assert_eq!(data["node"]["leaseState"], "leader");
    assert_eq!(data["automation"]["requestedBy"], "alice-cli");
    assert_eq!(data["codexd"]["reachable"], true, "{data:#}");
    assert_eq!(data["codexd"]["child"]["status"], "running");
    assert_eq!(data["codexd"]["child"]["pid"], 31337);
    assert_eq!(data["codexd"]["child"]["restarts"], 1);
    assert_eq!(data["codexd"]["sessions"]["count"], 1);
    assert_eq!(
        data["codexd"]["sessions"]["items"][0]["lastTurnStatus"],
        "completed"
    );
    assert_eq!(data["codexd"]["recentEvents"]["items"][0]["seq"], 42);
    let warnings = data["warnings"].to_string();
    assert!(warnings.contains("automation is paused"), "{warnings}");

    let page = get(&d.url("/"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = &page.body;
    for want in [
        "mini-main@mini(primary)",
        ">paused<",
        "alice-cli",
        ">running<",
        "<dd>31337</dd>",
        "sess-alpha",
        ">completed<",
        "turn.completed",
        "deploy window &lt;script&gt;alert(1)&lt;/script&gt;",
    ] {
        assert!(html.contains(want), "page lacks {want:?}:\n{html}");
    }
    assert!(
        !html.contains("<script>alert"),
        "unescaped upstream text:\n{html}"
    );
}

#[test]
fn status_marks_unreachable_upstreams_and_still_renders() {
    let d = status_api(&closed_port_url(), &closed_port_url());
    let data = get(&d.url("/v1/status")).expect(200)["data"].clone();
    for part in ["conductor", "codexd"] {
        assert_eq!(data[part]["reachable"], false, "{data:#}");
        assert!(
            data[part]["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{data:#}"
        );
    }
    assert_eq!(data["overall"], "down", "{data:#}");
    let page = get(&d.url("/"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">unreachable<"), "{}", page.body);
    assert!(page.body.ends_with("</html>\n"), "{}", page.body);
}

#[test]
fn status_is_bounded_by_a_wedged_upstream() {
    // Bound but never accepted: the kernel completes the handshake, nobody ever answers.
    let wedged = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = conductor_stub();
    let d = status_api(
        &c.base.clone(),
        &format!("http://{}", wedged.local_addr().unwrap()),
    );
    let data = get(&d.url("/v1/status")).expect(200)["data"].clone();
    assert_eq!(data["conductor"]["reachable"], true, "{data:#}");
    assert_eq!(data["codexd"]["reachable"], false, "{data:#}");
    assert!(data["codexd"]["error"].is_string(), "{data:#}");
    assert_eq!(get(&d.url("/")).status, 200);
    drop(wedged);
}

#[test]
fn status_is_read_only() {
    let d = status_api(&closed_port_url(), &closed_port_url());
    for path in ["/", "/v1/status", "/healthz"] {
        for method in ["POST", "PUT", "DELETE"] {
            let r = request(method, &d.url(path));
            r.expect_error(405, "method_not_allowed");
            assert_eq!(r.header("allow"), Some("GET"), "{method} {path}");
        }
    }
    get(&d.url("/v1/nope")).expect_error(404, "not_found");
    let h = get(&d.url("/healthz"));
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
}

#[test]
fn status_refuses_foreign_host_and_origin() {
    let d = status_api(&closed_port_url(), &closed_port_url());
    get_h(&d.url("/"), &[("Host", "evil.example:4318")]).expect_error(403, "forbidden_host");
    get_h(&d.url("/v1/status"), &[("Origin", "https://evil.example")])
        .expect_error(403, "forbidden_origin");
    let same = format!("http://{}", d.addr);
    assert_eq!(get_h(&d.url("/healthz"), &[("Origin", &same)]).status, 200);
}

#[test]
fn status_refuses_public_listen_hosts_with_exit_2() {
    for (flag, env) in [(Some("192.168.1.10"), None), (None, Some("0.0.0.0"))] {
        let mut cmd = Command::new(STATUS_API);
        cmd.stdin(Stdio::null()).env_remove("BAA_STATUS_API_HOST");
        if let Some(h) = flag {
            cmd.args(["--host", h]);
        }
        if let Some(h) = env {
            cmd.env("BAA_STATUS_API_HOST", h);
        }
        let out = cmd.output().expect("run baa-status-api");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag:?} {env:?}: {stderr}");
        assert!(stderr.contains("refusing to listen"), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing announced");
    }
}

#[test]
fn status_help_version_and_graceful_stop() {
    let out = Command::new(STATUS_API).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("BAA_STATUS_API_PORT"), "{help}");
    let out = Command::new(STATUS_API).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("baa-status-api "), "{version}");
    let out = Command::new(STATUS_API).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let mut d = status_api(&closed_port_url(), &closed_port_url());
    assert_eq!(get(&d.url("/healthz")).status, 200);
    let status = d.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
}
