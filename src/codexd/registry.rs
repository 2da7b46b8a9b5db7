//! The hot registry: codexd's open sessions by id, and their persistence.
//!
//! The persistence rule: a change a client is told about (a session created, a turn
//! accepted or finished, a session deleted or back from the archive) is on disk before the
//! answer or event that announces it — the caller makes the change, then [`Sessions::persist`]s
//! the session, then announces. Changes nobody is told about (the thread's status, the
//! child's pid) are only marked dirty and written by the ticker's [`Sessions::flush`].
//!
//! Each hot session is its own small file (`session_store`), so a turn writes one session,
//! not the whole registry. A registry from before that layout (`session-registry.json`) is
//! migrated once at start.
//!
//! Locking: `inner` is held only to read or change the map, never across a write or a call
//! out. `writes` is taken before `inner`, and held from the snapshot of a session to the end
//! of its write, so a file never goes back to an older state.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::{Mutex, MutexGuard};

use serde_json::json;

use baa::common::api_error::ApiError;
use baa::common::store::{JsonStore, StoreError};
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use crate::session_store::SessionStore;
use crate::sessions::{RegistryFile, Session, SessionStatus, ThreadStatus};

/// The registry file of codexd before the per-session layout.
pub const LEGACY_REGISTRY: &str = "session-registry.json";

pub struct Sessions {
    files: SessionStore,
    inner: Mutex<Inner>,
    writes: Mutex<()>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Session>,
    /// thread id → session id; checked on use (a session's thread can change under it).
    by_thread: HashMap<String, String>,
    /// When a session last changed (`sessionRegistry.updatedAt` in the status).
    updated_at: Option<String>,
    /// Sessions changed (or removed) since their file was last written.
    dirty: HashSet<String>,
}

impl Inner {
    fn index(&mut self, s: &Session) {
        if let Some(t) = &s.thread_id {
            self.by_thread.insert(t.clone(), s.session_id.clone());
        }
    }

    fn changed(&mut self, id: &str) {
        self.dirty.insert(id.to_string());
        self.updated_at = Some(now_rfc3339());
    }
}

impl Sessions {
    /// Opens the session files under `store`'s dir, migrating a legacy registry file there,
    /// and loads the hot sessions.
    pub fn open(store: &JsonStore) -> Result<Sessions, StoreError> {
        let files = SessionStore::open(store.dir())?;
        migrate(store, &files)?;
        let mut inner = Inner::default();
        for s in restore(files.hot_all(), &files) {
            inner.index(&s);
            inner.by_id.insert(s.session_id.clone(), s);
        }
        inner.updated_at = inner.by_id.values().map(|s| s.updated_at.clone()).max();
        Ok(Sessions {
            files,
            inner: Mutex::new(inner),
            writes: Mutex::new(()),
        })
    }

    /// The turn records and archived sessions.
    pub fn files(&self) -> &SessionStore {
        &self.files
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub fn updated_at(&self) -> Option<String> {
        self.inner().updated_at.clone()
    }

    /// `f` of session `id`, if it is hot.
    pub fn read<T>(&self, id: &str, f: impl FnOnce(&Session) -> T) -> Option<T> {
        self.inner().by_id.get(id).map(f)
    }

    /// A copy of session `id`, if it is hot.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.read(id, Session::clone)
    }

    /// The id of the session that holds thread `thread_id`.
    pub fn id_of_thread(&self, thread_id: &str) -> Option<String> {
        let mut g = self.inner();
        if let Some(id) = g.by_thread.get(thread_id) {
            let holds = g
                .by_id
                .get(id)
                .is_some_and(|s| s.thread_id.as_deref() == Some(thread_id));
            if holds {
                return Some(id.clone());
            }
        }
        let id = g
            .by_id
            .values()
            .find(|s| s.thread_id.as_deref() == Some(thread_id))
            .map(|s| s.session_id.clone());
        match &id {
            Some(id) => g.by_thread.insert(thread_id.to_string(), id.clone()),
            None => g.by_thread.remove(thread_id),
        };
        id
    }

