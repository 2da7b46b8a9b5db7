//! Reading `daemon-state.json` at start, and telling a usable file from damage. A file that
//! is not JSON, not a daemon state (`{}`: every field missing), not a regular file, or
//! missing after the first start is damage: it is moved aside (when it is a file), codexd
//! falls back to the last-good copy, and the caller heals the rest from other records (the
//! app-server from its socket and pid file, the seq from the event log) and says so.
//!
//! The store keeps the last-good copy and refuses a non-regular file without blocking
//! (`common::store`); this file adds what only daemon-state knows: that `{}` or another
//! file's content is damage too, and that a missing file after the first start is.

use std::path::PathBuf;

use serde_json::Value;

use baa::common::store::{JsonStore, StoreError};

use crate::state::{DaemonState, DAEMON_STATE, IDENTITY};

/// What was wrong with daemon-state.json at start, and what codexd used instead.
#[derive(Debug, Clone)]
pub struct Damage {
    /// What was found: "an empty object", "not JSON (…)", "missing", …
    pub what: String,
    /// Where the damaged file was moved (kept for a post-mortem).
    pub moved_to: Option<PathBuf>,
    /// True when the last-good copy was read instead.
    pub used_last_good: bool,
    /// True when the path still cannot be used (not a regular file, unreadable): the next
    /// writes fail too until someone repairs it.
    pub unusable: bool,
}

/// The daemon state to start from, and the damage found on the way.
pub struct Loaded {
    pub state: Option<DaemonState>,
    pub damage: Option<Damage>,
}

/// Reads daemon-state.json, falling back to the last-good copy when it is damaged.
pub fn load(store: &JsonStore) -> Loaded {
    let (what, moved_to, unusable) = match store.load::<Value>(DAEMON_STATE) {
        Ok(Some(loaded)) => match (usable(loaded.value), loaded.recovered) {
            (Ok(state), None) => {
                return Loaded {
                    state: Some(state),
                    damage: None,
                }
            }
            // The store served the copy: the file was not JSON, not a regular file, …
            (Ok(state), Some(recovery)) => {
                log::warn!("state: {}", recovery.message());
                let (what, moved_to) = match &recovery.problem {
                    StoreError::Corrupt {
                        source, moved_to, ..
                    } => (format!("not JSON ({source})"), moved_to.clone()),
                    e => (format!("unreadable ({e})"), None),
                };
                return Loaded {
                    state: Some(state),
                    damage: Some(Damage {
                        what,
                        moved_to,
                        used_last_good: true,
                        unusable: recovery.write_back_failed.is_some(),
                    }),
                };
            }
            (Err(what), _) => {
                let moved = store
                    .move_aside(DAEMON_STATE)
                    .map_err(|e| log::warn!("state: cannot move it aside: {e}"))
                    .ok();
                (what, moved, false)
            }
        },
        Ok(None) if !store.path(IDENTITY).exists() => {
            // The first start: nothing to miss.
            return Loaded {
                state: None,
                damage: None,
            };
        }
        Ok(None) => ("missing".to_string(), None, false),
        Err(StoreError::Corrupt {
            source, moved_to, ..
        }) => (format!("not JSON ({source})"), moved_to, false),
        Err(e) => (format!("unreadable ({e})"), None, true),
    };
    let last_good = match store.read_last_good::<Value>(DAEMON_STATE) {
        Ok(Some(v)) => usable(v).ok(),
        Ok(None) => None,
        Err(e) => {
            log::warn!("state: the last-good copy is unusable too: {e}");
            None
        }
    };
    let used_last_good = last_good.is_some();
    log::warn!(
        "state: {DAEMON_STATE} is damaged ({what}){}",
        if used_last_good {
            "; starting from its last-good copy"
        } else {
            "; no last-good copy either"
        }
    );
    Loaded {
        state: last_good,
        damage: Some(Damage {
            what,
            moved_to,
            used_last_good,
            unusable,
        }),
    }
}

/// The fields of a daemon state as written (`DaemonState`, camelCase).
const FIELDS: [&str; 9] = [
    "started",
    "startedAt",
    "updatedAt",
    "mode",
    "pid",
    "lastSeq",
    "child",
    "pendingRequests",
    "limitsHold",
];

