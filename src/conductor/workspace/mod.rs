//! Task workspaces: each worktree task runs in its own git worktree on its own branch,
//! and what it did is a commit there that can be diffed, merged or discarded.
//!
//! - `git`: the one place git is run (timeouts, a clean environment, clear errors);
//! - `layout`: where a task's worktree lives and what its branch is called;
//! - `plan`: where a new task runs, decided when it is queued (roots, mode, base commit);
//! - `remove`: a worktree or branch taken away, idempotently;
//! - `janitor`: the housekeeping thread (retention, `git worktree prune`, disk use), and
//!   `usage` its bounded walk of the worktrees dir.

pub mod git;
pub mod janitor;
pub mod layout;
pub mod plan;
pub mod remove;
#[cfg(test)]
pub mod test_repo;
pub mod usage;
