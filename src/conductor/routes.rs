//! The conductor's route table and the request entry point. The same table drives
//! dispatch, `/describe*`, `/v1/capabilities` and `baa-conductor routes`; a `.hidden()`
//! route is served but never advertised. This file sits on top of the app, `describe` and
//! `firefox`: it hands them what they need, and none of them imports it back.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::cli;
use baa::common::http::router::{self, dispatch, Params, Route};
use baa::common::http::{Reply, Request, Response};
use baa::common::state_health;

use crate::app::App;
use crate::codex_proxy::{forward_query, reshape_status, Forwarded};
use crate::system::{Action, ChangeRequest};
use crate::{controllers, describe, firefox, host_ops, mcp, records, schedules, tasks};
use baa::common::client::encode_component;
use baa::common::codex_fields::{FORK_FIELDS, REVIEW_FIELDS, SESSION_CREATE, TURN_INTERRUPT};

type Ctx = Arc<App>;
type Res = Result<Reply, ApiError>;

/// The table, one route per line (`rustfmt::skip`: a table reads down its columns).
#[rustfmt::skip]
pub static ROUTES: &[Route<Ctx>] = &[
    Route::probe("probe.healthz", "GET", "/healthz", "Liveness probe: plain text ok.", healthz),
    Route::probe("probe.readyz", "GET", "/readyz", "Readiness: 200 ready only for a started leader with a healthy lease and usable state files.", readyz),
    Route::probe("probe.rolez", "GET", "/rolez", "Current role: leader or standby (plain text).", rolez),
    Route::probe("probe.runtime", "GET", "/v1/runtime", "Runtime snapshot: identity, control API, codexd target, lease, warnings.", runtime),
    Route::read("service.describe", "GET", "/describe", "Self-description of this API for AI callers: start here.", describe_all),
    Route::read("describe.business", "GET", "/describe/business", "Business surface: health, tasks, controllers and the Codex session proxy.", describe_business),
    Route::read("describe.control", "GET", "/describe/control", "Control surface: automation mode, host operations and probes.", describe_control),
    Route::read("service.health", "GET", "/health", "Service health summary as JSON.", health),
    Route::read("service.version", "GET", "/v1/version", "Service name and version.", version),
    Route::read("system.capabilities", "GET", "/v1/capabilities", "Read/write endpoints, diagnostics, codex proxy and recommended flow.", capabilities),
    Route::read("system.state", "GET", "/v1/system/state", "Automation mode (running, paused, draining) with who set it and why.", system_state),
    Route::write("system.pause", "POST", "/v1/system/pause", "Pause local automation. Body: {requested_by, reason}.", pause),
    Route::write("system.resume", "POST", "/v1/system/resume", "Resume local automation. Body: {requested_by, reason}.", resume),
    Route::write("system.drain", "POST", "/v1/system/drain", "Drain: finish running work, start nothing new. Body: {requested_by, reason}.", drain),
    Route::read("controllers.list", "GET", "/v1/controllers", "Conductor instances with last heartbeat, role, priority and lease holder.", controllers_list),
    Route::read("tasks.list", "GET", "/v1/tasks", "Tasks, newest first. Query: status, limit (default 20, max 100), before (a task id: the page after it; each full page gives next_before).", tasks_list),
    Route::write("tasks.create", "POST", "/v1/tasks", "Queue a task run as Codex turns. Body: {title, prompt | steps, cwd, workspace (worktree|in_place), base, model, effort, sandbox, approval_policy, timeout_s, max_attempts, priority, idempotency_key}.", tasks_create),
    Route::read("tasks.summary", "GET", "/v1/tasks/summary", "Task counts by status, the tasks running now (step, elapsed) and the last five outcomes.", tasks_summary),
    Route::read("tasks.read", "GET", "/v1/tasks/:task_id", "One task with its runs.", tasks_read),
    Route::write("tasks.cancel", "POST", "/v1/tasks/:task_id/cancel", "Cancel a task: a queued one at once, a running one by interrupting its turn.", tasks_cancel),
    Route::write("tasks.retry", "POST", "/v1/tasks/:task_id/retry", "Queue a failed or canceled task again; it continues at its first step not completed.", tasks_retry),
    Route::read("tasks.diff", "GET", "/v1/tasks/:task_id/diff", "A worktree task's unified diff against its base (capped, with truncated and the stat); before a result, its worktree's uncommitted diff. Query: max_bytes.", tasks_diff),
    Route::write("tasks.merge", "POST", "/v1/tasks/:task_id/merge", "Merge a succeeded task's branch into a branch (fast-forward, else a merge commit). Bearer token. Body: {into} (default: the branch its base came from).", tasks_merge),
    Route::write("tasks.discard", "POST", "/v1/tasks/:task_id/discard", "Remove a finished task's worktree and branch. Bearer token.", tasks_discard),
    Route::read("tasks.logs.read", "GET", "/v1/tasks/:task_id/logs", "A task's log lines. Query: limit (default 200, max 500), run_id, since (seq).", tasks_logs),
    Route::read("schedules.list", "GET", "/v1/schedules", "Schedules with next_fire_at, last_fire {at, task_id, outcome, task_status} and counts {fired, skipped, caught_up, failed}.", schedules_list),
    Route::write("schedules.create", "POST", "/v1/schedules", "Create a schedule: the lease holder queues its task at each cron fire. Bearer token. Body: {name, cron (5 fields), timezone (IANA; default the node's), task (a POST /v1/tasks body), overlap (skip|buffer_one|allow), catchup_window_s, enabled}.", schedules_create),
    Route::read("schedules.read", "GET", "/v1/schedules/:schedule_id", "One schedule.", schedules_read),
    Route::write("schedules.update", "PATCH", "/v1/schedules/:schedule_id", "Change a schedule's fields (any of the create fields); enabled: false pauses its fires. Bearer token.", schedules_update),
    Route::write("schedules.delete", "DELETE", "/v1/schedules/:schedule_id", "Delete a schedule (the tasks it queued stay). Bearer token.", schedules_delete),
    Route::read("runs.list", "GET", "/v1/runs", "Runs, newest first. Query: task_id, limit.", runs_list).hidden(),
    Route::read("runs.read", "GET", "/v1/runs/:run_id", "One run.", runs_read).hidden(),
    Route::read("codex.status", "GET", "/v1/codex", "Codex proxy status: codexd daemon, child, sessions, event stream.", codex_status),
    Route::read("codex.sessions.list", "GET", "/v1/codex/sessions", "Codex sessions held by codexd.", codex_sessions_list),
    Route::read("codex.sessions.read", "GET", "/v1/codex/sessions/:session_id", "One Codex session with its last turn and recent events.", codex_sessions_read),
    Route::write("codex.sessions.create", "POST", "/v1/codex/sessions", "Create a Codex session (thread). Body: {cwd, model, purpose, approvalPolicy, ...}.", codex_sessions_create),
    Route::write("codex.turn.create", "POST", "/v1/codex/turn", "Start a turn on a session. Body: {sessionId, input}; 202 with turnId.", codex_turn_create),
    Route::write("codex.turn.interrupt", "POST", "/v1/codex/turn/interrupt", "Interrupt the running turn of a session. Body: {sessionId}.", codex_turn_interrupt),
    Route::read("codex.models.list", "GET", "/v1/codex/models", "Models codex offers and the reasoning efforts of each. Query: include_hidden, refresh.", codex_models_list),
    Route::read("codex.sessions.turns", "GET", "/v1/codex/sessions/:session_id/turns", "A Codex session's turn records (commands, file changes, diff), newest first. Query: limit, cursor.", codex_sessions_turns),
    Route::write("codex.sessions.delete", "DELETE", "/v1/codex/sessions/:session_id", "End a Codex session: archive its thread (409 while a turn runs).", codex_sessions_delete),
    Route::write("codex.sessions.compact", "POST", "/v1/codex/sessions/:session_id/compact", "Compact a Codex session's context; 202 with the compaction turn.", codex_sessions_compact),
    Route::write("codex.sessions.fork", "POST", "/v1/codex/sessions/:session_id/fork", "Fork a Codex session into a new one. Body: {lastTurnId?, purpose?, metadata?}.", codex_sessions_fork),
    Route::read("codex.threads.list", "GET", "/v1/codex/threads", "Codex threads on disk, newest first. Query: cwd, search, limit, cursor, archived.", codex_threads_list),
    Route::write("codex.review.create", "POST", "/v1/codex/review", "Review changes as a Codex turn. Body: {sessionId | cwd, target}; 202.", codex_review_create),
    Route::read("codex.requests.list", "GET", "/v1/codex/requests", "Approvals and other requests Codex waits on (task turns included). Bearer token.", codex_requests_list),
    Route::write("codex.requests.answer", "POST", "/v1/codex/requests/:request_id", "Answer a pending Codex request. Bearer token. Body: {decision: accept|decline|cancel}.", codex_requests_answer),
    Route::read("notifications.list", "GET", "/v1/notifications", "Recent notification deliveries (newest first) with their status, tries and last error; targets redacted. Query: limit (default 50, max 1000).", notifications_list),
    Route::write("approvals.answer", "POST", "/v1/approvals/:request_id/:decision", "Answer one waiting approval from a notification's signed link (no bearer token). Query: exp, sig. 403 approval_link_invalid|approval_link_expired|approval_already_answered.", approvals_answer),
    Route::write("host.exec", "POST", "/v1/exec", "Run a shell command on the host. Bearer token. Body: {command, cwd, timeoutMs, env}.", host_exec),
    Route::write("host.files.read", "POST", "/v1/files/read", "Read a file on the host. Bearer token. Body: {path, cwd, encoding}.", host_files_read),
    Route::write("host.files.write", "POST", "/v1/files/write", "Write a file on the host. Bearer token. Body: {path, cwd, content, overwrite, createParents}.", host_files_write),
    Route::write("mcp.post", "POST", "/mcp", "MCP (Model Context Protocol) server, Streamable HTTP with JSON answers: initialize, then tools/list, tools/call, resources/list, resources/read with the Mcp-Session-Id it returns. Tools are these routes; write tools need the bearer token. docs/mcp.md; `baa-conductor mcp-config` prints a client's config.", mcp_post),
    Route::write("mcp.delete", "DELETE", "/mcp", "End an MCP session (header Mcp-Session-Id).", mcp_delete),
    Route::read("ws.firefox", "GET", "/ws/firefox", "WebSocket bridge for the local Firefox extension.", ws_firefox).hidden(),
];

