//! The request-body contract of the Codex surface (SPEC §4.3), shared by the conductor's
//! proxy (which forwards only these fields) and codexd (which accepts them).
//! camelCase is canonical; snake_case spellings are accepted on input.

use serde_json::{Map, Value};

/// Fields of a session create.
pub const SESSION_FIELDS: &[&str] = &[
    "approvalPolicy",
    "baseInstructions",
    "config",
    "cwd",
    "developerInstructions",
    "ephemeral",
    "metadata",
    "model",
    "modelProvider",
    "personality",
    "purpose",
    "sandbox",
    "serviceTier",
    "threadId",
];

/// Fields of a turn create (`prompt` is an accepted alias of `input`).
pub const TURN_FIELDS: &[&str] = &[
    "approvalPolicy",
    "collaborationMode",
    "cwd",
    "effort",
    "expectedTurnId",
    "input",
    "model",
    "outputSchema",
    "personality",
    "sandboxPolicy",
    "serviceTier",
    "sessionId",
    "summary",
];

/// Fields of a turn interrupt.
pub const INTERRUPT_FIELDS: &[&str] = &["sessionId", "turnId"];

/// Fields of a review (`sessionId` or `cwd`; with `cwd` a new session is made, which the
/// session fields after `target` configure).
pub const REVIEW_FIELDS: &[&str] = &[
    "sessionId",
    "cwd",
    "target",
    "approvalPolicy",
    "metadata",
    "model",
    "purpose",
    "sandbox",
];

/// Fields of a session fork: where to cut the history, the new session's own purpose and
/// metadata, and thread settings that differ from the source's.
pub const FORK_FIELDS: &[&str] = &[
    "lastTurnId",
    "metadata",
    "purpose",
    "approvalPolicy",
    "baseInstructions",
    "config",
    "cwd",
    "developerInstructions",
    "model",
    "modelProvider",
    "sandbox",
    "serviceTier",
];

/// Keeps only keys named in any of `allowed` (camelCase), accepting their snake_case
/// spellings too and renaming them to camelCase. A camelCase key wins over its twin.
pub fn whitelist(body: &Map<String, Value>, allowed: &[&[&str]]) -> Map<String, Value> {
    let is_allowed = |k: &str| allowed.iter().any(|list| list.contains(&k));
    let mut out = Map::new();
    for (k, v) in body {
        let name = if is_allowed(k) {
            k.clone()
        } else {
            let c = camel(k);
            if !is_allowed(&c) || body.contains_key(&c) {
                continue;
            }
            c
        };
        out.insert(name, v.clone());
    }
    out
}

/// `snake_case` → `camelCase`.
pub fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_allowed_accepts_snake_and_camel_wins() {
        let body =
            json!({"session_id": "a", "sessionId": "b", "thread_id": "t", "bogus": 1, "env": {}});
        let out = whitelist(body.as_object().unwrap(), &[TURN_FIELDS, SESSION_FIELDS]);
        assert_eq!(
            Value::Object(out),
            json!({"sessionId": "b", "threadId": "t"})
        );
        assert_eq!(camel("approval_policy"), "approvalPolicy");
        assert_eq!(camel("cwd"), "cwd");
    }
}
