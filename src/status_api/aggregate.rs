//! Fetching the upstream status documents and merging them into the `/v1/status` data.
//!
//! `fetch_all` is the only part that does I/O: one named thread per upstream call, all in
//! parallel, each bounded by the agent's connect/total timeouts, and the caller waits no
//! longer than that bound even if a thread were to hang — a late answer is dropped.
//! `build` is a pure function from those results to JSON, so the merge rules (which field
//! names are accepted, what becomes a warning) are unit-tested without sockets.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// Where the upstreams are and how long they may take.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub conductor_base: String,
    pub codexd_base: String,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
}

/// One upstream call: the envelope's `data`, or a one-line reason it is unavailable.
pub type Fetched = Result<Value, String>;

/// Everything the aggregate is built from.
#[derive(Debug, Clone)]
pub struct Raw {
    pub runtime: Fetched,
    pub system_state: Fetched,
    pub codexd_status: Fetched,
}

/// Upstream replies larger than this are treated as broken rather than buffered.
const MAX_REPLY_BYTES: u64 = 4 * 1024 * 1024;
/// Sessions and events shown; the registry may hold many more.
const MAX_SESSIONS: usize = 50;
const MAX_EVENTS: usize = 15;
/// Long upstream strings (agent messages, errors) are cut so one session cannot flood the page.
const MAX_TEXT_CHARS: usize = 300;

pub fn fetch_all(up: &Upstreams) -> Raw {
    let agent = crate::common::client::local_agent(up.connect_timeout, up.total_timeout);
    let calls = [
        ("runtime", format!("{}/v1/runtime", up.conductor_base)),
        ("state", format!("{}/v1/system/state", up.conductor_base)),
        ("codexd", format!("{}/v1/codexd/status", up.codexd_base)),
    ];
    let (tx, rx) = crossbeam_channel::bounded::<(usize, Fetched)>(calls.len());
    let mut results: Vec<Option<Fetched>> = vec![None; calls.len()];
    for (i, (name, url)) in calls.iter().enumerate() {
        let (tx, agent, url) = (tx.clone(), agent.clone(), url.clone());
        let spawned = thread::Builder::new()
            .name(format!("status-fetch-{name}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = tx.send((i, fetch_data(&agent, &url)));
            });
        if let Err(e) = spawned {
            results[i] = Some(Err(format!("could not start a fetch thread: {e}")));
        }
    }
    drop(tx);
    // The agent enforces `total_timeout` per call; the margin covers thread start-up.
    let deadline = Instant::now() + up.total_timeout + Duration::from_millis(250);
    while results.iter().any(Option::is_none) {
        match rx.recv_deadline(deadline) {
            Ok((i, r)) => results[i] = Some(r),
            Err(_) => break,
        }
    }
    let mut take = |i: usize| {
        results[i].take().unwrap_or_else(|| {
            Err(format!(
                "no answer within {} ms",
                up.total_timeout.as_millis()
            ))
        })
    };
    Raw {
        runtime: take(0),
        system_state: take(1),
        codexd_status: take(2),
    }
}

/// GET `url`, expecting our JSON envelope; returns its `data` (or the whole document when
/// there is no `data`, so a bare object from an older peer still shows).
fn fetch_data(agent: &ureq::Agent, url: &str) -> Fetched {
    let mut resp = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_string()
        .map_err(|e| format!("reading the reply failed: {e}"))?;
    let v: Value =
        serde_json::from_str(&body).map_err(|_| format!("HTTP {status}: the reply is not JSON"))?;
    if !(200..300).contains(&status) || v.get("ok") == Some(&Value::Bool(false)) {
        let code = v.get("error").and_then(Value::as_str).unwrap_or("error");
        let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(clip(&format!("HTTP {status} {code}: {msg}")));
    }
    Ok(v.get("data").cloned().unwrap_or(v))
}

