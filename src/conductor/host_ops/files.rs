//! `/v1/files/read` and `/v1/files/write`. Reads are bounded in bytes and time and take
//! regular files only; writes go through the atomic-write protocol and never land in the
//! daemons' state or logs trees. Both refuse the conductor's own `/proc` entry.

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};

use super::bounded_read::{open_regular, read_opened, ReadError};
use super::dir_fd::{entry_at, make_dir_at, open_dir};
use super::protect::Protected;
use super::{opt_bool, opt_str, resolve_path, union, OpError};
use baa::common::store::{write_atomic_at, FileMode};
use baa::common::time::rfc3339_from_ms;

/// Largest file `files/read` returns.
pub const READ_CAP: u64 = 8 * 1024 * 1024;
/// Longest a read may take (a stream with no end of file, a slow mount).
pub const READ_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Base64,
}

fn encoding(body: &Map<String, Value>) -> Result<Encoding, OpError> {
    match opt_str(body, &["encoding"])?.as_deref() {
        None | Some("utf8") | Some("utf-8") => Ok(Encoding::Utf8),
        Some("base64") => Ok(Encoding::Base64),
        Some(other) => Err(OpError::invalid(format!(
            "encoding must be utf8 or base64, got {other:?}."
        ))),
    }
}

fn read_result_empty() -> Value {
    json!({ "path": null, "content": "", "encoding": "utf8", "size": 0, "modifiedAt": null })
}

fn write_result_empty() -> Value {
    json!({ "path": null, "created": false, "overwritten": false, "bytesWritten": 0 })
}