/// `baa-conductor routes [--json]`: the table above, printed without starting anything.
pub fn command(json: bool) -> ExitCode {
    cli::print("baa-conductor", &router::render_table(ROUTES, json))
}

/// Entry point for every request on the local API: guards first (Host, Origin), then the
/// table, then one place that turns errors into envelopes.
pub fn handle(app: &Ctx, req: &Request) -> Reply {
    let result = app
        .host_policy
        .check(req)
        .and_then(|_| {
            // The bridge has its own, stricter Origin rule.
            if req.path == "/ws/firefox" {
                Ok(())
            } else {
                app.host_policy.check_origin(req)
            }
        })
        .and_then(|_| dispatch(ROUTES, app, req));
    match result {
        Ok(reply) => reply,
        Err(e) => {
            if e.status >= 500 {
                log::warn!(
                    "{} {} → {} {}: {}",
                    req.method,
                    req.path,
                    e.status,
                    e.code,
                    e.message
                );
            } else {
                log::debug!("{} {} → {} {}", req.method, req.path, e.status, e.code);
            }
            Reply::Http(e.to_response(&req.request_id, false))
        }
    }
}

fn healthz(_: &Ctx, _: &Request, _: &Params) -> Res {
    Ok(Response::text(200, "ok\n").into())
}

