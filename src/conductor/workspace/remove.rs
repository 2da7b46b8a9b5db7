//! Taking a task's worktree (and, for a discard, its branch) away, idempotently: a
//! worktree already gone, or never registered with git, is fine; a directory git does not
//! know is removed only when it lies under the worktrees dir (never anything else).

use std::path::Path;

use super::git::{Git, GitError};

/// Removes the worktree at `path` of `repo`, whatever state it is in (changes in it are
/// dropped: this is retention or a discard). Missing is success.
pub fn worktree(git: &Git, repo: &Path, path: &Path, worktrees_dir: &Path) -> Result<(), GitError> {
    if repo.is_dir() {
        match git.run(
            repo,
            &[
                "worktree",
                "remove",
                "--force",
                "--force",
                &path.display().to_string(),
            ],
        ) {
            Ok(_) => {}
            // Not a registered worktree (half made, or already removed): the directory,
            // if any, goes below; `prune` drops a registration whose directory is gone.
            Err(GitError::Failed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if path.exists() && path.starts_with(worktrees_dir) && path != worktrees_dir {
        std::fs::remove_dir_all(path).map_err(|e| GitError::Failed {
            args: format!("(remove {})", path.display()),
            code: None,
            stderr: e.to_string(),
        })?;
    }
    if repo.is_dir() {
        git.run(repo, &["worktree", "prune"])?;
    }
    Ok(())
}

/// Deletes the task's branch (`-D`: a discard drops unmerged work on purpose). A branch
/// already gone is success.
pub fn branch(git: &Git, repo: &Path, branch: &str) -> Result<(), GitError> {
    let full = format!("refs/heads/{branch}");
    let exists = git.run_status(
        repo,
        &["show-ref", "--verify", "--quiet", &full],
        &[],
        &[0, 1],
    )?;
    if exists.code == 1 {
        return Ok(());
    }
    git.run(repo, &["branch", "-D", "--end-of-options", branch])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::TestRepo;

    #[test]
    fn removing_twice_and_a_half_made_worktree_are_fine() {
        let r = TestRepo::new("remove");
        let git = Git::default();
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
        std::fs::write(wt.join("new.txt"), "x").unwrap();
        worktree(&git, &r.repo, &wt, &wt_dir).unwrap();
        assert!(!wt.exists());
        worktree(&git, &r.repo, &wt, &wt_dir).unwrap();
        assert!(!r.git(&["worktree", "list"]).contains("t1"));
        branch(&git, &r.repo, "baa/t1").unwrap();
        branch(&git, &r.repo, "baa/t1").unwrap();
        assert!(r.git(&["branch", "--list", "baa/t1"]).trim().is_empty());
        // A directory git never registered, under the worktrees dir.
        let half = wt_dir.join("t2");
        std::fs::create_dir_all(half.join("sub")).unwrap();
        worktree(&git, &r.repo, &half, &wt_dir).unwrap();
        assert!(!half.exists());
        // Outside the worktrees dir nothing is deleted.
        let other = r.root.join("keep");
        std::fs::create_dir_all(&other).unwrap();
        worktree(&git, &r.repo, &other, &wt_dir).unwrap();
        assert!(other.exists());
    }
}
