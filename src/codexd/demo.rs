//! Demo mode's model: a loopback stand-in for an OpenAI Responses-API provider, served by
//! the common HTTP layer inside codexd, so a first run completes turns with no credentials
//! and no network. Every prompt is answered `mock reply: <prompt>`, streamed as a few
//! deltas; a prompt containing `slow` streams for about ten seconds (to try an interrupt);
//! a prompt asking to "create the file NAME" makes codex add NAME (one line) in the turn's
//! cwd with `apply_patch`, so a task leaves a change to review; a prompt asking to "run the
//! command `CMD`" makes codex run CMD with its `exec_command` tool, which a session or task
//! under `approval_policy` `untrusted` must first ask approval for — the approval flow, tried
//! with no credentials. After the command, the model quotes its last line, or says it was
//! not run (declined).
//!
//! It remembers only a short summary of its last requests (`GET <modelBaseUrl>/requests`):
//! codex sends the whole conversation with every turn, and a model that kept every request
//! grew codexd to 1 GB after 60 turns of 200 KB.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use baa::common::http::Stream;
use baa::common::http::{Handler, Reply, Request, Response, Server, ServerConfig, ServerHandle};
use baa::common::responses;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

/// Requests remembered for `GET /requests`; older ones are dropped.
pub const LOG_CAP: usize = 20;
/// Characters of each remembered prompt.
pub const PROMPT_CHARS: usize = 200;
/// A `slow` reply: this many deltas, this far apart (about ten seconds).
const SLOW_DELTAS: usize = 34;
const SLOW_GAP: Duration = Duration::from_millis(300);
/// Codex sends the whole conversation plus tool schemas every time: tens of KB usually, a
/// few MB on a long thread. The body is parsed and dropped; only its summary is kept.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What the model remembers of one request.
#[derive(Debug, Clone)]
struct Seen {
    at: String,
    bytes: usize,
    prompt: String,
}

/// The last [`LOG_CAP`] requests and how many there were in all.
#[derive(Default)]
struct RequestLog {
    total: u64,
    recent: VecDeque<Seen>,
}

impl RequestLog {
    /// Records a request; returns its 1-based number, which also names its response ids.
    fn push(&mut self, seen: Seen) -> u64 {
        if self.recent.len() == LOG_CAP {
            self.recent.pop_front();
        }
        self.recent.push_back(seen);
        self.total += 1;
        self.total
    }

    fn to_json(&self) -> Value {
        let recent: Vec<Value> = self
            .recent
            .iter()
            .map(|s| json!({"at": s.at, "bytes": s.bytes, "prompt": s.prompt}))
            .collect();
        json!({"count": self.total, "kept": LOG_CAP, "recent": recent})
    }
}

type SharedLog = Arc<Mutex<RequestLog>>;

/// A running demo model; `stop` ends it.
pub struct DemoModel {
    server: ServerHandle,
    base_url: String,
}

impl DemoModel {
    /// Serves on a free `127.0.0.1` port.
    pub fn start() -> io::Result<DemoModel> {
        let log = SharedLog::default();
        let l = log.clone();
        let handler: Handler = Arc::new(move |req: &Request| answer(req, &l));
        let cfg = ServerConfig {
            name: "codexd-demo".into(),
            max_connections: 32,
            max_body_bytes: MAX_BODY_BYTES,
            ..ServerConfig::default()
        };
        let server = Server::bind("127.0.0.1:0", cfg, handler)?;
        let base_url = format!("http://{}/v1", server.local_addr());
        Ok(DemoModel { server, base_url })
    }

    /// The provider `base_url` for codex, which appends `/responses`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops accepting and ends streams in flight (they notice within a poll interval).
    pub fn stop(self) {
        self.server.stop(Duration::from_secs(2));
    }
}