    /// `f` over every hot session, oldest first.
    pub fn list<T>(&self, f: impl FnMut(&Session) -> T) -> Vec<T> {
        let g = self.inner();
        let mut all: Vec<&Session> = g.by_id.values().collect();
        all.sort_by(|a, b| (&a.created_at, &a.session_id).cmp(&(&b.created_at, &b.session_id)));
        all.into_iter().map(f).collect()
    }

    /// Runs `f` on session `id` without marking it changed: for what is not persisted
    /// (a running turn's progress) or is marked by the caller ([`mark_changed`](Self::mark_changed)).
    pub fn with_mut<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let mut g = self.inner();
        let (out, thread) = g.by_id.get_mut(id).map(|s| (f(s), s.thread_id.clone()))?;
        if let Some(t) = thread {
            g.by_thread.insert(t, id.to_string());
        }
        Some(out)
    }

    /// Runs `f` on session `id`, stamps its `updatedAt` and marks it to be written.
    pub fn update<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let out = self.with_mut(id, |s| {
            let out = f(s);
            s.updated_at = now_rfc3339();
            out
        })?;
        self.inner().changed(id);
        Some(out)
    }

    /// Marks session `id` to be written (its `updatedAt` was set by the caller).
    pub fn mark_changed(&self, id: &str) {
        self.inner().changed(id);
    }

    /// Runs `f` on every hot session; those it returns true for are marked to be written.
    pub fn for_each_mut(&self, mut f: impl FnMut(&mut Session) -> bool) {
        let mut g = self.inner();
        let changed: Vec<String> = g
            .by_id
            .values_mut()
            .filter_map(|s| f(s).then(|| s.session_id.clone()))
            .collect();
        for id in changed {
            g.changed(&id);
        }
    }

    /// Adds `session` to the hot registry and writes it (unless it is there already).
    pub fn insert(&self, session: Session) -> Result<(), StoreError> {
        let id = session.session_id.clone();
        {
            let mut g = self.inner();
            if g.by_id.contains_key(&id) {
                return Ok(());
            }
            g.index(&session);
            g.by_id.insert(id.clone(), session);
            g.changed(&id);
        }
        self.persist(&id)
    }

    /// Takes session `id` out of the hot registry when `keep_going` says so, and removes its
    /// file. Returns the session taken out.
    pub fn remove_if(
        &self,
        id: &str,
        keep_going: impl FnOnce(&Session) -> bool,
    ) -> Result<Option<Session>, StoreError> {
        let removed = {
            let mut g = self.inner();
            if !g.by_id.get(id).is_some_and(keep_going) {
                return Ok(None);
            }
            let s = g.by_id.remove(id);
            g.changed(id);
            s
        };
        self.persist(id)?;
        Ok(removed)
    }

    /// Writes session `id` now if it changed since its last write (or removes its file if
    /// it left the registry). On return, every change made before the call is on disk.
    pub fn persist(&self, id: &str) -> Result<(), StoreError> {
        let _w = lock(&self.writes);
        let snapshot = {
            let mut g = self.inner();
            if !g.dirty.remove(id) {
                // Written already, by a writer that held `writes` before us.
                return Ok(());
            }
            g.by_id.get(id).map(Session::stored_form)
        };
        let written = match &snapshot {
            Some(s) => self.files.write_hot(s),
            None => self.files.remove_hot(id),
        };
        if written.is_err() {
            self.inner().dirty.insert(id.to_string());
        }
        written
    }

    /// Writes every session changed since its last write (the ticker, and at stop).
    pub fn flush(&self) {
        let dirty: Vec<String> = self.inner().dirty.iter().cloned().collect();
        for id in dirty {
            if let Err(e) = self.persist(&id) {
                log::error!("session {id}: {e}");
            }
        }
    }
}

