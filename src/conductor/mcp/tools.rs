//! Which routes of the conductor's table are MCP tools, and the arguments each takes.
//! A tool is a route: its name is the route id with `.` -> `_`, its description the
//! route's summary, its path parameters come from the route's pattern; this table adds
//! only what a pattern cannot say (the query and body fields, with their JSON types).

use serde_json::{json, Map, Value};

use baa::common::http::router::{Route, RouteKind};

use super::args::{Arg, Place, Ty};

/// One exposed route.
pub struct ToolSpec {
    /// The route id in the conductor's table.
    pub route: &'static str,
    pub args: &'static [Arg],
    /// Needs the bearer token although the route is a read (it shows approvals).
    pub token: bool,
    /// Offered only with `BAA_MCP_HOST_OPS=1`.
    pub host_ops: bool,
}

const fn tool(route: &'static str, args: &'static [Arg]) -> ToolSpec {
    ToolSpec {
        route,
        args,
        token: false,
        host_ops: false,
    }
}

const fn host(route: &'static str, args: &'static [Arg]) -> ToolSpec {
    ToolSpec {
        route,
        args,
        token: true,
        host_ops: true,
    }
}

const TASK_STATUSES: &[&str] = &["queued", "running", "succeeded", "failed", "canceled"];
const REQUESTED_BY: Arg = Arg::body(
    "requested_by",
    Ty::Str,
    "who asks (shown in the system state)",
);
const REASON: Arg = Arg::body("reason", Ty::Str, "why (shown in the system state)");
const CHANGE: &[Arg] = &[REQUESTED_BY, REASON];
const PAUSE: &[Arg] = &[
    REQUESTED_BY,
    REASON,
    Arg::body(
        "interrupt",
        Ty::Bool,
        "also interrupt the running task turns",
    ),
];

