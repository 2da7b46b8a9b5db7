//! The conductor's MCP endpoint driven by the official MCP Python SDK client (PyPI `mcp`,
//! pinned in tools/py/requirements.txt; tests/it/support/mcp_client.py): what an agent's
//! MCP client does, end to end against a real conductor whose tasks run on codexd's stub
//! child. Issue 21's "done when": initialize, list tools, queue a task through
//! `tools/call`, read its resource until it succeeds, and a token-less write refused.

use std::time::Duration;

use serde_json::Value;

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::conductor::TOKEN;
use crate::support::python;
use crate::support::tasks;
use crate::support::tmp::TempDir;

#[test]
fn the_python_sdk_client_queues_a_task_reads_it_to_success_and_is_refused_a_write_without_the_token(
) {
    let dir = TempDir::new("mcp-sdk");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    let title = "queued by the MCP Python SDK";
    let out = python::run(
        "mcp_client.py",
        "mcp",
        &[&c.url("/mcp"), TOKEN, title],
        Duration::from_secs(120),
    );
    eprintln!("mcp_client.py: {out}");
    let seen: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("mcp_client.py printed no JSON ({e}): {out}"));

    assert_eq!(seen["protocolVersion"], "2025-11-25", "{seen:#}");
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {seen:#}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["tasks_create", "tasks_list", "tasks_read", "system_state"] {
        assert!(tools.contains(&want), "{want} not listed: {tools:?}");
    }
    assert!(
        !tools
            .iter()
            .any(|t| t.starts_with("exec") || t.contains("files")),
        "host-ops tools are off by default: {tools:?}"
    );

    // The task the SDK queued is the conductor's, with the title given, and succeeded.
    let id = seen["taskId"].as_str().unwrap_or_default();
    let t = c.task(id);
    assert_eq!(t["task"]["title"], title, "{t:#}");
    assert_eq!(t["task"]["status"], "succeeded", "{t:#}");
    assert_eq!(
        seen["statuses"].as_array().and_then(|s| s.last()),
        Some(&Value::from("succeeded")),
        "{seen:#}"
    );
    assert_eq!(seen["resourceMime"], "application/json", "{seen:#}");

    let no_token = &seen["tokenless"];
    assert_eq!(no_token["isError"], true, "{seen:#}");
    let text = no_token["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("tasks_create needs the shared token") && text.contains("Authorization"),
        "{text}"
    );
    assert_eq!(
        no_token["readIsError"], false,
        "a read tool needs no token: {seen:#}"
    );
    let summary = c.summary();
    let total: u64 = ["queued", "running", "succeeded", "failed", "canceled"]
        .iter()
        .filter_map(|k| summary[*k].as_u64())
        .sum();
    assert_eq!(total, 1, "the refused call queued nothing: {summary:#}");
}
