//! Reading a string out of the child's JSON by a path of keys.

use serde_json::Value;

/// The string at `path` in `v`, if every key is there and the value is a string.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}