/// Merges the upstream results into the `/v1/status` data object.
pub fn build(up: &Upstreams, raw: &Raw, generated_at: &str) -> Value {
    let runtime = raw.runtime.as_ref().ok();
    let state = raw.system_state.as_ref().ok();
    let codexd = raw.codexd_status.as_ref().ok();
    // codexd wraps its state in `snapshot`; accept a bare snapshot too.
    let snapshot = codexd.map(|c| c.get("snapshot").unwrap_or(c));
    let mut warnings: Vec<String> = Vec::new();

    let conductor_error = join_errors(&[
        ("runtime", &raw.runtime),
        ("system state", &raw.system_state),
    ]);
    let conductor_reachable = runtime.is_some() || state.is_some();
    if !conductor_reachable {
        warnings.push(format!(
            "conductor is unreachable at {}: {}",
            up.conductor_base,
            conductor_error.as_deref().unwrap_or("unknown error")
        ));
    } else if let Some(e) = &conductor_error {
        warnings.push(format!("conductor answered only in part: {e}"));
    }
    if let Some(list) = runtime
        .and_then(|r| r.get("warnings"))
        .and_then(Value::as_array)
    {
        for w in list {
            let text = w
                .as_str()
                .map(str::to_string)
                .or_else(|| text_at(w, &["message", "text"]))
                .unwrap_or_else(|| w.to_string());
            warnings.push(format!("conductor: {}", clip(&text)));
        }
    }

    let automation = state.map(automation).unwrap_or(Value::Null);
    if let Some(mode) = automation.get("mode").and_then(Value::as_str) {
        if mode != "running" {
            let by = text_at(&automation, &["requestedBy"]).unwrap_or_else(|| "unknown".into());
            let why = text_at(&automation, &["reason"]).unwrap_or_else(|| "no reason given".into());
            warnings.push(format!("automation is {mode} (by {by}: {why})"));
        }
    }

    let child = snapshot.map(child).unwrap_or(Value::Null);
    if let Some(e) = &raw.codexd_status.as_ref().err() {
        warnings.push(format!("codexd is unreachable at {}: {e}", up.codexd_base));
    } else {
        match child.get("status").and_then(Value::as_str) {
            Some("running") => {}
            Some(other) => warnings.push(format!("codex child is {other}")),
            None => warnings.push("codexd reports no child status".into()),
        }
        if let Some(e) = text_at(&child, &["lastError"]) {
            warnings.push(format!("codex child last error: {e}"));
        }
    }

    if let Some(snap) = snapshot {
        let limits = snap.get("limits").unwrap_or(&Value::Null);
        if let Some(until) = text_at(limits, &["blockedUntil"]) {
            warnings.push(format!(
                "codex rate limit used up until {until}: new task turns wait"
            ));
        }
        let account = snap.get("account").unwrap_or(&Value::Null);
        if first(account, &["authRequired"]) == Some(Value::Bool(true))
            && first(account, &["loggedIn"]) == Some(Value::Bool(false))
        {
            warnings.push("codex is logged out: new task turns wait for `codex login`".into());
        }
    }

    let node = node(runtime, snapshot);
    let overall = if !conductor_reachable && codexd.is_none() {
        "down"
    } else if warnings.is_empty() {
        "ok"
    } else {
        "degraded"
    };

    json!({
        "generatedAt": generated_at,
        "overall": overall,
        "node": node,
        "automation": automation,
        "conductor": {
            "reachable": conductor_reachable,
            "baseUrl": up.conductor_base,
            "error": conductor_error,
            "runtime": runtime.cloned(),
            "systemState": state.cloned(),
        },
        "codexd": {
            "reachable": codexd.is_some(),
            "baseUrl": up.codexd_base,
            "error": raw.codexd_status.as_ref().err(),
            "status": codexd.cloned(),
            "mode": snapshot.and_then(|s| first(s, &["daemon.mode"])),
            "demo": snapshot.and_then(|s| first(s, &["daemon.demo"])).unwrap_or(Value::Bool(false)),
            "startedAt": snapshot.and_then(|s| first(s, &["daemon.startedAt", "daemon.started_at"])),
            "child": child,
            "codex": snapshot.map(codex).unwrap_or(Value::Null),
            "account": snapshot.and_then(|s| first(s, &["account"])),
            "limits": snapshot.and_then(|s| first(s, &["limits"])),
            "sessions": snapshot.map(sessions).unwrap_or_else(|| json!({"count": 0, "active": 0, "items": []})),
            "recentEvents": snapshot.map(events).unwrap_or_else(|| json!({"count": 0, "items": []})),
        },
        "warnings": warnings,
    })
}

