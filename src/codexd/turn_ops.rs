//! Turn operations on the core: start, steer, interrupt, and the idle-thread watchdog that
//! reconciles a turn whose `turn/completed` never arrived.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;

use baa::common::codex_fields::{
    whitelist, TURN_CREATE, TURN_EXPERIMENTAL, TURN_INTERRUPT, TURN_OVERRIDES,
};

use crate::approvals::{self, Pending};
use crate::core::Core;
use crate::events::Level;
use crate::experimental;
use crate::json_path::str_at;
use crate::rpc::RpcError;
use crate::rpc_http::rpc_error;
use crate::sessions::{
    normalize_input, opt_string, pick, Session, ThreadStatus, TurnProgress, TurnRecord,
};

/// How long an interrupt keeps retrying while a just-started turn becomes active.
const INTERRUPT_SETTLE: Duration = Duration::from_secs(3);

impl Core {
    /// `POST /v1/codexd/turn`: 202 `{accepted, session, turnId}`.
    pub fn start_turn(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let b = whitelist(body, TURN_CREATE);
        let session_id = opt_string(&b, "sessionId")?
            .ok_or_else(|| ApiError::bad_request("invalid_request", "sessionId is required."))?;
        let input = normalize_input(&b)?;
        let expected = opt_string(&b, "expectedTurnId")?;
        // Unknown session → 404 before anything else; an archived one comes back (or, when
        // deleted, is a 409).
        self.ensure_hot(&session_id)?;
        let session = self.session_json(&session_id)?;
        experimental::check(self.cfg.experimental_api, &b, TURN_EXPERIMENTAL)?;
        self.models.check_request(
            self.current_link().as_deref(),
            opt_string(&b, "model")?.as_deref(),
            opt_string(&b, "effort")?.as_deref(),
            session.get("model").and_then(Value::as_str),
        )?;
        let mut attempt = 0;
        let (turn_id, steered, link) = loop {
            attempt += 1;
            let (link, thread_id) = self.ensure_loaded(&session_id)?;
            let result = match &expected {
                Some(exp) => link
                    .rpc
                    .request(
                        "turn/steer",
                        json!({"threadId": thread_id, "expectedTurnId": exp, "input": input}),
                        self.timeout(),
                    )
                    .map(|r| (str_at(&r, &["turnId"]).unwrap_or(exp).to_string(), true)),
                None => {
                    let mut p = pick(&b, TURN_OVERRIDES);
                    p.extend(pick(&b, TURN_EXPERIMENTAL));
                    p.insert("threadId".into(), json!(thread_id));
                    p.insert("input".into(), input.clone());
                    link.rpc
                        .request("turn/start", Value::Object(p), self.timeout())
                        .and_then(|r| {
                            str_at(&r, &["turn", "id"])
                                .map(|id| (id.to_string(), false))
                                .ok_or(RpcError::Server {
                                    code: 0,
                                    message: "turn/start result has no turn id".into(),
                                    data: r.clone(),
                                })
                        })
                }
            };
            match result {
                Ok((tid, steered)) => break (tid, steered, link),
                // The child lost the thread (it restarted under us): load it and retry once.
                Err(RpcError::Server { message, .. })
                    if attempt == 1 && message.contains("thread not found") =>
                {
                    self.mark_unloaded(&session_id);
                }
                Err(e) => return Err(rpc_error(e)),
            }
        };
        let overrides = pick(
            &b,
            &["model", "effort", "serviceTier", "cwd", "approvalPolicy"],
        );
        self.sessions.update(&session_id, |s| {
            s.has_rollout = true;
            s.child_pid = Some(link.pid);
            if let Some(m) = overrides.get("model").and_then(Value::as_str) {
                s.model = Some(m.to_string());
            }
            if let Some(m) = overrides.get("effort").and_then(Value::as_str) {
                s.reasoning_effort = Some(m.to_string());
            }
            if let Some(m) = overrides.get("serviceTier").and_then(Value::as_str) {
                s.service_tier = Some(m.to_string());
            }
            if let Some(m) = overrides.get("cwd").and_then(Value::as_str) {
                s.cwd = Some(m.to_string());
            }
            if let Some(m) = overrides.get("approvalPolicy") {
                s.approval_policy = Some(m.clone());
            }
            begin_turn(s, &turn_id);
        });
        // Durable before the 202: a codexd killed right after it still knows the turn
        // (and, in unix mode, re-attaches to it).
        self.persist(&session_id)?;
        self.emit(
            Level::Info,
            "turn.accepted",
            format!(
                "{} turn {turn_id} on session {session_id}",
                if steered { "steered" } else { "started" }
            ),
            json!({"sessionId": session_id, "turnId": turn_id, "steered": steered}),
        );
        Ok(json!({
            "accepted": true,
            "session": self.session_json(&session_id)?,
            "turnId": turn_id,
            "steered": steered,
        }))
    }

