//! A stand-in for an OpenAI Responses-API model provider, so the real `codex app-server` can run
//! fully offline: integration tests point Codex at it, and codexd's `--demo` mode can too.
//!
//! It speaks just enough HTTP/1.1 to answer `POST {base_url}/responses` with a
//! `text/event-stream` body. What it streams is decided by keywords in the text of the LAST user
//! message of the request (see [`Behaviour`]); the frames are the minimal contract Codex 0.169.0
//! needs (docs/codex-app-server-notes.md records what was observed).
//!
//! Only std, serde_json and log are used, so the module has no test-only dependencies. Every
//! thread it starts is joined by [`MockModel::stop`] (or `Drop`), and every socket read has a
//! timeout, so a misbehaving client can delay shutdown by at most [`READ_DEADLINE`].

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::sync::lock;

/// Gap between deltas of a `slow` reply. Short enough that a test sees deltas quickly, long
/// enough that it can interrupt or steer mid-stream.
pub const SLOW_DELTA_INTERVAL: Duration = Duration::from_millis(300);
/// Number of deltas in a `slow` reply: about ten seconds of streaming.
pub const SLOW_DELTA_COUNT: usize = 34;
/// The command the mock asks Codex to run for `tool` / `approval` prompts.
pub const TOOL_COMMAND: &str = "echo hi";
/// Requests kept for [`MockModel::requests`]; older ones are dropped.
pub const LOG_CAP: usize = 1000;
/// Upper bound on reading one request (head and body) before the connection is dropped.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Granularity at which blocked reads and sleeps re-check the stop flag.
const POLL: Duration = Duration::from_millis(100);
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Codex sends the whole conversation plus tool schemas every time; real bodies are tens of KB,
/// long threads can reach a few MB.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One HTTP request as the mock received it, for assertions.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The body parsed as JSON; `None` when it was empty or not JSON.
    pub body: Option<Value>,
}

/// What the mock does for one `/responses` request. Chosen by [`Behaviour::for_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Stream `text` as a few deltas and complete. The default: `mock reply: <prompt>`.
    Text(String),
    /// Prompt contains `slow`: [`SLOW_DELTA_COUNT`] deltas, one per [`SLOW_DELTA_INTERVAL`],
    /// abandoned as soon as the client goes away.
    Slow,
    /// Prompt contains `tool` or `approval`: one `exec_command` function call running
    /// [`TOOL_COMMAND`]. For `approval` the call also asks for sandbox escalation, which is what
    /// makes Codex request approval under the default `on-request` policy.
    ToolCall { call_id: String, escalate: bool },
    /// The request's last input item is a `function_call_output`: finish the turn with a text
    /// that quotes the tool output.
    AfterTool { output: String },
    /// Prompt contains `fail500`: HTTP 500 with a JSON error body.
    Fail500,
}

impl Behaviour {
    /// Picks the behaviour from a parsed `/responses` request body. Never panics: anything it
    /// cannot make sense of falls back to echoing an empty prompt.
    pub fn for_request(body: &Value) -> Behaviour {
        let input = body.get("input").and_then(Value::as_array);
        let items: &[Value] = input.map(Vec::as_slice).unwrap_or(&[]);

        // The follow-up request after a tool call still carries the same user prompt (with the
        // keyword), so the function output must be checked first or the mock would loop.
        if let Some(last) = items.last() {
            if last.get("type").and_then(Value::as_str) == Some("function_call_output") {
                return Behaviour::AfterTool {
                    output: function_output_text(last),
                };
            }
        }

        let prompt = last_user_text(items);
        if prompt.contains("fail500") {
            Behaviour::Fail500
        } else if prompt.contains("slow") {
            Behaviour::Slow
        } else if prompt.contains("approval") || prompt.contains("tool") {
            let calls_so_far = items
                .iter()
                .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
                .count();
            Behaviour::ToolCall {
                call_id: format!("call_mock_{}", calls_so_far + 1),
                escalate: prompt.contains("approval"),
            }
        } else {
            Behaviour::Text(format!("mock reply: {prompt}"))
        }
    }
}

