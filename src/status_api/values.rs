//! Reading the upstreams' loosely shaped JSON: the first present of several field paths,
//! as a value or as display text, and long text clipped for the page.

use serde_json::{Map, Value};

use crate::common::text;

/// Long upstream strings (agent messages, errors) are cut so one session cannot flood the page.
const MAX_TEXT_CHARS: usize = 300;

/// The first of the dotted `paths` that is present and not null.
pub fn first(v: &Value, paths: &[&str]) -> Option<Value> {
    paths.iter().find_map(|p| {
        let mut cur = v;
        for key in p.split('.') {
            cur = cur
                .as_object()
                .and_then(|m: &Map<String, Value>| m.get(key))?;
        }
        (!cur.is_null()).then(|| cur.clone())
    })
}

/// Like `first`, as display text: strings as is, numbers and booleans printed, objects
/// and arrays as compact JSON; empty strings count as absent.
pub fn text_at(v: &Value, paths: &[&str]) -> Option<String> {
    first(v, paths).and_then(|x| {
        let s = match x {
            Value::String(s) => s,
            other => other.to_string(),
        };
        (!s.trim().is_empty()).then_some(s)
    })
}

pub fn clip(s: &str) -> String {
    text::cut_chars(s, MAX_TEXT_CHARS)
}

pub fn clip_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(clip(s)),
        other => Value::String(clip(&other.to_string())),
    }
}
