//! The node's own Codex queues work through the conductor's MCP endpoint, end to end on the
//! real pinned `codex app-server` (issue 21): codexd's child has the conductor as the MCP
//! server `baa` in its `CODEX_HOME/config.toml` (`url`, `bearer_token_env_var`), and codexd
//! passes that variable to it (`BAA_CODEXD_CHILD_ENV`). A task's turn asks the loopback
//! model, which calls the task-add tool; the task it names appears in the queue with the
//! title the model gave, and runs.
//!
//! What codex 0.169.0 does, pinned here (a Codex upgrade that changes it fails this test):
//! - MCP tools are deferred: the model sees only `tool_search` (run by codex, "client"
//!   execution); its `tool_search_output` lists the server's tools as the namespace
//!   `mcp__baa` holding `tasks_create`, and the model calls it as a `function_call` with
//!   `namespace: "mcp__baa"`, `name: "tasks_create"` (the flat `mcp__baa__tasks_create`
//!   is an "unsupported call").
//! - A tool marked `readOnlyHint: true` (every conductor route but the writes) runs without
//!   asking. One without it needs approval: under `approval_policy = "never"` the call
//!   fails ("MCP tool call requires approval, but approval policy is never"), under
//!   `on-request` codex asks with `mcpServer/elicitation/request` (codexd surfaces it as an
//!   approval the conductor's API answers; `{"action": "accept"}` lets the call run); the
//!   server entry's `default_tools_approval_mode = "approve"` trusts it instead. Both are
//!   tested below.
//! - A thread's MCP servers start with `thread/start` (config.toml is read then), and its
//!   first model request may go out before they are ready: `tool_search` then finds
//!   nothing of that server (probed with a server 1.5 s slow to start: the searches came
//!   back without it until it was ready, then the tool was found and called). The script
//!   below searches again, 100 ms apart, until the namespace is there.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codex::MockCodexHome;
use crate::support::codexd::{
    create_session, events_ws, read_until, start_running, with_mock_codex, Dirs,
};
use crate::support::conductor::TOKEN;
use crate::support::daemon::Daemon;
use crate::support::mock_model::{keywords, Call, Output, Reply};
use crate::support::tasks::{self, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(90);
/// The variable the server entry reads its bearer token from.
const TOKEN_VAR: &str = "BAA_MCP_TOKEN";
/// Words in a task's prompt that make the model queue a follow-up through MCP.
const QUEUE_WORDS: &str = "queue a follow-up";
const FOLLOW_UP_TITLE: &str = "follow-up queued by codex";
const FOLLOW_UP_PROMPT: &str = "say hello from the follow-up";
/// tool_search calls the model makes before it gives up on the namespace appearing.
const SEARCHES: usize = 100;
const SEARCH_GAP: Duration = Duration::from_millis(100);

/// The `[mcp_servers.baa]` entry for the conductor at `mcp_url`; `trusted`: its tools run
/// without asking.
fn server_entry(mcp_url: &str, trusted: bool) -> String {
    let mut entry = format!(
        "\n[mcp_servers.baa]\nurl = \"{mcp_url}\"\nbearer_token_env_var = \"{TOKEN_VAR}\"\n"
    );
    if trusted {
        entry.push_str("default_tools_approval_mode = \"approve\"\n");
    }
    entry
}

/// codexd over the real codex (passing the token variable to its child) and a conductor on
/// it, with the conductor's `/mcp` added to the child's config.toml. The app-server reads
/// config.toml at each thread/start, so the entry can name the conductor's port once known.
fn stack_with_mcp(dir: &TempDir, home: &MockCodexHome, trusted: bool) -> (Daemon, TaskConductor) {
    let codexd = start_running(
        with_mock_codex(&Dirs::under(&dir.child("cx")), home)
            .env(TOKEN_VAR, TOKEN)
            .env("BAA_CODEXD_CHILD_ENV", TOKEN_VAR),
    );
    let c = tasks::start(dir, &codexd.base);
    let config = home.home.join("config.toml");
    let mut toml = std::fs::read_to_string(&config).expect("config.toml");
    toml.push_str(&server_entry(&c.url("/mcp"), trusted));
    std::fs::write(&config, toml).expect("write config.toml");
    (codexd, c)
}

fn input(call: &Call) -> &[Value] {
    call.body["input"].as_array().map_or(&[], Vec::as_slice)
}

/// The tool `name` as a `tool_search_output` lists it: `(namespace, tool)`.
fn found_tool(output: &Value, name: &str) -> Option<(String, Value)> {
    output["tools"].as_array()?.iter().find_map(|ns| {
        let tool = ns["tools"].as_array()?.iter().find(|t| t["name"] == name)?;
        Some((ns["name"].as_str()?.to_string(), tool.clone()))
    })
}

/// The tool searches codex already ran in this conversation.
fn searches(call: &Call) -> usize {
    input(call)
        .iter()
        .filter(|i| i["type"] == "tool_search_output")
        .count()
}

/// A search for `tool` by its name (codex ranks its deferred tools with BM25).
fn tool_search(call: &Call, tool: &str) -> Reply {
    Reply::new(Output::Item(json!({
        "type": "tool_search_call",
        "id": format!("ts_mock_{}", call.n),
        "call_id": format!("ts_call_{}", call.n),
        "execution": "client",
        "arguments": {"query": format!("baa {tool}"), "limit": 8},
        "status": "completed",
    })))
}

/// What the model does when a prompt holds `words`: search for `tool`, call it with
/// `args`, then say `tool said: <its output>`.
struct Plan {
    words: &'static str,
    tool: &'static str,
    args: Value,
}

/// The model: a prompt with the plan's words makes it search for the tool, call it and
/// report what it got; anything else is answered by [`keywords`].
fn script(plan: Plan) -> impl Fn(&Call) -> Reply + Send + Sync + 'static {
    move |call: &Call| {
        let last = input(call).last().cloned().unwrap_or(Value::Null);
        if last["type"] == "tool_search_output" {
            return match found_tool(&last, plan.tool) {
                Some((namespace, _)) => Reply::new(Output::Item(json!({
                    "type": "function_call",
                    "id": format!("fc_mock_{}", call.n),
                    "call_id": format!("call_mock_{}", call.n),
                    "namespace": namespace,
                    "name": plan.tool,
                    "arguments": plan.args.to_string(),
                    "status": "completed",
                }))),
                None if searches(call) < SEARCHES => {
                    tool_search(call, plan.tool).delayed(SEARCH_GAP)
                }
                None => Reply::text(format!("the baa MCP server never offered {}", plan.tool)),
            };
        }
        if let Some(out) = call.tool_output() {
            return Reply::text(format!("tool said: {out}"));
        }
        if call.prompt.contains(plan.words) {
            return tool_search(call, plan.tool);
        }
        keywords(call)
    }
}

