//! The readable forms of the task API's answers: a table for `list`, the task with its
//! runs and steps for `show`, one line per log entry for `logs`, one line for a diff's
//! stat, a merge and a discard. Pure (JSON and the current
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

/// `task show`'s attempts: the runs, and the failed ones `max_attempts` counts (those
/// since the last retry), so two runs with `max_attempts` 1 after a retry do not read as
/// over the limit.
fn attempts(t: &Value) -> String {
    let runs = t["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let from = t["retry_from"].as_u64().unwrap_or(0) as usize;
    let failed = runs
        .iter()
        .skip(from)
        .filter(|r| r["status"] == "failed")
        .count();
    let since = if from > 0 {
        " since the last retry"
    } else {
        ""
    };
    format!(
        "{} run(s); {failed} of {} failed attempt(s) used{since}",
        runs.len(),
        text(&t["max_attempts"])
    )
}

/// `task retry`: `data` of `POST /v1/tasks/:id/retry`; says which attempt runs next and
/// that `max_attempts` counts afresh.
pub fn retried(data: &Value) -> String {
    let t = &data["task"];
    let next = t["runs"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["attempt"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
        + 1;
    format!(
        "{} retry: {}, as attempt {next} (max_attempts {} counts again from here)\n",
        text(&t["task_id"]),
        text(&t["status"]),
        text(&t["max_attempts"])
    )
}

/// `task show`: `data` of `GET /v1/tasks/:id` (`{task, runs}`).
/// `why`: the `held` lines of a queued task (see `held::why_queued`), empty otherwise.
pub fn show(data: &Value, now_ms: u64, why: &[String]) -> String {
    let t = &data["task"];
    let mut out = String::new();
    let mut field = |name: &str, v: String| out.push_str(&format!("{name:<10} {v}\n"));
    field("task", text(&t["task_id"]));
    field("title", text(&t["title"]));
    field("status", text(&t["status"]));
    for (i, w) in why.iter().enumerate() {
        field(if i == 0 { "held" } else { "" }, w.clone());
    }
    field("priority", text(&t["priority"]));
    field(
        "steps",
        format!(
            "{}/{} done",
            text(&t["steps_done"]),
            text(&t["steps_total"])
        ),
    );
    field("attempts", attempts(t));
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
    if !t["held_until"].is_null() && why.is_empty() {
        field(
            "held",
            format!("until {} (usage limit)", text(&t["held_until"])),
        );
    }
    let u = &t["usage_total"];
    if u.is_object() {
        field(
            "tokens",
            format!(
                "{} in ({} cached) · {} out ({} reasoning)",
                text(&u["input_tokens"]),
                text(&u["cached_input_tokens"]),
                text(&u["output_tokens"]),
                text(&u["reasoning_tokens"])
            ),
        );
    }
    if !t["session_id"].is_null() {
        field("session", text(&t["session_id"]));
    }
    let ws = &t["workspace"];
    if ws["mode"] == "worktree" {
        let place = match (&ws["removed_at"], &ws["path"]) {
            (Value::Null, Value::Null) => String::new(),
            (Value::Null, p) => format!(" (worktree {})", text(p)),
            (at, _) => format!(" (worktree removed {})", text(at)),
        };
        field("branch", format!("{}{place}", text(&ws["branch"])));
    } else if ws["mode"] == "in_place" {
        field("workspace", "in place".into());
    }
    let r = &t["result"];
    if r.is_object() {
        field("changes", changes(r));
        if r["merged"].is_object() {
            let m = &r["merged"];
            field(
                "merged",
                format!(
                    "into {} ({}) at {}, {}",
                    text(&m["into"]),
                    merge_words(m),
                    text(&m["commit"]),
                    text(&m["at"])
                ),
            );
        }
        if !r["discarded_at"].is_null() {
            field("discarded", text(&r["discarded_at"]));
        }
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

/// A task's `result` as `+N −M in K files`, `no changes`, or `-` without one.
pub fn changes(result: &Value) -> String {
    match result["changes"].as_str() {
        Some("committed") => counts(
            &result["insertions"],
            &result["deletions"],
            &result["files_changed"],
        ),
        Some("none") => "no changes".into(),
        _ => "-".into(),
    }
}

/// `+N −M in K files` (one file: `in 1 file`).
pub fn counts(ins: &Value, del: &Value, files: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let k = n(files);
    format!(
        "+{} \u{2212}{} in {k} file{}",
        n(ins),
        n(del),
        if k == 1 { "" } else { "s" }
    )
}

/// The first 12 characters of a commit id.
fn short(v: &Value) -> String {
    text(v).chars().take(12).collect()
}

/// `task diff`'s stat line (on stderr, so stdout is the patch alone).
pub fn diff_summary(d: &Value) -> String {
    let st = &d["stat"];
    let untracked = d["untracked"].as_array().filter(|u| !u.is_empty());
    let stat = if st["files_changed"].as_u64() == Some(0) && untracked.is_none() {
        "no changes".to_string()
    } else {
        counts(&st["insertions"], &st["deletions"], &st["files_changed"])
    };
    let mut out = if d["uncommitted"] == true {
        format!(
            "{}: uncommitted changes in its worktree against {}: {stat}",
            text(&d["branch"]),
            short(&d["base"])
        )
    } else {
        format!(
            "{} {}..{}: {stat}",
            text(&d["branch"]),
            short(&d["base"]),
            short(&d["head"])
        )
    };
    if let Some(u) = untracked {
        let names: Vec<String> = u.iter().map(text).collect();
        out.push_str(&format!(
            "; untracked (not in the diff): {}",
            names.join(", ")
        ));
    }
    if d["truncated"] == true {
        out.push_str(&format!(
            "; the diff is cut at {} bytes (--max-bytes shows more)",
            text(&d["max_bytes"])
        ));
    }
    out
}

fn merge_words(m: &Value) -> &'static str {
    if m["already_contained"] == true {
        "it already contained the branch"
    } else if m["fast_forward"] == true {
        "fast-forward"
    } else {
        "merge commit"
    }
}

/// `task merge`: `merged baa/task_x into main (fast-forward) at <commit>`.
pub fn merged(d: &Value) -> String {
    let m = &d["merged"];
    format!(
        "{}merged {} into {} ({}) at {}\n",
        if d["already_merged"] == true {
            "already "
        } else {
            ""
        },
        text(&d["task"]["result"]["branch"]),
        text(&m["into"]),
        merge_words(m),
        text(&m["commit"])
    )
}

/// `task discard`.
pub fn discarded(d: &Value) -> String {
    let t = &d["task"];
    if d["already_discarded"] == true {
        return format!(
            "{} was already discarded at {}\n",
            text(&t["task_id"]),
            text(&t["result"]["discarded_at"])
        );
    }
    format!(
        "discarded {}: its worktree and branch {} are removed\n",
        text(&t["task_id"]),
        text(&t["workspace"]["branch"])
    )
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

    /// Issue 20: after `task retry`, `task show` read "attempts 2 run(s), up to 1", as if
    /// over the limit, and retry said only "queued".
    #[test]
    fn retry_and_show_say_attempts_count_again_after_a_retry() {
        let t = json!({"task_id": "t1", "status": "queued", "max_attempts": 1, "retry_from": 1,
            "runs": [{"run_id": "r1", "attempt": 1, "status": "failed"}]});
        assert_eq!(
            retried(&json!({ "task": t })),
            "t1 retry: queued, as attempt 2 (max_attempts 1 counts again from here)\n"
        );
        let mut after = t.clone();
        after["runs"]
            .as_array_mut()
            .unwrap()
            .push(json!({"run_id": "r2", "attempt": 2, "status": "running"}));
        assert_eq!(
            attempts(&after),
            "2 run(s); 0 of 1 failed attempt(s) used since the last retry"
        );
    }

    #[test]
    fn show_prints_the_task_runs_and_steps() {
        let data = json!({
            "task": {"task_id": "t1", "title": "two", "status": "failed", "priority": 0,
                     "steps_done": 1, "steps_total": 2, "max_attempts": 1,
                     "created_at": "2025-12-31T23:00:00.000Z",
                     "held_until": "2025-12-31T23:30:00.000Z",
                     "usage_total": {"input_tokens": 900, "cached_input_tokens": 120, "output_tokens": 45, "reasoning_tokens": 7},
                     "error": {"code": "turn_failed", "message": "boom", "retryable": false},
                     "input": {"steps": [{"prompt": "first"}, {"prompt": "second"}]},
                     "runs": [{"run_id": "r1", "attempt": 1, "status": "failed"}]},
            "runs": [{"run_id": "r1", "attempt": 1, "status": "failed",
                      "steps": [
                        {"index": 0, "status": "completed", "duration_ms": 1200, "final_message": "ok"},
                        {"index": 1, "status": "failed", "error": {"code": "turn_failed", "message": "boom"}}]}]
        });
        let out = show(&data, NOW, &[]);
        for want in [
            "task       t1\n",
            "status     failed\n",
            "steps      1/2 done\n",
            "attempts   1 run(s); 1 of 1 failed attempt(s) used\n",
            "created    2025-12-31T23:00:00.000Z (1h ago)\n",
            "error      turn_failed: boom\n",
            "held       until 2025-12-31T23:30:00.000Z (usage limit)\n",
            "tokens     900 in (120 cached) · 45 out (7 reasoning)\n",
            "run r1 attempt 1: failed\n",
            "  step 1  completed  1.2s  first   ok\n",
            "  step 2  failed     -     second  turn_failed: boom\n",
        ] {
            assert!(out.contains(want), "no {want:?} in:\n{out}");
        }
        // A missing field is `-`, not a panic.
        assert!(show(&json!({}), NOW, &[]).contains("task       -\n"));
    }

    #[test]
    fn show_has_the_branch_and_its_changes_and_merge_says_how() {
        let data = json!({"task": {"task_id": "t1", "status": "succeeded",
            "workspace": {"mode": "worktree", "branch": "baa/t1", "path": "/w/t1"},
            "result": {"changes": "committed", "branch": "baa/t1", "insertions": 12, "deletions": 3,
                       "files_changed": 2,
                       "merged": {"into": "main", "commit": "abc", "fast_forward": true, "at": "T"}}}});
        let out = show(&data, NOW, &[]);
        for want in [
            "branch     baa/t1 (worktree /w/t1)\n",
            "changes    +12 \u{2212}3 in 2 files\n",
            "merged     into main (fast-forward) at abc, T\n",
        ] {
            assert!(out.contains(want), "no {want:?} in:\n{out}");
        }
        assert_eq!(changes(&json!({"changes": "none"})), "no changes");
        assert_eq!(
            merged(&json!({"task": data["task"], "merged": data["task"]["result"]["merged"]})),
            "merged baa/t1 into main (fast-forward) at abc\n"
        );
        let d = json!({"branch": "baa/t1", "base": "0123456789abcdef", "uncommitted": true,
            "stat": {"files_changed": 1, "insertions": 1, "deletions": 0}, "untracked": ["n.txt"],
            "truncated": true, "max_bytes": 10});
        assert_eq!(
            diff_summary(&d),
            "baa/t1: uncommitted changes in its worktree against 0123456789ab: +1 \u{2212}0 in 1 file; untracked (not in the diff): n.txt; the diff is cut at 10 bytes (--max-bytes shows more)"
        );
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