fn readyz(app: &Ctx, _: &Request, _: &Params) -> Res {
    let st = app.lease.status();
    // Looking at the mode (one `stat` while the file is unchanged) is what notices a state
    // file damaged since the last request.
    let system = app.system.load(&app.store);
    let reason = if !app.is_started() {
        Some("starting".to_string())
    } else if !st.is_leader {
        Some("standby".to_string())
    } else if !st.healthy_leader(app.lease.threshold) {
        Some("lease unhealthy".to_string())
    } else if let Err(e) = system {
        Some(format!("cannot read the system state: {e}"))
    } else {
        state_health::first_unusable(&app.cfg.state_dir)
            .map(|p| format!("state file unusable: {}", p.message))
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
            // The task scheduler: counts, its cap, the last start, and why it waits (if it does).
            "scheduler": scheduler_json(app, st.healthy_leader(app.lease.threshold)),
            // New task turns wait while codexd's account or rate limits say so.
            "codexHold": app.codex_hold.to_json(),
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
        // The MCP endpoint: sessions held now and its limits.
        "mcp": {
            "path": "/mcp",
            "sessions": app.mcp.len(),
            "maxSessions": c.mcp.max_sessions,
            "sessionIdleS": c.mcp.session_idle_s,
            "hostOps": c.mcp.host_ops,
        },
        // Task worktrees as the janitor last measured them (a request never walks the disk).
        "worktrees": app.janitor.to_json(&c.worktrees_dir, c.workspaces.retention_s),
        // Start-up config warnings, then conditions found while running (a recovered state file).
        "warnings": c.warnings.iter().cloned().chain(app.system.warnings()).chain(app.tasks.warnings()).chain(state_file_warnings(app)).collect::<Vec<_>>(),
    })
}