/// How the node's Codex gets to call the write tool.
#[derive(Clone, Copy, PartialEq)]
enum Approval {
    /// The server entry trusts the server (`default_tools_approval_mode = "approve"`).
    Trusted,
    /// The task runs under `on-request`: codex asks (`mcpServer/elicitation/request`) and
    /// the operator accepts through the conductor's approvals API.
    AnsweredByApi,
}

#[test]
fn a_codex_turn_queues_a_follow_up_task_through_the_conductors_mcp_tool() {
    queue_through_mcp("mcp-codex", Approval::Trusted);
}

#[test]
fn a_codex_turn_asks_before_the_mcp_write_tool_and_an_accept_through_the_api_lets_it_queue() {
    queue_through_mcp("mcp-codex-ask", Approval::AnsweredByApi);
}

fn queue_through_mcp(tag: &str, approval: Approval) {
    let home = MockCodexHome::new(tag);
    home.mock.set_script(script(Plan {
        words: QUEUE_WORDS,
        tool: "tasks_create",
        args: json!({"title": FOLLOW_UP_TITLE, "prompt": FOLLOW_UP_PROMPT, "cwd": home.work}),
    }));
    let dir = TempDir::new(&format!("{tag}-dirs"));
    let (codexd, c) = stack_with_mcp(&dir, &home, approval == Approval::Trusted);

    let mut body = json!({
        "title": "asks codex to queue work",
        "prompt": format!("{QUEUE_WORDS}, then stop"),
        "cwd": home.work,
    });
    if approval == Approval::AnsweredByApi {
        body["approval_policy"] = json!("on-request");
    }
    let first = c.create(body);
    if approval == Approval::AnsweredByApi {
        let request = c.wait_waiting(&first, T);
        let waiting = c.task(&first)["task"]["waiting"].clone();
        assert_eq!(
            waiting["method"], "mcpServer/elicitation/request",
            "{waiting:#}"
        );
        c.answer(&request, "accept").expect(200);
    }
    let done = c.wait_status(&first, "succeeded", T);
    let said = done["runs"][0]["final_message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        said.starts_with("tool said: "),
        "{done:#}\n{}",
        c.explain(&first)
    );

    // The follow-up is in the queue with the model's title, and runs like any task.
    let listed = crate::support::http::get(&c.url("/v1/tasks?limit=50")).expect(200);
    let tasks = listed["data"]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let follow_up = tasks
        .iter()
        .find(|t| t["title"] == FOLLOW_UP_TITLE)
        .unwrap_or_else(|| {
            panic!(
                "no task titled {FOLLOW_UP_TITLE:?} in {listed:#}\nmodel saw:\n{}\ncodexd log:\n{}",
                requests_summary(&home),
                codexd.log()
            )
        });
    let id = follow_up["task_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        said.contains(&id),
        "the tool's answer names the task: {said}"
    );
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(
        t["runs"][0]["final_message"],
        format!("mock reply: {FOLLOW_UP_PROMPT}"),
        "{t:#}"
    );
    assert_eq!(
        home.mock.count_prompt_starts(QUEUE_WORDS),
        1,
        "one turn asked to queue"
    );
}