/// The deterministic reply for a prompt without keywords; tests compare against this.
pub fn reply_for_prompt(prompt: &str) -> String {
    format!("mock reply: {prompt}")
}

/// The final text after a tool call whose output was `output`.
///
/// Codex wraps command output in a header ("Chunk ID: …\nWall time: …\nProcess exited with
/// code 0\n…\nOutput:\n<stdout>"); only the part after `Output:` is quoted, so the reply does
/// not change with timings.
pub fn reply_after_tool(output: &str) -> String {
    let stdout = match output.find("Output:\n") {
        Some(i) => &output[i + "Output:\n".len()..],
        None => output,
    };
    format!("mock tool result: {}", stdout.trim())
}

/// Concatenated text of the last `role: "user"` message. Codex also sends user-role messages of
/// its own (environment context, AGENTS.md), but always before the prompt of the turn.
fn last_user_text(items: &[Value]) -> String {
    let Some(msg) = items
        .iter()
        .rev()
        .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match msg.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `function_call_output.output` is a string in Codex 0.169, but the Responses API also allows
/// an array of content parts; accept both.
fn function_output_text(item: &Value) -> String {
    match item.get("output") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

struct Shared {
    stop: AtomicBool,
    next_id: AtomicU64,
    log: Mutex<Vec<RecordedRequest>>,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

/// A running mock provider. Dropping it stops it.
pub struct MockModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl MockModel {
    /// Binds `addr` (use `"127.0.0.1:0"` for a free port) and starts serving.
    pub fn start(addr: &str) -> io::Result<MockModel> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            log: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("mock-model-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))?;
        log::info!("mock model listening on {addr}");
        Ok(MockModel {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The provider `base_url` for Codex; it appends `/responses`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Bodies of the `/responses` requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path.ends_with("/responses"))
            .filter_map(|r| r.body.clone())
            .collect()
    }

    /// Every request received so far, whatever its path.
    pub fn all_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Stops accepting, ends in-flight streams and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout; a throwaway connection wakes it so it sees the flag.
        let wake = if self.addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], self.addr.port()))
        } else {
            self.addr
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = accept.join();
        let conns: Vec<_> = lock(&self.shared.conns).drain(..).collect();
        for c in conns {
            let _ = c.join();
        }
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("mock model accept failed: {e}");
                continue;
            }
        };
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("mock-model-conn".into())
            .spawn(move || handle_connection(stream, &conn_shared));
        let mut conns = lock(&shared.conns);
        // Reap finished connections so a long-lived mock does not accumulate handles.
        conns.retain(|h| !h.is_finished());
        match spawned {
            Ok(h) => conns.push(h),
            Err(e) => log::warn!("mock model could not spawn a connection thread: {e}"),
        }
    }
}

/// A parsed request head plus body.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Why a request could not be read. `Closed` means there is nobody left to answer.
enum ReadError {
    Closed,
    Bad(String),
}

