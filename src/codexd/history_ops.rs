//! History reads on the core: a session's turn records page by page, and the app-server's
//! threads.
//!
//! Turn pages come from the app-server's own history (`thread/turns/list` with every item),
//! so they reach back past codexd's event ring and past restarts; each is merged with the
//! record codexd kept when the turn ended (token usage and the turn's diff, which the
//! app-server does not keep). Without a child, the pages come from codexd's records alone
//! (`source: "codexd"`, its most recent turns).

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::time::rfc3339_from_ms;

use crate::core::Core;
use crate::json_path::str_at;
use crate::rpc::RpcError;
use crate::rpc_http::rpc_error;
use crate::sessions::{Session, TurnRecord};
use crate::turn_record::cap;

/// Page size of turns and threads when the caller gives none, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// A thread's preview (its first prompt) is cut to this many bytes in a listing.
const PREVIEW_CAP: usize = 500;
/// How far back a fork's sources are searched for turn records.
const MAX_FORK_DEPTH: usize = 8;
/// Cursors of pages served from codexd's own records start with this.
const LOCAL_CURSOR: &str = "codexd:";

/// `GET /v1/codexd/threads` filters.
#[derive(Debug, Default)]
pub struct ThreadQuery {
    pub cwd: Option<String>,
    pub search: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
    pub archived: bool,
}

impl Core {
    /// A hot or archived session, as it is now.
    fn any_session(&self, id: &str) -> Result<Session, ApiError> {
        match self.sessions.get(id) {
            Some(s) => Ok(s),
            None => self.archived_session(id),
        }
    }

    /// `GET /v1/codexd/sessions/:id/turns`: newest first, `limit` per page, `cursor` from
    /// the previous page's `nextCursor`.
    pub fn session_turns(
        &self,
        session_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Value, ApiError> {
        let s = self.any_session(session_id)?;
        // A finished turn's record is appended before its session says it ended.
        let ours = self.sessions.files().turns(session_id);
        let local_cursor = cursor.and_then(|c| c.strip_prefix(LOCAL_CURSOR));
        let thread = s.thread_id.clone().filter(|_| s.has_rollout);
        let (Some(thread_id), None) = (thread, local_cursor) else {
            return local_page(&s, ours, limit, local_cursor);
        };
        let link = match self.link() {
            Ok(l) => l,
            Err(_) if cursor.is_none() => return local_page(&s, ours, limit, None),
            Err(e) => return Err(e),
        };
        let mut params = json!({"threadId": thread_id, "limit": limit, "itemsView": "full"});
        if let Some(c) = cursor {
            params["cursor"] = json!(c);
        }
        let page = match link
            .rpc
            .request("thread/turns/list", params, self.timeout())
        {
            Ok(p) => p,
            // The thread's rollout is gone (removed by hand, or never written).
            Err(RpcError::Server { message, .. })
                if cursor.is_none() && message.contains("no rollout") =>
            {
                return local_page(&s, ours, limit, None)
            }
            Err(e) => return Err(rpc_error(e)),
        };
        // A fork's thread carries its source's turns: their records are the source's.
        let mut kept = self.ancestor_records(&s);
        kept.extend(ours);
        let running = s.current.as_ref().map(|c| c.to_record("inProgress"));
        let turns: Vec<Value> = page
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            // A review's sub-turn is part of its root turn, which is listed itself.
            .filter(|t| {
                let root = str_at(t, &["rootTurnId"]);
                root.is_none() || root == str_at(t, &["id"])
            })
            .map(|t| {
                let mut r = TurnRecord::from_app_turn(t);
                let known = running
                    .iter()
                    .chain(kept.iter().rev())
                    .find(|k| k.turn_id == r.turn_id);
                if let Some(k) = known {
                    r.fill_from(k);
                }
                serde_json::to_value(r).unwrap_or(Value::Null)
            })
            .collect();
        Ok(json!({
            "sessionId": s.session_id,
            "threadId": thread_id,
            "count": turns.len(),
            "turns": turns,
            "nextCursor": page.get("nextCursor").cloned().unwrap_or(Value::Null),
            "source": "app-server",
        }))
    }

    /// The turn records of the sessions `s` was forked from, oldest ancestor first (a
    /// bounded walk: a broken chain or a loop ends it).
    fn ancestor_records(&self, s: &Session) -> Vec<TurnRecord> {
        let mut chain = Vec::new();
        let mut next = s.forked_from.clone();
        while let Some(id) = next.take() {
            if chain.len() >= MAX_FORK_DEPTH || chain.contains(&id) {
                break;
            }
            next = self.any_session(&id).ok().and_then(|a| a.forked_from);
            chain.push(id);
        }
        chain
            .iter()
            .rev()
            .flat_map(|id| self.sessions.files().turns(id))
            .collect()
    }

    /// `GET /v1/codexd/threads`: `thread/list`, newest first, each thread with the codexd
    /// session that holds it (if any).
    pub fn threads(&self, q: &ThreadQuery) -> Result<Value, ApiError> {
        let link = self.link()?;
        let mut params = Map::new();
        params.insert("limit".into(), json!(q.limit));
        if let Some(c) = &q.cursor {
            params.insert("cursor".into(), json!(c));
        }
        if let Some(c) = &q.cwd {
            params.insert("cwd".into(), json!(c));
        }
        if let Some(t) = &q.search {
            params.insert("searchTerm".into(), json!(t));
        }
        if q.archived {
            params.insert("archived".into(), json!(true));
        }
        let page = link
            .rpc
            .request("thread/list", Value::Object(params), self.timeout())
            .map_err(rpc_error)?;
        let holders: Vec<(String, String)> = self
            .sessions
            .list(|s| Some((s.thread_id.clone()?, s.session_id.clone())))
            .into_iter()
            .flatten()
            .collect();
        let threads: Vec<Value> = page
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| {
                let id = str_at(t, &["id"]).unwrap_or_default();
                let held_by = holders.iter().find(|(tid, _)| tid == id).map(|(_, s)| s);
                thread_json(t, held_by)
            })
            .collect();
        Ok(json!({
            "count": threads.len(),
            "threads": threads,
            "nextCursor": page.get("nextCursor").cloned().unwrap_or(Value::Null),
        }))
    }
}

