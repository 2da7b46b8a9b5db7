//! End-to-end checks of the offline Codex rig: the real, pinned `codex app-server` talking to
//! the mock model (`support::mock_model`) over loopback, driven over stdio JSON-RPC.
//!
//! These pin the protocol facts codexd relies on (docs/codex-app-server-notes.md): delta and
//! completion notifications, the approval round trip, an `apply_patch` file change, how an
//! upstream 500 fails a turn, and what `turn/interrupt` produces. If a Codex upgrade changes any of them, a test here fails first.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::codex::{method, summarize, AppServer, MockCodexHome, READ_TIMEOUT};
use crate::support::mock_model::{self, Reply, SLOW_DELTA_COUNT};

/// Starts a thread with `approval_policy` and one text turn; returns (thread id, turn id).
fn start_turn(
    app: &mut AppServer,
    home: &MockCodexHome,
    approval_policy: &str,
    text: &str,
) -> (String, String) {
    let started = app.request(
        "thread/start",
        json!({"cwd": home.work, "approvalPolicy": approval_policy}),
    );
    let thread_id = str_at(&started, "/thread/id");
    let turn = app.request(
        "turn/start",
        json!({"threadId": thread_id, "input": [{"type": "text", "text": text, "text_elements": []}]}),
    );
    let turn_id = str_at(&turn, "/turn/id");
    assert_eq!(
        str_at(&turn, "/turn/status"),
        "inProgress",
        "turn/start result: {turn}"
    );
    (thread_id, turn_id)
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
        .to_string()
}

fn is_turn_completed(msg: &Value, turn_id: &str) -> bool {
    method(msg) == "turn/completed" && msg.pointer("/params/turn/id") == Some(&json!(turn_id))
}

fn with_method<'a>(msgs: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    msgs.iter().filter(move |m| method(m) == name)
}

fn deltas(msgs: &[Value]) -> Vec<String> {
    with_method(msgs, "item/agentMessage/delta")
        .map(|m| str_at(m, "/params/delta"))
        .collect()
}

/// Final text of every completed agentMessage item, in order.
fn agent_messages(msgs: &[Value]) -> Vec<String> {
    with_method(msgs, "item/completed")
        .filter(|m| m.pointer("/params/item/type") == Some(&json!("agentMessage")))
        .map(|m| str_at(m, "/params/item/text"))
        .collect()
}

#[test]
fn text_turn_streams_deltas_and_completes() {
    let started = Instant::now();
    let home = MockCodexHome::new("rig-text");
    let mut app = home.app_server();
    let prompt = "hello from the rig";
    let (thread_id, turn_id) = start_turn(&mut app, &home, "never", prompt);

    let msgs = app.read_until(READ_TIMEOUT, "turn/completed", |m| {
        is_turn_completed(m, &turn_id)
    });
    let want = mock_model::reply_for_prompt(prompt);

    let got_deltas = deltas(&msgs);
    assert!(
        got_deltas.len() >= 2,
        "expected several deltas, got {got_deltas:?}"
    );
    assert_eq!(got_deltas.concat(), want, "deltas: {got_deltas:?}");
    assert_eq!(
        agent_messages(&msgs),
        vec![want.clone()],
        "messages:\n{}",
        summarize(&msgs)
    );

    let done = msgs.last().expect("turn/completed");
    assert_eq!(str_at(done, "/params/threadId"), thread_id);
    assert_eq!(str_at(done, "/params/turn/status"), "completed", "{done}");
    assert_eq!(
        done.pointer("/params/turn/error"),
        Some(&Value::Null),
        "{done}"
    );
    // turn/completed carries the agent messages itself, so a client that missed the stream
    // can still read the answer.
    assert_eq!(str_at(done, "/params/turn/items/0/text"), want, "{done}");
    assert!(
        with_method(&msgs, "thread/tokenUsage/updated").count() >= 1,
        "no usage notification:\n{}",
        summarize(&msgs)
    );

    let bodies = home.mock.requests();
    assert_eq!(bodies.len(), 1, "upstream requests: {bodies:?}");
    assert_eq!(bodies[0]["stream"], json!(true));
    assert_eq!(bodies[0]["model"], json!("gpt-5.5"));
    let last_input = bodies[0]["input"]
        .as_array()
        .and_then(|a| a.last())
        .cloned();
    assert_eq!(
        last_input
            .as_ref()
            .and_then(|i| i.pointer("/content/0/text")),
        Some(&json!(prompt)),
        "last input item: {last_input:?}"
    );
    eprintln!("text turn took {:?}", started.elapsed());
}

