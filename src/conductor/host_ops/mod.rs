//! Host operations (`/v1/exec`, `/v1/files/read`, `/v1/files/write`): bearer-token guarded,
//! answered as a structured union `{ok, operation, input, result, error?}` inside the
//! normal HTTP envelope, so a failed command is data, not a transport error.

pub mod audit;
pub mod bounded_read;
pub mod dir_fd;
pub mod exec;
pub mod file_slots;
pub mod files;
pub mod group;
pub mod protect;
pub mod session;
pub mod slots;

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::http::Request;
use baa::common::secret::{constant_time_eq, is_placeholder_token};

pub const REALM: &str = "Bearer realm=\"baa-conductor-host-ops\"";

/// What a bearer-token check guards, in the words of its refusals.
pub struct Guarded {
    /// "Host operations", "Merging or discarding a task's branch".
    pub what: &'static str,
    /// The code when no usable token is configured.
    pub disabled_code: &'static str,
}

pub const HOST_OPS: Guarded = Guarded {
    what: "Host operations",
    disabled_code: "host_ops_disabled",
};

/// Checks `Authorization: Bearer <token>`. No token configured (or only the placeholder)
/// → 503: host ops never run open.
pub fn authorize(req: &Request, token: Option<&str>) -> Result<(), ApiError> {
    authorize_for(req, token, &HOST_OPS)
}

/// [`authorize`] for another guarded route, its refusals naming what it guards.
pub fn authorize_for(req: &Request, token: Option<&str>, g: &Guarded) -> Result<(), ApiError> {
    let token = match token {
        None => {
            return Err(ApiError::new(
                503,
                g.disabled_code,
                format!(
                    "{} are disabled: no token is configured (set BAA_SHARED_TOKEN_FILE, or BAA_SHARED_TOKEN).",
                    g.what
                ),
            ))
        }
        Some(t) if t.is_empty() || is_placeholder_token(t) => {
            return Err(ApiError::new(
                503,
                g.disabled_code,
                format!(
                    "{} are disabled: BAA_SHARED_TOKEN is still a placeholder value.",
                    g.what
                ),
            ))
        }
        Some(t) => t,
    };
    let given = req
        .header("authorization")
        // The auth scheme is case-insensitive (RFC 9110 §11.1): `BEARER x` is fine too.
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    if !given.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Ok(());
    }
    Err(ApiError::new(
        401,
        "unauthorized",
        format!(
            "{} require Authorization: Bearer <BAA_SHARED_TOKEN>.",
            g.what
        ),
    )
    .with_header("WWW-Authenticate", REALM))
}

/// An operation-level error inside the union.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub code: &'static str,
    pub message: String,
}

impl OpError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("INVALID_INPUT", message)
    }
}

/// Builds the union value.
pub fn union(operation: &str, input: Value, result: Value, error: Option<OpError>) -> Value {
    let mut m = Map::new();
    m.insert("ok".into(), Value::Bool(error.is_none()));
    m.insert("operation".into(), Value::String(operation.into()));
    m.insert("input".into(), input);
    m.insert("result".into(), result);
    if let Some(e) = error {
        m.insert(
            "error".into(),
            json!({ "code": e.code, "message": e.message }),
        );
    }
    Value::Object(m)
}

/// Reads an optional string field, accepting alternative spellings.
pub fn opt_str(body: &Map<String, Value>, names: &[&str]) -> Result<Option<String>, OpError> {
    for name in names {
        match body.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(_) => return Err(OpError::invalid(format!("{name} must be a string."))),
        }
    }
    Ok(None)
}

pub fn opt_bool(body: &Map<String, Value>, names: &[&str], default: bool) -> Result<bool, OpError> {
    for name in names {
        match body.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::Bool(b)) => return Ok(*b),
            Some(_) => return Err(OpError::invalid(format!("{name} must be a boolean."))),
        }
    }
    Ok(default)
}

/// Resolves `path` against `cwd` (which must be absolute when given); a relative path with
/// no cwd resolves against the daemon's working directory.
pub fn resolve_path(path: &str, cwd: Option<&str>) -> Result<std::path::PathBuf, OpError> {
    if path.is_empty() {
        return Err(OpError::invalid("path must not be empty."));
    }
    if path.contains('\0') {
        return Err(OpError::invalid("path must not contain NUL bytes."));
    }
    let p = std::path::Path::new(path);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let base = match cwd {
        Some(c) if std::path::Path::new(c).is_absolute() => std::path::PathBuf::from(c),
        Some(_) => return Err(OpError::invalid("cwd must be an absolute path.")),
        None => std::env::current_dir()
            .map_err(|e| OpError::new("CWD_NOT_FOUND", format!("No working directory: {e}.")))?,
    };
    Ok(base.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_rules() {
        let ok = Request::fake(
            "POST",
            "/v1/exec",
            &[("Authorization", "Bearer tok-123456789")],
            b"",
        );
        let wrong = Request::fake(
            "POST",
            "/v1/exec",
            &[("Authorization", "Bearer tok-12345678X")],
            b"",
        );
        let none = Request::fake("POST", "/v1/exec", &[], b"");
        assert!(authorize(&ok, Some("tok-123456789")).is_ok());
        let e = authorize(&wrong, Some("tok-123456789")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (401, "unauthorized"));
        assert_eq!(
            e.headers[0],
            ("WWW-Authenticate".to_string(), REALM.to_string())
        );
        assert_eq!(
            authorize(&none, Some("tok-123456789")).unwrap_err().status,
            401
        );
        assert_eq!(authorize(&ok, None).unwrap_err().status, 503);
        let placeholder = Request::fake(
            "POST",
            "/v1/exec",
            &[("Authorization", "Bearer replace-me")],
            b"",
        );
        assert_eq!(
            authorize(&placeholder, Some("replace-me"))
                .unwrap_err()
                .status,
            503
        );
    }

    #[test]
    fn paths_resolve_against_cwd() {
        assert_eq!(
            resolve_path("a/b", Some("/x")).unwrap(),
            std::path::PathBuf::from("/x/a/b")
        );
        assert_eq!(
            resolve_path("/abs", Some("/x")).unwrap(),
            std::path::PathBuf::from("/abs")
        );
        assert_eq!(
            resolve_path("a", Some("rel")).unwrap_err().code,
            "INVALID_INPUT"
        );
        assert_eq!(resolve_path("", None).unwrap_err().code, "INVALID_INPUT");
    }
}
