//! The HTML status page: a pure function from the `/v1/status` data to a complete,
//! self-contained document (inline CSS, no external assets). It renders fully on the
//! server; the one small inline script only swaps in a fresh copy every few seconds.
//!
//! Read top down it answers, in order: is the node all right (the overall word, the
//! biggest thing on the page), what to do about what is not (each warning with its
//! commands and log), then the detail (cards, sessions, events). Every piece of upstream
//! text goes through `esc`: session ids, reasons and event messages are written by
//! callers we do not control.

use serde_json::Value;

use super::cards;
use super::html::{badge, esc, show, text, DASH};
use super::tables;

/// How often the inline script re-fetches the page.
pub const REFRESH_SECS: u64 = 5;

/// Renders the page. `nonce` authorizes the inline `<style>` and `<script>` under the
/// Content-Security-Policy; `now_ms` turns timestamps into "3 min ago".
pub fn render(d: &Value, nonce: &str, now_ms: u64) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let identity = text(d, &["node.identity", "node.nodeId"]);
    let overall = text(d, &["overall"]);
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str(&format!(
        "<title>{} · {} · baa status</title>",
        esc(&overall),
        esc(&identity)
    ));
    // Without JS the page still refreshes itself, just less smoothly.
    h.push_str("<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>");
    h.push_str(&format!("<style nonce=\"{}\">{CSS}</style>", esc(nonce)));
    h.push_str(&format!(
        "<script nonce=\"{}\">{}</script>",
        esc(nonce),
        SCRIPT.replace("REFRESH_MS", &(REFRESH_SECS * 1000).to_string())
    ));
    h.push_str("</head><body><main id=\"status\">");

    h.push_str("<header><div><h1>baa-conductor status</h1>");
    h.push_str(&format!(
        "<div class=\"ident\">{}</div></div>",
        esc(&identity)
    ));
    h.push_str(&format!(
        "<div class=\"right\"><div class=\"muted\">generated {} · refreshes every {REFRESH_SECS} s</div>\
         <div id=\"stale\" class=\"stale\" hidden>status-api not answering; showing the last page</div></div></header>",
        esc(&text(d, &["generatedAt"])),
    ));

    overall_banner(&mut h, d, &overall);
    advice(&mut h, d);

    h.push_str("<div class=\"grid\">");
    cards::automation_card(&mut h, d, now_ms);
    cards::tasks_card(&mut h, d, now_ms);
    cards::schedules_card(&mut h, d, now_ms);
    cards::codexd_card(&mut h, d, now_ms);
    cards::codex_card(&mut h, d, now_ms);
    cards::node_card(&mut h, d, now_ms);
    h.push_str("</div>");

    tables::sessions_table(&mut h, d, now_ms);
    tables::events_table(&mut h, d, now_ms);
    upstreams(&mut h, d);
    h.push_str("</main></body></html>\n");
    h
}

/// The one word for the node's health, large, with how many things need a look and the
/// codex version that runs.
fn overall_banner(h: &mut String, d: &Value, overall: &str) {
    let class = match overall {
        "ok" => "ok",
        "degraded" => "degraded",
        "down" => "down",
        _ => "unknown",
    };
    let warnings: Vec<String> = d
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| w.iter().map(show).collect())
        .unwrap_or_default();
    // The most urgent warning itself (errors come first), so the banner alone says what
    // is wrong; the list below says what to do.
    let sum = match (overall, warnings.as_slice()) {
        ("down", _) => "Neither the conductor nor codexd answers.".to_string(),
        (_, []) => "Nothing needs attention.".to_string(),
        (_, [one]) => short(one),
        (_, [first, rest @ ..]) => format!("{} (and {} more)", short(first), rest.len()),
    };
    let codex_down = d.pointer("/codexd/reachable") == Some(&Value::Bool(false));
    let meta = match text(d, &["codexd.codex.version", "codexd.codex.cliVersion"]) {
        _ if codex_down => "codex version unknown: codexd unreachable".to_string(),
        v if v == DASH => "codex version unknown".to_string(),
        v => format!("codex {v} · codexd {}", text(d, &["node.codexdVersion"])),
    };
    let word = if overall == DASH { "unknown" } else { overall };
    h.push_str(&format!(
        "<section class=\"overall ov-{class}\" id=\"overall\"><div class=\"word\">{}</div>\
         <div><div class=\"sum\">{}</div><div class=\"meta\">{}</div></div></section>",
        esc(word),
        esc(&sum),
        esc(&meta),
    ));
}