#[test]
fn tool_call_under_untrusted_asks_for_approval_and_accept_completes_the_turn() {
    let started = Instant::now();
    let home = MockCodexHome::new("rig-approval");
    let mut app = home.app_server();
    let (thread_id, turn_id) = start_turn(&mut app, &home, "untrusted", "please run a tool");

    let before = app.read_until(READ_TIMEOUT, "a command approval request", |m| {
        method(m) == "item/commandExecution/requestApproval"
    });
    let request = before.last().expect("approval request").clone();
    // Server→client requests number from 0 per process, independent of our ids.
    assert_eq!(request["id"], json!(0), "{request}");
    assert_eq!(str_at(&request, "/params/threadId"), thread_id);
    assert_eq!(str_at(&request, "/params/turnId"), turn_id);
    assert_eq!(str_at(&request, "/params/itemId"), "call_mock_1");
    assert_eq!(
        str_at(&request, "/params/command"),
        "/bin/bash -lc 'echo hi'",
        "{request}"
    );
    assert!(
        with_method(&before, "thread/status/changed")
            .any(|m| m.pointer("/params/status/activeFlags") == Some(&json!(["waitingOnApproval"]))),
        "no waitingOnApproval status before the request:\n{}",
        summarize(&before)
    );

    app.respond(&request["id"], json!({"decision": "accept"}));
    let after = app.read_until(READ_TIMEOUT, "turn/completed", |m| {
        is_turn_completed(m, &turn_id)
    });

    let resolved: Vec<_> = with_method(&after, "serverRequest/resolved").collect();
    assert_eq!(resolved.len(), 1, "resolved:\n{}", summarize(&after));
    assert_eq!(resolved[0].pointer("/params/requestId"), Some(&json!(0)));
    let command_done = with_method(&after, "item/completed")
        .find(|m| m.pointer("/params/item/type") == Some(&json!("commandExecution")))
        .unwrap_or_else(|| panic!("no commandExecution item/completed:\n{}", summarize(&after)));
    assert_eq!(
        str_at(command_done, "/params/item/status"),
        "completed",
        "{command_done}"
    );
    assert_eq!(
        command_done.pointer("/params/item/exitCode"),
        Some(&json!(0)),
        "{command_done}"
    );

    let messages = agent_messages(&after);
    assert_eq!(messages.len(), 1, "messages: {messages:?}");
    assert!(
        messages[0].starts_with("mock tool result: ") && messages[0].ends_with("hi"),
        "final message {:?}",
        messages[0]
    );
    assert_eq!(
        str_at(after.last().expect("done"), "/params/turn/status"),
        "completed"
    );

    let bodies = home.mock.requests();
    assert_eq!(
        bodies.len(),
        2,
        "expected the call and its follow-up, got {bodies:?}"
    );
    let follow_up = bodies[1]["input"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        follow_up["type"],
        json!("function_call_output"),
        "{follow_up}"
    );
    assert_eq!(follow_up["call_id"], json!("call_mock_1"), "{follow_up}");
    eprintln!("approval turn took {:?}", started.elapsed());
}

