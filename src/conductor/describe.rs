//! Self-description for AI callers: `/describe`, `/describe/business`, `/describe/control`
//! and `/v1/capabilities`, all built from the route table so they cannot drift from what
//! is served. Hidden routes (`listed: false`) never appear.
//!
//! Everything is passed in (`Facts`: the table, the config, the system state), so this
//! file imports neither the app nor the routes that serve it.

use serde_json::{json, Value};

use baa::common::http::router::{self, Route, RouteKind};

use crate::config::{Config, CODEXD_ENV};
use crate::host_ops::{exec, files};

/// What the documents are built from; the routes fill it in for each request.
pub struct Facts<'a, C> {
    pub routes: &'a [Route<C>],
    pub cfg: &'a Config,
    /// `http://HOST:PORT` actually bound.
    pub base_url: &'a str,
    /// The public system state (`GET /v1/system/state`).
    pub system: Value,
}

/// The node's role as `/v1/capabilities` reports it.
pub struct Role {
    pub lease_state: &'static str,
    pub is_leader: bool,
    pub started: bool,
}

/// The ids `/describe/business` lists, in order.
pub const BUSINESS: &[&str] = &[
    "service.describe",
    "describe.business",
    "service.health",
    "service.version",
    "system.capabilities",
    "codex.status",
    "codex.sessions.list",
    "codex.sessions.read",
    "codex.sessions.create",
    "codex.turn.create",
    "codex.turn.interrupt",
    "codex.models.list",
    "codex.sessions.turns",
    "codex.sessions.delete",
    "codex.sessions.compact",
    "codex.sessions.fork",
    "codex.threads.list",
    "codex.review.create",
    "controllers.list",
    "tasks.list",
    "tasks.read",
    "tasks.logs.read",
    "tasks.create",
    "tasks.summary",
    "tasks.cancel",
    "tasks.retry",
    "tasks.diff",
    "tasks.merge",
    "tasks.discard",
    "notifications.list",
    "schedules.list",
    "schedules.create",
    "schedules.read",
    "schedules.update",
    "schedules.delete",
    "mcp.post",
    "mcp.delete",
];

/// The ids `/describe/control` lists, in order.
pub const CONTROL: &[&str] = &[
    "service.describe",
    "describe.control",
    "service.health",
    "system.state",
    "system.pause",
    "system.resume",
    "system.drain",
    "host.exec",
    "host.files.read",
    "host.files.write",
    "codex.requests.list",
    "codex.requests.answer",
    "approvals.answer",
    "probe.healthz",
    "probe.readyz",
    "probe.rolez",
    "probe.runtime",
];

/// What callers need to know about tasks, in the business and capabilities notes.
const TASKS_NOTE: &str = "POST /v1/tasks queues work ({title, prompt | steps}; a 400 names the bad field, unknown fields included) that the lease holder runs as Codex turns through codexd, highest priority then oldest; the same idempotency_key returns the first task with 200 instead of queueing twice. Follow it with GET /v1/tasks/:task_id and /logs; cancel and retry with POST /v1/tasks/:task_id/cancel|retry. A task in a git work tree runs in a worktree of its own on branch baa/<task_id>; GET /v1/tasks/:task_id/diff shows what it changed, POST /v1/tasks/:task_id/merge ({into}, default the base's branch) and /discard (both need Authorization: Bearer <BAA_SHARED_TOKEN>) take it in or throw it away; a refusal is a 409 whose code says why (merge_conflict, target_checkout_dirty, task_not_succeeded, no_changes, discarded, task_in_place).";

/// What callers need to know about schedules.
const SCHEDULES_NOTE: &str = "POST /v1/schedules {name, cron, timezone, task, overlap, catchup_window_s, enabled} (Authorization: Bearer <BAA_SHARED_TOKEN>; PATCH and DELETE /v1/schedules/:schedule_id too) has the lease holder queue task (a POST /v1/tasks body) at each fire of the 5-field cron in timezone, with idempotency_key schedule:<schedule_id>:<fire time>, so no fire is queued twice. overlap skip (default) skips a fire while the previous task is queued or running, buffer_one keeps one waiting, allow always queues; a fire missed while no conductor ran is queued once if within catchup_window_s (default 0). A 400 names the bad field (cron, timezone, task.prompt).";

