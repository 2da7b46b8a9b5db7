//! Per-session files, under `<state>/sessions/`:
//!
//! - `hot/<sessionId>.json`: an open session (the hot registry, `registry::Sessions`), with
//!   only a summary of its last turn. One small file per session, rewritten when that
//!   session changes, so a turn costs one small write however many sessions there are.
//! - `<sessionId>.turns.jsonl`: the records of the session's finished turns, one per line,
//!   appended as each turn ends. They hold what the app-server does not keep (token usage,
//!   the turn's diff) and back `lastTurn` after a restart. Past [`TURN_FILE_MAX_BYTES`] the
//!   file is rewritten with its last [`TURNS_KEPT`] records; older turns stay readable from
//!   the app-server's own history.
//! - `<sessionId>.json`: an archived session (finished and idle beyond the retention, or
//!   deleted), out of the hot registry but still readable by id.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use baa::common::jsonl::JsonlLog;
use baa::common::store::{write_atomic, JsonStore, StoreError};
use baa::common::sync::lock;

use crate::sessions::{Session, TurnRecord};

/// A turn file past this size is compacted to its newest records (see `compact`).
pub const TURN_FILE_MAX_BYTES: u64 = 8 * 1024 * 1024;
pub const TURNS_KEPT: usize = 20;
/// How much of a turn file's end is read first when one record is looked up (a record with
/// a full 256 KiB diff fits, with its commands and messages).
const TURN_TAIL_BYTES: u64 = 1024 * 1024;

pub struct SessionStore {
    dir: PathBuf,
    archive: JsonStore,
    hot: JsonStore,
    /// Serializes appends and compactions of the turn files.
    turns_lock: Mutex<()>,
}

/// Session ids are codexd's own (`cxs_<hex>`), but they arrive in URLs: only a plain name
/// may become a file name.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl SessionStore {
    /// Opens (creating) `<state_dir>/sessions`.
    pub fn open(state_dir: &Path) -> Result<SessionStore, StoreError> {
        let dir = state_dir.join("sessions");
        let archive = JsonStore::open(&dir)?;
        let hot = JsonStore::open(dir.join("hot"))?;
        Ok(SessionStore {
            dir,
            archive,
            hot,
            turns_lock: Mutex::new(()),
        })
    }

    /// Writes `stored` (a session's [`Session::stored_form`]) as its hot file, atomically
    /// and durably.
    pub fn write_hot(&self, stored: &Session) -> Result<(), StoreError> {
        if !valid_id(&stored.session_id) {
            return Err(StoreError::BadName(stored.session_id.clone()));
        }
        self.hot
            .write(&format!("{}.json", stored.session_id), stored)
    }

    /// Removes the hot file of `session_id` (the session left the hot registry).
    pub fn remove_hot(&self, session_id: &str) -> Result<(), StoreError> {
        if !valid_id(session_id) {
            return Err(StoreError::BadName(session_id.to_string()));
        }
        // With its last-good copy (common::store keeps one per file).
        self.hot.remove(&format!("{session_id}.json"))
    }

    /// The ids of the hot files on disk.
    pub fn hot_ids(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.hot.dir()) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json").filter(|id| valid_id(id))?;
                Some(id.to_string())
            })
            .collect()
    }

    /// The hot session `session_id` from its file: None when there is none (a corrupt one
    /// is logged and moved aside), an error when it could not be read (and may be later).
    pub fn hot_read(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        if !valid_id(session_id) {
            return Ok(None);
        }
        let s = self
            .hot
            .read_or_warn::<Session>(&format!("{session_id}.json"))?;
        Ok(s.filter(|s| s.session_id == session_id)
            .map(Session::loaded))
    }

    /// [`hot_read`](Self::hot_read), with a failed read logged and taken as None.
    pub fn hot_one(&self, session_id: &str) -> Option<Session> {
        self.hot_read(session_id).unwrap_or_else(|e| {
            log::warn!("session {session_id}: cannot read its hot file: {e}");
            None
        })
    }

    fn turns_path(&self, session_id: &str) -> PathBuf {
        self.dir.join(format!("{session_id}.turns.jsonl"))
    }

    /// Appends the record of a finished turn, compacting the file when it grew too big.
    pub fn append_turn(&self, session_id: &str, record: &TurnRecord) -> io::Result<()> {
        if !valid_id(session_id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad session id {session_id:?}"),
            ));
        }
        let value = serde_json::to_value(record)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let path = self.turns_path(session_id);
        let _guard = lock(&self.turns_lock);
        let (mut log, _) = JsonlLog::open(&path, false)?;
        log.append(&value)?;
        drop(log);
        if fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > TURN_FILE_MAX_BYTES {
            self.compact(session_id, &path)?;
        }
        Ok(())
    }

    /// Rewrites the file with its newest records: at most [`TURNS_KEPT`], and no more than
    /// half of [`TURN_FILE_MAX_BYTES`] (the newest one always stays).
    fn compact(&self, session_id: &str, path: &Path) -> io::Result<()> {
        let all = JsonlLog::read_all(path)?;
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut total = 0u64;
        for v in all.iter().rev().take(TURNS_KEPT) {
            let mut line = serde_json::to_vec(v).unwrap_or_default();
            line.push(b'\n');
            total += line.len() as u64;
            if !lines.is_empty() && total > TURN_FILE_MAX_BYTES / 2 {
                break;
            }
            lines.push(line);
        }
        let keep = lines.len();
        let text: Vec<u8> = lines.into_iter().rev().flatten().collect();
        let name = format!("{session_id}.turns.jsonl");
        write_atomic(&self.dir, &name, &text).map_err(|e| io::Error::other(e.to_string()))?;
        log::info!("session {session_id}: turn file compacted to its last {keep} records");
        Ok(())
    }

    /// The session's stored turn records, oldest first; unreadable lines are skipped.
    pub fn turns(&self, session_id: &str) -> Vec<TurnRecord> {
        if !valid_id(session_id) {
            return Vec::new();
        }
        let values = JsonlLog::read_all(&self.turns_path(session_id)).unwrap_or_else(|e| {
            log::warn!("session {session_id}: cannot read its turn records: {e}");
            Vec::new()
        });
        values
            .into_iter()
            .filter_map(|v: Value| serde_json::from_value(v).ok())
            .collect()
    }

    /// The stored record of one turn (the last one written wins). Read from the end of the
    /// file, parsing only the line that holds it: this backs every read of a session's
    /// last turn.
    pub fn turn(&self, session_id: &str, turn_id: &str) -> Option<TurnRecord> {
        if !valid_id(session_id) {
            return None;
        }
        let key = serde_json::to_string(turn_id).ok()?;
        let find = |bytes: &[u8]| {
            bytes
                .rsplit(|b| *b == b'\n')
                .filter(|line| contains(line, key.as_bytes()))
                .filter_map(|line| serde_json::from_slice::<TurnRecord>(line).ok())
                .find(|r| r.turn_id == turn_id)
        };
        // The record asked for is nearly always the newest: its tail first, the whole
        // file (up to TURN_FILE_MAX_BYTES) only when the tail does not have it.
        let path = self.turns_path(session_id);
        let read = tail(&path, TURN_TAIL_BYTES).and_then(|(bytes, whole)| match find(&bytes) {
            Some(r) => Ok(Some(r)),
            None if whole => Ok(None),
            None => fs::read(&path).map(|all| find(&all)),
        });
        match read {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("session {session_id}: cannot read its turn records: {e}");
                None
            }
        }
    }

    /// Writes the archived copy of `session` (its stored form).
    pub fn archive(&self, session: &Session) -> Result<(), StoreError> {
        self.archive.write(
            &format!("{}.json", session.session_id),
            &session.stored_form(),
        )
    }

    /// The archived session `session_id`, if there is one.
    pub fn archived(&self, session_id: &str) -> Option<Session> {
        if !valid_id(session_id) {
            return None;
        }
        self.archive
            .read_or_warn::<Session>(&format!("{session_id}.json"))
            .unwrap_or_else(|e| {
                log::warn!("session {session_id}: cannot read its archive file: {e}");
                None
            })
            .map(Session::loaded)
    }

    /// Removes the archived copy (the session is hot again).
    pub fn unarchive(&self, session_id: &str) {
        if !valid_id(session_id) {
            return;
        }
        if let Err(e) = self.archive.remove(&format!("{session_id}.json")) {
            log::warn!("{e}");
        }
    }

    /// Every archived session, newest `updatedAt` first.
    pub fn archived_all(&self) -> Vec<Session> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Session> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                self.archived(id)
            })
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        out
    }
}

