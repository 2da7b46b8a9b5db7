//! The automation mode (running / paused / draining): who set it, why, when, and a version
//! that goes up by one on every change. Persisted before a write is acknowledged.
//!
//! Fail safe: every write also refreshes a last-good copy beside the file. A state file
//! that does not parse is moved aside and the last-good copy restored; with no good copy
//! automation starts `paused` (never `running`, which is what the mode would silently
//! become if a corrupt file read as "no state"). The version never goes backwards, and
//! the recovery shows in `/v1/runtime` `warnings`.
//!
//! Reads are served from a cache keyed on the file's (device, inode, size, mtime), so a
//! `GET /v1/system/state` costs one `stat`, and a write by another conductor sharing the
//! state dir (a new inode: writes are atomic renames) is seen on the next read.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::store::{FileKey, JsonStore, StoreError};
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

pub const FILE: &str = "system-state.json";
/// The last state written, kept beside [`FILE`] to fall back to.
pub const LAST_GOOD: &str = "system-state.last-good.json";
/// `requested_by` of a state the conductor set itself (a recovery).
pub const SELF_REQUESTER: &str = "baa-conductor";
/// A file modified this recently may be replaced without its key changing (coarse mtime
/// clocks, a freed inode number reused at once), so such a read is never served from the
/// cache; older files are. Two seconds covers one-second mtime granularity.
const RACY_WINDOW: Duration = Duration::from_secs(2);
const MAX_REQUESTED_BY: usize = 200;
const MAX_REASON: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Running,
    Paused,
    Draining,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Running => "running",
            Mode::Paused => "paused",
            Mode::Draining => "draining",
        }
    }
}

/// The action names shared by the HTTP routes and the Firefox bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Drain,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "drain" => Some(Action::Drain),
            _ => None,
        }
    }

    fn target(self) -> Mode {
        match self {
            Action::Pause => Mode::Paused,
            Action::Resume => Mode::Running,
            Action::Drain => Mode::Draining,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemState {
    pub mode: Mode,
    pub updated_at: String,
    pub requested_by: Option<String>,
    pub reason: Option<String>,
    pub version: u64,
}

impl SystemState {
    fn initial() -> Self {
        Self {
            mode: Mode::Running,
            updated_at: now_rfc3339(),
            requested_by: None,
            reason: None,
            version: 0,
        }
    }

    /// The public shape, with the current lease holder.
    pub fn to_json(&self, holder_id: Option<&str>) -> Value {
        json!({
            "mode": self.mode.as_str(),
            "holder_id": holder_id,
            "updated_at": self.updated_at,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "version": self.version,
        })
    }
}

/// Who asked for a mode change and why (validated caller input).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeRequest {
    pub requested_by: Option<String>,
    pub reason: Option<String>,
    /// Pause only: also interrupt the task turns running now (their tasks wait in the queue).
    pub interrupt: bool,
}

impl ChangeRequest {
    /// Reads `requested_by`/`requestedBy` and `reason` from a JSON object.
    pub fn from_json(body: &serde_json::Map<String, Value>) -> Result<Self, ApiError> {
        let field = |names: &[&str], max: usize| -> Result<Option<String>, ApiError> {
            for name in names {
                match body.get(*name) {
                    None | Some(Value::Null) => continue,
                    Some(Value::String(s)) => {
                        let s = s.trim();
                        if s.chars().count() > max {
                            return Err(ApiError::bad_request(
                                "invalid_request",
                                format!("{name} must be at most {max} characters."),
                            ));
                        }
                        return Ok(Some(s.to_string()).filter(|s| !s.is_empty()));
                    }
                    Some(_) => {
                        return Err(ApiError::bad_request(
                            "invalid_request",
                            format!("{name} must be a string."),
                        ))
                    }
                }
            }
            Ok(None)
        };
        let interrupt = match body.get("interrupt") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "interrupt must be true or false.",
                )
                .with_details(json!({ "field": "interrupt" })))
            }
        };
        Ok(Self {
            requested_by: field(&["requested_by", "requestedBy"], MAX_REQUESTED_BY)?,
            reason: field(&["reason"], MAX_REASON)?,
            interrupt,
        })
    }
}

/// The parsed state file as of one key.
struct Cached {
    key: FileKey,
    state: Arc<SystemState>,
    /// False while the file was younger than [`RACY_WINDOW`] when it was read.
    trusted: bool,
}

/// Reads and changes the system state file.
pub struct SystemStore {
    /// Serializes writes and recoveries in this process.
    lock: Mutex<()>,
    cache: Mutex<Option<Cached>>,
    /// The highest version this process has read or written: a recovery starts above it.
    high_water: AtomicU64,
    /// The last recovery, for `/v1/runtime` warnings; cleared by the next operator change.
    warning: Mutex<Option<String>>,
    /// How many times the file was opened and parsed (the cache's misses).
    parses: AtomicU64,
}