/// Damaged or unusable state files under the state dir (the system state's own recovery
/// is in `app.system.warnings()`, in its words), at most [`MAX_STATE_WARNINGS`].
fn state_file_warnings(app: &App) -> Vec<String> {
    const MAX_STATE_WARNINGS: usize = 20;
    let system_file = app.store.path(crate::system::FILE);
    let problems: Vec<_> = state_health::under(&app.cfg.state_dir)
        .into_iter()
        .filter(|p| p.path != system_file)
        .collect();
    let more = problems.len().saturating_sub(MAX_STATE_WARNINGS);
    let mut out: Vec<String> = problems
        .into_iter()
        .take(MAX_STATE_WARNINGS)
        .map(|p| format!("state file: {}", p.message))
        .collect();
    if more > 0 {
        out.push(format!(
            "state file: {more} more damaged state files (see the log)"
        ));
    }
    out
}

fn scheduler_json(app: &App, leader: bool) -> Value {
    // A standby's counts come from the leader's files, as its task reads do.
    fresh_tasks(app);
    let c = app.tasks.counts();
    app.sched.to_json(c.queued, c.running, leader)
}

fn runtime(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, runtime_snapshot(app)))
}

/// What `describe` builds its documents from: this table and the app's current state.
fn facts(app: &App) -> Result<describe::Facts<'_, Ctx>, ApiError> {
    Ok(describe::Facts {
        routes: ROUTES,
        cfg: &app.cfg,
        base_url: &app.base_url,
        system: app.system_state()?,
    })
}

fn describe_all(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, describe::full(&facts(app)?)))
}

fn describe_business(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, describe::business(&facts(app)?)))
}

fn describe_control(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(app.ok(req, 200, describe::control(&facts(app)?)))
}