#[test]
fn escalation_under_on_request_asks_with_reason_and_decline_still_completes() {
    let home = MockCodexHome::new("rig-decline");
    let mut app = home.app_server();
    // "approval" makes the mock ask for sandbox escalation; plain `tool` under on-request runs
    // inside the sandbox without asking.
    let (_thread_id, turn_id) = start_turn(&mut app, &home, "on-request", "needs approval");

    let before = app.read_until(READ_TIMEOUT, "a command approval request", |m| {
        method(m) == "item/commandExecution/requestApproval"
    });
    let request = before.last().expect("approval request").clone();
    assert_eq!(
        str_at(&request, "/params/reason"),
        "mock model asks for approval",
        "{request}"
    );

    app.respond(&request["id"], json!({"decision": "decline"}));
    let after = app.read_until(READ_TIMEOUT, "turn/completed", |m| {
        is_turn_completed(m, &turn_id)
    });
    let command_done = with_method(&after, "item/completed")
        .find(|m| m.pointer("/params/item/type") == Some(&json!("commandExecution")))
        .unwrap_or_else(|| panic!("no commandExecution item/completed:\n{}", summarize(&after)));
    assert_eq!(
        str_at(command_done, "/params/item/status"),
        "declined",
        "{command_done}"
    );
    assert_eq!(
        str_at(after.last().expect("done"), "/params/turn/status"),
        "completed"
    );
}

#[test]
fn apply_patch_tool_call_adds_a_file_and_reports_a_file_change() {
    let home = MockCodexHome::new("rig-patch");
    let target = home.work.join("patched.txt");
    let patch = format!(
        "*** Begin Patch\n*** Add File: {}\n+hello from mock patch\n*** End Patch\n",
        target.display()
    );
    home.mock.set_script(move |call| match call.tool_output() {
        Some(_) => Reply::text("patched"),
        None => Reply::apply_patch("call_patch_1", patch.clone()),
    });
    let mut app = home.app_server();
    let (_thread_id, turn_id) = start_turn(&mut app, &home, "never", "add a file");

    let msgs = app.read_until(READ_TIMEOUT, "turn/completed", |m| {
        is_turn_completed(m, &turn_id)
    });
    let change = with_method(&msgs, "item/completed")
        .find(|m| m.pointer("/params/item/type") == Some(&json!("fileChange")))
        .unwrap_or_else(|| panic!("no fileChange item/completed:\n{}", summarize(&msgs)));
    assert_eq!(
        str_at(change, "/params/item/id"),
        "call_patch_1",
        "{change}"
    );
    assert_eq!(
        str_at(change, "/params/item/status"),
        "completed",
        "{change}"
    );
    assert_eq!(
        str_at(change, "/params/item/changes/0/kind/type"),
        "add",
        "{change}"
    );
    assert_eq!(
        std::fs::read_to_string(&target).ok().as_deref(),
        Some("hello from mock patch\n")
    );
    assert_eq!(agent_messages(&msgs), vec!["patched".to_string()]);
    assert_eq!(
        str_at(msgs.last().expect("done"), "/params/turn/status"),
        "completed"
    );

    let bodies = home.mock.requests();
    assert_eq!(bodies.len(), 2, "the call and its follow-up: {bodies:?}");
    let follow_up = bodies[1]["input"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&follow_up["type"], &follow_up["call_id"]),
        (&json!("custom_tool_call_output"), &json!("call_patch_1")),
        "{follow_up}"
    );
}

#[test]
fn fail500_fails_the_turn_at_once_without_retries() {
    let started = Instant::now();
    let home = MockCodexHome::new("rig-fail500");
    let mut app = home.app_server();
    let (thread_id, turn_id) = start_turn(&mut app, &home, "never", "fail500 please");

    let msgs = app.read_until(READ_TIMEOUT, "turn/completed", |m| {
        is_turn_completed(m, &turn_id)
    });
    let errors: Vec<_> = with_method(&msgs, "error").collect();
    assert_eq!(
        errors.len(),
        1,
        "error notifications:\n{}",
        summarize(&msgs)
    );
    assert_eq!(
        errors[0].pointer("/params/willRetry"),
        Some(&json!(false)),
        "{}",
        errors[0]
    );
    assert_eq!(
        str_at(errors[0], "/params/error/codexErrorInfo"),
        "internalServerError"
    );
    assert_eq!(str_at(errors[0], "/params/turnId"), turn_id);
    assert!(
        with_method(&msgs, "thread/status/changed").any(|m| {
            m.pointer("/params/threadId") == Some(&json!(thread_id))
                && m.pointer("/params/status/type") == Some(&json!("systemError"))
        }),
        "no systemError status:\n{}",
        summarize(&msgs)
    );

    let done = msgs.last().expect("turn/completed");
    assert_eq!(str_at(done, "/params/turn/status"), "failed", "{done}");
    assert_eq!(
        str_at(done, "/params/turn/error/codexErrorInfo"),
        "internalServerError",
        "{done}"
    );
    assert_eq!(
        done.pointer("/params/turn/items"),
        Some(&json!([])),
        "{done}"
    );
    assert!(
        deltas(&msgs).is_empty(),
        "unexpected deltas:\n{}",
        summarize(&msgs)
    );
    // request_max_retries = 0 and stream_max_retries = 0: exactly one upstream attempt.
    assert_eq!(home.mock.requests().len(), 1);
    eprintln!("fail500 turn took {:?}", started.elapsed());
}

