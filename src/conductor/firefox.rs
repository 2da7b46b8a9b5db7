//! `/ws/firefox`: the local Firefox extension's two-way channel. On connect the client gets
//! `hello` and a `state_snapshot`; every system-state change is pushed as a new snapshot;
//! `action_request` frames run the same pause/resume/drain as the HTTP routes.
//!
//! The node is reached through the `Node` trait, which the app implements, so this file
//! does not import the app; the app owns a `Bridge` and pushes changes through it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::http::{Reply, Request};
use baa::common::strict_json;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;
use baa::common::ws::{run_session, Hub, SessionOptions};

use crate::config::Config;
use crate::system::{Action, ChangeRequest};

/// Concurrent bridge clients; the extension needs one or two.
pub const MAX_CLIENTS: usize = 8;

/// What a bridge session needs from the node.
pub trait Node: Send + Sync + 'static {
    fn config(&self) -> &Config;
    fn bridge(&self) -> &Bridge;
    fn is_leader(&self) -> bool;
    /// The public system state, as `GET /v1/system/state` returns it.
    fn state(&self) -> Result<Value, ApiError>;
    /// Pause/resume/drain under the same rules as the HTTP routes.
    fn change(&self, action: Action, req: &ChangeRequest) -> Result<Value, ApiError>;
}

/// The bridge's shared state: the hub every client listens on, the client count, and the
/// (version, holder) of the last snapshot pushed, so each change is pushed once whether it
/// came from this process or another conductor.
pub struct Bridge {
    hub: Hub,
    clients: Arc<AtomicUsize>,
    last_pushed: Mutex<Option<(u64, Option<String>)>>,
}

impl Default for Bridge {
    fn default() -> Self {
        Self {
            hub: Hub::new(64),
            clients: Arc::new(AtomicUsize::new(0)),
            last_pushed: Mutex::new(None),
        }
    }
}

/// The key a snapshot is pushed under.
fn push_key(state: &Value) -> (u64, Option<String>) {
    (
        state["version"].as_u64().unwrap_or(0),
        state["holder_id"].as_str().map(str::to_string),
    )
}

impl Bridge {
    /// Pushes `state` to clients unless that exact (version, holder) went out already.
    pub fn push(&self, state: &Value) {
        let key = push_key(state);
        let mut last = lock(&self.last_pushed);
        if last.as_ref() == Some(&key) {
            return;
        }
        *last = Some(key);
        let frame = json!({ "type": "state_snapshot", "data": state });
        self.hub.broadcast(&frame.to_string());
    }

    /// Pushes `{type: "task_update", data: {task_id, status, …}}` for a task that changed.
    pub fn push_task(&self, t: &crate::tasks::model::Task) {
        let frame = json!({
            "type": "task_update",
            "data": {
                "task_id": t.task_id,
                "title": t.title,
                "status": t.status,
                "priority": t.priority,
                "current_run_id": t.current_run_id,
                "attempt": t.runs.last().map(|r| r.attempt),
                "steps_done": t.steps_done,
                "steps_total": t.steps_total,
                "waiting": t.waiting,
                "error": t.error,
                "next_attempt_at": t.next_attempt_at,
                "updated_at": t.updated_at,
                "branch": t.workspace.as_ref().and_then(|w| w.branch.clone()),
                "result": t.result,
            },
        });
        self.hub.broadcast(&frame.to_string());
    }

    /// Records a state clients already have (sent on connect) without pushing it.
    pub fn mark_pushed(&self, state: &Value) {
        *lock(&self.last_pushed) = Some(push_key(state));
    }
}

