//! Making sure a task's worktree exists, idempotently across a `kill -9` anywhere.
//!
//! The worker records the intent first (`workspace.path` and `workspace.branch` in the
//! task, one durable write, see [`target`] and [`check_branch_free`]), then calls
//! [`ensure`]. Whatever a killed conductor left, the next try finds it at that path:
//!
//! - a registered worktree there, on the branch, whose `.git` leads to this repo: reused
//!   as it is (a failed run's uncommitted changes stay: a retry continues in it);
//! - one git left `locked initializing` (killed mid `worktree add`), one whose `.git` does
//!   not lead back to it, a registration whose directory is gone, or a directory git does
//!   not know: removed and made again (none of them ever ran a turn);
//! - the branch without a worktree (made, then killed): the worktree is added on it.
//!
//! A branch of that name that existed before the intent is someone else's: the worker
//! refuses the task ([`CreateError::BranchExists`]) and nothing touches the branch.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::git::{Git, GitError};
use super::{layout, remove};

/// Why the worktree cannot be made.
#[derive(Debug)]
pub enum CreateError {
    Git(GitError),
    /// A branch of the task's name exists and is not the task's.
    BranchExists {
        branch: String,
    },
    /// The worktree's path holds something this module will not remove, or the worktree
    /// there is on another branch (someone checked one out in it).
    Conflict(String),
    /// A directory could not be made or removed.
    Io {
        what: String,
        err: std::io::Error,
    },
}

impl CreateError {
    pub fn code(&self) -> &'static str {
        match self {
            CreateError::Git(e) => e.code(),
            CreateError::BranchExists { .. } => "branch_exists",
            CreateError::Conflict(_) => "worktree_conflict",
            CreateError::Io { .. } => "worktree_io",
        }
    }

    /// Only git's own transient failures (a held lock, a full disk, a timeout) and a
    /// failed directory operation may go away on their own.
    pub fn retryable(&self) -> bool {
        match self {
            CreateError::Git(e) => e.retryable(),
            CreateError::Io { .. } => true,
            CreateError::BranchExists { .. } | CreateError::Conflict(_) => false,
        }
    }
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Git(e) => write!(f, "{e}"),
            CreateError::BranchExists { branch } => write!(
                f,
                "branch {branch} already exists and is not this task's; it is left as it is (delete or rename it, or set BAA_CONDUCTOR_BRANCH_PREFIX, then retry the task)"
            ),
            CreateError::Conflict(m) => write!(f, "{m}"),
            CreateError::Io { what, err } => write!(f, "cannot {what}: {err}"),
        }
    }
}

impl From<GitError> for CreateError {
    fn from(e: GitError) -> Self {
        CreateError::Git(e)
    }
}

/// What [`ensure`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Made {
    /// The worktree was there, valid, on its branch.
    Reused,
    /// Made now (the branch too, unless it was there from a killed attempt).
    Added,
    /// A half-made one was removed and made again (why).
    Repaired(String),
}

/// The task's worktree path and branch: `<worktrees>/<repo>-<hash>/<task_id>` (its parent
/// made and resolved, so the path recorded is the one git reports) on `<prefix><task_id>`.
pub fn target(
    worktrees_dir: &Path,
    repo: &Path,
    prefix: &str,
    task_id: &str,
) -> Result<(PathBuf, String), CreateError> {
    let path = layout::path(worktrees_dir, repo, task_id);
    let dir = path.parent().unwrap_or(worktrees_dir);
    std::fs::create_dir_all(dir).map_err(|err| CreateError::Io {
        what: format!("create {}", dir.display()),
        err,
    })?;
    let dir = std::fs::canonicalize(dir).map_err(|err| CreateError::Io {
        what: format!("resolve {}", dir.display()),
        err,
    })?;
    Ok((dir.join(task_id), layout::branch(prefix, task_id)))
}

/// Before the intent is recorded: a branch of that name already there is someone else's.
pub fn check_branch_free(git: &Git, repo: &Path, branch: &str) -> Result<(), CreateError> {
    if branch_exists(git, repo, branch)? {
        return Err(CreateError::BranchExists {
            branch: branch.to_string(),
        });
    }
    Ok(())
}