/// One line per model request: its last input item's type, for a failure message.
fn requests_summary(home: &MockCodexHome) -> String {
    home.mock
        .requests()
        .iter()
        .map(|b| {
            let last = b["input"].as_array().and_then(|i| i.last()).cloned();
            let s = last.map(|l| l.to_string()).unwrap_or_default();
            s.chars().take(400).collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The defect issue 21 found: codexd passed no `BAA_*` (nor `*TOKEN*`) variable to its
/// child, so an MCP server entry's `bearer_token_env_var` was never set there and the
/// server's start-up failed. Without `BAA_CODEXD_CHILD_ENV` that is still so (the scrub
/// stands); the test above is the same set-up with the variable named.
#[test]
fn codexd_passes_no_baa_variable_to_its_child_unless_named_so_an_unnamed_mcp_token_fails_startup() {
    let home = MockCodexHome::new("mcp-codex-unnamed");
    let config = home.home.join("config.toml");
    let mut toml = std::fs::read_to_string(&config).expect("config.toml");
    // Nothing listens there: start-up fails on the missing variable before connecting.
    toml.push_str(&server_entry("http://127.0.0.1:9/mcp", true));
    std::fs::write(&config, toml).expect("write config.toml");
    let dir = TempDir::new("mcp-codex-unnamed-dirs");
    let codexd =
        start_running(with_mock_codex(&Dirs::under(&dir.child("cx")), &home).env(TOKEN_VAR, TOKEN));
    let mut ws = events_ws(&codexd, None);
    create_session(&codexd, json!({"cwd": home.work}));
    let seen = read_until(&mut ws, T, "the baa MCP server's start-up ending", |e| {
        e["type"] == "mcpServer/startupStatus/updated"
            && !matches!(
                e["detail"]["params"]["status"].as_str(),
                Some("starting") | None
            )
    });
    let last = seen.last().expect("the matching event");
    assert_eq!(last["detail"]["params"]["status"], "failed", "{last:#}");
    let error = last["detail"]["params"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains(&format!("Environment variable {TOKEN_VAR}"))
            && error.contains("is not set"),
        "{last:#}"
    );
}

/// A read tool (`readOnlyHint: true`, as the conductor marks every route that is not a
/// write) runs without approval even under `approval_policy = "never"` and an entry that
/// does not trust the server: what a turn needs to look at the queue.
#[test]
fn a_read_tool_runs_without_asking_under_never() {
    let home = MockCodexHome::new("mcp-codex-read");
    home.mock.set_script(script(Plan {
        words: "look at the queue",
        tool: "tasks_summary",
        args: json!({}),
    }));
    let dir = TempDir::new("mcp-codex-read-dirs");
    let (_codexd, c) = stack_with_mcp(&dir, &home, false);

    let id = c.create(json!({
        "title": "reads the queue",
        "prompt": "look at the queue",
        "cwd": home.work,
        "approval_policy": "never",
    }));
    let done = c.wait_status(&id, "succeeded", T);
    let said = done["runs"][0]["final_message"]
        .as_str()
        .unwrap_or_default();
    // The summary the tool returned counts this very task as running.
    assert!(
        said.starts_with("tool said: ") && said.contains("\"running\":1"),
        "{said}\n{}",
        c.explain(&id)
    );
}
