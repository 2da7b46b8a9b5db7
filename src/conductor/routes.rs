//! The conductor's route table. The same table drives dispatch, `/describe*` and
//! `/v1/capabilities`; a route with `listed: false` is served but never advertised.

use std::sync::Arc;

use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::http::router::{Params, Route, RouteKind};
use baa::common::http::{Reply, Request, Response};

use crate::app::App;
use crate::codex_proxy::{reshape_status, turn_body};
use crate::system::{Action, ChangeRequest};
use crate::{controllers, describe, firefox, host_ops, records};
use baa::common::codex_fields::{whitelist, INTERRUPT_FIELDS, SESSION_FIELDS};

type Ctx = Arc<App>;
type Res = Result<Reply, ApiError>;

const fn route(
    id: &'static str,
    kind: RouteKind,
    method: &'static str,
    pattern: &'static str,
    summary: &'static str,
    handler: fn(&Ctx, &Request, &Params) -> Res,
) -> Route<Ctx> {
    Route {
        id,
        kind,
        method,
        pattern,
        summary,
        listed: true,
        handler,
    }
}

const fn hidden(r: Route<Ctx>) -> Route<Ctx> {
    Route { listed: false, ..r }
}

use RouteKind::{Probe, Read, Write};

pub static ROUTES: &[Route<Ctx>] = &[
    route("probe.healthz", Probe, "GET", "/healthz", "Liveness probe: plain text ok.", healthz),
    route("probe.readyz", Probe, "GET", "/readyz", "Readiness: 200 ready only for a started leader with a healthy lease.", readyz),
    route("probe.rolez", Probe, "GET", "/rolez", "Current role: leader or standby (plain text).", rolez),
    route("probe.runtime", Probe, "GET", "/v1/runtime", "Runtime snapshot: identity, control API, codexd target, lease, warnings.", runtime),
    route("service.describe", Read, "GET", "/describe", "Self-description of this API for AI callers: start here.", describe_all),
    route("describe.business", Read, "GET", "/describe/business", "Business surface: health, tasks, controllers and the Codex session proxy.", describe_business),
    route("describe.control", Read, "GET", "/describe/control", "Control surface: automation mode, host operations and probes.", describe_control),
    route("service.health", Read, "GET", "/health", "Service health summary as JSON.", health),
    route("service.version", Read, "GET", "/v1/version", "Service name and version.", version),
    route("system.capabilities", Read, "GET", "/v1/capabilities", "Read/write endpoints, diagnostics, codex proxy and recommended flow.", capabilities),
    route("system.state", Read, "GET", "/v1/system/state", "Automation mode (running, paused, draining) with who set it and why.", system_state),
    route("system.pause", Write, "POST", "/v1/system/pause", "Pause local automation. Body: {requested_by, reason}.", pause),
    route("system.resume", Write, "POST", "/v1/system/resume", "Resume local automation. Body: {requested_by, reason}.", resume),
    route("system.drain", Write, "POST", "/v1/system/drain", "Drain: finish running work, start nothing new. Body: {requested_by, reason}.", drain),
    route("controllers.list", Read, "GET", "/v1/controllers", "Conductor instances with last heartbeat, role, priority and lease holder.", controllers_list),
    route("tasks.list", Read, "GET", "/v1/tasks", "Tasks, newest first. Query: status, limit (default 20, max 100).", tasks_list),
    route("tasks.read", Read, "GET", "/v1/tasks/:task_id", "One task with its runs.", tasks_read),
    route("tasks.logs.read", Read, "GET", "/v1/tasks/:task_id/logs", "A task's log lines. Query: limit (default 200, max 500), run_id.", tasks_logs),
    hidden(route("runs.list", Read, "GET", "/v1/runs", "Runs, newest first. Query: task_id, limit.", runs_list)),
    hidden(route("runs.read", Read, "GET", "/v1/runs/:run_id", "One run.", runs_read)),
    route("codex.status", Read, "GET", "/v1/codex", "Codex proxy status: codexd daemon, child, sessions, event stream.", codex_status),
    route("codex.sessions.list", Read, "GET", "/v1/codex/sessions", "Codex sessions held by codexd.", codex_sessions_list),
    route("codex.sessions.read", Read, "GET", "/v1/codex/sessions/:session_id", "One Codex session with its last turn and recent events.", codex_sessions_read),
    route("codex.sessions.create", Write, "POST", "/v1/codex/sessions", "Create a Codex session (thread). Body: {cwd, model, purpose, approvalPolicy, ...}.", codex_sessions_create),
    route("codex.turn.create", Write, "POST", "/v1/codex/turn", "Start a turn on a session. Body: {sessionId, input}; 202 with turnId.", codex_turn_create),
    route("codex.turn.interrupt", Write, "POST", "/v1/codex/turn/interrupt", "Interrupt the running turn of a session. Body: {sessionId}.", codex_turn_interrupt),
    route("host.exec", Write, "POST", "/v1/exec", "Run a shell command on the host. Bearer token. Body: {command, cwd, timeoutMs, env}.", host_exec),
    route("host.files.read", Write, "POST", "/v1/files/read", "Read a file on the host. Bearer token. Body: {path, cwd, encoding}.", host_files_read),
    route("host.files.write", Write, "POST", "/v1/files/write", "Write a file on the host. Bearer token. Body: {path, cwd, content, overwrite, createParents}.", host_files_write),
    hidden(route("ws.firefox", Read, "GET", "/ws/firefox", "WebSocket bridge for the local Firefox extension.", ws_firefox)),
];

