//! The mock model's own contract, without codex: what the default script picks, the
//! Responses-API stream it sends, its errors, and the scripting hooks (a reply per request,
//! headers, holds, counting) that tests build on.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::daemon::wait_for;
use crate::support::http::{get, post, post_raw, raw, raw_status};
use crate::support::mock_model::{
    keywords, reply_after_tool, Call, Gate, MockModel, Output, Reply, SLOW_DELTA_COUNT,
    SLOW_DELTA_INTERVAL, TOOL_COMMAND,
};

const T: Duration = Duration::from_secs(10);

fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

fn call(input: Vec<Value>) -> Call {
    let body = json!({"model": "m", "input": input});
    Call {
        n: 1,
        prompt: baa::common::responses::last_user_text(&body),
        body,
    }
}

fn exec_call(call_id: &str, escalate: bool) -> Output {
    let mut arguments = json!({"cmd": TOOL_COMMAND});
    if escalate {
        arguments["sandbox_permissions"] = json!("require_escalated");
        arguments["justification"] = json!("mock model asks for approval");
    }
    Output::FunctionCall {
        call_id: call_id.into(),
        name: "exec_command".into(),
        arguments,
    }
}

#[test]
fn keywords_pick_the_reply_from_the_last_user_message() {
    let got = keywords(&call(vec![user("slow please"), user("hello there")])).output;
    assert_eq!(got, Reply::text("mock reply: hello there").output);
    let ticks: Vec<String> = (1..=SLOW_DELTA_COUNT)
        .map(|i| format!("tick {i} "))
        .collect();
    let cases = [
        ("go slow", Reply::chunks(ticks, SLOW_DELTA_INTERVAL).output),
        (
            "fail500 now",
            Reply::error(500, "mock model: simulated internal server error (fail500)").output,
        ),
        ("run a tool", exec_call("call_mock_1", false)),
        ("needs approval", exec_call("call_mock_1", true)),
    ];
    for (prompt, want) in cases {
        assert_eq!(
            keywords(&call(vec![user(prompt)])).output,
            want,
            "{prompt:?}"
        );
    }
}

#[test]
fn a_tool_output_ends_the_tool_loop() {
    let c = call(vec![
        user("run a tool"),
        json!({"type": "function_call", "call_id": "call_mock_1", "name": "exec_command", "arguments": "{}"}),
        json!({"type": "function_call_output", "call_id": "call_mock_1", "output": "hi\n"}),
    ]);
    assert_eq!(c.tool_output().as_deref(), Some("hi\n"));
    assert_eq!(c.tool_calls_so_far(), 1);
    assert_eq!(
        keywords(&c).output,
        Reply::text("mock tool result: hi").output
    );
    let wrapped =
        "Chunk ID: 2dcb10\nWall time: 0.0000 seconds\nProcess exited with code 0\nOutput:\nhi\n";
    assert_eq!(reply_after_tool(wrapped), "mock tool result: hi");
    let patch = call(vec![
        user("patch it"),
        json!({"type": "custom_tool_call", "call_id": "p1", "name": "apply_patch", "input": "…"}),
        json!({"type": "custom_tool_call_output", "call_id": "p1", "output": "Success."}),
    ]);
    assert_eq!(patch.tool_output().as_deref(), Some("Success."));
}

#[test]
fn text_reply_streams_responses_events_then_closes() {
    let mock = MockModel::start();
    let body = json!({"model": "m", "input": [user("hello")]});
    let r = post(&format!("{}/responses", mock.base_url()), &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let kinds: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.output_item.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_item.done",
            "response.completed"
        ],
        "{}",
        r.body
    );
    assert!(
        r.body.contains(r#""text":"mock reply: hello""#),
        "{}",
        r.body
    );
    assert_eq!(mock.requests(), vec![body]);
    assert_eq!(mock.count(), 1);
}

#[test]
fn malformed_requests_get_json_errors() {
    let mock = MockModel::start();
    let url = format!("{}/responses", mock.base_url());
    let out = raw(&mock.addr().to_string(), b"GARBAGE\r\n\r\n", T);
    assert_eq!(raw_status(&out), 400, "{out}");
    let r = post_raw(&url, b"{nope", &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["error"]["type"],
        "invalid_request_error",
        "{}",
        r.body
    );
    let r = get(&format!("{}/models", mock.base_url()));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(&url, &json!({"input": [user("fail500")]}));
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "server_error", "{}", r.body);
    assert_eq!(mock.count(), 1, "only JSON bodies on /responses are calls");
    assert_eq!(mock.all_requests().len(), 3);
}

#[test]
fn scripted_replies_are_held_until_released_carry_headers_and_are_counted() {
    let gate = Gate::new();
    let held = gate.clone();
    let mock = MockModel::scripted(move |c: &Call| {
        let reply =
            Reply::text(format!("answer {}", c.n)).header("x-ratelimit-remaining-requests", "7");
        if c.prompt.contains("wait") {
            reply.held(&held)
        } else {
            reply
        }
    });
    let url = format!("{}/responses", mock.base_url());
    let r = post(&url, &json!({"input": [user("first")]}));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("7"));
    assert!(r.body.contains("answer 1"), "{}", r.body);

    let (tx, rx) = crossbeam_channel::bounded(1);
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || {
            let _ = tx.send(post(&url, &json!({"input": [user("please wait")]})));
        })
    };
    wait_for(T, || (mock.count() == 2).then_some(())).expect("the held request arrived");
    assert!(
        rx.try_recv().is_err(),
        "a held reply was answered before its release"
    );
    assert_eq!(mock.count_prompt("wait"), 1);
    gate.release();
    let r = rx.recv_timeout(T).expect("released reply");
    assert!(r.body.contains("answer 2"), "{}", r.body);
    waiting.join().unwrap();

    mock.set_script(|_| Reply::error(429, "slow down").header("retry-after", "1"));
    let r = post(&url, &json!({"input": [user("third")]}));
    assert_eq!(
        (r.status, r.header("retry-after")),
        (429, Some("1")),
        "{}",
        r.body
    );
    assert_eq!(mock.count(), 3);
}

#[test]
fn stopping_the_model_lets_held_replies_go() {
    let gate = Gate::new();
    let held = gate.clone();
    let mock = MockModel::scripted(move |_| Reply::text("never").held(&held));
    let url = format!("{}/responses", mock.base_url());
    let client = std::thread::spawn(move || post(&url, &json!({"input": [user("x")]})).status);
    wait_for(T, || (mock.count() == 1).then_some(())).expect("request arrived");
    mock.stop();
    assert_eq!(client.join().unwrap(), 503);
}