fn capabilities(app: &Ctx, req: &Request, _: &Params) -> Res {
    let st = app.lease.status();
    let role = describe::Role {
        lease_state: st.state(app.lease.threshold).as_str(),
        is_leader: st.is_leader,
        started: app.is_started(),
    };
    Ok(app.ok(req, 200, describe::capabilities(&facts(app)?, &role)))
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

/// A standby shares the leader's state dir: its index follows the files.
fn fresh_tasks(app: &App) {
    if !app.lease.status().is_leader {
        app.tasks.sync_if_changed();
    }
}

fn tasks_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let limit = records::parse_limit(req.query_param("limit"), 20, 100)?;
    let status = records::parse_status(req.query_param("status"))?;
    fresh_tasks(app);
    let before = req.query_param("before");
    let tasks = app.tasks.list(status, limit, before.as_deref())?;
    // The next page's cursor while this one is full.
    let next = (tasks.len() == limit)
        .then(|| tasks.last().map(|t| t.task_id.clone()))
        .flatten();
    Ok(app.ok(
        req,
        200,
        json!({ "count": tasks.len(), "tasks": tasks, "limit": limit, "next_before": next }),
    ))
}

fn tasks_create(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (status, data) = tasks::api::create(app, &req.json_object()?)?;
    Ok(app.ok(req, status, data))
}

fn tasks_summary(app: &Ctx, req: &Request, _: &Params) -> Res {
    fresh_tasks(app);
    Ok(app.ok(req, 200, tasks::api::summary(app)))
}

fn tasks_read(app: &Ctx, req: &Request, p: &Params) -> Res {
    let id = p.get("task_id").unwrap_or_default();
    fresh_tasks(app);
    let task = app.tasks.task(id)?;
    let runs = app.tasks.list_runs(Some(id), 100)?;
    Ok(app.ok(req, 200, json!({ "task": task, "runs": runs })))
}

fn tasks_cancel(app: &Ctx, req: &Request, p: &Params) -> Res {
    let data = tasks::api::cancel(app, p.get("task_id").unwrap_or_default())?;
    Ok(app.ok(req, 200, data))
}

fn tasks_retry(app: &Ctx, req: &Request, p: &Params) -> Res {
    let data = tasks::api::retry(app, p.get("task_id").unwrap_or_default())?;
    Ok(app.ok(req, 200, data))
}

/// What the bearer token guards on the task result routes.
const TASK_CHANGES: host_ops::Guarded = host_ops::Guarded {
    what: "Task merges and discards",
    disabled_code: "token_not_configured",
};

const SCHEDULE_CHANGES: host_ops::Guarded = host_ops::Guarded {
    what: "Schedule changes",
    disabled_code: "token_not_configured",
};

fn schedules_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    fresh_tasks(app);
    Ok(app.ok(req, 200, schedules::api::list(app)))
}

fn schedules_create(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize_for(req, app.cfg.shared_token.as_deref(), &SCHEDULE_CHANGES)?;
    let data = schedules::api::create(app, &req.json_object()?)?;
    Ok(app.ok(req, 201, data))
}

fn schedules_read(app: &Ctx, req: &Request, p: &Params) -> Res {
    fresh_tasks(app);
    let data = schedules::api::show(app, p.get("schedule_id").unwrap_or_default())?;
    Ok(app.ok(req, 200, data))
}

fn schedules_update(app: &Ctx, req: &Request, p: &Params) -> Res {
    host_ops::authorize_for(req, app.cfg.shared_token.as_deref(), &SCHEDULE_CHANGES)?;
    let body = req.json_object()?;
    let data = schedules::api::patch(app, p.get("schedule_id").unwrap_or_default(), &body)?;
    Ok(app.ok(req, 200, data))
}

fn schedules_delete(app: &Ctx, req: &Request, p: &Params) -> Res {
    host_ops::authorize_for(req, app.cfg.shared_token.as_deref(), &SCHEDULE_CHANGES)?;
    let data = schedules::api::delete(app, p.get("schedule_id").unwrap_or_default())?;
    Ok(app.ok(req, 200, data))
}

fn tasks_diff(app: &Ctx, req: &Request, p: &Params) -> Res {
    let max = tasks::review::parse_max_bytes(req.query_param("max_bytes"))?;
    fresh_tasks(app);
    let data = tasks::review::diff(app, p.get("task_id").unwrap_or_default(), max)?;
    Ok(app.ok(req, 200, data))
}

