//! A built-in stand-in for `codex app-server` (`baa-codexd __stub-app-server`): the same
//! JSONL JSON-RPC shapes for the handful of methods codexd uses. `smoke` runs against it,
//! and the fault-injection tests and the fan-out benchmark use it as a fake child.
//!
//! `BAA_CODEXD_STUB_MODE` picks a fault: `normal` (default), `exit` (exits at once),
//! `exit-while:PATH` (exits at once while PATH exists, else `normal`),
//! `garbage` (interleaves non-JSON lines), `silent` (never answers), `mute` (answers only
//! `initialize`), `no-complete` (never
//! sends `turn/completed`; `thread/read` reports the turn as completed).
//! Turn input keywords: `burst:N` (N deltas, each stamped with `stubSentUs`), `slow[:MS]`
//! (ten deltas MS apart, interruptible), `approval` (asks for a command approval and
//! reports the decision), `huge:N` (one notification line of about N bytes),
//! `huge-request:N` (an approval request of about N bytes, reporting the answer),
//! `write-file` (creates `stub-written-file` in its cwd, to check the umask it runs with),
//! `write-file:NAME` (writes NAME, a plain file name, in the thread's cwd: a turn that
//! changed a file where its session runs),
//! `limit:SECS` (an `account/rateLimits/updated` whose primary window is used up for SECS
//! seconds, as the real child sends from a provider's rate-limit headers),
//! `diff:N` (a turn that ran a command and changed a file, with an N-byte unified diff, as
//! a real coding turn reports), `fail` (a failed turn); anything else is echoed.
//!
//! It speaks stdio, except in mode `listen`, where `--listen unix://PATH` makes it serve
//! WebSocket on that socket instead (`stub_socket`; the turn keyword `drop-connection`
//! then drops the connection mid-turn and finishes the turn once codexd attached again
//! and resumed the thread). In any other mode `--listen` exits with code 2, the way a
//! codex without the unix transport would, which is how the tests reach codexd's fallback
//! to stdio.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Sender};
use serde_json::{json, Value};

use baa::common::ids::new_id;
use baa::common::sync::lock;

struct Active {
    turn_id: String,
    interrupted: Arc<AtomicBool>,
    steers: Arc<Mutex<Vec<String>>>,
}

pub(crate) struct Stub {
    pub(crate) out: Mutex<Out>,
    mode: String,
    /// `thread/resume` calls so far (a dropped connection's turn waits for the next).
    resumes: AtomicU64,
    active: Mutex<HashMap<String, Active>>,
    approvals: Mutex<HashMap<i64, Sender<Value>>>,
    completed: Mutex<HashMap<String, Vec<Value>>>,
    /// Each thread's cwd (from thread/start or resume), where `write-file:NAME` writes.
    cwds: Mutex<HashMap<String, String>>,
    next_server_id: AtomicI64,
}