/// The route with this id. The ids are this file's constants and a unit test checks each
/// is in the table, so a miss is a bug in this file.
fn find<'t, C>(routes: &'t [Route<C>], id: &str) -> &'t Route<C> {
    router::find(routes, id).unwrap_or_else(|| panic!("route {id} is not in the table"))
}

fn listed<C>(routes: &[Route<C>]) -> impl Iterator<Item = &Route<C>> {
    routes.iter().filter(|r| r.listed())
}

fn of_kind<C>(routes: &[Route<C>], kind: RouteKind) -> Vec<Value> {
    listed(routes)
        .filter(|r| r.kind() == kind)
        .map(Route::describe)
        .collect()
}

fn by_ids<C>(routes: &[Route<C>], ids: &[&str]) -> Vec<Value> {
    ids.iter()
        .map(|id| find(routes, id))
        .filter(|r| r.listed())
        .map(Route::describe)
        .collect()
}

pub fn codex_routes<C>(routes: &[Route<C>]) -> Value {
    Value::Array(
        listed(routes)
            .filter(|r| r.id().starts_with("codex."))
            .map(Route::describe)
            .collect(),
    )
}

/// The request body of a route's example; `repo_root` is the configured checkout
/// (`BAA_CONDUCTOR_REPO_ROOT`), so an example never names a path of another machine.
fn example_body(id: &str, repo_root: &str) -> Option<Value> {
    match id {
        "system.pause" => Some(json!({"requested_by": "operator", "reason": "maintenance window"})),
        "system.resume" | "system.drain" => {
            Some(json!({"requested_by": "operator", "reason": "manual"}))
        }
        "codex.sessions.create" => Some(json!({"cwd": repo_root, "purpose": "duplex"})),
        "codex.turn.create" => {
            Some(json!({"sessionId": "<sessionId>", "input": "Summarize pending work."}))
        }
        "codex.turn.interrupt" => Some(json!({"sessionId": "<sessionId>"})),
        "codex.sessions.fork" => Some(json!({"purpose": "duplex"})),
        "codex.review.create" => Some(json!({"cwd": repo_root, "target": "uncommittedChanges"})),
        "tasks.create" => Some(json!({
            "title": "Summarize pending work",
            "prompt": "Summarize the pending work in this repository.",
            "cwd": repo_root,
            "idempotency_key": "summary-1",
        })),
        "codex.requests.answer" => Some(json!({"decision": "accept"})),
        "tasks.merge" => Some(json!({"into": "main"})),
        "schedules.create" => Some(json!({
            "name": "nightly summary",
            "cron": "0 3 * * *",
            "timezone": "UTC",
            "task": {"title": "Summarize pending work", "prompt": "Summarize the pending work in this repository.", "cwd": repo_root},
            "overlap": "skip",
            "catchup_window_s": 3600,
        })),
        "schedules.update" => Some(json!({"enabled": false})),
        "host.exec" => Some(json!({"command": "uptime", "timeoutMs": 5000})),
        "host.files.read" => Some(json!({"path": "README.md", "cwd": repo_root})),
        "host.files.write" => Some(
            json!({"path": "notes/todo.txt", "cwd": "/tmp", "content": "hello", "overwrite": false, "createParents": true}),
        ),
        _ => None,
    }
}

/// A ready-to-run curl command for a route.
pub fn curl<C>(base: &str, repo_root: &str, r: &Route<C>) -> String {
    let path = r
        .pattern()
        .replace(":task_id", "<task_id>")
        .replace(":session_id", "<sessionId>")
        .replace(":run_id", "<run_id>")
        .replace(":request_id", "<request_id>")
        .replace(":schedule_id", "<schedule_id>");
    // Host operations, answering Codex's requests (as strong as exec), and merging or
    // discarding a task's branch need the token.
    let auth = if r.id().starts_with("host.")
        || r.id().starts_with("codex.requests.")
        || matches!(
            r.id(),
            "tasks.merge"
                | "tasks.discard"
                | "schedules.create"
                | "schedules.update"
                | "schedules.delete"
        ) {
        " -H \"Authorization: Bearer $BAA_SHARED_TOKEN\""
    } else {
        ""
    };
    match (r.method(), example_body(r.id(), repo_root)) {
        ("GET", _) => format!("curl -sS '{base}{path}'{auth}"),
        (m, Some(body)) => format!(
            "curl -sS -X {m} '{base}{path}'{auth} -H 'Content-Type: application/json' -d '{body}'"
        ),
        (m, None) => format!("curl -sS -X {m} '{base}{path}'{auth}"),
    }
}

