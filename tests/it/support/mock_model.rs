//! The tests' stand-in for an OpenAI Responses-API provider, so the real `codex app-server`
//! runs fully offline (`baa::common::codex_home` points it here). It is our own HTTP server
//! (`baa::common::http`, streamed replies) sending the event shapes of
//! `baa::common::responses`, the same ones codexd's demo model sends.
//!
//! What it answers is a script: a function from one request ([`Call`]) to a [`Reply`]. The
//! default script, [`keywords`], picks by words in the prompt, which is what the protocol
//! tests rely on (docs/codex-app-server-notes.md). A test installs its own with
//! [`MockModel::scripted`] or [`MockModel::set_script`] to answer request by request, add
//! headers (rate limits), delay a reply, or hold it until a [`Gate`] opens. Every request
//! is recorded for assertions.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use baa::common::http::{
    Handler, Reply as HttpReply, Request, Response, Server, ServerConfig, ServerHandle, Stream,
};
use baa::common::responses;
use baa::common::sync::lock;
use serde_json::{json, Value};

/// Gap between the deltas of a `slow` reply: short enough that a test sees deltas quickly,
/// long enough that it can interrupt or steer mid-stream.
pub const SLOW_DELTA_INTERVAL: Duration = Duration::from_millis(300);
/// Deltas in a `slow` reply: about ten seconds of streaming.
pub const SLOW_DELTA_COUNT: usize = 34;
/// The command [`keywords`] asks codex to run for `tool` / `approval` prompts.
pub const TOOL_COMMAND: &str = "echo hi";
/// Requests kept for [`MockModel::requests`]; older ones are dropped.
const LOG_CAP: usize = 1000;
/// Codex sends the whole conversation plus tool schemas every time: tens of KB usually, a
/// few MB on a long thread.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How often a held or delayed reply looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// One `/responses` request, as a script sees it.
#[derive(Debug, Clone)]
pub struct Call {
    /// 1-based position among the `/responses` requests this model received.
    pub n: usize,
    pub body: Value,
    /// Text of the last user message: the turn's prompt.
    pub prompt: String,
}

impl Call {
    /// The output of the tool call this request follows up, when its last input item is
    /// one (`function_call_output`, or `custom_tool_call_output` for `apply_patch`).
    pub fn tool_output(&self) -> Option<String> {
        let last = self.input().last()?;
        match last.get("type").and_then(Value::as_str) {
            Some("function_call_output" | "custom_tool_call_output") => {
                Some(responses::text_of(last.get("output")))
            }
            _ => None,
        }
    }

    /// Tool calls already in the conversation; [`keywords`] numbers the next call id by it.
    pub fn tool_calls_so_far(&self) -> usize {
        self.input()
            .iter()
            .filter(|i| {
                matches!(
                    i.get("type").and_then(Value::as_str),
                    Some("function_call" | "custom_tool_call")
                )
            })
            .count()
    }

    fn input(&self) -> &[Value] {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// What one reply carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An assistant message: one delta per chunk, `gap` apart.
    Message { chunks: Vec<String>, gap: Duration },
    /// A function call (`exec_command`); `arguments` goes out as its JSON text.
    FunctionCall {
        call_id: String,
        name: String,
        arguments: Value,
    },
    /// A custom tool call: `apply_patch` takes the patch text as `input`.
    CustomToolCall {
        call_id: String,
        name: String,
        input: String,
    },
    /// Any other output item, sent as is (e.g. a `tool_search_call`).
    Item(Value),
    /// No stream: this HTTP status with an OpenAI-style JSON error body.
    Error { status: u16, message: String },
}

/// A script's answer to one request: what to send, and how.
#[derive(Debug, Clone)]
pub struct Reply {
    pub output: Output,
    /// Extra response headers (e.g. rate-limit headers).
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer only once this gate is released.
    pub hold: Option<Gate>,
    /// A message reply stops before chunk N (after N deltas went out) until the gate is
    /// released: the turn is in flight, mid-stream, for as long as a test needs.
    pub pause_before: Option<(usize, Gate)>,
    /// The `usage` of `response.completed` (`None`: the fixed default).
    pub usage: Option<Value>,
}

impl Reply {
    pub fn new(output: Output) -> Reply {
        Reply {
            output,
            headers: Vec::new(),
            delay: Duration::ZERO,
            hold: None,
            pause_before: None,
            usage: None,
        }
    }

