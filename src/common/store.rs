//! Crash-safe JSON state files: every write goes to a unique temp file in the same
//! directory, is fsynced, renamed over the target, and the directory is fsynced. A reader
//! therefore sees the old or the new file, never a torn one, even after SIGKILL.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::common::proc::pid_alive;
use crate::common::sync::lock;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Errors from the state store. Each names the file involved.
#[derive(Debug)]
pub enum StoreError {
    /// The directory or file could not be created, read, written, synced or renamed.
    Io { path: PathBuf, source: io::Error },
    /// The file exists but is not valid JSON for the expected type; it was moved to
    /// `moved_to` so the next start does not trip over it again.
    Corrupt {
        path: PathBuf,
        moved_to: Option<PathBuf>,
        source: serde_json::Error,
    },
    /// A state file name that is not a single plain path component.
    BadName(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StoreError::Corrupt {
                path,
                moved_to,
                source,
            } => match moved_to {
                Some(to) => write!(
                    f,
                    "{} is corrupt ({source}); moved aside to {}",
                    path.display(),
                    to.display()
                ),
                None => write!(
                    f,
                    "{} is corrupt ({source}); could not move it aside",
                    path.display()
                ),
            },
            StoreError::BadName(name) => write!(f, "invalid state file name {name:?}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Corrupt { source, .. } => Some(source),
            StoreError::BadName(_) => None,
        }
    }
}

fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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

    /// Writes `value` as pretty JSON to `name`, atomically and durably.
    pub fn write<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        check_name(name)?;
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| {
            io_err(
                &self.path(name),
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        bytes.push(b'\n');
        let _guard = lock(&self.write_lock);
        write_atomic(&self.dir, name, &bytes)
    }

    /// Reads `name`. Missing → `Ok(None)`. Unparsable → the file is moved aside to
    /// `<name>.corrupt-<ms>` and `Err(Corrupt)` is returned so the caller can warn and
    /// fall back to defaults.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        check_name(name)?;
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(source) => {
                let to = self
                    .dir
                    .join(format!("{name}.corrupt-{}", crate::common::time::now_ms()));
                let moved_to = fs::rename(&path, &to).ok().map(|_| to);
                Err(StoreError::Corrupt {
                    path,
                    moved_to,
                    source,
                })
            }
        }
    }

    /// Like `read`, but a corrupt file is logged (and moved aside) and treated as missing.
    pub fn read_or_warn<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.read(name) {
            Err(e @ StoreError::Corrupt { .. }) => {
                log::warn!("state: {e}");
                Ok(None)
            }
            other => other,
        }
    }

    /// Removes `.<name>.<pid>.<n>.tmp` files whose writer is gone. A live writer's temp
    /// (another daemon sharing the directory) is left alone.
    fn sweep_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = temp_owner(&name) else {
                continue;
            };
            if pid != std::process::id() && !pid_alive(pid) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The pid embedded in one of our temp file names, if `name` is one.
fn temp_owner(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let _counter = parts.next()?;
    parts.next()?.parse().ok()
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

/// temp in the same dir → write → fsync → rename → fsync dir. The temp is removed on
/// any failure before the rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let target = dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &target).map_err(|e| io_err(&target, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // The rename is only durable once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "baa-store-{tag}-{}",
            crate::common::ids::new_id("t")
        ));
        fs::create_dir_all(&d).unwrap();
        d
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
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

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