fn example<C>(f: &Facts<C>, title: &str, id: &str) -> Value {
    let r = find(f.routes, id);
    json!({ "title": title, "method": r.method(), "path": r.pattern(), "curl": curl(f.base_url, &f.cfg.repo_root.display().to_string(), r) })
}

pub fn codex_block<C>(f: &Facts<C>) -> Value {
    let base = f.cfg.codexd_local_api_base.clone();
    let notes = if base.is_none() {
        vec![
            "Codex routes stay unavailable until independent codexd is configured.".to_string(),
            format!("Set {CODEXD_ENV} to the codexd local HTTP base URL before using /v1/codex."),
        ]
    } else {
        vec![
            "All /v1/codex routes proxy the independent codexd daemon over local HTTP.".to_string(),
            "This surface is session-oriented: status, session list/read/create/delete/compact/fork, turn create and interrupt, turn history, threads, review and the model list.".to_string(),
            "Create bodies pass codexd's documented fields; any other field is dropped and named in data.dropped_fields (details.dropped_fields on an error).".to_string(),
            "Read a turn's outcome from GET /v1/codex/sessions/:session_id (lastTurnStatus is inProgress from the 202 until the turn ends; lastTurn has its commands, file changes and diff), and older turns from GET /v1/codex/sessions/:session_id/turns.".to_string(),
            "POST /v1/codex/sessions with threadId adopts an existing thread (from GET /v1/codex/threads) as a new session.".to_string(),
        ]
    };
    json!({
        "auth_mode": "local_network_only",
        "backend": "independent_codexd",
        "enabled": base.is_some(),
        "route_prefix": "/v1/codex",
        "routes": codex_routes(f.routes),
        "target_base_url": base,
        "transport": "local_http",
        "notes": notes,
    })
}

fn auth_block(cfg: &Config) -> Value {
    json!({
        "mode": "local_network_only",
        "read_routes": "no credentials; the API binds loopback or a Tailscale address and checks the Host header",
        "host_operations": {
            "header": "Authorization: Bearer <BAA_SHARED_TOKEN>",
            "configured": cfg.usable_token().is_some(),
        },
        "browser_requests": "refused: requests carrying a foreign Origin get 403",
    })
}

fn host_ops_block<C>(f: &Facts<C>) -> Value {
    json!({
        "enabled": f.cfg.usable_token().is_some(),
        "auth": {
            "header": "Authorization: Bearer <BAA_SHARED_TOKEN>",
            "configured": f.cfg.usable_token().is_some(),
            "uses_placeholder_token": f.cfg.uses_placeholder_token(),
            "unauthorized_status": 401,
            "unconfigured_status": 503,
        },
        "routes": by_ids(f.routes, &["host.exec", "host.files.read", "host.files.write"]),
        "result_shape": "HTTP 200 with data = {ok, operation, input, result, error?}; error.code such as INVALID_INPUT, EXEC_TIMEOUT, EXEC_FAILED, EXEC_BUSY, FILES_BUSY, FILE_ALREADY_EXISTS, FILE_NOT_FOUND",
        "exec": {
            "shell": "/bin/sh -c",
            "default_timeout_ms": exec::DEFAULT_TIMEOUT_MS,
            "max_timeout_ms": exec::MAX_TIMEOUT_MS,
            "output_cap_bytes_per_stream": exec::OUTPUT_CAP,
            "max_concurrent": exec::MAX_CONCURRENT,
        },
        "files": {
            "read_cap_bytes": files::READ_CAP,
            "max_concurrent": f.cfg.max_file_ops,
        },
        "examples": [
            example(f, "Run a command", "host.exec"),
            example(f, "Read a file", "host.files.read"),
            example(f, "Write a file", "host.files.write"),
        ],
    })
}

fn websocket_block<C>(f: &Facts<C>) -> Value {
    json!({
        "auth_mode": "local_network_only",
        "enabled": true,
        "path": "/ws/firefox",
        "url": format!("ws://{}/ws/firefox", f.base_url.trim_start_matches("http://")),
        "purpose": "local Firefox extension bridge (not a public channel)",
        "allowed_origins": f.cfg.firefox_origins,
        "server_messages": ["hello", "state_snapshot", "task_update {task_id, status, steps_done, steps_total, waiting, error, branch, result, …}", "action_result", "pong", "error"],
        "client_messages": ["action_request {requestId, action: pause|resume|drain, requested_by?, reason?, interrupt? (pause)}", "ping"],
    })
}

