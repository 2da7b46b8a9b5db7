//! Tasks, runs and task logs as stored under the state dir, and the query rules of their
//! read routes. Files:
//! - `tasks.json`: `{"tasks": [task, ...]}`
//! - `runs.json`: `{"runs": [run, ...]}`
//! - `task-logs/<task_id>.jsonl`: one log line per line.
//!
//! A record that does not match its shape is skipped with a warning, so one bad entry
//! never hides the rest.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use baa::common::api_error::ApiError;
use baa::common::jsonl::JsonlLog;
use baa::common::store::JsonStore;

pub const TASKS_FILE: &str = "tasks.json";
pub const RUNS_FILE: &str = "runs.json";
pub const LOGS_DIR: &str = "task-logs";

pub const TASK_STATUSES: &[&str] = &["queued", "running", "succeeded", "failed", "canceled"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    pub task_id: String,
    #[serde(default)]
    pub title: String,
    pub status: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub input: Value,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub current_run_id: Option<String>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub run_id: String,
    pub task_id: String,
    pub status: String,
    #[serde(default = "one")]
    pub attempt: u32,
    #[serde(default = "conductor_worker")]
    pub worker: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

fn one() -> u32 {
    1
}

fn conductor_worker() -> String {
    "conductor".into()
}

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

fn load_list<T: DeserializeOwned>(
    store: &JsonStore,
    file: &str,
    key: &str,
) -> Result<Vec<T>, ApiError> {
    let doc: Option<Value> = store
        .read_or_warn(file)
        .map_err(|e| ApiError::internal(format!("Cannot read {file}: {e}")))?;
    let items = match doc {
        Some(Value::Object(mut m)) => match m.remove(key) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    Ok(items
        .into_iter()
        .filter_map(|v| match serde_json::from_value::<T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("{file}: skipping a malformed {key} entry: {e}");
                None
            }
        })
        .collect())
}

pub fn list_tasks(
    store: &JsonStore,
    status: Option<&str>,
    limit: usize,
) -> Result<Vec<Task>, ApiError> {
    if let Some(s) = status {
        if !TASK_STATUSES.contains(&s) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "status must be one of {}, got {s:?}.",
                    TASK_STATUSES.join(", ")
                ),
            ));
        }
    }
    let mut tasks: Vec<Task> = load_list(store, TASKS_FILE, "tasks")?;
    tasks.retain(|t| status.is_none_or(|s| t.status == s));
    // Newest first; RFC 3339 UTC strings sort chronologically.
    tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    tasks.truncate(limit);
    Ok(tasks)
}

pub fn find_task(store: &JsonStore, task_id: &str) -> Result<Task, ApiError> {
    load_list::<Task>(store, TASKS_FILE, "tasks")?
        .into_iter()
        .find(|t| t.task_id == task_id)
        .ok_or_else(|| ApiError::not_found(format!("Unknown task \"{task_id}\".")))
}

pub fn list_runs(
    store: &JsonStore,
    task_id: Option<&str>,
    limit: usize,
) -> Result<Vec<Run>, ApiError> {
    let mut runs: Vec<Run> = load_list(store, RUNS_FILE, "runs")?;
    runs.retain(|r| task_id.is_none_or(|t| r.task_id == t));
    runs.sort_by(|a, b| b.started_at.cmp(&a.started_at));
    runs.truncate(limit);
    Ok(runs)
}

pub fn find_run(store: &JsonStore, run_id: &str) -> Result<Run, ApiError> {
    load_list::<Run>(store, RUNS_FILE, "runs")?
        .into_iter()
        .find(|r| r.run_id == run_id)
        .ok_or_else(|| ApiError::not_found(format!("Unknown run \"{run_id}\".")))
}

/// The last `limit` log lines of a task (oldest first), optionally of one run.
pub fn task_logs(
    state_dir: &Path,
    task_id: &str,
    run_id: Option<&str>,
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
        .collect();
    lines.sort_by_key(|l| l.seq);
    let skip = lines.len().saturating_sub(limit);
    Ok(lines.split_off(skip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 20, 100).unwrap(), 20);
        assert_eq!(parse_limit(Some("5".into()), 20, 100).unwrap(), 5);
        for bad in ["0", "101", "-1", "x", ""] {
            assert_eq!(
                parse_limit(Some(bad.into()), 20, 100).unwrap_err().code,
                "invalid_query",
                "{bad}"
            );
        }
    }

    #[test]
    fn lists_filter_sort_and_skip_bad_entries() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("rec"));
        let store = JsonStore::open(&dir).unwrap();
        store
            .write(
                TASKS_FILE,
                &json!({"tasks": [
                    {"task_id": "t1", "title": "a", "status": "queued", "created_at": "2026-01-01T00:00:00.000Z"},
                    {"task_id": "t2", "title": "b", "status": "running", "created_at": "2026-01-02T00:00:00.000Z"},
                    {"bogus": true}
                ]}),
            )
            .unwrap();
        let all = list_tasks(&store, None, 20).unwrap();
        assert_eq!(
            all.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
            ["t2", "t1"]
        );
        assert_eq!(list_tasks(&store, Some("queued"), 20).unwrap().len(), 1);
        assert_eq!(
            list_tasks(&store, Some("bogus"), 20).unwrap_err().status,
            400
        );
        assert_eq!(find_task(&store, "nope").unwrap_err().status, 404);
        let _ = std::fs::remove_dir_all(dir);
    }
}