fn tasks_merge(app: &Ctx, req: &Request, p: &Params) -> Res {
    host_ops::authorize_for(req, app.cfg.shared_token.as_deref(), &TASK_CHANGES)?;
    let body = req.json_object()?;
    let data = tasks::review::merge(app, p.get("task_id").unwrap_or_default(), &body)?;
    Ok(app.ok(req, 200, data))
}

fn tasks_discard(app: &Ctx, req: &Request, p: &Params) -> Res {
    host_ops::authorize_for(req, app.cfg.shared_token.as_deref(), &TASK_CHANGES)?;
    let body = req.json_object()?;
    if let Some(k) = body.keys().next() {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("Unknown field {k:?}; a discard takes no body."),
        )
        .with_details(json!({ "field": k })));
    }
    let data = tasks::review::discard(app, p.get("task_id").unwrap_or_default())?;
    Ok(app.ok(req, 200, data))
}

fn tasks_logs(app: &Ctx, req: &Request, p: &Params) -> Res {
    let id = p.get("task_id").unwrap_or_default();
    let limit = records::parse_limit(req.query_param("limit"), 200, 500)?;
    let since = match req.query_param("since").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("since must be a log seq (an integer >= 0), got {s:?}."),
            )
            .with_details(json!({ "parameter": "since" }))
        })?),
    };
    fresh_tasks(app);
    if !app.tasks.exists(id) {
        return Err(ApiError::not_found(format!("Unknown task \"{id}\".")));
    }
    let run_id = req.query_param("run_id").filter(|s| !s.is_empty());
    let logs = records::task_logs(&app.cfg.state_dir, id, run_id.as_deref(), since, limit)?;
    Ok(app.ok(req, 200, json!({ "count": logs.len(), "task_id": id, "run_id": run_id, "logs": logs, "limit": limit })))
}

fn runs_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let limit = records::parse_limit(req.query_param("limit"), 20, 100)?;
    let task_id = req.query_param("task_id").filter(|s| !s.is_empty());
    fresh_tasks(app);
    let runs = app.tasks.list_runs(task_id.as_deref(), limit)?;
    Ok(app.ok(
        req,
        200,
        json!({ "count": runs.len(), "runs": runs, "limit": limit }),
    ))
}

fn runs_read(app: &Ctx, req: &Request, p: &Params) -> Res {
    let run = app.tasks.run(p.get("run_id").unwrap_or_default())?;
    Ok(app.ok(req, 200, json!({ "run": run })))
}

fn codex_status(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (_, data) = app.codex.call("GET", "/v1/codexd/status", None)?;
    let target = app.codex.base().unwrap_or_default();
    Ok(app.ok(
        req,
        200,
        reshape_status(&data, target, describe::codex_routes(ROUTES)),
    ))
}

fn codex_sessions_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let query = forward_query(&req.query_pairs(), &["archived"]);
    let path = format!("/v1/codexd/sessions{query}");
    let (status, data) = app.codex.call("GET", &path, None)?;
    Ok(app.ok(req, status, data))
}

fn codex_sessions_read(app: &Ctx, req: &Request, p: &Params) -> Res {
    let id = p.get("session_id").unwrap_or_default();
    let (status, data) = app.codex.call(
        "GET",
        &format!("/v1/codexd/sessions/{}", encode_component(id)),
        None,
    )?;
    Ok(app.ok(req, status, data))
}

fn codex_sessions_create(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (status, data) = Forwarded::new(&req.json_object()?, SESSION_CREATE)
        .send(&app.codex, "/v1/codexd/sessions")?;
    Ok(app.ok(req, status, data))
}

fn codex_turn_create(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (status, data) =
        Forwarded::turn(&req.json_object()?).send(&app.codex, "/v1/codexd/turn")?;
    Ok(app.ok(req, status, data))
}

fn codex_turn_interrupt(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (status, data) = Forwarded::new(&req.json_object()?, TURN_INTERRUPT)
        .send(&app.codex, "/v1/codexd/turn/interrupt")?;
    Ok(app.ok(req, status, data))
}

