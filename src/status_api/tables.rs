//! The status page's tables: Codex sessions and the recent codexd lifecycle events.

use serde_json::Value;

use super::html::{badge, esc, level_class, text, when, DASH};

pub fn sessions_table(h: &mut String, d: &Value, now_ms: u64) {
    let s = d.pointer("/codexd/sessions").unwrap_or(&Value::Null);
    let items = s
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    h.push_str(&format!(
        "<section id=\"sessions\"><h2>Codex sessions <span class=\"muted\">{} total, {} active</span></h2>",
        esc(&text(s, &["count"])),
        esc(&text(s, &["active"]))
    ));
    if items.is_empty() {
        h.push_str("<p class=\"muted\">No sessions.</p></section>");
        return;
    }
    h.push_str("<table><thead><tr><th>Session</th><th>Purpose</th><th>Status</th><th>Thread</th><th>Last turn</th><th>Model</th><th>Updated</th><th>Last turn detail</th></tr></thead><tbody>");
    for it in items {
        let detail = match text(it, &["lastTurnError"]) {
            e if e != DASH => format!("<span class=\"err\">{}</span>", esc(&e)),
            _ => esc(&text(it, &["lastTurnMessage"])),
        };
        h.push_str(&format!(
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"detail\">{}</td></tr>",
            esc(&text(it, &["sessionId"])),
            esc(&text(it, &["purpose"])),
            badge(&text(it, &["status"])),
            esc(&text(it, &["threadStatus"])),
            badge(&text(it, &["lastTurnStatus"])),
            esc(&text(it, &["model"])),
            when(it, "updatedAt", now_ms),
            detail,
        ));
    }
    h.push_str("</tbody></table></section>");
}

pub fn events_table(h: &mut String, d: &Value, now_ms: u64) {
    let e = d.pointer("/codexd/recentEvents").unwrap_or(&Value::Null);
    let items = e
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let hidden = e.get("hidden").and_then(Value::as_u64).unwrap_or(0);
    let note = if hidden > 0 {
        format!(", {hidden} token-usage, rate-limit and progress notifications not shown")
    } else {
        String::new()
    };
    h.push_str(&format!(
        "<section id=\"events\"><h2>Recent codexd events <span class=\"muted\">lifecycle, newest first{note}</span></h2>"
    ));
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
