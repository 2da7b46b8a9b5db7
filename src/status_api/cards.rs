//! The status page's cards: automation, tasks, node, codexd and its child, the Codex
//! version and account. Each is a function from the `/v1/status` data to HTML appended to
//! the page; every upstream string goes through `esc`.

use serde_json::Value;

use super::html::{badge, duration, esc, row, row_html, text, when, DASH};
use super::values::first;

pub fn automation_card(h: &mut String, d: &Value, now_ms: u64) {
    let a = d.get("automation").unwrap_or(&Value::Null);
    // Without the conductor the mode is unknown, which must not look like "no mode".
    let mode = if d.pointer("/conductor/reachable") == Some(&Value::Bool(false)) {
        "conductor unreachable".to_string()
    } else {
        text(a, &["mode"])
    };
    h.push_str("<section class=\"card\" id=\"automation\"><h2>Automation</h2>");
    h.push_str(&format!("<div class=\"big\">{}</div><dl>", badge(&mode)));
    row(h, "Set by", &text(a, &["requestedBy"]));
    row(h, "Reason", &text(a, &["reason"]));
    row_html(h, "Since", &when(a, "updatedAt", now_ms));
    row(h, "Lease holder", &text(a, &["holderId"]));
    row(h, "Version", &text(a, &["version"]));
    if mode == "draining" {
        row(h, "Drained", &text(a, &["drained"]));
    }
    h.push_str("</dl></section>");
}

pub fn node_card(h: &mut String, d: &Value, now_ms: u64) {
    let n = d.get("node").unwrap_or(&Value::Null);
    h.push_str("<section class=\"card\" id=\"node\"><h2>Node</h2><dl>");
    row(h, "Node id", &text(n, &["nodeId"]));
    row(h, "Host", &text(n, &["host"]));
    row(h, "Role", &text(n, &["role"]));
    h.push_str(&format!(
        "<dt>Lease</dt><dd>{}</dd>",
        badge(&text(n, &["leaseState"]))
    ));
    row(h, "Scheduler", &text(n, &["schedulerEnabled"]));
    row(h, "Conductor pid", &text(n, &["conductorPid"]));
    row_html(h, "Conductor up", &when(n, "conductorStartedAt", now_ms));
    h.push_str("</dl></section>");
}

/// codexd and the app-server child it supervises. codexd itself being down must read as
/// such: the child's state is then unknown, not "unreachable".
pub fn codexd_card(h: &mut String, d: &Value, now_ms: u64) {
    let c = d.pointer("/codexd").unwrap_or(&Value::Null);
    let child = c.get("child").unwrap_or(&Value::Null);
    h.push_str("<section class=\"card\" id=\"codexd\"><h2>codexd · Codex child</h2>");
    if c.get("reachable") == Some(&Value::Bool(false)) {
        h.push_str(&format!(
            "<div class=\"big\">{}</div><p class=\"err\">{}</p></section>",
            badge("codexd unreachable"),
            esc(&text(c, &["error"]))
        ));
        return;
    }
    h.push_str(&format!(
        "<div class=\"big\">{} <span class=\"muted\">app-server child</span></div><dl>",
        badge(&text(child, &["status"]))
    ));
    row(h, "PID", &text(child, &["pid"]));
    row(h, "Restarts", &text(child, &["restarts"]));
    let err = text(child, &["lastError"]);
    h.push_str(&format!(
        "<dt>Last error</dt><dd class=\"{}\">{}</dd>",
        if err == DASH { "" } else { "err" },
        esc(&err)
    ));
    row(h, "Strategy", &text(child, &["strategy"]));
    row(h, "Endpoint", &text(child, &["endpoint"]));
    if child.get("nextRestartAt").is_some_and(|v| !v.is_null()) {
        row(h, "Next try", &text(child, &["nextRestartAt"]));
    }
    row(h, "codexd mode", &text(c, &["mode"]));
    if c.get("demo") == Some(&Value::Bool(true)) {
        row(h, "Model", "demo: built-in loopback model (canned replies)");
    }
    row_html(h, "codexd up", &when(c, "startedAt", now_ms));
    row(h, "Daemon id", &text(d, &["node.codexdDaemonId"]));
    h.push_str("</dl></section>");
}