fn echo(body: &Map<String, Value>, keys: &[&str]) -> Value {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = body.get(*k) {
            m.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(m)
}

const READ_INPUT: &[&str] = &["path", "cwd", "encoding"];
const WRITE_INPUT: &[&str] = &["path", "cwd", "encoding", "overwrite", "createParents"];

pub fn read(body: &Map<String, Value>, protected: &Protected) -> Value {
    let input = echo(body, READ_INPUT);
    match do_read(body, protected) {
        Ok(result) => union("files/read", input, result, None),
        Err(e) => union("files/read", input, read_result_empty(), Some(e)),
    }
}

/// The answer of a read refused before it started (no slot free).
pub fn read_refused(body: &Map<String, Value>, e: OpError) -> Value {
    union(
        "files/read",
        echo(body, READ_INPUT),
        read_result_empty(),
        Some(e),
    )
}

/// The answer of a write refused before it started (no slot free).
pub fn write_refused(body: &Map<String, Value>, e: OpError) -> Value {
    union(
        "files/write",
        echo(body, WRITE_INPUT),
        write_result_empty(),
        Some(e),
    )
}

fn do_read(body: &Map<String, Value>, protected: &Protected) -> Result<Value, OpError> {
    let path = opt_str(body, &["path"])?.ok_or_else(|| OpError::invalid("path is required."))?;
    let cwd = opt_str(body, &["cwd"])?;
    let enc = encoding(body)?;
    let full = resolve_path(&path, cwd.as_deref())?;
    let started = Instant::now();
    // The real path (symlinks, `..`, /proc/self resolved) is what gets checked and read.
    let real = fs::canonicalize(&full).map_err(|e| read_error(&full, e.into()))?;
    protected.check_read(&real)?;
    let (file, meta) = open_regular(&real).map_err(|e| read_error(&full, e))?;
    // A directory on the path swapped for a symlink between the check and the open leads
    // the open somewhere else (into /proc/<our pid>, once in 600 racing reads): the file
    // actually opened is checked again before a byte is read.
    protected.check_opened(&file, &full)?;
    let bytes = read_opened(file, &meta, READ_CAP, started + READ_DEADLINE)
        .map_err(|e| read_error(&full, e))?;
    let size = bytes.len();
    let content = match enc {
        Encoding::Utf8 => String::from_utf8(bytes).map_err(|_| {
            OpError::new(
                "INVALID_ENCODING",
                format!(
                    "{} is not valid UTF-8; read it with \"encoding\": \"base64\".",
                    full.display()
                ),
            )
        })?,
        Encoding::Base64 => base64_encode(&bytes),
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| rfc3339_from_ms(d.as_millis() as u64));
    Ok(json!({
        "path": full,
        "content": content,
        "encoding": if enc == Encoding::Utf8 { "utf8" } else { "base64" },
        "size": size,
        "modifiedAt": modified,
    }))
}

/// The operation error for a failed read of `shown`.
fn read_error(shown: &Path, e: ReadError) -> OpError {
    let p = shown.display();
    match e {
        ReadError::NotFound => OpError::new("FILE_NOT_FOUND", format!("{p} does not exist.")),
        ReadError::PermissionDenied => {
            OpError::new("PERMISSION_DENIED", format!("{p} is not readable."))
        }
        ReadError::Directory => OpError::new("NOT_A_FILE", format!("{p} is not a regular file.")),
        ReadError::Special(what) => OpError::new(
            "SPECIAL_FILE",
            format!("{p} is {what}; only regular files can be read."),
        ),
        ReadError::TooLarge => OpError::new(
            "FILE_TOO_LARGE",
            format!("{p} is larger than the limit of {READ_CAP} bytes."),
        ),
        ReadError::TimedOut => OpError::new(
            "READ_TIMEOUT",
            format!(
                "{p} did not reach end of file within {} s (a stream, not a file?).",
                READ_DEADLINE.as_secs()
            ),
        ),
        ReadError::Io(e) => OpError::new("READ_FAILED", format!("{p}: {e}.")),
    }
}

pub fn write(body: &Map<String, Value>, protected: &Protected) -> Value {
    let input = echo(body, WRITE_INPUT);
    match do_write(body, protected) {
        Ok(result) => union("files/write", input, result, None),
        Err(e) => union("files/write", input, write_result_empty(), Some(e)),
    }
}

fn do_write(body: &Map<String, Value>, protected: &Protected) -> Result<Value, OpError> {
    let path = opt_str(body, &["path"])?.ok_or_else(|| OpError::invalid("path is required."))?;
    let cwd = opt_str(body, &["cwd"])?;
    let content = match body.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(OpError::invalid("content must be a string.")),
    };
    let enc = encoding(body)?;
    let overwrite = opt_bool(body, &["overwrite"], false)?;
    let create_parents = opt_bool(body, &["createParents", "create_parents"], false)?;
    let bytes = match enc {
        Encoding::Utf8 => content.into_bytes(),
        Encoding::Base64 => base64_decode(&content)
            .ok_or_else(|| OpError::invalid("content is not valid base64."))?,
    };
    let full = resolve_path(&path, cwd.as_deref())?;
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| *n != "." && *n != "..")
        .ok_or_else(|| OpError::invalid("path must name a file."))?
        .to_string();
    let parent = full
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| OpError::invalid("path has no parent directory."))?;
    // Where the file would really land, decided (and refused) before any directory is
    // created: `createParents` must not leave `state/newdir/a/b` behind a refusal.
    let (base, missing) = real_parent(&parent)?;
    let real_parent = missing.iter().fold(base.clone(), |p, part| p.join(part));
    protected.check_write(&real_parent, &full)?;
    if !missing.is_empty() && !create_parents {
        return Err(OpError::new(
            "PARENT_NOT_FOUND",
            format!(
                "{} does not exist; pass \"createParents\": true to create it.",
                parent.display()
            ),
        ));
    }
    // The path may change from here on (a directory swapped for a symlink into a protected
    // tree): the directory is opened once, what was opened is checked, and the parents,
    // the temp and the rename all go through descriptors, never through the path again.
    let mut dir = open_dir(&base).map_err(|e| parent_error(&parent, e))?;
    protected.check_write_opened(&dir, &full)?;
    for part in &missing {
        dir = make_dir_at(&dir, part).map_err(|e| {
            OpError::new(
                "WRITE_FAILED",
                format!("cannot create {}: {e}.", parent.display()),
            )
        })?;
    }
    if !missing.is_empty() {
        // Each part was opened without following a symlink, below a directory checked
        // above; the one written in is checked all the same.
        protected.check_write_opened(&dir, &full)?;
    }
    let target = real_parent.join(&name);
    let existing = entry_at(&dir, name.as_ref())
        .map_err(|e| OpError::new("WRITE_FAILED", format!("{}: {e}.", target.display())))?;
    if let Some(entry) = &existing {
        if entry.is_dir {
            return Err(OpError::new(
                "NOT_A_FILE",
                format!("{} is a directory.", target.display()),
            ));
        }
        if !overwrite {
            return Err(OpError::new(
                "FILE_ALREADY_EXISTS",
                format!(
                    "{} already exists; pass \"overwrite\": true to replace it.",
                    target.display()
                ),
            ));
        }
    }
    // An overwrite keeps the old file's mode (set on the temp, before the rename, so the
    // file is never visible with other bits); a new file gets what a plain create gives.
    let mode = match &existing {
        Some(e) if e.is_file => FileMode::Exact(e.mode),
        _ => FileMode::UmaskDefault,
    };
    // Atomic replace: the old file stays whole until the new one is on disk.
    write_atomic_at(&dir, &real_parent, &name, &bytes, mode)
        .map_err(|e| OpError::new("WRITE_FAILED", e.to_string()))?;
    let existed = existing.is_some();
    Ok(json!({
        "path": target,
        "created": !existed,
        "overwritten": existed,
        "bytesWritten": bytes.len(),
    }))
}