/// Where the stub's messages go.
pub(crate) enum Out {
    Stdout(io::Stdout),
    /// Listen mode: the current connection's outbound queue (None between connections:
    /// messages are lost, as for an unsubscribed client) and its drop switch.
    Socket {
        tx: Option<Sender<String>>,
        drop: Arc<AtomicBool>,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Stub {
    fn send(&self, v: &Value) {
        let mut out = lock(&self.out);
        match &mut *out {
            Out::Stdout(out) => {
                if self.mode == "garbage" {
                    let _ = out.write_all(b"this is not json {{{\n\x00\x01 garbage\n[1,2,3]\n");
                }
                let _ = writeln!(out, "{v}");
                let _ = out.flush();
            }
            Out::Socket { tx: Some(tx), .. } => {
                let _ = tx.send(v.to_string());
            }
            Out::Socket { tx: None, .. } => {}
        }
    }

    /// Listen mode: drops the current connection abruptly (no close frame).
    fn drop_connection(&self) {
        if let Out::Socket { tx, drop } = &mut *lock(&self.out) {
            *tx = None;
            drop.store(true, Ordering::SeqCst);
        }
    }

    fn notify(&self, method: &str, params: Value) {
        self.send(&json!({"method": method, "params": params, "emittedAtMs": now_ms()}));
    }
}

impl Stub {
    /// A stub in `mode` writing to `out`.
    pub(crate) fn new(mode: String, out: Out) -> Arc<Stub> {
        Arc::new(Stub {
            out: Mutex::new(out),
            mode,
            resumes: AtomicU64::new(0),
            active: Mutex::new(HashMap::new()),
            approvals: Mutex::new(HashMap::new()),
            completed: Mutex::new(HashMap::new()),
            cwds: Mutex::new(HashMap::new()),
            next_server_id: AtomicI64::new(0),
        })
    }
}

/// One JSON-RPC message from codexd (a stdin line or a WebSocket text frame).
pub(crate) fn handle_line(stub: &Arc<Stub>, line: &str) {
    let mode = stub.mode.as_str();
    if mode == "silent" {
        return;
    }
    let Ok(msg) = serde_json::from_str::<Value>(line) else {
        eprintln!("stub app-server: ignoring malformed line");
        return;
    };
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = msg.get("id").cloned();
    if mode == "mute" && method.as_deref() != Some("initialize") {
        return;
    }
    match (method, id) {
        (Some(m), Some(id)) => handle_request(
            stub,
            &m,
            id,
            msg.get("params").cloned().unwrap_or(json!({})),
        ),
        (None, Some(id)) => {
            let tx = id.as_i64().and_then(|i| lock(&stub.approvals).remove(&i));
            if let Some(tx) = tx {
                let _ = tx.send(msg);
            }
        }
        _ => {}
    }
}

fn handle_request(stub: &Arc<Stub>, method: &str, id: Value, params: Value) {
    let reply = |result: Value| stub.send(&json!({"id": id, "result": result}));
    let error = |message: String| {
        stub.send(&json!({"id": id, "error": {"code": -32600, "message": message}}))
    };
    let thread_id = params
        .get("threadId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match method {
        "initialize" => reply(
            json!({"userAgent": "stub-app-server/0.0.0", "codexHome": "", "platformFamily": "unix", "platformOs": std::env::consts::OS}),
        ),
        "thread/start" | "thread/resume" => {
            if method == "thread/resume" {
                stub.resumes.fetch_add(1, Ordering::SeqCst);
            }
            let tid = if method == "thread/start" {
                new_id("thr")
            } else {
                thread_id.clone()
            };
            if let Some(cwd) = params.get("cwd").and_then(Value::as_str) {
                lock(&stub.cwds).insert(tid.clone(), cwd.to_string());
            }
            let thread = json!({"id": tid, "status": {"type": "idle"}, "turns": [], "cwd": params.get("cwd")});
            reply(json!({
                "thread": thread, "model": params.get("model").cloned().unwrap_or(json!("stub-model")),
                "modelProvider": "stub", "cwd": params.get("cwd").cloned().unwrap_or(json!("/")),
                "approvalPolicy": params.get("approvalPolicy").cloned().unwrap_or(json!("on-request")),
                "sandbox": {"type": "readOnly", "networkAccess": false}, "reasoningEffort": null, "serviceTier": null,
            }));
            if method == "thread/start" {
                stub.notify("thread/started", json!({"thread": thread}));
            }
        }
        "thread/read" => {
            let turns = lock(&stub.completed)
                .get(&thread_id)
                .cloned()
                .unwrap_or_default();
            reply(json!({"thread": {"id": thread_id, "turns": turns, "status": {"type": "idle"}}}));
        }
        "turn/start" => {
            let text = input_text(&params);
            let active = lock(&stub.active)
                .get(&thread_id)
                .map(|t| t.turn_id.clone());
            if let Some(active) = active {
                reply(json!({"turn": {"id": active, "status": "inProgress", "items": []}}));
                return;
            }
            let turn_id = new_id("turn");
            let active = Active {
                turn_id: turn_id.clone(),
                interrupted: Arc::new(AtomicBool::new(false)),
                steers: Arc::new(Mutex::new(Vec::new())),
            };
            let (flag, steers) = (active.interrupted.clone(), active.steers.clone());
            // `late-start` mimics the real app-server, whose turn becomes active (and
            // interruptible) only a moment after it answered turn/start.
            let late = stub.mode == "late-start";
            let mut pending = Some(active);
            if !late {
                if let Some(t) = pending.take() {
                    lock(&stub.active).insert(thread_id.clone(), t);
                }
            }
            reply(
                json!({"turn": {"id": turn_id, "status": "inProgress", "items": [], "error": null}}),
            );
            let s = stub.clone();
            let _ = thread::Builder::new()
                .name("stub-turn".into())
                .spawn(move || {
                    if let Some(t) = pending {
                        thread::sleep(Duration::from_millis(300));
                        lock(&s.active).insert(thread_id.clone(), t);
                    }
                    run_turn(&s, &thread_id, &turn_id, &text, &flag, &steers);
                });
        }
        "turn/steer" => {
            let expected = params
                .get("expectedTurnId")
                .and_then(Value::as_str)
                .unwrap_or("");
            let active = lock(&stub.active)
                .get(&thread_id)
                .map(|t| (t.turn_id.clone(), t.steers.clone()));
            match active {
                None => error("no active turn to steer".into()),
                Some((tid, _)) if tid != expected => error(format!(
                    "expected active turn id `{expected}` but found `{tid}`"
                )),
                Some((tid, steers)) => {
                    lock(&steers).push(input_text(&params));
                    reply(json!({"turnId": tid}));
                }
            }
        }
        "turn/interrupt" => {
            let flag = lock(&stub.active)
                .get(&thread_id)
                .map(|t| t.interrupted.clone());
            match flag {
                None => error("no active turn to interrupt".into()),
                Some(f) => {
                    f.store(true, Ordering::SeqCst);
                    reply(json!({}));
                }
            }
        }
        other => error(format!("Invalid request: unknown variant `{other}`")),
    }
}

fn input_text(params: &Value) -> String {
    params
        .get("input")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// `write-file:NAME`: NAME (one path component, nothing that climbs out) in the
/// thread's cwd, holding a line that names it.
fn write_in_thread_cwd(stub: &Stub, thread_id: &str, name: &str) -> String {
    let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    let cwd = lock(&stub.cwds).get(thread_id).cloned();
    match (plain, cwd) {
        (false, _) => format!("write-file:{name}: not a plain file name"),
        (true, None) => format!("write-file:{name}: the thread has no cwd"),
        (true, Some(cwd)) => {
            let path = std::path::Path::new(&cwd).join(name);
            match std::fs::write(&path, format!("{name} written by the stub\n")) {
                Ok(()) => format!("wrote {}", path.display()),
                Err(e) => format!("could not write {}: {e}", path.display()),
            }
        }
    }
}

fn run_turn(
    stub: &Stub,
    thread_id: &str,
    turn_id: &str,
    text: &str,
    interrupted: &AtomicBool,
    steers: &Mutex<Vec<String>>,
) {
    let ids = json!({"threadId": thread_id, "turnId": turn_id});
    let with = |extra: Value| {
        let mut v = ids.clone();
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        v
    };
    stub.notify("turn/started", json!({"threadId": thread_id, "turn": {"id": turn_id, "status": "inProgress", "items": []}}));
    stub.notify(
        "thread/status/changed",
        json!({"threadId": thread_id, "status": {"type": "active", "activeFlags": []}}),
    );
    let item_id = new_id("msg");
    stub.notify(
        "item/started",
        with(json!({"item": {"type": "agentMessage", "id": item_id, "text": ""}})),
    );
    let mut status = "completed";
    let mut error = Value::Null;
    let mut message = format!("stub reply: {text}");
    let delta = |d: &str| {
        stub.notify(
            "item/agentMessage/delta",
            with(json!({"itemId": item_id, "delta": d, "stubSentUs": now_us()})),
        )
    };
    if let Some(n) = text.trim().strip_prefix("burst:") {
        let n: usize = n.trim().parse().unwrap_or(100);
        for i in 0..n {
            delta(&format!("d{i} "));
        }
        message = format!("burst of {n}");
    } else if let Some(rest) = text.trim().strip_prefix("slow") {
        let ms: u64 = rest.trim_start_matches(':').trim().parse().unwrap_or(300);
        for i in 0..10 {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            delta(&format!("s{i} "));
            thread::sleep(Duration::from_millis(ms));
        }
        message = "slow reply".into();
    } else if let Some(n) = text.trim().strip_prefix("huge-request:") {
        let n: usize = n.trim().parse().unwrap_or(1 << 20);
        match ask_approval(stub, thread_id, &with, "x".repeat(n), interrupted) {
            Some(answer) => message = describe_answer(&answer),
            None => status = "interrupted",
        }
    } else if let Some(n) = text.trim().strip_prefix("huge:") {
        let n: usize = n.trim().parse().unwrap_or(1 << 20);
        stub.notify("stub/huge", with(json!({"pad": "x".repeat(n)})));
        message = format!("sent a {n}-byte line");
    } else if let Some(n) = text.trim().strip_prefix("diff:") {
        let n: usize = n.trim().parse().unwrap_or(64 * 1024);
        let command = json!({"type": "commandExecution", "id": new_id("cmd"), "command": "/bin/bash -lc 'make edit'", "exitCode": 0, "durationMs": 3, "status": "completed"});
        stub.notify("item/completed", with(json!({"item": command})));
        let change = json!({"type": "fileChange", "id": new_id("patch"), "status": "completed", "changes": [{"path": "/work/edited.txt", "kind": {"type": "update"}, "diff": "+x"}]});
        stub.notify("item/completed", with(json!({"item": change})));
        let body = "+".to_string() + &"x".repeat(n.saturating_sub(60));
        let diff = format!("diff --git a/edited.txt b/edited.txt\n--- a/edited.txt\n{body}\n");
        stub.notify("turn/diff/updated", with(json!({"diff": diff})));
        message = format!("changed a file ({n}-byte diff)");
    } else if let Some(secs) = text.trim().strip_prefix("limit:") {
        let secs: u64 = secs.trim().parse().unwrap_or(60);
        let resets_at = now_ms() / 1000 + secs;
        stub.notify(
            "account/rateLimits/updated",
            json!({"rateLimits": {"limitId": "codex", "primary": {"usedPercent": 100, "windowDurationMins": 300, "resetsAt": resets_at}}}),
        );
        message = format!("rate limit used up for {secs} s");
    } else if text.trim() == "drop-connection" {
        delta("before the drop, ");
        let resumes = stub.resumes.load(Ordering::SeqCst);
        stub.drop_connection();
        // The turn goes on in here; what follows reaches codexd once it attached again
        // and resumed this thread (bounded: a codexd that never comes back loses it).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stub.resumes.load(Ordering::SeqCst) == resumes
            && !interrupted.load(Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
        delta("after the drop");
        message = "before the drop, after the drop".into();
    } else if text.trim() == "write-file" {
        message = match std::fs::write("stub-written-file", b"written by the stub\n") {
            Ok(()) => "wrote stub-written-file".into(),
            Err(e) => format!("could not write stub-written-file: {e}"),
        };
    } else if let Some(name) = text.trim().strip_prefix("write-file:") {
        message = write_in_thread_cwd(stub, thread_id, name.trim());
    } else if text.contains("approval") {
        match ask_approval(stub, thread_id, &with, String::new(), interrupted) {
            Some(answer) => message = describe_answer(&answer),
            None => status = "interrupted",
        }
    } else if text.contains("fail") {
        error = json!({"message": "stub failure requested", "codexErrorInfo": "other"});
        stub.notify("error", with(json!({"error": error, "willRetry": false})));
        status = "failed";
    } else {
        delta("stub ");
        delta("reply");
    }
    if interrupted.load(Ordering::SeqCst) {
        status = "interrupted";
    }
    let steered: Vec<String> = lock(steers).clone();
    if !steered.is_empty() {
        message = format!("{message} | steered: {}", steered.join(" | "));
    }
    let mut items = Vec::new();
    if status == "completed" {
        let item = json!({"type": "agentMessage", "id": item_id, "text": message});
        stub.notify("item/completed", with(json!({"item": item})));
        items.push(item);
        stub.notify("thread/tokenUsage/updated", with(json!({"tokenUsage": {"total": {"totalTokens": 15, "inputTokens": 10, "outputTokens": 5}}})));
    }
    lock(&stub.active).remove(thread_id);
    let turn =
        json!({"id": turn_id, "items": items, "status": status, "error": error, "durationMs": 1});
    lock(&stub.completed)
        .entry(thread_id.to_string())
        .or_default()
        .push(turn.clone());
    stub.notify(
        "thread/status/changed",
        json!({"threadId": thread_id, "status": {"type": "idle"}}),
    );
    if stub.mode != "no-complete" {
        stub.notify(
            "turn/completed",
            json!({"threadId": thread_id, "turn": turn}),
        );
    }
}

/// Asks codexd for a command approval (with `pad` in its params, to make it large) and
/// waits for the answer; None if the turn was interrupted first.
fn ask_approval(
    stub: &Stub,
    thread_id: &str,
    with: &dyn Fn(Value) -> Value,
    pad: String,
    interrupted: &AtomicBool,
) -> Option<Value> {
    let sid = stub.next_server_id.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = bounded(1);
    lock(&stub.approvals).insert(sid, tx);
    stub.notify("thread/status/changed", json!({"threadId": thread_id, "status": {"type": "active", "activeFlags": ["waitingOnApproval"]}}));
    stub.send(&json!({"id": sid, "method": "item/commandExecution/requestApproval", "params": with(json!({
        "itemId": "call_1", "command": "touch approved_file", "cwd": "/", "availableDecisions": ["accept", "cancel"], "pad": pad
    }))}));
    let answer = loop {
        if interrupted.load(Ordering::SeqCst) {
            break None;
        }
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(50)) {
            break Some(v);
        }
    };
    stub.notify(
        "serverRequest/resolved",
        json!({"threadId": thread_id, "requestId": sid}),
    );
    answer
}

/// The turn's reply for an approval answer: its decision, or the error it carried.
fn describe_answer(answer: &Value) -> String {
    match answer.get("error").filter(|e| !e.is_null()) {
        Some(e) => format!(
            "answered with error: {}",
            e.get("message").and_then(Value::as_str).unwrap_or("?")
        ),
        None => format!(
            "decision: {}",
            answer
                .pointer("/result/decision")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ),
    }
}