/// Makes sure the worktree at `path` of `repo` exists on `branch` (made from `base` when
/// the branch is new). Called with the intent recorded, so a branch of that name is this
/// task's (still checked: it must contain `base`).
pub fn ensure(
    git: &Git,
    repo: &Path,
    path: &Path,
    branch: &str,
    base: &str,
    worktrees_dir: &Path,
) -> Result<Made, CreateError> {
    let entry = registered(git, repo, path)?;
    let locked = entry.as_ref().is_some_and(|e| e.locked_initializing);
    let mut repaired = None;
    match entry {
        Some(e) if e.locked_initializing => {
            repaired = Some("git was stopped while making it".to_string());
        }
        Some(e) if !path.exists() => {
            repaired = Some(format!(
                "its directory was gone ({})",
                if e.prunable { "prunable" } else { "missing" }
            ));
        }
        Some(e) => match valid_checkout(git, repo, path)? {
            Ok(()) if e.branch.as_deref() == Some(branch) => return Ok(Made::Reused),
            Ok(()) => {
                return Err(CreateError::Conflict(format!(
                    "the task's worktree {} is on {} instead of its branch {branch}; check {branch} out in it again, or discard the task",
                    path.display(),
                    e.branch.as_deref().unwrap_or("a detached HEAD")
                )))
            }
            Err(why) => repaired = Some(why),
        },
        None if path.exists() => {
            repaired = Some("its directory was there but git did not know it".into());
        }
        None => {}
    }
    if repaired.is_some() {
        // `path` is resolved (see `target`); the setting may go through a symlink
        // (macOS's /var, /tmp).
        let worktrees_dir =
            std::fs::canonicalize(worktrees_dir).unwrap_or_else(|_| worktrees_dir.to_path_buf());
        let worktrees_dir = worktrees_dir.as_path();
        if !path.starts_with(worktrees_dir) {
            return Err(CreateError::Conflict(format!(
                "{} is not under the worktrees dir {}; not removing it",
                path.display(),
                worktrees_dir.display()
            )));
        }
        if locked {
            // `prune` keeps a locked registration whose directory is gone.
            git.run(repo, &["worktree", "unlock", &path.display().to_string()])?;
        }
        remove::worktree(git, repo, path, worktrees_dir)?;
    }
    add(git, repo, path, branch, base)?;
    Ok(match repaired {
        Some(why) => Made::Repaired(why),
        None => Made::Added,
    })
}

fn add(git: &Git, repo: &Path, path: &Path, branch: &str, base: &str) -> Result<(), CreateError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|err| CreateError::Io {
            what: format!("create {}", parent.display()),
            err,
        })?;
    }
    let shown = path.display().to_string();
    if branch_exists(git, repo, branch)? {
        // Ours (made by a `worktree add` that was killed, or the worktree was removed
        // since): it must still contain the base, else it is not what we made.
        let anc = git.run_status(
            repo,
            &[
                "merge-base",
                "--is-ancestor",
                base,
                &format!("refs/heads/{branch}"),
            ],
            &[],
            &[0, 1],
        )?;
        if anc.code != 0 {
            return Err(CreateError::BranchExists {
                branch: branch.to_string(),
            });
        }
        git.run(repo, &["worktree", "add", "--quiet", &shown, branch])?;
    } else {
        git.run(
            repo,
            &[
                "worktree",
                "add",
                "--quiet",
                "--no-track",
                "-b",
                branch,
                &shown,
                base,
            ],
        )?;
    }
    Ok(())
}

fn branch_exists(git: &Git, repo: &Path, branch: &str) -> Result<bool, GitError> {
    let full = format!("refs/heads/{branch}");
    let o = git.run_status(
        repo,
        &["show-ref", "--verify", "--quiet", &full],
        &[],
        &[0, 1],
    )?;
    Ok(o.code == 0)
}

/// One `git worktree list --porcelain` entry.
#[derive(Debug, Default, PartialEq)]
struct Entry {
    path: PathBuf,
    /// The branch without `refs/heads/`; `None` when detached.
    branch: Option<String>,
    locked_initializing: bool,
    prunable: bool,
}

/// The registration of `path`, if git has one.
fn registered(git: &Git, repo: &Path, path: &Path) -> Result<Option<Entry>, GitError> {
    let o = git.run(repo, &["worktree", "list", "--porcelain"])?;
    Ok(parse_list(&o.stdout).into_iter().find(|e| e.path == path))
}