/// The canonical form of `parent`'s deepest existing ancestor (symlinks, `..` resolved)
/// and the components below it that do not exist yet, top down: they cannot hide a
/// symlink since they do not exist. `.`/`..` among the missing components are refused:
/// their meaning depends on directories not yet created.
fn real_parent(parent: &Path) -> Result<(PathBuf, Vec<OsString>), OpError> {
    let mut base = parent;
    let mut missing: Vec<OsString> = Vec::new();
    loop {
        match fs::symlink_metadata(base) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(OpError::new(
                    "WRITE_FAILED",
                    format!("{}: {e}.", base.display()),
                ))
            }
        }
        match base.components().next_back() {
            Some(Component::Normal(n)) => missing.push(n.to_os_string()),
            _ => {
                return Err(OpError::invalid(format!(
                    "{} uses . or .. below a directory that does not exist.",
                    parent.display()
                )))
            }
        }
        base = base
            .parent()
            .ok_or_else(|| OpError::invalid("path has no existing ancestor."))?;
    }
    let real = fs::canonicalize(base)
        .map_err(|e| OpError::new("WRITE_FAILED", format!("{}: {e}.", base.display())))?;
    if missing.is_empty() && !real.is_dir() {
        return Err(not_a_directory(parent));
    }
    missing.reverse();
    Ok((real, missing))
}

/// The error for a parent directory that could not be opened.
fn parent_error(parent: &Path, e: std::io::Error) -> OpError {
    match e.raw_os_error() {
        Some(libc::ENOTDIR) => not_a_directory(parent),
        Some(libc::ENOENT) => OpError::new(
            "PARENT_NOT_FOUND",
            format!("{} does not exist.", parent.display()),
        ),
        Some(libc::ELOOP) => OpError::new(
            "WRITE_FAILED",
            format!(
                "{} was replaced by a symbolic link while it was being opened; retry.",
                parent.display()
            ),
        ),
        _ => OpError::new("WRITE_FAILED", format!("{}: {e}.", parent.display())),
    }
}

fn not_a_directory(parent: &Path) -> OpError {
    OpError::new(
        "PARENT_NOT_FOUND",
        format!("{} is not a directory.", parent.display()),
    )
}

/// The standard alphabet with `=` padding required, as the hand-written codec it replaced
/// had it. Non-zero trailing bits stay accepted on decode, so nothing that decoded before is
/// refused now.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

