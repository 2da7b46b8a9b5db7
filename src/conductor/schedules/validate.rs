//! Schedule create and patch bodies: every field checked, and anything wrong is a 400
//! `invalid_request` whose `details.field` names it (`cron`, `timezone`, `task.prompt`).
//! Unknown fields are refused. The task body is checked by the caller's `check_task`,
//! which is exactly what `POST /v1/tasks` does.

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::cron::Cron;
use baa::common::tz::Tz;

use super::model::Overlap;

const MAX_NAME_CHARS: usize = 200;
const MAX_CRON_CHARS: usize = 200;
/// A week: a node down longer than that has more to catch up on than one fire.
pub const MAX_CATCHUP_WINDOW_S: u64 = 7 * 24 * 3600;
const FIELDS: &[&str] = &[
    "name",
    "cron",
    "timezone",
    "task",
    "overlap",
    "catchup_window_s",
    "enabled",
];

/// The check of a schedule's task body (`POST /v1/tasks`'s, given by the caller).
pub type CheckTask<'a> = dyn Fn(&Map<String, Value>) -> Result<(), ApiError> + 'a;

pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_details(json!({ "field": field }))
}

/// The fields a body sets; in a create, the missing ones take their defaults.
#[derive(Debug, Default)]
pub struct Fields {
    pub name: Option<String>,
    /// The expression as given, with its parse.
    pub cron: Option<(String, Cron)>,
    pub timezone: Option<Tz>,
    pub task: Option<Map<String, Value>>,
    pub overlap: Option<Overlap>,
    pub catchup_window_s: Option<u64>,
    pub enabled: Option<bool>,
}

/// Reads and checks every field present in `body` (none is required here).
pub fn fields(body: &Map<String, Value>, check_task: &CheckTask<'_>) -> Result<Fields, ApiError> {
    if let Some(k) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(
            k,
            format!(
                "{k} is not a schedule field (fields: {}).",
                FIELDS.join(", ")
            ),
        ));
    }
    let mut f = Fields::default();
    if let Some(v) = body.get("name") {
        let name = v
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_NAME_CHARS)
            .ok_or_else(|| bad("name", "name must be a string of 1 to 200 characters."))?;
        f.name = Some(name.to_string());
    }
    if let Some(v) = body.get("cron") {
        let expr = v
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_CRON_CHARS)
            .ok_or_else(|| {
                bad(
                    "cron",
                    "cron must be a 5-field expression (minute hour day-of-month month day-of-week), e.g. \"*/15 * * * *\".",
                )
            })?;
        let parsed = Cron::parse(expr).map_err(|e| bad("cron", format!("cron {expr:?}: {e}")))?;
        f.cron = Some((expr.to_string(), parsed));
    }
    if let Some(v) = body.get("timezone") {
        let name = v
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                bad(
                    "timezone",
                    "timezone must be an IANA name such as \"Europe/Berlin\" or \"UTC\".",
                )
            })?;
        let tz = Tz::named(name).map_err(|e| bad("timezone", format!("timezone: {e}")))?;
        f.timezone = Some(tz);
    }
    if let Some(v) = body.get("task") {
        let task = v.as_object().ok_or_else(|| {
            bad(
                "task",
                "task must be an object with the fields of POST /v1/tasks.",
            )
        })?;
        if let Some(k) = ["idempotency_key", "idempotencyKey"]
            .into_iter()
            .find(|k| task.contains_key(*k))
        {
            return Err(bad(
                &format!("task.{k}"),
                "a schedule's task takes no idempotency_key: each fire uses schedule:<id>:<fire time>.",
            ));
        }
        check_task(task).map_err(in_task)?;
        f.task = Some(task.clone());
    }
    if let Some(v) = body.get("overlap") {
        let o = v.as_str().and_then(Overlap::parse).ok_or_else(|| {
            bad(
                "overlap",
                format!("overlap must be one of {}.", Overlap::NAMES.join(", ")),
            )
        })?;
        f.overlap = Some(o);
    }
    if let Some(v) = body.get("catchup_window_s") {
        let n = v
            .as_u64()
            .filter(|n| *n <= MAX_CATCHUP_WINDOW_S)
            .ok_or_else(|| {
                bad(
                    "catchup_window_s",
                    format!(
                        "catchup_window_s must be an integer from 0 to {MAX_CATCHUP_WINDOW_S}."
                    ),
                )
            })?;
        f.catchup_window_s = Some(n);
    }
    if let Some(v) = body.get("enabled") {
        f.enabled = Some(
            v.as_bool()
                .ok_or_else(|| bad("enabled", "enabled must be true or false."))?,
        );
    }
    Ok(f)
}