pub fn full<C>(f: &Facts<C>) -> Value {
    json!({
        "name": "baa-conductor-daemon",
        "version": f.cfg.version,
        "identity": f.cfg.identity(),
        "base_url": f.base_url,
        "system": f.system,
        "describe_endpoints": {
            "business": { "path": "/describe/business", "summary": find(f.routes, "describe.business").summary() },
            "control": { "path": "/describe/control", "summary": find(f.routes, "describe.control").summary() },
            "capabilities": { "path": "/v1/capabilities", "summary": find(f.routes, "system.capabilities").summary() },
        },
        "codex": codex_block(f),
        "host_operations": host_ops_block(f),
        "websocket": websocket_block(f),
        "mcp": mcp_block(f),
        "auth": auth_block(f.cfg),
        "capabilities": {
            "read_endpoints": of_kind(f.routes, RouteKind::Read),
            "write_endpoints": of_kind(f.routes, RouteKind::Write),
        },
        "examples": [
            example(f, "Read the business surface first", "describe.business"),
            example(f, "Inspect the narrower capability surface if needed", "system.capabilities"),
            example(f, "Inspect the codex proxy surface", "codex.status"),
            example(f, "Read the current automation state", "system.state"),
            example(f, "Pause local automation explicitly", "system.pause"),
            example(f, "Create a codex session", "codex.sessions.create"),
            example(f, "Queue a task (run as Codex turns by the lease holder)", "tasks.create"),
            example(f, "Run a host command (token required)", "host.exec"),
        ],
        "notes": [
            "AI callers should prefer /describe/business for business queries and /describe/control for control actions.",
            "All /v1/codex routes proxy the independent codexd daemon; this process does not host Codex sessions itself.",
            "POST /v1/exec and POST /v1/files/* require Authorization: Bearer <BAA_SHARED_TOKEN>; missing or wrong tokens return 401 JSON.",
            "Every response is JSON {ok, request_id, data} or {ok:false, request_id, error, message, details}, except the plain-text probes.",
            "GET /healthz, /readyz, /rolez and /v1/runtime remain available as low-level diagnostics.",
        ],
    })
}

/// Where an MCP client (Codex, Claude Code, ...) connects instead of reading this document.
fn mcp_block<C>(f: &Facts<C>) -> Value {
    json!({
        "url": format!("{}/mcp", f.base_url),
        "transport": "Streamable HTTP, JSON responses (POST /mcp; DELETE /mcp ends a session; no GET stream)",
        "protocol_versions": crate::mcp::version::SUPPORTED,
        "tools": "the task, system-state and codex routes above, named by route id with . -> _ (tasks_create, tasks_list, system_state, ...)",
        "resources": ["baa://system/state", "baa://status", "baa://tasks/{id}", "baa://tasks/{id}/log"],
        "auth": "write tools need Authorization: Bearer <BAA_SHARED_TOKEN> on the MCP request",
        "config": "baa-conductor mcp-config prints the Codex and Claude Code snippets; docs/mcp.md",
    })
}

pub fn business<C>(f: &Facts<C>) -> Value {
    json!({
        "surface": "business",
        "name": "baa-conductor-daemon",
        "version": f.cfg.version,
        "base_url": f.base_url,
        "system": f.system,
        "recommended_flow": [
            "GET /describe/business",
            "Optionally GET /v1/capabilities",
            "Use business routes such as /v1/controllers, /v1/tasks and /v1/codex",
            "Use /describe/control if a local shell or file operation is intended",
        ],
        "websocket": websocket_block(f),
        "codex": codex_block(f),
        "mcp": mcp_block(f),
        "endpoints": by_ids(f.routes, BUSINESS),
        "examples": [
            example(f, "List recent tasks", "tasks.list"),
            example(f, "Queue a task", "tasks.create"),
            example(f, "Cancel a task", "tasks.cancel"),
            example(f, "Retry a failed or canceled task", "tasks.retry"),
            example(f, "Show what a task changed (its diff against its base)", "tasks.diff"),
            example(f, "Merge a task's branch (token required)", "tasks.merge"),
            example(f, "Discard a task's worktree and branch (token required)", "tasks.discard"),
            example(f, "Create a schedule (token required)", "schedules.create"),
            example(f, "List schedules with their next and last fires", "schedules.list"),
            example(f, "Disable a schedule (token required)", "schedules.update"),
            example(f, "Inspect the codex proxy status", "codex.status"),
            example(f, "Create a codex session", "codex.sessions.create"),
            example(f, "Start a turn", "codex.turn.create"),
            example(f, "Read the session and its last turn", "codex.sessions.read"),
        ],
        "notes": [
            "This surface is intended to be enough for business-query discovery without reading external docs.",
            "All /v1/codex routes proxy the independent codexd daemon instead of an in-process bridge.",
            "If you pivot to /describe/control for /v1/exec or /v1/files/*, those host-ops routes require Authorization: Bearer <BAA_SHARED_TOKEN>.",
            "Control actions and host-level exec/file operations are intentionally excluded; use /describe/control.",
            TASKS_NOTE,
            SCHEDULES_NOTE,
        ],
    })
}

