//! The query rules of the task, run and task-log read routes, and reading a task's log.
//! The records themselves live in `tasks::store` (one file each) and `tasks::logs`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use baa::common::api_error::ApiError;
use baa::common::jsonl::JsonlLog;

use crate::tasks::logs::LOGS_DIR;
use crate::tasks::model::Status;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub seq: u64,
    pub task_id: String,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default = "info")]
    pub level: String,
    pub message: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

fn info() -> String {
    "info".into()
}

/// Parses the `limit` query parameter: default `default`, 1..=max, else 400.
pub fn parse_limit(raw: Option<String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_query",
                format!("limit must be an integer between 1 and {max}, got {s:?}."),
            )
            .with_details(serde_json::json!({ "parameter": "limit", "max": max }))),
        },
    }
}

/// Parses the `status` query parameter of the task list (empty: all).
pub fn parse_status(raw: Option<String>) -> Result<Option<Status>, ApiError> {
    match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Status::parse(s).map(Some).ok_or_else(|| {
            let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(
                "invalid_query",
                format!("status must be one of {}, got {s:?}.", all.join(", ")),
            )
            .with_details(serde_json::json!({ "parameter": "status" }))
        }),
    }
}

/// The last `limit` log lines of a task (oldest first), optionally of one run, and only
/// those after `since` (a seq) when given.
pub fn task_logs(
    state_dir: &Path,
    task_id: &str,
    run_id: Option<&str>,
    since: Option<u64>,
    limit: usize,
) -> Result<Vec<LogLine>, ApiError> {
    if task_id.contains('/') || task_id.contains("..") || task_id.starts_with('.') {
        return Err(ApiError::bad_request(
            "invalid_request",
            "task_id contains path characters.",
        ));
    }
    let path = state_dir.join(LOGS_DIR).join(format!("{task_id}.jsonl"));
    let raw = JsonlLog::read_all(&path)
        .map_err(|e| ApiError::internal(format!("Cannot read task logs: {e}")))?;
    let mut lines: Vec<LogLine> = raw
        .into_iter()
        .filter_map(|v| serde_json::from_value::<LogLine>(v).ok())
        .filter(|l| l.task_id == task_id && run_id.is_none_or(|r| l.run_id.as_deref() == Some(r)))
        .filter(|l| since.is_none_or(|s| l.seq > s))
        .collect();
    lines.sort_by_key(|l| l.seq);
    let skip = lines.len().saturating_sub(limit);
    Ok(lines.split_off(skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_statuses() {
        assert_eq!(parse_limit(None, 20, 100).unwrap(), 20);
        assert_eq!(parse_limit(Some("5".into()), 20, 100).unwrap(), 5);
        for bad in ["0", "101", "-1", "x", ""] {
            assert_eq!(
                parse_limit(Some(bad.into()), 20, 100).unwrap_err().code,
                "invalid_query",
                "{bad}"
            );
        }
        assert_eq!(parse_status(None).unwrap(), None);
        assert_eq!(parse_status(Some("".into())).unwrap(), None);
        assert_eq!(
            parse_status(Some("queued".into())).unwrap(),
            Some(Status::Queued)
        );
        assert_eq!(parse_status(Some("bogus".into())).unwrap_err().status, 400);
    }
}
