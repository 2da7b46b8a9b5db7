//! Small HTML pieces the status page is built from: escaping, display text with a dash
//! for "absent", timestamps with their age, durations, coloured badges and `<dl>` rows.
//! Everything that takes upstream text escapes it; a function taking `html` says so.

use serde_json::Value;

use super::values::first;
use crate::common::time::ms_from_rfc3339;

pub const DASH: &str = "—";

/// Display text at the first present path, or "—".
pub fn text(v: &Value, paths: &[&str]) -> String {
    first(v, paths)
        .map(|x| show(&x))
        .unwrap_or_else(|| DASH.to_string())
}

pub fn show(v: &Value) -> String {
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
pub fn when(v: &Value, key: &str, now_ms: u64) -> String {
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

pub fn age(ms: u64) -> String {
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
pub fn badge(value: &str) -> String {
    if value == DASH {
        return DASH.to_string();
    }
    let class = match value.to_ascii_lowercase().as_str() {
        "running" | "active" | "completed" | "succeeded" | "ok" | "leader" | "held"
        | "reachable" | "idle" | "ready" => "good",
        "rate limited" | "logged out" => "bad",
        "paused" | "draining" | "degraded" | "standby" | "starting" | "restarting"
        | "interrupted" | "inprogress" | "in_progress" | "pending" | "external" | "canceled"
        | "waiting" | "detached" => "warn",
        "failed"
        | "error"
        | "errored"
        | "crashed"
        | "exited"
        | "stopped"
        | "down"
        | "unreachable"
        | "dead"
        | "expired"
        | "lost"
        | "backoff"
        | "crash_loop"
        | "unavailable"
        | "codexd unreachable"
        | "conductor unreachable" => "bad",
        _ => "neutral",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(value))
}

/// `html` must already be escaped.
pub fn row_html(h: &mut String, label: &str, html: &str) {
    h.push_str(&format!("<dt>{label}</dt><dd>{html}</dd>"));
}

pub fn level_class(level: &str) -> &'static str {
    match level.to_ascii_lowercase().as_str() {
        "error" | "fatal" => "error",
        "warn" | "warning" => "warn",
        _ => "info",
    }
}

pub fn row(h: &mut String, label: &str, value: &str) {
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

/// A duration for people: `45 s`, `3 min 12 s`, `2 h 5 min`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(duration(65_000), "1 min 5 s");
        assert_eq!(duration(7_500_000), "2 h 5 min");
    }

    #[test]
    fn escapes_all_specials() {
        assert_eq!(
            esc("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }
}