pub fn base64_encode(data: &[u8]) -> String {
    B64.encode(data)
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    // Line-wrapped base64 (the `base64` tool wraps at 76 columns) is accepted; the engine
    // refuses whitespace, so it is dropped first.
    let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    B64.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\x10bar"] {
            assert_eq!(base64_decode(&base64_encode(data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert!(base64_decode("Zm9=v").is_none());
        assert!(base64_decode("Z===").is_none());
        assert!(base64_decode("Zm9v").is_some_and(|d| d == b"foo"));
        assert_eq!(
            base64_decode("Zm9v\nYmFy\r\n").as_deref(),
            Some(&b"foobar"[..])
        );
        assert!(base64_decode("Zm8").is_none(), "padding stays required");
    }

    #[test]
    fn write_read_and_refusals() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("files"));
        let protected = dir.join("state");
        fs::create_dir_all(&protected).unwrap();
        let protected = Protected::new(&[&protected]);
        let cwd = dir.display().to_string();

        let v = write(
            &body(json!({"path": "a/b.txt", "cwd": cwd, "content": "hi"})),
            &protected,
        );
        assert_eq!(v["error"]["code"], "PARENT_NOT_FOUND", "{v}");
        let v = write(
            &body(json!({"path": "a/b.txt", "cwd": cwd, "content": "hi", "createParents": true})),
            &protected,
        );
        assert_eq!(
            (
                v["ok"].clone(),
                v["result"]["created"].clone(),
                v["result"]["bytesWritten"].clone()
            ),
            (json!(true), json!(true), json!(2)),
            "{v}"
        );
        let v = write(
            &body(json!({"path": "a/b.txt", "cwd": cwd, "content": "x"})),
            &protected,
        );
        assert_eq!(v["error"]["code"], "FILE_ALREADY_EXISTS", "{v}");
        let v = write(
            &body(json!({"path": "a/b.txt", "cwd": cwd, "content": "bye", "overwrite": true})),
            &protected,
        );
        assert_eq!(v["result"]["overwritten"], true, "{v}");
        let v = read(&body(json!({"path": "a/b.txt", "cwd": cwd})), &protected);
        assert_eq!(
            (v["result"]["content"].clone(), v["result"]["size"].clone()),
            (json!("bye"), json!(3)),
            "{v}"
        );
        let v = read(
            &body(json!({"path": "a/b.txt", "cwd": cwd, "encoding": "base64"})),
            &protected,
        );
        assert_eq!(v["result"]["content"], "Ynll");
        let v = read(&body(json!({"path": "nope.txt", "cwd": cwd})), &protected);
        assert_eq!(v["error"]["code"], "FILE_NOT_FOUND");
        let v = read(&body(json!({"path": "a", "cwd": cwd})), &protected);
        assert_eq!(v["error"]["code"], "NOT_A_FILE");
        let v = write(
            &body(json!({"path": "state/x.json", "cwd": cwd, "content": "{}"})),
            &protected,
        );
        assert_eq!(v["error"]["code"], "PROTECTED_PATH", "{v}");
        let v = write(
            &body(json!({"path": "c.txt", "cwd": cwd, "content": 5})),
            &protected,
        );
        assert_eq!(v["error"]["code"], "INVALID_INPUT");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn refusal_comes_before_any_parent_is_created() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("files"));
        let state = dir.join("state");
        fs::create_dir_all(&state).unwrap();
        let protected = Protected::new(&[&state]);
        let cwd = dir.display().to_string();
        for path in ["state/newdir/a/b/x.json", "link/newdir/x.json"] {
            if path.starts_with("link") {
                std::os::unix::fs::symlink(&state, dir.join("link")).unwrap();
            }
            let v = write(
                &body(json!({"path": path, "cwd": cwd, "content": "{}", "createParents": true})),
                &protected,
            );
            assert_eq!(v["error"]["code"], "PROTECTED_PATH", "{path}: {v}");
            assert!(!state.join("newdir").exists(), "{path} created a dir");
        }
        let v = write(
            &body(
                json!({"path": "missing/../state/x.json", "cwd": cwd, "content": "{}", "createParents": true}),
            ),
            &protected,
        );
        assert_eq!(v["error"]["code"], "INVALID_INPUT", "{v}");
        assert!(!dir.join("missing").exists());
        let _ = fs::remove_dir_all(dir);
    }

    /// The defect: a directory on the path swapped for a symlink to `/proc/<our pid>`
    /// between the path check and the open returned the conductor's own environ.
    #[cfg(target_os = "linux")]
    #[test]
    fn dir_symlink_swap_race_never_reaches_own_proc() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("files-race"));
        let real = dir.join("real");
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join("environ"), b"decoy").unwrap();
        let swapped = dir.join("d");
        let own = format!("/proc/{}", std::process::id());
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicUsize::new(0));
        let swapper = {
            let (stop, swaps, real, swapped) =
                (stop.clone(), swaps.clone(), real.clone(), swapped.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // `d` a real directory holding the decoy, then a symlink to our /proc.
                    fs::rename(&real, &swapped).unwrap();
                    fs::rename(&swapped, &real).unwrap();
                    std::os::unix::fs::symlink(&own, &swapped).unwrap();
                    fs::remove_file(&swapped).unwrap();
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let protected = Protected::new(&[]);
        let path = swapped.join("environ").display().to_string();
        let (mut decoys, mut refused) = (0, 0);
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            let v = read(&body(json!({"path": path})), &protected);
            if v["ok"] == true {
                let got = v["result"]["content"].as_str().unwrap_or_default();
                // Not the whole content in the message: it would be our environment.
                assert_eq!(got, "decoy", "read past the guard: {:.40}…", got);
                decoys += 1;
            } else if v["error"]["code"] == "PROTECTED_PATH" {
                refused += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        // Positive signs that both sides of the race were hit.
        assert!(
            decoys > 0 && refused > 0,
            "decoys {decoys}, refused {refused}"
        );
        assert!(swaps.load(Ordering::Relaxed) > 0);
        let _ = fs::remove_dir_all(dir);
    }

    /// The defect: `files/write` checked the parent's path, then wrote by path; a directory
    /// swapped for a symlink to a protected tree in between landed the write in it.
    #[test]
    fn write_dir_symlink_swap_race_never_writes_into_a_protected_dir() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("files-wrace"));
        let real = dir.join("real");
        let state = dir.join("state");
        fs::create_dir_all(&real).unwrap();
        fs::create_dir_all(&state).unwrap();
        let swapped = dir.join("d");
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, real, swapped, state) =
                (stop.clone(), real.clone(), swapped.clone(), state.clone());
            std::thread::spawn(move || {
                // A `createParents` write makes `d` itself when it finds it missing: that
                // directory is removed (only this thread makes symlinks, so it stays one).
                let clear = |d: &Path| {
                    if fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()) {
                        let _ = fs::remove_dir_all(d);
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    // `d` a real directory, then a symlink to the protected one.
                    if fs::rename(&real, &swapped).is_err() {
                        clear(&swapped);
                        continue;
                    }
                    fs::rename(&swapped, &real).unwrap();
                    if std::os::unix::fs::symlink(&state, &swapped).is_err() {
                        clear(&swapped);
                        continue;
                    }
                    fs::remove_file(&swapped).unwrap();
                }
            })
        };
        let protected = Protected::new(&[&state]);
        // Into `d` itself, and through a parent `createParents` makes inside `d`.
        let paths = [swapped.join("x.txt"), swapped.join("sub/x.txt")];
        let (mut written, mut refused) = (0, 0);
        // At least 3 s, and until both sides of the race were seen (at most 30 s).
        let started = std::time::Instant::now();
        for path in paths.iter().cycle() {
            if started.elapsed() >= Duration::from_secs(3)
                && ((written > 0 && refused > 0) || started.elapsed() >= Duration::from_secs(30))
            {
                break;
            }
            let v = write(
                &body(
                    json!({"path": path, "content": "w", "overwrite": true, "createParents": true}),
                ),
                &protected,
            );
            if v["ok"] == true {
                written += 1;
            } else if v["error"]["code"] == "PROTECTED_PATH" {
                refused += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        let inside: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let _ = fs::remove_dir_all(&dir);
        println!("racing writes: {written} written, {refused} refused");
        assert_eq!(
            inside,
            Vec::<std::ffi::OsString>::new(),
            "written {written}, refused {refused}"
        );
        // Positive signs that both sides of the race were hit.
        assert!(
            written > 0 && refused > 0,
            "written {written}, refused {refused}"
        );
    }

    #[test]
    fn overwrite_keeps_the_old_files_mode() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("files"));
        fs::create_dir_all(&dir).unwrap();
        let protected = Protected::new(&[]);
        for mode in [0o755, 0o600, 0o640] {
            let f = dir.join("run.sh");
            fs::write(&f, b"old").unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            let v = write(
                &body(
                    json!({"path": f.display().to_string(), "content": "new", "overwrite": true}),
                ),
                &protected,
            );
            assert_eq!(v["ok"], true, "{v}");
            let got = fs::metadata(&f).unwrap().permissions().mode() & 0o7777;
            assert_eq!(
                (got, fs::read_to_string(&f).unwrap()),
                (mode, "new".to_string()),
                "{got:o}"
            );
        }
        let _ = fs::remove_dir_all(dir);
    }
}
