//! The Streamable HTTP transport, JSON answers only: `POST /mcp` carries one JSON-RPC
//! message (or, in 2025-03-26, a batch), `DELETE /mcp` ends a session. The session id is
//! handed out at `initialize` and required after it: missing -> 400, unknown or idled
//! out -> 404 (the client then initializes again). A message that is not JSON-RPC gets
//! 400 with a JSON-RPC error; a well-formed request always gets 200 with its answer,
//! a notification 202 with no body.

use std::time::Instant;

use serde_json::{json, Map, Value};

use baa::common::http::{Request, Response};
use baa::common::strict_json;

use super::jsonrpc::{
    self, classify, Message, RpcError, PARSE_ERROR, SERVER_ERROR, SESSION_NOT_FOUND,
};
use super::methods;
use super::version::{Version, SUPPORTED};
use super::Endpoint;

/// Messages in one batch, at most.
pub const MAX_BATCH: usize = 1000;
pub const SESSION_HEADER: &str = "Mcp-Session-Id";

/// `POST /mcp`.
pub fn post<C>(e: &Endpoint<'_, C>, req: &Request) -> Response {
    if let Some(v) = req.header("mcp-protocol-version") {
        if Version::known(v.trim()).is_none() {
            return refuse(
                400,
                Value::Null,
                RpcError::invalid_request(format!(
                    "Unsupported MCP-Protocol-Version header; this server speaks {} (initialize negotiates one).",
                    SUPPORTED.join(", ")
                ))
                .with_data(json!({ "supported": SUPPORTED })),
            );
        }
    }
    match strict_json::from_slice(&req.body) {
        Err(err) => refuse(
            400,
            Value::Null,
            RpcError::new(PARSE_ERROR, format!("Parse error: {err}.")),
        ),
        Ok(Value::Array(items)) => batch(e, req, items),
        Ok(single) => one(e, req, single),
    }
}

/// `DELETE /mcp`: ends the session named by the header.
pub fn delete<C>(e: &Endpoint<'_, C>, req: &Request) -> Response {
    let Some(id) = req.header(SESSION_HEADER) else {
        return refuse(400, Value::Null, no_session_header());
    };
    if e.sessions.close(id.trim()) {
        Response::new(200, "text/plain; charset=utf-8", Vec::new())
    } else {
        refuse(404, Value::Null, session_not_found())
    }
}

fn one<C>(e: &Endpoint<'_, C>, req: &Request, v: Value) -> Response {
    let (id, method, params) = match classify(v) {
        Err(r) => return refuse(400, r.id, r.error),
        Ok(Message::Request { id, method, params }) => (id, method, params),
        Ok(Message::Notification { .. } | Message::Response) => {
            return match session(e, req, &Value::Null) {
                Ok(_) => accepted(),
                Err(r) => r,
            };
        }
    };
    if method == "initialize" {
        return initialize(e, id, &params);
    }
    let version = match session(e, req, &id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let answer = match methods::answer(e, req, version, &method, params) {
        Ok(result) => jsonrpc::result(&id, &result),
        Err(err) => jsonrpc::error(&id, &err),
    };
    json(200, answer)
}

fn initialize<C>(e: &Endpoint<'_, C>, id: Value, params: &Map<String, Value>) -> Response {
    let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
        let err = RpcError::invalid_params("protocolVersion (a string) is required.");
        return json(200, jsonrpc::error(&id, &err));
    };
    let version = Version::negotiate(requested);
    match e.sessions.open(version, Instant::now()) {
        Ok(sid) => {
            let result = methods::initialize_result(e, version).to_string();
            json(200, jsonrpc::result(&id, &result)).with_header(SESSION_HEADER, sid)
        }
        Err(err) => refuse(503, id, RpcError::new(SERVER_ERROR, err.to_string())),
    }
}

fn batch<C>(e: &Endpoint<'_, C>, req: &Request, items: Vec<Value>) -> Response {
    let version = match session(e, req, &Value::Null) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let too = |message: String| refuse(400, Value::Null, RpcError::invalid_request(message));
    if !version.allows_batches() {
        return too(format!(
            "JSON-RPC batches are not part of MCP {}; send one message per POST (only 2025-03-26 has batches).",
            version.as_str()
        ));
    }
    if items.is_empty() {
        return too("An empty batch.".into());
    }
    if items.len() > MAX_BATCH {
        return too(format!(
            "A batch holds at most {MAX_BATCH} messages; this one has {}.",
            items.len()
        ));
    }
    let mut answers = Vec::new();
    for item in items {
        match classify(item) {
            Err(r) => answers.push(jsonrpc::error(&r.id, &r.error)),
            Ok(Message::Request { id, method, params }) => {
                answers.push(match methods::answer(e, req, version, &method, params) {
                    Ok(result) => jsonrpc::result(&id, &result),
                    Err(err) => jsonrpc::error(&id, &err),
                })
            }
            Ok(_) => {}
        }
    }
    if answers.is_empty() {
        accepted()
    } else {
        json(200, format!("[{}]", answers.join(",")))
    }
}

/// The session's revision, or the answer refusing the request.
fn session<C>(e: &Endpoint<'_, C>, req: &Request, id: &Value) -> Result<Version, Response> {
    let Some(sid) = req.header(SESSION_HEADER) else {
        return Err(refuse(400, id.clone(), no_session_header()));
    };
    e.sessions
        .touch(sid.trim(), Instant::now())
        .ok_or_else(|| refuse(404, id.clone(), session_not_found()))
}

fn no_session_header() -> RpcError {
    RpcError::new(
        SERVER_ERROR,
        "Bad Request: no Mcp-Session-Id header. Send initialize first and echo the Mcp-Session-Id it answers with.",
    )
}

fn session_not_found() -> RpcError {
    RpcError::new(
        SESSION_NOT_FOUND,
        "Session not found: unknown, ended, or unused for too long. Send initialize again.",
    )
}

fn refuse(status: u16, id: Value, err: RpcError) -> Response {
    json(status, jsonrpc::error(&id, &err))
}

fn accepted() -> Response {
    Response::new(202, "text/plain; charset=utf-8", Vec::new())
}

/// A JSON-RPC answer (or batch of them) already written as text.
fn json(status: u16, mut text: String) -> Response {
    text.push('\n');
    Response::new(status, "application/json", text)
}
