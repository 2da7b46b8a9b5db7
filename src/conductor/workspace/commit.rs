//! A succeeded run's result: what its turns changed in the worktree is committed on the
//! task's branch (only when something is staged), and the result is computed from the
//! branch against its base, never from what this call did. So a conductor killed after
//! the commit and before the run's end was written commits nothing the second time and
//! gets the same result: one commit.

use std::fmt;
use std::path::Path;

use super::git::{Git, GitError};
use super::stat::diff_stat;
use crate::tasks::model::TaskResult;

/// `result.changes`.
pub const COMMITTED: &str = "committed";
pub const NONE: &str = "none";

/// The trailer naming the task in its commit's message.
pub const TRAILER: &str = "Baa-Task";

#[derive(Debug)]
pub enum CommitError {
    Git(GitError),
    /// The worktree's HEAD is not the task's branch (a turn checked out another).
    OffBranch(String),
}

impl CommitError {
    pub fn code(&self) -> &'static str {
        match self {
            CommitError::Git(e) => e.code(),
            CommitError::OffBranch(_) => "worktree_off_branch",
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            CommitError::Git(e) => e.retryable(),
            CommitError::OffBranch(_) => false,
        }
    }
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitError::Git(e) => write!(f, "{e}"),
            CommitError::OffBranch(m) => write!(f, "{m}"),
        }
    }
}

impl From<GitError> for CommitError {
    fn from(e: GitError) -> Self {
        CommitError::Git(e)
    }
}

/// What the commit needs to know.
pub struct Commit<'a> {
    /// The worktree.
    pub path: &'a Path,
    pub branch: &'a str,
    /// The commit the branch was made from.
    pub base: &'a str,
    pub task_id: &'a str,
    pub title: &'a str,
    /// Author and committer.
    pub name: &'a str,
    pub email: &'a str,
}

/// Commits the worktree's changes on the branch and returns the branch's result.
pub fn commit(git: &Git, c: &Commit) -> Result<TaskResult, CommitError> {
    // Where git finds the worktree and its HEAD, in one call: a turn that removed the
    // worktree's `.git` would otherwise have git find an enclosing repository.
    let o = git.run_status(
        c.path,
        &[
            "rev-parse",
            "--show-toplevel",
            "--symbolic-full-name",
            "HEAD",
        ],
        &[],
        &[0, 128],
    )?;
    let mut lines = o.stdout.lines();
    let (top, head_ref) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    if o.code != 0 || Path::new(top) != c.path {
        return Err(CommitError::OffBranch(format!(
            "the task's worktree {} is no longer a git worktree (its .git is gone?); nothing was committed",
            c.path.display()
        )));
    }
    if head_ref != format!("refs/heads/{}", c.branch) {
        return Err(CommitError::OffBranch(format!(
            "the task's worktree {} is on {} instead of its branch {}; nothing was committed (check {} out in it again and retry the task, or discard it)",
            c.path.display(),
            head_ref.strip_prefix("refs/heads/").unwrap_or("a detached HEAD"),
            c.branch,
            c.branch
        )));
    }
    git.run(c.path, &["add", "-A"])?;
    let staged = git.run_status(c.path, &["diff", "--cached", "--quiet"], &[], &[0, 1])?;
    if staged.code == 1 {
        let title = c.title.trim();
        let title = if title.is_empty() {
            format!("task {}", c.task_id)
        } else {
            title.to_string()
        };
        let trailer = format!("{TRAILER}: {}", c.task_id);
        git.run_env(
            c.path,
            &[
                "commit",
                "--quiet",
                "--no-verify",
                "--no-gpg-sign",
                // `#` lines of a title stay (the default cleanup would drop them).
                "--cleanup=whitespace",
                "-m",
                &title,
                "-m",
                &trailer,
            ],
            &[
                ("GIT_AUTHOR_NAME", c.name),
                ("GIT_AUTHOR_EMAIL", c.email),
                ("GIT_COMMITTER_NAME", c.name),
                ("GIT_COMMITTER_EMAIL", c.email),
            ],
        )?;
    }
    result(git, c.path, c.branch, c.base).map_err(CommitError::Git)
}

