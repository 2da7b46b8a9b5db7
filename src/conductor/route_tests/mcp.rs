//! `/mcp` in process, through the same entry point as every route (guards included): the
//! JSON-RPC layer's codes, sessions, version negotiation, batches, the tools made from
//! the table and what a call of one returns.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{body, expect, Fixture, HOST, TOKEN};
use crate::mcp::tools::{self, TOOLS};
use crate::routes::ROUTES;
use baa::common::http::router::{self, RouteKind};
use baa::common::http::Response;

const AUTH: (&str, &str) = ("Authorization", "Bearer unit-token-0123456789abcdef");

/// A fixture whose tasks may run in the temp dir (they never start: no codexd).
fn with_tasks() -> Fixture {
    let tmp = std::env::temp_dir().display().to_string();
    Fixture::new(&[("repo-root", &tmp), ("task-roots", &tmp)])
}

impl Fixture {
    fn mcp(&self, session: Option<&str>, headers: &[(&str, &str)], msg: &Value) -> Response {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(s) = session {
            all.push(("Mcp-Session-Id", s));
        }
        self.call("POST", "/mcp", &all, msg.to_string().as_bytes())
    }

    /// A session at `version`; returns its id.
    #[track_caller]
    fn mcp_session(&self, version: &str) -> String {
        let r = self.mcp(None, &[], &init(version));
        let v = expect(&r, 200);
        assert_eq!(v["result"]["protocolVersion"], json!(version), "{v}");
        r.header("mcp-session-id")
            .expect("session header")
            .to_string()
    }
}