fn handle_connection(mut stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    // Each response ends with `Connection: close`, so one request per connection is enough.
    let req = match read_request(&mut stream, &shared.stop) {
        Ok(r) => r,
        Err(ReadError::Closed) => return,
        Err(ReadError::Bad(msg)) => {
            log::warn!("mock model: bad request: {msg}");
            let _ = write_json(
                &mut stream,
                400,
                "Bad Request",
                &error_body(&msg, "invalid_request_error"),
            );
            return;
        }
    };
    let parsed: Option<Value> = if req.body.is_empty() {
        None
    } else {
        serde_json::from_slice(&req.body).ok()
    };
    {
        let mut log = lock(&shared.log);
        // Bounded, so a long-lived mock (codexd's demo mode) does not grow without limit.
        if log.len() >= LOG_CAP {
            log.remove(0);
        }
        log.push(RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            body: parsed.clone(),
        });
    }
    log::debug!("mock model: {} {}", req.method, req.path);

    let path = req.path.split('?').next().unwrap_or("");
    let result = if req.method == "POST" && path.ends_with("/responses") {
        match parsed {
            Some(body) if body.is_object() => respond(&mut stream, shared, &body),
            _ => write_json(
                &mut stream,
                400,
                "Bad Request",
                &error_body("request body is not a JSON object", "invalid_request_error"),
            ),
        }
    } else {
        write_json(
            &mut stream,
            404,
            "Not Found",
            &error_body(
                &format!("mock model has no route {} {}", req.method, path),
                "not_found",
            ),
        )
    };
    if let Err(e) = result {
        // Usually the client hung up mid-stream (interrupt); not an error of the mock.
        log::debug!("mock model: connection ended: {e}");
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn read_request(stream: &mut TcpStream, stop: &AtomicBool) -> Result<Request, ReadError> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ReadError::Bad("request head too large".into()));
        }
        if !read_some(stream, &mut buf, stop, deadline)? {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Bad("connection closed inside the request head".into())
            });
        }
    };
    let mut body = buf.split_off(head_end);
    let head = std::str::from_utf8(&buf)
        .map_err(|_| ReadError::Bad("request head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!(
            "malformed request line {request_line:?}"
        )));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !path.starts_with('/') {
        return Err(ReadError::Bad(format!(
            "malformed request line {request_line:?}"
        )));
    }
    let mut content_length = 0usize;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(format!("malformed header {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .map_err(|_| ReadError::Bad(format!("bad content-length {value:?}")))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Bad(format!(
                "transfer-encoding {value:?} not supported"
            )));
        } else if name.eq_ignore_ascii_case("content-encoding") && value != "identity" {
            return Err(ReadError::Bad(format!(
                "content-encoding {value:?} not supported"
            )));
        }
    }
    if content_length > MAX_BODY_BYTES {
        return Err(ReadError::Bad(format!(
            "body of {content_length} bytes is too large"
        )));
    }
    while body.len() < content_length {
        if !read_some(stream, &mut body, stop, deadline)? {
            return Err(ReadError::Bad("connection closed inside the body".into()));
        }
    }
    body.truncate(content_length);
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        body,
    })
}

/// Reads what is available into `buf`. `Ok(false)` on EOF. Read timeouts only re-check the stop
/// flag and the overall deadline, so a silent client cannot hold the thread forever.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &AtomicBool,
    deadline: Instant,
) -> Result<bool, ReadError> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return Err(ReadError::Closed);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

fn write_json(stream: &mut TcpStream, status: u16, reason: &str, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

fn respond(stream: &mut TcpStream, shared: &Shared, body: &Value) -> io::Result<()> {
    let behaviour = Behaviour::for_request(body);
    log::debug!("mock model: behaviour {behaviour:?}");
    if behaviour == Behaviour::Fail500 {
        return write_json(
            stream,
            500,
            "Internal Server Error",
            &error_body(
                "mock model: simulated internal server error (fail500)",
                "server_error",
            ),
        );
    }
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model");
    // No content-length: the stream ends when the mock closes the connection, which is how a
    // plain HTTP/1.1 response without chunking delimits its body.
    stream.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
    )?;
    let mut sse = Sse {
        stream,
        stop: &shared.stop,
    };
    let response_id = format!("resp_mock_{n}");
    sse.send(&json!({
        "type": "response.created",
        "response": {"id": response_id, "object": "response", "model": model, "status": "in_progress"},
    }))?;
    match behaviour {
        Behaviour::Text(text) => {
            let chunks = split_for_deltas(&text);
            sse.message(&format!("msg_mock_{n}"), &chunks, Duration::ZERO)?;
        }
        Behaviour::AfterTool { output } => {
            let text = reply_after_tool(&output);
            sse.message(
                &format!("msg_mock_{n}"),
                &split_for_deltas(&text),
                Duration::ZERO,
            )?;
        }
        Behaviour::Slow => {
            let chunks: Vec<String> = (1..=SLOW_DELTA_COUNT)
                .map(|i| format!("tick {i} "))
                .collect();
            sse.message(&format!("msg_mock_{n}"), &chunks, SLOW_DELTA_INTERVAL)?;
        }
        Behaviour::ToolCall { call_id, escalate } => {
            let mut args = json!({"cmd": TOOL_COMMAND});
            if escalate {
                args["sandbox_permissions"] = json!("require_escalated");
                args["justification"] = json!("mock model asks for approval");
            }
            let item = json!({
                "type": "function_call",
                "id": format!("fc_mock_{n}"),
                "call_id": call_id,
                "name": "exec_command",
                "arguments": args.to_string(),
                "status": "completed",
            });
            sse.send(
                &json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
            )?;
            sse.send(
                &json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            )?;
        }
        Behaviour::Fail500 => {}
    }
    sse.send(&json!({
        "type": "response.completed",
        "response": {
            "id": response_id,
            "object": "response",
            "model": model,
            "status": "completed",
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 15,
            },
        },
    }))
}

