//! codexd's HTTP/WS surface (SPEC §5.3). One table drives dispatch and the route list in
//! `/v1/codexd/status`; every JSON body is pretty-printed.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{json, Value};

use baa::common::api_error::{ok_envelope, ApiError};
use baa::common::cli;
use baa::common::http::guard::HostPolicy;
use baa::common::http::router::{self, dispatch, Params, Route};
use baa::common::http::{Handler, Reply, Request, Response};

use crate::config::DEFAULT_EVENT_STREAM_PATH;
use crate::core::Core;
use crate::cwd_field;
use crate::event_stream::events;
use crate::heap;
use crate::history_ops::{ThreadQuery, DEFAULT_LIMIT, MAX_LIMIT};

type Ctx = Arc<Core>;
type Res = Result<Reply, ApiError>;

fn ok(status: u16, data: Value) -> Res {
    Ok(Response::json_value(status, &ok_envelope("", data), true).into())
}

/// The table with the event stream at its default path, one route per line (`rustfmt::skip`:
/// a table reads down its columns). What is served is `table`, which moves that one route
/// to the configured path.
#[rustfmt::skip]
pub static ROUTES: &[Route<Ctx>] = &[
    Route::probe("probe.healthz", "GET", "/healthz", "Liveness: {status: ok} and the child's status.", healthz),
    Route::probe("probe.readyz", "GET", "/readyz", "Readiness: 200 {ready: true, warnings} while the child runs and daemon-state.json is usable; else 503 not_ready (details.reasons).", readyz),
    Route::read("codexd.status", "GET", "/v1/codexd/status", "Service, identity, daemon/child, sessions and recent events.", status),
    Route::read("codexd.sessions.list", "GET", "/v1/codexd/sessions", "Every session.", sessions_list),
    Route::read("codexd.sessions.read", "GET", "/v1/codexd/sessions/:session_id", "One session with its recent events.", session_read),
    Route::write("codexd.sessions.create", "POST", "/v1/codexd/sessions", "Start a Codex thread as a session, or adopt an existing thread with threadId.", session_create),
    Route::read("codexd.sessions.turns", "GET", "/v1/codexd/sessions/:session_id/turns", "The session's turn records, newest first. Query: limit (default 20, max 100), cursor.", session_turns),
    Route::write("codexd.sessions.delete", "DELETE", "/v1/codexd/sessions/:session_id", "Archive the session's thread and move the session to the archive (409 while a turn runs).", session_delete),
    Route::write("codexd.sessions.compact", "POST", "/v1/codexd/sessions/:session_id/compact", "Compact the thread's context (a turn of its own); 202.", session_compact),
    Route::write("codexd.sessions.fork", "POST", "/v1/codexd/sessions/:session_id/fork", "Fork the session's thread into a new session. Body: {lastTurnId?, purpose?, metadata?, …}.", session_fork),
    Route::read("codexd.threads.list", "GET", "/v1/codexd/threads", "Codex threads on disk, newest first. Query: cwd, search, limit, cursor, archived.", threads_list),
    Route::write("codexd.review.create", "POST", "/v1/codexd/review", "Review changes as a turn. Body: {sessionId | cwd, target}; 202.", review_create),
    Route::write("codexd.turn.create", "POST", "/v1/codexd/turn", "Start a turn, or steer the running one with expectedTurnId.", turn_create),
    Route::write("codexd.turn.interrupt", "POST", "/v1/codexd/turn/interrupt", "Interrupt the session's running turn.", turn_interrupt),
    Route::read("codexd.models.list", "GET", "/v1/codexd/models", "Models and their reasoning efforts (model/list, cached). Query: includeHidden, refresh.", models_list),
    Route::read("codexd.requests.list", "GET", "/v1/codexd/requests", "Approvals and other child requests waiting for an answer.", requests_list),
    Route::write("codexd.requests.answer", "POST", "/v1/codexd/requests/:request_id", "Answer a pending request: {decision} or {result}.", request_answer),
    Route::write("codexd.child.restart", "POST", "/v1/codexd/child/restart", "Stop the app-server child and start a fresh one now (also leaves crash_loop); loopback callers only.", child_restart),
    Route::read(EVENTS_ID, "GET", DEFAULT_EVENT_STREAM_PATH, "WebSocket event stream (?since=<seq> replays); plain GET lists events after since.", events),
];

