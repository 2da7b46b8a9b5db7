//! `POST /v1/tasks` bodies: every field checked, and anything wrong is a 400
//! `invalid_request` whose message and `details.field` name the field. Unknown fields are
//! refused too, so a typo (`promt`) is caught at once instead of queueing a task that
//! silently lacks what the caller meant.
//!
//! Multi-word fields take both spellings (`approval_policy` / `approvalPolicy`), as the
//! other write routes do.

use std::path::Path;

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;

use super::model::{StepSpec, TaskSpec, Workspace, IN_PLACE, WORKTREE};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
pub const MAX_STEPS: usize = 20;
pub const DEFAULT_TIMEOUT_S: u64 = 1800;
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 2;
pub const MAX_ATTEMPTS: u32 = 10;
const MAX_NAME_CHARS: usize = 200;
const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;
pub const SANDBOXES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];
pub const APPROVAL_POLICIES: &[&str] = &["untrusted", "on-failure", "on-request", "never"];
pub const WORKSPACES: &[&str] = &[WORKTREE, IN_PLACE];
const MAX_REF_CHARS: usize = 200;

/// A validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub title: String,
    pub spec: TaskSpec,
    pub idempotency_key: Option<String>,
    /// Decided after validation (`workspace::plan`); in place until then.
    pub workspace: Workspace,
}

/// The accepted fields: (canonical name, aliases).
const FIELDS: &[(&str, &[&str])] = &[
    ("title", &[]),
    ("prompt", &[]),
    ("steps", &[]),
    ("cwd", &[]),
    ("model", &[]),
    ("effort", &[]),
    ("sandbox", &[]),
    ("approval_policy", &["approvalPolicy"]),
    ("timeout_s", &["timeoutS"]),
    ("max_attempts", &["maxAttempts"]),
    ("priority", &[]),
    ("idempotency_key", &["idempotencyKey"]),
    ("workspace", &[]),
    ("base", &[]),
];

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_details(json!({ "field": field }))
}

/// The body's value for `name` (or an alias); two spellings of one field are refused.
fn get<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Value>, ApiError> {
    let aliases = FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, a)| a);
    let mut found: Option<(&str, &Value)> = None;
    for key in std::iter::once(&name).chain(aliases.iter()) {
        if let Some(v) = body.get(*key).filter(|v| !v.is_null()) {
            if let Some((first, _)) = found {
                return Err(bad(
                    name,
                    format!("{first} and {key} are the same field; send one."),
                ));
            }
            found = Some((key, v));
        }
    }
    Ok(found.map(|(_, v)| v))
}

fn string(
    body: &Map<String, Value>,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, ApiError> {
    match get(body, name)? {
        None => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Err(bad(name, format!("{name} must not be empty.")))
            } else if s.chars().count() > max_chars {
                Err(bad(
                    name,
                    format!("{name} must be at most {max_chars} characters."),
                ))
            } else {
                Ok(Some(s.to_string()))
            }
        }
        Some(_) => Err(bad(name, format!("{name} must be a string."))),
    }
}