fn answer(req: &Request, log: &SharedLog) -> Reply {
    let path = req.path.as_str();
    if req.method == "GET" && path.ends_with("/requests") {
        return Reply::Http(Response::json_value(200, &lock(log).to_json(), true));
    }
    if req.method != "POST" || !path.ends_with("/responses") {
        let message = format!("the demo model has no route {} {path}", req.method);
        return error(404, &message, "not_found");
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(
                400,
                "request body is not a JSON object",
                "invalid_request_error",
            )
        }
    };
    let prompt = responses::last_user_text(&body);
    let n = lock(log).push(Seen {
        at: now_rfc3339(),
        bytes: req.body.len(),
        prompt: prompt.chars().take(PROMPT_CHARS).collect(),
    });
    let model = responses::model_of(&body);
    let tool_output = last_tool_output(&body);
    let after_tool = tool_output.is_some();
    if let Some(cmd) = command_to_run(&prompt).filter(|_| !after_tool) {
        return Reply::Stream(Stream::events(move |w| {
            let id = format!("resp_demo_{n}");
            responses::send_created(w, &id, &model)?;
            responses::send_item(
                w,
                &json!({"type": "function_call", "id": format!("fc_demo_{n}"), "call_id": format!("call_demo_{n}"),
                        "name": "exec_command", "arguments": json!({"cmd": cmd}).to_string(), "status": "completed"}),
            )?;
            responses::send_completed(w, &id, &model)
        }));
    }
    if let Some(name) = file_to_create(&prompt).filter(|_| !after_tool) {
        let patch =
            format!("*** Begin Patch\n*** Add File: {name}\n+{CREATED_LINE}\n*** End Patch\n");
        return Reply::Stream(Stream::events(move |w| {
            let id = format!("resp_demo_{n}");
            responses::send_created(w, &id, &model)?;
            responses::send_item(
                w,
                &json!({"type": "custom_tool_call", "id": format!("ctc_demo_{n}"), "call_id": format!("call_demo_{n}"),
                        "name": "apply_patch", "input": patch, "status": "completed"}),
            )?;
            responses::send_completed(w, &id, &model)
        }));
    }
    let (chunks, gap) = if prompt.contains("slow") {
        let ticks = (1..=SLOW_DELTAS).map(|i| format!("tick {i} ")).collect();
        (ticks, SLOW_GAP)
    } else if let (Some(cmd), Some(output)) = (command_to_run(&prompt), &tool_output) {
        let text = match command_said(output) {
            Said::Ran(line) => format!("mock reply: ran `{cmd}`: {line}"),
            Said::NotRun(line) => format!("mock reply: `{cmd}` was not run: {line}"),
        };
        (responses::split_for_deltas(&text), Duration::ZERO)
    } else if let Some(name) = file_to_create(&prompt) {
        let text = format!("mock reply: created {name}");
        (responses::split_for_deltas(&text), Duration::ZERO)
    } else {
        let text = format!("mock reply: {prompt}");
        (responses::split_for_deltas(&text), Duration::ZERO)
    };
    Reply::Stream(Stream::events(move |w| {
        let id = format!("resp_demo_{n}");
        responses::send_created(w, &id, &model)?;
        responses::send_message(w, &format!("msg_demo_{n}"), &chunks, gap)?;
        responses::send_completed(w, &id, &model)
    }))
}

/// The line a created file holds.
pub const CREATED_LINE: &str = "hello from the demo model";

