//! `tools/call`: the arguments checked and laid out as the route's path, query and body,
//! the token demanded for a write, the route run, and its answer (or refusal) turned into
//! a tool result. A refusal is an `isError` result whose text is the API's code and
//! message, so the model can correct itself; never a JSON-RPC error.

use serde_json::{json, Map, Value};

use baa::common::client::encode_component;
use baa::common::http::router::Route;
use baa::common::http::Request;

use super::args::Place;
use super::invoke::{self, Call, Failure};
use super::tools::{name, Tool};
use crate::host_ops::{self, Guarded};

const WRITES: Guarded = Guarded {
    what: "MCP write tools",
    disabled_code: "token_not_configured",
};

/// How to send the token, appended to a refusal for want of it.
const TOKEN_HINT: &str = "Send Authorization: Bearer <token> on the MCP HTTP request, the \
    token being the node's BAA_SHARED_TOKEN. Codex: in ~/.codex/config.toml under \
    [mcp_servers.baa] set bearer_token_env_var = \"BAA_MCP_TOKEN\" and export BAA_MCP_TOKEN; \
    `baa-conductor mcp-config` prints the whole snippet.";

/// What the call needs from the endpoint.
pub struct Caller<'a, C> {
    pub routes: &'a [Route<C>],
    pub ctx: &'a C,
    pub outer: &'a Request,
    pub token: Option<&'a str>,
    /// Put the data in `structuredContent` too (2025-06-18 and later).
    pub structured: bool,
}

/// The `CallToolResult` of `tool` with `args`, as JSON text.
pub fn call<C>(c: &Caller<'_, C>, tool: &Tool<'_, C>, args: Map<String, Value>) -> String {
    let tool_name = || name(tool.route.id());
    if tool.needs_token() {
        if let Err(e) = host_ops::authorize_for(c.outer, c.token, &WRITES) {
            let mut f = Failure::from(e);
            log::info!(
                "mcp: {} from {} refused: {}",
                tool_name(),
                c.outer.remote,
                f.code
            );
            f.message = if f.status == 401 {
                format!("{} needs the shared token. {TOKEN_HINT}", tool_name())
            } else {
                format!(
                    "{} Set BAA_SHARED_TOKEN on the conductor, then {TOKEN_HINT}",
                    f.message
                )
            };
            return failed(&f);
        }
    }
    let call = match lay_out(tool, args, c.outer) {
        Ok(call) => call,
        Err(message) => {
            return failed(&Failure {
                status: 400,
                code: "invalid_arguments".into(),
                message: format!("{}: {message}", tool_name()),
                details: json!({ "arguments": tool.arg_names() }),
            })
        }
    };
    let outcome = invoke::run(c.routes, c.ctx, call);
    // A change made through MCP is in the log like one made over HTTP by hand would be
    // in the shell history: who (the peer) and what.
    if tool.needs_token() {
        match &outcome {
            Ok(_) => log::info!("mcp: {} from {} done", tool_name(), c.outer.remote),
            Err(f) => log::info!(
                "mcp: {} from {} refused: {}",
                tool_name(),
                c.outer.remote,
                f.code
            ),
        }
    }
    match outcome {
        Ok(data) => succeeded(&data, c.structured),
        Err(f) => failed(&f),
    }
}

/// The arguments as a request: path parameters substituted, query args as text, body
/// args as a JSON object. Unknown names and wrong types are refused here; values are the
/// route's to judge.
fn lay_out<'a, C>(
    tool: &Tool<'_, C>,
    args: Map<String, Value>,
    outer: &'a Request,
) -> Result<Call<'a>, String> {
    // The path first (it reads the path arguments), then the rest is moved, not copied.
    let mut path = String::new();
    for (i, seg) in tool.route.pattern().split('/').enumerate() {
        if i > 0 {
            path.push('/');
        }
        match seg.strip_prefix(':') {
            None => path.push_str(seg),
            Some(p) => {
                let v = match args.get(p) {
                    Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(_) => return Err(format!("{p} must be a non-empty string.")),
                    None => return Err(format!("{p} is required.")),
                };
                path.push_str(&encode_component(&v));
            }
        }
    }
    let mut query = String::new();
    let mut body = Map::new();
    for (k, v) in args {
        let Some((place, arg)) = tool.place_of(&k) else {
            return Err(format!(
                "unknown argument {k:?}; it takes {}.",
                tool.arg_names().join(", ")
            ));
        };
        match (place, arg) {
            (Place::Path, _) => {}
            (Place::Query, Some(a)) => {
                if v.is_null() {
                    continue;
                }
                let text = a
                    .query_text(&v)
                    .ok_or_else(|| format!("{k} must be {}.", a.type_name()))?;
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str(&k);
                query.push('=');
                query.push_str(&encode_component(&text));
            }
            _ => {
                body.insert(k, v);
            }
        }
    }
    let sends_body = tool.route.method() != "GET";
    Ok(Call {
        method: tool.route.method(),
        path,
        query,
        body: sends_body.then_some(Value::Object(body)),
        outer,
    })
}

/// Built as text around the route's own `data` text: the data appears twice (as the text
/// content, and as `structuredContent`), and neither copy is parsed or re-serialized.
fn succeeded(data: &str, structured: bool) -> String {
    let text = serde_json::to_string(data).unwrap_or_default();
    let mut r = String::with_capacity(64 + text.len() + data.len());
    r.push_str(r#"{"content":[{"type":"text","text":"#);
    r.push_str(&text);
    r.push_str(r#"}],"isError":false"#);
    if structured {
        r.push_str(r#","structuredContent":"#);
        // The output schema is an object; a route whose data is not one is wrapped.
        if data.trim_start().starts_with('{') {
            r.push_str(data);
        } else {
            r.push_str(r#"{"result":"#);
            r.push_str(data);
            r.push('}');
        }
    }
    r.push('}');
    r
}

fn failed(f: &Failure) -> String {
    json!({ "content": [{ "type": "text", "text": f.text() }], "isError": true }).to_string()
}