/// The branch against its base: `changes: "none"` when it still points at the base.
pub fn result(git: &Git, dir: &Path, branch: &str, base: &str) -> Result<TaskResult, GitError> {
    let full = format!("refs/heads/{branch}");
    let head = git
        .run(dir, &["rev-parse", "--verify", "--end-of-options", &full])?
        .line()
        .to_string();
    let mut r = TaskResult {
        changes: NONE.into(),
        branch: branch.to_string(),
        base: base.to_string(),
        head: head.clone(),
        ..TaskResult::default()
    };
    if head != base {
        let s = diff_stat(git, dir, base, &head)?;
        r.changes = COMMITTED.into();
        r.files_changed = s.files_changed;
        r.insertions = s.insertions;
        r.deletions = s.deletions;
        r.diff_bytes = s.diff_bytes;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::create;
    use crate::workspace::test_repo::{git_in, TestRepo};

    fn setup(tag: &str) -> (TestRepo, Git, std::path::PathBuf, String) {
        let r = TestRepo::new(tag);
        let git = Git::default();
        let wt = r.root.join("worktrees");
        let (path, branch) = create::target(&wt, &r.repo, "baa/", "t1").unwrap();
        create::ensure(&git, &r.repo, &path, &branch, &r.head(), &wt).unwrap();
        (r, git, path, branch)
    }

    fn c<'a>(path: &'a Path, branch: &'a str, base: &'a str) -> Commit<'a> {
        Commit {
            path,
            branch,
            base,
            task_id: "t1",
            title: "# Fix the README",
            name: "Baa Bot",
            email: "bot@example.com",
        }
    }

    #[test]
    fn commits_once_with_the_author_title_and_trailer() {
        let (r, git, path, branch) = setup("commit");
        let base = r.head();
        std::fs::write(path.join("README.md"), "hello\nthere\n").unwrap();
        std::fs::write(path.join("new.txt"), "a\nb\n").unwrap();
        let res = commit(&git, &c(&path, &branch, &base)).unwrap();
        assert_eq!(res.changes, "committed");
        assert_eq!(
            (res.files_changed, res.insertions, res.deletions),
            (2, 3, 0)
        );
        assert!(res.diff_bytes > 50, "{res:?}");
        assert_eq!(res.base, base);
        assert_eq!(res.head, git_in(&path, &["rev-parse", "HEAD"]).trim());
        let msg = git_in(&path, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%B"]);
        assert_eq!(
            msg.trim_end(),
            "Baa Bot <bot@example.com>|Baa Bot <bot@example.com>|# Fix the README\n\nBaa-Task: t1"
        );
        // Again (a conductor killed after the commit): nothing to commit, the same result.
        let again = commit(&git, &c(&path, &branch, &base)).unwrap();
        assert_eq!(again, res);
        let count = git_in(
            &r.repo,
            &["rev-list", "--count", &format!("{base}..{branch}")],
        );
        assert_eq!(count.trim(), "1");
        // The operator's checkout did not move.
        assert_eq!(r.head(), base);
        assert_eq!(r.git(&["status", "--porcelain"]), "");
    }

    #[test]
    fn nothing_changed_is_changes_none_and_no_commit() {
        let (r, git, path, branch) = setup("commit-none");
        let base = r.head();
        let res = commit(&git, &c(&path, &branch, &base)).unwrap();
        assert_eq!(
            (res.changes.as_str(), res.head.as_str()),
            ("none", base.as_str())
        );
        assert_eq!((res.files_changed, res.diff_bytes), (0, 0));
    }

    #[test]
    fn a_held_index_lock_is_retryable_and_a_worktree_off_its_branch_commits_nothing() {
        let (r, git, path, branch) = setup("commit-busy");
        let base = r.head();
        std::fs::write(path.join("x.txt"), "x").unwrap();
        let lock = git_in(&path, &["rev-parse", "--git-path", "index.lock"]);
        let lock = path.join(lock.trim());
        std::fs::write(&lock, "").unwrap();
        let e = commit(&git, &c(&path, &branch, &base)).unwrap_err();
        assert_eq!((e.code(), e.retryable()), ("repo_busy", true), "{e}");
        assert!(
            e.to_string().contains("locked by another git process"),
            "{e}"
        );
        std::fs::remove_file(&lock).unwrap();
        git_in(&path, &["checkout", "-q", "-b", "elsewhere"]);
        let e = commit(&git, &c(&path, &branch, &base)).unwrap_err();
        assert_eq!((e.code(), e.retryable()), ("worktree_off_branch", false));
        assert!(e.to_string().contains("is on elsewhere instead of"), "{e}");
        git_in(&path, &["checkout", "-q", "--detach"]);
        let e = commit(&git, &c(&path, &branch, &base)).unwrap_err();
        assert!(e.to_string().contains("is on a detached HEAD"), "{e}");
        // A turn that removed the worktree's .git: git must not commit anywhere else.
        std::fs::remove_file(path.join(".git")).unwrap();
        let e = commit(&git, &c(&path, &branch, &base)).unwrap_err();
        assert!(e.to_string().contains("no longer a git worktree"), "{e}");
        assert_eq!(r.head(), base);
    }
}
