//! The automation mode (running / paused / draining): who set it, why, when, and a version
//! that goes up by one on every change. Persisted before a write is acknowledged.
//!
//! Fail safe: the store keeps a last-good copy of the file and restores it when the file
//! is damaged or is not a regular file (`common::store`); with no good copy automation
//! starts `paused` (never `running`, which is what the mode would silently become if a
//! corrupt file read as "no state"). The version never goes backwards: every version
//! written is also appended to a small history, so it survives the loss of both copies.
//! The recovery shows in `/v1/runtime` `warnings`.
//!
//! Reads are served from a cache keyed on the file's (device, inode, size, mtime), so a
//! `GET /v1/system/state` costs one `stat`, and a write by another conductor sharing the
//! state dir (a new inode: writes are atomic renames) is seen on the next read.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::state_health::{self, Level};
use baa::common::store::{
    open_regular, read_regular, write_atomic, FileKey, JsonStore, Loaded, StoreError,
};
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

pub const FILE: &str = "system-state.json";
/// Where an older version kept the last-good copy (the store keeps it now, as for every
/// state file); read when the store has none, removed by the next write.
pub const LEGACY_LAST_GOOD: &str = "system-state.last-good.json";
/// One line per state written: the version survives when both copies are lost, so a
/// recovery never hands out a version again. Mode changes are rare; the file is cut to
/// its last line past [`HISTORY_MAX_BYTES`].
pub const HISTORY: &str = "system-state.history.jsonl";
const HISTORY_MAX_BYTES: u64 = 64 * 1024;
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
    /// A recovered state that could not be written (a directory in the way): served as is,
    /// and written when it can be, not recomputed with a new version on every read.
    unpersisted: Mutex<Option<SystemState>>,
    /// The highest version this process appended to the history.
    recorded: AtomicU64,
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
            unpersisted: Mutex::new(None),
            recorded: AtomicU64::new(0),
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
        match store.load::<SystemState>(FILE) {
            Ok(Some(Loaded {
                value,
                key,
                recovered: None,
            })) => {
                self.remember(key, &value);
                Ok(value)
            }
            // The store put the last-good copy back (or serves it, when it could not).
            Ok(Some(Loaded {
                value,
                key,
                recovered: Some(r),
            })) => {
                let floor = self.floor(store, None);
                if value.version >= floor && lock(&self.unpersisted).is_none() {
                    // Written back by the store, or (when it could not be) served from
                    // the copy until the file can be used again.
                    self.remember(key, &value);
                    let outcome = format!(
                        "automation is {} (version {})",
                        value.mode.as_str(),
                        value.version
                    );
                    self.set_warning(format!("system state: {}; {outcome}.", r.message()));
                    return Ok(value);
                }
                self.recover(store, r.problem.to_string(), Some(value), floor)
            }
            Ok(None) => {
                let good = match store.read_last_good::<SystemState>(FILE) {
                    Ok(Some(g)) => Some(g),
                    _ => store.read::<SystemState>(LEGACY_LAST_GOOD).ok().flatten(),
                };
                let floor = self.floor(store, None);
                if good.is_none() && floor == 0 && history_max(store).is_none() {
                    // Fresh install: nothing was ever written.
                    return self.first_write(store);
                }
                self.recover(store, format!("{FILE} was missing"), good, floor)
            }
            Err(e @ (StoreError::Corrupt { .. } | StoreError::NotRegular { .. })) => {
                let (what, moved_aside) = match e {
                    StoreError::Corrupt {
                        moved_to: Some(to),
                        source,
                        ..
                    } => (
                        format!(
                            "{FILE} was unreadable ({source}) and was moved aside to {}",
                            to.display()
                        ),
                        Some(to),
                    ),
                    StoreError::Corrupt { source, .. } => (
                        format!("{FILE} was unreadable ({source}) and could not be moved aside"),
                        None,
                    ),
                    other => (format!("{other}"), None),
                };
                let floor = self.floor(store, moved_aside.as_deref());
                // The store had no usable copy; an older version's copy is the latest
                // state while it exists (the first write after an upgrade removes it).
                let legacy = store.read::<SystemState>(LEGACY_LAST_GOOD).ok().flatten();
                self.recover(store, what, legacy, floor)
            }
            Err(e) => Err(e),
        }
    }

    /// The version a recovered state must not go below: the highest this process has seen,
    /// recorded in the history, or still legible in a damaged file (a truncated or
    /// hand-edited one usually keeps its `"version"`).
    fn floor(&self, store: &JsonStore, moved_aside: Option<&Path>) -> u64 {
        let legible = [
            moved_aside.map(Path::to_path_buf),
            Some(store.last_good_path(FILE)),
            Some(store.path(LEGACY_LAST_GOOD)),
        ];
        legible
            .iter()
            .flatten()
            .filter_map(|p| scan_version(p))
            .chain(history_max(store))
            .fold(self.high_water.load(Ordering::SeqCst), u64::max)
    }

    /// Writes the initial `running` state of a fresh install, so its `updated_at` is the
    /// time it was first written (the first start: the scheduler reads the mode at once)
    /// and stays that, not the time of each request. Created only if absent: when another
    /// conductor sharing the state dir wrote first, its state is read back, never replaced.
    /// (The store keeps the last-good copy of a created file too.)
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
        Ok(initial)
    }

    /// Restores `good` (the last good copy), or pauses automation when there is none, and
    /// persists the result. The version stays above `floor`.
    fn recover(
        &self,
        store: &JsonStore,
        what: String,
        good: Option<SystemState>,
        floor: u64,
    ) -> Result<SystemState, StoreError> {
        // (Unless a version was recorded above it since: a change that failed to write.)
        let pending = lock(&self.unpersisted).clone();
        if let Some(state) = pending.filter(|s| s.version >= floor) {
            if self.persist(store, &state).is_ok() {
                log::info!("system state: the recovered state is written now");
            }
            return Ok(state);
        }
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
        if persisted.is_err() {
            *lock(&self.unpersisted) = Some(state.clone());
        }
        self.set_warning(match &persisted {
            Ok(()) => warning,
            Err(e) => format!("{warning} Writing it back failed: {e}."),
        });
        // Served from memory while the file cannot be written: never above what is
        // handed out next.
        self.high_water.fetch_max(state.version, Ordering::SeqCst);
        Ok(state)
    }

    fn set_warning(&self, warning: String) {
        let mut slot = lock(&self.warning);
        if slot.as_deref() != Some(warning.as_str()) {
            log::warn!("{warning}");
        }
        *slot = Some(warning);
    }

    /// Records `state` in the history, then writes it (the store refreshes its last-good
    /// copy in the same step) and caches it.
    fn persist(&self, store: &JsonStore, state: &SystemState) -> Result<(), StoreError> {
        // Once per version, however often a write of it is retried.
        if self.recorded.fetch_max(state.version, Ordering::SeqCst) < state.version {
            append_history(store, state);
        }
        store.write(FILE, state)?;
        *lock(&self.unpersisted) = None;
        if let Some(key) = store.key(FILE)? {
            self.remember(key, state);
        }
        // An older version's copy beside the file; the store's copy replaces it.
        if let Err(e) = store.remove(LEGACY_LAST_GOOD) {
            log::warn!("system: cannot remove {LEGACY_LAST_GOOD}: {e}");
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
/// Only a regular file is read (never blocking on a FIFO).
fn scan_version(path: &Path) -> Option<u64> {
    let (text, _) = read_regular(path).ok()??;
    let text = String::from_utf8_lossy(&text);
    let after = &text[text.find("\"version\"")? + "\"version\"".len()..];
    let digits: String = after
        .trim_start_matches(|c: char| c.is_whitespace() || c == ':')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The highest version in the history, `None` when there is none to read.
fn history_max(store: &JsonStore) -> Option<u64> {
    let (bytes, _) = read_regular(&store.path(HISTORY)).ok()??;
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|v| v.get("version").and_then(Value::as_u64))
        .max()
}

/// Appends `state` to the history, synced (a mode change is rare; the line is what keeps
/// the version when both copies are lost). Past [`HISTORY_MAX_BYTES`] the file is replaced
/// by this one line: versions only grow, so the last one is all a recovery needs. A
/// failure is a warning: the state file itself is what is acknowledged.
fn append_history(store: &JsonStore, state: &SystemState) {
    let path = store.path(HISTORY);
    let mut line = match serde_json::to_vec(state) {
        Ok(l) => l,
        Err(_) => return,
    };
    line.push(b'\n');
    let appended = open_regular(
        &path,
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600),
    )
    .and_then(|mut f| {
        let io = |e| StoreError::Io {
            path: path.clone(),
            source: e,
        };
        let len = f.metadata().map_err(io)?.len();
        if len >= HISTORY_MAX_BYTES {
            return write_atomic(store.dir(), HISTORY, &line);
        }
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)
    });
    match appended {
        Ok(()) => state_health::written(&path),
        Err(e) => state_health::report(
            &path,
            Level::Warning,
            format!("cannot record the system state history: {e}"),
        ),
    }
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
            store.read_last_good::<SystemState>(FILE).unwrap(),
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
        assert_eq!(
            store.read_last_good::<SystemState>(FILE).unwrap(),
            Some(theirs)
        );
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
        std::fs::remove_file(store.last_good_path(FILE)).unwrap();
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
    fn version_went_backwards_when_no_copy_was_readable() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 7);
        // Both copies destroyed, nothing legible in either: the history keeps the version.
        std::fs::write(store.path(FILE), b"{}").unwrap();
        std::fs::write(store.last_good_path(FILE), b"{}").unwrap();
        let s = SystemStore::new().load(&store).unwrap();
        assert_eq!(
            (s.mode, s.version, s.requested_by.as_deref()),
            (Mode::Paused, 8, Some(SELF_REQUESTER)),
            "{s:?}"
        );
        // Both deleted: not a fresh install (the history says so), so paused, above 8.
        std::fs::remove_file(store.path(FILE)).unwrap();
        std::fs::remove_file(store.last_good_path(FILE)).unwrap();
        let s = SystemStore::new().load(&store).unwrap();
        assert_eq!((s.mode, s.version), (Mode::Paused, 9), "{s:?}");
        // And the next change goes on from there.
        let s = SystemStore::new()
            .apply(&store, Action::Resume, &ChangeRequest::default())
            .unwrap();
        assert_eq!((s.mode, s.version), (Mode::Running, 10));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn history_is_cut_to_its_last_line_when_it_grows() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        let big = "x".repeat(MAX_REASON);
        let sys = SystemStore::new();
        let req = ChangeRequest {
            reason: Some(big),
            ..ChangeRequest::default()
        };
        for _ in 0..40 {
            sys.apply(&store, Action::Pause, &req).unwrap();
        }
        let len = std::fs::metadata(store.path(HISTORY)).unwrap().len();
        assert!(len < HISTORY_MAX_BYTES + 4096, "{len}");
        assert_eq!(history_max(&store), Some(40));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn fifo_at_system_state_blocked_the_main_thread() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 5);
        std::fs::remove_file(store.path(FILE)).unwrap();
        let c =
            std::ffi::CString::new(store.path(FILE).into_os_string().into_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(SystemStore::new().load(&store).map(|s| (s.mode, s.version)));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("load blocked on the FIFO");
        assert_eq!(got.unwrap(), (Mode::Paused, 5));
        assert!(
            std::fs::symlink_metadata(dir.join(FILE)).unwrap().is_file(),
            "healed"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn directory_at_system_state_with_no_copy_is_served_from_memory_without_new_versions() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 3);
        std::fs::remove_file(store.path(FILE)).unwrap();
        std::fs::remove_file(store.last_good_path(FILE)).unwrap();
        std::fs::create_dir(store.path(FILE)).unwrap();
        let sys = SystemStore::new();
        let first = sys.load(&store).unwrap();
        assert_eq!((first.mode, first.version), (Mode::Paused, 4));
        let history = std::fs::metadata(store.path(HISTORY)).unwrap().len();
        for _ in 0..5 {
            assert_eq!(sys.load(&store).unwrap(), first);
        }
        assert_eq!(
            std::fs::metadata(store.path(HISTORY)).unwrap().len(),
            history
        );
        assert!(
            sys.warnings()[0].contains("is a directory"),
            "{:?}",
            sys.warnings()
        );
        // Removed: the state served all along is the one written.
        std::fs::remove_dir(store.path(FILE)).unwrap();
        assert_eq!(sys.load(&store).unwrap(), first);
        assert_eq!(store.read::<SystemState>(FILE).unwrap(), Some(first));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_copy_an_older_version_kept_is_restored_until_the_first_write() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("sys"));
        let store = JsonStore::open(&dir).unwrap();
        paused_at(&store, 6);
        // What an older conductor left: its copy under the old name, none of the store's.
        let state = store.read::<SystemState>(FILE).unwrap().unwrap();
        std::fs::remove_file(store.last_good_path(FILE)).unwrap();
        std::fs::remove_file(store.path(HISTORY)).unwrap();
        std::fs::write(
            store.path(LEGACY_LAST_GOOD),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        std::fs::write(store.path(FILE), b"garbage").unwrap();
        let s = SystemStore::new().load(&store).unwrap();
        assert_eq!((s.mode, s.version), (Mode::Paused, 6), "{s:?}");
        // Written back with the store's copy; the old one is gone.
        assert_eq!(store.read_last_good::<SystemState>(FILE).unwrap(), Some(s));
        assert!(!store.path(LEGACY_LAST_GOOD).exists());
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