/// Splits a reply into about three word-aligned deltas, so clients see real streaming.
fn split_for_deltas(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let per = words.len().div_ceil(3).max(1);
    words.chunks(per).map(|c| c.concat()).collect()
}

struct Sse<'a> {
    stream: &'a mut TcpStream,
    stop: &'a AtomicBool,
}

impl Sse<'_> {
    fn send(&mut self, event: &Value) -> io::Result<()> {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        let mut frame = String::new();
        let _ = write!(frame, "event: {kind}\ndata: {event}\n\n");
        self.stream.write_all(frame.as_bytes())?;
        self.stream.flush()
    }

    /// Streams one assistant message: `added`, one delta per chunk (`gap` apart), `done`.
    fn message(&mut self, id: &str, chunks: &[String], gap: Duration) -> io::Result<()> {
        self.send(&json!({
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "role": "assistant", "id": id, "status": "in_progress", "content": []},
        }))?;
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                self.pause(gap)?;
            }
            self.send(&json!({
                "type": "response.output_text.delta",
                "item_id": id,
                "output_index": 0,
                "content_index": 0,
                "delta": chunk,
            }))?;
        }
        let text: String = chunks.concat();
        self.send(&json!({
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "message",
                "role": "assistant",
                "id": id,
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        }))
    }

    /// Sleeps in small steps so a stop request or a vanished client ends the stream promptly.
    /// A peer that closed is noticed by a zero-byte peek, since writes to it may still succeed.
    fn pause(&mut self, gap: Duration) -> io::Result<()> {
        let until = Instant::now() + gap;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(io::Error::other("mock model stopping"));
            }
            if self.peer_closed() {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "client went away",
                ));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            thread::sleep((until - now).min(POLL));
        }
    }

    fn peer_closed(&self) -> bool {
        let mut probe = [0u8; 1];
        let _ = self.stream.set_nonblocking(true);
        let closed = match self.stream.peek(&mut probe) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        closed
    }
}

/// Writes `dir/config.toml` so that `CODEX_HOME=dir codex app-server` uses the mock at
/// `base_url` and needs no network, account or API key.
///
/// Defaults are `approval_policy = "never"` and `sandbox_mode = "workspace-write"`; tests that
/// want approvals override them per thread (`thread/start.approvalPolicy`). Retries are off so a
/// `fail500` turn fails at once, and a stream that stalls fails after 3 s instead of minutes.
pub fn write_codex_home(dir: &Path, base_url: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.toml"), codex_config_toml(base_url))
}

/// The text [`write_codex_home`] writes.
pub fn codex_config_toml(base_url: &str) -> String {
    format!(
        r#"# Written by baa's mock_model: run codex fully offline against a local mock provider.
# gpt-5.5 is a slug codex knows, so it offers exec_command and apply_patch without warnings.
model = "gpt-5.5"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

# Without this, app-server startup tries to sync curated plugins from github.com and chatgpt.com.
[features]
plugins = false

[model_providers.mock]
name = "mock"
base_url = {base_url}
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 3000
"#,
        base_url = toml_string(base_url)
    )
}