    /// `POST /v1/codexd/turn/interrupt`.
    pub fn interrupt_turn(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let b = whitelist(body, TURN_INTERRUPT);
        let session_id = opt_string(&b, "sessionId")?
            .ok_or_else(|| ApiError::bad_request("invalid_request", "sessionId is required."))?;
        let (thread_id, current, loaded) = self
            .sessions
            .read(&session_id, |s| {
                (
                    s.thread_id.clone(),
                    s.current_turn_id.clone(),
                    s.loaded_generation,
                )
            })
            .ok_or_else(|| Self::unknown_session(&session_id))?;
        let turn_id = opt_string(&b, "turnId")?.or(current).ok_or_else(|| {
            ApiError::new(
                409,
                "no_active_turn",
                format!("Session \"{session_id}\" has no running turn."),
            )
        })?;
        let link = self.link()?;
        if loaded != link.generation {
            return Err(ApiError::new(
                409,
                "no_active_turn",
                format!("Session \"{session_id}\" has no running turn in the current app-server."),
            ));
        }
        // The app-server answers turn/start before its turn is active, so an interrupt sent
        // right after a start can be told "no active turn". While we still consider that
        // turn current, retry briefly instead of failing the caller.
        let deadline = Instant::now() + INTERRUPT_SETTLE;
        loop {
            let result = link.rpc.request(
                "turn/interrupt",
                json!({"threadId": thread_id, "turnId": turn_id}),
                self.timeout(),
            );
            match result {
                Ok(_) => break,
                Err(RpcError::Server { ref message, .. })
                    if message.contains("no active turn") && Instant::now() < deadline =>
                {
                    let still_current = self.sessions.read(&session_id, |s| {
                        s.current_turn_id.as_deref() == Some(turn_id.as_str())
                    });
                    if still_current != Some(true) {
                        return Err(ApiError::new(
                            409,
                            "no_active_turn",
                            format!("Session \"{session_id}\" has no running turn."),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(rpc_error(e)),
            }
        }
        self.emit(
            Level::Info,
            "turn.interrupt_requested",
            format!("interrupt requested for turn {turn_id} of session {session_id}"),
            json!({"sessionId": session_id, "turnId": turn_id}),
        );
        Ok(json!({"interrupted": true, "sessionId": session_id, "turnId": turn_id}))
    }

    // ---- server requests (approvals) --------------------------------------------------

    /// A turn ended: the turn's record and the session are written, then it goes out as an
    /// event.
    pub(crate) fn turn_finished(&self, session_id: &str, r: &TurnRecord, source: &str) {
        self.store_turn(session_id, r);
        self.persist_or_log(session_id);
        self.emit_turn_finished(session_id, r, source);
    }

    pub(crate) fn emit_turn_finished(&self, session_id: &str, r: &TurnRecord, source: &str) {
        let (level, kind) = match r.status.as_str() {
            "completed" => (Level::Info, "turn.completed"),
            "interrupted" => (Level::Warn, "turn.interrupted"),
            _ => (Level::Error, "turn.failed"),
        };
        self.emit(
            level,
            kind,
            format!("turn {} of session {session_id} {}", r.turn_id, r.status),
            json!({
                "sessionId": session_id, "turnId": r.turn_id, "status": r.status,
                "durationMs": r.duration_ms, "finalMessage": r.final_message, "error": r.error, "usage": r.usage, "source": source,
            }),
        );
    }

    // ---- periodic work ----------------------------------------------------------------

    /// Answers expired server requests with their default, writes dirty state files, and
    /// returns the turns whose thread went idle without `turn/completed`: the caller (the
    /// ticker) reconciles each on a thread it owns.
    pub fn tick(&self) -> Vec<Reconcile> {
        let now = Instant::now();
        let expired: Vec<Pending> = {
            let mut st = self.state();
            let (gone, keep): (Vec<Pending>, Vec<Pending>) =
                st.pending.drain(..).partition(|p| p.deadline <= now);
            st.pending = keep;
            gone
        };
        if !expired.is_empty() {
            // No longer pending on disk before the answers (and their events) go out.
            self.mark_daemon_dirty();
            self.flush();
        }
        for p in expired {
            let answer = approvals::answer_for(&p.method, &p.params, p.default_decision);
            if let Err(e) = self.send_answer(&p, &answer, "timeout") {
                log::warn!("could not answer {} after its timeout: {e}", p.request_id);
            }
        }
        let idle = Duration::from_millis(self.cfg.reconcile_idle_ms);
        let mut due: Vec<Reconcile> = Vec::new();
        // Progress only: nothing here is written.
        self.sessions.for_each_mut(|s| {
            let (Some(tid), Some(cur)) = (s.thread_id.clone(), s.current.as_mut()) else {
                return false;
            };
            let idle_long_enough = cur
                .idle_since
                .is_some_and(|t| now.duration_since(t) >= idle);
            if !cur.reconciling && idle_long_enough {
                cur.reconciling = true;
                due.push(Reconcile {
                    session_id: s.session_id.clone(),
                    thread_id: tid,
                    turn_id: cur.turn_id.clone(),
                });
            }
            false
        });
        self.flush();
        due
    }

    /// `turn/completed` never came although the thread is idle: read the thread and close
    /// the turn with what the app-server recorded.
    pub fn reconcile(&self, job: &Reconcile) {
        let (session_id, thread_id, turn_id) = (
            job.session_id.as_str(),
            job.thread_id.as_str(),
            job.turn_id.as_str(),
        );
        let Some(link) = self.current_link() else {
            return;
        };
        let result = link.rpc.request(
            "thread/read",
            json!({"threadId": thread_id, "includeTurns": true}),
            self.timeout(),
        );
        let turn = result.as_ref().ok().and_then(|r| {
            r.pointer("/thread/turns")
                .and_then(Value::as_array)
                .and_then(|turns| {
                    turns
                        .iter()
                        .find(|t| str_at(t, &["id"]) == Some(turn_id))
                        .cloned()
                })
        });
        let status = turn
            .as_ref()
            .and_then(|t| str_at(t, &["status"]))
            .unwrap_or("inProgress");
        if status == "inProgress" {
            self.sessions.with_mut(session_id, |s| {
                if let Some(c) = s.current.as_mut() {
                    c.reconciling = false;
                    c.idle_since = None;
                }
            });
            return;
        }
        let turn = turn.unwrap_or(Value::Null);
        let mut record = None;
        self.sessions.update(session_id, |s| {
            if s.current_turn_id.as_deref() == Some(turn_id) {
                record = Some(finish_turn(s, &turn));
            }
        });
        if let Some(r) = record {
            log::warn!(
                "turn {turn_id}: no turn/completed from the app-server; reconciled as {}",
                r.status
            );
            self.turn_finished(session_id, &r, "reconcile");
        }
    }
}

/// A turn to reconcile with `thread/read`.
pub struct Reconcile {
    pub session_id: String,
    pub thread_id: String,
    pub turn_id: String,
}

/// Opens `turn_id` as the running turn unless it is already open or already finished
/// (its `turn/completed` may arrive before the HTTP handler gets here). From here until the
/// turn ends, `lastTurnId` names it and `lastTurnStatus` is `inProgress`.
pub(crate) fn begin_turn(s: &mut Session, turn_id: &str) {
    if s.current_turn_id.as_deref() == Some(turn_id) || is_finished(s, turn_id) {
        return;
    }
    let sub = s.current.as_mut();
    if let Some(cur) = sub.filter(|c| c.root_turn_id.as_deref() == Some(turn_id)) {
        // A sub-turn of this turn opened first: it was this turn all along.
        cur.turn_id = turn_id.to_string();
        cur.root_turn_id = None;
        s.current_turn_id = Some(turn_id.to_string());
        s.last_turn_id = Some(turn_id.to_string());
        return;
    }
    s.current_turn_id = Some(turn_id.to_string());
    s.last_turn_id = Some(turn_id.to_string());
    s.last_turn_status = Some("inProgress".into());
    s.thread_status = ThreadStatus::Active;
    s.turn_count += 1;
    s.current = Some(TurnProgress::new(turn_id));
}

/// True when `turn_id` is the record of the session's last finished turn.
pub(crate) fn is_finished(s: &Session, turn_id: &str) -> bool {
    s.current_turn_id.as_deref() != Some(turn_id)
        && s.last_turn.as_ref().is_some_and(|r| r.turn_id == turn_id)
}

/// Closes the running turn from a Turn object (`turn/completed` or `thread/read`).
pub(crate) fn finish_turn(s: &mut Session, turn: &Value) -> TurnRecord {
    let turn_id = str_at(turn, &["id"])
        .map(str::to_string)
        .or_else(|| s.current_turn_id.clone())
        .unwrap_or_default();
    let mut record = match s.current.take() {
        Some(progress) => progress.finish(turn),
        None => TurnRecord::closed(turn),
    };
    record.turn_id = turn_id.clone();
    s.current_turn_id = None;
    s.last_turn_id = Some(turn_id);
    s.last_turn_status = Some(record.status.clone());
    if s.thread_status == ThreadStatus::Active {
        s.thread_status = ThreadStatus::Idle;
    }
    s.last_turn = Some(record.clone());
    if record.status == "failed" {
        s.last_error = record
            .error
            .as_ref()
            .and_then(|e| str_at(e, &["message"]).map(str::to_string));
    }
    record
}
