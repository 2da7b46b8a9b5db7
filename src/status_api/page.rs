//! The HTML status page: a pure function from the `/v1/status` data to a complete,
//! self-contained document (inline CSS, no external assets). It renders fully on the
//! server; the one small inline script only swaps in a fresh copy every few seconds.
//!
//! Every piece of upstream text goes through `esc`: session ids, reasons and event
//! messages are written by callers we do not control.

use serde_json::Value;

use super::aggregate::first;
use crate::common::time::ms_from_rfc3339;

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

    // Header: who this node is and one word for its health.
    h.push_str("<header><div><h1>baa-conductor status</h1>");
    h.push_str(&format!(
        "<div class=\"ident\">{}</div></div>",
        esc(&identity)
    ));
    h.push_str(&format!(
        "<div class=\"right\">{}<div class=\"muted\">generated {} · refreshes every {REFRESH_SECS} s</div>\
         <div id=\"stale\" class=\"stale\" hidden>status-api not answering; showing the last page</div></div></header>",
        badge(&overall),
        esc(&text(d, &["generatedAt"])),
    ));

    if let Some(ws) = d
        .get("warnings")
        .and_then(Value::as_array)
        .filter(|w| !w.is_empty())
    {
        h.push_str(&format!(
            "<section class=\"warnings\"><h2>Warnings ({})</h2><ul>",
            ws.len()
        ));
        for w in ws {
            h.push_str(&format!("<li>{}</li>", esc(&show(w))));
        }
        h.push_str("</ul></section>");
    }

    h.push_str("<div class=\"grid\">");
    automation_card(&mut h, d, now_ms);
    node_card(&mut h, d, now_ms);
    child_card(&mut h, d, now_ms);
    codex_card(&mut h, d, now_ms);
    h.push_str("</div>");

    sessions_table(&mut h, d, now_ms);
    events_table(&mut h, d, now_ms);
    upstreams(&mut h, d);
    h.push_str("</main></body></html>\n");
    h
}

fn automation_card(h: &mut String, d: &Value, now_ms: u64) {
    let a = d.get("automation").unwrap_or(&Value::Null);
    // Without the conductor the mode is unknown, which must not look like "no mode".
    let mode = if d.pointer("/conductor/reachable") == Some(&Value::Bool(false)) {
        "unreachable".to_string()
    } else {
        text(a, &["mode"])
    };
    h.push_str("<section class=\"card\"><h2>Automation</h2>");
    h.push_str(&format!("<div class=\"big\">{}</div><dl>", badge(&mode)));
    row(h, "Set by", &text(a, &["requestedBy"]));
    row(h, "Reason", &text(a, &["reason"]));
    row_html(h, "Since", &when(a, "updatedAt", now_ms));
    row(h, "Lease holder", &text(a, &["holderId"]));
    row(h, "Version", &text(a, &["version"]));
    h.push_str("</dl></section>");
}