    /// `text` as about three deltas.
    pub fn text(text: impl AsRef<str>) -> Reply {
        Reply::chunks(responses::split_for_deltas(text.as_ref()), Duration::ZERO)
    }

    pub fn chunks(chunks: Vec<String>, gap: Duration) -> Reply {
        Reply::new(Output::Message { chunks, gap })
    }

    /// Asks codex to run `cmd` (its `exec_command` tool).
    pub fn exec(call_id: impl Into<String>, cmd: &str) -> Reply {
        Reply::new(Output::FunctionCall {
            call_id: call_id.into(),
            name: "exec_command".into(),
            arguments: json!({"cmd": cmd}),
        })
    }

    /// Like [`exec`](Self::exec) but asking for sandbox escalation, which makes codex
    /// request approval under `on-request`; `justification` becomes the request's reason.
    pub fn exec_escalated(call_id: impl Into<String>, cmd: &str, justification: &str) -> Reply {
        Reply::new(Output::FunctionCall {
            call_id: call_id.into(),
            name: "exec_command".into(),
            arguments: json!({
                "cmd": cmd,
                "sandbox_permissions": "require_escalated",
                "justification": justification,
            }),
        })
    }

    /// Asks codex to apply `patch` (`*** Begin Patch` … `*** End Patch`).
    pub fn apply_patch(call_id: impl Into<String>, patch: impl Into<String>) -> Reply {
        Reply::new(Output::CustomToolCall {
            call_id: call_id.into(),
            name: "apply_patch".into(),
            input: patch.into(),
        })
    }

    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::new(Output::Error {
            status,
            message: message.into(),
        })
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The response's token usage: input (of which cached), output (of which reasoning).
    pub fn usage(mut self, input: u64, cached: u64, output: u64, reasoning: u64) -> Reply {
        self.usage = Some(responses::usage_json(input, cached, output, reasoning));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn held(mut self, gate: &Gate) -> Reply {
        self.hold = Some(gate.clone());
        self
    }

    /// Stops the stream before chunk `n` until `gate` is released.
    pub fn paused_before(mut self, n: usize, gate: &Gate) -> Reply {
        self.pause_before = Some((n, gate.clone()));
        self
    }
}

/// Holds the replies given it until [`release`](Gate::release), so a test decides exactly
/// how long a turn stays in flight. Stopping the model lets held replies go (as 503s).
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn release(&self) {
        *lock(&self.0 .0) = true;
        self.0 .1.notify_all();
    }

    pub fn is_open(&self) -> bool {
        *lock(&self.0 .0)
    }