/// A page of codexd's own records of `s`, newest first (the running turn first of all);
/// the cursor is an offset into that list.
fn local_page(
    s: &Session,
    ours: Vec<TurnRecord>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Value, ApiError> {
    let offset = match cursor {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            ApiError::bad_request("invalid_query", "cursor is not one this route gave out.")
        })?,
    };
    let running = s.current.as_ref().map(|c| c.to_record("inProgress"));
    let all: Vec<TurnRecord> = running.into_iter().chain(ours.into_iter().rev()).collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    let next = offset + page.len();
    Ok(json!({
        "sessionId": s.session_id,
        "threadId": s.thread_id,
        "count": page.len(),
        "turns": page,
        "nextCursor": (next < all.len()).then(|| format!("{LOCAL_CURSOR}{next}")),
        "source": "codexd",
    }))
}

/// The parts of an app-server Thread a caller picks a thread by.
fn thread_json(t: &Value, session_id: Option<&String>) -> Value {
    let time = |k: &str| {
        t.get(k)
            .and_then(Value::as_u64)
            .map(|s| rfc3339_from_ms(s.saturating_mul(1000)))
    };
    json!({
        "threadId": t.get("id"),
        "name": t.get("name"),
        "preview": str_at(t, &["preview"]).map(|p| cap(p, PREVIEW_CAP)),
        "cwd": t.get("cwd"),
        "createdAt": time("createdAt"),
        "updatedAt": time("updatedAt"),
        "status": str_at(t, &["status", "type"]),
        "model": t.get("model"),
        "modelProvider": t.get("modelProvider"),
        "source": t.get("source"),
        "forkedFromId": t.get("forkedFromId"),
        "gitInfo": t.get("gitInfo"),
        "path": t.get("path"),
        "sessionId": session_id,
    })
}