fn join_errors(parts: &[(&str, &Fetched)]) -> Option<String> {
    let errs: Vec<(&str, &String)> = parts
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| (*name, e)))
        .collect();
    match errs.as_slice() {
        [] => None,
        // Both calls failing the same way (connection refused) reads better once.
        [(_, a), rest @ ..] if rest.iter().all(|(_, e)| e == a) && errs.len() > 1 => {
            Some((*a).clone())
        }
        _ => Some(
            errs.iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

fn node(runtime: Option<&Value>, snapshot: Option<&Value>) -> Value {
    let r = runtime.unwrap_or(&Value::Null);
    let s = snapshot.unwrap_or(&Value::Null);
    let node_id = first(r, &["daemon.nodeId", "daemon.node_id", "nodeId"])
        .or_else(|| first(s, &["identity.nodeId", "identity.node_id"]));
    json!({
        "nodeId": node_id,
        "identity": first(r, &["identity"]),
        "host": first(r, &["daemon.host"]),
        "role": first(r, &["daemon.role"]),
        "leaseState": first(r, &["daemon.leaseState", "daemon.lease_state"]),
        "schedulerEnabled": first(r, &["daemon.schedulerEnabled", "daemon.scheduler_enabled"]),
        "conductorPid": first(r, &["runtime.pid"]),
        "conductorStartedAt": first(r, &["runtime.startedAt", "runtime.started_at"]),
        "codexdDaemonId": first(s, &["identity.daemonId", "identity.daemon_id"]),
        "codexdVersion": first(s, &["identity.version"]),
        "repoRoot": first(s, &["identity.repoRoot", "identity.repo_root"]),
    })
}

/// System state with snake_case (the conductor's record shape) or camelCase names.
fn automation(s: &Value) -> Value {
    json!({
        "mode": first(s, &["mode"]),
        "requestedBy": first(s, &["requested_by", "requestedBy"]),
        "reason": first(s, &["reason"]).map(|v| clip_value(&v)),
        "updatedAt": first(s, &["updated_at", "updatedAt"]),
        "holderId": first(s, &["holder_id", "holderId"]),
        "version": first(s, &["version"]),
    })
}

fn child(snapshot: &Value) -> Value {
    let c = snapshot
        .get("daemon")
        .and_then(|d| d.get("child"))
        .unwrap_or(&Value::Null);
    // Field names as baa-codexd reports them (checked against the real daemon by
    // tests/it/stack_e2e.rs); the last exit is the newest entry of `recentExits`.
    let last_exit = c
        .get("recentExits")
        .and_then(Value::as_array)
        .and_then(|a| a.last())
        .and_then(|e| first(e, &["reason"]));
    json!({
        "status": first(c, &["status"]),
        "pid": first(c, &["pid"]),
        "restarts": first(c, &["restarts"]),
        "lastError": first(c, &["lastError"]).map(|v| clip_value(&v)),
        "lastExit": last_exit.map(|v| clip_value(&v)),
        "nextRestartAt": first(c, &["nextRestartAt"]),
        "strategy": first(c, &["strategy"]),
        "endpoint": first(c, &["endpoint"]),
        "startedAt": first(c, &["startedAt"]),
        "demo": first(c, &["demo"]),
    })
}

/// Which codex runs: the running child's version, and the binary's `--version`.
fn codex(snapshot: &Value) -> Value {
    let c = snapshot.get("codex").unwrap_or(&Value::Null);
    json!({
        "version": first(c, &["version"]),
        "cliVersion": first(c, &["cliVersion"]),
        "userAgent": first(c, &["userAgent"]).map(|v| clip_value(&v)),
        "experimentalApi": first(c, &["experimentalApi"]),
    })
}

fn sessions(snapshot: &Value) -> Value {
    let reg = snapshot.get("sessionRegistry").unwrap_or(&Value::Null);
    let list: &[Value] = reg
        .get("sessions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut items: Vec<Value> = list.iter().filter(|s| s.is_object()).map(session).collect();
    // RFC 3339 UTC strings sort chronologically; newest first.
    items.sort_by(|a, b| {
        let key = |v: &Value| {
            v.get("updatedAt")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        key(b).cmp(&key(a))
    });
    let active = items
        .iter()
        .filter(|s| s.get("status").and_then(Value::as_str) == Some("active"))
        .count();
    items.truncate(MAX_SESSIONS);
    json!({
        "count": list.len(),
        "active": active,
        "updatedAt": first(reg, &["updatedAt"]),
        "items": items,
    })
}

fn session(s: &Value) -> Value {
    json!({
        "sessionId": first(s, &["sessionId", "session_id", "id"]),
        "purpose": first(s, &["purpose"]),
        "status": first(s, &["status"]),
        "model": first(s, &["model"]),
        "lastTurnId": first(s, &["lastTurnId", "lastTurn.turnId", "lastTurn.id"]),
        "lastTurnStatus": first(s, &["lastTurnStatus", "lastTurn.status"]),
        // codexd keeps the outcome in `lastTurn {status, finalMessage, error{message,…}}`;
        // a session-level `lastError` (e.g. a failed resume) is shown when the turn has none.
        "lastTurnError": first(s, &["lastTurn.error.message", "lastTurn.error", "lastError"]).map(|v| clip_value(&v)),
        "lastTurnMessage": first(s, &["lastTurn.finalMessage"]).map(|v| clip_value(&v)),
        "updatedAt": first(s, &["updatedAt", "updated_at"]),
    })
}

fn events(snapshot: &Value) -> Value {
    let rec = snapshot.get("recentEvents").unwrap_or(&Value::Null);
    let list: &[Value] = rec
        .get("events")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut items: Vec<Value> = list
        .iter()
        .filter(|e| e.is_object())
        .map(|e| {
            json!({
                "seq": first(e, &["seq"]),
                "createdAt": first(e, &["createdAt", "created_at"]),
                "level": first(e, &["level"]),
                "type": first(e, &["type"]),
                "message": first(e, &["message"]).map(|v| clip_value(&v)),
            })
        })
        .collect();
    items.sort_by_key(|e| std::cmp::Reverse(e.get("seq").and_then(Value::as_u64).unwrap_or(0)));
    items.truncate(MAX_EVENTS);
    json!({
        "count": list.len(),
        "updatedAt": first(rec, &["updatedAt"]),
        "items": items,
    })
}

/// The first of the dotted `paths` that is present and not null.
pub fn first(v: &Value, paths: &[&str]) -> Option<Value> {
    paths.iter().find_map(|p| {
        let mut cur = v;
        for key in p.split('.') {
            cur = cur
                .as_object()
                .and_then(|m: &Map<String, Value>| m.get(key))?;
        }
        (!cur.is_null()).then(|| cur.clone())
    })
}

/// Like `first`, as display text: strings as is, numbers and booleans printed, objects
/// and arrays as compact JSON; empty strings count as absent.
pub fn text_at(v: &Value, paths: &[&str]) -> Option<String> {
    first(v, paths).and_then(|x| {
        let s = match x {
            Value::String(s) => s,
            other => other.to_string(),
        };
        (!s.trim().is_empty()).then_some(s)
    })
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_TEXT_CHARS).collect();
    out.push('…');
    out
}

fn clip_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(clip(s)),
        other => Value::String(clip(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Upstreams {
        Upstreams {
            conductor_base: "http://127.0.0.1:4317".into(),
            codexd_base: "http://127.0.0.1:4319".into(),
            connect_timeout: Duration::from_millis(300),
            total_timeout: Duration::from_millis(1500),
        }
    }

    pub fn runtime() -> Value {
        json!({
            "identity": "mini-main@mini(primary)",
            "daemon": {"nodeId": "mini-main", "host": "mini", "role": "primary", "leaseState": "leader", "schedulerEnabled": true},
            "runtime": {"pid": 4242, "started": true, "startedAt": "2026-05-01T10:00:00.000Z"},
            "warnings": ["BAA_SHARED_TOKEN is the placeholder replace-me"],
        })
    }

    pub fn codexd() -> Value {
        json!({
            "service": {"listening": true},
            "snapshot": {
                "identity": {"daemonId": "codexd-1", "nodeId": "mini-main", "version": "0.1.0"},
                "daemon": {"mode": "app-server", "startedAt": "2026-05-01T10:00:01.000Z", "demo": true,
                    "child": {"status": "running", "pid": 777, "restarts": 2, "lastError": "exited with code 1", "strategy": "spawn",
                        "recentExits": [{"reason": "exited with code 2"}, {"reason": "exited with code 1"}]}},
                "codex": {"version": "0.169.0", "cliVersion": "codex-cli 0.169.0", "userAgent": "codexd/0.169.0 (x)"},
                "account": {"loggedIn": false, "authRequired": true, "plan": null},
                "limits": {"primary": {"usedPercent": 100, "resetsAt": "2026-05-01T12:00:00.000Z"}, "blockedUntil": "2026-05-01T12:00:00.000Z"},
                "sessionRegistry": {"sessions": [
                    {"sessionId": "s-old", "status": "closed", "updatedAt": "2026-05-01T09:00:00.000Z",
                        "lastTurnStatus": "failed", "lastTurn": {"status": "failed", "finalMessage": null, "error": {"message": "boom", "codexErrorInfo": "internalServerError"}}},
                    {"sessionId": "s-new", "status": "active", "lastTurnStatus": "completed", "updatedAt": "2026-05-01T11:00:00.000Z",
                        "lastTurn": {"turnId": "t1", "status": "completed", "finalMessage": "mock reply: hi", "error": null}},
                    "garbage"
                ]},
                "recentEvents": {"events": [
                    {"seq": 1, "type": "daemon.started", "level": "info", "message": "up"},
                    {"seq": 3, "type": "turn.completed", "level": "info", "message": "done"},
                    {"seq": 2, "type": "child.spawned", "level": "info"}
                ]}
            }
        })
    }

    #[test]
    fn merges_healthy_upstreams() {
        let raw = Raw {
            runtime: Ok(runtime()),
            system_state: Ok(
                json!({"mode": "paused", "requested_by": "alice", "reason": "deploy", "updated_at": "t", "holder_id": "mini-main", "version": 3}),
            ),
            codexd_status: Ok(codexd()),
        };
        let d = build(&up(), &raw, "now");
        assert_eq!(d["node"]["identity"], "mini-main@mini(primary)", "{d:#}");
        assert_eq!(d["node"]["leaseState"], "leader");
        assert_eq!(d["automation"]["mode"], "paused");
        assert_eq!(d["automation"]["requestedBy"], "alice");
        assert_eq!(d["codexd"]["child"]["pid"], 777);
        assert_eq!(d["codexd"]["child"]["restarts"], 2);
        assert_eq!(d["codexd"]["child"]["lastExit"], "exited with code 1");
        assert_eq!(d["codexd"]["demo"], true);
        let items = &d["codexd"]["sessions"]["items"];
        assert_eq!(items[0]["lastTurnMessage"], "mock reply: hi", "{d:#}");
        assert_eq!(items[0]["lastTurnId"], "t1");
        assert_eq!(items[1]["lastTurnError"], "boom", "{d:#}");
        assert_eq!(d["codexd"]["sessions"]["count"], 3);
        assert_eq!(d["codexd"]["sessions"]["active"], 1);
        assert_eq!(d["codexd"]["sessions"]["items"][0]["sessionId"], "s-new");
        assert_eq!(
            d["codexd"]["sessions"]["items"][0]["lastTurnStatus"],
            "completed"
        );
        let seqs: Vec<&Value> = d["codexd"]["recentEvents"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["seq"])
            .collect();
        assert_eq!(seqs, [&json!(3), &json!(2), &json!(1)]);
        assert_eq!(d["overall"], "degraded");
        let w = d["warnings"].to_string();
        assert!(w.contains("automation is paused (by alice: deploy)"), "{w}");
        assert!(w.contains("conductor: BAA_SHARED_TOKEN"), "{w}");
        assert_eq!(d["codexd"]["codex"]["version"], "0.169.0", "{d:#}");
        assert_eq!(d["codexd"]["limits"]["primary"]["usedPercent"], 100);
        assert!(
            w.contains("codex rate limit used up until 2026-05-01T12:00:00.000Z"),
            "{w}"
        );
        assert!(w.contains("codex is logged out"), "{w}");
    }

    #[test]
    fn unreachable_upstreams_are_marked_not_fatal() {
        let raw = Raw {
            runtime: Err("connection refused".into()),
            system_state: Err("connection refused".into()),
            codexd_status: Err("timeout".into()),
        };
        let d = build(&up(), &raw, "now");
        assert_eq!(d["overall"], "down");
        assert_eq!(d["conductor"]["reachable"], false);
        assert_eq!(d["conductor"]["error"], "connection refused");
        assert_eq!(d["codexd"]["reachable"], false);
        assert_eq!(d["codexd"]["error"], "timeout");
        assert_eq!(d["codexd"]["sessions"]["count"], 0);
        assert_eq!(d["node"]["nodeId"], Value::Null);
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for weird in [
            json!(null),
            json!([1, 2]),
            json!("x"),
            json!({"snapshot": 5}),
            json!({"snapshot": {"daemon": {"child": []}, "sessionRegistry": {"sessions": {}}, "recentEvents": {"events": "no"}}}),
        ] {
            let raw = Raw {
                runtime: Ok(weird.clone()),
                system_state: Ok(weird.clone()),
                codexd_status: Ok(weird.clone()),
            };
            let d = build(&up(), &raw, "now");
            assert_eq!(d["codexd"]["reachable"], true, "{weird}");
        }
    }

    #[test]
    fn partial_conductor_failure_names_the_part() {
        let raw = Raw {
            runtime: Ok(runtime()),
            system_state: Err("HTTP 500 internal_error: boom".into()),
            codexd_status: Ok(codexd()),
        };
        let d = build(&up(), &raw, "now");
        assert_eq!(d["conductor"]["reachable"], true);
        assert_eq!(
            d["conductor"]["error"],
            "system state: HTTP 500 internal_error: boom"
        );
    }
}