/// A warning cut to a banner line.
fn short(s: &str) -> String {
    const MAX: usize = 110;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX).collect();
    out.push('…');
    out
}

/// Each warning with what to do: the fix, the commands to copy, the log to open.
fn advice(h: &mut String, d: &Value) {
    let items = d
        .get("advice")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if items.is_empty() {
        return;
    }
    h.push_str(&format!(
        "<section class=\"advice\" id=\"advice\"><h2>What to do ({})</h2><ol>",
        items.len()
    ));
    for a in items {
        let level = match text(a, &["level"]).as_str() {
            "error" => "error",
            "info" => "info",
            _ => "warn",
        };
        let label = match level {
            "error" => badge("error"),
            "info" => "<span class=\"badge neutral\">note</span>".to_string(),
            _ => "<span class=\"badge warn\">warning</span>".to_string(),
        };
        h.push_str(&format!(
            "<li class=\"adv adv-{level}\"><div class=\"what\">{label} {}</div><div class=\"fix\">{}</div>",
            esc(&text(a, &["text"])),
            esc(&text(a, &["fix"])),
        ));
        for c in a
            .get("commands")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            h.push_str(&format!("<pre class=\"cmd\">{}</pre>", esc(&show(c))));
        }
        let log = text(a, &["log"]);
        if log != DASH {
            h.push_str(&format!(
                "<div class=\"log\">Log: <code>{}</code></div>",
                esc(&log)
            ));
        }
        h.push_str("</li>");
    }
    h.push_str("</ol></section>");
}

fn upstreams(h: &mut String, d: &Value) {
    h.push_str("<footer><h2>Upstreams</h2><dl>");
    for (name, key) in [("conductor", "conductor"), ("codexd", "codexd")] {
        let u = d.get(key).unwrap_or(&Value::Null);
        let reachable = u.get("reachable") == Some(&Value::Bool(true));
        let mut dd = format!(
            "<span class=\"mono\">{}</span> {}",
            esc(&text(u, &["baseUrl"])),
            badge(if reachable {
                "reachable"
            } else {
                "unreachable"
            })
        );
        let err = text(u, &["error"]);
        if err != DASH {
            dd.push_str(&format!(" <span class=\"err\">{}</span>", esc(&err)));
        }
        h.push_str(&format!("<dt>{name}</dt><dd>{dd}</dd>"));
    }
    h.push_str("</dl><p class=\"muted\">JSON: <a href=\"/v1/status\">/v1/status</a></p></footer>");
}

/// The fresh page carries a new nonce; its <style>/<script> are dropped before parsing so
/// the parsed copy does not trip this page's CSP (only `<main>` is taken from it anyway).
const SCRIPT: &str = "setInterval(function(){fetch('/',{cache:'no-store'}).then(function(r){if(!r.ok)throw r.status;return r.text();}).then(function(t){t=t.replace(/<(style|script)[^>]*>[\\s\\S]*?<\\/\\1>/g,'');var d=new DOMParser().parseFromString(t,'text/html');var m=d.getElementById('status');if(m){document.getElementById('status').replaceWith(m);document.title=d.title;}}).catch(function(){var s=document.getElementById('stale');if(s)s.hidden=false;});},REFRESH_MS);";