/// The last `n` bytes of `path` (a line cut at the start does not parse and is skipped),
/// and whether that is the whole file.
fn tail(path: &Path, n: u64) -> io::Result<(Vec<u8>, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(n);
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len - from).unwrap_or(0));
    f.read_to_end(&mut bytes)?;
    Ok((bytes, from == 0))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(label: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "baa-session-store-{label}-{}-{}",
            std::process::id(),
            baa::common::time::now_ms()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn record(id: &str, pad: usize) -> TurnRecord {
        TurnRecord {
            turn_id: id.into(),
            status: "completed".into(),
            diff: Some("x".repeat(pad)),
            ..TurnRecord::default()
        }
    }

    #[test]
    fn ids_that_are_not_plain_names_are_refused() {
        for bad in ["", "../x", "a/b", "a.b", ".hidden", "a b"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(valid_id("cxs_0123abcd"));
    }

    #[test]
    fn turn_records_append_read_back_and_compact() {
        let dir = tmp("turns");
        let store = SessionStore::open(&dir).unwrap();
        store.append_turn("cxs_a", &record("t1", 1)).unwrap();
        store.append_turn("cxs_a", &record("t2", 1)).unwrap();
        let ids: Vec<String> = store
            .turns("cxs_a")
            .into_iter()
            .map(|r| r.turn_id)
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert_eq!(
            store.turn("cxs_a", "t2").map(|r| r.turn_id),
            Some("t2".into())
        );
        assert_eq!(
            store.turn("cxs_a", "t1").map(|r| r.turn_id),
            Some("t1".into())
        );
        assert!(store.turn("cxs_a", "t3").is_none());
        assert!(store.turn("cxs_none", "t1").is_none());
        assert!(store.append_turn("../evil", &record("t", 1)).is_err());

        let big = (TURN_FILE_MAX_BYTES as usize) / 8;
        for i in 0..9 {
            store
                .append_turn("cxs_b", &record(&format!("b{i}"), big))
                .unwrap();
        }
        let kept = store.turns("cxs_b");
        assert!(kept.len() <= TURNS_KEPT, "{}", kept.len());
        assert_eq!(kept.last().map(|r| r.turn_id.as_str()), Some("b8"));
        let size = fs::metadata(dir.join("sessions/cxs_b.turns.jsonl"))
            .unwrap()
            .len();
        assert!(size <= TURN_FILE_MAX_BYTES, "{size}");
        // Records bigger than the tail read: found through the whole file.
        for r in &kept {
            let found = store.turn("cxs_b", &r.turn_id).map(|f| f.turn_id);
            assert_eq!(found.as_deref(), Some(r.turn_id.as_str()));
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
