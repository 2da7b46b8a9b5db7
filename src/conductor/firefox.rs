//! `/ws/firefox`: the local Firefox extension's two-way channel. On connect the client gets
//! `hello` and a `state_snapshot`; every system-state change is pushed as a new snapshot;
//! `action_request` frames run the same pause/resume/drain as the HTTP routes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::http::{Reply, Request};
use baa::common::time::now_rfc3339;
use baa::common::ws::{run_session, SessionOptions};

use crate::app::App;
use crate::system::{Action, ChangeRequest};

/// Concurrent bridge clients; the extension needs one or two.
pub const MAX_CLIENTS: usize = 8;

pub fn upgrade(app: &Arc<App>, req: &Request) -> Result<Reply, ApiError> {
    if let Some(origin) = req.header("origin") {
        let allowed = app.cfg.firefox_origins.iter().any(|o| o == origin.trim());
        if !allowed {
            return Err(ApiError::new(
                403,
                "forbidden_origin",
                "This WebSocket accepts only the configured Firefox extension origin (BAA_FIREFOX_ALLOWED_ORIGINS) or local tools without an Origin.",
            ));
        }
    }
    let clients = app.firefox_clients.clone();
    if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
        clients.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::new(
            503,
            "too_many_clients",
            format!("At most {MAX_CLIENTS} Firefox bridge clients may connect."),
        ));
    }
    let app = app.clone();
    Ok(Reply::WebSocket(Box::new(move |ws| {
        let _slot = ClientSlot(clients);
        let sub = app.hub.subscribe();
        let initial = vec![hello(&app).to_string(), snapshot(&app).to_string()];
        let end = run_session(
            ws,
            initial,
            &sub.rx,
            |text| vec![handle_frame(&app, text).to_string()],
            &SessionOptions::default(),
        );
        log::debug!("firefox bridge client ended: {end:?}");
    })))
}

struct ClientSlot(Arc<AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hello(app: &App) -> Value {
    json!({
        "type": "hello",
        "protocol": "baa.firefox.v1",
        "service": "baa-conductor",
        "version": app.cfg.version,
        "identity": app.cfg.identity(),
        "node_id": app.cfg.node_id,
        "role": if app.lease.status().is_leader { "leader" } else { "standby" },
        "server_time": now_rfc3339(),
        "actions": ["pause", "resume", "drain"],
        "client_messages": ["action_request", "ping"],
    })
}

/// The frame pushed on connect and after every change.
pub fn snapshot(app: &App) -> Value {
    match app.system_state() {
        Ok(state) => json!({ "type": "state_snapshot", "data": state }),
        Err(e) => json!({ "type": "error", "error": e.code, "message": e.message }),
    }
}

fn error_frame(code: &str, message: &str, request_id: Option<&Value>) -> Value {
    json!({ "type": "error", "error": code, "message": message, "requestId": request_id })
}

/// Answers one client frame. Bad frames get an `error` frame; the connection stays.
pub fn handle_frame(app: &App, text: &str) -> Value {
    let msg: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error_frame("invalid_json", "Frames must be JSON objects.", None),
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
            match app.change_system(action, &change) {
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
