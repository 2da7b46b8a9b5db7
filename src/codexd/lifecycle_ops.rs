//! Session lifecycle on the core: delete (archive the thread, leave the hot registry),
//! compact and fork, and the sweep that moves sessions finished and idle beyond the
//! retention from the hot registry to the archive (`session_store`), where they stay
//! readable by id and from where a new turn brings them back.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::codex_fields::{whitelist, FORK_FIELDS, THREAD_FIELDS};
use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339};

use crate::core::Core;
use crate::events::Level;
use crate::registry::state_write_failed;
use crate::rpc::RpcError;
use crate::rpc_http::rpc_error;
use crate::session_ops::{apply_thread_result, new_session};
use crate::sessions::{opt_string, pick, Session, SessionStatus, ThreadStatus};

/// How long a compact waits for the app-server to open its compaction turn, so the 202
/// can name it (the `thread/compact/start` answer comes before the turn starts).
const COMPACT_SETTLE: Duration = Duration::from_secs(3);
const SETTLE_POLL: Duration = Duration::from_millis(10);

impl Core {
    /// 409 `turn_running` while the session has a turn open.
    pub(crate) fn refuse_while_running(&self, session_id: &str) -> Result<(), ApiError> {
        let running = self
            .sessions
            .read(session_id, |s| s.current_turn_id.clone())
            .flatten();
        match running {
            None => Ok(()),
            Some(turn_id) => Err(ApiError::new(
                409,
                "turn_running",
                format!("Session \"{session_id}\" is running turn {turn_id}; wait for it to end or interrupt it first."),
            )
            .with_details(json!({"sessionId": session_id, "turnId": turn_id}))),
        }
    }

    fn no_history(session_id: &str, what: &str) -> ApiError {
        ApiError::new(
            409,
            "no_history",
            format!("Session \"{session_id}\" has no turns yet: there is nothing to {what}."),
        )
        .with_details(json!({"sessionId": session_id}))
    }

    /// `DELETE /v1/codexd/sessions/:id`: unsubscribes and archives the thread, then moves
    /// the session to the archive with status `archived`. Deleting it again is a no-op.
    pub fn delete_session(&self, session_id: &str) -> Result<Value, ApiError> {
        let mut s = match self.sessions.get(session_id) {
            Some(s) => s,
            None => self.archived_session(session_id)?,
        };
        if s.archive_reason.as_deref() == Some("deleted") {
            return Ok(json!({"deleted": true, "alreadyDeleted": true, "session": s.to_json()}));
        }
        self.refuse_while_running(session_id)?;
        let link = self.link()?;
        if let Some(thread_id) = s.thread_id.clone() {
            let params = json!({"threadId": thread_id});
            if s.loaded_generation == link.generation {
                // Stop its events reaching us; failure only means it was not subscribed.
                let r = link
                    .rpc
                    .request("thread/unsubscribe", params.clone(), self.timeout());
                if let Err(e) = r {
                    log::info!("session {session_id}: thread/unsubscribe: {e}");
                }
            }
            if s.has_rollout {
                match link.rpc.request("thread/archive", params, self.timeout()) {
                    Ok(_) => {}
                    // Nothing on disk to archive (the thread never ran a turn, or its
                    // rollout was removed): deleting the session is all there is to do.
                    Err(RpcError::Server { message, .. })
                        if message.contains("no rollout") || message.contains("not found") =>
                    {
                        log::info!("session {session_id}: thread/archive: {message}");
                    }
                    Err(e) => return Err(rpc_error(e)),
                }
            }
        }
        s.status = SessionStatus::Archived;
        s.thread_status = ThreadStatus::NotLoaded;
        s.archived_at = Some(now_rfc3339());
        s.archive_reason = Some("deleted".into());
        s.loaded_generation = 0;
        s.updated_at = now_rfc3339();
        self.move_to_archive(&s)?;
        self.emit(
            Level::Info,
            "session.deleted",
            format!("session {session_id} deleted; its thread is archived"),
            json!({"sessionId": session_id, "threadId": s.thread_id}),
        );
        Ok(json!({"deleted": true, "alreadyDeleted": false, "session": s.to_json()}))
    }

    /// Writes the archive file, then takes the session out of the hot registry.
    fn move_to_archive(&self, s: &Session) -> Result<(), ApiError> {
        self.sessions.files().archive(s).map_err(|e| {
            ApiError::new(
                500,
                "state_write_failed",
                format!(
                    "Cannot write the archive of session \"{}\": {e}",
                    s.session_id
                ),
            )
        })?;
        self.sessions
            .remove_if(&s.session_id, |_| true)
            .map_err(|e| state_write_failed(&s.session_id, &e))?;
        Ok(())
    }

