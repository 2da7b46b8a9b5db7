//! The record of every host operation: one `event=host.<op>` line in the log and one line
//! in `<logs>/conductor/audit.jsonl` — who (the caller's address), what (op, cwd or path,
//! the command cut to 1 KiB), when, how it ended (exit code, duration, bytes, ok, error
//! code). Both are built from the operation's answer (the `{ok, operation, input, result,
//! error}` union), so they say exactly what the caller was told.
//!
//! Never recorded: the token (it is only in a header), exec `env` values, file contents,
//! command output. The audit file is created 0600 like the other logs that name paths, and
//! rotates by size to `audit.jsonl.1` … `.3`, so it stays bounded on a node that runs
//! commands all day. A failing disk costs the audit line (with a warning), never the
//! operation.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use baa::common::jsonl::JsonlLog;
use baa::common::logfile;
use baa::common::logging;
use baa::common::sync::lock;
use baa::common::text::cut;
use baa::common::time::now_rfc3339;

/// Past this size `audit.jsonl` becomes `audit.jsonl.1`.
pub const AUDIT_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Rotated files kept (`.1` newest).
pub const AUDIT_KEEP: u32 = 3;
/// The longest command text kept in an audit line.
pub const COMMAND_CAP: usize = 1024;

pub struct Audit {
    path: PathBuf,
    max_bytes: u64,
    /// Opened on the first host operation; `None` again after a failed write, so the next
    /// operation tries afresh.
    log: Mutex<Option<JsonlLog>>,
}

impl Audit {
    /// The audit of a conductor whose logs dir is `logs_dir`.
    pub fn new(logs_dir: &Path) -> Audit {
        Audit::at(
            logs_dir.join("conductor").join("audit.jsonl"),
            AUDIT_MAX_BYTES,
        )
    }

    pub fn at(path: PathBuf, max_bytes: u64) -> Audit {
        Audit {
            path,
            max_bytes,
            log: Mutex::new(None),
        }
    }

    /// Logs the operation's lifecycle line and appends its audit line.
    pub fn record(&self, who: SocketAddr, started: Instant, answer: &Value) {
        let entry = entry(
            &who.to_string(),
            started.elapsed().as_millis() as u64,
            answer,
        );
        log_line(&entry);
        if let Err(e) = self.append(&entry) {
            log::warn!("audit: cannot append to {}: {e}", self.path.display());
        }
    }

    fn append(&self, entry: &Value) -> std::io::Result<()> {
        let mut slot = lock(&self.log);
        if slot.is_none() {
            *slot = Some(JsonlLog::open(&self.path, false)?.0);
        }
        let Some(log) = slot.as_mut() else {
            return Ok(());
        };
        if let Err(e) = log.append(entry) {
            *slot = None;
            return Err(e);
        }
        if fs::metadata(&self.path).map_or(0, |m| m.len()) >= self.max_bytes {
            // Closed first: the next append opens a fresh file at the same path.
            *slot = None;
            logfile::rotate_files(&self.path, AUDIT_KEEP)?;
        }
        Ok(())
    }
}

/// The audit line of one operation answer: `{at, op, who, cwd, path, command, exit_code,
/// duration_ms, bytes, ok, error, message}` (absent facts are `null`).
pub fn entry(who: &str, duration_ms: u64, answer: &Value) -> Value {
    let op = answer["operation"].as_str().unwrap_or("unknown");
    let input = &answer["input"];
    let result = &answer["result"];
    let command = input["command"].as_str().map(|c| cut(c, COMMAND_CAP));
    let bytes = match op {
        "exec" => {
            let len = |k: &str| result[k].as_str().map_or(0, str::len);
            (len("stdout") + len("stderr")) as u64
        }
        "files/read" => result["size"].as_u64().unwrap_or(0),
        "files/write" => result["bytesWritten"].as_u64().unwrap_or(0),
        _ => 0,
    };
    // The path the operation resolved, else the one it was given.
    let path = result["path"].as_str().or(input["path"].as_str());
    json!({
        "at": now_rfc3339(),
        "op": op,
        "who": who,
        "cwd": input["cwd"].as_str(),
        "path": path,
        "command": command,
        "exit_code": result["exitCode"].as_i64(),
        "duration_ms": duration_ms,
        "bytes": bytes,
        "ok": answer["ok"].as_bool().unwrap_or(false),
        "error": answer["error"]["code"].as_str(),
        "message": answer["error"]["message"].as_str(),
    })
}

