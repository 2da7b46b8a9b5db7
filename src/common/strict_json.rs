//! JSON from outside callers, read strictly: a key given twice in one object and nesting
//! deeper than [`MAX_DEPTH`] are refused, with the JSON path where it happened.
//!
//! serde_json's own `Value` keeps the last of two equal keys without a word (a body with
//! two `title`s or two `idempotency_key`s would act on one the caller may not have meant),
//! and nests up to its recursion limit of 128. A body that deep is never a real request:
//! forwarded to the app-server it held a codexd thread until the turn timed out. The check
//! is part of building the `Value`, so it costs one map lookup per key, not a second pass.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The deepest nesting of objects and arrays accepted (the body's own object is level 1).
/// A Codex `config` is a TOML table a few levels deep, and an `outputSchema` is a JSON
/// Schema where each nested property costs two levels; 64 leaves real schemas room
/// while a body that deep is refused at once.
pub const MAX_DEPTH: usize = 64;

/// Longest JSON path quoted back in an error; keys are the caller's and may be long.
const PATH_MAX: usize = 200;

/// Why a text was refused.
#[derive(Debug)]
pub enum StrictJsonError {
    /// Not JSON at all (serde_json's message has the line and column).
    Syntax(serde_json::Error),
    /// An object names `key` twice; `path` is where, e.g. `$.config.model`.
    DuplicateKey { key: String, path: String },
    /// An object or array at `path` is nested deeper than `limit`.
    TooDeep { limit: usize, path: String },
}

impl fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictJsonError::Syntax(e) => write!(f, "{e}"),
            StrictJsonError::DuplicateKey { key, path } => {
                write!(f, "duplicate key \"{key}\" at {path}")
            }
            StrictJsonError::TooDeep { limit, path } => {
                write!(f, "nested deeper than {limit} levels at {path}")
            }
        }
    }
}

impl std::error::Error for StrictJsonError {}

/// Parses `bytes` as one JSON value, refusing duplicate keys and deep nesting.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    from_slice_with_depth(bytes, MAX_DEPTH)
}

/// [`from_slice`] with another depth limit.
pub fn from_slice_with_depth(bytes: &[u8], limit: usize) -> Result<Value, StrictJsonError> {
    let cx = Context {
        limit,
        refusal: RefCell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node { cx: &cx, depth: 0 }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match (parsed, cx.refusal.into_inner()) {
        (_, Some(refusal)) => Err(refusal.into_error()),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(StrictJsonError::Syntax(e)),
    }
}

/// What the parse found wrong, and the path to it, built while the error unwinds (so a
/// good body pays nothing for paths).
struct Refusal {
    kind: RefusalKind,
    /// Path segments innermost first.
    segments: Vec<Segment>,
}

enum RefusalKind {
    Duplicate(String),
    TooDeep(usize),
}

enum Segment {
    Key(String),
    Index(usize),
}

impl Refusal {
    fn into_error(self) -> StrictJsonError {
        let mut path = String::from("$");
        for seg in self.segments.iter().rev() {
            if path.len() > PATH_MAX {
                path.push('…');
                break;
            }
            match seg {
                Segment::Key(k) if is_plain(k) => {
                    path.push('.');
                    path.push_str(crate::common::text::prefix(k, PATH_MAX));
                }
                Segment::Key(k) => {
                    let quoted = Value::String(crate::common::text::prefix(k, PATH_MAX).into());
                    path.push('[');
                    path.push_str(&quoted.to_string());
                    path.push(']');
                }
                Segment::Index(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
            }
        }
        match self.kind {
            RefusalKind::Duplicate(key) => StrictJsonError::DuplicateKey {
                key: crate::common::text::prefix(&key, PATH_MAX).to_string(),
                path,
            },
            RefusalKind::TooDeep(limit) => StrictJsonError::TooDeep { limit, path },
        }
    }
}

/// A key that reads well after a dot in a path.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

struct Context {
    limit: usize,
    refusal: RefCell<Option<Refusal>>,
}

impl Context {
    fn refuse<E: de::Error>(&self, kind: RefusalKind) -> E {
        *self.refusal.borrow_mut() = Some(Refusal {
            kind,
            segments: Vec::new(),
        });
        E::custom("refused")
    }

    /// Adds one level of path to a refusal on its way out (a syntax error has none).
    fn unwind(&self, segment: impl FnOnce() -> Segment) {
        if let Some(r) = self.refusal.borrow_mut().as_mut() {
            r.segments.push(segment());
        }
    }
}

/// One value at `depth` containers down.
#[derive(Clone, Copy)]
struct Node<'a> {
    cx: &'a Context,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Node<'_> {
    /// The node one container down, or the refusal when that is too deep.
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.cx.limit {
            return Err(self.cx.refuse(RefusalKind::TooDeep(self.cx.limit)));
        }
        Ok(Node {
            cx: self.cx,
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            match seq.next_element_seed(inner) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => return Ok(Value::Array(out)),
                Err(e) => {
                    let index = out.len();
                    self.cx.unwind(|| Segment::Index(index));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match map.next_value_seed(inner) {
                Ok(v) => v,
                Err(e) => {
                    self.cx.unwind(|| Segment::Key(key));
                    return Err(e);
                }
            };
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    let key = slot.key().clone();
                    let err = self.cx.refuse(RefusalKind::Duplicate(key.clone()));
                    self.cx.unwind(|| Segment::Key(key));
                    return Err(err);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(text: &str) -> String {
        from_slice(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn good_json_parses_as_serde_json_does() {
        let text = r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": "\u00e9\n", "d": 18446744073709551615}"#;
        let strict = from_slice(text.as_bytes()).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, plain);
        assert_eq!(from_slice(b" 7 ").unwrap(), json!(7));
    }

    #[test]
    fn a_duplicate_key_is_refused_with_its_path() {
        assert_eq!(
            refusal(r#"{"title": "a", "title": "b"}"#),
            "duplicate key \"title\" at $.title"
        );
        assert_eq!(
            refusal(r#"{"config": {"x": [0, {"k y": 1, "k y": 2}]}}"#),
            "duplicate key \"k y\" at $.config.x[1][\"k y\"]"
        );
        // Equal keys in different objects are fine.
        assert!(from_slice(br#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#).is_ok());
    }

    #[test]
    fn nesting_past_the_limit_is_refused_with_its_path() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(from_slice(deep(MAX_DEPTH).as_bytes()).is_ok());
        let err = from_slice(deep(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        let StrictJsonError::TooDeep { limit, path } = err else {
            panic!("{err:?}");
        };
        assert_eq!(limit, MAX_DEPTH);
        assert_eq!(path, format!("${}", "[0]".repeat(MAX_DEPTH)));
        // Far past serde_json's own recursion limit: still our refusal, not a syntax error.
        let err = from_slice_with_depth(r#"{"c": {"c": {"c": 1}}}"#.as_bytes(), 2).unwrap_err();
        assert_eq!(err.to_string(), "nested deeper than 2 levels at $.c.c");
        let err = from_slice(deep(100_000).as_bytes()).unwrap_err();
        assert!(matches!(err, StrictJsonError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for bad in ["{nope", "[1,]", "{} {}", "", "{\"a\": 1e999}"] {
            let err = from_slice(bad.as_bytes()).unwrap_err();
            assert!(matches!(err, StrictJsonError::Syntax(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn long_keys_are_cut_in_the_path() {
        let key = "k".repeat(10_000);
        let text = format!(r#"{{"{key}": 1, "{key}": 2}}"#);
        let msg = refusal(&text);
        assert!(msg.len() < 3 * PATH_MAX, "{} bytes", msg.len());
    }
}
