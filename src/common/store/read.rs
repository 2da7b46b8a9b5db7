//! Reading a state file, and healing a bad one from its last-good copy.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::atomic::write_atomic;
use super::error::{io_err, StoreError};
use super::regular::{read_regular, FileKey};
use super::{check_name, JsonStore};
use crate::common::state_health::{self, Level};
use crate::common::sync::lock;

/// How long an unparsable file must stay unchanged before it counts as corrupt.
const SETTLE_WAIT: Duration = Duration::from_millis(50);
/// Re-reads of a file that keeps changing while it does not parse.
const MAX_REREADS: u32 = 3;

/// A state file as read, and how.
#[derive(Debug)]
pub struct Loaded<T> {
    pub value: T,
    /// The key of the file now at the path (or of the copy, when it could not be written
    /// back): never equal to a damaged file's, so a cache keyed on it re-reads.
    pub key: FileKey,
    /// Set when the file was bad and `value` is its last-good copy.
    pub recovered: Option<Recovery>,
}

/// A read served from the last-good copy.
#[derive(Debug)]
pub struct Recovery {
    /// What was wrong with the file (the message names it).
    pub problem: StoreError,
    /// `None`: the copy was written back over the file. Else why it could not be.
    pub write_back_failed: Option<StoreError>,
}

impl Recovery {
    /// One line for logs and `warnings`.
    pub fn message(&self) -> String {
        match &self.write_back_failed {
            None => format!("{}; restored from its last good copy", self.problem),
            Some(e) => format!(
                "{}; serving its last good copy, which could not be written back ({e})",
                self.problem
            ),
        }
    }
}

/// A parsed last-good copy, with the bytes to write back and its key.
struct LastGood<T> {
    value: T,
    bytes: Vec<u8>,
    key: FileKey,
}

