//! Merging the upstream status documents into the `/v1/status` data: a pure function from
//! what `fetch` brought back to JSON, so the merge rules (which field names are accepted,
//! what becomes a warning and what to do about it, which events are shown) are unit-tested
//! without sockets. The wording of each warning and its fix is `advice`.

use serde_json::{json, Value};

use super::advice::{self, Level, Problem, Site};
use super::fetch::{FetchError, Fetched, Raw};
use super::schedules;
use super::tasks;
use super::values::{clip, clip_value, first, text_at};

/// Sessions and events shown; the registry may hold many more.
const MAX_SESSIONS: usize = 50;
const MAX_EVENTS: usize = 15;

/// Merges the upstream results into the `/v1/status` data object.
pub fn build(site: &Site, raw: &Raw, generated_at: &str) -> Value {
    let runtime = raw.runtime.as_ref().ok();
    let state = raw.system_state.as_ref().ok();
    let codexd = raw.codexd_status.as_ref().ok();
    // codexd wraps its state in `snapshot`; accept a bare snapshot too.
    let snapshot = codexd.map(|c| c.get("snapshot").unwrap_or(c));
    // The log paths in the hints: this status-api's own setting, else the conductor's.
    let site = &Site {
        logs_dir: site
            .logs_dir
            .clone()
            .or_else(|| runtime.and_then(|r| text_at(r, &["paths.logsDir", "paths.logs_dir"]))),
        ..site.clone()
    };
    let mut problems: Vec<Problem> = Vec::new();

    let conductor_error = join_errors(&[
        ("runtime", &raw.runtime),
        ("system state", &raw.system_state),
    ]);
    let conductor_reachable = runtime.is_some() || state.is_some();
    if !conductor_reachable {
        let e = conductor_error.as_deref().unwrap_or("unknown error");
        problems.push(advice::unreachable(
            site,
            "conductor",
            &site.conductor_base,
            e,
        ));
    } else if let Some(e) = &conductor_error {
        problems.push(advice::conductor_partial(site, e));
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
            problems.push(advice::conductor_warning(site, &clip(&text)));
        }
    }
    if let Some(r) = runtime {
        match text_at(r, &["daemon.leaseState", "daemon.lease_state"]).as_deref() {
            Some("standby") => {
                let holder = text_at(r, &["daemon.leaseHolder", "daemon.lease.holder_id"])
                    .unwrap_or_else(|| "nobody yet".into());
                problems.push(advice::standby(site, &holder));
            }
            Some("degraded") => {
                let detail = text_at(r, &["daemon.lease.last_error"])
                    .map(|e| clip(&e))
                    .unwrap_or_else(|| "no detail".into());
                problems.push(advice::lease_degraded(site, &detail));
            }
            _ => {}
        }
    }

    let automation = state.map(automation).unwrap_or(Value::Null);
    if let Some(mode) = automation.get("mode").and_then(Value::as_str) {
        if mode != "running" {
            let by = text_at(&automation, &["requestedBy"]).unwrap_or_else(|| "unknown".into());
            let why = text_at(&automation, &["reason"]).unwrap_or_else(|| "no reason given".into());
            let drained = automation.get("drained") == Some(&Value::Bool(true));
            problems.push(advice::automation(site, mode, &by, &why, drained));
        }
    }

    let child = snapshot.map(child).unwrap_or(Value::Null);
    if let Some(e) = &raw.codexd_status.as_ref().err() {
        problems.push(advice::unreachable(
            site,
            "codexd",
            &site.codexd_base,
            &e.to_string(),
        ));
    } else {
        let last_error = text_at(&child, &["lastError"]);
        match child.get("status").and_then(Value::as_str) {
            Some("running") => {
                if let Some(e) = &last_error {
                    problems.push(advice::child_last_error(site, e));
                }
            }
            Some(other) => {
                let restarts = text_at(&child, &["restarts"]).unwrap_or_else(|| "?".into());
                problems.push(advice::child_not_running(
                    site,
                    other,
                    &restarts,
                    last_error.as_deref(),
                ));
            }
            None => problems.push(advice::no_child_status(site)),
        }
    }

    // codexd's own: its state file damaged or unusable, and how it healed.
    for w in codexd
        .and_then(|c| c.get("warnings"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = w
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| w.to_string());
        // A file common::store repaired or cannot use gets the state-file advice.
        problems.push(match text.strip_prefix("state file: ") {
            Some(rest) => advice::codexd_state_file(site, &clip(rest)),
            None => advice::codexd_warning(site, &clip(&text)),
        });
    }

    if let Some(snap) = snapshot {
        let limits = snap.get("limits").unwrap_or(&Value::Null);
        if let Some(until) = text_at(limits, &["blockedUntil"]) {
            problems.push(advice::rate_limited(&until));
        }
        let account = snap.get("account").unwrap_or(&Value::Null);
        if first(account, &["authRequired"]) == Some(Value::Bool(true))
            && first(account, &["loggedIn"]) == Some(Value::Bool(false))
        {
            problems.push(advice::logged_out());
        }
    }

    let tasks = tasks::build(&raw.tasks);
    for t in tasks["running_tasks"].as_array().into_iter().flatten() {
        let Some(w) = t.get("waiting").filter(|w| w.is_object()) else {
            continue;
        };
        let text = |v: &Value, k: &str| text_at(v, &[k]).unwrap_or_else(|| "?".into());
        problems.push(advice::approval_waiting(
            site,
            &text(t, "title"),
            &text(w, "kind"),
            &text(w, "command"),
            &text(w, "request_id"),
            text_at(w, &["deadline_at"]).as_deref(),
        ));
    }

    // Errors first, then warnings, then notes; the order within a level is the order found.
    problems.sort_by_key(|p| match p.level {
        Level::Error => 0,
        Level::Warn => 1,
        Level::Info => 2,
    });
    let warnings: Vec<&str> = problems
        .iter()
        .filter(|p| p.level != Level::Info)
        .map(|p| p.text.as_str())
        .collect();
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
            "baseUrl": site.conductor_base,
            "error": conductor_error,
            "runtime": runtime.cloned(),
            "systemState": state.cloned(),
        },
        "codexd": {
            "reachable": codexd.is_some(),
            "baseUrl": site.codexd_base,
            "error": raw.codexd_status.as_ref().err().map(ToString::to_string),
            "status": codexd.cloned(),
            "mode": snapshot.and_then(|s| first(s, &["daemon.mode"])),
            "demo": snapshot.and_then(|s| first(s, &["daemon.demo"])).unwrap_or(Value::Bool(false)),
            "startedAt": snapshot.and_then(|s| first(s, &["daemon.startedAt", "daemon.started_at"])),
            "child": child,
            "codex": snapshot.map(codex).unwrap_or(Value::Null),
            "account": snapshot.and_then(|s| first(s, &["account"])),
            "limits": snapshot.and_then(|s| first(s, &["limits"])),
            "sessions": snapshot.map(sessions).unwrap_or_else(|| json!({"count": 0, "active": 0, "items": []})),
            "recentEvents": snapshot.map(events).unwrap_or_else(|| json!({"count": 0, "hidden": 0, "items": []})),
        },
        "tasks": tasks,
        "schedules": schedules::build(&raw.schedules),
        "warnings": warnings,
        "advice": problems.iter().map(Problem::to_json).collect::<Vec<_>>(),
    })
}