    /// `POST /v1/codexd/sessions/:id/compact`: `thread/compact/start`, which runs as a turn
    /// of its own (`kind: "compact"`); 202 with its id once the app-server opened it.
    pub fn compact_session(&self, session_id: &str) -> Result<Value, ApiError> {
        self.ensure_hot(session_id)?;
        self.refuse_while_running(session_id)?;
        let (had_rollout, before) = self
            .sessions
            .read(session_id, |s| (s.has_rollout, s.last_turn_id.clone()))
            .unwrap_or((false, None));
        if !had_rollout {
            return Err(Self::no_history(session_id, "compact"));
        }
        self.with_thread(session_id, |link, thread_id| {
            link.rpc.request(
                "thread/compact/start",
                json!({"threadId": thread_id}),
                self.timeout(),
            )
        })?;
        let deadline = Instant::now() + COMPACT_SETTLE;
        let turn_id = loop {
            let last = self
                .sessions
                .read(session_id, |s| s.last_turn_id.clone())
                .flatten();
            if last.is_some() && last != before {
                break last;
            }
            if Instant::now() >= deadline {
                log::warn!(
                    "session {session_id}: the compaction turn did not start within {} ms",
                    COMPACT_SETTLE.as_millis()
                );
                break None;
            }
            std::thread::sleep(SETTLE_POLL);
        };
        // The compaction turn was opened by its `turn/started`: on disk before the 202.
        self.persist(session_id)?;
        self.emit(
            Level::Info,
            "session.compact_requested",
            format!("compaction requested for session {session_id}"),
            json!({"sessionId": session_id, "turnId": turn_id}),
        );
        Ok(json!({
            "accepted": true,
            "session": self.session_json(session_id)?,
            "turnId": turn_id,
        }))
    }

    /// `POST /v1/codexd/sessions/:id/fork`: `thread/fork` of the session's thread (through
    /// `lastTurnId` when given) as a new session; 201 `{session}`.
    pub fn fork_session(
        &self,
        session_id: &str,
        body: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let b = whitelist(body, &[FORK_FIELDS]);
        let source = match self.sessions.get(session_id) {
            Some(s) => s,
            None => self.archived_session(session_id)?,
        };
        let (Some(thread_id), true) = (source.thread_id.clone(), source.has_rollout) else {
            return Err(Self::no_history(session_id, "fork"));
        };
        let purpose = opt_string(&b, "purpose")?.unwrap_or_else(|| source.purpose.clone());
        if purpose != "duplex" && purpose != "worker" {
            return Err(ApiError::bad_request(
                "invalid_request",
                "purpose must be \"duplex\" or \"worker\".",
            ));
        }
        let metadata = match b.get("metadata") {
            None | Some(Value::Null) => source.metadata.clone(),
            Some(m @ Value::Object(_)) => m.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "metadata must be an object.",
                ))
            }
        };
        let last_turn_id = opt_string(&b, "lastTurnId")?;
        let overrides = pick(&b, THREAD_FIELDS);
        let mut params = overrides.clone();
        params.insert("threadId".into(), json!(thread_id));
        params.insert("excludeTurns".into(), json!(true));
        if let Some(t) = &last_turn_id {
            params.insert("lastTurnId".into(), json!(t));
        }
        let link = self.link()?;
        let result = link
            .rpc
            .request("thread/fork", Value::Object(params), self.timeout())
            .map_err(rpc_error)?;
        let mut thread_params = source
            .thread_params
            .as_object()
            .cloned()
            .unwrap_or_default();
        thread_params.extend(overrides);
        let mut session = new_session(
            purpose,
            metadata,
            source.approvals.clone(),
            Value::Object(thread_params),
            &link,
            &self.cfg.server_endpoint,
        );
        session.has_rollout = true;
        session.forked_from = Some(session_id.to_string());
        apply_thread_result(&mut session, &result);
        let created = self.add_session(
            session,
            json!({"forkedFrom": session_id, "fromThreadId": thread_id, "lastTurnId": last_turn_id}),
        )?;
        Ok(json!({"session": created}))
    }

    /// Moves sessions finished and idle for longer than the retention from the hot registry
    /// to the archive. Runs on the ticker; writes files but never waits on the child.
    pub fn archive_idle(&self) {
        let retention = self.cfg.session_retention_ms;
        if retention == 0 {
            return;
        }
        let now = now_ms();
        let asking: Vec<String> = self
            .state()
            .pending
            .iter()
            .filter_map(|p| p.session_id.clone())
            .collect();
        // From the registry's index: the sweep reads no session file until one is due.
        let due: Vec<Session> = self
            .sessions
            .idle_since_before(now.saturating_sub(retention))
            .into_iter()
            .filter(|id| !asking.contains(id))
            .filter_map(|id| self.sessions.get(&id))
            .filter(|s| {
                s.current_turn_id.is_none()
                    && ms_from_rfc3339(&s.updated_at)
                        .is_some_and(|t| now.saturating_sub(t) >= retention)
            })
            .collect();
        for mut s in due {
            let seen = s.updated_at.clone();
            s.archived_at = Some(now_rfc3339());
            s.archive_reason = Some("retention".into());
            if let Err(e) = self.sessions.files().archive(&s) {
                log::error!("cannot archive session {}: {e}", s.session_id);
                continue;
            }
            // Only if nothing touched it while its file was written.
            let moved = self.sessions.remove_if(&s.session_id, |x| {
                x.updated_at == seen && x.current_turn_id.is_none()
            });
            match moved {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.sessions.files().unarchive(&s.session_id);
                    continue;
                }
                // Out of the registry, archived; its hot file goes on the next flush (and
                // a restart with both keeps it hot, which loses nothing).
                Err(e) => log::error!("session {}: {e}", s.session_id),
            }
            self.emit(
                Level::Info,
                "session.archived",
                format!(
                    "session {} archived: idle since {seen} (retention {retention} ms)",
                    s.session_id
                ),
                json!({"sessionId": s.session_id, "threadId": s.thread_id, "idleSince": seen, "retentionMs": retention}),
            );
        }
    }
}