/// A TOML basic string. Only the escapes TOML requires; a URL rarely needs any.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Value {
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    }

    #[test]
    fn keywords_pick_behaviour_from_last_user_message() {
        let body = json!({"input": [user("slow please"), user("hello there")]});
        assert_eq!(
            Behaviour::for_request(&body),
            Behaviour::Text("mock reply: hello there".into())
        );
        let cases = [
            ("go slow", Behaviour::Slow),
            ("fail500 now", Behaviour::Fail500),
            (
                "run a tool",
                Behaviour::ToolCall {
                    call_id: "call_mock_1".into(),
                    escalate: false,
                },
            ),
            (
                "needs approval",
                Behaviour::ToolCall {
                    call_id: "call_mock_1".into(),
                    escalate: true,
                },
            ),
        ];
        for (prompt, want) in cases {
            let got = Behaviour::for_request(&json!({"input": [user(prompt)]}));
            assert_eq!(got, want, "prompt {prompt:?}");
        }
    }

    #[test]
    fn function_output_ends_the_tool_loop() {
        let body = json!({"input": [
            user("run a tool"),
            {"type": "function_call", "call_id": "call_mock_1", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_mock_1", "output": "hi\n"},
        ]});
        assert_eq!(
            Behaviour::for_request(&body),
            Behaviour::AfterTool {
                output: "hi\n".into()
            }
        );
        assert_eq!(reply_after_tool("hi\n"), "mock tool result: hi");
        let wrapped = "Chunk ID: 2dcb10\nWall time: 0.0000 seconds\nProcess exited with code 0\nOutput:\nhi\n";
        assert_eq!(reply_after_tool(wrapped), "mock tool result: hi");
    }

    #[test]
    fn malformed_bodies_do_not_panic() {
        for body in [
            json!(null),
            json!([1, 2]),
            json!({"input": 3}),
            json!({"input": [1, {"role": 5}]}),
        ] {
            assert_eq!(
                Behaviour::for_request(&body),
                Behaviour::Text("mock reply: ".into())
            );
        }
    }

    #[test]
    fn deltas_concatenate_to_the_reply() {
        let text = reply_for_prompt("say something nice");
        let chunks = split_for_deltas(&text);
        assert_eq!(chunks.len(), 3, "chunks: {chunks:?}");
        assert_eq!(chunks.concat(), text);
        assert_eq!(split_for_deltas(""), Vec::<String>::new());
    }

    #[test]
    fn toml_string_escapes_quotes_and_controls() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\u000Ay""#);
    }

    fn roundtrip(raw: &[u8]) -> String {
        let mock = MockModel::start("127.0.0.1:0").expect("start mock");
        let mut s = TcpStream::connect(mock.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(raw).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        mock.stop();
        out
    }

    #[test]
    fn malformed_requests_get_400() {
        let out = roundtrip(b"GARBAGE\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400"), "got {out:?}");
        let out = roundtrip(b"POST /v1/responses HTTP/1.1\r\ncontent-length: 5\r\n\r\n{nope");
        assert!(out.starts_with("HTTP/1.1 400"), "got {out:?}");
    }

    #[test]
    fn text_reply_streams_sse_frames() {
        let body = json!({"model": "m", "input": [user("hello")]}).to_string();
        let raw = format!(
            "POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let out = roundtrip(raw.as_bytes());
        assert!(out.starts_with("HTTP/1.1 200"), "got {out:?}");
        for kind in [
            "response.created",
            "response.output_item.added",
            "response.output_text.delta",
            "response.output_item.done",
            "response.completed",
        ] {
            assert!(
                out.contains(&format!("event: {kind}\n")),
                "missing {kind} in {out:?}"
            );
        }
        assert!(out.contains("mock reply: hello"), "got {out:?}");
    }
}