/// The 500 for a session whose state could not be written: the change is not announced.
pub(crate) fn state_write_failed(session_id: &str, e: &StoreError) -> ApiError {
    ApiError::new(
        500,
        "state_write_failed",
        format!("Cannot write the state of session \"{session_id}\": {e}"),
    )
    .with_details(json!({"sessionId": session_id}))
}

/// The hot sessions as loaded, made whole again: a session that a crash left both hot and
/// deleted in the archive stays deleted (its hot file goes), one archived for retention
/// is hot (its archive file goes); no thread is loaded in a child that has not started
/// yet; and each last turn gets back the parts the hot file keeps out (diff, commands, …)
/// from the session's turn file.
fn restore(sessions: Vec<Session>, files: &SessionStore) -> Vec<Session> {
    let mut kept = Vec::with_capacity(sessions.len());
    for mut s in sessions {
        let id = s.session_id.clone();
        match files.archived(&id).and_then(|a| a.archive_reason) {
            Some(reason) if reason == "deleted" => {
                log::warn!("session {id} is deleted in the archive; dropped from the hot registry");
                if let Err(e) = files.remove_hot(&id) {
                    log::warn!("session {id}: {e}");
                }
                continue;
            }
            Some(_) => files.unarchive(&id),
            None => {}
        }
        s.archived_at = None;
        s.archive_reason = None;
        s.status = SessionStatus::Active;
        s.thread_status = ThreadStatus::NotLoaded;
        if let Some(last) = s.last_turn.as_mut().filter(|r| r.summary) {
            if let Some(full) = files.turn(&id, &last.turn_id) {
                *last = full;
            }
        }
        kept.push(s);
    }
    kept
}