const EVENTS_ID: &str = "codexd.events";

/// The table as served: `BAA_CODEXD_EVENT_STREAM_PATH` decides where the event stream is.
pub fn table(event_path: &str) -> Vec<Route<Ctx>> {
    ROUTES
        .iter()
        .map(|r| match r.id() {
            EVENTS_ID => r.clone().at(event_path),
            _ => r.clone(),
        })
        .collect()
}

/// `baa-codexd routes [--json]`: the served table, printed without starting anything. Only
/// the event stream's path depends on configuration, so the caller resolves only that.
pub fn command(event_path: &str, json: bool) -> ExitCode {
    cli::print(
        "baa-codexd",
        &router::render_table(&table(event_path), json),
    )
}

/// The server handler: Host/Origin checks, then the table.
pub fn handler(core: Ctx) -> Handler {
    let routes = Arc::new(table(&core.cfg.event_stream_path));
    let policy: Arc<std::sync::OnceLock<HostPolicy>> = Arc::new(std::sync::OnceLock::new());
    let core2 = core.clone();
    let policy2 = policy.clone();
    Arc::new(move |req: &Request| {
        let policy = policy2.get_or_init(|| {
            let bound = core2
                .listening()
                .and_then(|b| b.trim_start_matches("http://").parse().ok())
                .unwrap_or_else(|| {
                    std::net::SocketAddr::from(([127, 0, 0, 1], core2.cfg.listen.port))
                });
            HostPolicy::for_listener(bound, &[])
        });
        let result = policy
            .check(req)
            .and_then(|_| policy.check_origin(req))
            .and_then(|_| dispatch(&routes, &core2, req));
        match result {
            Ok(reply) => reply,
            Err(e) => Reply::Http(e.to_response("", true)),
        }
    })
}

fn healthz(core: &Ctx, _: &Request, _: &Params) -> Res {
    let child = core.child_json();
    ok(
        200,
        json!({
            "status": "ok",
            "service": "baa-codexd",
            "mode": core.cfg.mode,
            "version": core.cfg.version,
            "demo": core.cfg.demo,
            "child": {"status": child["status"], "pid": child["pid"], "strategy": child["strategy"], "lastError": child["lastError"]},
        }),
    )
}

fn readyz(core: &Ctx, _: &Request, _: &Params) -> Res {
    let reasons = core.not_ready();
    let warnings = core.warnings();
    if reasons.is_empty() {
        return ok(200, json!({"ready": true, "warnings": warnings}));
    }
    Err(ApiError::new(
        503,
        "not_ready",
        format!("codexd is not ready: {}.", reasons.join("; ")),
    )
    .with_details(json!({"reasons": reasons, "warnings": warnings})))
}

fn status(core: &Ctx, _: &Request, _: &Params) -> Res {
    let mut data = core.status_json();
    let routes: Vec<Value> = table(&core.cfg.event_stream_path)
        .iter()
        .filter(|r| r.listed())
        .map(Route::describe)
        .collect();
    data["routes"] = Value::Array(routes);
    let listed = data
        .pointer("/snapshot/sessionRegistry/sessions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    heap::listed(listed);
    ok(200, data)
}

fn sessions_list(core: &Ctx, req: &Request, _: &Params) -> Res {
    let archived = bool_query(req, &["archived"])?;
    let sessions = core.sessions_json(archived);
    heap::listed(sessions.len());
    ok(
        200,
        json!({"count": sessions.len(), "archived": archived, "sessions": sessions}),
    )
}

/// `limit` in 1..=MAX_LIMIT, default DEFAULT_LIMIT.
fn limit_query(req: &Request) -> Result<usize, ApiError> {
    match req.query_param("limit").filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("limit must be 1..{MAX_LIMIT}."))
            }),
    }
}

fn text_query(req: &Request, name: &str) -> Option<String> {
    req.query_param(name).filter(|s| !s.is_empty())
}