fn one_of(
    body: &Map<String, Value>,
    name: &str,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    let v = string(body, name, MAX_NAME_CHARS)?;
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(bad(
            name,
            format!("{name} must be one of {}, got {s:?}.", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

fn integer(
    body: &Map<String, Value>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, ApiError> {
    match get(body, name)? {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(bad(
                name,
                format!(
                    "{name} must be an integer from {} to {}.",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

fn prompt(v: &Value, field: &str) -> Result<String, ApiError> {
    let Some(s) = v.as_str() else {
        return Err(bad(field, format!("{field} must be a string.")));
    };
    if s.trim().is_empty() {
        return Err(bad(field, format!("{field} must not be empty.")));
    }
    if s.len() > MAX_PROMPT_BYTES {
        return Err(bad(
            field,
            format!(
                "{field} must be at most {MAX_PROMPT_BYTES} bytes, got {}.",
                s.len()
            ),
        ));
    }
    Ok(s.to_string())
}

fn steps(v: &Value) -> Result<Vec<StepSpec>, ApiError> {
    let Some(items) = v.as_array() else {
        return Err(bad(
            "steps",
            "steps must be an array of {prompt, model?, effort?}.",
        ));
    };
    if items.is_empty() || items.len() > MAX_STEPS {
        return Err(bad(
            "steps",
            format!(
                "steps must have 1 to {MAX_STEPS} items, got {}.",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |f: &str| format!("steps[{i}].{f}");
            let Some(obj) = item.as_object() else {
                return Err(bad(
                    &format!("steps[{i}]"),
                    format!("steps[{i}] must be an object {{prompt, model?, effort?}}."),
                ));
            };
            if let Some(k) = obj
                .keys()
                .find(|k| !["prompt", "model", "effort"].contains(&k.as_str()))
            {
                return Err(bad(
                    &at(k),
                    format!("{} is not a step field (prompt, model, effort).", at(k)),
                ));
            }
            let p = obj
                .get("prompt")
                .ok_or_else(|| bad(&at("prompt"), format!("{} is required.", at("prompt"))))?;
            let opt = |f: &str| -> Result<Option<String>, ApiError> {
                match obj.get(f) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s))
                        if !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS =>
                    {
                        Ok(Some(s.trim().to_string()))
                    }
                    Some(_) => Err(bad(
                        &at(f),
                        format!(
                            "{} must be a non-empty string of at most {MAX_NAME_CHARS} characters.",
                            at(f)
                        ),
                    )),
                }
            };
            Ok(StepSpec {
                prompt: prompt(p, &at("prompt"))?,
                model: opt("model")?,
                effort: opt("effort")?,
            })
        })
        .collect()
}

/// `base`: a ref as a person would type it (`main`, `HEAD~2`, `v1.4`, a commit id). Only
/// its shape is checked here (no option-like or control characters, so it can never be
/// read as a git flag); whether it names a commit is checked against the repo.
fn base_ref(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let Some(b) = string(body, "base", MAX_REF_CHARS)? else {
        return Ok(None);
    };
    let bad_char = b
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '\\' | '*' | '?' | '[' | ':'));
    if b.starts_with('-') || bad_char.is_some() || b.contains("..") {
        return Err(bad(
            "base",
            format!("base must be a branch, tag or commit (no spaces, '..' or a leading '-'), got {b:?}."),
        ));
    }
    Ok(Some(b))
}

/// Validates a create body. `dir_exists` is the filesystem check of `cwd` (a parameter so
/// the rules are tested without touching the disk).
pub fn new_task(
    body: &Map<String, Value>,
    dir_exists: &dyn Fn(&Path) -> bool,
) -> Result<NewTask, ApiError> {
    for key in body.keys() {
        let known = FIELDS
            .iter()
            .any(|(n, aliases)| n == key || aliases.contains(&key.as_str()));
        if !known {
            let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
            return Err(bad(
                key,
                format!("{key} is not a task field (fields: {}).", names.join(", ")),
            ));
        }
    }
    let title = string(body, "title", MAX_TITLE_CHARS)?
        .ok_or_else(|| bad("title", "title is required (1 to 200 characters)."))?;
    let (single, steps) = match (get(body, "prompt")?, get(body, "steps")?) {
        (Some(p), None) => {
            let p = prompt(p, "prompt")?;
            (
                Some(p.clone()),
                vec![StepSpec {
                    prompt: p,
                    model: None,
                    effort: None,
                }],
            )
        }
        (None, Some(s)) => (None, steps(s)?),
        (Some(_), Some(_)) => {
            return Err(bad(
                "prompt",
                "Send exactly one of prompt or steps, not both.",
            ))
        }
        (None, None) => {
            return Err(bad(
                "prompt",
                "prompt (a string) or steps (1 to 20 {prompt}) is required.",
            ))
        }
    };
    let cwd = match string(body, "cwd", 4096)? {
        None => None,
        Some(c) => {
            let p = Path::new(&c);
            if !p.is_absolute() {
                return Err(bad(
                    "cwd",
                    format!("cwd must be an absolute path, got {c:?}."),
                ));
            }
            if !dir_exists(p) {
                return Err(bad(
                    "cwd",
                    format!("cwd {c:?} is not an existing directory."),
                ));
            }
            Some(c)
        }
    };
    let timeout_s = integer(body, "timeout_s", 1..=MAX_TIMEOUT_S as i64)?
        .map_or(DEFAULT_TIMEOUT_S, |n| n as u64);
    let max_attempts = integer(body, "max_attempts", 1..=i64::from(MAX_ATTEMPTS))?
        .map_or(DEFAULT_MAX_ATTEMPTS, |n| n as u32);
    Ok(NewTask {
        title,
        idempotency_key: string(body, "idempotency_key", MAX_NAME_CHARS)?,
        workspace: Workspace {
            mode: IN_PLACE.into(),
            ..Workspace::default()
        },
        spec: TaskSpec {
            prompt: single,
            steps,
            cwd,
            model: string(body, "model", MAX_NAME_CHARS)?,
            effort: string(body, "effort", MAX_NAME_CHARS)?,
            sandbox: one_of(body, "sandbox", SANDBOXES)?,
            approval_policy: one_of(body, "approval_policy", APPROVAL_POLICIES)?,
            timeout_s,
            max_attempts,
            priority: integer(body, "priority", PRIORITY_RANGE)?.unwrap_or(0),
            workspace: one_of(body, "workspace", WORKSPACES)?,
            base: base_ref(body)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<NewTask, ApiError> {
        new_task(v.as_object().unwrap(), &|p| p == Path::new("/srv/work"))
    }

    fn field_of(v: Value) -> String {
        let e = parse(v.clone()).expect_err(&v.to_string());
        assert_eq!((e.status, e.code.as_str()), (400, "invalid_request"), "{v}");
        let f = e.details.unwrap()["field"].as_str().unwrap().to_string();
        assert!(
            e.message.contains(&f) || f.starts_with("steps"),
            "{}: {f}",
            e.message
        );
        f
    }

    #[test]
    fn a_prompt_task_gets_the_defaults() {
        let t = parse(json!({"title": " Hello ", "prompt": "say hi"})).unwrap();
        assert_eq!(t.title, "Hello");
        assert_eq!(t.spec.steps.len(), 1);
        assert_eq!(t.spec.prompt.as_deref(), Some("say hi"));
        assert_eq!(
            (t.spec.timeout_s, t.spec.max_attempts, t.spec.priority),
            (1800, 2, 0)
        );
        let t = parse(
            json!({"title": "x", "steps": [{"prompt": "a"}, {"prompt": "b", "effort": "high"}],
            "cwd": "/srv/work", "approvalPolicy": "never", "sandbox": "read-only", "timeout_s": 5,
            "maxAttempts": 3, "priority": -4, "idempotency_key": "k1", "model": "gpt-5.5"}),
        )
        .unwrap();
        assert_eq!(t.spec.steps[1].effort.as_deref(), Some("high"));
        assert_eq!(t.spec.approval_policy.as_deref(), Some("never"));
        assert_eq!((t.spec.max_attempts, t.spec.priority), (3, -4));
        assert_eq!(t.idempotency_key.as_deref(), Some("k1"));
    }

    #[test]
    fn every_bad_field_is_named() {
        let long = "x".repeat(MAX_PROMPT_BYTES + 1);
        let steps21: Vec<Value> = (0..21).map(|_| json!({"prompt": "a"})).collect();
        for (body, field) in [
            (json!({"prompt": "a"}), "title"),
            (json!({"title": "", "prompt": "a"}), "title"),
            (json!({"title": "t".repeat(201), "prompt": "a"}), "title"),
            (json!({"title": 5, "prompt": "a"}), "title"),
            (json!({"title": "t"}), "prompt"),
            (
                json!({"title": "t", "prompt": "a", "steps": [{"prompt": "b"}]}),
                "prompt",
            ),
            (json!({"title": "t", "prompt": 3}), "prompt"),
            (json!({"title": "t", "prompt": "  "}), "prompt"),
            (json!({"title": "t", "prompt": long}), "prompt"),
            (json!({"title": "t", "steps": []}), "steps"),
            (json!({"title": "t", "steps": steps21}), "steps"),
            (json!({"title": "t", "steps": "a"}), "steps"),
            (
                json!({"title": "t", "steps": [{"prompt": "a"}, "b"]}),
                "steps[1]",
            ),
            (
                json!({"title": "t", "steps": [{"model": "m"}]}),
                "steps[0].prompt",
            ),
            (
                json!({"title": "t", "steps": [{"prompt": "a", "cwd": "/"}]}),
                "steps[0].cwd",
            ),
            (
                json!({"title": "t", "steps": [{"prompt": "a", "effort": 1}]}),
                "steps[0].effort",
            ),
            (
                json!({"title": "t", "prompt": "a", "cwd": "rel/dir"}),
                "cwd",
            ),
            (
                json!({"title": "t", "prompt": "a", "cwd": "/does/not/exist"}),
                "cwd",
            ),
            (
                json!({"title": "t", "prompt": "a", "sandbox": "open"}),
                "sandbox",
            ),
            (
                json!({"title": "t", "prompt": "a", "approval_policy": "sometimes"}),
                "approval_policy",
            ),
            (
                json!({"title": "t", "prompt": "a", "approval_policy": "never", "approvalPolicy": "never"}),
                "approval_policy",
            ),
            (
                json!({"title": "t", "prompt": "a", "timeout_s": 0}),
                "timeout_s",
            ),
            (
                json!({"title": "t", "prompt": "a", "timeout_s": "60"}),
                "timeout_s",
            ),
            (
                json!({"title": "t", "prompt": "a", "max_attempts": 11}),
                "max_attempts",
            ),
            (
                json!({"title": "t", "prompt": "a", "max_attempts": 1.5}),
                "max_attempts",
            ),
            (
                json!({"title": "t", "prompt": "a", "priority": "high"}),
                "priority",
            ),
            (json!({"title": "t", "prompt": "a", "model": ""}), "model"),
            (json!({"title": "t", "prompt": "a", "effort": []}), "effort"),
            (
                json!({"title": "t", "prompt": "a", "idempotency_key": 7}),
                "idempotency_key",
            ),
            (
                json!({"title": "t", "prompt": "a", "promt": "typo"}),
                "promt",
            ),
            (
                json!({"title": "t", "prompt": "a", "workspace": "copy"}),
                "workspace",
            ),
            (json!({"title": "t", "prompt": "a", "base": "-x"}), "base"),
            (json!({"title": "t", "prompt": "a", "base": "a b"}), "base"),
            (json!({"title": "t", "prompt": "a", "base": "a..b"}), "base"),
            (json!({"title": "t", "prompt": "a", "base": 1}), "base"),
        ] {
            assert_eq!(field_of(body.clone()), field, "{body}");
        }
    }
}
