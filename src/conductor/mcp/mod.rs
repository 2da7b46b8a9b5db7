//! The conductor as an MCP (Model Context Protocol) server at `/mcp`: Streamable HTTP with
//! JSON answers, tools made from the route table, resources for the node and its tasks.
//! Every tool call and resource read runs a route of the table in-process, so MCP
//! callers get exactly what HTTP callers get. It knows the table only as the slice it is
//! handed (the routes module sits on top of it). docs/mcp.md describes it for operators.

// transport.rs: POST/DELETE /mcp, sessions required, batches; session.rs: the bounded,
// expiring session table; version.rs: the revisions spoken; jsonrpc.rs: message shapes and
// codes; methods.rs: what each method answers; tools.rs + args.rs: the exposed routes and
// their argument schemas; tool_call.rs: tools/call; resources.rs: baa:// resources;
// invoke.rs: one route run in-process.
mod args;
mod invoke;
pub mod jsonrpc;
mod methods;
mod resources;
pub mod session;
mod tool_call;
pub mod tools;
pub mod transport;
pub mod version;

use baa::common::http::router::Route;

pub use session::Sessions;
pub use transport::{delete, post};

/// What the endpoint answers with: the route table and its context, the sessions, and
/// the settings that shape the tool list.
pub struct Endpoint<'a, C> {
    pub routes: &'a [Route<C>],
    pub ctx: &'a C,
    pub sessions: &'a Sessions,
    /// `BAA_MCP_HOST_OPS=1`: offer host_exec and host_files_*.
    pub host_ops: bool,
    /// The shared token write tools are checked against.
    pub token: Option<&'a str>,
    /// The conductor's version, in `serverInfo`.
    pub server_version: &'a str,
}