fn session_turns(core: &Ctx, req: &Request, p: &Params) -> Res {
    let id = p.get("session_id").unwrap_or_default();
    let limit = limit_query(req)?;
    let cursor = text_query(req, "cursor");
    ok(200, core.session_turns(id, limit, cursor.as_deref())?)
}

fn session_delete(core: &Ctx, _: &Request, p: &Params) -> Res {
    ok(
        200,
        core.delete_session(p.get("session_id").unwrap_or_default())?,
    )
}

fn session_compact(core: &Ctx, _: &Request, p: &Params) -> Res {
    ok(
        202,
        core.compact_session(p.get("session_id").unwrap_or_default())?,
    )
}

fn session_fork(core: &Ctx, req: &Request, p: &Params) -> Res {
    let body = req.json_object()?;
    cwd_field::check_body(&body)?;
    ok(
        201,
        core.fork_session(p.get("session_id").unwrap_or_default(), &body)?,
    )
}

fn threads_list(core: &Ctx, req: &Request, _: &Params) -> Res {
    let cwd = text_query(req, "cwd");
    cwd_field::check_query(cwd.as_deref())?;
    let q = ThreadQuery {
        cwd,
        search: text_query(req, "search"),
        limit: limit_query(req)?,
        cursor: text_query(req, "cursor"),
        archived: bool_query(req, &["archived"])?,
    };
    ok(200, core.threads(&q)?)
}

fn review_create(core: &Ctx, req: &Request, _: &Params) -> Res {
    let body = req.json_object()?;
    cwd_field::check_body(&body)?;
    ok(202, core.start_review(&body)?)
}

fn session_read(core: &Ctx, _: &Request, p: &Params) -> Res {
    let id = p.get("session_id").unwrap_or_default();
    let session = core.session_json(id)?;
    ok(
        200,
        json!({"session": session, "recentEvents": core.session_events(id, 50)}),
    )
}

fn session_create(core: &Ctx, req: &Request, _: &Params) -> Res {
    let body = req.json_object()?;
    cwd_field::check_body(&body)?;
    let session = core.create_session(&body)?;
    ok(201, json!({"session": session}))
}

fn turn_create(core: &Ctx, req: &Request, _: &Params) -> Res {
    let body = req.json_object()?;
    cwd_field::check_body(&body)?;
    ok(202, core.start_turn(&body)?)
}

fn turn_interrupt(core: &Ctx, req: &Request, _: &Params) -> Res {
    let body = req.json_object()?;
    ok(200, core.interrupt_turn(&body)?)
}

fn models_list(core: &Ctx, req: &Request, _: &Params) -> Res {
    let include_hidden = bool_query(req, &["includeHidden", "include_hidden"])?;
    let refresh = bool_query(req, &["refresh"])?;
    ok(
        200,
        core.models
            .list_json(&*core.link()?, refresh, include_hidden)?,
    )
}

/// A `true`/`false` (or `1`/`0`) query parameter under any of `names`; absent is false.
fn bool_query(req: &Request, names: &[&str]) -> Result<bool, ApiError> {
    let name = names[0];
    let value = names.iter().find_map(|n| req.query_param(n));
    match value.as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be true or false, got \"{other}\"."),
        )),
    }
}

fn requests_list(core: &Ctx, _: &Request, _: &Params) -> Res {
    let pending = core.pending_json();
    ok(200, json!({"count": pending.len(), "requests": pending}))
}

fn request_answer(core: &Ctx, req: &Request, p: &Params) -> Res {
    let body = req.json_object()?;
    ok(
        200,
        core.answer_request(p.get("request_id").unwrap_or_default(), &body)?,
    )
}

fn child_restart(core: &Ctx, req: &Request, _: &Params) -> Res {
    // codexd listens on loopback only; refuse anything else all the same, this one stops
    // running turns.
    if !req.remote.ip().is_loopback() {
        return Err(ApiError::new(
            403,
            "forbidden",
            "Only a loopback caller may restart the app-server.",
        ));
    }
    ok(202, core.request_restart()?)
}