fn parse_list(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut cur: Option<Entry> = None;
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "worktree" => {
                out.extend(cur.take());
                cur = Some(Entry {
                    path: PathBuf::from(value),
                    ..Entry::default()
                });
            }
            "branch" => {
                if let Some(e) = cur.as_mut() {
                    e.branch = value.strip_prefix("refs/heads/").map(str::to_string);
                }
            }
            "locked" => {
                if let Some(e) = cur.as_mut() {
                    e.locked_initializing = value == "initializing";
                }
            }
            "prunable" => {
                if let Some(e) = cur.as_mut() {
                    e.prunable = true;
                }
            }
            _ => {}
        }
    }
    out.extend(cur);
    out
}

/// Whether git, run in `path`, finds the worktree there and this repo behind it (a
/// missing or broken `.git` makes git find an enclosing repo, or none): `Err(why)` when
/// not.
fn valid_checkout(git: &Git, repo: &Path, path: &Path) -> Result<Result<(), String>, GitError> {
    let o = git.run_status(
        path,
        &["rev-parse", "--show-toplevel", "--git-common-dir"],
        &[],
        &[0, 128],
    )?;
    let mut lines = o.stdout.lines();
    let (top, common) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    if o.code != 0 || Path::new(top) != path {
        return Ok(Err("its .git did not lead to it".into()));
    }
    let ours = git.run(repo, &["rev-parse", "--git-common-dir"])?;
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(&path.join(common), &repo.join(ours.line())) {
        return Ok(Err("its .git led to another repository".into()));
    }
    Ok(Ok(()))
}

