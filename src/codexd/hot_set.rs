//! The registry's memory (`registry::Sessions`): an index entry for every open session
//! and the sessions held whole, the most recently used, with the eviction that keeps them
//! to the hot-set size. No I/O here; the registry reads and writes the files.

use std::collections::{HashMap, HashSet};

use baa::common::time::now_rfc3339;

use crate::sessions::{Session, SessionStatus, ThreadStatus};

/// What the registry knows of an open session without its file: a few hundred bytes.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) thread_id: Option<String>,
    pub(crate) running: bool,
    /// Memory only (as `Session::loaded_generation`): kept here so a session read back
    /// from its file still knows whether its thread is loaded in the current child.
    pub(crate) loaded_generation: u64,
    /// Bumped by every change marked to be written: a file read that raced with one is
    /// read again, and a write that raced with one leaves the session dirty.
    pub(crate) stamp: u64,
    /// When the session was last used (the registry's own clock), for eviction.
    pub(crate) used: u64,
}

impl Entry {
    pub(crate) fn of(s: &Session) -> Entry {
        let mut e = Entry {
            created_at: String::new(),
            updated_at: String::new(),
            thread_id: None,
            running: false,
            loaded_generation: 0,
            stamp: 0,
            used: 0,
        };
        e.sync(s);
        e
    }

    fn sync(&mut self, s: &Session) {
        if self.created_at != s.created_at {
            self.created_at = s.created_at.clone();
        }
        if self.updated_at != s.updated_at {
            self.updated_at = s.updated_at.clone();
        }
        if self.thread_id != s.thread_id {
            self.thread_id = s.thread_id.clone();
        }
        self.running = s.current_turn_id.is_some();
        self.loaded_generation = s.loaded_generation;
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    /// Every open session, in memory or not.
    pub(crate) index: HashMap<String, Entry>,
    /// The sessions held in memory.
    pub(crate) loaded: HashMap<String, Session>,
    /// thread id → session id; checked on use (a session's thread can change under it).
    pub(crate) by_thread: HashMap<String, String>,
    /// When a session last changed (`sessionRegistry.updatedAt` in the status).
    pub(crate) updated_at: Option<String>,
    /// Sessions changed (or removed) since their file was last written.
    pub(crate) dirty: HashSet<String>,
    /// The registry's clock for `Entry::used` and `Entry::stamp`.
    pub(crate) clock: u64,
    /// The current child's pid, given to a session read back from its file.
    pub(crate) child_pid: Option<u32>,
}

impl Inner {
    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(crate) fn changed(&mut self, id: &str) {
        self.dirty.insert(id.to_string());
        self.updated_at = Some(now_rfc3339());
        let t = self.tick();
        if let Some(e) = self.index.get_mut(id) {
            e.stamp = t;
        }
    }

    pub(crate) fn touch(&mut self, id: &str) {
        let t = self.tick();
        if let Some(e) = self.index.get_mut(id) {
            e.used = t;
        }
    }

    /// A finished turn's full record is in the session's turn file now: the session keeps
    /// its summary. Until then the full record stays, so a read in between still sees it.
    pub(crate) fn summarise(&mut self, id: &str, turn_id: &str) {
        let last = self.loaded.get_mut(id).and_then(|s| s.last_turn.as_mut());
        if let Some(r) = last.filter(|r| !r.summary && r.turn_id == turn_id) {
            *r = r.summary();
        }
    }

    /// After session `id` was changed in memory: its entry and thread follow it.
    pub(crate) fn sync(&mut self, id: &str) {
        let Some(s) = self.loaded.get_mut(id) else {
            return;
        };
        if let Some(e) = self.index.get_mut(id) {
            e.sync(s);
        }
        if let Some(t) = &s.thread_id {
            if self.by_thread.get(t).is_none_or(|held| held != id) {
                self.by_thread.insert(t.clone(), id.to_string());
            }
        }
    }

    /// A session as read from its file, given what lives in memory only.
    pub(crate) fn revive(&self, mut s: Session, e: &Entry) -> Session {
        s.status = SessionStatus::Active;
        s.archived_at = None;
        s.archive_reason = None;
        s.loaded_generation = e.loaded_generation;
        s.child_pid = self.child_pid;
        if s.loaded_generation == 0 {
            s.thread_status = ThreadStatus::NotLoaded;
        }
        s
    }

    /// Drops the least recently used sessions from memory while more than `max` are held;
    /// never `keep`, one with a running turn, or one with a change not yet written.
    pub(crate) fn evict(&mut self, max: usize, keep: &str) {
        while self.loaded.len() > max {
            let oldest = self
                .loaded
                .values()
                .filter(|s| {
                    s.session_id != keep
                        && s.current_turn_id.is_none()
                        && s.current.is_none()
                        && !self.dirty.contains(&s.session_id)
                })
                .map(|s| {
                    let used = self.index.get(&s.session_id).map_or(0, |e| e.used);
                    (used, s.session_id.clone())
                })
                .min();
            match oldest {
                Some((_, id)) => self.loaded.remove(&id),
                None => return,
            };
        }
    }
}