fn codex_models_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    // Only the two known parameters go upstream; codexd validates their values.
    let hidden = req
        .query_param("include_hidden")
        .or_else(|| req.query_param("includeHidden"));
    let query: Vec<String> = [
        ("includeHidden", hidden),
        ("refresh", req.query_param("refresh")),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| format!("{name}={}", encode_component(&v))))
    .collect();
    let path = if query.is_empty() {
        "/v1/codexd/models".to_string()
    } else {
        format!("/v1/codexd/models?{}", query.join("&"))
    };
    let (status, data) = app.codex.call("GET", &path, None)?;
    Ok(app.ok(req, status, data))
}

/// `/v1/codexd/sessions/<id><rest>` for the request's `:session_id`.
fn upstream_session_path(p: &Params, rest: &str) -> String {
    let id = p.get("session_id").unwrap_or_default();
    format!("/v1/codexd/sessions/{}{rest}", encode_component(id))
}

fn codex_sessions_turns(app: &Ctx, req: &Request, p: &Params) -> Res {
    let query = forward_query(&req.query_pairs(), &["limit", "cursor"]);
    let path = upstream_session_path(p, &format!("/turns{query}"));
    let (status, data) = app.codex.call("GET", &path, None)?;
    Ok(app.ok(req, status, data))
}

fn codex_sessions_delete(app: &Ctx, req: &Request, p: &Params) -> Res {
    let (status, data) = app
        .codex
        .call("DELETE", &upstream_session_path(p, ""), None)?;
    Ok(app.ok(req, status, data))
}

fn codex_sessions_compact(app: &Ctx, req: &Request, p: &Params) -> Res {
    let path = upstream_session_path(p, "/compact");
    let (status, data) = app.codex.call("POST", &path, Some(&json!({})))?;
    Ok(app.ok(req, status, data))
}

fn codex_sessions_fork(app: &Ctx, req: &Request, p: &Params) -> Res {
    let path = upstream_session_path(p, "/fork");
    let (status, data) =
        Forwarded::new(&req.json_object()?, &[FORK_FIELDS]).send(&app.codex, &path)?;
    Ok(app.ok(req, status, data))
}

fn codex_threads_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let query = forward_query(
        &req.query_pairs(),
        &["cwd", "search", "limit", "cursor", "archived"],
    );
    let path = format!("/v1/codexd/threads{query}");
    let (status, data) = app.codex.call("GET", &path, None)?;
    Ok(app.ok(req, status, data))
}

fn codex_review_create(app: &Ctx, req: &Request, _: &Params) -> Res {
    let (status, data) = Forwarded::new(&req.json_object()?, &[REVIEW_FIELDS])
        .send(&app.codex, "/v1/codexd/review")?;
    Ok(app.ok(req, status, data))
}

fn codex_requests_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let (status, data) = app.codex.call("GET", "/v1/codexd/requests", None)?;
    Ok(app.ok(req, status, data))
}

fn codex_requests_answer(app: &Ctx, req: &Request, p: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let body = req.json_object()?;
    let path = format!(
        "/v1/codexd/requests/{}",
        encode_component(p.get("request_id").unwrap_or_default())
    );
    let (status, data) =
        Forwarded::new(&body, &[&["decision", "result"]]).send(&app.codex, &path)?;
    Ok(app.ok(req, status, data))
}

fn notifications_list(app: &Ctx, req: &Request, _: &Params) -> Res {
    let limit = match req.query_param("limit") {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_request", "limit must be 1 to 1000.")
                    .with_details(json!({ "field": "limit" }))
            })?,
    };
    Ok(app.ok(req, 200, app.notify.to_json(limit)))
}

