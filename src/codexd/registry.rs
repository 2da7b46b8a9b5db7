//! The hot registry: codexd's open sessions by id, and their persistence.
//!
//! The persistence rule: a change a client is told about (a session created, a turn
//! accepted or finished, a session deleted or back from the archive) is on disk before the
//! answer or event that announces it — the caller makes the change, then [`Sessions::persist`]s
//! the session, then announces. Changes nobody is told about (the thread's status, the
//! child's pid) are only marked dirty and written by the ticker's [`Sessions::flush`].
//!
//! Each open session is its own small file (`session_store`), so a turn writes one session,
//! not the whole registry. A registry from before that layout (`session-registry.json`) is
//! migrated once at start.
//!
//! Memory: the registry indexes every open session (an [`Entry`]: what listing order, the
//! thread lookup and the retention sweep need, built from the files at start, as the
//! conductor's task index is), but holds at most `hot_max` whole sessions in memory, the
//! most recently used; the rest are read from their file when used. A session with a
//! running turn, or a change not yet written, always stays in memory. The index is not a
//! file of its own: one would be rewritten with every turn or go stale, and the session
//! files are the record either way. A last turn is held in its summary form once its full
//! record is in the session's turn file ([`Sessions::turn_stored`]); until then the full
//! record stays in memory, so a read between the two still sees it.
//! The memory side (entries, the sessions held, eviction) is `hot_set`.
//!
//! Locking: `inner` is held only to read or change the maps, never across a write or a
//! call out (a session's file is read outside it, and the read is retried if the session
//! changed meanwhile). `writes` is taken before `inner`, and held from the snapshot of a
//! session to the end of its write, so a file never goes back to an older state.

use std::collections::HashSet;
use std::fs;
use std::sync::{Mutex, MutexGuard};

use serde_json::json;

use baa::common::api_error::ApiError;
use baa::common::store::{JsonStore, StoreError};
use baa::common::sync::lock;
use baa::common::time::{ms_from_rfc3339, now_rfc3339};

use crate::hot_set::{Entry, Inner};
use crate::session_store::SessionStore;
use crate::sessions::{RegistryFile, Session, SessionStatus, ThreadStatus};

/// The registry file of codexd before the per-session layout.
pub const LEGACY_REGISTRY: &str = "session-registry.json";

pub struct Sessions {
    files: SessionStore,
    /// Whole sessions held in memory; more only while more than this must stay (a running
    /// turn, an unwritten change).
    hot_max: usize,
    inner: Mutex<Inner>,
    writes: Mutex<()>,
}