    /// Waits for the release; false if `stop` was set first.
    fn wait(&self, stop: &AtomicBool) -> bool {
        let (released, cv) = &*self.0;
        let mut open = lock(released);
        while !*open {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            open = cv
                .wait_timeout(open, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Decides the reply to each `/responses` request.
pub type Script = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

/// The default script, by words in the prompt:
///
/// | request | reply |
/// | --- | --- |
/// | last input item is a tool output | text [`reply_after_tool`] (checked first: the follow-up still carries the prompt's keyword) |
/// | `fail500` | HTTP 500 |
/// | `slow` | [`SLOW_DELTA_COUNT`] deltas `tick N `, [`SLOW_DELTA_INTERVAL`] apart |
/// | `approval` | [`Reply::exec_escalated`] of [`TOOL_COMMAND`] |
/// | `tool` | [`Reply::exec`] of [`TOOL_COMMAND`] |
/// | anything else | text [`reply_for_prompt`] |
pub fn keywords(call: &Call) -> Reply {
    if let Some(output) = call.tool_output() {
        return Reply::text(reply_after_tool(&output));
    }
    let prompt = &call.prompt;
    if prompt.contains("fail500") {
        Reply::error(500, "mock model: simulated internal server error (fail500)")
    } else if prompt.contains("slow") {
        let ticks = (1..=SLOW_DELTA_COUNT).map(|i| format!("tick {i} "));
        Reply::chunks(ticks.collect(), SLOW_DELTA_INTERVAL)
    } else if prompt.contains("approval") || prompt.contains("tool") {
        let call_id = format!("call_mock_{}", call.tool_calls_so_far() + 1);
        if prompt.contains("approval") {
            Reply::exec_escalated(call_id, TOOL_COMMAND, "mock model asks for approval")
        } else {
            Reply::exec(call_id, TOOL_COMMAND)
        }
    } else {
        Reply::text(reply_for_prompt(prompt))
    }
}

/// An `apply_patch` input that adds the file `path` (absolute) holding `line`.
pub fn add_file_patch(path: &std::path::Path, line: &str) -> String {
    format!(
        "*** Begin Patch\n*** Add File: {}\n+{line}\n*** End Patch\n",
        path.display()
    )
}

/// True for the request codex sends to run a review (`review/start`): its prompt asks for
/// prioritized findings.
pub fn is_review_request(call: &Call) -> bool {
    call.prompt.contains("provide prioritized findings")
}

/// What a reviewing model answers: the JSON codex expects from a review, with one finding
/// titled `title` about `file`. Codex turns it into the review text of the turn.
pub fn review_findings(title: &str, body: &str, file: &std::path::Path) -> Reply {
    Reply::text(
        json!({
            "findings": [{
                "title": title,
                "body": body,
                "confidence_score": 0.9,
                "priority": 1,
                "code_location": {"absolute_file_path": file, "line_range": {"start": 1, "end": 1}},
            }],
            "overall_correctness": "patch is incorrect",
            "overall_explanation": "one problem found",
            "overall_confidence_score": 0.8,
        })
        .to_string(),
    )
}

/// The reply [`keywords`] gives a prompt without keywords; tests compare against it.
pub fn reply_for_prompt(prompt: &str) -> String {
    format!("mock reply: {prompt}")
}

/// The text [`keywords`] answers after a tool whose output was `output`. Codex wraps
/// command output in a header ("Chunk ID: …\nWall time: …\nProcess exited with code
/// 0\n…\nOutput:\n<stdout>"); only the part after `Output:` is quoted, so the reply does not
/// change with timings.
pub fn reply_after_tool(output: &str) -> String {
    let stdout = match output.find("Output:\n") {
        Some(i) => &output[i + "Output:\n".len()..],
        None => output,
    };
    format!("mock tool result: {}", stdout.trim())
}

/// One HTTP request as the model received it, whatever its path.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The body as JSON; `None` when empty or not JSON.
    pub body: Option<Value>,
}

struct Shared {
    stop: AtomicBool,
    script: Mutex<Script>,
    calls: AtomicUsize,
    log: Mutex<Vec<Recorded>>,
}

/// A running mock provider on a free loopback port. Dropping it stops it.
pub struct MockModel {
    server: Option<ServerHandle>,
    shared: Arc<Shared>,
}

impl MockModel {
    /// Answers by [`keywords`].
    #[track_caller]
    pub fn start() -> MockModel {
        MockModel::scripted(keywords)
    }

    /// Answers by `script`.
    #[track_caller]
    pub fn scripted(script: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> MockModel {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            script: Mutex::new(Arc::new(script)),
            calls: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let handler: Handler = Arc::new(move |req: &Request| answer(&s, req));
        let cfg = ServerConfig {
            name: "mock-model".into(),
            max_connections: 64,
            max_body_bytes: MAX_BODY_BYTES,
            ..ServerConfig::default()
        };
        let server = match Server::bind("127.0.0.1:0", cfg, handler) {
            Ok(server) => server,
            Err(e) => panic!("mock model: cannot listen: {e}"),
        };
        MockModel {
            server: Some(server),
            shared,
        }
    }

    /// Answers the requests from now on by `script`.
    pub fn set_script(&self, script: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        *lock(&self.shared.script) = Arc::new(script);
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server
            .as_ref()
            .expect("mock model running")
            .local_addr()
    }

    /// The provider `base_url` for codex, which appends `/responses`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr())
    }

    /// Bodies of the `/responses` requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path.ends_with("/responses"))
            .filter_map(|r| r.body.clone())
            .collect()
    }

    /// How many `/responses` requests arrived (including ones still being answered).
    pub fn count(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// How many turns started with a prompt containing `needle`: requests whose last input
    /// item is that user message itself (a turn's follow-ups after a tool call end with the
    /// tool's output instead). "Each step's prompt reached the model exactly once" is this
    /// count being 1.
    pub fn count_prompt_starts(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|b| {
                let last = b
                    .get("input")
                    .and_then(Value::as_array)
                    .and_then(|items| items.last());
                last.is_some_and(|i| {
                    i.get("role").and_then(Value::as_str) == Some("user")
                        && responses::text_of(i.get("content")).contains(needle)
                })
            })
            .count()
    }

    /// How many `/responses` requests had a prompt containing `needle`.
    pub fn count_prompt(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|b| responses::last_user_text(b).contains(needle))
            .count()
    }

    /// Every request received so far, whatever its path.
    pub fn all_requests(&self) -> Vec<Recorded> {
        lock(&self.shared.log).clone()
    }

    /// Releases held replies, ends streams in flight and joins the server's threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(server) = self.server.take() {
            server.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn answer(shared: &Shared, req: &Request) -> HttpReply {
    let body: Option<Value> = serde_json::from_slice(&req.body).ok();
    {
        let mut log = lock(&shared.log);
        if log.len() >= LOG_CAP {
            log.remove(0);
        }
        log.push(Recorded {
            method: req.method.clone(),
            path: req.path.clone(),
            body: body.clone(),
        });
    }
    if req.method != "POST" || !req.path.ends_with("/responses") {
        let message = format!("mock model has no route {} {}", req.method, req.path);
        return error(404, &message, &[]);
    }
    let Some(body) = body.filter(Value::is_object) else {
        return error(400, "request body is not a JSON object", &[]);
    };
    let n = shared.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let call = Call {
        n,
        prompt: responses::last_user_text(&body),
        body,
    };
    // Cloned out so the script runs without the lock (it may call set_script).
    let script = lock(&shared.script).clone();
    let reply = script(&call);
    if let Some(gate) = &reply.hold {
        if !gate.wait(&shared.stop) {
            return error(503, "mock model stopping", &reply.headers);
        }
    }
    let until = Instant::now() + reply.delay;
    while Instant::now() < until {
        if shared.stop.load(Ordering::SeqCst) {
            return error(503, "mock model stopping", &reply.headers);
        }
        std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
    }
    let model = responses::model_of(&call.body);
    let headers = reply.headers;
    let pause_before = reply.pause_before;
    let usage = reply.usage;
    let output = match reply.output {
        Output::Error { status, message } => return error(status, &message, &headers),
        other => other,
    };
    let mut stream = Stream::events(move |w| {
        let id = format!("resp_mock_{n}");
        responses::send_created(w, &id, &model)?;
        match output {
            Output::Message { chunks, gap } => {
                responses::send_message_paced(w, &format!("msg_mock_{n}"), &chunks, |w, i| {
                    if let Some((at, gate)) = &pause_before {
                        // Polled through the stream's pause, which also ends on a client
                        // that went away or a stopping model.
                        while i == *at && !gate.is_open() {
                            w.pause(POLL)?;
                        }
                    }
                    if i > 0 && !gap.is_zero() {
                        w.pause(gap)?;
                    }
                    Ok(())
                })?
            }
            Output::FunctionCall {
                call_id,
                name,
                arguments,
            } => responses::send_item(
                w,
                &json!({
                    "type": "function_call",
                    "id": format!("fc_mock_{n}"),
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments.to_string(),
                    "status": "completed",
                }),
            )?,
            Output::CustomToolCall {
                call_id,
                name,
                input,
            } => responses::send_item(
                w,
                &json!({
                    "type": "custom_tool_call",
                    "id": format!("ctc_mock_{n}"),
                    "call_id": call_id,
                    "name": name,
                    "input": input,
                    "status": "completed",
                }),
            )?,
            Output::Item(item) => responses::send_item(w, &item)?,
            Output::Error { .. } => {}
        }
        match &usage {
            Some(u) => responses::send_completed_with(w, &id, &model, u),
            None => responses::send_completed(w, &id, &model),
        }
    });
    for (k, v) in headers {
        stream = stream.with_header(&k, v);
    }
    HttpReply::Stream(stream)
}

/// An OpenAI-style error answer: `server_error` for 5xx, `invalid_request_error` otherwise.
fn error(status: u16, message: &str, headers: &[(String, String)]) -> HttpReply {
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let mut resp = Response::json_value(status, &responses::error_body(message, kind), false);
    for (k, v) in headers {
        resp = resp.with_header(k, v.clone());
    }
    HttpReply::Http(resp)
}
