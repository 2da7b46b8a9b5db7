//! The `tasks` part of `/v1/status`: the conductor's `GET /v1/tasks/summary`, re-shaped
//! and bounded. Counts pass through; each running task and each recent outcome keeps only
//! the fields the page shows, with long text cut, so a summary from a busy or a broken
//! conductor can neither flood the page nor break it.

use serde_json::{json, Value};

use super::fetch::Fetched;
use super::values::{clip_value, first};

/// At most this many running tasks are listed (the scheduler's cap is usually 1 or 2).
const MAX_RUNNING: usize = 20;
/// The page shows the last five outcomes.
const MAX_RECENT: usize = 5;
/// At most this many schedules' usage are listed per period.
const MAX_SCHEDULES: usize = 20;

/// `{available, error, queued, running, succeeded, failed, canceled, running_tasks, recent}`.
/// `available: false` with `error` when the conductor did not answer the summary.
pub fn build(summary: &Fetched) -> Value {
    let s = match summary {
        Ok(s) => s,
        Err(e) => {
            return json!({
                "available": false, "error": e.to_string(),
                "queued": null, "running": null, "succeeded": null, "failed": null, "canceled": null,
                "running_tasks": [], "recent": [], "usage": null,
            })
        }
    };
    let list = |key: &str, max: usize, f: fn(&Value) -> Value| -> Vec<Value> {
        s.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|t| t.is_object())
                    .take(max)
                    .map(f)
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({
        "available": true,
        "error": null,
        "queued": count(s, "queued"),
        "running": count(s, "running"),
        "succeeded": count(s, "succeeded"),
        "failed": count(s, "failed"),
        "canceled": count(s, "canceled"),
        "running_tasks": list("running_tasks", MAX_RUNNING, running),
        "recent": list("recent", MAX_RECENT, recent),
        "usage": usage(s.get("usage").unwrap_or(&Value::Null)),
    })
}

/// `usage {today, last_7_days}`, each `{since, tasks, total, by_schedule}` with token
/// counts only (at most [`MAX_SCHEDULES`] schedules); `null` when the conductor sent none.
fn usage(u: &Value) -> Value {
    if !u.is_object() {
        return Value::Null;
    }
    let tokens = |t: &Value| {
        json!({
            "input_tokens": number(t, "input_tokens"),
            "cached_input_tokens": number(t, "cached_input_tokens"),
            "output_tokens": number(t, "output_tokens"),
            "reasoning_tokens": number(t, "reasoning_tokens"),
        })
    };
    let period = |p: &Value| {
        let by: serde_json::Map<String, Value> = p
            .get("by_schedule")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .take(MAX_SCHEDULES)
                    .map(|(k, v)| (k.chars().take(80).collect(), tokens(v)))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "since": text(p, &["since"]),
            "tasks": number(p, "tasks"),
            "total": tokens(p.get("total").unwrap_or(&Value::Null)),
            "by_schedule": by,
        })
    };
    json!({
        "today": period(u.get("today").unwrap_or(&Value::Null)),
        "last_7_days": period(u.get("last_7_days").unwrap_or(&Value::Null)),
    })
}

fn count(s: &Value, key: &str) -> Value {
    s.get(key)
        .and_then(Value::as_u64)
        .map(Value::from)
        .unwrap_or(Value::Null)
}

fn text(v: &Value, paths: &[&str]) -> Value {
    first(v, paths)
        .map(|x| clip_value(&x))
        .unwrap_or(Value::Null)
}

fn number(v: &Value, key: &str) -> Value {
    v.get(key)
        .and_then(Value::as_u64)
        .map(Value::from)
        .unwrap_or(Value::Null)
}

fn running(t: &Value) -> Value {
    let w = t.get("waiting").filter(|w| w.is_object());
    json!({
        "task_id": text(t, &["task_id"]),
        "title": text(t, &["title"]),
        "branch": text(t, &["branch"]),
        "attempt": number(t, "attempt"),
        "step": number(t, "step"),
        "steps": number(t, "steps"),
        "started_at": text(t, &["started_at"]),
        "elapsed_ms": number(t, "elapsed_ms"),
        "step_elapsed_ms": number(t, "step_elapsed_ms"),
        "waiting": w.map(|w| json!({
            "request_id": text(w, &["request_id"]),
            "kind": text(w, &["kind"]),
            "command": text(w, &["command", "path"]),
            "deadline_at": text(w, &["deadline_at"]),
        })),
    })
}

