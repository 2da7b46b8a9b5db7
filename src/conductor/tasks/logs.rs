//! Task logs: `task-logs/<task_id>.jsonl`, one line per meaningful event of a task (run
//! start, step start and finish, each command and file change, approvals, errors, the final
//! message), never one per delta. Each line is `{seq, task_id, run_id, level, message,
//! created_at}` plus an optional `detail` object; `seq` goes up by one per task.
//!
//! Writers keep a handle open per task that logged recently (a small bounded set, so
//! thousands of tasks never hold thousands of descriptors), opened once with the torn-tail
//! repair of `common::jsonl`; the next `seq` is read from the file's tail the first time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use baa::common::jsonl::JsonlLog;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

pub const LOGS_DIR: &str = "task-logs";
/// Open handles kept; the least recently used one is closed beyond this.
const OPEN_CAP: usize = 16;
/// A final message is cut to this many bytes in the log (whole in the run).
pub const MESSAGE_CAP: usize = 4096;
/// How far from the end the last `seq` is looked for.
const TAIL_WINDOW: u64 = 64 * 1024;

struct Open {
    log: JsonlLog,
    next_seq: u64,
    used: u64,
}

/// Appends task log lines.
pub struct TaskLogs {
    dir: PathBuf,
    open: Mutex<(HashMap<String, Open>, u64)>,
}

/// A message of at most `cap` bytes, cut on a char boundary with a marker saying so.
pub fn cut(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    format!(
        "{}… [cut at {cap} of {} bytes]",
        baa::common::text::prefix(text, cap),
        text.len()
    )
}

impl TaskLogs {
    pub fn new(state_dir: &Path) -> TaskLogs {
        TaskLogs {
            dir: state_dir.join(LOGS_DIR),
            open: Mutex::new((HashMap::new(), 0)),
        }
    }

    pub fn path(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.jsonl"))
    }

    /// Appends one line; a failure is logged, never fatal to the run.
    pub fn append(
        &self,
        task_id: &str,
        run_id: Option<&str>,
        level: &str,
        message: &str,
        detail: Option<Value>,
    ) {
        if let Err(e) = self.try_append(task_id, run_id, level, message, detail) {
            log::warn!("task {task_id}: cannot write its log: {e}");
        }
    }

    fn try_append(
        &self,
        task_id: &str,
        run_id: Option<&str>,
        level: &str,
        message: &str,
        detail: Option<Value>,
    ) -> io::Result<()> {
        let mut guard = lock(&self.open);
        let (open, clock) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if !open.contains_key(task_id) {
            if open.len() >= OPEN_CAP {
                if let Some(oldest) = open
                    .iter()
                    .min_by_key(|(_, o)| o.used)
                    .map(|(k, _)| k.clone())
                {
                    open.remove(&oldest);
                }
            }
            let path = self.path(task_id);
            let (log, _) = JsonlLog::open(&path, false)?;
            let next_seq = last_seq(&path)? + 1;
            open.insert(
                task_id.to_string(),
                Open {
                    log,
                    next_seq,
                    used: now,
                },
            );
        }
        let o = open.get_mut(task_id).expect("just inserted");
        o.used = now;
        let mut line = json!({
            "seq": o.next_seq,
            "task_id": task_id,
            "run_id": run_id,
            "level": level,
            "message": cut(message, MESSAGE_CAP + 512),
            "created_at": now_rfc3339(),
        });
        if let Some(d) = detail {
            line["detail"] = d;
        }
        o.log.append(&line)?;
        o.next_seq += 1;
        Ok(())
    }

    /// Every line of the task's log (a resumed run looks for the lines a killed conductor
    /// did not write); unreadable lines are skipped, an unreadable file reads as empty.
    pub fn read(&self, task_id: &str) -> Vec<Value> {
        JsonlLog::read_all(&self.path(task_id)).unwrap_or_else(|e| {
            log::warn!("task {task_id}: cannot read its log: {e}");
            Vec::new()
        })
    }

    /// Closes the task's handle (its run ended) and, with `delete`, removes its file.
    pub fn forget(&self, task_id: &str, delete: bool) {
        lock(&self.open).0.remove(task_id);
        if delete {
            let _ = std::fs::remove_file(self.path(task_id));
        }
    }
}

/// The `seq` of the last complete line of a log, 0 when empty or missing.
fn last_seq(path: &Path) -> io::Result<u64> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let from = len.saturating_sub(TAIL_WINDOW);
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    Ok(tail
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter_map(|v| v.get("seq").and_then(Value::as_u64))
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_continues_across_writers_and_messages_are_cut() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("tlogs"));
        let logs = TaskLogs::new(&dir);
        logs.append("t1", Some("r1"), "info", "one", None);
        logs.append("t1", None, "info", "two", Some(json!({"k": 1})));
        // A new writer (a restarted conductor) goes on from the file.
        let again = TaskLogs::new(&dir);
        again.append("t1", Some("r2"), "warn", &"é".repeat(5000), None);
        let lines = JsonlLog::read_all(&logs.path("t1")).unwrap();
        let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(lines[1]["detail"]["k"], 1);
        let m = lines[2]["message"].as_str().unwrap();
        assert!(m.contains("[cut at") && m.len() < 5000, "{}", m.len());
        assert_eq!(cut("abc", 10), "abc");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn handles_are_bounded() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("tlogs"));
        let logs = TaskLogs::new(&dir);
        for i in 0..40 {
            logs.append(&format!("t{i}"), None, "info", "x", None);
        }
        assert!(lock(&logs.open).0.len() <= OPEN_CAP);
        logs.append("t0", None, "info", "again", None);
        let lines = JsonlLog::read_all(&logs.path("t0")).unwrap();
        assert_eq!(lines.last().unwrap()["seq"], 2);
        let _ = std::fs::remove_dir_all(dir);
    }
}
