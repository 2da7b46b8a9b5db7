//! The readable forms of the task API's answers: a table for `list`, the task with its
//! runs and steps for `show`, one line per log entry for `logs`. Pure (JSON and the current
//! time in, text out), so every shape is unit-tested; a field the API leaves out prints
//! as `-`, never a panic.

use serde_json::Value;

use baa::common::text;
use baa::common::time::ms_from_rfc3339;

/// Titles and messages are cut to this many characters in the table.
const TITLE_WIDTH: usize = 40;

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` cut to `width` characters, with `…` when cut; newlines become spaces.
pub fn cut(s: &str, width: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= width {
        return flat;
    }
    // The `…` takes the last column.
    text::cut_chars(&flat, width.saturating_sub(1))
}

/// How long ago an RFC 3339 time was: `42s`, `5m`, `3h`, `2d`; `-` when unreadable.
pub fn age(at: &Value, now_ms: u64) -> String {
    let Some(ms) = at.as_str().and_then(ms_from_rfc3339) else {
        return "-".into();
    };
    let s = now_ms.saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// An error object `{code, message}` as `code: message`.
pub fn error(v: &Value) -> String {
    match v {
        Value::Object(_) => format!("{}: {}", text(&v["code"]), text(&v["message"])),
        other => text(other),
    }
}

/// Rows of columns, left-aligned, two spaces apart; the last column is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let last = r.len().saturating_sub(1);
        for (i, c) in r.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(c);
                let pad = widths[i] - c.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `task list`: `data` of `GET /v1/tasks`.
pub fn list(data: &Value, now_ms: u64) -> String {
    let tasks = data["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if tasks.is_empty() {
        return "no tasks\n".into();
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "STATUS".into(),
        "PRIO".into(),
        "STEPS".into(),
        "AGE".into(),
        "TITLE".into(),
    ]];
    for t in tasks {
        rows.push(vec![
            text(&t["task_id"]),
            text(&t["status"]),
            text(&t["priority"]),
            format!("{}/{}", text(&t["steps_done"]), text(&t["steps_total"])),
            age(&t["created_at"], now_ms),
            cut(&text(&t["title"]), TITLE_WIDTH),
        ]);
    }
    table(&rows)
}

/// `task show`: `data` of `GET /v1/tasks/:id` (`{task, runs}`).
pub fn show(data: &Value, now_ms: u64) -> String {
    let t = &data["task"];
    let mut out = String::new();
    let mut field = |name: &str, v: String| out.push_str(&format!("{name:<10} {v}\n"));
    field("task", text(&t["task_id"]));
    field("title", text(&t["title"]));
    field("status", text(&t["status"]));
    field("priority", text(&t["priority"]));
    field(
        "steps",
        format!(
            "{}/{} done",
            text(&t["steps_done"]),
            text(&t["steps_total"])
        ),
    );
    field(
        "attempts",
        format!(
            "{} run(s), up to {}",
            t["runs"].as_array().map_or(0, Vec::len),
            text(&t["max_attempts"])
        ),
    );
    field(
        "created",
        format!(
            "{} ({} ago)",
            text(&t["created_at"]),
            age(&t["created_at"], now_ms)
        ),
    );
    if !t["finished_at"].is_null() {
        field("finished", text(&t["finished_at"]));
    }
    if !t["next_attempt_at"].is_null() {
        field("next try", text(&t["next_attempt_at"]));
    }
    if !t["session_id"].is_null() {
        field("session", text(&t["session_id"]));
    }
    if let Some(w) = t["waiting"].as_object() {
        field(
            "waiting",
            format!(
                "approval {} ({}) — answer at /v1/codex/requests",
                text(&w.get("request_id").cloned().unwrap_or_default()),
                text(&w.get("kind").cloned().unwrap_or_default())
            ),
        );
    }
    if !t["error"].is_null() {
        field("error", error(&t["error"]));
    }
    if !t["final_message"].is_null() {
        field("final", cut(&text(&t["final_message"]), 200));
    }
    let prompts: Vec<String> = t["input"]["steps"]
        .as_array()
        .map(|s| s.iter().map(|s| text(&s["prompt"])).collect())
        .unwrap_or_default();
    let runs = data["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    // Runs come newest first; show them in the order they ran.
    for r in runs.iter().rev() {
        out.push_str(&format!(
            "\nrun {} attempt {}: {}{}\n",
            text(&r["run_id"]),
            text(&r["attempt"]),
            text(&r["status"]),
            match &r["error"] {
                Value::Null => String::new(),
                e => format!(" ({})", error(e)),
            }
        ));
        let mut rows = Vec::new();
        for s in r["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let i = s["index"].as_u64().unwrap_or(0) as usize;
            let detail = match (&s["error"], &s["final_message"]) {
                (Value::Null, Value::Null) => String::new(),
                (Value::Null, m) => cut(&text(m), 60),
                (e, _) => error(e),
            };
            rows.push(vec![
                format!("  step {}", i + 1),
                text(&s["status"]),
                s["duration_ms"]
                    .as_u64()
                    .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                cut(prompts.get(i).map_or("-", String::as_str), 30),
                detail,
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// One log entry `{seq, run_id, level, message, created_at}` as one line.
pub fn log_line(l: &Value) -> String {
    format!(
        "{} #{} {:<5} {}\n",
        text(&l["created_at"]),
        text(&l["seq"]),
        text(&l["level"]),
        cut(&text(&l["message"]), 10_000)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn list_is_a_table_with_ages_and_cut_titles() {
        let data = json!({"tasks": [
            {"task_id": "t1", "status": "queued", "priority": 5, "steps_done": 0, "steps_total": 2,
             "created_at": "2025-12-31T23:59:18.000Z", "title": "x".repeat(60)},
            {"task_id": "task-22", "status": "succeeded", "priority": 0, "steps_done": 1, "steps_total": 1,
             "created_at": "2025-12-30T00:00:00.000Z", "title": "two\nlines"},
        ]});
        let out = list(&data, NOW);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0], "ID       STATUS     PRIO  STEPS  AGE  TITLE",
            "{out}"
        );
        assert_eq!(
            lines[1],
            format!("t1       queued     5     0/2    42s  {}…", "x".repeat(39)),
            "{out}"
        );
        assert_eq!(
            lines[2], "task-22  succeeded  0     1/1    2d   two lines",
            "{out}"
        );
        assert_eq!(list(&json!({"tasks": []}), NOW), "no tasks\n");
    }

    #[test]
    fn show_prints_the_task_runs_and_steps() {
        let data = json!({
            "task": {"task_id": "t1", "title": "two", "status": "failed", "priority": 0,
                     "steps_done": 1, "steps_total": 2, "max_attempts": 1,
                     "created_at": "2025-12-31T23:00:00.000Z",
                     "error": {"code": "turn_failed", "message": "boom", "retryable": false},
                     "input": {"steps": [{"prompt": "first"}, {"prompt": "second"}]},
                     "runs": [{"run_id": "r1"}]},
            "runs": [{"run_id": "r1", "attempt": 1, "status": "failed",
                      "steps": [
                        {"index": 0, "status": "completed", "duration_ms": 1200, "final_message": "ok"},
                        {"index": 1, "status": "failed", "error": {"code": "turn_failed", "message": "boom"}}]}]
        });
        let out = show(&data, NOW);
        for want in [
            "task       t1\n",
            "status     failed\n",
            "steps      1/2 done\n",
            "attempts   1 run(s), up to 1\n",
            "created    2025-12-31T23:00:00.000Z (1h ago)\n",
            "error      turn_failed: boom\n",
            "run r1 attempt 1: failed\n",
            "  step 1  completed  1.2s  first   ok\n",
            "  step 2  failed     -     second  turn_failed: boom\n",
        ] {
            assert!(out.contains(want), "no {want:?} in:\n{out}");
        }
        // A missing field is `-`, not a panic.
        assert!(show(&json!({}), NOW).contains("task       -\n"));
    }

    #[test]
    fn log_lines_and_cuts() {
        let l = json!({"seq": 3, "level": "info", "message": "step 1/1 started",
                       "created_at": "2026-01-01T00:00:00.000Z"});
        assert_eq!(
            log_line(&l),
            "2026-01-01T00:00:00.000Z #3 info  step 1/1 started\n"
        );
        assert_eq!(cut("héllo wörld", 5), "héll…");
        assert_eq!(age(&json!("garbage"), NOW), "-");
        assert_eq!(error(&json!("plain")), "plain");
    }
}
