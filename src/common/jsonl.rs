//! Append-only JSON-lines logs (events, audit). A crash can leave a torn last line; it is
//! cut off when the log is opened, so every line in the file parses.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub struct JsonlLog {
    path: PathBuf,
    file: File,
    /// fsync after every append (events that must survive power loss).
    sync_each: bool,
}

impl JsonlLog {
    /// Opens (creating) `path`, first truncating any unterminated or unparsable tail.
    /// Returns the log and how many bytes were cut.
    pub fn open(path: impl Into<PathBuf>, sync_each: bool) -> io::Result<(Self, u64)> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let cut = repair_tail(&path)?;
        // Events and task logs hold prompts and answers: created 0600 like the state files.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok((
            Self {
                path,
                file,
                sync_each,
            },
            cut,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a single `write_all` of `json\n`.
    pub fn append(&mut self, value: &Value) -> io::Result<()> {
        let mut line =
            serde_json::to_vec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        if self.sync_each {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Every record in the file, skipping lines that do not parse.
    pub fn read_all(path: &Path) -> io::Result<Vec<Value>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// Truncates the file after its last complete, parseable line. Returns bytes removed.
pub fn repair_tail(path: &Path) -> io::Result<u64> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Look at the tail only: a torn write affects at most the last line.
    let window = len.min(4 * 1024 * 1024);
    file.seek(SeekFrom::Start(len - window))?;
    let mut tail = Vec::with_capacity(window as usize);
    file.read_to_end(&mut tail)?;
    let mut keep = tail.len();
    loop {
        // `keep` is the end of the candidate content; find the last line in [..keep].
        let content = &tail[..keep];
        if content.is_empty() {
            break;
        }
        if content.last() != Some(&b'\n') {
            keep = content
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            if window < len && keep == 0 {
                break;
            }
            continue;
        }
        let body = &content[..content.len() - 1];
        let start = body
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let last = &body[start..];
        if last.iter().all(|b| b.is_ascii_whitespace())
            || serde_json::from_slice::<Value>(last).is_ok()
        {
            break;
        }
        if start == 0 && window < len {
            break;
        }
        keep = start;
    }
    let new_len = len - window + keep as u64;
    if new_len < len {
        file.set_len(new_len)?;
        file.sync_all()?;
        log::warn!(
            "{}: cut {} torn byte(s) from the end",
            path.display(),
            len - new_len
        );
    }
    Ok(len - new_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tmpfile(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "baa-jsonl-{tag}-{}",
            crate::common::ids::new_id("t")
        ));
        fs::create_dir_all(&d).unwrap();
        d.join("events.jsonl")
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let p = tmpfile("torn");
        fs::write(&p, b"{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3,\"mess").unwrap();
        let (mut log, cut) = JsonlLog::open(&p, false).unwrap();
        assert_eq!(cut, 14);
        log.append(&json!({"seq": 3})).unwrap();
        let all = JsonlLog::read_all(&p).unwrap();
        assert_eq!(
            all,
            vec![json!({"seq":1}), json!({"seq":2}), json!({"seq":3})]
        );
    }

    #[test]
    fn terminated_garbage_line_is_cut_too() {
        let p = tmpfile("garbage");
        fs::write(&p, b"{\"seq\":1}\n{\"seq\":\x00\n").unwrap();
        JsonlLog::open(&p, false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{\"seq\":1}\n");
    }

    #[test]
    fn clean_and_missing_files_are_untouched() {
        let p = tmpfile("clean");
        assert_eq!(repair_tail(&p).unwrap(), 0);
        fs::write(&p, b"{\"a\":1}\n").unwrap();
        assert_eq!(repair_tail(&p).unwrap(), 0);
    }
}
