//! A caller's `cwd` (session create, turn, fork, review; the threads filter) must be an
//! absolute path. The app-server would resolve a relative one against its own working
//! directory, which the caller neither chose nor sees, and the session would record the
//! relative text as if it meant something.

use std::path::Path;

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::text;

/// The body's `cwd`, when given (non-null), is an absolute path; else a 400 naming it.
pub fn check_body(body: &Map<String, Value>) -> Result<(), ApiError> {
    match body.get("cwd") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => check(s, "invalid_request"),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            "cwd must be a string: an absolute path.",
        )
        .with_details(json!({"field": "cwd"}))),
    }
}

/// The `cwd` query filter, when given, is an absolute path; else a 400 naming it.
pub fn check_query(cwd: Option<&str>) -> Result<(), ApiError> {
    cwd.map_or(Ok(()), |s| check(s, "invalid_query"))
}

fn check(cwd: &str, code: &str) -> Result<(), ApiError> {
    if Path::new(cwd).is_absolute() {
        return Ok(());
    }
    let shown = text::cut(cwd, 200);
    Err(ApiError::bad_request(
        code,
        format!("cwd must be an absolute path, got \"{shown}\"."),
    )
    .with_details(json!({"field": "cwd", "value": shown})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(cwd: Value) -> Map<String, Value> {
        json!({ "cwd": cwd }).as_object().unwrap().clone()
    }

    #[test]
    fn only_an_absolute_cwd_passes() {
        assert!(check_body(&Map::new()).is_ok());
        assert!(check_body(&body(Value::Null)).is_ok());
        assert!(check_body(&body(json!("/work/repo"))).is_ok());
        for bad in ["repo", "./repo", "../x", "~/repo", ""] {
            let e = check_body(&body(json!(bad))).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "invalid_request"),
                "{bad}"
            );
            assert!(e.message.starts_with("cwd must be an absolute path"), "{e}");
            assert_eq!(e.details.unwrap()["field"], "cwd");
        }
        let e = check_body(&body(json!(5))).unwrap_err();
        assert!(e.message.starts_with("cwd must be a string"), "{e}");
        assert!(check_query(None).is_ok());
        assert!(check_query(Some("/a")).is_ok());
        assert_eq!(check_query(Some("a")).unwrap_err().code, "invalid_query");
    }
}
