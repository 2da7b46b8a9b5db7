//! The bounded copy of the newest events kept in `recent-events.json` and shown in
//! `/v1/codexd/status`. A status snapshot needs what happened, not every byte of it: one
//! event's `detail` can hold a whole diff or a megabyte-long child line, and the file
//! once reached 16 MB. So each event is cut to a few KiB (marked `truncated: true` with
//! its original `detailBytes`), and the list as a whole to a fixed size, newest kept.
//! The full events stay in `events.jsonl` and are read with `?since=`.

use serde_json::{Map, Value};

use baa::common::text;

/// An event's `detail` larger than this (serialized) is cut.
pub const DETAIL_BYTES: usize = 2048;
/// A cut detail keeps its top-level fields up to this size each (ids, statuses).
const FIELD_BYTES: usize = 256;
/// A `message` longer than this is cut (at a character boundary).
const MESSAGE_BYTES: usize = 1024;
/// The whole list's bound; older events are dropped first.
pub const TOTAL_BYTES: usize = 256 * 1024;

/// `events` (oldest first) slimmed and cut to [`TOTAL_BYTES`], oldest first.
pub fn bounded(events: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut total = 0;
    for event in events.into_iter().rev() {
        let slim = slim(event);
        total += json_len(&slim);
        if total > TOTAL_BYTES && !out.is_empty() {
            break;
        }
        out.push(slim);
    }
    out.reverse();
    out
}

/// The event itself if small; else a copy whose detail keeps only its small top-level
/// fields and whose message is cut.
pub fn slim(mut event: Value) -> Value {
    let Some(obj) = event.as_object_mut() else {
        return event;
    };
    let mut truncated = false;
    if let Some(Value::String(m)) = obj.get_mut("message") {
        if m.len() > MESSAGE_BYTES {
            *m = text::cut(m, MESSAGE_BYTES);
            truncated = true;
        }
    }
    if let Some(detail) = obj.get("detail") {
        let size = json_len(detail);
        if size > DETAIL_BYTES {
            let kept = small_fields(detail);
            obj.insert("detail".into(), Value::Object(kept));
            obj.insert("detailBytes".into(), size.into());
            truncated = true;
        }
    }
    if truncated {
        obj.insert("truncated".into(), Value::Bool(true));
    }
    event
}

fn small_fields(detail: &Value) -> Map<String, Value> {
    let mut kept = Map::new();
    let Some(fields) = detail.as_object() else {
        return kept;
    };
    let mut budget = DETAIL_BYTES;
    for (k, v) in fields {
        let size = k.len() + json_len(v);
        if size <= FIELD_BYTES && size <= budget {
            budget -= size;
            kept.insert(k.clone(), v.clone());
        }
    }
    kept
}

/// Serialized length without building the text.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_events_pass_unchanged() {
        let e = json!({"seq": 1, "message": "m", "detail": {"sessionId": "s"}});
        assert_eq!(slim(e.clone()), e);
    }

    #[test]
    fn a_large_detail_keeps_its_ids_and_says_it_was_cut() {
        let e = json!({"seq": 2, "message": "x".repeat(5000),
                       "detail": {"sessionId": "s1", "turnId": "t1", "pad": "y".repeat(100_000)}});
        let s = slim(e);
        assert_eq!(
            s["detail"],
            json!({"sessionId": "s1", "turnId": "t1"}),
            "{s}"
        );
        assert_eq!(s["truncated"], true);
        assert!(s["detailBytes"].as_u64().unwrap() > 100_000, "{s}");
        assert!(
            s["message"].as_str().unwrap().len() <= MESSAGE_BYTES + 3,
            "{s}"
        );
    }

    #[test]
    fn the_list_is_bounded_and_keeps_the_newest() {
        let events: Vec<Value> = (1..=2000)
            .map(|i| json!({"seq": i, "message": "m".repeat(1000), "detail": {"pad": "z".repeat(1500)}}))
            .collect();
        let out = bounded(events);
        let size: usize = out.iter().map(json_len).sum();
        assert!(size <= TOTAL_BYTES, "{size} bytes");
        assert_eq!(out.last().unwrap()["seq"], 2000);
        let seqs: Vec<u64> = out.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
}
