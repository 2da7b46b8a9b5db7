//! MCP resources: read-only views a client can attach as context. Each is a route of the
//! table read in-process, like a tool: `baa://system/state` (system.state), `baa://status`
//! (the automation mode and the tasks summary), `baa://tasks/{id}` (tasks.read) and
//! `baa://tasks/{id}/log` (tasks.logs.read).

use serde_json::{json, Value};

use baa::common::client::encode_component;
use baa::common::http::request::percent_decode;
use baa::common::http::router::Route;
use baa::common::http::Request;

use super::invoke::{self, Call, Failure};
use super::jsonrpc::{RpcError, INTERNAL_ERROR, RESOURCE_NOT_FOUND};

const JSON: &str = "application/json";

/// `resources/list`: the fixed URIs.
pub fn list() -> Value {
    json!({ "resources": [
        { "uri": "baa://system/state", "name": "system_state", "title": "Automation mode",
          "description": "Automation mode (running, paused, draining) with who set it and why.", "mimeType": JSON },
        { "uri": "baa://status", "name": "status", "title": "Node status",
          "description": "The automation mode and the task summary: counts by status, what runs now, the last outcomes.", "mimeType": JSON },
    ]})
}

/// `resources/templates/list`: the per-task URIs.
pub fn templates() -> Value {
    json!({ "resourceTemplates": [
        { "uriTemplate": "baa://tasks/{id}", "name": "task", "title": "Task",
          "description": "One task with its runs (status, steps, result, error).", "mimeType": JSON },
        { "uriTemplate": "baa://tasks/{id}/log", "name": "task_log", "title": "Task log",
          "description": "A task's last 200 log lines.", "mimeType": JSON },
    ]})
}

/// `resources/read` of `uri`: `{contents: [{uri, mimeType, text}]}`.
pub fn read<C>(
    routes: &[Route<C>],
    ctx: &C,
    outer: &Request,
    uri: &str,
) -> Result<Value, RpcError> {
    let get = |path: String| {
        invoke::run(
            routes,
            ctx,
            Call {
                method: "GET",
                path,
                query: String::new(),
                body: None,
                outer,
            },
        )
    };
    let data = match uri.strip_prefix("baa://") {
        Some("system/state") => get("/v1/system/state".into()),
        Some("status") => get("/v1/system/state".into()).and_then(|system| {
            let tasks = get("/v1/tasks/summary".into())?;
            Ok(format!(r#"{{"system":{system},"tasks":{tasks}}}"#))
        }),
        Some(rest) => match task_uri(rest) {
            Some((id, false)) => get(format!("/v1/tasks/{}", encode_component(&id))),
            Some((id, true)) => get(format!("/v1/tasks/{}/logs", encode_component(&id))),
            None => return Err(not_found(uri)),
        },
        None => return Err(not_found(uri)),
    }
    .map_err(|f| refused(uri, &f))?;
    Ok(json!({ "contents": [{ "uri": uri, "mimeType": JSON, "text": data }] }))
}

/// `tasks/<id>` -> (id, false); `tasks/<id>/log` -> (id, true).
fn task_uri(rest: &str) -> Option<(String, bool)> {
    let rest = rest.strip_prefix("tasks/")?;
    let (id, log) = match rest.strip_suffix("/log") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    let id = percent_decode(id);
    (!id.is_empty() && !id.contains('/')).then_some((id, log))
}

fn not_found(uri: &str) -> RpcError {
    RpcError::new(
        RESOURCE_NOT_FOUND,
        "Resource not found: the URIs are baa://system/state, baa://status, baa://tasks/{id} and baa://tasks/{id}/log.",
    )
    .with_data(json!({ "uri": uri }))
}

/// A route's refusal: a 404 is a missing resource, anything else the route's own error.
fn refused(uri: &str, f: &Failure) -> RpcError {
    let code = if f.status == 404 {
        RESOURCE_NOT_FOUND
    } else {
        INTERNAL_ERROR
    };
    RpcError::new(code, f.text())
        .with_data(json!({ "uri": uri, "status": f.status, "code": f.code }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_uris() {
        assert_eq!(task_uri("tasks/t1"), Some(("t1".into(), false)));
        assert_eq!(task_uri("tasks/t1/log"), Some(("t1".into(), true)));
        assert_eq!(task_uri("tasks/a%20b"), Some(("a b".into(), false)));
        for bad in ["tasks/", "tasks//log", "tasks/a/b", "task/x", "tasks/a%2Fb"] {
            assert_eq!(task_uri(bad), None, "{bad}");
        }
    }
}