/// The codex version, the account and its rate limits.
pub fn codex_card(h: &mut String, d: &Value, now_ms: u64) {
    let c = d.pointer("/codexd").unwrap_or(&Value::Null);
    let codex = c.get("codex").unwrap_or(&Value::Null);
    let account = c.get("account").unwrap_or(&Value::Null);
    let limits = c.get("limits").unwrap_or(&Value::Null);
    let blocked = limits.get("blockedUntil").is_some_and(|v| v.is_string());
    let unreachable = c.get("reachable") == Some(&Value::Bool(false));
    let state = match (
        first(account, &["loggedIn"]),
        first(account, &["authRequired"]),
    ) {
        _ if unreachable => "unknown: codexd unreachable",
        _ if blocked => "rate limited",
        (Some(Value::Bool(false)), Some(Value::Bool(true))) => "logged out",
        (Some(Value::Bool(_)), _) => "ok",
        _ => DASH,
    };
    h.push_str("<section class=\"card\" id=\"codex\"><h2>Codex</h2>");
    h.push_str(&format!("<div class=\"big\">{}</div><dl>", badge(state)));
    row(h, "Version", &text(codex, &["version"]));
    row(h, "Binary", &text(codex, &["cliVersion"]));
    let who = match (
        first(account, &["loggedIn"]),
        first(account, &["authRequired"]),
    ) {
        (Some(Value::Bool(true)), _) => format!("logged in ({})", text(account, &["plan"])),
        (Some(Value::Bool(false)), Some(Value::Bool(false))) => "no login needed (provider)".into(),
        (Some(Value::Bool(false)), _) => "logged out".into(),
        _ => text(account, &["error"]),
    };
    row(h, "Account", &who);
    for (label, key) in [
        ("Primary limit", "primary"),
        ("Secondary limit", "secondary"),
    ] {
        let w = limits.get(key).unwrap_or(&Value::Null);
        if w.is_object() {
            row_html(
                h,
                label,
                &format!(
                    "{}% · resets {}",
                    esc(&text(w, &["usedPercent"])),
                    when(w, "resetsAt", now_ms)
                ),
            );
        } else {
            row(h, label, DASH);
        }
    }
    if blocked {
        row_html(
            h,
            "Blocked until",
            &format!(
                "<span class=\"err\">{}</span>",
                when(limits, "blockedUntil", now_ms)
            ),
        );
    }
    h.push_str("</dl></section>");
}

/// The schedules: each with its cron and zone, next fire, last outcome (and its task's
/// status now) and counts.
pub fn schedules_card(h: &mut String, d: &Value, now_ms: u64) {
    let s = d.get("schedules").unwrap_or(&Value::Null);
    h.push_str("<section class=\"card\" id=\"schedules\"><h2>Schedules</h2>");
    if s.get("available") != Some(&Value::Bool(true)) {
        h.push_str(&format!(
            "<div class=\"big\">{}</div><p class=\"err\">the conductor did not answer the schedule list: {}</p></section>",
            badge("unknown"),
            esc(&text(s, &["error"]))
        ));
        return;
    }
    let all = s
        .get("schedules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if all.is_empty() {
        h.push_str("<p class=\"muted\">No schedules.</p></section>");
        return;
    }
    let on = all.iter().filter(|x| x["enabled"] == true).count();
    h.push_str(&format!(
        "<div class=\"big\"><span class=\"badge good\">{on} enabled</span></div><div class=\"muted\">{} in all</div><ul class=\"outcomes\">",
        esc(&text(s, &["count"]))
    ));
    for x in all {
        let last = &x["last_fire"];
        let last_html = if last["at"].is_null() {
            "never fired".to_string()
        } else {
            format!(
                "last {} {} · task {} {}",
                when(last, "at", now_ms),
                badge(&text(last, &["outcome"])),
                esc(&text(last, &["task_id"])),
                esc(&text(last, &["task_status"])),
            )
        };
        h.push_str(&format!(
            "<li>{} <b>{}</b> <span class=\"mono\">{}</span> <span class=\"muted\">{}</span>\
             <div class=\"muted\">next {} · {}</div>\
             <div class=\"muted\">fired {} · caught up {} · skipped {} · failed {}</div></li>",
            badge(if x["enabled"] == true {
                "enabled"
            } else {
                "disabled"
            }),
            esc(&text(x, &["name"])),
            esc(&text(x, &["cron"])),
            esc(&text(x, &["timezone"])),
            if x["next_fire_at"].is_null() {
                DASH.to_string()
            } else {
                when(x, "next_fire_at", now_ms)
            },
            last_html,
            esc(&text(x, &["counts.fired"])),
            esc(&text(x, &["counts.caught_up"])),
            esc(&text(x, &["counts.skipped"])),
            esc(&text(x, &["counts.failed"])),
        ));
    }
    h.push_str("</ul></section>");
}

