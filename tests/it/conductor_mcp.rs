//! The conductor's MCP endpoint end to end, over a real socket: a client initializes,
//! lists the tools, queues a task with `tools/call tasks_create` (refused without the
//! token first), and reads the task's resource until codexd's stub child has run it; and
//! `/mcp` refuses a foreign Host and a web page's Origin like every route.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::conductor::{self, TOKEN};
use crate::support::daemon::wait_for;
use crate::support::http::{get, raw, raw_status};
use crate::support::mcp::Mcp;
use crate::support::tasks;
use crate::support::tmp::TempDir;

#[test]
fn mcp_client_queues_a_task_with_tools_call_and_reads_its_resource_until_it_succeeds() {
    let dir = TempDir::new("mcp-e2e");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    let base = c.url("");

    let mut anon = Mcp::connect(&base, "2025-06-18", None);
    assert_eq!(anon.version, "2025-06-18");
    let list = anon.result("tools/list", json!({}));
    let tools = list["tools"].as_array().expect("tools");
    let create = tools
        .iter()
        .find(|t| t["name"] == "tasks_create")
        .unwrap_or_else(|| panic!("no tasks_create in {list}"));
    assert_eq!(
        create["inputSchema"]["properties"]["title"]["type"],
        "string"
    );
    assert!(create["outputSchema"].is_object(), "{create}");
    assert!(
        !tools.iter().any(|t| t["name"] == "host_exec"),
        "host ops are off by default"
    );

    // No token: listed, but the call is refused with how to configure it; nothing queued.
    let args = json!({"title": "queued over mcp", "prompt": "say hi"});
    let refused = anon.call("tasks_create", args.clone());
    assert_eq!(refused["isError"], true, "{refused}");
    let text = refused["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("bearer_token_env_var"), "{text}");
    assert_eq!(get(&c.url("/v1/tasks")).expect(200)["data"]["count"], 0);

    let mut m = Mcp::connect(&base, "2025-11-25", Some(TOKEN));
    let made = m.call("tasks_create", args);
    assert_eq!(made["isError"], false, "{made}");
    let id = made["structuredContent"]["task"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_string();
    let uri = format!("baa://tasks/{id}");
    let done = wait_for(Duration::from_secs(30), || {
        let t = m.read(&uri);
        (t["task"]["status"] == "succeeded").then_some(t)
    })
    .unwrap_or_else(|| panic!("task {id} did not succeed: {}", m.read(&uri)));
    assert_eq!(done["task"]["title"], "queued over mcp", "{done}");
    let log = m.read(&format!("{uri}/log"));
    assert!(
        log["logs"].as_array().is_some_and(|l| !l.is_empty()),
        "{log}"
    );
    // The same task over plain HTTP.
    let http = get(&c.url(&format!("/v1/tasks/{id}"))).expect(200);
    assert_eq!(http["data"]["task"]["status"], "succeeded");
    let status = m.read("baa://status");
    assert_eq!(status["tasks"]["succeeded"], 1, "{status}");

    assert_eq!(m.close(), 200);
    let gone = m.send(&json!({"jsonrpc": "2.0", "id": 99, "method": "ping"}));
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(gone.json()["error"]["code"], -32001);
}

/// `POST /mcp` with `headers` over a raw socket: (status, body).
fn raw_post(addr: &str, headers: &str) -> (u16, Value) {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
    let req = format!(
        "POST /mcp HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw(addr, req.as_bytes(), Duration::from_secs(10));
    let json = resp
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (raw_status(&resp), json)
}

#[test]
fn mcp_refuses_a_foreign_host_and_a_web_origin() {
    let c = conductor::start("mcp-guards");
    let addr = format!("127.0.0.1:{}", c.d.port());
    let (status, v) = raw_post(&addr, "Host: evil.example\r\n");
    assert_eq!(
        (status, &v["error"]),
        (403, &json!("forbidden_host")),
        "{v}"
    );
    let (status, v) = raw_post(
        &addr,
        &format!("Host: {addr}\r\nOrigin: http://evil.example\r\n"),
    );
    assert_eq!(
        (status, &v["error"]),
        (403, &json!("forbidden_origin")),
        "{v}"
    );
    let (status, v) = raw_post(&addr, &format!("Host: localhost:{}\r\n", c.d.port()));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "{v}");
    // The refused ones opened no session.
    let rt = get(&c.url("/v1/runtime")).expect(200);
    assert_eq!(rt["data"]["mcp"]["sessions"], 1, "{rt}");
}
