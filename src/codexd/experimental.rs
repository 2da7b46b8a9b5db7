//! The app-server's experimental API. codexd initializes the child with
//! `experimentalApi: true` only under `BAA_CODEXD_EXPERIMENTAL_API=1`; without it the
//! child rejects every experimental field with a JSON-RPC error. codexd says so itself, up
//! front, with a 400 that names the fields and how to enable them, instead of passing the
//! child's rejection on (or, worse, dropping the field without a word).

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::codex_fields::experimental_in;

use crate::config::EXPERIMENTAL_API;

/// What the app-server says when a request uses an experimental field without the
/// capability: `turn/start.collaborationMode requires experimentalApi capability`.
const CHILD_REJECTION: &str = "requires experimentalApi capability";

/// Err(400 `experimental_api_disabled`) when `body` (already whitelisted) carries any of
/// the experimental fields in `list` and the experimental API is off.
pub fn check(enabled: bool, body: &Map<String, Value>, list: &[&str]) -> Result<(), ApiError> {
    let fields = experimental_in(body, list);
    if enabled || fields.is_empty() {
        return Ok(());
    }
    Err(disabled(&fields))
}

/// True for the child's own rejection of an experimental field (a field codexd does not
/// know to be experimental, or a nested one).
pub fn is_child_rejection(message: &str) -> bool {
    message.contains(CHILD_REJECTION)
}

/// The 400 for experimental `fields` while the experimental API is off.
pub fn disabled(fields: &[String]) -> ApiError {
    let names = fields.join(", ");
    let env = EXPERIMENTAL_API.env.unwrap_or_default();
    let (what, verb) = if fields.len() == 1 {
        ("an experimental app-server field", "it")
    } else {
        ("experimental app-server fields", "them")
    };
    ApiError::bad_request(
        "experimental_api_disabled",
        format!(
            "{names}: {what}, and codexd runs the app-server without its experimental API. Start codexd with {env}=1 (or --experimental-api) to use {verb}."
        ),
    )
    .with_details(json!({
        "fields": fields,
        "enableWith": {"env": format!("{env}=1"), "flag": "--experimental-api"},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use baa::common::codex_fields::TURN_EXPERIMENTAL;

    #[test]
    fn refuses_experimental_fields_only_when_off() {
        let body = json!({"collaborationMode": {"mode": "plan"}, "input": "x"});
        let b = body.as_object().unwrap();
        assert!(check(true, b, TURN_EXPERIMENTAL).is_ok());
        let e = check(false, b, TURN_EXPERIMENTAL).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "experimental_api_disabled")
        );
        assert_eq!(
            e.message,
            "collaborationMode: an experimental app-server field, and codexd runs the app-server without its experimental API. Start codexd with BAA_CODEXD_EXPERIMENTAL_API=1 (or --experimental-api) to use it."
        );
        assert_eq!(e.details.unwrap()["fields"], json!(["collaborationMode"]));
        let plain = json!({"input": "x", "effort": "low"});
        assert!(check(false, plain.as_object().unwrap(), TURN_EXPERIMENTAL).is_ok());
        assert!(is_child_rejection(
            "turn/start.collaborationMode requires experimentalApi capability"
        ));
    }
}
