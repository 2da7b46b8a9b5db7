//! The store's one error type; every error names the file involved.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::kind::FileKind;

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
    /// Something other than a regular file is at the path; it was not read.
    NotRegular { path: PathBuf, kind: FileKind },
    /// A state file name that is not a single plain path component.
    BadName(String),
}

impl StoreError {
    /// True when the file simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
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
            StoreError::NotRegular { path, kind } => write!(
                f,
                "{} is {}, not a regular file",
                path.display(),
                kind.describe()
            ),
            StoreError::BadName(name) => write!(f, "invalid state file name {name:?}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Corrupt { source, .. } => Some(source),
            StoreError::NotRegular { .. } | StoreError::BadName(_) => None,
        }
    }
}

pub(super) fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A rename onto `target` failed: a directory in the way is named as such.
pub(super) fn rename_err(target: &Path, e: io::Error) -> StoreError {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => StoreError::NotRegular {
            path: target.to_path_buf(),
            kind: FileKind::Directory,
        },
        _ => io_err(target, e),
    }
}