fn node_card(h: &mut String, d: &Value, now_ms: u64) {
    let n = d.get("node").unwrap_or(&Value::Null);
    h.push_str("<section class=\"card\"><h2>Node</h2><dl>");
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

fn child_card(h: &mut String, d: &Value, now_ms: u64) {
    let c = d.pointer("/codexd").unwrap_or(&Value::Null);
    let child = c.get("child").unwrap_or(&Value::Null);
    let status = if c.get("reachable") == Some(&Value::Bool(false)) {
        "unreachable".to_string()
    } else {
        text(child, &["status"])
    };
    h.push_str("<section class=\"card\"><h2>Codex child</h2>");
    h.push_str(&format!("<div class=\"big\">{}</div><dl>", badge(&status)));
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
fn codex_card(h: &mut String, d: &Value, now_ms: u64) {
    let c = d.pointer("/codexd").unwrap_or(&Value::Null);
    let codex = c.get("codex").unwrap_or(&Value::Null);
    let account = c.get("account").unwrap_or(&Value::Null);
    let limits = c.get("limits").unwrap_or(&Value::Null);
    let blocked = limits.get("blockedUntil").is_some_and(|v| v.is_string());
    let state = match (
        first(account, &["loggedIn"]),
        first(account, &["authRequired"]),
    ) {
        _ if blocked => "rate limited",
        (Some(Value::Bool(false)), Some(Value::Bool(true))) => "logged out",
        (Some(Value::Bool(_)), _) => "ok",
        _ => DASH,
    };
    h.push_str("<section class=\"card\"><h2>Codex account</h2>");
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

fn sessions_table(h: &mut String, d: &Value, now_ms: u64) {
    let s = d.pointer("/codexd/sessions").unwrap_or(&Value::Null);
    let items = s
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    h.push_str(&format!(
        "<section><h2>Codex sessions <span class=\"muted\">{} total, {} active</span></h2>",
        esc(&text(s, &["count"])),
        esc(&text(s, &["active"]))
    ));
    if items.is_empty() {
        h.push_str("<p class=\"muted\">No sessions.</p></section>");
        return;
    }
    h.push_str("<table><thead><tr><th>Session</th><th>Purpose</th><th>Status</th><th>Last turn</th><th>Model</th><th>Updated</th><th>Last turn detail</th></tr></thead><tbody>");
    for it in items {
        let detail = match text(it, &["lastTurnError"]) {
            e if e != DASH => format!("<span class=\"err\">{}</span>", esc(&e)),
            _ => esc(&text(it, &["lastTurnMessage"])),
        };
        h.push_str(&format!(
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"detail\">{}</td></tr>",
            esc(&text(it, &["sessionId"])),
            esc(&text(it, &["purpose"])),
            badge(&text(it, &["status"])),
            badge(&text(it, &["lastTurnStatus"])),
            esc(&text(it, &["model"])),
            when(it, "updatedAt", now_ms),
            detail,
        ));
    }
    h.push_str("</tbody></table></section>");
}

fn events_table(h: &mut String, d: &Value, now_ms: u64) {
    let e = d.pointer("/codexd/recentEvents").unwrap_or(&Value::Null);
    let items = e
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    h.push_str("<section><h2>Recent codexd events <span class=\"muted\">newest first</span></h2>");
    if items.is_empty() {
        h.push_str("<p class=\"muted\">No events.</p></section>");
        return;
    }
    h.push_str("<table><thead><tr><th>#</th><th>When</th><th>Level</th><th>Type</th><th>Message</th></tr></thead><tbody>");
    for it in items {
        let level = text(it, &["level"]);
        h.push_str(&format!(
            "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"lvl-{}\">{}</td><td class=\"mono\">{}</td><td class=\"detail\">{}</td></tr>",
            esc(&text(it, &["seq"])),
            when(it, "createdAt", now_ms),
            level_class(&level),
            esc(&level),
            esc(&text(it, &["type"])),
            esc(&text(it, &["message"])),
        ));
    }
    h.push_str("</tbody></table></section>");
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

const DASH: &str = "—";

/// Display text at the first present path, or "—".
fn text(v: &Value, paths: &[&str]) -> String {
    first(v, paths)
        .map(|x| show(&x))
        .unwrap_or_else(|| DASH.to_string())
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => DASH.to_string(),
        Value::String(s) if s.trim().is_empty() => DASH.to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        other => other.to_string(),
    }
}

/// A timestamp as escaped HTML: compact UTC time plus its age, the exact value in `title`,
/// e.g. `2026-05-01 10:00:00Z <span class="muted">3 min ago</span>`.
fn when(v: &Value, key: &str, now_ms: u64) -> String {
    let t = text(v, &[key]);
    match ms_from_rfc3339(&t) {
        Some(ms) => {
            let short = t.get(..19).unwrap_or(&t).replace('T', " ");
            let ago = if ms <= now_ms {
                format!(" <span class=\"muted\">{}</span>", age(now_ms - ms))
            } else {
                String::new()
            };
            format!("<span title=\"{}\">{}Z</span>{ago}", esc(&t), esc(&short))
        }
        None => esc(&t),
    }
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h {} min ago", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h ago", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A coloured pill; the colour class comes from a fixed list, the text is escaped.
/// An absent value stays a plain dash rather than an empty pill.
fn badge(value: &str) -> String {
    if value == DASH {
        return DASH.to_string();
    }
    let class = match value.to_ascii_lowercase().as_str() {
        "running" | "active" | "completed" | "succeeded" | "ok" | "leader" | "held"
        | "reachable" | "idle" | "ready" => "good",
        "rate limited" | "logged out" => "bad",
        "paused" | "draining" | "degraded" | "standby" | "starting" | "restarting"
        | "interrupted" | "inprogress" | "in_progress" | "pending" | "external" => "warn",
        "failed" | "error" | "errored" | "crashed" | "exited" | "stopped" | "down"
        | "unreachable" | "dead" | "expired" | "lost" | "backoff" => "bad",
        _ => "neutral",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(value))
}

/// `html` must already be escaped.
fn row_html(h: &mut String, label: &str, html: &str) {
    h.push_str(&format!("<dt>{label}</dt><dd>{html}</dd>"));
}

fn level_class(level: &str) -> &'static str {
    match level.to_ascii_lowercase().as_str() {
        "error" | "fatal" => "error",
        "warn" | "warning" => "warn",
        _ => "info",
    }
}

fn row(h: &mut String, label: &str, value: &str) {
    h.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", esc(value)));
}

/// HTML-escapes text for element content and double- or single-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
.warnings{background:var(--warnbg);border:1px solid #f0d48a;border-radius:8px;padding:10px 14px}\
.warnings h2{color:var(--warn)}.warnings ul{margin:0;padding-left:18px}.warnings li{margin:2px 0;word-break:break-word}\
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
            "<dt>Binary</dt><dd>codex-cli 0.169.0</dd>",
            "<dt>Account</dt><dd>logged in (plus)</dd>",
            "<span class=\"badge bad\">rate limited</span>",
            "<dt>Primary limit</dt><dd>100% · resets <span title=\"2026-05-01T13:00:00.000Z\">",
            "<dt>Blocked until</dt>",
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
        let d = json!({"codexd": {"reachable": false, "baseUrl": "http://127.0.0.1:1", "error": "Connection refused"}});
        let html = render(&d, "n", 0);
        assert!(
            html.contains("<span class=\"badge bad\">unreachable</span>"),
            "{html}"
        );
        assert!(html.contains("Connection refused"), "{html}");
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(ms_from_rfc3339("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            ms_from_rfc3339("2000-02-29T00:00:00.123Z"),
            Some(951_782_400_123)
        );
        assert_eq!(
            ms_from_rfc3339("2026-11-18T11:06:40Z"),
            Some(1_795_000_000_000)
        );
        assert_eq!(ms_from_rfc3339("yesterday"), None);
        assert_eq!(ms_from_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(age(3_700_000), "1 h 1 min ago");
    }

    #[test]
    fn escapes_all_specials() {
        assert_eq!(
            esc("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }
}
