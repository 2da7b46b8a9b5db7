//! The request-body contract of the Codex surface (SPEC §4.3), shared by the conductor's
//! proxy (which forwards only these fields) and codexd (which accepts them), so the two
//! cannot drift: every field codexd documents passes the proxy, and a field either drops is
//! named back to the caller ([`dropped`]). camelCase is canonical; snake_case spellings are
//! accepted on input.

use serde_json::{Map, Value};

/// Session fields codexd passes through to the app-server's `thread/start` and
/// `thread/resume` (a fork's overrides are a subset of these).
pub const THREAD_FIELDS: &[&str] = &[
    "approvalPolicy",
    "baseInstructions",
    "config",
    "cwd",
    "developerInstructions",
    "ephemeral",
    "model",
    "modelProvider",
    "personality",
    "sandbox",
    "serviceTier",
];

/// Session fields codexd keeps itself (`threadId` picks `thread/resume`).
pub const SESSION_OWN: &[&str] = &["metadata", "purpose", "threadId"];

/// Fields of a session create (SPEC §4.3): the thread's and codexd's own.
pub const SESSION_FIELDS: &[&[&str]] = &[THREAD_FIELDS, SESSION_OWN];

/// codexd's own per-session settings, accepted on create beside the SPEC §4.3 fields.
pub const SESSION_EXTRAS: &[&str] = &["approvalDefault", "approvalTimeoutMs"];

/// Experimental `thread/start` fields: codexd forwards them only when it initialized the
/// app-server with `experimentalApi` (`BAA_CODEXD_EXPERIMENTAL_API=1`), and refuses them
/// with a 400 otherwise. (`dynamicTools` and `experimentalRawEvents` are left out: they need
/// a client that answers tool calls or reads raw events, which codexd is not.)
pub const SESSION_EXPERIMENTAL: &[&str] = &[
    "environments",
    "multiAgentMode",
    "permissions",
    "runtimeWorkspaceRoots",
];

/// Every field a session create accepts.
pub const SESSION_CREATE: &[&[&str]] = &[
    THREAD_FIELDS,
    SESSION_OWN,
    SESSION_EXTRAS,
    SESSION_EXPERIMENTAL,
];

/// Turn fields codexd passes through to `turn/start` as per-turn overrides.
pub const TURN_OVERRIDES: &[&str] = &[
    "approvalPolicy",
    "collaborationMode",
    "cwd",
    "effort",
    "model",
    "outputSchema",
    "personality",
    "sandboxPolicy",
    "serviceTier",
    "summary",
];

/// Turn fields codexd reads itself (`expectedTurnId` makes the turn a `turn/steer`).
pub const TURN_OWN: &[&str] = &["expectedTurnId", "input", "sessionId"];

/// Fields of a turn create (SPEC §4.3; `prompt` is an accepted alias of `input`).
pub const TURN_FIELDS: &[&[&str]] = &[TURN_OVERRIDES, TURN_OWN];

/// Accepted on turn create beside the SPEC §4.3 fields (`prompt` aliases `input`).
pub const TURN_EXTRAS: &[&str] = &["prompt"];

/// Experimental `turn/start` fields, on the same terms as [`SESSION_EXPERIMENTAL`].
/// `collaborationMode` is also in [`TURN_OVERRIDES`] (SPEC §4.3 names it).
pub const TURN_EXPERIMENTAL: &[&str] = &[
    "additionalContext",
    "collaborationMode",
    "environments",
    "multiAgentMode",
    "permissions",
    "runtimeWorkspaceRoots",
];

/// Every field a turn create accepts.
pub const TURN_CREATE: &[&[&str]] = &[TURN_OVERRIDES, TURN_OWN, TURN_EXTRAS, TURN_EXPERIMENTAL];

/// Fields of a turn interrupt.
pub const INTERRUPT_FIELDS: &[&str] = &["sessionId", "turnId"];

/// Every field a turn interrupt accepts.
pub const TURN_INTERRUPT: &[&[&str]] = &[INTERRUPT_FIELDS];

/// The experimental fields present (non-null) in a whitelisted body, in `list` order.
pub fn experimental_in(body: &Map<String, Value>, list: &[&str]) -> Vec<String> {
    list.iter()
        .filter(|f| body.get(**f).is_some_and(|v| !v.is_null()))
        .map(|f| f.to_string())
        .collect()
}

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

/// The keys of `body` that [`whitelist`] drops, sorted: unknown ones, and a snake_case
/// spelling whose camelCase twin is also present (the twin wins).
pub fn dropped(body: &Map<String, Value>, allowed: &[&[&str]]) -> Vec<String> {
    let is_allowed = |k: &str| allowed.iter().any(|list| list.contains(&k));
    let mut out: Vec<String> = body
        .keys()
        .filter(|k| {
            if is_allowed(k) {
                return false;
            }
            let c = camel(k);
            !is_allowed(&c) || body.contains_key(&c)
        })
        .cloned()
        .collect();
    out.sort();
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
        let out = whitelist(body.as_object().unwrap(), &[TURN_OWN, SESSION_OWN]);
        assert_eq!(
            Value::Object(out),
            json!({"sessionId": "b", "threadId": "t"})
        );
        assert_eq!(camel("approval_policy"), "approvalPolicy");
        assert_eq!(camel("cwd"), "cwd");
    }

    #[test]
    fn dropped_names_what_the_whitelist_leaves_out() {
        let body = json!({"session_id": "a", "sessionId": "b", "approval_timeout_ms": 5, "bogus": 1, "env": {}});
        let b = body.as_object().unwrap();
        assert_eq!(
            dropped(b, &[TURN_OWN, TURN_OVERRIDES, SESSION_EXTRAS]),
            ["bogus", "env", "session_id"]
        );
        assert_eq!(
            Value::Object(whitelist(b, SESSION_CREATE)),
            json!({"approvalTimeoutMs": 5})
        );
    }

    #[test]
    fn experimental_fields_are_found_after_the_whitelist() {
        let body =
            json!({"collaboration_mode": {"mode": "plan"}, "permissions": null, "input": "x"});
        let b = whitelist(body.as_object().unwrap(), TURN_CREATE);
        assert_eq!(
            experimental_in(&b, TURN_EXPERIMENTAL),
            ["collaborationMode"]
        );
    }

    #[test]
    fn the_lists_make_up_the_spec_bodies() {
        let flat = |lists: &[&[&str]]| {
            let mut all: Vec<&str> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            all.sort();
            all.join(", ")
        };
        assert_eq!(
            flat(SESSION_FIELDS),
            "approvalPolicy, baseInstructions, config, cwd, developerInstructions, ephemeral, metadata, model, modelProvider, personality, purpose, sandbox, serviceTier, threadId"
        );
        assert_eq!(
            flat(TURN_FIELDS),
            "approvalPolicy, collaborationMode, cwd, effort, expectedTurnId, input, model, outputSchema, personality, sandboxPolicy, serviceTier, sessionId, summary"
        );
    }
}