#[test]
fn slow_turn_interrupted_mid_stream_completes_as_interrupted() {
    let started = Instant::now();
    let home = MockCodexHome::new("rig-interrupt");
    let mut app = home.app_server();
    let (thread_id, turn_id) = start_turn(&mut app, &home, "never", "go slow please");

    let before = app.read_until(READ_TIMEOUT, "the first delta", |m| {
        method(m) == "item/agentMessage/delta"
    });
    let item_id = str_at(before.last().expect("delta"), "/params/itemId");
    let result = app.call(
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    );
    assert_eq!(result, Ok(json!({})));

    let after = app.read_until(Duration::from_secs(5), "turn/completed", |m| {
        is_turn_completed(m, &turn_id)
    });
    let done = after.last().expect("turn/completed");
    assert_eq!(str_at(done, "/params/turn/status"), "interrupted", "{done}");
    assert_eq!(
        done.pointer("/params/turn/error"),
        Some(&Value::Null),
        "{done}"
    );
    assert_eq!(
        done.pointer("/params/turn/items"),
        Some(&json!([])),
        "{done}"
    );
    let all: Vec<Value> = before.iter().chain(after.iter()).cloned().collect();
    assert!(
        deltas(&all).len() < SLOW_DELTA_COUNT,
        "the stream was not cut short: {} deltas",
        deltas(&all).len()
    );
    // The partial agentMessage never gets item/completed; codexd must close it itself.
    assert!(
        !with_method(&all, "item/completed")
            .any(|m| m.pointer("/params/item/id") == Some(&json!(item_id))),
        "unexpected item/completed for {item_id}:\n{}",
        summarize(&all)
    );

    // A second interrupt on the now idle thread is an error, not a no-op.
    let again = app.call(
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    );
    let err = again.expect_err("interrupting an idle thread");
    assert_eq!(err["code"], json!(-32600), "{err}");
    assert_eq!(
        err["message"],
        json!("no active turn to interrupt"),
        "{err}"
    );

    // Codex drops the upstream connection on interrupt; the mock must notice and end its
    // stream, so stopping it is quick rather than waiting out the ~10 s reply.
    drop(app);
    let stop_started = Instant::now();
    let MockCodexHome { mock, .. } = home;
    mock.stop();
    assert!(
        stop_started.elapsed() < Duration::from_secs(2),
        "mock took {:?} to stop",
        stop_started.elapsed()
    );
    eprintln!("interrupt test took {:?}", started.elapsed());
}

#[test]
fn stdin_eof_mid_turn_exits_zero_without_turn_completed() {
    let home = MockCodexHome::new("rig-eof");
    let mut app = home.app_server();
    let (_thread_id, turn_id) = start_turn(&mut app, &home, "never", "slow again");
    app.read_until(READ_TIMEOUT, "the first delta", |m| {
        method(m) == "item/agentMessage/delta"
    });

    // Over stdio a codexd restart looks exactly like this to the app-server.
    let status = app.close_and_wait(Duration::from_secs(5));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "exit status {status:?}"
    );
    let mut trailing = Vec::new();
    while let Some(m) = app.next_message_or_eof(Duration::from_millis(200)) {
        trailing.push(m);
    }
    assert!(
        !trailing.iter().any(|m| is_turn_completed(m, &turn_id)),
        "turn/completed after EOF:\n{}",
        summarize(&trailing)
    );
}
