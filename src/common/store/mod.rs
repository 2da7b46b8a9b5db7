//! Crash-safe JSON state files that heal. Every write goes to a unique temp file in the
//! same directory, is fsynced, renamed over the target, and the directory is fsynced: a
//! reader sees the old or the new file, never a torn one, even after SIGKILL.
//!
//! The rule for every state file of the three daemons:
//! - only a regular file is read, and looking never blocks: the file is opened with
//!   `O_NONBLOCK | O_NOFOLLOW` and checked with `fstat` on the open descriptor, so a FIFO,
//!   socket, device, directory or symlink at a state path is an error that names the path
//!   and what is there (a FIFO opened for reading would otherwise block until a writer
//!   came, and hang whichever thread looked);
//! - each write also refreshes a last-good copy, `.<name>.last-good` beside the file: a
//!   separate inode written and synced like the file, so damage in place (`echo {} >`,
//!   truncation) never reaches it, and listings of `*.json` never see it;
//! - a bad read (garbage, truncated, the wrong type, not a regular file, an I/O error)
//!   falls back to the copy and writes it back; what happened is logged and kept in
//!   [`state_health`](crate::common::state_health) for the daemon's `warnings`, and a
//!   file that cannot be written back (a directory in its place) is `Unusable` there, so
//!   `/readyz` says 503 until it is fixed or rewritten.
//!
//! Versions and seqs are the owners' business (they know their records), but they build
//! on this: a copy is never behind an acknowledged write.
//! State files hold prompts and answers, so they are created 0600 whatever the umask.

mod atomic;
mod error;
mod kind;
mod read;
mod regular;
#[cfg(test)]
mod test_support;
mod write;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

pub use atomic::{write_atomic, write_atomic_at, write_atomic_with, FileMode};
pub use error::StoreError;
pub use kind::FileKind;
pub use read::{Loaded, Recovery};
pub use regular::{open_regular, read_regular, FileKey};

use crate::common::proc::pid_alive;
use atomic::{temp_owner, STALE_TEMP_AGE};
use error::io_err;

/// A directory of JSON state files.
pub struct JsonStore {
    dir: PathBuf,
    // Serializes writers in this process; other processes use unique temp names.
    write_lock: Mutex<()>,
}

impl JsonStore {
    /// Creates the directory if needed and sweeps temp files left by dead writers.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let store = Self {
            dir,
            write_lock: Mutex::new(()),
        };
        store.sweep_temps();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the last-good copy of `name` is kept.
    pub fn last_good_path(&self, name: &str) -> PathBuf {
        self.dir.join(last_good_name(name))
    }

    /// The key of `name` as it is now (one `lstat`), `None` when it does not exist. A
    /// non-regular file has a key too (that differs from any regular file's), so a cache
    /// keyed on it re-reads and finds out.
    pub fn key(&self, name: &str) -> Result<Option<FileKey>, StoreError> {
        check_name(name)?;
        let path = self.path(name);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some(FileKey::of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Removes `.<name>.<pid>.<n>.tmp` files left by a writer killed mid-write: those whose
    /// pid is gone, and any older than a minute (the pid may have been reused since). A live
    /// writer's fresh temp (another daemon sharing the directory) is left alone.
    fn sweep_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = temp_owner(&name) else {
                continue;
            };
            let stale = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= STALE_TEMP_AGE);
            let orphan = pid != std::process::id() && !pid_alive(pid);
            if orphan || stale {
                match fs::remove_file(entry.path()) {
                    Ok(()) => log::info!("state: removed a leftover temp file {name}"),
                    Err(e) => log::warn!("state: cannot remove leftover temp {name}: {e}"),
                }
            }
        }
    }
}

/// The name of `name`'s last-good copy: hidden, and not ending in `.json`, so a listing of
/// a directory of records skips it.
fn last_good_name(name: &str) -> String {
    format!(".{name}.last-good")
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::store::test_support::tmpdir;
    use serde_json::{json, Value};
    use std::fs::File;
    use std::time::Duration;

    #[test]
    fn sweeps_dead_writers_temps_only() {
        let d = tmpdir("sweep");
        let dead = d.join(".s.json.999999999.3.tmp");
        let live = d.join(format!(".s.json.{}.3.tmp", std::process::id()));
        fs::write(&dead, b"x").unwrap();
        fs::write(&live, b"x").unwrap();
        JsonStore::open(&d).unwrap();
        assert!(!dead.exists());
        assert!(live.exists());
    }

    #[test]
    fn temp_left_by_a_kill_9_is_swept_even_when_its_pid_was_reused() {
        let d = tmpdir("sweep-old");
        // Our own (live) pid in the name, as after a restart that got the dead writer's pid.
        let old = d.join(format!(".s.json.{}.7.tmp", std::process::id()));
        fs::write(&old, b"x").unwrap();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        JsonStore::open(&d).unwrap();
        assert!(!old.exists(), "{} survived the sweep", old.display());
    }

    #[test]
    fn key_changes_on_every_rewrite_and_matches_what_was_read() {
        let d = tmpdir("key");
        let s = JsonStore::open(&d).unwrap();
        assert_eq!(s.key("k.json").unwrap(), None);
        s.write("k.json", &json!({"v": 1})).unwrap();
        let (v, k1) = s.read_keyed::<Value>("k.json").unwrap().unwrap();
        assert_eq!((v, Some(k1)), (json!({"v": 1}), s.key("k.json").unwrap()));
        // Same size, maybe the same mtime tick: the rename still brings a new inode.
        s.write("k.json", &json!({"v": 2})).unwrap();
        let k2 = s.key("k.json").unwrap().unwrap();
        assert_ne!(k1, k2);
    }

    #[test]
    fn refuses_path_names() {
        let s = JsonStore::open(tmpdir("names")).unwrap();
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(
                matches!(s.write(bad, &json!(1)), Err(StoreError::BadName(_))),
                "{bad}"
            );
        }
    }
}