/// `NAME` of a prompt that says "create the file NAME" (any case): a plain file name of
/// letters, digits, `.`, `_` and `-`, so the patch can only add a file in the turn's cwd.
fn file_to_create(prompt: &str) -> Option<String> {
    const ASK: &str = "create the file ";
    let lower = prompt.to_ascii_lowercase();
    let at = lower.find(ASK)? + ASK.len();
    let name: String = prompt[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    let name = name.trim_end_matches('.');
    (!name.is_empty() && !name.starts_with('.') && name.len() <= 100).then(|| name.to_string())
}

/// `CMD` of a prompt that says "run the command `CMD`" (any case; CMD between backticks,
/// one line, at most 200 characters).
fn command_to_run(prompt: &str) -> Option<String> {
    const ASK: &str = "run the command `";
    let lower = prompt.to_ascii_lowercase();
    let at = lower.find(ASK)? + ASK.len();
    let cmd = &prompt[at..][..prompt[at..].find('`')?];
    let ok = !cmd.trim().is_empty() && cmd.len() <= 200 && !cmd.contains('\n');
    ok.then(|| cmd.trim().to_string())
}

/// The output of the tool that ran, when the request's last input item is one (after a
/// tool call codex sends the call and its output back).
fn last_tool_output(body: &Value) -> Option<String> {
    let last = body.get("input")?.as_array()?.last()?;
    match last.get("type")?.as_str()? {
        "function_call_output" | "custom_tool_call_output" => {}
        _ => return None,
    }
    Some(responses::text_of(last.get("output")))
}

/// What became of a command, from codex's tool output.
#[derive(Debug, PartialEq)]
enum Said {
    /// It ran: the last line it printed. Codex puts a header (wall time, exit code) before
    /// `Output:`, and a login shell may print its own noise first.
    Ran(String),
    /// It did not run (declined, or it could not start): the last line of codex's text,
    /// which says why (`… rejected by user …`).
    NotRun(String),
}

fn command_said(output: &str) -> Said {
    let last = |text: &str| {
        let line = text.lines().rev().find(|l| !l.trim().is_empty());
        line.unwrap_or("(nothing)").trim().to_string()
    };
    match output.find("Output:\n") {
        Some(i) => Said::Ran(last(&output[i + "Output:\n".len()..])),
        None => Said::NotRun(last(output)),
    }
}

fn error(status: u16, message: &str, kind: &str) -> Reply {
    let body = responses::error_body(message, kind);
    Reply::Http(Response::json_value(status, &body, false))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// Sends one request to the model and reads the whole (close-delimited) answer.
    fn exchange(model: &DemoModel, method: &str, path: &str, body: &[u8]) -> String {
        let addr = model.server.local_addr();
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read answer");
        out
    }

    /// A turn as codex sends it: the conversation so far (`history` bytes of it), then the
    /// prompt as the last user message.
    fn turn_body(history: usize, prompt: &str) -> Vec<u8> {
        json!({"model": "gpt-5.5", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "h".repeat(history)}]},
            {"role": "user", "content": [{"type": "input_text", "text": prompt}]},
        ]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn create_the_file_asks_codex_to_add_it_then_says_so() {
        assert_eq!(
            file_to_create("Create the file hello.txt, please").as_deref(),
            Some("hello.txt")
        );
        assert_eq!(file_to_create("create the file ../x"), None);
        assert_eq!(file_to_create("create the file .env"), None);
        assert_eq!(file_to_create("say hello"), None);
        let model = DemoModel::start().expect("start");
        let out = exchange(
            &model,
            "POST",
            "/v1/responses",
            &turn_body(0, "Create the file hello.txt"),
        );
        assert!(
            out.contains("\"custom_tool_call\"") && out.contains("*** Add File: hello.txt"),
            "{out}"
        );
        let after: Vec<u8> = json!({"model": "m", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Create the file hello.txt"}]},
            {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "…"},
            {"type": "custom_tool_call_output", "call_id": "c", "output": "Success."},
        ]})
        .to_string()
        .into_bytes();
        let out = exchange(&model, "POST", "/v1/responses", &after);
        assert!(!out.contains("custom_tool_call\""), "{out}");
        assert!(out.contains("created hello.txt"), "{out}");
        model.stop();
    }

    #[test]
    fn run_the_command_asks_codex_to_exec_it_then_quotes_its_last_line() {
        assert_eq!(
            command_to_run("Run the command `echo hi` please").as_deref(),
            Some("echo hi")
        );
        assert_eq!(command_to_run("run the command `echo hi"), None);
        assert_eq!(command_to_run("run the command ``"), None);
        assert_eq!(command_to_run("say hello"), None);
        let model = DemoModel::start().expect("start");
        let out = exchange(
            &model,
            "POST",
            "/v1/responses",
            &turn_body(0, "Run the command `echo hi`"),
        );
        assert!(
            out.contains(r#""name":"exec_command""#) && out.contains(r#"{\"cmd\":\"echo hi\"}"#),
            "{out}"
        );
        let after: Vec<u8> = json!({"model": "m", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Run the command `echo hi`"}]},
            {"type": "function_call", "call_id": "c", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c",
             "output": "Chunk ID: 1\nProcess exited with code 0\nOutput:\nshell noise\nhi\n"},
        ]})
        .to_string()
        .into_bytes();
        let out = exchange(&model, "POST", "/v1/responses", &after);
        assert!(!out.contains("function_call\""), "{out}");
        assert!(out.contains("mock reply: ran `echo hi`: hi"), "{out}");
        assert_eq!(
            command_said("exec_command failed: Rejected(\"rejected by user\")"),
            Said::NotRun("exec_command failed: Rejected(\"rejected by user\")".into())
        );
        model.stop();
    }

    #[test]
    fn answers_mock_reply_as_a_stream_of_responses_events() {
        let model = DemoModel::start().expect("start");
        let out = exchange(&model, "POST", "/v1/responses", &turn_body(0, "Say hello"));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Type: text/event-stream\r\n"), "{out}");
        let events: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            events.first().copied(),
            Some("response.created"),
            "{events:?}"
        );
        assert_eq!(
            events.last().copied(),
            Some("response.completed"),
            "{events:?}"
        );
        assert!(out.contains(r#""text":"mock reply: Say hello""#), "{out}");
        model.stop();
    }

    #[test]
    fn bad_requests_get_openai_style_errors() {
        let model = DemoModel::start().expect("start");
        let out = exchange(&model, "POST", "/v1/responses", b"{nope");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(out.contains("invalid_request_error"), "{out}");
        let out = exchange(&model, "GET", "/v1/models", b"");
        assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
        model.stop();
    }

    /// Regression: the demo model kept every request body, and codex sends the whole
    /// conversation each turn, so 60 turns of 200 KB grew codexd to 1 GB. Now it keeps a
    /// short summary of the last [`LOG_CAP`] requests.
    #[test]
    fn demo_model_kept_every_request_1_gb_after_60_turns_of_200_kb() {
        let model = DemoModel::start().expect("start");
        let long_prompt = "y".repeat(PROMPT_CHARS * 2);
        let mut sizes = Vec::new();
        for turn in 1..=60 {
            // A 200 KB turn each time; codex would resend the earlier ones too, which only
            // makes the request bigger, not what is kept of it.
            let body = turn_body(200 * 1024 + turn, &long_prompt);
            sizes.push(body.len());
            let out = exchange(&model, "POST", "/v1/responses", &body);
            assert!(
                out.contains("event: response.completed\n"),
                "turn {turn}: {}",
                &out[..out.len().min(300)]
            );
        }
        let served = exchange(&model, "GET", "/v1/requests", b"");
        let (_, body) = served.split_once("\r\n\r\n").expect("head");
        let log: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(log["count"], 60, "{log}");
        let recent = log["recent"].as_array().expect("recent");
        let bytes: Vec<usize> = recent
            .iter()
            .map(|r| r["bytes"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            bytes,
            sizes[60 - LOG_CAP..],
            "the last {LOG_CAP} requests, oldest first"
        );
        for r in recent {
            assert_eq!(r["prompt"].as_str().unwrap().len(), PROMPT_CHARS, "{r}");
        }
        assert!(body.len() < 16 * 1024, "the log holds {} bytes", body.len());
        model.stop();
    }
}
