//! `/v1/files/read` and `/v1/files/write`. Writes go through the atomic-write protocol and
//! never touch the conductor's own state directory.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};

use super::{opt_bool, opt_str, resolve_path, union, OpError};
use baa::common::store::write_atomic;
use baa::common::time::rfc3339_from_ms;

/// Largest file `files/read` returns.
pub const READ_CAP: u64 = 8 * 1024 * 1024;

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

pub fn read(body: &Map<String, Value>) -> Value {
    let input = echo(body, &["path", "cwd", "encoding"]);
    match do_read(body) {
        Ok(result) => union("files/read", input, result, None),
        Err(e) => union("files/read", input, read_result_empty(), Some(e)),
    }
}

fn do_read(body: &Map<String, Value>) -> Result<Value, OpError> {
    let path = opt_str(body, &["path"])?.ok_or_else(|| OpError::invalid("path is required."))?;
    let cwd = opt_str(body, &["cwd"])?;
    let enc = encoding(body)?;
    let full = resolve_path(&path, cwd.as_deref())?;
    let meta = fs::metadata(&full).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => OpError::new(
            "FILE_NOT_FOUND",
            format!("{} does not exist.", full.display()),
        ),
        std::io::ErrorKind::PermissionDenied => OpError::new(
            "PERMISSION_DENIED",
            format!("{} is not readable.", full.display()),
        ),
        _ => OpError::new("READ_FAILED", format!("{}: {e}.", full.display())),
    })?;
    if !meta.is_file() {
        return Err(OpError::new(
            "NOT_A_FILE",
            format!("{} is not a regular file.", full.display()),
        ));
    }
    if meta.len() > READ_CAP {
        return Err(OpError::new(
            "FILE_TOO_LARGE",
            format!(
                "{} is {} bytes; the limit is {READ_CAP}.",
                full.display(),
                meta.len()
            ),
        ));
    }
    let bytes = fs::read(&full)
        .map_err(|e| OpError::new("READ_FAILED", format!("{}: {e}.", full.display())))?;
    let content = match enc {
        Encoding::Utf8 => String::from_utf8(bytes.clone()).map_err(|_| {
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
        "size": bytes.len(),
        "modifiedAt": modified,
    }))
}

pub fn write(body: &Map<String, Value>, protected: &[PathBuf]) -> Value {
    let input = echo(
        body,
        &["path", "cwd", "encoding", "overwrite", "createParents"],
    );
    match do_write(body, protected) {
        Ok(result) => union("files/write", input, result, None),
        Err(e) => union("files/write", input, write_result_empty(), Some(e)),
    }
}

fn do_write(body: &Map<String, Value>, protected: &[PathBuf]) -> Result<Value, OpError> {
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
    if !parent.is_dir() {
        if !create_parents {
            return Err(OpError::new(
                "PARENT_NOT_FOUND",
                format!(
                    "{} does not exist; pass \"createParents\": true to create it.",
                    parent.display()
                ),
            ));
        }
        fs::create_dir_all(&parent).map_err(|e| {
            OpError::new(
                "WRITE_FAILED",
                format!("cannot create {}: {e}.", parent.display()),
            )
        })?;
    }
    // Resolve symlinks in the parent before the protected-path check.
    let real_parent = fs::canonicalize(&parent)
        .map_err(|e| OpError::new("WRITE_FAILED", format!("{}: {e}.", parent.display())))?;
    if protected.iter().any(|p| real_parent.starts_with(p)) {
        return Err(OpError::new(
            "PROTECTED_PATH",
            format!(
                "{} is inside the conductor's own state; it cannot be written through host ops.",
                full.display()
            ),
        ));
    }
    let target = real_parent.join(&name);
    let existing = fs::symlink_metadata(&target).ok();
    if let Some(meta) = &existing {
        if meta.is_dir() {
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
    // Atomic replace: the old file stays whole until the new one is on disk.
    write_atomic(&real_parent, &name, &bytes)
        .map_err(|e| OpError::new("WRITE_FAILED", e.to_string()))?;
    let existed = existing.is_some();
    if let Some(meta) = existing.filter(|m| m.is_file()) {
        let _ = fs::set_permissions(&target, meta.permissions());
    }
    Ok(json!({
        "path": target,
        "created": !existed,
        "overwritten": existed,
        "bytesWritten": bytes.len(),
    }))
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
        let protected = vec![fs::canonicalize(&protected).unwrap()];
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
        let v = read(&body(json!({"path": "a/b.txt", "cwd": cwd})));
        assert_eq!(
            (v["result"]["content"].clone(), v["result"]["size"].clone()),
            (json!("bye"), json!(3)),
            "{v}"
        );
        let v = read(&body(
            json!({"path": "a/b.txt", "cwd": cwd, "encoding": "base64"}),
        ));
        assert_eq!(v["result"]["content"], "Ynll");
        let v = read(&body(json!({"path": "nope.txt", "cwd": cwd})));
        assert_eq!(v["error"]["code"], "FILE_NOT_FOUND");
        let v = read(&body(json!({"path": "a", "cwd": cwd})));
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
}