/// What the conductor's scheduler is doing: counts, each running task with its step and
/// elapsed time (and the approval it waits on), and the last five outcomes.
pub fn tasks_card(h: &mut String, d: &Value, now_ms: u64) {
    let t = d.get("tasks").unwrap_or(&Value::Null);
    h.push_str("<section class=\"card\" id=\"tasks\"><h2>Tasks</h2>");
    if t.get("available") != Some(&Value::Bool(true)) {
        let why = if d.pointer("/conductor/reachable") == Some(&Value::Bool(false)) {
            "conductor unreachable: tasks unknown".to_string()
        } else {
            format!(
                "the conductor did not answer the task summary: {}",
                text(t, &["error"])
            )
        };
        h.push_str(&format!(
            "<div class=\"big\">{}</div><p class=\"err\">{}</p></section>",
            badge("unknown"),
            esc(&why)
        ));
        return;
    }
    let running = t
        .get("running_tasks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let head = if running.is_empty() {
        badge("idle")
    } else {
        format!(
            "<span class=\"badge good\">{} running</span>",
            running.len()
        )
    };
    h.push_str(&format!(
        "<div class=\"big\">{head}</div><div class=\"muted\">{} queued · {} succeeded · {} failed · {} canceled</div>",
        esc(&text(t, &["queued"])),
        esc(&text(t, &["succeeded"])),
        esc(&text(t, &["failed"])),
        esc(&text(t, &["canceled"])),
    ));
    usage_html(h, t.get("usage").unwrap_or(&Value::Null));
    for r in running {
        let ms = |k: &str| r.get(k).and_then(Value::as_u64).map(duration);
        h.push_str(&format!(
            "<div class=\"task\"><div><b>{}</b> <span class=\"mono muted\">{}</span>{}</div>\
             <div>step {} of {} · running {}{} · attempt {}</div>",
            esc(&text(r, &["title"])),
            esc(&text(r, &["task_id"])),
            branch_html(r),
            esc(&text(r, &["step"])),
            esc(&text(r, &["steps"])),
            esc(&ms("elapsed_ms").unwrap_or_else(|| DASH.into())),
            ms("step_elapsed_ms")
                .map(|s| format!(" (this step {})", esc(&s)))
                .unwrap_or_default(),
            esc(&text(r, &["attempt"])),
        ));
        if let Some(w) = r.get("waiting").filter(|w| w.is_object()) {
            h.push_str(&format!(
                "<div class=\"warn\">waiting for an approval ({}): <span class=\"mono\">{}</span> · request <span class=\"mono\">{}</span></div>",
                esc(&text(w, &["kind"])),
                esc(&text(w, &["command"])),
                esc(&text(w, &["request_id"])),
            ));
        }
        h.push_str("</div>");
    }
    let recent = t
        .get("recent")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if recent.is_empty() {
        h.push_str("<p class=\"muted\">No finished tasks yet.</p></section>");
        return;
    }
    h.push_str("<h3>Last outcomes</h3><ul class=\"outcomes\">");
    for r in recent {
        let err = text(r, &["error"]);
        h.push_str(&format!(
            "<li>{} <b>{}</b>{}<div class=\"muted\">{}/{} steps · finished {}{}{}</div></li>",
            badge(&text(r, &["status"])),
            esc(&text(r, &["title"])),
            branch_html(r),
            esc(&text(r, &["steps_done"])),
            esc(&text(r, &["steps_total"])),
            when(r, "finished_at", now_ms),
            result_html(r),
            if err == DASH {
                String::new()
            } else {
                format!(" <span class=\"err\">{}</span>", esc(&err))
            },
        ));
    }
    h.push_str("</ul></section>");
}

/// Tokens today and in the last 7 days, overall and per schedule (`none`: by hand).
fn usage_html(h: &mut String, u: &Value) {
    if !u.is_object() {
        return;
    }
    let tokens = |t: &Value| {
        format!(
            "{} in ({} cached) · {} out ({} reasoning)",
            text(t, &["input_tokens"]),
            text(t, &["cached_input_tokens"]),
            text(t, &["output_tokens"]),
            text(t, &["reasoning_tokens"]),
        )
    };
    h.push_str("<h3>Tokens</h3><ul class=\"usage\">");
    for (key, name) in [("today", "today (UTC)"), ("last_7_days", "last 7 days")] {
        let p = u.get(key).unwrap_or(&Value::Null);
        h.push_str(&format!(
            "<li><b>{name}</b>: {} · {} task(s)",
            esc(&tokens(p.get("total").unwrap_or(&Value::Null))),
            esc(&text(p, &["tasks"])),
        ));
        if let Some(by) = p.get("by_schedule").and_then(Value::as_object) {
            for (schedule, t) in by {
                h.push_str(&format!(
                    "<div class=\"muted\">schedule <span class=\"mono\">{}</span>: {}</div>",
                    esc(schedule),
                    esc(&tokens(t))
                ));
            }
        }
        h.push_str("</li>");
    }
    h.push_str("</ul>");
}

/// ` on <branch>` for a worktree task; nothing for one in place.
fn branch_html(r: &Value) -> String {
    let b = text(r, &["branch"]);
    if b == DASH {
        return String::new();
    }
    format!(" on <span class=\"mono\">{}</span>", esc(&b))
}

/// ` · +N −M in K files` (or `no changes`), then where the result went.
fn result_html(r: &Value) -> String {
    let Some(res) = r.get("result").filter(|x| x.is_object()) else {
        return String::new();
    };
    let n = |k: &str| res.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = match text(res, &["changes"]).as_str() {
        "committed" => format!(
            " · +{} \u{2212}{} in {} file{}",
            n("insertions"),
            n("deletions"),
            n("files_changed"),
            if n("files_changed") == 1 { "" } else { "s" }
        ),
        "none" => " · no changes".to_string(),
        _ => String::new(),
    };
    let into = text(res, &["merged_into"]);
    if into != DASH {
        out.push_str(&format!(
            " · merged into <span class=\"mono\">{}</span>",
            esc(&into)
        ));
    }
    if res.get("discarded") == Some(&Value::Bool(true)) {
        out.push_str(" · discarded");
    }
    out
}