/// A daemon state, or what makes `v` none. Missing fields read as defaults (an older or
/// hand-edited file still names its child), but a document with none of them (`{}`,
/// another file's content) is damage, not a fresh start.
fn usable(v: Value) -> Result<DaemonState, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("not an object but {}", kind_of(&v)));
    };
    if obj.is_empty() {
        return Err("an empty object".to_string());
    }
    if !FIELDS.iter().any(|f| obj.contains_key(*f)) {
        return Err("an object without any daemon state field".to_string());
    }
    serde_json::from_value(v).map_err(|e| format!("not a daemon state ({e})"))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    fn store(tag: &str) -> JsonStore {
        let d = std::env::temp_dir().join(format!(
            "baa-statefile-{tag}-{}",
            baa::common::ids::new_id("t")
        ));
        JsonStore::open(d).unwrap()
    }

    fn good(last_seq: u64) -> DaemonState {
        let mut s = DaemonState {
            started: true,
            started_at: "2026-12-04T00:00:00Z".into(),
            mode: "app-server".into(),
            pid: 4242,
            last_seq,
            ..Default::default()
        };
        s.child.strategy = "spawn".into();
        s
    }

    #[test]
    fn first_start_is_not_damage_but_a_lost_file_later_is() {
        let s = store("first");
        let l = load(&s);
        assert!(l.state.is_none() && l.damage.is_none());
        s.write(IDENTITY, &json!({"daemonId": "d"})).unwrap();
        let l = load(&s);
        assert_eq!(l.damage.unwrap().what, "missing");
    }

    #[test]
    fn an_empty_object_or_garbage_is_damage_and_the_last_good_copy_is_used() {
        let s = store("damage");
        s.write(DAEMON_STATE, &good(509)).unwrap();
        assert_eq!(load(&s).state.unwrap().last_seq, 509);
        assert!(load(&s).damage.is_none());
        for (bytes, what) in [
            (&b"{}"[..], "an empty object"),
            (&b"[1]"[..], "not an object"),
            (&b"{\"mode\": 3}"[..], "not a daemon state"),
            (&b"{\"sessions\": []}"[..], "an object without"),
        ] {
            fs::write(s.path(DAEMON_STATE), bytes).unwrap();
            let l = load(&s);
            let d = l.damage.expect("damage");
            assert!(d.what.starts_with(what), "{what}: {}", d.what);
            assert!(d.used_last_good && !d.unusable, "{d:?}");
            assert!(d.moved_to.is_some_and(|p| p.exists()), "{what}");
            assert!(!s.path(DAEMON_STATE).exists(), "{what} was left in place");
            assert_eq!(l.state.unwrap().last_seq, 509);
        }
        // Not JSON: the store itself moves it aside and writes the copy back.
        fs::write(s.path(DAEMON_STATE), b"\x00garbage").unwrap();
        let l = load(&s);
        let d = l.damage.expect("damage");
        assert!(d.used_last_good && !d.unusable, "{d:?}");
        assert!(d.moved_to.as_ref().is_some_and(|p| p.exists()), "{d:?}");
        assert_eq!(l.state.unwrap().last_seq, 509);
        assert!(load(&s).damage.is_none(), "the copy was not written back");
    }

    #[test]
    fn a_directory_or_a_fifo_in_its_place_is_unusable_not_missing_and_never_blocks() {
        let s = store("dir");
        fs::create_dir_all(s.path(DAEMON_STATE)).unwrap();
        let d = load(&s).damage.expect("damage");
        assert!(d.unusable && !d.used_last_good, "{d:?}");
        assert!(d.what.contains("a directory"), "{d:?}");
        fs::remove_dir(s.path(DAEMON_STATE)).unwrap();
        let c = std::ffi::CString::new(s.path(DAEMON_STATE).to_string_lossy().as_bytes()).unwrap();
        // SAFETY: a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let d = load(&s).damage.expect("damage");
        assert!(d.unusable && d.what.contains("not a regular file"), "{d:?}");
    }
}
