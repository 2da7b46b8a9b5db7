//! Review on the core: `POST /v1/codexd/review` runs the app-server's `review/start` inline
//! on a session's thread (or on a new session working in `cwd`). The review is a turn like
//! any other: 202 with its id, `lastTurnStatus` `inProgress` until it ends, and its findings
//! in the turn record (`kind: "review"`, `review`, `finalMessage`).

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::codex_fields::{whitelist, REVIEW_FIELDS};

use crate::core::Core;
use crate::events::Level;
use crate::json_path::str_at;
use crate::rpc::RpcError;
use crate::sessions::opt_string;
use crate::turn_ops::begin_turn;

const TARGET_FORMS: &str = "target must be \"uncommittedChanges\", {\"baseBranch\": \"<branch>\"}, {\"commit\": \"<sha>\", \"title\"?: \"…\"} or {\"custom\": \"<instructions>\"} (the app-server's {\"type\": …} forms are accepted too).";

impl Core {
    /// `POST /v1/codexd/review`: 202 `{accepted, session, turnId, target}`.
    pub fn start_review(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let b = whitelist(body, &[REVIEW_FIELDS]);
        let target = review_target(b.get("target"))?;
        let session_id = match (opt_string(&b, "sessionId")?, opt_string(&b, "cwd")?) {
            (Some(id), None) => {
                self.ensure_hot(&id)?;
                id
            }
            // The route refused a relative cwd already (`cwd_field`).
            (None, Some(_)) => {
                let mut create = b.clone();
                create.remove("target");
                let session = self.create_session(&create)?;
                str_at(&session, &["sessionId"])
                    .unwrap_or_default()
                    .to_string()
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "Give exactly one of sessionId (review on that session's thread) or cwd (review on a new session working there).",
                ))
            }
        };
        self.refuse_while_running(&session_id)?;
        let (link, result) = self.with_thread(&session_id, |link, thread_id| {
            link.rpc.request(
                "review/start",
                json!({"threadId": thread_id, "target": target}),
                self.timeout(),
            )
        })?;
        let turn_id = str_at(&result, &["turn", "id"])
            .ok_or_else(|| {
                crate::rpc_http::rpc_error(RpcError::Server {
                    code: 0,
                    message: "review/start result has no turn id".into(),
                    data: result.clone(),
                })
            })?
            .to_string();
        self.sessions.update(&session_id, |s| {
            s.has_rollout = true;
            s.child_pid = Some(link.pid);
            begin_turn(s, &turn_id);
            if let Some(cur) = s.current.as_mut().filter(|c| c.turn_id == turn_id) {
                cur.facts.kind = Some("review");
            }
        });
        // Durable before the 202, as a turn's (`start_turn`).
        self.persist(&session_id)?;
        self.emit(
            Level::Info,
            "turn.accepted",
            format!("started review turn {turn_id} on session {session_id}"),
            json!({"sessionId": session_id, "turnId": turn_id, "steered": false, "review": true, "target": target}),
        );
        Ok(json!({
            "accepted": true,
            "session": self.session_json(&session_id)?,
            "turnId": turn_id,
            "target": target,
        }))
    }
}

/// The caller's target as the app-server's `ReviewTarget`.
fn review_target(v: Option<&Value>) -> Result<Value, ApiError> {
    let bad = || ApiError::bad_request("invalid_request", TARGET_FORMS);
    let text = |o: &Map<String, Value>, k: &str| -> Result<Option<String>, ApiError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(bad()),
        }
    };
    match v {
        Some(Value::String(s)) if s == "uncommittedChanges" => {
            Ok(json!({"type": "uncommittedChanges"}))
        }
        Some(Value::Object(o)) => {
            let kind = text(o, "type")?;
            match kind.as_deref() {
                Some("uncommittedChanges") => Ok(json!({"type": "uncommittedChanges"})),
                Some("baseBranch") => {
                    let branch = text(o, "branch")?.ok_or_else(bad)?;
                    Ok(json!({"type": "baseBranch", "branch": branch}))
                }
                Some("commit") => {
                    let sha = text(o, "sha")?.ok_or_else(bad)?;
                    Ok(json!({"type": "commit", "sha": sha, "title": text(o, "title")?}))
                }
                Some("custom") => {
                    let instructions = text(o, "instructions")?.ok_or_else(bad)?;
                    Ok(json!({"type": "custom", "instructions": instructions}))
                }
                Some(_) => Err(bad()),
                None => {
                    if o.get("uncommittedChanges") == Some(&Value::Bool(true)) {
                        Ok(json!({"type": "uncommittedChanges"}))
                    } else if let Some(branch) = text(o, "baseBranch")? {
                        Ok(json!({"type": "baseBranch", "branch": branch}))
                    } else if let Some(sha) = text(o, "commit")? {
                        Ok(json!({"type": "commit", "sha": sha, "title": text(o, "title")?}))
                    } else if let Some(instructions) = text(o, "custom")? {
                        Ok(json!({"type": "custom", "instructions": instructions}))
                    } else {
                        Err(bad())
                    }
                }
            }
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_the_short_and_the_app_server_forms() {
        let ok = |v: Value| review_target(Some(&v)).unwrap_or_else(|e| panic!("{v}: {e:?}"));
        assert_eq!(
            ok(json!("uncommittedChanges")),
            json!({"type": "uncommittedChanges"})
        );
        assert_eq!(
            ok(json!({"baseBranch": "main"})),
            json!({"type": "baseBranch", "branch": "main"})
        );
        assert_eq!(
            ok(json!({"commit": "abc", "title": "fix"})),
            json!({"type": "commit", "sha": "abc", "title": "fix"})
        );
        assert_eq!(
            ok(json!({"type": "commit", "sha": "abc"})),
            json!({"type": "commit", "sha": "abc", "title": null})
        );
        assert_eq!(
            ok(json!({"custom": "look at errors"})),
            json!({"type": "custom", "instructions": "look at errors"})
        );
        for bad in [
            json!(null),
            json!("everything"),
            json!({}),
            json!({"baseBranch": ""}),
            json!({"baseBranch": 3}),
            json!({"type": "baseBranch"}),
            json!({"type": "bogus"}),
        ] {
            let e = review_target(Some(&bad)).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "invalid_request"),
                "{bad}"
            );
        }
        assert!(review_target(None).is_err());
    }
}