const CSS: &str = "\
:root{--bg:#f6f7f9;--card:#fff;--fg:#1c2026;--muted:#6b7380;--line:#e2e5ea;--good:#1f7a3f;--goodbg:#e3f4e8;--warn:#8a5a00;--warnbg:#fdf1d6;--bad:#a31d1d;--badbg:#fbe2e2;}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 -apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif}\
main{max-width:1200px;margin:0 auto;padding:20px 24px 40px}\
header{display:flex;justify-content:space-between;align-items:flex-end;gap:16px;border-bottom:1px solid var(--line);padding-bottom:12px;margin-bottom:16px}\
h1{font-size:20px;margin:0}\
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 10px}\
h2 .muted{text-transform:none;letter-spacing:0;font-weight:normal;margin-left:6px}\
.ident{font:600 15px ui-monospace,SFMono-Regular,Menlo,monospace;margin-top:4px}\
.right{text-align:right}.right .badge{font-size:14px}\
.muted{color:var(--muted);font-size:12px}td .muted,dd .muted{margin-left:4px}\
td span[title],dd span[title]{white-space:nowrap}\
.stale{color:var(--bad);font-size:12px}\
section,footer{margin-bottom:18px}\
.overall{display:flex;align-items:center;gap:22px;border-radius:10px;padding:16px 22px;margin-bottom:16px;border:2px solid}\
.overall .word{font:800 44px/1 -apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif;letter-spacing:.02em;text-transform:uppercase}\
.overall .sum{font-size:17px;font-weight:600}.overall .meta{font-size:13px;color:var(--muted);margin-top:4px}\
.ov-ok{background:var(--goodbg);border-color:#9fd3ae;color:var(--good)}\
.ov-degraded{background:var(--warnbg);border-color:#f0d48a;color:var(--warn)}\
.ov-down,.ov-unknown{background:var(--badbg);border-color:#eba5a5;color:var(--bad)}\
.advice ol{list-style:none;margin:0;padding:0}\
.adv{background:var(--card);border:1px solid var(--line);border-left:5px solid var(--muted);border-radius:8px;padding:10px 14px;margin-bottom:8px}\
.adv-error{border-left-color:var(--bad)}.adv-warn{border-left-color:#d99a00}.adv-info{border-left-color:#7a8699}\
.adv .what{font-weight:600;font-size:15px;word-break:break-word}.adv .fix{margin:4px 0 6px}\
pre.cmd{margin:4px 0;padding:6px 10px;background:#1e232b;color:#e8ecf1;border-radius:6px;white-space:pre-wrap;word-break:break-all;font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}\
.adv .log code,code.path{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace;background:#eef0f3;padding:1px 5px;border-radius:4px;word-break:break-all}\
.task{border-top:1px solid var(--line);padding:6px 0}.task .warn{color:var(--warn)}\
h3{font-size:12px;color:var(--muted);margin:10px 0 4px;font-weight:600}\
.outcomes{margin:0;padding:0;list-style:none}.outcomes li{margin:3px 0;word-break:break-word}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:14px;margin-bottom:18px}\
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:0}\
.big{margin:0 0 10px}.big .badge{font-size:18px;padding:3px 14px}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}\
dt{color:var(--muted)}dd{margin:0;word-break:break-word}\
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}\
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:baseline}\
th{background:#eef0f3;font-weight:600;font-size:12px;color:var(--muted)}\
tr:last-child td{border-bottom:0}\
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}\
.detail{max-width:420px;word-break:break-word}\
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-weight:600;font-size:12px;background:#eceef1;color:#39414d}\
.badge.good{background:var(--goodbg);color:var(--good)}.badge.warn{background:var(--warnbg);color:var(--warn)}.badge.bad{background:var(--badbg);color:var(--bad)}\
.err{color:var(--bad)}\
.lvl-error{color:var(--bad);font-weight:600}.lvl-warn{color:var(--warn);font-weight:600}.lvl-info{color:var(--muted)}\
footer{border-top:1px solid var(--line);padding-top:12px}\
a{color:#2456a6}";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "generatedAt": "2026-05-01T12:00:00.000Z",
            "overall": "degraded",
            "node": {"identity": "mini-main@mini(primary)", "nodeId": "mini-main", "role": "primary", "leaseState": "leader"},
            "automation": {"mode": "paused", "requestedBy": "ops<b>", "reason": "<script>alert(1)</script>", "updatedAt": "2026-05-01T11:57:00.000Z"},
            "conductor": {"reachable": true, "baseUrl": "http://127.0.0.1:4317", "error": null},
            "codexd": {"reachable": true, "baseUrl": "http://127.0.0.1:4319", "error": null,
                "child": {"status": "running", "pid": 777, "restarts": 2},
                "codex": {"version": "0.169.0", "cliVersion": "codex-cli 0.169.0"},
                "account": {"loggedIn": true, "plan": "plus", "authRequired": true},
                "limits": {"primary": {"usedPercent": 100, "resetsAt": "2026-05-01T13:00:00.000Z"}, "blockedUntil": "2026-05-01T13:00:00.000Z"},
                "sessions": {"count": 1, "active": 1, "items": [{"sessionId": "s-1", "status": "active", "lastTurnStatus": "completed"}]},
                "recentEvents": {"count": 1, "items": [{"seq": 9, "level": "warn", "type": "child.exited", "message": "a & b"}]}},
            "warnings": ["automation is paused (by ops<b>: <script>alert(1)</script>)"],
            "advice": [{"level": "warn", "text": "automation is paused (by ops<b>: <script>alert(1)</script>)",
                "fix": "Resume when ready:", "commands": ["curl -s -X POST http://127.0.0.1:4317/v1/system/resume -d '{\"a\":1}'"], "log": "/l/x.err.log"}],
            "tasks": {"available": true, "queued": 1, "running": 1, "succeeded": 4, "failed": 1, "canceled": 0,
                "usage": {"today": {"since": "2026-05-01T00:00:00.000Z", "tasks": 2,
                    "total": {"input_tokens": 1200, "cached_input_tokens": 300, "output_tokens": 80, "reasoning_tokens": 16},
                    "by_schedule": {"none": {"input_tokens": 200, "cached_input_tokens": 0, "output_tokens": 30, "reasoning_tokens": 0},
                        "sched-<x>": {"input_tokens": 1000, "cached_input_tokens": 300, "output_tokens": 50, "reasoning_tokens": 16}}},
                    "last_7_days": {"tasks": 2, "total": {"input_tokens": 1200, "cached_input_tokens": 300, "output_tokens": 80, "reasoning_tokens": 16}}},
                "running_tasks": [{"task_id": "task-1", "title": "fix <bug>", "attempt": 2, "step": 2, "steps": 3, "branch": "baa/task-1",
                    "elapsed_ms": 65000, "step_elapsed_ms": 5000,
                    "waiting": {"request_id": "req-9", "kind": "command", "command": "rm -rf build"}}],
                "recent": [{"task_id": "task-0", "title": "old one", "status": "failed", "error": "turn failed: boom",
                    "steps_done": 1, "steps_total": 2, "finished_at": "2026-05-01T11:59:00.000Z"},
                    {"task_id": "task-2", "title": "done", "status": "succeeded", "branch": "baa/task-2",
                    "steps_done": 1, "steps_total": 1, "finished_at": "2026-05-01T11:59:00.000Z",
                    "result": {"changes": "committed", "files_changed": 3, "insertions": 10, "deletions": 2, "merged_into": "main", "discarded": false}},
                    {"task_id": "task-3", "title": "idle", "status": "succeeded", "branch": "baa/task-3",
                    "result": {"changes": "none", "files_changed": 0, "insertions": 0, "deletions": 0, "merged_into": null, "discarded": true}}]},
        })
    }

    #[test]
    fn renders_state_and_escapes_upstream_text() {
        let html = render(&data(), "n0nce", 1_777_636_800_000);
        for want in [
            "mini-main@mini(primary)",
            "<span class=\"badge warn\">paused</span>",
            "ops&lt;b&gt;",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "<span class=\"badge good\">running</span>",
            "<dd>777</dd>",
            "<span class=\"badge good\">completed</span>",
            "a &amp; b",
            "<style nonce=\"n0nce\">",
            "<span title=\"2026-05-01T11:57:00.000Z\">2026-05-01 11:57:00Z</span> <span class=\"muted\">3 min ago</span>",
            "<dt>Version</dt><dd>0.169.0</dd>",
            "<b>today (UTC)</b>: 1200 in (300 cached) · 80 out (16 reasoning) · 2 task(s)",
            "schedule <span class=\"mono\">sched-&lt;x&gt;</span>: 1000 in (300 cached) · 50 out (16 reasoning)",
            "<b>last 7 days</b>: 1200 in",
            "<dt>Binary</dt><dd>codex-cli 0.169.0</dd>",
            "<dt>Account</dt><dd>logged in (plus)</dd>",
            "<span class=\"badge bad\">rate limited</span>",
            "<dt>Primary limit</dt><dd>100% · resets <span title=\"2026-05-01T13:00:00.000Z\">",
            "<dt>Blocked until</dt>",
            "<div class=\"word\">degraded</div>",
            "<div class=\"sum\">automation is paused (by ops&lt;b&gt;: &lt;script&gt;alert(1)&lt;/script&gt;)</div>",
            "codex 0.169.0 · codexd —",
            "<h2>What to do (1)</h2>",
            "<pre class=\"cmd\">curl -s -X POST http://127.0.0.1:4317/v1/system/resume -d &#39;{&quot;a&quot;:1}&#39;</pre>",
            "Log: <code>/l/x.err.log</code>",
            "<span class=\"badge good\">1 running</span>",
            "<b>fix &lt;bug&gt;</b>",
            "step 2 of 3 · running 1 min 5 s (this step 5 s) · attempt 2",
            "waiting for an approval (command): <span class=\"mono\">rm -rf build</span>",
            "<span class=\"badge bad\">failed</span> <b>old one</b><div class=\"muted\">1/2 steps · finished ",
            "turn failed: boom",
            "<b>fix &lt;bug&gt;</b> <span class=\"mono muted\">task-1</span> on <span class=\"mono\">baa/task-1</span>",
            " · +10 \u{2212}2 in 3 files · merged into <span class=\"mono\">main</span>",
            "<b>idle</b> on <span class=\"mono\">baa/task-3</span>",
            " · no changes · discarded",
        ] {
            assert!(html.contains(want), "missing {want:?} in:\n{html}");
        }
        assert!(
            !html.contains("<script>alert"),
            "unescaped script in:\n{html}"
        );
        assert_eq!(html.matches("<script").count(), 1, "only our own script");
    }

    #[test]
    fn renders_dashes_for_an_empty_document() {
        for d in [json!({}), json!(null), json!({"codexd": 5, "node": []})] {
            let html = render(&d, "n", 0);
            assert!(html.contains("<dd>—</dd>"), "{html}");
            assert!(html.ends_with("</html>\n"));
        }
    }

    #[test]
    fn unreachable_codexd_shows_as_such() {
        let d = json!({"codexd": {"reachable": false, "baseUrl": "http://127.0.0.1:1", "error": "Connection refused"},
            "conductor": {"reachable": false}});
        let html = render(&d, "n", 0);
        assert!(
            html.contains("<span class=\"badge bad\">codexd unreachable</span>"),
            "{html}"
        );
        assert!(html.contains("Connection refused"), "{html}");
        assert!(
            !html
                .to_lowercase()
                .contains("child</h2><div class=\"big\"><span class=\"badge bad\">unreachable"),
            "{html}"
        );
        assert!(
            html.contains("conductor unreachable: tasks unknown"),
            "{html}"
        );
    }
}