/// A create body: `name`, `cron` and `task` are required.
pub fn create(body: &Map<String, Value>, check_task: &CheckTask<'_>) -> Result<Fields, ApiError> {
    let f = fields(body, check_task)?;
    if f.name.is_none() {
        return Err(bad("name", "name is required (1 to 200 characters)."));
    }
    if f.cron.is_none() {
        return Err(bad(
            "cron",
            "cron is required: 5 fields (minute hour day-of-month month day-of-week).",
        ));
    }
    if f.task.is_none() {
        return Err(bad(
            "task",
            "task is required: the body of a POST /v1/tasks ({title, prompt | steps, ...}).",
        ));
    }
    Ok(f)
}

/// A task-body error named as a schedule field: `prompt` becomes `task.prompt`.
fn in_task(mut e: ApiError) -> ApiError {
    let field = e
        .details
        .as_ref()
        .and_then(|d| d.get("field"))
        .and_then(Value::as_str)
        .map(|f| format!("task.{f}"))
        .unwrap_or_else(|| "task".into());
    e.message = format!("task: {}", e.message);
    e.details = Some(json!({ "field": field }));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &Map<String, Value>) -> Result<(), ApiError> {
        Ok(())
    }

    fn field_of(body: Value) -> String {
        let e = create(body.as_object().unwrap(), &ok).unwrap_err();
        assert_eq!(e.status, 400, "{e:?}");
        e.details.unwrap()["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn every_bad_field_is_named() {
        let task = json!({"title": "t", "prompt": "p"});
        let cases = [
            (json!({"cron": "* * * * *", "task": task}), "name"),
            (json!({"name": "n", "task": task}), "cron"),
            (
                json!({"name": "n", "cron": "61 * * * *", "task": task}),
                "cron",
            ),
            (json!({"name": "n", "cron": "* * *", "task": task}), "cron"),
            (json!({"name": "n", "cron": "* * * * *"}), "task"),
            (json!({"name": "n", "cron": "* * * * *", "task": 3}), "task"),
            (
                json!({"name": "n", "cron": "* * * * *", "task": task, "timezone": "Mars/Olympus"}),
                "timezone",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "task": task, "overlap": "queue"}),
                "overlap",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "task": task, "catchup_window_s": -1}),
                "catchup_window_s",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "task": task, "enabled": "yes"}),
                "enabled",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "task": task, "every": 5}),
                "every",
            ),
            (
                json!({"name": "n", "cron": "* * * * *", "task": {"title": "t", "prompt": "p", "idempotency_key": "k"}}),
                "task.idempotency_key",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(field_of(body.clone()), want, "{body}");
        }
    }

    #[test]
    fn a_task_error_is_named_inside_task() {
        let check = |_: &Map<String, Value>| -> Result<(), ApiError> { Err(bad("prompt", "no")) };
        let body = json!({"name": "n", "cron": "* * * * *", "task": {"title": "t"}});
        let e = create(body.as_object().unwrap(), &check).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "task.prompt");
    }

    #[test]
    fn defaults_are_left_to_the_caller() {
        let body = json!({"name": " nightly ", "cron": "0 3 * * MON-FRI", "task": {"title": "t", "prompt": "p"}});
        let f = create(body.as_object().unwrap(), &ok).unwrap();
        assert_eq!(f.name.as_deref(), Some("nightly"));
        assert!(f.overlap.is_none() && f.enabled.is_none() && f.timezone.is_none());
    }
}