/// A `session-registry.json` (the layout before per-session files) becomes one hot file
/// per session; hot files it does not list are removed, as the registry is the newer
/// record when both exist. The file is then renamed `session-registry.json.migrated`.
/// A crash part way leaves the registry in place, and the next start migrates again.
fn migrate(store: &JsonStore, files: &SessionStore) -> Result<(), StoreError> {
    let Some(registry) = store.read_or_warn::<RegistryFile>(LEGACY_REGISTRY)? else {
        return Ok(());
    };
    let listed: HashSet<&str> = registry
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    for s in files.hot_all() {
        if !listed.contains(s.session_id.as_str()) {
            files.remove_hot(&s.session_id)?;
        }
    }
    for s in &registry.sessions {
        files.write_hot(&s.stored_form())?;
    }
    let from = store.path(LEGACY_REGISTRY);
    let to = store.path(&format!("{LEGACY_REGISTRY}.migrated"));
    fs::rename(&from, &to).map_err(|source| StoreError::Io { path: from, source })?;
    log::info!(
        "state: {} sessions migrated from {LEGACY_REGISTRY} to one file each under sessions/hot/ (the old file is kept as {LEGACY_REGISTRY}.migrated)",
        registry.sessions.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tmp(label: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "baa-registry-{label}-{}-{}",
            std::process::id(),
            baa::common::time::now_ms()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn session(id: &str, thread: &str) -> Session {
        serde_json::from_value(json!({
            "sessionId": id, "purpose": "duplex", "threadId": thread, "status": "active", "threadStatus": "idle",
            "endpoint": "stdio://x", "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z", "turnCount": 0, "metadata": {},
            "approvals": {"default": "decline", "timeoutMs": 1000}, "threadParams": {},
            "hasRollout": false,
        }))
        .unwrap()
    }

    #[test]
    fn changes_are_on_disk_after_persist_and_removal_takes_the_file() {
        let dir = tmp("persist");
        let store = JsonStore::open(&dir).unwrap();
        let reg = Sessions::open(&store).unwrap();
        reg.insert(session("cxs_a", "th_a")).unwrap();
        let hot = dir.join("sessions/hot/cxs_a.json");
        assert!(hot.is_file());
        reg.update("cxs_a", |s| s.current_turn_id = Some("t1".into()));
        reg.persist("cxs_a").unwrap();
        let again = Sessions::open(&store).unwrap();
        assert_eq!(
            again.read("cxs_a", |s| s.current_turn_id.clone()),
            Some(Some("t1".into()))
        );
        assert_eq!(again.id_of_thread("th_a").as_deref(), Some("cxs_a"));
        // A thread that changed under the index is still found, the old one no more.
        again.with_mut("cxs_a", |s| s.thread_id = Some("th_b".into()));
        assert_eq!(again.id_of_thread("th_b").as_deref(), Some("cxs_a"));
        assert_eq!(again.id_of_thread("th_a"), None);
        assert!(again.remove_if("cxs_a", |_| false).unwrap().is_none());
        assert!(again.remove_if("cxs_a", |_| true).unwrap().is_some());
        assert!(!hot.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_writers_never_leave_an_older_state_on_disk() {
        let dir = tmp("concurrent");
        let store = JsonStore::open(&dir).unwrap();
        let reg = std::sync::Arc::new(Sessions::open(&store).unwrap());
        reg.insert(session("cxs_a", "th_a")).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        reg.update("cxs_a", |s| s.turn_count += 1);
                        reg.persist("cxs_a").unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let again = Sessions::open(&store).unwrap();
        assert_eq!(again.read("cxs_a", |s| s.turn_count), Some(100));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_crash_between_archive_and_hot_removal_is_settled_at_start() {
        let dir = tmp("restore");
        let store = JsonStore::open(&dir).unwrap();
        let files = SessionStore::open(&dir).unwrap();
        let mut deleted = session("cxs_del", "th_d");
        let mut retired = session("cxs_ret", "th_r");
        files.write_hot(&deleted).unwrap();
        files.write_hot(&retired).unwrap();
        deleted.archive_reason = Some("deleted".into());
        retired.archive_reason = Some("retention".into());
        files.archive(&deleted).unwrap();
        files.archive(&retired).unwrap();
        let reg = Sessions::open(&store).unwrap();
        assert_eq!(
            reg.list(|s| (s.session_id.clone(), s.status, s.thread_status)),
            [(
                "cxs_ret".to_string(),
                SessionStatus::Active,
                ThreadStatus::NotLoaded
            )]
        );
        assert!(!dir.join("sessions/hot/cxs_del.json").exists());
        assert!(files.archived("cxs_ret").is_none());
        assert_eq!(
            files.archived("cxs_del").map(|s| s.status),
            Some(SessionStatus::Archived)
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_legacy_registry_is_migrated_once_and_wins_over_stray_hot_files() {
        let dir = tmp("migrate");
        let store = JsonStore::open(&dir).unwrap();
        let stray = SessionStore::open(&dir).unwrap();
        stray.write_hot(&session("cxs_gone", "th_g")).unwrap();
        let doc = RegistryFile {
            updated_at: Some("2026-01-02T00:00:00.000Z".into()),
            sessions: vec![session("cxs_a", "th_a"), session("cxs_b", "th_b")],
        };
        store.write(LEGACY_REGISTRY, &doc).unwrap();
        let reg = Sessions::open(&store).unwrap();
        assert_eq!(
            reg.list(|s| s.session_id.clone()),
            ["cxs_a".to_string(), "cxs_b".to_string()]
        );
        assert!(!dir.join(LEGACY_REGISTRY).exists());
        assert!(dir.join("session-registry.json.migrated").is_file());
        assert!(!dir.join("sessions/hot/cxs_gone.json").exists());
        let again = Sessions::open(&store).unwrap();
        assert_eq!(again.list(|_| ()).len(), 2);
        let _ = fs::remove_dir_all(&dir);
    }
}