pub fn upgrade<N: Node>(node: &Arc<N>, req: &Request) -> Result<Reply, ApiError> {
    if let Some(origin) = req.header("origin") {
        let allowed = node
            .config()
            .firefox_origins
            .iter()
            .any(|o| o == origin.trim());
        if !allowed {
            return Err(ApiError::new(
                403,
                "forbidden_origin",
                "This WebSocket accepts only the configured Firefox extension origin (BAA_FIREFOX_ALLOWED_ORIGINS) or local tools without an Origin.",
            ));
        }
    }
    let clients = node.bridge().clients.clone();
    if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
        clients.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::new(
            503,
            "too_many_clients",
            format!("At most {MAX_CLIENTS} Firefox bridge clients may connect."),
        ));
    }
    let node = node.clone();
    Ok(Reply::WebSocket(Box::new(move |ws| {
        let _slot = ClientSlot(clients);
        let sub = node.bridge().hub.subscribe();
        let initial = vec![hello(&*node).to_string(), snapshot(&*node).to_string()];
        let end = run_session(
            ws,
            initial,
            &sub.rx,
            |text| vec![handle_frame(&*node, text).to_string()],
            &SessionOptions::default(),
        );
        log::debug!("firefox bridge client ended: {end}");
    })))
}

struct ClientSlot(Arc<AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hello(node: &impl Node) -> Value {
    let cfg = node.config();
    json!({
        "type": "hello",
        "protocol": "baa.firefox.v1",
        "service": "baa-conductor",
        "version": cfg.version,
        "identity": cfg.identity(),
        "node_id": cfg.node_id,
        "role": if node.is_leader() { "leader" } else { "standby" },
        "server_time": now_rfc3339(),
        "actions": ["pause", "resume", "drain"],
        "client_messages": ["action_request", "ping"],
    })
}

/// The frame pushed on connect and after every change.
pub fn snapshot(node: &impl Node) -> Value {
    match node.state() {
        Ok(state) => json!({ "type": "state_snapshot", "data": state }),
        Err(e) => json!({ "type": "error", "error": e.code, "message": e.message }),
    }
}

fn error_frame(code: &str, message: &str, request_id: Option<&Value>) -> Value {
    json!({ "type": "error", "error": code, "message": message, "requestId": request_id })
}

/// Answers one client frame. Bad frames get an `error` frame; the connection stays.
pub fn handle_frame(node: &impl Node, text: &str) -> Value {
    // Read as strictly as an HTTP body: a frame naming `action` twice is refused, not
    // settled by whichever comes last.
    let msg: Value = match strict_json::from_slice(text.as_bytes()) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error_frame("invalid_json", "Frames must be JSON objects.", None),
        Err(e) => {
            let message = format!("Frames must be JSON objects: {e}.");
            return error_frame("invalid_json", &message, None);
        }
    };
    let request_id = msg.get("requestId").or_else(|| msg.get("request_id"));
    match msg.get("type").and_then(Value::as_str) {
        Some("action_request") => {
            let Some(action) = msg
                .get("action")
                .and_then(Value::as_str)
                .and_then(Action::parse)
            else {
                return json!({
                    "type": "action_result", "requestId": request_id, "ok": false,
                    "error": { "error": "invalid_action", "message": "action must be pause, resume or drain." },
                });
            };
            let change = match ChangeRequest::from_json(msg.as_object().expect("object")) {
                Ok(c) => c,
                Err(e) => {
                    return json!({ "type": "action_result", "requestId": request_id, "ok": false, "error": { "error": e.code, "message": e.message } })
                }
            };
            match node.change(action, &change) {
                Ok(state) => {
                    json!({ "type": "action_result", "requestId": request_id, "ok": true, "data": state })
                }
                Err(e) => {
                    json!({ "type": "action_result", "requestId": request_id, "ok": false, "error": { "error": e.code, "message": e.message } })
                }
            }
        }
        Some("ping") => {
            json!({ "type": "pong", "requestId": request_id, "server_time": now_rfc3339() })
        }
        Some(other) => error_frame(
            "unknown_type",
            &format!("Unknown message type {other:?}; send action_request or ping."),
            request_id,
        ),
        None => error_frame("missing_type", "Frames need a string \"type\".", request_id),
    }
}