/// `subdir` joined to the worktree: relative, without `..` (it came from the planner, but
/// it is read back from a file).
pub fn workdir(path: &Path, subdir: &str) -> Option<PathBuf> {
    let sub = Path::new(subdir);
    let mut out = path.to_path_buf();
    for c in sub.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::{git_in, TestRepo};

    struct Case {
        r: TestRepo,
        git: Git,
        wt_dir: PathBuf,
        path: PathBuf,
        base: String,
    }

    const BRANCH: &str = "baa/t1";

    fn case(tag: &str) -> Case {
        let r = TestRepo::new(tag);
        // The setting reaches the worktrees through a symlink, as macOS's /tmp does.
        let real = r.root.join("worktrees-real");
        std::fs::create_dir_all(&real).unwrap();
        let wt_dir = r.root.join("worktrees");
        std::os::unix::fs::symlink(&real, &wt_dir).unwrap();
        let (path, branch) = target(&wt_dir, &r.repo, "baa/", "t1").unwrap();
        assert_eq!(branch, BRANCH);
        assert!(path.starts_with(&real), "{}", path.display());
        let base = r.head();
        Case {
            git: Git::default(),
            wt_dir,
            path,
            base,
            r,
        }
    }

    impl Case {
        #[track_caller]
        fn ensure(&self) -> Made {
            ensure(
                &self.git,
                &self.r.repo,
                &self.path,
                BRANCH,
                &self.base,
                &self.wt_dir,
            )
            .unwrap()
        }

        /// Exactly one worktree for the task, on its branch, at the base, with the repo's file.
        #[track_caller]
        fn assert_one_good(&self) {
            let list = self.r.git(&["worktree", "list", "--porcelain"]);
            let entries = parse_list(&list);
            let ours: Vec<_> = entries.iter().filter(|e| e.path == self.path).collect();
            assert_eq!(ours.len(), 1, "{list}");
            assert_eq!(entries.len(), 2, "{list}");
            assert_eq!(ours[0].branch.as_deref(), Some(BRANCH));
            assert!(!ours[0].locked_initializing, "{list}");
            assert_eq!(
                git_in(&self.path, &["rev-parse", "--show-toplevel"]).trim(),
                self.path.display().to_string()
            );
            assert!(self.path.join("README.md").is_file());
        }
    }

    #[test]
    fn made_once_then_reused_with_a_failed_runs_changes_kept() {
        let c = case("create-reuse");
        assert_eq!(c.ensure(), Made::Added);
        c.assert_one_good();
        assert_eq!(
            git_in(&c.path, &["rev-parse", "HEAD"]).trim(),
            c.base,
            "the branch starts at the base"
        );
        std::fs::write(c.path.join("wip.txt"), "left by a failed run").unwrap();
        assert_eq!(c.ensure(), Made::Reused);
        c.assert_one_good();
        assert!(c.path.join("wip.txt").is_file(), "a retry continues in it");
        // The operator's checkout never moved.
        assert_eq!(c.r.git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
        assert_eq!(c.r.git(&["status", "--porcelain"]), "");
    }

    #[test]
    fn half_made_worktrees_are_repaired_into_one() {
        // Killed mid `worktree add`: git leaves it locked "initializing".
        let c = case("create-locked");
        c.ensure();
        let admin = c.r.repo.join(".git/worktrees/t1");
        std::fs::write(admin.join("locked"), "initializing").unwrap();
        std::fs::remove_file(c.path.join("README.md")).unwrap();
        assert!(matches!(c.ensure(), Made::Repaired(_)));
        c.assert_one_good();
        // The same killed before its directory was made: prune keeps a locked one.
        std::fs::write(admin.join("locked"), "initializing").unwrap();
        std::fs::remove_dir_all(&c.path).unwrap();
        assert!(matches!(c.ensure(), Made::Repaired(_)));
        c.assert_one_good();

        // A directory whose .git is gone (git would find nothing, or an enclosing repo).
        std::fs::remove_file(c.path.join(".git")).unwrap();
        assert!(matches!(c.ensure(), Made::Repaired(_)));
        c.assert_one_good();

        // A registration whose directory is gone.
        std::fs::remove_dir_all(&c.path).unwrap();
        assert!(matches!(c.ensure(), Made::Repaired(_)));
        c.assert_one_good();

        // A directory git does not know (its registration gone), with a file in it.
        std::fs::remove_dir_all(&admin).unwrap();
        assert!(matches!(c.ensure(), Made::Repaired(_)));
        c.assert_one_good();

        // The branch made, no worktree (killed between the two): added on the branch.
        c.r.git(&[
            "worktree",
            "remove",
            "--force",
            &c.path.display().to_string(),
        ]);
        assert_eq!(c.ensure(), Made::Added);
        c.assert_one_good();
        assert!(admin.is_dir(), "the admin dir keeps the task's name");
    }

    #[test]
    fn a_branch_that_existed_before_is_refused_and_left_alone() {
        let c = case("create-foreign");
        c.r.git(&["branch", BRANCH]);
        let e = check_branch_free(&c.git, &c.r.repo, BRANCH).unwrap_err();
        assert_eq!((e.code(), e.retryable()), ("branch_exists", false));
        assert!(e.to_string().contains("baa/t1 already exists"), "{e}");
        // A branch of that name that does not contain the base is not ours either, even
        // with the intent recorded.
        std::fs::write(c.r.repo.join("other.txt"), "x").unwrap();
        c.r.git(&["checkout", "-q", "--orphan", "other"]);
        c.r.git(&["add", "-A"]);
        c.r.git(&["commit", "-q", "-m", "unrelated"]);
        c.r.git(&["branch", "-f", BRANCH, "other"]);
        c.r.git(&["checkout", "-q", "main"]);
        let before = c.r.git(&["rev-parse", BRANCH]);
        let e = ensure(&c.git, &c.r.repo, &c.path, BRANCH, &c.base, &c.wt_dir).unwrap_err();
        assert_eq!(e.code(), "branch_exists");
        assert_eq!(c.r.git(&["rev-parse", BRANCH]), before);
        assert!(!c.path.exists());
    }

    #[test]
    fn a_worktree_switched_to_another_branch_is_not_remade() {
        let c = case("create-switched");
        c.ensure();
        git_in(&c.path, &["checkout", "-q", "-b", "elsewhere"]);
        let e = ensure(&c.git, &c.r.repo, &c.path, BRANCH, &c.base, &c.wt_dir).unwrap_err();
        assert_eq!((e.code(), e.retryable()), ("worktree_conflict", false));
        assert!(c.path.join("README.md").is_file());
    }

    #[test]
    fn workdir_refuses_a_subdir_leaving_the_worktree() {
        let p = Path::new("/w/t1");
        assert_eq!(workdir(p, ""), Some(PathBuf::from("/w/t1")));
        assert_eq!(
            workdir(p, "").unwrap().to_str(),
            Some("/w/t1"),
            "no trailing slash"
        );
        assert_eq!(workdir(p, "src/a"), Some(PathBuf::from("/w/t1/src/a")));
        assert_eq!(workdir(p, "../x"), None);
        assert_eq!(workdir(p, "/etc"), None);
    }
}
