//! Writing, creating and removing state files, each with its last-good copy.

use std::fs;
use std::io;

use serde::Serialize;

use super::atomic::{sync_dir, write_atomic, write_temp, FileMode};
use super::error::{io_err, rename_err, StoreError};
use super::{check_name, last_good_name, JsonStore};
use crate::common::state_health::{self, Level};
use crate::common::sync::lock;

impl JsonStore {
    /// Writes `value` as pretty JSON to `name`, atomically and durably, and its last-good
    /// copy with it (one directory sync for both).
    pub fn write<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let bytes = self.json_bytes(name, value)?;
        let _guard = lock(&self.write_lock);
        self.write_locked(name, &bytes)
    }

    /// The file and its copy: both temps synced, then both renamed, then the directory
    /// synced, so an acknowledged write is in both. A copy that cannot be kept is a
    /// warning, never a failed write (the file itself is durable).
    fn write_locked(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let copy_name = last_good_name(name);
        let copy_tmp = write_temp(&self.dir, &copy_name, bytes, FileMode::Private);
        let tmp = match write_temp(&self.dir, name, bytes, FileMode::Private) {
            Ok(t) => t,
            Err(e) => {
                if let Ok(t) = copy_tmp {
                    let _ = fs::remove_file(t);
                }
                return Err(e);
            }
        };
        let target = self.dir.join(name);
        if let Err(e) = fs::rename(&tmp, &target) {
            let _ = fs::remove_file(&tmp);
            if let Ok(t) = copy_tmp {
                let _ = fs::remove_file(t);
            }
            let e = rename_err(&target, e);
            if let StoreError::NotRegular { .. } = e {
                // Nothing can be written there until it is removed.
                let message = format!("cannot write: {e}");
                state_health::report_unless_unusable(&target, Level::Unusable, message);
            }
            return Err(e);
        }
        let copy_path = self.dir.join(&copy_name);
        let copied = copy_tmp.and_then(|t| {
            fs::rename(&t, &copy_path).map_err(|e| {
                let _ = fs::remove_file(&t);
                rename_err(&copy_path, e)
            })
        });
        sync_dir(&self.dir)?;
        state_health::written(&target);
        match copied {
            Ok(()) => state_health::written(&copy_path),
            Err(e) => state_health::report(
                &copy_path,
                Level::Warning,
                format!(
                    "cannot keep the last good copy of {}: {e}",
                    target.display()
                ),
            ),
        }
        Ok(())
    }

    /// `value` as pretty JSON and a newline, for the file `name` (checked).
    fn json_bytes<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<Vec<u8>, StoreError> {
        check_name(name)?;
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| {
            io_err(
                &self.path(name),
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Writes `value` to `name` only if no file of that name exists, atomically and
    /// durably: the synced temp is hard-linked to the name, which fails when it is taken,
    /// so two processes sharing the directory never overwrite each other's first write.
    /// Returns false (and writes nothing) when the file already existed.
    pub fn create<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<bool, StoreError> {
        let bytes = self.json_bytes(name, value)?;
        let _guard = lock(&self.write_lock);
        let tmp = write_temp(&self.dir, name, &bytes, FileMode::Private)?;
        let target = self.dir.join(name);
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err(&target, e)),
        }
        // The copy is written as by `write` (the file now holds exactly these bytes).
        if let Err(e) = write_atomic(&self.dir, &last_good_name(name), &bytes) {
            state_health::report(
                &self.last_good_path(name),
                Level::Warning,
                format!(
                    "cannot keep the last good copy of {}: {e}",
                    target.display()
                ),
            );
        }
        sync_dir(&self.dir)?;
        state_health::written(&target);
        Ok(true)
    }

    /// Removes `name` and its last-good copy (a record that is gone for good). Missing is
    /// fine.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let _guard = lock(&self.write_lock);
        for path in [self.last_good_path(name), self.path(name)] {
            match fs::remove_file(&path) {
                Ok(()) => state_health::written(&path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::store::test_support::{mkfifo, promptly, s_read, tmpdir};
    use crate::common::store::write_atomic_with;
    use serde_json::{json, Value};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_writes_only_when_the_file_is_absent() {
        let dir = tmpdir("create");
        let store = JsonStore::open(&dir).unwrap();
        assert!(store.create("a.json", &json!({"n": 1})).unwrap());
        assert!(!store.create("a.json", &json!({"n": 2})).unwrap());
        assert_eq!(
            store.read::<Value>("a.json").unwrap(),
            Some(json!({"n": 1}))
        );
        // No temp is left behind either way.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, [".a.json.last-good", "a.json"]);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn write_then_read_round_trips() {
        let d = tmpdir("rt");
        let s = JsonStore::open(&d).unwrap();
        s.write("a.json", &json!({"seq": 1})).unwrap();
        assert_eq!(s.read::<Value>("a.json").unwrap(), Some(json!({"seq": 1})));
        assert_eq!(s.read::<Value>("missing.json").unwrap(), None);
        let leftovers: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        // The file and its last-good copy, no temp.
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn state_files_are_written_0600_whatever_the_umask() {
        let d = tmpdir("mode");
        let s = JsonStore::open(&d).unwrap();
        s.write("a.json", &json!({"prompt": "secret"})).unwrap();
        let mode = fs::metadata(d.join("a.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        write_atomic_with(&d, "b.sh", b"#!/bin/sh\n", FileMode::Exact(0o755)).unwrap();
        let mode = fs::metadata(d.join("b.sh")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{mode:o}");
    }

    #[test]
    fn fifo_at_a_state_path_does_not_block_a_write() {
        let d = tmpdir("fifo-write");
        mkfifo(&d.join("s.json"));
        let dd = d.clone();
        promptly(move || JsonStore::open(&dd).unwrap().write("s.json", &json!(1))).unwrap();
        assert_eq!(s_read(&d, "s.json"), json!(1));
        // A FIFO where the copy goes does not block either: the rename replaces it.
        mkfifo(&d.join(".t.json.last-good"));
        let dd = d.clone();
        promptly(move || JsonStore::open(&dd).unwrap().write("t.json", &json!(2))).unwrap();
        let dd = d.clone();
        assert_eq!(
            promptly(move || JsonStore::open(&dd)
                .unwrap()
                .read_last_good::<Value>("t.json"))
            .unwrap(),
            Some(json!(2))
        );
    }

    #[test]
    fn remove_takes_the_last_good_copy_too() {
        let d = tmpdir("remove");
        let s = JsonStore::open(&d).unwrap();
        s.write("r.json", &json!(1)).unwrap();
        s.remove("r.json").unwrap();
        s.remove("r.json").unwrap();
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
    }

    /// Not a check: prints what the last-good copy costs per write here
    /// (`cargo test --lib write_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn write_cost_of_the_last_good_copy() {
        let d = tmpdir("cost");
        let s = JsonStore::open(&d).unwrap();
        for size in [200usize, 2_000, 20_000] {
            let doc = json!({"text": "x".repeat(size)});
            let bytes = serde_json::to_vec_pretty(&doc).unwrap();
            let n = 200;
            let t = std::time::Instant::now();
            for _ in 0..n {
                write_atomic(&d, "plain.json", &bytes).unwrap();
            }
            let plain = t.elapsed() / n;
            let t = std::time::Instant::now();
            for _ in 0..n {
                s.write("kept.json", &doc).unwrap();
            }
            let kept = t.elapsed() / n;
            println!("{size:>6} B: file only {plain:?}/write, with last-good copy {kept:?}/write");
        }
    }
}
