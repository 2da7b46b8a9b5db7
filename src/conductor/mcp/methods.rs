//! The MCP methods this server answers, once a request is well-formed and its session
//! known. `initialize` is the transport's (it opens the session).

use serde_json::{json, Map, Value};

use super::jsonrpc::{RpcError, METHOD_NOT_FOUND};
use super::tool_call::{self, Caller};
use super::version::Version;
use super::{resources, tools, Endpoint};
use baa::common::http::Request;

/// What the server says about itself at `initialize`.
pub fn initialize_result<C>(e: &Endpoint<'_, C>, version: Version) -> Value {
    json!({
        "protocolVersion": version.as_str(),
        "capabilities": {
            "tools": { "listChanged": false },
            "resources": { "subscribe": false, "listChanged": false },
        },
        "serverInfo": { "name": "baa-conductor", "title": "baa-conductor", "version": e.server_version },
        "instructions": "baa-conductor runs Codex tasks on this node. tasks_create queues one \
            (title and prompt); tasks_read, tasks_logs_read and the resource baa://tasks/{id} \
            follow it; system_state tells whether the node runs, is paused or drains. Tools that \
            change something need the shared token on the MCP connection.",
    })
}

/// Answers one request on a session at `version`: the result as JSON text.
pub fn answer<C>(
    e: &Endpoint<'_, C>,
    outer: &Request,
    version: Version,
    method: &str,
    mut params: Map<String, Value>,
) -> Result<String, RpcError> {
    let text = |v: Value| Ok(v.to_string());
    match method {
        "ping" => Ok("{}".into()),
        "tools/list" => {
            let structured = version.has_structured_output();
            let list: Vec<Value> = tools::offered(e.routes, e.host_ops)
                .map(|t| t.to_json(structured))
                .collect();
            text(json!({ "tools": list }))
        }
        "tools/call" => {
            let args = match params.remove("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(a)) => a,
                Some(_) => return Err(RpcError::invalid_params("arguments must be an object.")),
            };
            let name = string(&params, "name")?;
            let Some(tool) = tools::find(e.routes, e.host_ops, name) else {
                return Err(RpcError::invalid_params(format!(
                    "Unknown tool {name:?}; tools/list names them."
                )));
            };
            let caller = Caller {
                routes: e.routes,
                ctx: e.ctx,
                outer,
                token: e.token,
                structured: version.has_structured_output(),
            };
            Ok(tool_call::call(&caller, &tool, args))
        }
        "resources/list" => text(resources::list()),
        "resources/templates/list" => text(resources::templates()),
        "resources/read" => {
            let uri = string(&params, "uri")?;
            resources::read(e.routes, e.ctx, outer, uri).and_then(text)
        }
        "initialize" => Err(RpcError::invalid_request(
            "initialize opens a session; send it alone, without an Mcp-Session-Id, not in a batch.",
        )),
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {other:?}."),
        )),
    }
}

/// A required string parameter.
fn string<'p>(params: &'p Map<String, Value>, name: &str) -> Result<&'p str, RpcError> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(RpcError::invalid_params(format!(
            "{name} must be a string."
        ))),
        None => Err(RpcError::invalid_params(format!("{name} is required."))),
    }
}