/// The exposed routes, in the order `tools/list` gives them.
#[rustfmt::skip]
pub const TOOLS: &[ToolSpec] = &[
    tool("tasks.create", &[
        Arg::body("title", Ty::Str, "short title of the task (at most 200 characters)").required(),
        Arg::body("prompt", Ty::Str, "what Codex should do (one step); give prompt or steps"),
        Arg::body("steps", Ty::Raw(r#"{"type":"array","minItems":1,"maxItems":20,"items":{"type":"object","properties":{"prompt":{"type":"string"},"model":{"type":"string"},"effort":{"type":"string"}},"required":["prompt"]}}"#), "several steps run as turns one after another; give prompt or steps"),
        Arg::body("cwd", Ty::Str, "absolute directory the task works in (default: the node's repo root)"),
        Arg::body("workspace", Ty::Enum(&["worktree", "in_place"]), "worktree: a git worktree on its own branch (default in a git repo); in_place: the directory itself"),
        Arg::body("base", Ty::Str, "the git ref a worktree starts from (default: HEAD)"),
        Arg::body("model", Ty::Str, "Codex model"),
        Arg::body("effort", Ty::Str, "reasoning effort"),
        Arg::body("sandbox", Ty::Enum(&["read-only", "workspace-write", "danger-full-access"]), "Codex sandbox"),
        Arg::body("approval_policy", Ty::Enum(&["untrusted", "on-failure", "on-request", "never"]), "when Codex asks for approval"),
        Arg::body("timeout_s", Ty::Int, "seconds a step may run (default 1800)"),
        Arg::body("max_attempts", Ty::Int, "runs before the task fails for good (default 2, max 10)"),
        Arg::body("priority", Ty::Int, "higher runs first"),
        Arg::body("idempotency_key", Ty::Str, "the same key queues the task only once"),
    ]),
    tool("tasks.list", &[
        Arg::query("status", Ty::Enum(TASK_STATUSES), "only tasks in this status"),
        Arg::query("limit", Ty::Int, "at most this many (default 20, max 100)"),
        Arg::query("before", Ty::Str, "a task id: the page after it (next_before of the last page)"),
    ]),
    tool("tasks.summary", &[]),
    tool("tasks.read", &[]),
    tool("tasks.logs.read", &[
        Arg::query("limit", Ty::Int, "at most this many lines (default 200, max 500)"),
        Arg::query("run_id", Ty::Str, "only this run's lines"),
        Arg::query("since", Ty::Int, "only lines after this seq"),
    ]),
    tool("tasks.diff", &[Arg::query("max_bytes", Ty::Int, "cap of the diff text")]),
    tool("tasks.cancel", &[]),
    tool("tasks.retry", &[]),
    tool("system.state", &[]),
    tool("system.pause", PAUSE),
    tool("system.resume", CHANGE),
    tool("system.drain", CHANGE),
    tool("probe.runtime", &[]),
    tool("codex.sessions.list", &[Arg::query("archived", Ty::Bool, "archived sessions instead")]),
    tool("codex.sessions.read", &[]),
    tool("codex.sessions.turns", &[
        Arg::query("limit", Ty::Int, "at most this many turns"),
        Arg::query("cursor", Ty::Str, "the page after this cursor"),
    ]),
    ToolSpec { token: true, ..tool("codex.requests.list", &[]) },
    tool("codex.requests.answer", &[
        Arg::body("decision", Ty::Enum(&["accept", "decline", "cancel"]), "the answer").required(),
    ]),
    host("host.exec", &[
        Arg::body("command", Ty::Str, "shell command").required(),
        Arg::body("cwd", Ty::Str, "working directory"),
        Arg::body("timeoutMs", Ty::Int, "kill it after this many ms"),
        Arg::body("env", Ty::Raw(r#"{"type":"object","additionalProperties":{"type":"string"}}"#), "extra environment variables"),
    ]),
    host("host.files.read", &[
        Arg::body("path", Ty::Str, "file path").required(),
        Arg::body("cwd", Ty::Str, "directory a relative path is under"),
        Arg::body("encoding", Ty::Enum(&["utf8", "base64"]), "how the content is returned"),
    ]),
    host("host.files.write", &[
        Arg::body("path", Ty::Str, "file path").required(),
        Arg::body("cwd", Ty::Str, "directory a relative path is under"),
        Arg::body("content", Ty::Str, "the content").required(),
        Arg::body("encoding", Ty::Enum(&["utf8", "base64"]), "how content is encoded"),
        Arg::body("overwrite", Ty::Bool, "replace an existing file"),
        Arg::body("createParents", Ty::Bool, "create missing parent directories"),
    ]),
];

/// What a tool needs beyond its spec: its route, and whether the caller must send the token.
pub struct Tool<'t, C> {
    pub spec: &'static ToolSpec,
    pub route: &'t Route<C>,
}

impl<C> Tool<'_, C> {
    pub fn needs_token(&self) -> bool {
        self.spec.token || self.route.kind() == RouteKind::Write
    }

    /// The path parameters of the route's pattern (`:task_id` -> `task_id`).
    pub fn path_params(&self) -> impl Iterator<Item = &str> {
        self.route
            .pattern()
            .split('/')
            .filter_map(|s| s.strip_prefix(':'))
    }

    /// `tools/list` entry; `structured` adds the `outputSchema` (2025-06-18 and later).
    pub fn to_json(&self, structured: bool) -> Value {
        let mut description = self.route.summary().to_string();
        if self.needs_token() {
            description.push_str(
                " Needs the shared token: the MCP client must send Authorization: Bearer \
                 <token> (Codex: bearer_token_env_var = \"BAA_MCP_TOKEN\").",
            );
        }
        let mut v = json!({
            "name": name(self.route.id()),
            "title": self.route.id(),
            "description": description,
            "inputSchema": self.input_schema(),
            "annotations": {
                "readOnlyHint": self.route.kind() != RouteKind::Write,
                "openWorldHint": false,
            },
        });
        if structured {
            v["outputSchema"] = json!({
                "type": "object",
                "description": "The route's data object (the `data` of its {ok, data} envelope).",
            });
        }
        v
    }

    fn input_schema(&self) -> Value {
        let mut props = Map::new();
        let mut required: Vec<&str> = Vec::new();
        for p in self.path_params() {
            props.insert(
                p.to_string(),
                json!({ "type": "string", "description": format!("the {} (path parameter)", p.replace('_', " ")) }),
            );
            required.push(p);
        }
        for a in self.spec.args {
            props.insert(a.name.to_string(), a.schema());
            if a.required {
                required.push(a.name);
            }
        }
        json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        })
    }

    /// Where each argument goes: `Some(place)` for a known name, None otherwise.
    pub fn place_of(&self, name: &str) -> Option<(Place, Option<&'static Arg>)> {
        if self.path_params().any(|p| p == name) {
            return Some((Place::Path, None));
        }
        self.spec
            .args
            .iter()
            .find(|a| a.name == name)
            .map(|a| (a.place, Some(a)))
    }

    /// The argument names, for an error that lists what the tool takes.
    pub fn arg_names(&self) -> Vec<&str> {
        self.path_params()
            .chain(self.spec.args.iter().map(|a| a.name))
            .collect()
    }
}

/// The MCP name of a route id: `tasks.logs.read` -> `tasks_logs_read`.
pub fn name(route_id: &str) -> String {
    route_id.replace('.', "_")
}

/// Whether `tool_name` is the name of `route_id`, without allocating.
fn names(tool_name: &str, route_id: &str) -> bool {
    tool_name.len() == route_id.len()
        && tool_name
            .bytes()
            .zip(route_id.bytes())
            .all(|(t, r)| t == r || (t == b'_' && r == b'.'))
}

/// The tools offered, in table order; a spec whose route is missing from the table is
/// skipped (a unit test keeps that from happening).
pub fn offered<C>(routes: &[Route<C>], host_ops: bool) -> impl Iterator<Item = Tool<'_, C>> {
    TOOLS
        .iter()
        .filter(move |s| host_ops || !s.host_ops)
        .filter_map(move |spec| {
            routes
                .iter()
                .find(|r| r.id() == spec.route)
                .map(|route| Tool { spec, route })
        })
}

/// The offered tool called `tool_name` (the name is matched before any route is looked up:
/// a call pays for one table scan).
pub fn find<'t, C>(routes: &'t [Route<C>], host_ops: bool, tool_name: &str) -> Option<Tool<'t, C>> {
    let spec = TOOLS
        .iter()
        .find(|s| (host_ops || !s.host_ops) && names(tool_name, s.route))?;
    let route = routes.iter().find(|r| r.id() == spec.route)?;
    Some(Tool { spec, route })
}
