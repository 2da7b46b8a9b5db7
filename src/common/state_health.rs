//! What is wrong with this process's state files right now, for a daemon's `warnings` and
//! its `/readyz`. Every [`JsonStore`](crate::common::store::JsonStore) reports here, so a
//! daemon sees the files of all its modules (tasks, runs, sessions, heartbeats) without a
//! handle threaded through each of them; a daemon asks only about its own directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::common::sync::lock;

/// How bad a state file's condition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The file cannot be read or written back: the daemon is running on a copy in memory
    /// (or on nothing) and is not ready until the file is fixed or rewritten.
    Unusable,
    /// Worth an operator's look, not blocking: a file repaired from its last-good copy, a
    /// copy that could not be kept. Kept until the file is next written.
    Warning,
}

/// One file's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub level: Level,
    /// What was found and what was done, one line naming the file.
    pub message: String,
}

static PROBLEMS: Mutex<BTreeMap<PathBuf, Problem>> = Mutex::new(BTreeMap::new());

/// Records the condition of `path`; logged once per new message, not on every read.
pub fn report(path: &Path, level: Level, message: String) {
    let mut problems = lock(&PROBLEMS);
    if problems.get(path).is_some_and(|p| p.message == message) {
        return;
    }
    log::warn!("state: {message}");
    problems.insert(
        path.to_path_buf(),
        Problem {
            path: path.to_path_buf(),
            level,
            message,
        },
    );
}

/// Like [`report`], unless `path` is noted as unusable already (a failed write after a
/// failed read says nothing new, and alternating messages would log on every request).
pub fn report_unless_unusable(path: &Path, level: Level, message: String) {
    let noted = lock(&PROBLEMS)
        .get(path)
        .is_some_and(|p| p.level == Level::Unusable);
    if !noted {
        report(path, level, message);
    }
}

/// `path` was written: whatever was wrong with it is over.
pub fn written(path: &Path) {
    let mut problems = lock(&PROBLEMS);
    if let Some(p) = problems.remove(path) {
        if p.level == Level::Unusable {
            log::info!("state: {} is usable again (rewritten)", path.display());
        }
    }
}

/// `path` read well (or is absent, which is not damage): an `Unusable` note is over — the
/// operator fixed the file — while a `Warning` one stays until the next write.
pub fn readable(path: &Path) {
    let mut problems = lock(&PROBLEMS);
    if problems
        .get(path)
        .is_some_and(|p| p.level == Level::Unusable)
    {
        problems.remove(path);
        log::info!("state: {} is usable again", path.display());
    }
}

/// The conditions of the files under `dir`, in path order. An unusable file that is gone
/// since (the operator removed it, nothing reads that path again) is over.
pub fn under(dir: &Path) -> Vec<Problem> {
    let mut problems = lock(&PROBLEMS);
    problems.retain(|path, p| {
        p.level != Level::Unusable
            || !path.starts_with(dir)
            || std::fs::symlink_metadata(path).is_ok()
    });
    problems
        .values()
        .filter(|p| p.path.starts_with(dir))
        .cloned()
        .collect()
}

/// The first file under `dir` that is unusable now, if any.
pub fn first_unusable(dir: &Path) -> Option<Problem> {
    under(dir).into_iter().find(|p| p.level == Level::Unusable)
}