fn init(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

fn req(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Asserts a JSON-RPC error with this HTTP status and code; returns the body.
#[track_caller]
fn rpc_error(r: &Response, status: u16, code: i64) -> Value {
    let v = expect(r, status);
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

#[test]
fn every_tool_is_a_listed_route_with_a_unique_name_and_a_schema() {
    let mut names = HashSet::new();
    for spec in TOOLS {
        let route = router::find(ROUTES, spec.route)
            .unwrap_or_else(|| panic!("tool {} names no route", spec.route));
        assert!(route.listed(), "{} is hidden", spec.route);
        assert!(
            names.insert(tools::name(spec.route)),
            "{} twice",
            spec.route
        );
        for a in spec.args {
            let s = a.schema();
            assert!(s["type"].is_string(), "{}.{}: {s}", spec.route, a.name);
        }
    }
    for t in tools::offered(ROUTES, true) {
        let v = t.to_json(true);
        let schema = &v["inputSchema"];
        assert_eq!(schema["type"], "object", "{v}");
        for p in t.path_params() {
            assert!(schema["properties"][p].is_object(), "{v}");
            assert!(
                schema["required"].as_array().unwrap().contains(&json!(p)),
                "{v}"
            );
        }
        assert_eq!(v["outputSchema"]["type"], "object", "{v}");
        assert!(v["name"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        // A write, or a read that shows approvals, says it needs the token.
        let needs = t.route.kind() == RouteKind::Write || t.spec.token;
        assert_eq!(
            v["description"].as_str().unwrap().contains("Bearer"),
            needs,
            "{v}"
        );
    }
    // The design's names.
    for n in [
        "tasks_create",
        "tasks_list",
        "tasks_read",
        "tasks_logs_read",
        "tasks_cancel",
        "tasks_retry",
        "tasks_diff",
        "tasks_summary",
        "system_state",
        "system_pause",
        "system_resume",
        "system_drain",
        "codex_requests_list",
        "codex_requests_answer",
        "codex_sessions_list",
        "codex_sessions_read",
        "probe_runtime",
    ] {
        assert!(names.contains(n), "{n} missing");
    }
}

#[test]
fn initialize_negotiates_and_issues_a_session() {
    let f = Fixture::new(&[]);
    for (asked, got) in [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let r = f.mcp(None, &[], &init(asked));
        let v = expect(&r, 200);
        assert_eq!(v["result"]["protocolVersion"], json!(got), "{asked}: {v}");
        assert_eq!(v["result"]["serverInfo"]["name"], "baa-conductor");
        assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
        assert!(r.header("mcp-session-id").is_some_and(|s| s.len() == 32));
    }
    let r = f.mcp(None, &[], &req(1, "initialize", json!({})));
    rpc_error(&r, 200, -32602);
}

#[test]
fn sessions_are_required_known_and_deletable() {
    let f = Fixture::new(&[]);
    rpc_error(&f.mcp(None, &[], &req(1, "ping", json!({}))), 400, -32000);
    rpc_error(
        &f.mcp(Some("nope"), &[], &req(1, "ping", json!({}))),
        404,
        -32001,
    );
    let s = f.mcp_session("2025-06-18");
    let v = expect(&f.mcp(Some(&s), &[], &req(7, "ping", json!({}))), 200);
    assert_eq!(v, json!({"jsonrpc": "2.0", "id": 7, "result": {}}));
    // Notifications and stray responses: 202, no body.
    let n = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = f.mcp(Some(&s), &[], &n);
    assert_eq!((r.status, r.body.len()), (202, 0));
    let r = f.mcp(
        Some(&s),
        &[],
        &json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
    );
    assert_eq!(r.status, 202);
    let hdr = [("Mcp-Session-Id", s.as_str())];
    assert_eq!(f.call("DELETE", "/mcp", &hdr, b"").status, 200);
    rpc_error(&f.call("DELETE", "/mcp", &hdr, b""), 404, -32001);
    rpc_error(
        &f.mcp(Some(&s), &[], &req(1, "ping", json!({}))),
        404,
        -32001,
    );
    // No stream is offered.
    let r = f.call("GET", "/mcp", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, DELETE")));
}

#[test]
fn the_session_bound_refuses_with_a_clear_error() {
    let f = Fixture::new(&[("mcp-max-sessions", "2")]);
    f.mcp_session("2025-06-18");
    f.mcp_session("2025-06-18");
    let v = rpc_error(&f.mcp(None, &[], &init("2025-06-18")), 503, -32000);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("BAA_MCP_MAX_SESSIONS"),
        "{v}"
    );
}

#[test]
fn malformed_messages_get_the_json_rpc_codes() {
    let f = Fixture::new(&[]);
    let s = f.mcp_session("2025-06-18");
    let raw = |b: &[u8]| f.call("POST", "/mcp", &[("Mcp-Session-Id", s.as_str())], b);
    rpc_error(&raw(b"{not json"), 400, -32700);
    rpc_error(&raw(b""), 400, -32700);
    rpc_error(
        &raw(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
        400,
        -32600,
    );
    rpc_error(
        &raw(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
        400,
        -32600,
    );
    rpc_error(&raw(br#"{"jsonrpc":"2.0","id":1,"method":7}"#), 400, -32600);
    rpc_error(
        &raw(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":3}"#),
        400,
        -32602,
    );
    rpc_error(
        &raw(br#"{"jsonrpc":"2.0","id":1,"method":"nope/nope"}"#),
        200,
        -32601,
    );
    rpc_error(
        &raw(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#),
        200,
        -32602,
    );
    let v = rpc_error(
        &raw(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#),
        200,
        -32602,
    );
    assert_eq!(v["id"], 1);
    rpc_error(
        &raw(br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"http://x"}}"#),
        200,
        -32002,
    );
    // A batch is not part of 2025-06-18.
    let v = rpc_error(
        &raw(format!("[{}]", req(1, "ping", json!({}))).as_bytes()),
        400,
        -32600,
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2025-03-26"),
        "{v}"
    );
    let r = f.mcp(
        Some(&s),
        &[("MCP-Protocol-Version", "1999-01-01")],
        &req(1, "ping", json!({})),
    );
    rpc_error(&r, 400, -32600);
}

#[test]
fn batches_in_2025_03_26_answer_each_request_in_order() {
    let f = Fixture::new(&[]);
    let s = f.mcp_session("2025-03-26");
    let batch = json!([
        req(1, "ping", json!({})),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "1.0", "id": 2, "method": "ping"},
        req(3, "nope", json!({})),
        req(4, "initialize", json!({"protocolVersion": "2025-03-26"})),
        req(5, "tools/list", json!({})),
    ]);
    let v = expect(&f.mcp(Some(&s), &[], &batch), 200);
    let ids: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!(1), json!(2), json!(3), json!(4), json!(5)],
        "{v}"
    );
    assert_eq!(v[1]["error"]["code"], -32600);
    assert_eq!(v[2]["error"]["code"], -32601);
    assert_eq!(v[3]["error"]["code"], -32600);
    // 2025-03-26 has no outputSchema.
    assert!(
        v[4]["result"]["tools"][0].get("outputSchema").is_none(),
        "{v}"
    );
    let only_notes = json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]);
    assert_eq!(f.mcp(Some(&s), &[], &only_notes).status, 202);
    rpc_error(&f.mcp(Some(&s), &[], &json!([])), 400, -32600);
    let big: Vec<Value> = (0..1001).map(|i| req(i, "ping", json!({}))).collect();
    rpc_error(&f.mcp(Some(&s), &[], &Value::Array(big)), 400, -32600);
}

#[test]
fn tools_call_runs_the_route_and_writes_need_the_token() {
    let f = with_tasks();
    let s = f.mcp_session("2025-06-18");
    let call = |headers: &[(&str, &str)], name: &str, args: Value| {
        let r = f.mcp(
            Some(&s),
            headers,
            &req(9, "tools/call", json!({"name": name, "arguments": args})),
        );
        expect(&r, 200)["result"].clone()
    };
    let create = json!({"title": "from mcp", "prompt": "do it"});
    let refused = call(&[], "tasks_create", create.clone());
    assert_eq!(refused["isError"], true, "{refused}");
    let text = refused["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("unauthorized") && text.contains("bearer_token_env_var"),
        "{text}"
    );
    assert_eq!(expect(&f.get("/v1/tasks"), 200)["data"]["count"], 0);
    let wrong = call(
        &[("Authorization", "Bearer nope")],
        "tasks_create",
        create.clone(),
    );
    assert_eq!(wrong["isError"], true, "{wrong}");

    let made = call(&[AUTH], "tasks_create", create);
    assert_eq!(made["isError"], false, "{made}");
    let task = &made["structuredContent"]["task"];
    assert_eq!(task["title"], "from mcp", "{made}");
    let id = task["task_id"].as_str().unwrap();
    let text: Value = serde_json::from_str(made["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text, &made["structuredContent"]);

    // Reads need no token; the path parameter is an argument.
    let read = call(&[], "tasks_read", json!({"task_id": id}));
    assert_eq!(
        read["structuredContent"]["task"]["task_id"],
        json!(id),
        "{read}"
    );
    let listed = call(&[], "tasks_list", json!({"status": "queued", "limit": 5}));
    assert_eq!(listed["structuredContent"]["count"], 1, "{listed}");
    // The route's own refusal, as the model can act on it.
    let bad = call(&[], "tasks_list", json!({"limit": 0}));
    assert_eq!(bad["isError"], true);
    assert!(
        bad["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("invalid_query (HTTP 400)"),
        "{bad}"
    );
    let missing = call(&[], "tasks_read", json!({"task_id": "nope"}));
    assert!(
        missing["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("not_found (HTTP 404)"),
        "{missing}"
    );
    // Wrong argument names and types are refused before the route runs.
    for args in [json!({"limit": "5"}), json!({"colour": "red"})] {
        let r = call(&[], "tasks_list", args);
        assert_eq!(r["isError"], true, "{r}");
        assert!(
            r["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("invalid_arguments"),
            "{r}"
        );
    }
    let r = call(&[], "tasks_read", json!({}));
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("task_id is required"),
        "{r}"
    );
    // A validation error of the body comes from the route.
    let r = call(&[AUTH], "tasks_create", json!({"title": "x"}));
    assert!(
        r["content"][0]["text"].as_str().unwrap().contains("prompt"),
        "{r}"
    );

    let paused = call(
        &[AUTH],
        "system_pause",
        json!({"requested_by": "mcp", "reason": "test"}),
    );
    assert_eq!(paused["structuredContent"]["mode"], "paused", "{paused}");
    assert_eq!(f.state()["mode"], "paused");
}

#[test]
fn without_a_configured_token_writes_say_how_to_set_one() {
    let f = Fixture::with_token(None, &[]);
    let s = f.mcp_session("2025-06-18");
    let r = f.mcp(
        Some(&s),
        &[AUTH],
        &req(
            1,
            "tools/call",
            json!({"name": "system_drain", "arguments": {}}),
        ),
    );
    let v = expect(&r, 200);
    assert_eq!(v["result"]["isError"], true);
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("token_not_configured") && text.contains("BAA_SHARED_TOKEN"),
        "{text}"
    );
}

#[test]
fn host_ops_tools_are_offered_only_when_enabled() {
    let names = |f: &Fixture| -> Vec<String> {
        let s = f.mcp_session("2025-11-25");
        let v = expect(&f.mcp(Some(&s), &[], &req(1, "tools/list", json!({}))), 200);
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let off = Fixture::new(&[]);
    assert!(!names(&off).iter().any(|n| n.starts_with("host_")));
    let s = off.mcp_session("2025-11-25");
    let r = off.mcp(
        Some(&s),
        &[AUTH],
        &req(
            1,
            "tools/call",
            json!({"name": "host_exec", "arguments": {"command": "true"}}),
        ),
    );
    rpc_error(&r, 200, -32602);
    let on = Fixture::new(&[("mcp-host-ops", "1")]);
    let n = names(&on);
    for t in ["host_exec", "host_files_read", "host_files_write"] {
        assert!(n.iter().any(|x| x == t), "{t} in {n:?}");
    }
}

#[test]
fn resources_read_the_routes() {
    let f = with_tasks();
    let s = f.mcp_session("2025-06-18");
    let rpc =
        |method: &str, params: Value| expect(&f.mcp(Some(&s), &[], &req(2, method, params)), 200);
    let list = rpc("resources/list", json!({}));
    let uris: Vec<_> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].clone())
        .collect();
    assert_eq!(uris, [json!("baa://system/state"), json!("baa://status")]);
    let t = rpc("resources/templates/list", json!({}));
    assert_eq!(
        t["result"]["resourceTemplates"][0]["uriTemplate"],
        "baa://tasks/{id}"
    );
    let read = |uri: &str| {
        let v = rpc("resources/read", json!({"uri": uri}));
        let c = &v["result"]["contents"][0];
        assert_eq!(
            (&c["uri"], &c["mimeType"]),
            (&json!(uri), &json!("application/json")),
            "{v}"
        );
        serde_json::from_str::<Value>(c["text"].as_str().unwrap()).unwrap()
    };
    assert_eq!(read("baa://system/state")["mode"], "running");
    let status = read("baa://status");
    assert_eq!(
        (&status["system"]["mode"], &status["tasks"]["queued"]),
        (&json!("running"), &json!(0)),
        "{status}"
    );
    let made = body(&f.call("POST", "/v1/tasks", &[], br#"{"title":"r","prompt":"p"}"#));
    let id = made["data"]["task"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(read(&format!("baa://tasks/{id}"))["task"]["title"], "r");
    assert!(read(&format!("baa://tasks/{id}/log"))["logs"].is_array());
    let v = rpc("resources/read", json!({"uri": "baa://tasks/nope"}));
    assert_eq!(v["error"]["code"], -32002, "{v}");
}

#[test]
fn mcp_goes_through_the_host_and_origin_guards() {
    let f = Fixture::new(&[]);
    let body = init("2025-06-18").to_string();
    let r = f.send(&baa::common::http::Request::fake(
        "POST",
        "/mcp",
        &[("Host", "evil.example:4317")],
        body.as_bytes(),
    ));
    assert_eq!(r.status, 403);
    assert_eq!(self::body(&r)["error"], "forbidden_host");
    let r = f.call(
        "POST",
        "/mcp",
        &[("Origin", "http://evil.example")],
        body.as_bytes(),
    );
    assert_eq!(
        (r.status, self::body(&r)["error"].clone()),
        (403, json!("forbidden_origin"))
    );
    let r = f.call(
        "POST",
        "/mcp",
        &[("Origin", &format!("http://{HOST}"))],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let _ = TOKEN;
}
