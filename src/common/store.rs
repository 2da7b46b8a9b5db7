//! Crash-safe JSON state files: every write goes to a unique temp file in the same
//! directory, is fsynced, renamed over the target, and the directory is fsynced. A reader
//! therefore sees the old or the new file, never a torn one, even after SIGKILL.
//! State files hold prompts and answers, so they are created 0600 whatever the umask.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::common::proc::pid_alive;
use crate::common::sync::lock;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file this old has no live writer (a write takes milliseconds), even when the pid
/// in its name now belongs to another process (pid reuse after a kill -9 and restart).
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);
/// How long an unparsable file must stay unchanged before it counts as corrupt.
const SETTLE_WAIT: Duration = Duration::from_millis(50);
/// Re-reads of a file that keeps changing while it does not parse.
const MAX_REREADS: u32 = 3;

/// The permission bits a file written by [`write_atomic_with`] ends up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// 0600: state files (they hold prompts, answers and tokens' neighbours).
    Private,
    /// Exactly these bits, umask notwithstanding (an overwrite keeping the old file's mode).
    Exact(u32),
    /// What a plain create would give: 0666 minus the umask.
    UmaskDefault,
}

/// Identifies one version of a file: an atomic rename always brings a new inode, and an
/// in-place edit changes the size or mtime. Used to cache a parsed file safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileKey {
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// The modification time as a `SystemTime` (before the epoch clamps to it).
    pub fn modified(&self) -> SystemTime {
        let ns = u64::try_from(self.mtime_ns.max(0)).unwrap_or(u64::MAX);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

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
        let bytes = self.json_bytes(name, value)?;
        let _guard = lock(&self.write_lock);
        write_atomic(&self.dir, name, &bytes)
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
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&self.dir, e))?;
        Ok(true)
    }

    /// Reads `name`. Missing → `Ok(None)`. Unparsable (and unchanged for 50 ms, so not a
    /// hand edit caught mid-write) → the file is moved aside to `<name>.corrupt-<ms>` and
    /// `Err(Corrupt)` is returned so the caller can warn and fall back.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        Ok(self.read_keyed(name)?.map(|(v, _)| v))
    }

    /// Like `read`, with the key of the version that was parsed (taken from the open file,
    /// so key and content always belong together).
    pub fn read_keyed<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<(T, FileKey)>, StoreError> {
        check_name(name)?;
        let path = self.path(name);
        let mut rereads = 0;
        loop {
            let (bytes, key) = match read_with_key(&path) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err(&path, e)),
            };
            let source = match serde_json::from_slice(&bytes) {
                Ok(v) => return Ok(Some((v, key))),
                Err(e) => e,
            };
            // Someone editing the file in place (not by rename) can be caught mid-write:
            // only a file that stays the same for a moment and still does not parse is
            // corrupt. A changed one is read again.
            std::thread::sleep(SETTLE_WAIT);
            let now = fs::metadata(&path).ok().map(|m| FileKey::of(&m));
            if now.is_some_and(|k| k != key) && rereads < MAX_REREADS {
                rereads += 1;
                continue;
            }
            let to = self
                .dir
                .join(format!("{name}.corrupt-{}", crate::common::time::now_ms()));
            let moved_to = fs::rename(&path, &to).ok().map(|_| to);
            return Err(StoreError::Corrupt {
                path,
                moved_to,
                source,
            });
        }
    }

    /// The key of `name` as it is now (one `stat`), `None` when it does not exist.
    pub fn key(&self, name: &str) -> Result<Option<FileKey>, StoreError> {
        check_name(name)?;
        let path = self.path(name);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(FileKey::of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
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

/// Reads a whole file and the key of exactly the inode that was read.
fn read_with_key(path: &Path) -> io::Result<(Vec<u8>, FileKey)> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok((bytes, FileKey::of(&meta)))
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

/// temp in the same dir → write → fsync → rename → fsync dir, as a 0600 state file.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic_with(dir, name, bytes, FileMode::Private)
}

/// The atomic write with the final mode set on the temp before the rename, so the file is
/// never visible with wider bits than asked for. The temp is removed on any failure before
/// the rename.
pub fn write_atomic_with(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: FileMode,
) -> Result<(), StoreError> {
    let tmp = write_temp(dir, name, bytes, mode)?;
    let target = dir.join(name);
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&target, e));
    }
    // The rename is only durable once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// A synced temp beside `name` holding `bytes`, with its final mode; removed on failure.
fn write_temp(dir: &Path, name: &str, bytes: &[u8], mode: FileMode) -> Result<PathBuf, StoreError> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        match mode {
            // Created private; an exact mode is applied below, once the file is ours.
            FileMode::Private | FileMode::Exact(_) => opts.mode(0o600),
            FileMode::UmaskDefault => opts.mode(0o666),
        };
        let mut f = opts.open(&tmp).map_err(|e| io_err(&tmp, e))?;
        if let FileMode::Exact(bits) = mode {
            f.set_permissions(fs::Permissions::from_mode(bits & 0o7777))
                .map_err(|e| io_err(&tmp, e))?;
        }
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
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
        assert_eq!(names, ["a.json"]);
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
