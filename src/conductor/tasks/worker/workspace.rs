//! A worktree task's workspace as its run sees it: the worktree made (or found) before
//! the session, so the turns run in it, and what they changed committed when the run
//! succeeded, before its end is written (the result goes into the run with that write).
//! In-place tasks, and records from before workspaces, are left exactly as they were.
//!
//! The intent (`workspace.path` and `workspace.branch`) is written to the task before
//! `git worktree add` runs, so a conductor killed while making it finds what it was
//! making; a branch of that name already there before the intent is someone else's and
//! the task fails (`branch_exists`) without touching it.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::super::control::StopReason;
use super::super::model::{Task, TaskResult};
use super::book::{RunBook, Worktree};
use super::timings::Phase;
use super::{failed, End};
use crate::workspace::commit::{self, Commit, CommitError};
use crate::workspace::create::{self, CreateError, Made};
use crate::workspace::git::GitError;

/// Makes sure a worktree task's worktree exists and points the session's cwd into it
/// (`book.spec.cwd`, the same subdir of it). Nothing for an in-place task.
pub fn prepare(book: &mut RunBook, task: &Task) -> Result<(), End> {
    let t0 = Instant::now();
    let out = prepare_inner(book, task);
    book.timings.add(Phase::Worktree, t0);
    out
}

fn prepare_inner(book: &mut RunBook, task: &Task) -> Result<(), End> {
    let Some(ws) = task.workspace.as_ref().filter(|w| w.is_worktree()) else {
        return Ok(());
    };
    let (Some(repo), Some(base)) = (ws.repo.as_deref(), ws.base.as_deref()) else {
        return Err(failed(
            "workspace_invalid",
            "the task's workspace names no repository or base commit",
            false,
        ));
    };
    let repo = PathBuf::from(repo);
    let app = book.app.clone();
    let cfg = &app.cfg;
    let (path, branch) = match (&ws.path, &ws.branch) {
        (Some(p), Some(b)) => (PathBuf::from(p), b.clone()),
        _ => {
            let (path, branch) = create::target(
                &cfg.worktrees_dir,
                &repo,
                &cfg.workspaces.branch_prefix,
                &book.task_id,
            )
            .map_err(|e| create_end(book, e))?;
            create::check_branch_free(&app.git, &repo, &branch).map_err(|e| create_end(book, e))?;
            record_intent(book, &path, &branch)?;
            (path, branch)
        }
    };
    let made = create::ensure(&app.git, &repo, &path, &branch, base, &cfg.worktrees_dir)
        .map_err(|e| create_end(book, e))?;
    let shown = path.display().to_string();
    let short = &base[..base.len().min(12)];
    match &made {
        Made::Added => book.log(
            "info",
            &format!("worktree {shown} made on branch {branch} from {short}"),
            Some(json!({"worktree": shown, "branch": branch, "base": base})),
        ),
        Made::Repaired(why) => book.log(
            "warn",
            &format!("worktree {shown} was half made ({why}); made again on branch {branch}"),
            Some(json!({"worktree": shown, "branch": branch, "base": base})),
        ),
        Made::Reused => book.log(
            "info",
            &format!("continuing in worktree {shown} on branch {branch}"),
            None,
        ),
    }
    if ws.removed_at.is_some() && made != Made::Reused {
        // Made again after retention removed it (the task was retried).
        book.update_task(|t| {
            t.workspace
                .as_mut()
                .is_some_and(|w| w.removed_at.take().is_some())
        });
    }
    let subdir = ws.subdir.as_deref().unwrap_or("");
    let Some(cwd) = create::workdir(&path, subdir) else {
        return Err(failed(
            "workspace_invalid",
            format!("the task's subdir {subdir:?} leaves its worktree"),
            false,
        ));
    };
    // A directory with no tracked file at the base is not in the worktree: the turns get
    // it empty, as it is at the base.
    if let Err(e) = std::fs::create_dir_all(&cwd) {
        return Err(failed(
            "worktree_io",
            format!("cannot create {} in the worktree: {e}", cwd.display()),
            true,
        ));
    }
    book.spec.cwd = Some(cwd.display().to_string());
    book.worktree = Some(Worktree {
        path,
        branch,
        base: base.to_string(),
        title: task.title.clone(),
    });
    Ok(())
}

/// The worktree's path and branch in the task, one durable write, before git makes it.
fn record_intent(book: &mut RunBook, path: &std::path::Path, branch: &str) -> Result<(), End> {
    let (p, b) = (path.display().to_string(), branch.to_string());
    let updated = book.update_task(|t| match t.workspace.as_mut() {
        Some(w) => {
            w.path = Some(p.clone());
            w.branch = Some(b.clone());
            true
        }
        None => false,
    });
    let recorded = updated
        .and_then(|t| t.workspace)
        .is_some_and(|w| w.path.as_deref() == Some(p.as_str()));
    if !recorded {
        return Err(failed(
            "state_unwritable",
            "cannot record the task's worktree before making it; see the conductor log",
            true,
        ));
    }
    Ok(())
}

/// After the run's turns succeeded: their changes committed on the branch and the
/// branch's result in `book.run.result` (written with the run's end). `Succeeded` for an
/// in-place task.
pub fn commit(book: &mut RunBook) -> End {
    let Some(w) = book.worktree.clone() else {
        return End::Succeeded;
    };
    let t0 = Instant::now();
    let cfg = &book.app.cfg.workspaces;
    let out = commit::commit(
        &book.app.git,
        &Commit {
            path: &w.path,
            branch: &w.branch,
            base: &w.base,
            task_id: &book.task_id,
            title: &w.title,
            name: &cfg.author_name,
            email: &cfg.author_email,
        },
    );
    book.timings.add(Phase::Commit, t0);
    match out {
        Ok(r) => {
            book.run.result = Some(r);
            End::Succeeded
        }
        Err(CommitError::Git(e)) => git_end(book, &e, "cannot commit the run's changes"),
        Err(e) => failed(
            e.code(),
            format!("cannot commit the run's changes: {e}"),
            e.retryable(),
        ),
    }
}

/// `+N −M in K files` of a result, for the run's end line.
pub fn summary(r: &TaskResult) -> String {
    if r.changes == commit::NONE {
        return format!("branch {}: no changes", r.branch);
    }
    format!(
        "branch {} at {}: +{} \u{2212}{} in {} file{}",
        r.branch,
        &r.head[..r.head.len().min(12)],
        r.insertions,
        r.deletions,
        r.files_changed,
        if r.files_changed == 1 { "" } else { "s" }
    )
}

fn create_end(book: &RunBook, e: CreateError) -> End {
    match e {
        CreateError::Git(g) => git_end(book, &g, "cannot make the task's worktree"),
        e => failed(
            e.code(),
            format!("cannot make the task's worktree: {e}"),
            e.retryable(),
        ),
    }
}

/// A git failure as the run's end: retryable when the repo was busy, the disk full or
/// git slow; a git that could not start because the conductor is stopping leaves the run
/// for the next start.
fn git_end(book: &RunBook, e: &GitError, what: &str) -> End {
    if let GitError::Spawn(_) = e {
        let why = match book.ctl.stop() {
            StopReason::LostLease => Some(StopReason::LostLease),
            StopReason::Shutdown => Some(StopReason::Shutdown),
            _ if !book.app.is_started() => Some(StopReason::Shutdown),
            _ => None,
        };
        if let Some(why) = why {
            return End::Left(why);
        }
    }
    failed(e.code(), format!("{what}: {e}"), e.retryable())
}