/// `event=host.exec who=… cwd=… exit_code=… duration_ms=… bytes=… ok=… error=…`; the
/// command text stays in the audit file (it may name private things), the line has facts.
fn log_line(e: &Value) {
    let text = |k: &str| e[k].as_str().unwrap_or("-").to_string();
    let num = |k: &str| e[k].as_i64().map_or("-".to_string(), |n| n.to_string());
    let name = format!("host.{}", text("op").replace('/', "."));
    let mut fields: Vec<(&str, String)> = vec![("who", text("who"))];
    if e["op"] == "exec" {
        fields.push(("cwd", text("cwd")));
        fields.push(("exit_code", num("exit_code")));
    } else {
        fields.push(("path", text("path")));
    }
    fields.push(("duration_ms", num("duration_ms")));
    fields.push(("bytes", num("bytes")));
    fields.push(("ok", e["ok"].as_bool().unwrap_or(false).to_string()));
    fields.push(("error", text("error")));
    let refs: Vec<(&str, &dyn std::fmt::Display)> = fields
        .iter()
        .map(|(k, v)| (*k, v as &dyn std::fmt::Display))
        .collect();
    logging::event(&name, &refs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use baa::common::ids::new_id;

    #[test]
    fn exec_entry_has_exit_code_and_output_bytes_but_no_output() {
        let answer = json!({
            "ok": false, "operation": "exec",
            "input": {"command": "printf out; exit 3", "cwd": "/tmp", "env": {"K": "<redacted>"}},
            "result": {"stdout": "out", "stderr": "e", "exitCode": 3},
            "error": {"code": "EXEC_FAILED", "message": "Command exited with status 3."},
        });
        let e = entry("127.0.0.1:5000", 12, &answer);
        assert_eq!(
            (
                &e["op"],
                &e["who"],
                &e["cwd"],
                &e["command"],
                &e["exit_code"],
                &e["duration_ms"],
                &e["bytes"],
                &e["ok"],
                &e["error"]
            ),
            (
                &json!("exec"),
                &json!("127.0.0.1:5000"),
                &json!("/tmp"),
                &json!("printf out; exit 3"),
                &json!(3),
                &json!(12),
                &json!(4),
                &json!(false),
                &json!("EXEC_FAILED")
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("\"out\""), "{e}");
    }

    #[test]
    fn read_entry_has_the_resolved_path_and_size_never_the_content() {
        let answer = json!({
            "ok": true, "operation": "files/read",
            "input": {"path": "a.txt", "cwd": "/w"},
            "result": {"path": "/w/a.txt", "content": "secret words", "size": 12},
        });
        let e = entry("127.0.0.1:1", 1, &answer);
        assert_eq!(
            (&e["path"], &e["bytes"], &e["ok"], &e["error"]),
            (&json!("/w/a.txt"), &json!(12), &json!(true), &Value::Null),
            "{e}"
        );
        assert!(!e.to_string().contains("secret words"), "{e}");
    }

    #[test]
    fn long_commands_are_cut_to_a_kib_at_a_char_boundary() {
        let long = "é".repeat(1000);
        let c = cut(&long, COMMAND_CAP);
        assert_eq!((c.len(), c.ends_with('…')), (1024 + '…'.len_utf8(), true));
    }

    #[test]
    fn audit_file_rotates_past_its_size() {
        let dir = std::env::temp_dir().join(new_id("audit"));
        let path = dir.join("conductor").join("audit.jsonl");
        let audit = Audit::at(path.clone(), 600);
        let answer = json!({"ok": true, "operation": "exec", "input": {"command": "true"},
            "result": {"stdout": "", "stderr": "", "exitCode": 0}});
        for _ in 0..5 {
            audit.append(&entry("127.0.0.1:1", 0, &answer)).unwrap();
        }
        let lines = |p: &Path| JsonlLog::read_all(p).unwrap().len();
        let rotated = dir.join("conductor").join("audit.jsonl.1");
        assert_eq!(
            (lines(&path) + lines(&rotated), rotated.exists()),
            (5, true)
        );
        let _ = fs::remove_dir_all(dir);
    }
}
