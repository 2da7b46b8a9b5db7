//! Throwing a task's work away: its worktree (with whatever is in it) and its branch. Both
//! steps are idempotent, so a discard cut short is finished by the next one.

use std::path::Path;

use super::git::GitError;
use super::{git::Git, remove};
use crate::tasks::model::Workspace;

/// Removes the worktree and the branch a worktree task's record names (either may be
/// gone already, or never made).
pub fn discard(git: &Git, ws: &Workspace, worktrees_dir: &Path) -> Result<(), GitError> {
    let Some(repo) = ws.repo.as_deref().map(Path::new) else {
        return Ok(());
    };
    if let Some(path) = ws.path.as_deref().map(Path::new) {
        if path != repo {
            remove::worktree(git, repo, path, worktrees_dir)?;
        }
    }
    if let Some(branch) = ws.branch.as_deref() {
        if repo.is_dir() {
            remove::branch(git, repo, branch)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::{git_in, TestRepo};

    #[test]
    fn discard_removes_the_worktree_and_the_branch_twice_over() {
        let r = TestRepo::new("discard");
        let wt_dir = r.root.join("worktrees");
        let wt = wt_dir.join("t1");
        r.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            "baa/t1",
            &wt.display().to_string(),
        ]);
        std::fs::write(wt.join("work.txt"), "x").unwrap();
        git_in(&wt, &["add", "-A"]);
        git_in(&wt, &["commit", "-q", "-m", "task"]);
        std::fs::write(wt.join("more.txt"), "uncommitted").unwrap();
        let ws = Workspace {
            mode: "worktree".into(),
            repo: Some(r.repo.display().to_string()),
            path: Some(wt.display().to_string()),
            branch: Some("baa/t1".into()),
            ..Workspace::default()
        };
        let git = Git::default();
        discard(&git, &ws, &wt_dir).unwrap();
        assert!(!wt.exists());
        assert!(r.git(&["branch", "--list", "baa/t1"]).trim().is_empty());
        assert!(!r.git(&["worktree", "list"]).contains("t1"));
        discard(&git, &ws, &wt_dir).unwrap();
        // The main checkout and its branch are untouched.
        assert_eq!(r.git(&["branch", "--show-current"]).trim(), "main");
        assert!(r.repo.join("README.md").exists());
    }
}
