//! The route table's answers that need no socket and no daemon, driven in process through
//! `Request::fake` (as rouille's `Request::fake_http`): 404/405, bad queries and bodies,
//! the Host and Origin guards, and the host-op token. An [`App`] on its own temp dirs,
//! leader of its lease, answers as if bound to 127.0.0.1:4317; nothing listens.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use baa::common::http::{Reply, Request, Response};
use baa::common::store::JsonStore;

use crate::app::App;
use crate::lease::Lease;
use crate::routes;
use crate::schedules::store::ScheduleStore;
use crate::tasks::store::TaskStore;

mod mcp;
mod review;

const TOKEN: &str = "unit-token-0123456789abcdef";
const HOST: &str = "127.0.0.1:4317";

/// An app on a fresh temp dir (removed on drop).
struct Fixture {
    app: Arc<App>,
    dir: PathBuf,
}

impl Fixture {
    /// With the test token and `flags` (long names without `--`).
    fn new(flags: &[(&'static str, &str)]) -> Fixture {
        Self::with_token(Some(TOKEN), flags)
    }

    fn with_token(token: Option<&str>, flags: &[(&'static str, &str)]) -> Fixture {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "baa-conductor-routes-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let sub = |name: &str| dir.join(name).display().to_string();
        let dirs = [
            ("state-dir", sub("state")),
            ("logs-dir", sub("logs")),
            ("runs-dir", sub("runs")),
            ("worktrees-dir", sub("worktrees")),
            ("tmp-dir", sub("tmp")),
        ];
        let mut all: Vec<(&'static str, &str)> =
            dirs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(t) = token {
            all.push(("shared-token", t));
        }
        all.extend_from_slice(flags);
        let cfg = crate::config::for_test(&all);
        let store = Arc::new(JsonStore::open(&cfg.state_dir).expect("state dir"));
        let tasks =
            Arc::new(TaskStore::open(&cfg.state_dir, cfg.task_retention).expect("task store"));
        let lease = Arc::new(Lease::new(&cfg));
        lease.tick(&store);
        let bound = HOST.parse().expect("socket addr");
        let schedules = ScheduleStore::open(&cfg.state_dir).expect("schedule store");
        let app = Arc::new(App::new(cfg, bound, store, lease, tasks, schedules));
        assert!(
            app.lease.status().is_leader,
            "the fixture is not the leader"
        );
        Fixture { app, dir }
    }

    /// `method target` with a loopback Host, `headers` and `body`.
    fn call(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut all = vec![("Host", HOST)];
        all.extend_from_slice(headers);
        self.send(&Request::fake(method, target, &all, body))
    }

    fn get(&self, target: &str) -> Response {
        self.call("GET", target, &[], b"")
    }

    fn post(&self, target: &str, body: &Value) -> Response {
        self.call("POST", target, &[], body.to_string().as_bytes())
    }

    fn send(&self, req: &Request) -> Response {
        match routes::handle(&self.app, req) {
            Reply::Http(r) => r,
            _ => panic!("{} {}: not a plain HTTP reply", req.method, req.path),
        }
    }

    /// `GET /v1/system/state` data.
    fn state(&self) -> Value {
        expect(&self.get("/v1/system/state"), 200)["data"].clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

/// Asserts the status; returns the JSON body.
#[track_caller]
fn expect(r: &Response, status: u16) -> Value {
    let v = body(r);
    assert_eq!(r.status, status, "{v}");
    v
}

/// Asserts an error envelope with this status and code; returns it.
#[track_caller]
fn expect_error(r: &Response, status: u16, code: &str) -> Value {
    let v = expect(r, status);
    assert_eq!(
        (&v["ok"], &v["error"]),
        (&json!(false), &json!(code)),
        "{v}"
    );
    assert!(v["message"].is_string(), "{v}");
    v
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let f = Fixture::new(&[]);
    let e = expect_error(&f.get("/v1/nope"), 404, "not_found");
    assert!(
        e["request_id"].is_string() && e["details"].is_object(),
        "{e}"
    );
    let r = f.call("DELETE", "/v1/system/state", &[], b"");
    expect_error(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET"));
    let r = f.get("/v1/system/pause");
    expect_error(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    expect_error(&f.get("/v1/tasks/missing"), 404, "not_found");
    expect_error(&f.get("/v1/runs/missing"), 404, "not_found");
    expect_error(&f.get("/v1/tasks/nope/logs"), 404, "not_found");
}

#[test]
fn bad_list_queries_are_400_invalid_query_naming_the_parameter() {
    let f = Fixture::new(&[]);
    for (target, param) in [
        ("/v1/tasks?limit=0", "limit"),
        ("/v1/tasks?limit=101", "limit"),
        ("/v1/tasks?limit=ten", "limit"),
        ("/v1/tasks?status=bogus", "status"),
        ("/v1/runs?limit=0", "limit"),
        // Checked before the task is looked up: the same answer for any id.
        ("/v1/tasks/nope/logs?since=x", "since"),
        ("/v1/tasks/nope/logs?since=-1", "since"),
        ("/v1/tasks/nope/logs?limit=0", "limit"),
        ("/v1/tasks/nope/logs?limit=501", "limit"),
    ] {
        let v = expect_error(&f.get(target), 400, "invalid_query");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(param), "{target}: {v}");
    }
    expect(&f.get("/v1/tasks?limit=100&status=queued"), 200);
}

#[test]
fn bad_system_changes_are_400_and_change_nothing() {
    let f = Fixture::new(&[]);
    let pause = "/v1/system/pause";
    expect_error(
        &f.post(pause, &json!({"reason": 5})),
        400,
        "invalid_request",
    );
    expect_error(
        &f.call("POST", pause, &[], b"{not json"),
        400,
        "invalid_json",
    );
    expect_error(&f.call("POST", pause, &[], b"[1]"), 400, "invalid_json");
    expect_error(
        &f.post(pause, &json!({"reason": "x".repeat(5000)})),
        400,
        "invalid_request",
    );
    expect_error(
        &f.post("/v1/system/resume", &json!({"interrupt": true})),
        400,
        "invalid_request",
    );
    assert_eq!(f.state()["version"], 0, "a rejected write changed state");
    // A bodiless POST is allowed (curl -X POST).
    let v = expect(&f.call("POST", pause, &[], b""), 200);
    assert_eq!(
        (&v["data"]["mode"], &v["data"]["version"]),
        (&json!("paused"), &json!(1))
    );
}

#[test]
fn foreign_or_missing_host_headers_are_refused_before_routing() {
    let f = Fixture::new(&[]);
    for host in [
        "evil.example:1",
        "127.0.0.1.nip.io:4317",
        "localhost6:4317",
        "mini.local:4317",
        "127.0.0.1:1",
    ] {
        for (method, path) in [
            ("GET", "/healthz"),
            ("GET", "/v1/system/state"),
            ("POST", "/v1/system/pause"),
            ("POST", "/v1/exec"),
            ("GET", "/ws/firefox"),
            ("OPTIONS", "/v1/exec"),
            ("DELETE", "/v1/system/state"),
        ] {
            let req = Request::fake(method, path, &[("Host", host)], b"");
            let r = f.send(&req);
            let text = String::from_utf8_lossy(&r.body).into_owned();
            assert_eq!(r.status, 403, "{method} {path} Host {host}: {text}");
            assert!(text.contains("\"forbidden_host\""), "{text}");
            assert!(
                !text.contains(host),
                "the rejected Host must not be echoed: {text}"
            );
        }
    }
    let r = f.send(&Request::fake("GET", "/healthz", &[], b""));
    assert_eq!(r.status, 403, "a missing Host header");
    for host in ["localhost:4317", "127.0.0.1:4317"] {
        let r = f.send(&Request::fake("GET", "/healthz", &[("Host", host)], b""));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, b"ok\n".as_slice()),
            "Host {host}"
        );
    }
    assert_eq!(f.state()["version"], 0, "no side effects");
}

#[test]
fn browser_origins_are_refused_on_rest_routes_without_cors_headers() {
    let f = Fixture::new(&[]);
    for origin in [
        "https://evil.example",
        "null",
        "moz-extension://someone-else",
        "http://127.0.0.1:1",
    ] {
        let r = f.call("GET", "/v1/system/state", &[("Origin", origin)], b"");
        expect_error(&r, 403, "forbidden_origin");
        assert!(
            r.headers
                .iter()
                .all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-")),
            "CORS header sent: {:?}",
            r.headers
        );
        let r = f.call(
            "POST",
            "/v1/system/pause",
            &[("Origin", origin)],
            br#"{"reason": "csrf"}"#,
        );
        expect_error(&r, 403, "forbidden_origin");
    }
    let st = f.state();
    assert_eq!(
        (&st["mode"], &st["version"]),
        (&json!("running"), &json!(0)),
        "a refused POST changed state"
    );
}

#[test]
fn host_ops_need_the_bearer_token_and_are_closed_without_one() {
    let f = Fixture::new(&[]);
    let body = json!({"command": "echo hi"}).to_string();
    for path in ["/v1/exec", "/v1/files/read", "/v1/files/write"] {
        let r = f.call("POST", path, &[], body.as_bytes());
        expect_error(&r, 401, "unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"baa-conductor-host-ops\""),
            "{path}"
        );
        for wrong in ["Bearer wrong-token-0123456789abcdef", TOKEN] {
            let r = f.call("POST", path, &[("Authorization", wrong)], body.as_bytes());
            expect_error(&r, 401, "unauthorized");
        }
    }
    let auth = format!("Bearer {TOKEN}");
    let ok = expect(
        &f.call(
            "POST",
            "/v1/exec",
            &[("Authorization", &auth)],
            body.as_bytes(),
        ),
        200,
    )["data"]
        .clone();
    assert_eq!(
        (&ok["ok"], &ok["operation"], &ok["result"]["stdout"]),
        (&json!(true), &json!("exec"), &json!("hi\n")),
        "{ok}"
    );

    // No token configured: closed (503), never open.
    let none = Fixture::with_token(None, &[]);
    let r = none.call(
        "POST",
        "/v1/exec",
        &[("Authorization", "Bearer anything")],
        body.as_bytes(),
    );
    expect_error(&r, 503, "host_ops_disabled");
    // The placeholder is refused and flagged.
    let placeholder = Fixture::with_token(Some("replace-me"), &[]);
    let r = placeholder.call(
        "POST",
        "/v1/exec",
        &[("Authorization", "Bearer replace-me")],
        body.as_bytes(),
    );
    expect_error(&r, 503, "host_ops_disabled");
    let rt = expect(&placeholder.get("/v1/runtime"), 200)["data"].clone();
    assert_eq!(rt["controlApi"]["usesPlaceholderToken"], true, "{rt}");
    assert!(rt["warnings"].to_string().contains("placeholder"), "{rt}");
}