pub fn find(id: &str) -> &'static Route<Ctx> {
    ROUTES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("route {id} is not in the table"))
}

fn healthz(_: &Ctx, _: &Request, _: &Params) -> Res {
    Ok(Response::text(200, "ok\n").into())
}

fn readyz(app: &Ctx, _: &Request, _: &Params) -> Res {
    let st = app.lease.status();
    let reason = if !app.is_started() {
        Some("starting")
    } else if !st.is_leader {
        Some("standby")
    } else if !st.healthy_leader(app.lease.threshold) {
        Some("lease unhealthy")
    } else {
        None
    };
    Ok(match reason {
        None => Response::text(200, "ready\n"),
        Some(why) => Response::text(503, format!("not ready: {why}\n")),
    }
    .into())
}

fn rolez(app: &Ctx, _: &Request, _: &Params) -> Res {
    let role = if app.lease.status().is_leader {
        "leader\n"
    } else {
        "standby\n"
    };
    Ok(Response::text(200, role).into())
}

pub fn runtime_snapshot(app: &App) -> Value {
    let c = &app.cfg;
    let st = app.lease.status();
    let mode = app
        .system
        .load(&app.store)
        .map(|s| s.mode.as_str())
        .unwrap_or("unknown");
    json!({
        "identity": c.identity(),
        "controlApi": {
            "baseUrl": c.control_api_base,
            "localApiBase": app.base_url,
            "firefoxWsUrl": format!("ws://{}/ws/firefox", app.base_url.trim_start_matches("http://")),
            "hasSharedToken": c.shared_token.is_some(),
            "usesPlaceholderToken": c.uses_placeholder_token(),
            "allowedHosts": c.local_api_allowed_hosts,
        },
        "codexd": { "localApiBase": c.codexd_local_api_base },
        "daemon": {
            "nodeId": c.node_id,
            "host": c.host,
            "role": c.role.as_str(),
            "priority": c.priority,
            "leaseState": st.state(app.lease.threshold).as_str(),
            "leaseHolder": st.holder_id,
            "schedulerEnabled": st.healthy_leader(app.lease.threshold) && mode == "running",
            "lease": app.lease.to_json(),
            "heartbeatIntervalMs": c.heartbeat_interval_ms,
            "leaseTtlSec": c.lease_ttl_sec,
            "leaseRenewIntervalMs": c.lease_renew_interval_ms,
        },
        "runtime": {
            "pid": std::process::id(),
            "started": app.is_started(),
            "startedAt": app.started_at,
            "version": c.version,
        },
        "paths": {
            "stateDir": c.state_dir, "logsDir": c.logs_dir, "runsDir": c.runs_dir,
            "worktreesDir": c.worktrees_dir, "tmpDir": c.tmp_dir,
        },
        "warnings": c.warnings,
    })
}

fn runtime(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, runtime_snapshot(app)))
}

fn describe_all(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, describe::full(app)?))
}

fn describe_business(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, describe::business(app)?))
}

fn describe_control(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, describe::control(app)?))
}

fn capabilities(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, describe::capabilities(app)?))
}

fn health(app: &Ctx, req: &Request, _: &Params) -> Res {
    let st = app.lease.status();
    Ok(app.ok(
        req,
        200,
        json!({
            "status": "ok",
            "service": "baa-conductor",
            "version": app.cfg.version,
            "identity": app.cfg.identity(),
            "role": if st.is_leader { "leader" } else { "standby" },
            "leaseState": st.state(app.lease.threshold).as_str(),
            "mode": app.system_state()?["mode"],
        }),
    ))
}

fn version(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, json!({ "name": "baa-conductor", "service": "baa-conductor-daemon", "version": app.cfg.version })))
}

fn system_state(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, app.system_state()?))
}

fn system_change(app: &Ctx, req: &Request, action: Action) -> Res {
    let change = ChangeRequest::from_json(&req.json_object()?)?;
    Ok(app.ok(req, 200, app.change_system(action, &change)?))
}

fn pause(app: &Ctx, req: &Request, _: &Params) -> Res {
    system_change(app, req, Action::Pause)
}

fn resume(app: &Ctx, req: &Request, _: &Params) -> Res {
    system_change(app, req, Action::Resume)
}

fn drain(app: &Ctx, req: &Request, _: &Params) -> Res {
    system_change(app, req, Action::Drain)
}