impl Default for SystemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemStore {
    pub fn new() -> Self {
        Self {
            lock: Mutex::new(()),
            cache: Mutex::new(None),
            high_water: AtomicU64::new(0),
            warning: Mutex::new(None),
            parses: AtomicU64::new(0),
        }
    }

    /// The current state. A missing file with no last-good copy is a fresh install: the
    /// initial `running` state is written then and read back ever after; a corrupt or
    /// vanished one is recovered.
    pub fn load(&self, store: &JsonStore) -> Result<SystemState, StoreError> {
        if let Some(key) = store.key(FILE)? {
            let cache = lock(&self.cache);
            if let Some(c) = cache.as_ref().filter(|c| c.trusted && c.key == key) {
                return Ok(SystemState::clone(&c.state));
            }
        }
        let _guard = lock(&self.lock);
        self.load_locked(store)
    }

    /// Conditions an operator should know about (a recovered state file).
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.warning).iter().cloned().collect()
    }

    /// How many times the state file was read and parsed so far.
    #[cfg(test)]
    pub fn parses(&self) -> u64 {
        self.parses.load(Ordering::Relaxed)
    }

    /// Applies `action`, persists it, and returns the new state.
    pub fn apply(
        &self,
        store: &JsonStore,
        action: Action,
        req: &ChangeRequest,
    ) -> Result<SystemState, StoreError> {
        let _guard = lock(&self.lock);
        let current = self.load_locked(store)?;
        let next = SystemState {
            mode: action.target(),
            updated_at: now_rfc3339(),
            requested_by: req.requested_by.clone(),
            reason: req.reason.clone(),
            version: current.version.max(self.high_water.load(Ordering::SeqCst)) + 1,
        };
        self.persist(store, &next)?;
        // An operator chose the mode: the recovery is acknowledged.
        *lock(&self.warning) = None;
        Ok(next)
    }

    /// Reads the file (the lock is held), recovering it when it is unusable.
    fn load_locked(&self, store: &JsonStore) -> Result<SystemState, StoreError> {
        self.parses.fetch_add(1, Ordering::Relaxed);
        match store.read_keyed::<SystemState>(FILE) {
            Ok(Some((state, key))) => {
                self.remember(key, &state);
                Ok(state)
            }
            Ok(None) => match store.key(LAST_GOOD)? {
                // Fresh install: nothing was ever written.
                None => self.first_write(store),
                Some(_) => self.recover(store, format!("{FILE} was missing"), None),
            },
            Err(StoreError::Corrupt {
                moved_to, source, ..
            }) => {
                let what = match &moved_to {
                    Some(to) => format!(
                        "{FILE} was unreadable ({source}) and was moved aside to {}",
                        to.display()
                    ),
                    None => {
                        format!("{FILE} was unreadable ({source}) and could not be moved aside")
                    }
                };
                self.recover(store, what, moved_to.as_deref())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the initial `running` state of a fresh install, so its `updated_at` is the
    /// time it was first written (the first start: the scheduler reads the mode at once)
    /// and stays that, not the time of each request. Created only if absent: when another
    /// conductor sharing the state dir wrote first, its state is read back, never replaced.
    fn first_write(&self, store: &JsonStore) -> Result<SystemState, StoreError> {
        let initial = SystemState::initial();
        if !store.create(FILE, &initial)? {
            if let Some((theirs, key)) = store.read_keyed::<SystemState>(FILE)? {
                self.remember(key, &theirs);
                return Ok(theirs);
            }
        }
        if let Some(key) = store.key(FILE)? {
            self.remember(key, &initial);
        }
        if let Err(e) = store.create(LAST_GOOD, &initial) {
            log::warn!("system: cannot write the last-good copy: {e}");
        }
        Ok(initial)
    }

    /// Restores the last good copy, or pauses automation when there is none, and persists
    /// the result. The version stays above everything seen: this process's high-water
    /// mark, the good copy, and any version still legible in the moved-aside file.
    fn recover(
        &self,
        store: &JsonStore,
        what: String,
        moved_aside: Option<&Path>,
    ) -> Result<SystemState, StoreError> {
        let mut floor = self
            .high_water
            .load(Ordering::SeqCst)
            .max(moved_aside.and_then(scan_version).unwrap_or(0));
        let good = match store.read::<SystemState>(LAST_GOOD) {
            Ok(g) => g,
            Err(e) => {
                log::warn!("system: the last-good copy is unusable too: {e}");
                if let StoreError::Corrupt {
                    moved_to: Some(to), ..
                } = &e
                {
                    floor = floor.max(scan_version(to).unwrap_or(0));
                }
                None
            }
        };
        let (state, outcome) = match good {
            Some(g) if g.version >= floor => {
                let outcome = format!(
                    "restored the last good copy ({}, version {})",
                    g.mode.as_str(),
                    g.version
                );
                (g, outcome)
            }
            Some(g) => {
                let version = floor + 1;
                let outcome = format!(
                    "restored the last good copy ({}) as version {version}, above the version {floor} seen before",
                    g.mode.as_str()
                );
                (
                    SystemState {
                        version,
                        updated_at: now_rfc3339(),
                        ..g
                    },
                    outcome,
                )
            }
            None => {
                let version = floor + 1;
                let state = SystemState {
                    mode: Mode::Paused,
                    updated_at: now_rfc3339(),
                    requested_by: Some(SELF_REQUESTER.to_string()),
                    reason: Some(format!(
                        "{what}; there was no last good copy, so automation is paused until an operator resumes it."
                    )),
                    version,
                };
                (
                    state,
                    format!("no last good copy: automation paused (version {version})"),
                )
            }
        };
        let warning = format!("system state: {what}; {outcome}.");
        let persisted = self.persist(store, &state);
        let mut slot = lock(&self.warning);
        if slot.as_deref() != Some(warning.as_str()) {
            log::warn!("{warning}");
        }
        *slot = Some(match &persisted {
            Ok(()) => warning,
            Err(e) => format!("{warning} Writing it back failed: {e}."),
        });
        Ok(state)
    }

    /// Writes `state` and then its last-good copy (so the copy is never ahead of an
    /// acknowledged write), and caches it.
    fn persist(&self, store: &JsonStore, state: &SystemState) -> Result<(), StoreError> {
        store.write(FILE, state)?;
        if let Some(key) = store.key(FILE)? {
            self.remember(key, state);
        }
        if let Err(e) = store.write(LAST_GOOD, state) {
            log::warn!("system: cannot refresh the last-good copy: {e}");
        }
        Ok(())
    }

    fn remember(&self, key: FileKey, state: &SystemState) {
        self.high_water.fetch_max(state.version, Ordering::SeqCst);
        let age = SystemTime::now()
            .duration_since(key.modified())
            .unwrap_or(Duration::ZERO);
        *lock(&self.cache) = Some(Cached {
            key,
            state: Arc::new(state.clone()),
            trusted: age >= RACY_WINDOW,
        });
    }
}

/// The `"version": N` still legible in a corrupt file, if any (a truncated or hand-edited
/// file usually keeps it), so a recovery does not reuse a version already handed out.
fn scan_version(path: &Path) -> Option<u64> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    let after = &text[text.find("\"version\"")? + "\"version\"".len()..];
    let digits: String = after
        .trim_start_matches(|c: char| c.is_whitespace() || c == ':')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_persists_and_bumps_version() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        let sys = SystemStore::new();
        assert_eq!(sys.load(&store).unwrap().mode, Mode::Running);
        let req = ChangeRequest {
            requested_by: Some("ops".into()),
            reason: Some("maintenance".into()),
            interrupt: false,
        };
        let s = sys.apply(&store, Action::Pause, &req).unwrap();
        assert_eq!((s.mode, s.version), (Mode::Paused, 1));
        let s = sys
            .apply(&store, Action::Drain, &ChangeRequest::default())
            .unwrap();
        assert_eq!(
            (s.mode, s.version, s.requested_by.clone()),
            (Mode::Draining, 2, None)
        );
        assert_eq!(sys.load(&store).unwrap(), s);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_fresh_install_reports_when_its_state_was_first_written_not_the_request_time() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        let sys = SystemStore::new();
        let first = sys.load(&store).unwrap();
        assert_eq!((first.mode, first.version), (Mode::Running, 0));
        // Persisted at once, the last-good copy too.
        assert_eq!(
            store.read::<SystemState>(FILE).unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            store.read::<SystemState>(LAST_GOOD).unwrap(),
            Some(first.clone())
        );
        // Once the clock has moved on, a read (this process's, or a restarted one's)
        // still says when the state was first written.
        while now_rfc3339() == first.updated_at {
            std::thread::yield_now();
        }
        assert_eq!(sys.load(&store).unwrap(), first);
        assert_eq!(SystemStore::new().load(&store).unwrap(), first);
        // The first change moves it on.
        let s = sys
            .apply(&store, Action::Pause, &ChangeRequest::default())
            .unwrap();
        assert_ne!(s.updated_at, first.updated_at);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_first_write_never_replaces_another_conductors_state() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        let other = SystemStore::new();
        // The other conductor found no file, and wrote its first change before this one
        // created the initial state: that change stays.
        let theirs = other
            .apply(&store, Action::Pause, &ChangeRequest::default())
            .unwrap();
        let sys = SystemStore::new();
        assert_eq!(sys.first_write(&store).unwrap(), theirs);
        assert_eq!(
            store.read::<SystemState>(FILE).unwrap(),
            Some(theirs.clone())
        );
        assert_eq!(store.read::<SystemState>(LAST_GOOD).unwrap(), Some(theirs));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn paused_at(store: &JsonStore, version: u64) {
        let sys = SystemStore::new();
        for _ in 0..version {
            sys.apply(store, Action::Pause, &ChangeRequest::default())
                .unwrap();
        }
    }

    #[test]
    fn corrupt_state_file_restores_the_last_good_copy() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 41);
        std::fs::write(store.path(FILE), b"{\"mode\": \"paus").unwrap();
        let sys = SystemStore::new();
        let s = sys.load(&store).unwrap();
        assert_eq!((s.mode, s.version), (Mode::Paused, 41), "{s:?}");
        let w = sys.warnings();
        assert!(
            w.len() == 1 && w[0].contains("moved aside") && w[0].contains("last good copy"),
            "{w:?}"
        );
        // Written back: the next process reads it normally.
        assert_eq!(SystemStore::new().load(&store).unwrap(), s);
        // The next change is an operator's: it goes on from 41 and clears the warning.
        let s = sys
            .apply(&store, Action::Resume, &ChangeRequest::default())
            .unwrap();
        assert_eq!(
            (s.mode, s.version, sys.warnings()),
            (Mode::Running, 42, vec![])
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn corrupt_state_file_without_a_good_copy_starts_paused_above_the_old_version() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 41);
        std::fs::remove_file(store.path(LAST_GOOD)).unwrap();
        std::fs::write(store.path(FILE), b"{\"mode\":\"running\",\"version\": 41,").unwrap();
        let sys = SystemStore::new();
        let s = sys.load(&store).unwrap();
        assert_eq!(
            (s.mode, s.version, s.requested_by.as_deref()),
            (Mode::Paused, 42, Some(SELF_REQUESTER)),
            "{s:?}"
        );
        let reason = s.reason.clone().unwrap_or_default();
        assert!(
            reason.contains(".corrupt-"),
            "reason names the moved-aside file: {reason}"
        );
        assert_eq!(sys.warnings().len(), 1);
        // Both files are back: a restart reads the paused state as is.
        assert_eq!(SystemStore::new().load(&store).unwrap(), s);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_state_file_with_a_good_copy_is_restored_not_reset() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 3);
        std::fs::remove_file(store.path(FILE)).unwrap();
        let s = SystemStore::new().load(&store).unwrap();
        assert_eq!((s.mode, s.version), (Mode::Paused, 3));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reads_are_cached_until_the_file_changes() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 1);
        // Age the file past the racy window so its key can be trusted.
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(store.path(FILE))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let sys = SystemStore::new();
        sys.load(&store).unwrap();
        let before = sys.parses();
        for _ in 0..100 {
            assert_eq!(sys.load(&store).unwrap().version, 1);
        }
        assert_eq!(sys.parses(), before, "served from the cache");
        // Another writer (a second conductor) replaces the file: seen on the next read.
        let other = SystemStore::new();
        other
            .apply(&store, Action::Drain, &ChangeRequest::default())
            .unwrap();
        let s = sys.load(&store).unwrap();
        assert_eq!((s.mode, s.version), (Mode::Draining, 2));
        // A fresh file is re-read on every request until it is old enough to trust.
        let before = sys.parses();
        sys.load(&store).unwrap();
        assert_eq!(sys.parses(), before + 1);
        // An edit in place (same inode) changes the size or mtime: seen too.
        let mut edited = sys.load(&store).unwrap();
        edited.version = 99;
        edited.mode = Mode::Paused;
        std::fs::write(store.path(FILE), serde_json::to_vec(&edited).unwrap()).unwrap();
        assert_eq!(sys.load(&store).unwrap(), edited);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn change_request_validation() {
        let ok = serde_json::from_str::<serde_json::Map<String, Value>>(
            r#"{"requestedBy":"a","reason":" b "}"#,
        )
        .unwrap();
        assert_eq!(
            ChangeRequest::from_json(&ok).unwrap(),
            ChangeRequest {
                requested_by: Some("a".into()),
                reason: Some("b".into()),
                interrupt: false,
            }
        );
        let bad =
            serde_json::from_str::<serde_json::Map<String, Value>>(r#"{"reason": 5}"#).unwrap();
        assert_eq!(
            ChangeRequest::from_json(&bad).unwrap_err().code,
            "invalid_request"
        );
    }
}