impl JsonStore {
    /// Reads `name`. Missing → `Ok(None)`. A bad file is replaced by its last-good copy
    /// (see the `store` module doc); with no usable copy the error is returned: a file
    /// that does not parse (and stayed unchanged for 50 ms, so not a hand edit caught
    /// mid-write) has been moved aside to `<name>.corrupt-<ms>` (`Err(Corrupt)`), anything
    /// else is left where it is.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        Ok(self.load(name)?.map(|l| l.value))
    }

    /// Like `read`, with the key of the version that was parsed (taken from the open file,
    /// so key and content always belong together).
    pub fn read_keyed<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<(T, FileKey)>, StoreError> {
        Ok(self.load(name)?.map(|l| (l.value, l.key)))
    }

    /// Like `read`, saying whether the value came from the last-good copy.
    pub fn load<T: DeserializeOwned>(&self, name: &str) -> Result<Option<Loaded<T>>, StoreError> {
        check_name(name)?;
        let path = self.path(name);
        let problem = match self.parse_file(name) {
            Ok(found) => {
                state_health::readable(&path);
                return Ok(found.map(|(value, key)| Loaded {
                    value,
                    key,
                    recovered: None,
                }));
            }
            Err(e @ StoreError::BadName(_)) => return Err(e),
            Err(e) => e,
        };
        let _guard = lock(&self.write_lock);
        // Rewritten meanwhile (by this process, another writer or the operator)? Then that
        // is the file; only what is still bad is replaced.
        if let Ok(Some((bytes, key))) = read_regular(&path) {
            if let Ok(value) = serde_json::from_slice(&bytes) {
                state_health::readable(&path);
                return Ok(Some(Loaded {
                    value,
                    key,
                    recovered: None,
                }));
            }
        }
        // A corrupt file moved aside leaves the path free: what it held may be lost, but
        // the file can be written again.
        let level = match &problem {
            StoreError::Corrupt {
                moved_to: Some(_), ..
            } => Level::Warning,
            _ => Level::Unusable,
        };
        let LastGood {
            value,
            bytes,
            key: copy_key,
        } = match self.parse_copy::<T>(name) {
            Ok(Some(found)) => found,
            Ok(None) => {
                let message = format!("{problem}; there is no last good copy");
                state_health::report(&path, level, message);
                return Err(problem);
            }
            Err(e) => {
                let message = format!("{problem}; its last good copy is unusable too ({e})");
                state_health::report(&path, level, message);
                return Err(problem);
            }
        };
        let written = write_atomic(&self.dir, name, &bytes).and_then(|()| {
            fs::metadata(&path)
                .map(|m| FileKey::of(&m))
                .map_err(|e| io_err(&path, e))
        });
        let (key, write_back_failed) = match written {
            Ok(key) => (key, None),
            Err(e) => (copy_key, Some(e)),
        };
        let recovery = Recovery {
            problem,
            write_back_failed,
        };
        let level = match recovery.write_back_failed {
            None => Level::Warning,
            Some(_) => Level::Unusable,
        };
        state_health::report(&path, level, recovery.message());
        Ok(Some(Loaded {
            value,
            key,
            recovered: Some(recovery),
        }))
    }

    /// The last-good copy of `name` alone (a caller deciding what a missing file means).
    pub fn read_last_good<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        check_name(name)?;
        Ok(self.parse_copy(name)?.map(|c| c.value))
    }

    /// Parses the file itself; an unparsable one that stays so is moved aside.
    fn parse_file<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<(T, FileKey)>, StoreError> {
        let path = self.path(name);
        let mut rereads = 0;
        loop {
            let Some((bytes, key)) = read_regular(&path)? else {
                return Ok(None);
            };
            let source = match serde_json::from_slice(&bytes) {
                Ok(v) => return Ok(Some((v, key))),
                Err(e) => e,
            };
            // Someone editing the file in place (not by rename) can be caught mid-write:
            // only a file that stays the same for a moment and still does not parse is
            // corrupt. A changed one is read again.
            std::thread::sleep(SETTLE_WAIT);
            let now = fs::symlink_metadata(&path).ok().map(|m| FileKey::of(&m));
            if now.is_some_and(|k| k != key) && rereads < MAX_REREADS {
                rereads += 1;
                continue;
            }
            let moved_to = self.move_aside(name).ok();
            return Err(StoreError::Corrupt {
                path,
                moved_to,
                source,
            });
        }
    }

    /// Moves a damaged `name` to `<name>.corrupt-<ms>`, kept for a look, so the next
    /// write starts clean. Also for a caller that finds a file damaged by its own rules
    /// (valid JSON that is not what it should be).
    pub fn move_aside(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        let from = self.path(name);
        let to = self
            .dir
            .join(format!("{name}.corrupt-{}", crate::common::time::now_ms()));
        fs::rename(&from, &to).map_err(|e| io_err(&from, e))?;
        Ok(to)
    }

    /// The parsed last-good copy of `name`, its bytes and key. A bad copy is left in place
    /// (the next write replaces it).
    fn parse_copy<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<LastGood<T>>, StoreError> {
        let path = self.last_good_path(name);
        let Some((bytes, key)) = read_regular(&path)? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Some(LastGood { value, bytes, key })),
            Err(source) => Err(StoreError::Corrupt {
                path,
                moved_to: None,
                source,
            }),
        }
    }

    /// Like `read`, but a file that is bad with no usable copy is logged (a corrupt one
    /// moved aside) and treated as missing.
    pub fn read_or_warn<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.read(name) {
            Err(e @ (StoreError::Corrupt { .. } | StoreError::NotRegular { .. })) => {
                log::warn!("state: {e}");
                Ok(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::store::test_support::{mkfifo, problems, promptly, tmpdir};
    use crate::common::store::FileKind;
    use serde_json::{json, Value};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn corrupt_file_is_moved_aside() {
        let d = tmpdir("corrupt");
        fs::write(d.join("s.json"), b"{\"torn\": ").unwrap();
        let s = JsonStore::open(&d).unwrap();
        match s.read::<Value>("s.json") {
            Err(StoreError::Corrupt {
                moved_to: Some(to), ..
            }) => assert!(to.exists()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(!d.join("s.json").exists());
        assert_eq!(s.read_or_warn::<Value>("s.json").unwrap(), None);
    }

    #[test]
    fn fifo_at_a_state_path_blocked_the_reader() {
        // No copy: refused at once, naming the path and what it is.
        let d = tmpdir("fifo");
        mkfifo(&d.join("s.json"));
        let dd = d.clone();
        let got = promptly(move || JsonStore::open(&dd).unwrap().read::<Value>("s.json"));
        match got {
            Err(
                e @ StoreError::NotRegular {
                    kind: FileKind::Fifo,
                    ..
                },
            ) => assert!(e.to_string().contains("s.json is a FIFO"), "{e}"),
            other => panic!("expected NotRegular(Fifo), got {other:?}"),
        }
        assert_eq!(
            state_health::first_unusable(&d).map(|p| p.level),
            Some(state_health::Level::Unusable)
        );
        // read_or_warn (codexd's legacy registry migration) treats it as absent.
        let dd = d.clone();
        assert_eq!(
            promptly(move || JsonStore::open(&dd)
                .unwrap()
                .read_or_warn::<Value>("s.json"))
            .unwrap(),
            None
        );
        // With a copy: served from it, and the FIFO is replaced by the file.
        let s = JsonStore::open(&d).unwrap();
        fs::remove_file(d.join("s.json")).unwrap();
        s.write("s.json", &json!({"seq": 7})).unwrap();
        assert!(state_health::first_unusable(&d).is_none(), "a write heals");
        fs::remove_file(d.join("s.json")).unwrap();
        mkfifo(&d.join("s.json"));
        let dd = d.clone();
        let l = promptly(move || JsonStore::open(&dd).unwrap().load::<Value>("s.json"))
            .unwrap()
            .unwrap();
        assert_eq!(l.value, json!({"seq": 7}));
        let r = l.recovered.expect("served from the copy");
        assert!(
            r.write_back_failed.is_none() && r.message().contains("is a FIFO"),
            "{}",
            r.message()
        );
        assert!(fs::symlink_metadata(d.join("s.json")).unwrap().is_file());
        let p = problems(&d);
        assert!(
            p.len() == 1 && p[0].0 == state_health::Level::Warning && p[0].1.contains("restored"),
            "{p:?}"
        );
    }

    #[test]
    fn directory_at_a_state_path_gave_500s_while_ready() {
        let d = tmpdir("dir");
        let s = JsonStore::open(&d).unwrap();
        s.write("s.json", &json!({"v": 3})).unwrap();
        fs::remove_file(d.join("s.json")).unwrap();
        fs::create_dir(d.join("s.json")).unwrap();
        // Served from the copy, which cannot be written back: unusable until fixed.
        let l = s.load::<Value>("s.json").unwrap().unwrap();
        assert_eq!(l.value, json!({"v": 3}));
        let r = l.recovered.unwrap();
        assert!(r.write_back_failed.is_some(), "{}", r.message());
        let bad = state_health::first_unusable(&d).expect("unusable");
        assert!(
            bad.message.contains("s.json is a directory"),
            "{}",
            bad.message
        );
        // A write says what is in the way, not just EISDIR (and so does a write to a path
        // never read).
        s.write("w.json", &json!(1)).unwrap();
        fs::remove_file(d.join("w.json")).unwrap();
        fs::create_dir(d.join("w.json")).unwrap();
        assert!(s.write("w.json", &json!(2)).is_err());
        assert!(
            problems(&d)
                .iter()
                .any(|(l, m)| *l == state_health::Level::Unusable
                    && m.contains("cannot write")
                    && m.contains("w.json is a directory")),
            "{:?}",
            problems(&d)
        );
        fs::remove_dir(d.join("w.json")).unwrap();
        match s.write("s.json", &json!({"v": 4})) {
            Err(
                e @ StoreError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                },
            ) => {
                assert!(e.to_string().contains("is a directory"), "{e}")
            }
            other => panic!("expected NotRegular(Directory), got {other:?}"),
        }
        // The operator removes it: the next read restores the copy and it is usable again.
        fs::remove_dir(d.join("s.json")).unwrap();
        assert_eq!(
            s.read::<Value>("s.json").unwrap(),
            None,
            "missing is missing"
        );
        assert!(state_health::first_unusable(&d).is_none());
        s.write("s.json", &json!({"v": 5})).unwrap();
        assert_eq!(s.read::<Value>("s.json").unwrap(), Some(json!({"v": 5})));
        assert_eq!(problems(&d), vec![]);
    }

    #[test]
    fn damage_in_place_does_not_reach_the_last_good_copy() {
        let d = tmpdir("inplace");
        let s = JsonStore::open(&d).unwrap();
        s.write("s.json", &json!({"seq": 9, "items": [1, 2, 3]}))
            .unwrap();
        let main = fs::metadata(d.join("s.json")).unwrap();
        let copy = fs::metadata(s.last_good_path("s.json")).unwrap();
        assert_ne!(main.ino(), copy.ino(), "the copy is a separate inode");
        // `echo {} > file`: parses, but as the wrong type.
        fs::write(d.join("s.json"), b"{}\n").unwrap();
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Rec {
            seq: u64,
        }
        let l = s.load::<Rec>("s.json").unwrap().unwrap();
        assert_eq!(l.value, Rec { seq: 9 });
        assert!(l.recovered.unwrap().message().contains("moved aside"));
        assert_eq!(
            s.read::<Rec>("s.json").unwrap(),
            Some(Rec { seq: 9 }),
            "written back"
        );
        // Truncation in place.
        fs::OpenOptions::new()
            .write(true)
            .open(d.join("s.json"))
            .unwrap()
            .set_len(5)
            .unwrap();
        assert_eq!(s.read::<Rec>("s.json").unwrap(), Some(Rec { seq: 9 }));
        // Both gone: the error. Moved aside, so the path is free again: a warning until the
        // file is written, not unusable.
        fs::write(d.join("s.json"), b"garbage").unwrap();
        fs::write(s.last_good_path("s.json"), b"").unwrap();
        assert!(matches!(
            s.read::<Rec>("s.json"),
            Err(StoreError::Corrupt { .. })
        ));
        let p = problems(&d);
        assert!(
            p.len() == 1
                && p[0].0 == state_health::Level::Warning
                && p[0].1.contains("last good copy is unusable too"),
            "{p:?}"
        );
        s.write("s.json", &json!({"seq": 10})).unwrap();
        assert_eq!(problems(&d), vec![]);
    }
}