fn join_errors(parts: &[(&str, &Fetched)]) -> Option<String> {
    let errs: Vec<(&str, &FetchError)> = parts
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| (*name, e)))
        .collect();
    match errs.as_slice() {
        [] => None,
        // Both calls failing the same way (connection refused) reads better once.
        [(_, a), rest @ ..] if rest.iter().all(|(_, e)| e == a) && errs.len() > 1 => {
            Some(a.to_string())
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
        "drained": first(s, &["drained"]),
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
        "threadStatus": first(s, &["threadStatus"]),
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

/// The newest lifecycle events (daemon, child, session, turn, request, limits: codexd's
/// own `family.action` types) and anything at warn or error. The child's relayed
/// notifications (`thread/tokenUsage/updated`, rate-limit updates, deltas, items) are
/// counted in `hidden`, not listed: they are most of the stream and say nothing an
/// operator acts on.
fn events(snapshot: &Value) -> Value {
    let rec = snapshot.get("recentEvents").unwrap_or(&Value::Null);
    let list: &[Value] = rec
        .get("events")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let objects: Vec<&Value> = list.iter().filter(|e| e.is_object()).collect();
    let mut items: Vec<Value> = objects
        .iter()
        .filter(|e| is_lifecycle(e))
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
    let hidden = objects.len() - items.len();
    items.sort_by_key(|e| std::cmp::Reverse(e.get("seq").and_then(Value::as_u64).unwrap_or(0)));
    items.truncate(MAX_EVENTS);
    json!({
        "count": list.len(),
        "hidden": hidden,
        "updatedAt": first(rec, &["updatedAt"]),
        "items": items,
    })
}

/// codexd names its own events `family.action`; the child's notifications keep their
/// JSON-RPC method (`thread/tokenUsage/updated`, `item/agentMessage/delta`, `error`).
pub fn is_lifecycle(e: &Value) -> bool {
    let level = e.get("level").and_then(Value::as_str).unwrap_or("");
    if matches!(level, "warn" | "warning" | "error" | "fatal") {
        return true;
    }
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
    kind.contains('.') && !kind.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Site {
        Site {
            logs_dir: Some("/logs".into()),
            label_prefix: "so.makefile".into(),
            conductor_base: "http://127.0.0.1:4317".into(),
            codexd_base: "http://127.0.0.1:4319".into(),
        }
    }

    fn raw(runtime: Fetched, state: Fetched, codexd: Fetched) -> Raw {
        Raw {
            runtime,
            system_state: state,
            codexd_status: codexd,
            tasks: Err(FetchError::Unreachable("not asked".into())),
            schedules: Err(FetchError::Unreachable("not asked".into())),
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
                    {"seq": 2, "type": "child.spawned", "level": "info"},
                    {"seq": 4, "type": "thread/tokenUsage/updated", "level": "info", "message": "thread/tokenUsage/updated"},
                    {"seq": 5, "type": "account/rateLimits/updated", "level": "info"},
                    {"seq": 6, "type": "item/agentMessage/delta", "level": "info"},
                    {"seq": 7, "type": "error", "level": "error", "message": "stream disconnected"}
                ]}
            }
        })
    }

    #[test]
    fn merges_healthy_upstreams() {
        let raw = raw(
            Ok(runtime()),
            Ok(
                json!({"mode": "paused", "requested_by": "alice", "reason": "deploy", "updated_at": "t", "holder_id": "mini-main", "version": 3}),
            ),
            Ok(codexd()),
        );
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
        assert_eq!(seqs, [&json!(7), &json!(3), &json!(2), &json!(1)]);
        assert_eq!(d["codexd"]["recentEvents"]["hidden"], 3, "{d:#}");
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
        let raw = raw(
            Err(FetchError::Unreachable("connection refused".into())),
            Err(FetchError::Unreachable("connection refused".into())),
            Err(FetchError::Unreachable("timeout".into())),
        );
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
            let raw = raw(Ok(weird.clone()), Ok(weird.clone()), Ok(weird.clone()));
            let d = build(&up(), &raw, "now");
            assert_eq!(d["codexd"]["reachable"], true, "{weird}");
        }
    }

    #[test]
    fn partial_conductor_failure_names_the_part() {
        let raw = raw(
            Ok(runtime()),
            Err(FetchError::Unreachable(
                "HTTP 500 internal_error: boom".into(),
            )),
            Ok(codexd()),
        );
        let d = build(&up(), &raw, "now");
        assert_eq!(d["conductor"]["reachable"], true);
        assert_eq!(
            d["conductor"]["error"],
            "system state: HTTP 500 internal_error: boom"
        );
    }

    #[test]
    fn codexd_down_reads_codexd_unreachable_with_what_to_do() {
        let raw = raw(
            Ok(runtime()),
            Ok(json!({"mode": "running"})),
            Err(FetchError::Unreachable("Connection refused".into())),
        );
        let d = build(&up(), &raw, "now");
        assert_eq!(d["overall"], "degraded");
        let a = d["advice"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("codexd unreachable")
            })
            .unwrap_or_else(|| panic!("no codexd advice in {d:#}"));
        assert_eq!(a["level"], "error");
        assert_eq!(
            a["commands"][0],
            "scripts/runtime/status-launchd.sh --service codexd"
        );
        assert_eq!(a["log"], "/logs/launchd/so.makefile.baa-codexd.err.log");
        assert!(!d["warnings"].to_string().contains("child"), "{d:#}");
    }

    #[test]
    fn log_paths_fall_back_to_the_conductors_logs_dir() {
        let mut rt = runtime();
        rt["paths"] = json!({"logsDir": "/rt/logs"});
        let site = Site {
            logs_dir: None,
            ..up()
        };
        let d = build(
            &site,
            &raw(
                Ok(rt),
                Ok(json!({})),
                Err(FetchError::Unreachable("x".into())),
            ),
            "now",
        );
        assert!(
            d["advice"]
                .to_string()
                .contains("/rt/logs/launchd/so.makefile.baa-codexd.err.log"),
            "{d:#}"
        );
    }

    #[test]
    fn codexd_warnings_are_shown_with_its_log() {
        let mut cx = codexd();
        cx["warnings"] = json!(["daemon-state.json was an empty object; the app-server pid 9 is taken from its pid file"]);
        let d = build(
            &up(),
            &raw(Ok(runtime()), Ok(json!({"mode": "running"})), Ok(cx)),
            "now",
        );
        let w = d["warnings"].to_string();
        assert!(
            w.contains("codexd: daemon-state.json was an empty object"),
            "{d:#}"
        );
        assert!(
            d["advice"]
                .to_string()
                .contains("so.makefile.baa-codexd.err.log"),
            "{d:#}"
        );
    }

    #[test]
    fn state_file_warnings_of_both_daemons_are_shown() {
        let mut rt = runtime();
        rt["warnings"] = json!(["state file: /s/tasks/t.json is a FIFO, not a regular file; restored from its last good copy"]);
        let mut cx = codexd();
        cx["warnings"] =
            json!(["state file: /s/codexd/daemon-state.json is a directory, not a regular file; there is no last good copy"]);
        let d = build(
            &up(),
            &raw(Ok(rt), Ok(json!({"mode": "running"})), Ok(cx)),
            "now",
        );
        let w = d["warnings"].to_string();
        assert!(
            w.contains("conductor: state file: /s/tasks/t.json is a FIFO")
                && w.contains("codexd: state file: /s/codexd/daemon-state.json is a directory"),
            "{d:#}"
        );
        assert!(d["advice"].to_string().contains("regular file"), "{d:#}");
    }

    #[test]
    fn standby_is_a_note_not_a_degradation() {
        let mut rt = runtime();
        rt["warnings"] = json!([]);
        rt["daemon"]["leaseState"] = json!("standby");
        rt["daemon"]["leaseHolder"] = json!("mini-other");
        let mut cx = codexd();
        cx["snapshot"]["daemon"]["child"]["lastError"] = Value::Null;
        cx["snapshot"]["limits"] = json!({});
        cx["snapshot"]["account"] = json!({"loggedIn": true});
        let d = build(
            &up(),
            &raw(Ok(rt), Ok(json!({"mode": "running"})), Ok(cx)),
            "now",
        );
        assert_eq!(d["overall"], "ok", "{d:#}");
        assert_eq!(d["warnings"], json!([]), "{d:#}");
        assert_eq!(d["advice"][0]["level"], "info", "{d:#}");
        assert!(
            d["advice"][0]["text"]
                .as_str()
                .unwrap()
                .contains("mini-other"),
            "{d:#}"
        );
    }

    #[test]
    fn crash_loop_advice_restarts_the_child() {
        let mut cx = codexd();
        cx["snapshot"]["daemon"]["child"]["status"] = json!("crash_loop");
        let d = build(&up(), &raw(Ok(runtime()), Ok(json!({})), Ok(cx)), "now");
        let all = d["advice"].to_string();
        assert!(all.contains("crash loop after 2 restarts"), "{all}");
        assert!(all.contains("/v1/codexd/child/restart"), "{all}");
        assert_eq!(d["advice"][0]["level"], "error", "errors first: {d:#}");
    }
}