pub fn control<C>(f: &Facts<C>) -> Value {
    json!({
        "surface": "control",
        "name": "baa-conductor-daemon",
        "version": f.cfg.version,
        "base_url": f.base_url,
        "system": f.system,
        "recommended_flow": [
            "GET /describe/control",
            "GET /v1/system/state",
            "POST /v1/system/pause|resume|drain with {requested_by, reason}",
            "Use host operations only when a shell or file operation is intended",
        ],
        "websocket": websocket_block(f),
        "auth": auth_block(f.cfg),
        "codex": codex_block(f),
        "host_operations": host_ops_block(f),
        "endpoints": by_ids(f.routes, CONTROL),
        "examples": [
            example(f, "Read the current automation state", "system.state"),
            example(f, "Pause local automation", "system.pause"),
            example(f, "Resume local automation", "system.resume"),
            example(f, "Drain local automation", "system.drain"),
            example(f, "Run a host command", "host.exec"),
            example(f, "List the approvals Codex waits on (token required)", "codex.requests.list"),
            example(f, "Answer one (token required)", "codex.requests.answer"),
        ],
        "notes": [
            "This surface is intended to be enough for control discovery without reading external docs.",
            "The interactive Codex surface is proxied to independent codexd; inspect /v1/codex or /describe/business for those routes.",
            "Business queries such as tasks are intentionally excluded; use /describe/business.",
            "POST /v1/exec and POST /v1/files/* require Authorization: Bearer <BAA_SHARED_TOKEN>; missing or wrong tokens return 401 JSON.",
            "Host operations return the structured host-ops union inside the outer conductor HTTP envelope.",
            "Only the lease holder accepts pause/resume/drain; a standby answers 409 not_leader.",
            "Modes govern tasks: paused starts no task turn (POST /v1/system/pause with {\"interrupt\": true} also interrupts running ones, which go back to the queue); draining starts none and GET /v1/system/state says drained: true once none runs.",
            "GET /v1/codex/requests and POST /v1/codex/requests/:request_id (task turns' approvals included) require Authorization: Bearer <BAA_SHARED_TOKEN>.",
        ],
    })
}

pub fn capabilities<C>(f: &Facts<C>, role: &Role) -> Value {
    json!({
        "read_endpoints": of_kind(f.routes, RouteKind::Read),
        "write_endpoints": of_kind(f.routes, RouteKind::Write),
        "diagnostics": of_kind(f.routes, RouteKind::Probe),
        "codex": codex_block(f),
        "runtime": {
            "identity": f.cfg.identity(),
            "lease_state": role.lease_state,
            "role": if role.is_leader { "leader" } else { "standby" },
            "started": role.started,
        },
        "system": f.system,
        "examples": [
            example(f, "Queue a task", "tasks.create"),
            example(f, "Cancel a task", "tasks.cancel"),
            example(f, "Retry a failed or canceled task", "tasks.retry"),
        ],
        "recommended_flow": [
            "GET /describe",
            "GET /v1/capabilities",
            "GET /v1/system/state",
            "GET /v1/tasks or /v1/codex",
            "Use /v1/codex/* for interactive Codex session and turn work",
            "GET /describe/control if local shell/file access is needed",
            "Use POST system routes or host operations only when a write/exec is intended",
        ],
        "notes": [
            "Read routes are safe for discovery and inspection.",
            "Write routes change node state or run host operations; host operations need the bearer token.",
            TASKS_NOTE,
        ],
    })
}