fn approvals_answer(app: &Ctx, req: &Request, p: &Params) -> Res {
    let request_id = p.get("request_id").unwrap_or_default();
    let decision = p.get("decision").unwrap_or_default();
    let exp = req.query_param("exp").unwrap_or_default();
    let sig = req.query_param("sig").unwrap_or_default();
    let now_s = baa::common::time::now_ms() / 1000;
    app.notify
        .links()
        .check(request_id, decision, &exp, &sig, now_s)
        .map_err(|r| ApiError::new(403, r.code(), r.to_string()))?;
    let path = format!("/v1/codexd/requests/{}", encode_component(request_id));
    let answered = app
        .codex
        .call("POST", &path, Some(&json!({ "decision": decision })));
    match answered {
        Ok((status, data)) => {
            log::info!("approval {request_id} answered {decision} from a notification link");
            Ok(app.ok(req, status, data))
        }
        Err(e) if e.status == 404 || e.status == 409 => Err(ApiError::new(
            403,
            "approval_already_answered",
            format!("Approval request \"{request_id}\" is no longer waiting (already answered or ended)."),
        )),
        Err(e) => Err(e),
    }
}

fn host_exec(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let body = req.json_object()?;
    let started = Instant::now();
    let answer = host_ops::exec::run(&body, &app.exec_slots);
    app.audit.record(req.remote, started, &answer);
    Ok(app.ok(req, 200, answer))
}

fn host_files_read(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let body = req.json_object()?;
    let started = Instant::now();
    // Held until the answer is serialized: the large copies of a read are all made under
    // the cap.
    let slot = app.file_slots.take();
    let answer = match &slot {
        Ok(_) => host_ops::files::read(&body, &app.protected_paths),
        Err(e) => host_ops::files::read_refused(&body, e.clone()),
    };
    app.audit.record(req.remote, started, &answer);
    let reply = app.ok(req, 200, answer);
    drop(slot);
    Ok(reply)
}

fn host_files_write(app: &Ctx, req: &Request, _: &Params) -> Res {
    host_ops::authorize(req, app.cfg.shared_token.as_deref())?;
    let body = req.json_object()?;
    let started = Instant::now();
    let slot = app.file_slots.take();
    let answer = match &slot {
        Ok(_) => host_ops::files::write(&body, &app.protected_paths),
        Err(e) => host_ops::files::write_refused(&body, e.clone()),
    };
    drop(slot);
    app.audit.record(req.remote, started, &answer);
    Ok(app.ok(req, 200, answer))
}

/// The MCP endpoint over this table.
fn mcp_endpoint(app: &Ctx) -> mcp::Endpoint<'_, Ctx> {
    mcp::Endpoint {
        routes: ROUTES,
        ctx: app,
        sessions: &app.mcp,
        host_ops: app.cfg.mcp.host_ops,
        token: app.cfg.shared_token.as_deref(),
        server_version: &app.cfg.version,
    }
}

fn mcp_post(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(mcp::post(&mcp_endpoint(app), req).into())
}

fn mcp_delete(app: &Ctx, req: &Request, _: &Params) -> Res {
    Ok(mcp::delete(&mcp_endpoint(app), req).into())
}

fn ws_firefox(app: &Ctx, req: &Request, _: &Params) -> Res {
    firefox::upgrade(app, req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_id_describe_names_is_a_listed_route() {
        for id in describe::BUSINESS.iter().chain(describe::CONTROL) {
            let route = router::find(ROUTES, id);
            assert!(
                route.is_some_and(Route::listed),
                "describe names {id}, which is not a listed route"
            );
        }
        // The documents name further ids (examples, summaries); building them finds any miss.
        let cfg = crate::config::for_test(&[]);
        let facts = describe::Facts {
            routes: ROUTES,
            cfg: &cfg,
            base_url: "http://127.0.0.1:4317",
            system: json!({"mode": "running"}),
        };
        let role = describe::Role {
            lease_state: "leader",
            is_leader: true,
            started: true,
        };
        let docs = [
            describe::full(&facts),
            describe::business(&facts),
            describe::control(&facts),
            describe::capabilities(&facts, &role),
        ];
        assert!(
            docs.iter().all(|d| d["system"]["mode"] == "running"),
            "{docs:?}"
        );
    }
}
