//! The `schedules` part of `/v1/status`: the conductor's `GET /v1/schedules`, re-shaped and
//! bounded like the tasks part (only the fields the page shows, long text cut), so many or
//! broken schedules can neither flood the page nor break it.

use serde_json::{json, Value};

use super::fetch::Fetched;
use super::values::{clip_value, first};

/// At most this many schedules are listed.
const MAX_SCHEDULES: usize = 50;

/// `{available, error, count, schedules: [{schedule_id, name, cron, timezone, enabled,
/// next_fire_at, last_fire {at, outcome, task_id, task_status}, counts}]}`.
pub fn build(list: &Fetched) -> Value {
    let l = match list {
        Ok(l) => l,
        Err(e) => {
            return json!({"available": false, "error": e.to_string(), "count": null, "schedules": []})
        }
    };
    let all: Vec<Value> = l
        .get("schedules")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|s| s.is_object())
                .take(MAX_SCHEDULES)
                .map(one)
                .collect()
        })
        .unwrap_or_default();
    json!({
        "available": true,
        "error": null,
        "count": l.get("count").and_then(Value::as_u64).unwrap_or(all.len() as u64),
        "schedules": all,
    })
}

fn text(v: &Value, path: &str) -> Value {
    first(v, &[path])
        .filter(|x| !x.is_null())
        .map(|x| clip_value(&x))
        .unwrap_or(Value::Null)
}

fn number(v: &Value, path: &str) -> Value {
    first(v, &[path])
        .and_then(|x| x.as_u64())
        .map(Value::from)
        .unwrap_or(Value::Null)
}

fn one(s: &Value) -> Value {
    json!({
        "schedule_id": text(s, "schedule_id"),
        "name": text(s, "name"),
        "cron": text(s, "cron"),
        "timezone": text(s, "timezone"),
        "enabled": s.get("enabled").and_then(Value::as_bool),
        "next_fire_at": text(s, "next_fire_at"),
        "last_fire": {
            "at": text(s, "last_fire.at"),
            "outcome": text(s, "last_fire.outcome"),
            "task_id": text(s, "last_fire.task_id"),
            "task_status": text(s, "last_fire.task_status"),
        },
        "counts": {
            "fired": number(s, "counts.fired"),
            "caught_up": number(s, "counts.caught_up"),
            "skipped": number(s, "counts.skipped"),
            "failed": number(s, "counts.failed"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::FetchError;

    #[test]
    fn a_schedule_keeps_what_the_page_shows_and_a_failed_fetch_says_why() {
        let l = json!({"count": 1, "schedules": [{
            "schedule_id": "sched_1", "name": "nightly", "cron": "0 3 * * *", "timezone": "UTC",
            "enabled": true, "next_fire_at": "2027-01-16T03:00:00.000Z",
            "task": {"prompt": "secret prompt"},
            "last_fire": {"at": "2027-01-15T03:00:00.000Z", "outcome": "fired", "task_id": "task_1", "task_status": "succeeded"},
            "counts": {"fired": 3, "caught_up": 1, "skipped": 2, "failed": 0}}, "junk"]});
        let b = build(&Ok(l));
        assert_eq!(b["available"], true);
        assert_eq!(b["schedules"].as_array().unwrap().len(), 1);
        let s = &b["schedules"][0];
        assert_eq!(s["last_fire"]["outcome"], "fired");
        assert_eq!(s["counts"]["skipped"], 2);
        assert!(!b.to_string().contains("secret prompt"));
        let e = build(&Err(FetchError::Unreachable("refused".into())));
        assert_eq!(e["available"], false);
        assert!(e["error"].as_str().unwrap().contains("refused"));
    }
}