impl Sessions {
    /// Opens the session files under `store`'s dir, migrating a legacy registry file there,
    /// and indexes the open sessions; at most `hot_max` whole sessions are held in memory
    /// (those with a running turn always are).
    pub fn open(store: &JsonStore, hot_max: usize) -> Result<Sessions, StoreError> {
        let files = SessionStore::open(store.dir())?;
        migrate(store, &files)?;
        let mut inner = Inner::default();
        for id in files.hot_ids() {
            let Some(s) = files.hot_one(&id).and_then(|s| restore(s, &files)) else {
                continue;
            };
            let mut e = Entry::of(&s);
            e.used = inner.tick();
            if let Some(t) = &s.thread_id {
                inner.by_thread.insert(t.clone(), id.clone());
            }
            if inner.updated_at.as_deref() < Some(s.updated_at.as_str()) {
                inner.updated_at = Some(s.updated_at.clone());
            }
            inner.index.insert(id.clone(), e);
            // A running turn is settled at start (interrupted or picked up again), so its
            // session is in memory; the others are read when used.
            if s.current_turn_id.is_some() {
                inner.loaded.insert(id, s);
            }
        }
        Ok(Sessions {
            files,
            hot_max: hot_max.max(1),
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

    /// How many open sessions there are, and how many of them are held in memory.
    pub fn counts(&self) -> (usize, usize) {
        let g = self.inner();
        (g.index.len(), g.loaded.len())
    }

    /// The lock, with session `id` in memory (read from its file if it was not); None if
    /// `id` is not open.
    fn loaded(&self, id: &str) -> Option<MutexGuard<'_, Inner>> {
        loop {
            let stamp = {
                let mut g = self.inner();
                if g.loaded.contains_key(id) {
                    g.touch(id);
                    return Some(g);
                }
                g.index.get(id)?.stamp
            };
            let read = self.files.hot_read(id);
            let mut g = self.inner();
            if g.loaded.contains_key(id) {
                g.touch(id);
                return Some(g);
            }
            let e = g.index.get(id)?.clone();
            if e.stamp != stamp {
                continue; // changed (so read, written and dropped again) while we read
            }
            let s = match read {
                Ok(Some(s)) => s,
                Ok(None) => {
                    log::error!(
                        "session {id}: its file is gone or corrupt; it leaves the registry"
                    );
                    g.index.remove(id);
                    return None;
                }
                // Kept in the index: the next use reads again.
                Err(e) => {
                    log::error!("session {id}: cannot read its file: {e}");
                    return None;
                }
            };
            let s = g.revive(s, &e);
            g.loaded.insert(id.to_string(), s);
            g.touch(id);
            g.evict(self.hot_max, id);
            return Some(g);
        }
    }

    /// `f` of session `id`, if it is open.
    pub fn read<T>(&self, id: &str, f: impl FnOnce(&Session) -> T) -> Option<T> {
        let g = self.loaded(id)?;
        g.loaded.get(id).map(f)
    }

    /// A copy of session `id`, if it is open.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.read(id, Session::clone)
    }

    /// The id of the session that holds thread `thread_id`.
    pub fn id_of_thread(&self, thread_id: &str) -> Option<String> {
        let mut g = self.inner();
        if let Some(id) = g.by_thread.get(thread_id) {
            let holds = g
                .index
                .get(id)
                .is_some_and(|e| e.thread_id.as_deref() == Some(thread_id));
            if holds {
                return Some(id.clone());
            }
        }
        let id = g
            .index
            .iter()
            .find(|(_, e)| e.thread_id.as_deref() == Some(thread_id))
            .map(|(id, _)| id.clone());
        match &id {
            Some(id) => g.by_thread.insert(thread_id.to_string(), id.clone()),
            None => g.by_thread.remove(thread_id),
        };
        id
    }

    /// `f` over every open session, oldest first. Those not in memory are read from their
    /// files one at a time and not kept.
    pub fn list<T>(&self, mut f: impl FnMut(&Session) -> T) -> Vec<T> {
        let mut ids: Vec<(String, String)> = {
            let g = self.inner();
            g.index
                .iter()
                .map(|(id, e)| (e.created_at.clone(), id.clone()))
                .collect()
        };
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for (_, id) in ids {
            {
                let g = self.inner();
                if let Some(s) = g.loaded.get(&id) {
                    out.push(f(s));
                    continue;
                }
            }
            let Some(read) = self.files.hot_one(&id) else {
                continue;
            };
            let revived = {
                let g = self.inner();
                if let Some(s) = g.loaded.get(&id) {
                    out.push(f(s));
                    continue;
                }
                let Some(e) = g.index.get(&id) else { continue };
                g.revive(read, e)
            };
            out.push(f(&revived));
        }
        out
    }

    /// The open sessions with no running turn that last changed before `cutoff_ms` (for
    /// the retention sweep, without reading any file).
    pub fn idle_since_before(&self, cutoff_ms: u64) -> Vec<String> {
        let g = self.inner();
        g.index
            .iter()
            .filter(|(_, e)| {
                !e.running && ms_from_rfc3339(&e.updated_at).is_some_and(|t| t <= cutoff_ms)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Runs `f` on session `id` without marking it changed: for what is not persisted
    /// (a running turn's progress) or is marked by the caller ([`mark_changed`](Self::mark_changed)).
    pub fn with_mut<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let mut g = self.loaded(id)?;
        let out = f(g.loaded.get_mut(id)?);
        g.sync(id);
        Some(out)
    }

    /// Runs `f` on session `id`, stamps its `updatedAt` and marks it to be written.
    pub fn update<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let mut g = self.loaded(id)?;
        let s = g.loaded.get_mut(id)?;
        let out = f(s);
        s.updated_at = now_rfc3339();
        g.sync(id);
        g.changed(id);
        Some(out)
    }

    /// The full record of `turn_id` was appended to session `id`'s turn file: from now on
    /// the session in memory holds only its summary, and a read takes the record from the
    /// file.
    pub fn turn_stored(&self, id: &str, turn_id: &str) {
        self.inner().summarise(id, turn_id);
    }

    /// Marks session `id` to be written (its `updatedAt` was set by the caller).
    pub fn mark_changed(&self, id: &str) {
        self.inner().changed(id);
    }

    /// Runs `f` on every session held in memory (those with a running turn among them);
    /// those it returns true for are marked to be written. What a session read back later
    /// needs from such a pass is in [`child_ready`](Self::child_ready) and
    /// [`generation_closed`](Self::generation_closed).
    pub fn for_each_mut(&self, mut f: impl FnMut(&mut Session) -> bool) {
        let mut g = self.inner();
        let mut changed = Vec::new();
        let mut touched = Vec::new();
        for s in g.loaded.values_mut() {
            if f(s) {
                changed.push(s.session_id.clone());
            }
            touched.push(s.session_id.clone());
        }
        for id in touched {
            g.sync(&id);
        }
        for id in changed {
            g.changed(&id);
        }
    }

    /// The child `pid` is ready (None: gone): every session shows it (memory only).
    pub fn child_ready(&self, pid: Option<u32>) {
        let mut g = self.inner();
        g.child_pid = pid;
        for s in g.loaded.values_mut() {
            s.child_pid = pid;
        }
    }

    /// The child connection of `generation` is closed: no thread is loaded in it any more,
    /// in memory or not.
    pub fn generation_closed(&self, generation: u64) {
        let mut g = self.inner();
        g.child_pid = None;
        for s in g.loaded.values_mut() {
            if s.loaded_generation == generation {
                s.loaded_generation = 0;
            }
            s.child_pid = None;
        }
        for e in g.index.values_mut() {
            if e.loaded_generation == generation {
                e.loaded_generation = 0;
            }
        }
    }

    /// Adds `session` to the registry and writes it (unless it is there already).
    pub fn insert(&self, session: Session) -> Result<(), StoreError> {
        let id = session.session_id.clone();
        {
            let mut g = self.inner();
            if g.index.contains_key(&id) {
                return Ok(());
            }
            g.index.insert(id.clone(), Entry::of(&session));
            g.loaded.insert(id.clone(), session);
            g.sync(&id);
            g.touch(&id);
            g.changed(&id);
        }
        self.persist(&id)
    }

    /// Takes session `id` out of the registry when `keep_going` says so, and removes its
    /// file. Returns the session taken out.
    pub fn remove_if(
        &self,
        id: &str,
        keep_going: impl FnOnce(&Session) -> bool,
    ) -> Result<Option<Session>, StoreError> {
        let removed = {
            let Some(mut g) = self.loaded(id) else {
                return Ok(None);
            };
            if !g.loaded.get(id).is_some_and(keep_going) {
                return Ok(None);
            }
            let s = g.loaded.remove(id);
            g.index.remove(id);
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
        let (snapshot, stamp) = {
            let mut g = self.inner();
            if !g.dirty.contains(id) {
                // Written already, by a writer that held `writes` before us.
                return Ok(());
            }
            let stamp = g.index.get(id).map(|e| e.stamp);
            match (g.loaded.get(id), stamp) {
                (Some(s), _) => (Some(s.stored_form()), stamp),
                (None, None) => (None, None),
                // Open but not in memory: nothing unwritten (never dropped while dirty).
                (None, Some(_)) => {
                    g.dirty.remove(id);
                    return Ok(());
                }
            }
        };
        let written = match &snapshot {
            Some(s) => self.files.write_hot(s),
            None => self.files.remove_hot(id),
        };
        if written.is_ok() {
            let mut g = self.inner();
            // A change made while this one was written is written by its own persist.
            if g.index.get(id).map(|e| e.stamp) == stamp {
                g.dirty.remove(id);
                g.evict(self.hot_max, "");
            }
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

/// An open session as found at start, made whole again: one that a crash left both open
/// and deleted in the archive stays deleted (its hot file goes: None), one archived for
/// retention is open (its archive file goes); and no thread is loaded in a child that has
/// not started yet.
fn restore(mut s: Session, files: &SessionStore) -> Option<Session> {
    let id = s.session_id.clone();
    match files.archived(&id).and_then(|a| a.archive_reason) {
        Some(reason) if reason == "deleted" => {
            log::warn!("session {id} is deleted in the archive; dropped from the hot registry");
            if let Err(e) = files.remove_hot(&id) {
                log::warn!("session {id}: {e}");
            }
            return None;
        }
        Some(_) => files.unarchive(&id),
        None => {}
    }
    s.archived_at = None;
    s.archive_reason = None;
    s.status = SessionStatus::Active;
    s.thread_status = ThreadStatus::NotLoaded;
    s.loaded_generation = 0;
    Some(s)
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
    for id in files.hot_ids() {
        if !listed.contains(id.as_str()) {
            files.remove_hot(&id)?;
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
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;

    use crate::sessions::TurnRecord;

    const HOT: usize = 128;

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
        let reg = Sessions::open(&store, HOT).unwrap();
        reg.insert(session("cxs_a", "th_a")).unwrap();
        let hot = dir.join("sessions/hot/cxs_a.json");
        assert!(hot.is_file());
        reg.update("cxs_a", |s| s.current_turn_id = Some("t1".into()));
        reg.persist("cxs_a").unwrap();
        let again = Sessions::open(&store, HOT).unwrap();
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
        // One session in memory at a time: the writers also race with eviction and reads
        // of the file.
        let reg = std::sync::Arc::new(Sessions::open(&store, 1).unwrap());
        reg.insert(session("cxs_a", "th_a")).unwrap();
        reg.insert(session("cxs_b", "th_b")).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let id = if i % 2 == 0 { "cxs_a" } else { "cxs_b" };
                        reg.update(id, |s| s.turn_count += 1);
                        reg.persist(id).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(reg.read("cxs_a", |s| s.turn_count), Some(50));
        let again = Sessions::open(&store, HOT).unwrap();
        assert_eq!(again.read("cxs_a", |s| s.turn_count), Some(50));
        assert_eq!(again.read("cxs_b", |s| s.turn_count), Some(50));
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
        let reg = Sessions::open(&store, HOT).unwrap();
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
        let reg = Sessions::open(&store, HOT).unwrap();
        assert_eq!(
            reg.list(|s| s.session_id.clone()),
            ["cxs_a".to_string(), "cxs_b".to_string()]
        );
        assert!(!dir.join(LEGACY_REGISTRY).exists());
        assert!(dir.join("session-registry.json.migrated").is_file());
        assert!(!dir.join("sessions/hot/cxs_gone.json").exists());
        let again = Sessions::open(&store, HOT).unwrap();
        assert_eq!(again.list(|_| ()).len(), 2);
        let _ = fs::remove_dir_all(&dir);
    }

    /// (inode, size) of every file under `sessions/hot/`: an atomic write is a new inode.
    fn hot_files(dir: &std::path::Path) -> HashMap<String, (u64, u64)> {
        fs::read_dir(dir.join("sessions/hot"))
            .unwrap()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                (e.file_name().into_string().unwrap(), (m.ino(), m.len()))
            })
            .collect()
    }

    /// A turn's durable write (the turn starts, the turn ends) with `others` other sessions
    /// open: the files it wrote under `sessions/hot/` and their bytes.
    fn turn_writes(others: usize) -> (Vec<String>, u64) {
        let dir = tmp(&format!("cost-{others}"));
        let store = JsonStore::open(&dir).unwrap();
        let files = SessionStore::open(&dir).unwrap();
        // The others as found at start (written plainly: the setup needs no fsyncs).
        for i in 0..others {
            let s = session(&format!("cxs_o{i}"), &format!("th_o{i}"));
            let path = dir.join(format!("sessions/hot/{}.json", s.session_id));
            fs::write(path, serde_json::to_vec(&s).unwrap()).unwrap();
        }
        drop(files);
        let reg = Sessions::open(&store, 16).unwrap();
        assert_eq!(reg.counts().0, others);
        reg.insert(session("cxs_turn", "th_turn")).unwrap();
        let mut before = hot_files(&dir);
        let mut written = Vec::new();
        let mut bytes = 0;
        for change in 0..2 {
            reg.update("cxs_turn", |s| {
                s.current_turn_id = (change == 0).then(|| "t1".to_string());
                s.last_turn = Some(TurnRecord {
                    turn_id: "t1".into(),
                    status: "completed".into(),
                    diff: Some("x".repeat(256 * 1024)),
                    ..TurnRecord::default()
                });
            });
            reg.persist("cxs_turn").unwrap();
            let now = hot_files(&dir);
            for (name, (ino, len)) in &now {
                if before.get(name).map(|(i, _)| i) != Some(ino) {
                    written.push(name.clone());
                    bytes += len;
                }
            }
            // Compared with the last round only: an unlinked file's inode can come back.
            before = now;
        }
        written.sort();
        written.dedup();
        let _ = fs::remove_dir_all(&dir);
        (written, bytes)
    }

    #[test]
    fn session_write_cost_does_not_grow_with_session_count() {
        let (few, few_bytes) = turn_writes(10);
        let (many, many_bytes) = turn_writes(2000);
        // The session's file and its last-good copy (common::store), nothing else.
        let one = [".cxs_turn.json.last-good", "cxs_turn.json"];
        assert_eq!(few, one);
        assert_eq!(many, one);
        assert_eq!(few_bytes, many_bytes);
        // The last turn's 256 KiB diff is in the turn file, not the session's: two changes,
        // each a small file and its copy.
        assert!(many_bytes < 4 * 4096, "{many_bytes}");
    }

    #[test]
    fn codexd_does_not_hold_a_last_turns_diff_per_session_in_memory() {
        let dir = tmp("summary");
        let store = JsonStore::open(&dir).unwrap();
        let reg = Sessions::open(&store, HOT).unwrap();
        reg.insert(session("cxs_a", "th_a")).unwrap();
        let full = TurnRecord {
            turn_id: "t1".into(),
            status: "completed".into(),
            diff: Some("x".repeat(256 * 1024)),
            diff_bytes: 256 * 1024,
            ..TurnRecord::default()
        };
        // The full record stays until it is in the turn file (a read in between sees it),
        // then the registry keeps less.
        reg.update("cxs_a", |s| s.last_turn = Some(full.clone()));
        let before = reg.read("cxs_a", |s| s.last_turn.clone()).flatten();
        assert_eq!(
            before.and_then(|r| r.diff).map(|d| d.len()),
            Some(256 * 1024)
        );
        reg.turn_stored("cxs_a", "t0");
        assert!(reg.read("cxs_a", |s| s.last_turn.as_ref().unwrap().summary) == Some(false));
        reg.turn_stored("cxs_a", "t1");
        let held = reg
            .read("cxs_a", |s| s.last_turn.clone())
            .flatten()
            .unwrap();
        assert!(held.summary && held.diff.is_none(), "{held:?}");
        assert_eq!((held.turn_id.as_str(), held.diff_bytes), ("t1", 256 * 1024));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sessions_past_the_hot_set_are_listed_read_changed_and_kept_across_a_restart() {
        let dir = tmp("cold");
        let store = JsonStore::open(&dir).unwrap();
        let reg = Sessions::open(&store, 2).unwrap();
        for i in 0..6 {
            let mut s = session(&format!("cxs_{i}"), &format!("th_{i}"));
            s.created_at = format!("2026-01-01T00:00:0{i}.000Z");
            reg.insert(s).unwrap();
        }
        reg.update("cxs_0", |s| s.current_turn_id = Some("t_run".into()));
        reg.persist("cxs_0").unwrap();
        for i in 1..6 {
            reg.read(&format!("cxs_{i}"), |_| ());
        }
        // A running turn keeps its session in memory; it counts towards the hot set.
        assert_eq!(reg.counts(), (6, 2));
        let ids: Vec<String> = reg.list(|s| s.session_id.clone());
        assert_eq!(ids, ["cxs_0", "cxs_1", "cxs_2", "cxs_3", "cxs_4", "cxs_5"]);
        assert_eq!(reg.counts(), (6, 2), "listing keeps nothing more in memory");
        assert_eq!(
            reg.read("cxs_0", |s| s.current_turn_id.clone()),
            Some(Some("t_run".into()))
        );
        // Not in memory: found by thread, read, changed and written.
        assert_eq!(reg.id_of_thread("th_1").as_deref(), Some("cxs_1"));
        assert_eq!(
            reg.read("cxs_1", |s| s.thread_id.clone()),
            Some(Some("th_1".into()))
        );
        reg.update("cxs_2", |s| s.turn_count = 7).unwrap();
        reg.persist("cxs_2").unwrap();
        for i in 3..6 {
            reg.read(&format!("cxs_{i}"), |_| ());
        }
        assert_eq!(reg.read("cxs_2", |s| s.turn_count), Some(7));
        assert!(reg.idle_since_before(u64::MAX).len() == 5);
        let again = Sessions::open(&store, 2).unwrap();
        assert_eq!(again.counts(), (6, 1));
        assert_eq!(again.list(|s| s.turn_count).iter().sum::<u64>(), 7);
        assert_eq!(
            again.read("cxs_2", |s| (s.turn_count, s.thread_status)),
            Some((7, ThreadStatus::NotLoaded))
        );
        assert!(again.remove_if("cxs_4", |_| true).unwrap().is_some());
        assert_eq!(again.list(|_| ()).len(), 5);
        let _ = fs::remove_dir_all(&dir);
    }
}
