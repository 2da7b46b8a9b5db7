//! Tokens: comparison that does not leak how many leading bytes matched, placeholder
//! detection, and reading a token file that only its owner may read.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Compares `given` with `expected` in time that depends only on their lengths.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    // Fold the length difference in instead of returning early, and always walk the
    // expected token's full length.
    let mut diff = (given.len() ^ expected.len()) as u64;
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= u64::from(g ^ e);
    }
    diff == 0
}

/// Placeholder values that must never open host operations.
pub fn is_placeholder_token(token: &str) -> bool {
    matches!(
        token.trim().to_ascii_lowercase().as_str(),
        "replace-me" | "changeme" | "change-me" | "your-token-here" | "token" | "secret"
    )
}

/// Longest token file accepted: a token is one line; anything bigger is the wrong file.
const MAX_SECRET_FILE: u64 = 4096;

/// Why a token file was not read.
#[derive(Debug)]
pub enum TokenFileError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Stat {
        path: PathBuf,
        source: io::Error,
    },
    NotAFile {
        path: PathBuf,
    },
    /// Group or others may read or write it.
    Open {
        path: PathBuf,
        mode: u32,
    },
    TooLarge {
        path: PathBuf,
    },
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFileError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TokenFileError::Stat { path, source } => {
                write!(f, "cannot stat {}: {source}", path.display())
            }
            TokenFileError::NotAFile { path } => {
                write!(f, "{} is not a regular file", path.display())
            }
            TokenFileError::Open { path, mode } => write!(
                f,
                "{shown} has mode {mode:04o}: group or others can read or write it; a token file must be 0600 or stricter (run: chmod 600 {shown})",
                shown = path.display()
            ),
            TokenFileError::TooLarge { path } => write!(
                f,
                "{} is larger than {MAX_SECRET_FILE} bytes; a token file holds one line",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TokenFileError {}

/// Reads a token file (trimmed; empty is `None`) after checking, on the opened file itself (no race with a rename),
/// that it is a regular file with no group or other permission bits.
pub fn read_token_file(path: &Path) -> Result<Option<String>, TokenFileError> {
    let path_buf = || path.to_path_buf();
    let f = File::open(path).map_err(|source| TokenFileError::Read {
        path: path_buf(),
        source,
    })?;
    let meta = f.metadata().map_err(|source| TokenFileError::Stat {
        path: path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(TokenFileError::NotAFile { path: path_buf() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TokenFileError::Open {
            path: path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(TokenFileError::TooLarge { path: path_buf() });
    }
    let mut raw = String::new();
    f.take(MAX_SECRET_FILE)
        .read_to_string(&mut raw)
        .map_err(|source| TokenFileError::Read {
            path: path_buf(),
            source,
        })?;
    let token = raw.trim();
    Ok((!token.is_empty()).then(|| token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }

    #[test]
    fn flags_placeholders() {
        assert!(is_placeholder_token("replace-me"));
        assert!(is_placeholder_token(" Replace-Me "));
        assert!(!is_placeholder_token("a-real-token-with-entropy"));
    }
}