fn recent(t: &Value) -> Value {
    json!({
        "task_id": text(t, &["task_id"]),
        "title": text(t, &["title"]),
        "status": text(t, &["status"]),
        "finished_at": text(t, &["finished_at"]),
        // The conductor's error is `{code, message, retryable}`; a bare string shows too.
        "error": text(t, &["error.message", "error"]),
        "steps_done": number(t, "steps_done"),
        "steps_total": number(t, "steps_total"),
        "branch": text(t, &["branch"]),
        "result": result(t.get("result").unwrap_or(&Value::Null)),
    })
}

/// A worktree task's result, as the page shows it: `changes` (`committed` or `none`), the
/// counts, and where it went (`merged_into`, `discarded`); null without one.
fn result(r: &Value) -> Value {
    if !r.is_object() {
        return Value::Null;
    }
    json!({
        "changes": text(r, &["changes"]),
        "files_changed": number(r, "files_changed"),
        "insertions": number(r, "insertions"),
        "deletions": number(r, "deletions"),
        "merged_into": text(r, &["merged.into"]),
        "discarded": r.get("discarded_at").is_some_and(Value::is_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::FetchError;

    #[test]
    fn shapes_the_summary() {
        let s = json!({"queued": 2, "running": 1, "succeeded": 7, "failed": 1, "canceled": 0,
            "running_tasks": [{"task_id": "t-1", "title": "x".repeat(1000), "attempt": 1, "step": 2, "steps": 3,
                "started_at": "2026-05-01T10:00:00.000Z", "elapsed_ms": 65000, "step_elapsed_ms": 5000,
                "waiting": {"request_id": "r-1", "kind": "command", "command": "ls"}}, "junk"],
            "recent": [{"task_id": "t-0", "title": "old", "status": "failed",
                "error": {"code": "turn_failed", "message": "boom", "retryable": false}}, 1, 2, 3, 4, 5, 6, 7]});
        let mut s = s;
        s["recent"][1] = json!({"task_id": "t-9", "status": "succeeded", "branch": "baa/t-9",
            "result": {"changes": "committed", "files_changed": 2, "insertions": 5, "deletions": 1,
                       "merged": {"into": "main", "commit": "c"}}});
        let t = build(&Ok(s));
        assert_eq!(t["available"], true);
        assert_eq!(t["queued"], 2);
        let r = &t["running_tasks"];
        assert_eq!(r.as_array().map(Vec::len), Some(1), "{t:#}");
        assert_eq!(r[0]["step"], 2);
        assert_eq!(r[0]["waiting"]["command"], "ls");
        assert!(
            r[0]["title"].as_str().unwrap().chars().count() < 400,
            "{t:#}"
        );
        assert_eq!(t["recent"][0]["error"], "boom", "{t:#}");
        assert_eq!(t["recent"][0]["result"], Value::Null, "{t:#}");
        assert_eq!(t["recent"].as_array().map(Vec::len), Some(2));
        assert_eq!(t["usage"], Value::Null, "no usage sent: none shown");
        let r = &t["recent"][1];
        assert_eq!(r["branch"], "baa/t-9", "{t:#}");
        assert_eq!(
            r["result"],
            json!({"changes": "committed", "files_changed": 2, "insertions": 5, "deletions": 1,
                   "merged_into": "main", "discarded": false}),
            "{t:#}"
        );
    }

    #[test]
    fn unavailable_and_odd_shapes() {
        let t = build(&Err(FetchError::Unreachable("connection refused".into())));
        assert_eq!(t["available"], false);
        assert_eq!(t["error"], "connection refused");
        for odd in [
            json!(null),
            json!([1]),
            json!({"running_tasks": {}, "queued": "x"}),
        ] {
            let t = build(&Ok(odd.clone()));
            assert_eq!(t["available"], true, "{odd}");
            assert_eq!(t["queued"], Value::Null, "{odd}");
            assert_eq!(t["running_tasks"], json!([]), "{odd}");
        }
    }
}
