//! Task workspaces: each worktree task runs in its own git worktree on its own branch,
//! and what it did is a commit there that can be diffed, merged or discarded.
//!
//! - `git`: the one place git is run (timeouts, a clean environment, clear errors);
//! - `layout`: where a task's worktree lives and what its branch is called;
//! - `plan`: where a new task runs, decided when it is queued (roots, mode, base commit);
//! - `create`: the worktree made, reused or repaired, idempotently across a kill;
//! - `commit`: a succeeded run's changes committed, and the task's `result`;
//! - `stat`: the size of a branch's change against its base;
//! - `remove`: a worktree or branch taken away, idempotently;
//! - `diff`, `merge`, `discard`: a task's result reviewed, merged into a branch, or
//!   thrown away;
//! - `janitor`: the housekeeping thread (retention, `git worktree prune`, disk use),
//!   `usage` its bounded walk of the worktrees dir, `janitor_stats` what it reports.

pub mod commit;
pub mod create;
pub mod diff;
pub mod discard;
pub mod git;
pub mod janitor;
pub mod janitor_stats;
pub mod layout;
pub mod merge;
pub mod plan;
pub mod remove;
pub mod stat;
#[cfg(test)]
pub mod test_repo;
pub mod usage;