fn controllers_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let list = controllers::list(&app.cfg.state_dir, app.lease.holder_id().as_deref());
    Ok(app.ok(
        req,
        200,
        json!({ "count": list.len(), "controllers": list }),
    ))
}

fn tasks_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let limit = records::parse_limit(req.query_param("limit"), 20, 100)?;
    let status = req.query_param("status").filter(|s| !s.is_empty());
    let tasks = records::list_tasks(&app.store, status.as_deref(), limit)?;
    Ok(app.ok(
        req,
        200,
        json!({ "count": tasks.len(), "tasks": tasks, "limit": limit }),
    ))
}

fn tasks_read(app: &Ctx, req: &Request, p: &Params) -> Res {
    let id = p.get("task_id").unwrap_or_default();
    let task = records::find_task(&app.store, id)?;
    let runs = records::list_runs(&app.store, Some(id), 100)?;
    Ok(app.ok(req, 200, json!({ "task": task, "runs": runs })))
}

fn tasks_logs(app: &Ctx, req: &Request, p: &Params) -> Res {
    let id = p.get("task_id").unwrap_or_default();
    let limit = records::parse_limit(req.query_param("limit"), 200, 500)?;
    records::find_task(&app.store, id)?;
    let run_id = req.query_param("run_id").filter(|s| !s.is_empty());
    let logs = records::task_logs(&app.cfg.state_dir, id, run_id.as_deref(), limit)?;
    Ok(app.ok(req, 200, json!({ "count": logs.len(), "task_id": id, "run_id": run_id, "logs": logs, "limit": limit })))
}

fn runs_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let limit = records::parse_limit(req.query_param("limit"), 20, 100)?;
    let task_id = req.query_param("task_id").filter(|s| !s.is_empty());
    let runs = records::list_runs(&app.store, task_id.as_deref(), limit)?;
    Ok(app.ok(
        req,
        200,
        json!({ "count": runs.len(), "runs": runs, "limit": limit }),
    ))
}

fn runs_read(app: &Ctx, req: &Request, p: &Params) -> Res {
    let run = records::find_run(&app.store, p.get("run_id").unwrap_or_default())?;
    Ok(app.ok(req, 200, json!({ "run": run })))
}

fn codex_status(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (_, data) = app.codex.call("GET", "/v1/codexd/status", None)?;
    let target = app.codex.base().unwrap_or_default();
    Ok(app.ok(
        req,
        200,
        reshape_status(&data, target, describe::codex_routes()),
    ))
}

fn codex_sessions_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (status, data) = app.codex.call("GET", "/v1/codexd/sessions", None)?;
    Ok(app.ok(req, status, data))
}

fn codex_sessions_read(app: &Ctx, req: &Request, p: &Params) -> Res {
    let id = p.get("session_id").unwrap_or_default();
    let (status, data) = app.codex.call(
        "GET",
        &format!("/v1/codexd/sessions/{}", encode_segment(id)),
        None,
    )?;
    Ok(app.ok(req, status, data))
}

fn codex_sessions_create(app: &Ctx, req: &Request, _: &Params) -> Res {
    let body = whitelist(&req.json_object()?, &[SESSION_FIELDS]);
    let (status, data) =
        app.codex
            .call("POST", "/v1/codexd/sessions", Some(&Value::Object(body)))?;
    Ok(app.ok(req, status, data))
}

fn codex_turn_create(app: &Ctx, req: &Request, _: &Params) -> Res {
    let body = turn_body(&req.json_object()?);
    let (status, data) = app
        .codex
        .call("POST", "/v1/codexd/turn", Some(&Value::Object(body)))?;
    Ok(app.ok(req, status, data))
}

fn codex_turn_interrupt(app: &Ctx, req: &Request, _: &Params) -> Res {
    let body = whitelist(&req.json_object()?, &[INTERRUPT_FIELDS]);
    let (status, data) = app.codex.call(
        "POST",
        "/v1/codexd/turn/interrupt",
        Some(&Value::Object(body)),
    )?;
    Ok(app.ok(req, status, data))
}

/// Percent-encodes a path segment for the upstream URL.
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn host_exec(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let body = req.json_object()?;
    Ok(app.ok(req, 200, host_ops::exec::run(&body, &app.exec_slots)))
}

fn host_files_read(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let body = req.json_object()?;
    Ok(app.ok(req, 200, host_ops::files::read(&body)))
}

fn host_files_write(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let body = req.json_object()?;
    Ok(app.ok(
        req,
        200,
        host_ops::files::write(&body, &app.protected_paths),
    ))
}

fn ws_firefox(app: &Ctx, req: &Request, _: &Params) -> Res {
    firefox::upgrade(app, req)
}

/// The route table as JSON for `baa-conductor routes --json`, hidden routes included.
pub fn table_json() -> Value {
    Value::Array(
        ROUTES
            .iter()
            .map(|r| {
                let mut v = r.describe();
                v["listed"] = Value::Bool(r.listed);
                v
            })
            .collect(),
    )
}
