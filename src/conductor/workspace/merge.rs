//! Merging a task's result commit into a target branch.
//!
//! - When the target is an ancestor of the result, the target fast-forwards to it.
//! - Otherwise a merge commit is made with `git merge-tree --write-tree` and
//!   `git commit-tree`, author from the settings.
//!
//! Why `merge-tree` and not a merge in a temporary worktree: it writes only objects, so
//! there is no checkout of the whole tree (seconds on a large repo), no directory to
//! clean up after a failure or a `kill -9`, and no half-merged state anywhere. A conflict
//! leaves at most unreferenced objects, which `gc` drops. It needs git 2.38 or newer
//! (macOS's own git is 2.39); an older git gets a clear `git_too_old`.
//!
//! A checked-out branch's ref is never moved under its working tree. Where the target is
//! checked out (the operator's checkout included), that checkout is brought along with
//! `git merge --ff-only` run there, as the operator would: only with no changes to tracked
//! files, and git itself refuses when an untracked file is in the way, before changing
//! anything. A target checked out nowhere moves with a compare-and-swap `update-ref`, so a
//! concurrent commit is a refusal, never a lost commit.

use std::path::{Path, PathBuf};

use super::git::{Git, GitError};

/// What to merge.
pub struct Request<'a> {
    pub repo: &'a Path,
    pub task_id: &'a str,
    /// The task's branch (for the merge commit's message).
    pub branch: &'a str,
    /// The commit the task's result is.
    pub head: &'a str,
    /// The target branch (short name).
    pub into: &'a str,
    pub author_name: &'a str,
    pub author_email: &'a str,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The target's new tip.
    pub commit: String,
    pub fast_forward: bool,
    /// The target already contained the result; nothing moved.
    pub already_contained: bool,
    /// The checkout brought along, when the target was checked out.
    pub checkout: Option<PathBuf>,
}

/// Why a merge changed nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeError {
    /// No local branch of that name.
    UnknownTarget,
    Conflict(Vec<String>),
    /// The checkout of the target has changes to tracked files.
    CheckoutDirty {
        path: PathBuf,
        files: Vec<String>,
    },
    /// Untracked files of the checkout would be overwritten.
    UntrackedInTheWay {
        path: PathBuf,
        files: Vec<String>,
    },
    /// git refused to bring the checkout along for another reason (an unfinished merge).
    CheckoutRefused {
        path: PathBuf,
        message: String,
    },
    /// The target moved while merging.
    TargetMoved,
    /// `merge-tree --write-tree` is not known to this git.
    GitTooOld(String),
    Git(GitError),
}

impl From<GitError> for MergeError {
    fn from(e: GitError) -> Self {
        MergeError::Git(e)
    }
}

/// Merges `r.head` into `r.into`. `head` is the commit the task's result names (what its
/// diff showed), not whatever its branch points at now.
pub fn merge(git: &Git, r: &Request) -> Result<Merged, MergeError> {
    let full = format!("refs/heads/{}", r.into);
    let old = resolve(git, r.repo, &full)?.ok_or(MergeError::UnknownTarget)?;
    if is_ancestor(git, r.repo, r.head, &old)? {
        return Ok(Merged {
            commit: old,
            fast_forward: false,
            already_contained: true,
            checkout: None,
        });
    }
    // A dirty checkout refuses before anything is written.
    let checkout = checked_out_at(git, r.repo, &full)?;
    if let Some(path) = &checkout {
        let files = changed_tracked(git, path)?;
        if !files.is_empty() {
            return Err(MergeError::CheckoutDirty {
                path: path.clone(),
                files,
            });
        }
    }
    let fast_forward = is_ancestor(git, r.repo, &old, r.head)?;
    let new = if fast_forward {
        r.head.to_string()
    } else {
        merge_commit(git, r, &old)?
    };
    let env = author_env(r);
    match &checkout {
        Some(path) => bring_along(git, path, &old, &new, &env)?,
        None => {
            let msg = format!("baa: merge {} ({})", r.branch, r.task_id);
            let moved = git.run_env(r.repo, &["update-ref", "-m", &msg, &full, &new, &old], &env);
            if let Err(e) = moved {
                return Err(
                    if resolve(git, r.repo, &full)?.as_deref() != Some(old.as_str()) {
                        MergeError::TargetMoved
                    } else {
                        e.into()
                    },
                );
            }
        }
    }
    Ok(Merged {
        commit: new,
        fast_forward,
        already_contained: false,
        checkout,
    })
}

fn author_env<'a>(r: &Request<'a>) -> [(&'static str, &'a str); 4] {
    [
        ("GIT_AUTHOR_NAME", r.author_name),
        ("GIT_AUTHOR_EMAIL", r.author_email),
        ("GIT_COMMITTER_NAME", r.author_name),
        ("GIT_COMMITTER_EMAIL", r.author_email),
    ]
}

/// The commit a full ref names, if it exists.
fn resolve(git: &Git, repo: &Path, full: &str) -> Result<Option<String>, GitError> {
    let spec = format!("{full}^{{commit}}");
    let o = git.run_status(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
        &[],
        &[0, 1, 128],
    )?;
    Ok((o.code == 0 && !o.line().is_empty()).then(|| o.line().to_string()))
}

fn is_ancestor(git: &Git, repo: &Path, a: &str, b: &str) -> Result<bool, GitError> {
    let o = git.run_status(repo, &["merge-base", "--is-ancestor", a, b], &[], &[0, 1])?;
    Ok(o.code == 0)
}

/// The merge commit of `old` and the result, or the conflicting paths.
fn merge_commit(git: &Git, r: &Request, old: &str) -> Result<String, MergeError> {
    let o = git
        .run_status(
            r.repo,
            &[
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                "-z",
                old,
                r.head,
            ],
            &[],
            &[0, 1],
        )
        .map_err(|e| match e {
            GitError::Failed {
                code: Some(129), ..
            } => MergeError::GitTooOld(e.to_string()),
            e if e.stderr().contains("unknown option") => MergeError::GitTooOld(e.to_string()),
            e => e.into(),
        })?;
    let mut parts = o.stdout.split('\0');
    let tree = parts.next().unwrap_or_default().trim().to_string();
    if o.code == 1 {
        let mut paths: Vec<String> = parts
            .take_while(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        paths.dedup();
        return Err(MergeError::Conflict(paths));
    }
    let msg = format!(
        "Merge branch '{}' into {}\n\nBaa-Task: {}\n",
        r.branch, r.into, r.task_id
    );
    let c = git.run_env(
        r.repo,
        &["commit-tree", &tree, "-p", old, "-p", r.head, "-m", &msg],
        &author_env(r),
    )?;
    Ok(c.line().to_string())
}

/// The working tree where `full` is checked out, if one is (a registered worktree whose
/// directory is gone does not count: nothing is under it).
fn checked_out_at(git: &Git, repo: &Path, full: &str) -> Result<Option<PathBuf>, GitError> {
    let o = git.run(repo, &["worktree", "list", "--porcelain"])?;
    let mut path: Option<&str> = None;
    for line in o.stdout.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            path = Some(p);
        } else if line.strip_prefix("branch ") == Some(full) {
            if let Some(p) = path.map(PathBuf::from).filter(|p| p.is_dir()) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

/// Tracked files with changes (staged or not) in the checkout at `path`.
fn changed_tracked(git: &Git, path: &Path) -> Result<Vec<String>, GitError> {
    let o = git.run(
        path,
        &["status", "--porcelain", "-z", "--untracked-files=no"],
    )?;
    let mut files = Vec::new();
    let mut entries = o.stdout.split('\0');
    while let Some(e) = entries.next() {
        if e.len() < 4 {
            continue;
        }
        files.push(e[3..].to_string());
        // A rename or copy names its source in the next entry.
        if matches!(e.as_bytes()[0], b'R' | b'C') {
            entries.next();
        }
    }
    Ok(files)
}

/// `git merge --ff-only new` in the checkout, which must still be at `old`.
fn bring_along(
    git: &Git,
    path: &Path,
    old: &str,
    new: &str,
    env: &[(&str, &str)],
) -> Result<(), MergeError> {
    let at = git.run(path, &["rev-parse", "HEAD"])?;
    if at.line() != old {
        return Err(MergeError::TargetMoved);
    }
    match git.run_env(
        path,
        &["merge", "--ff-only", "--no-autostash", "-q", new],
        env,
    ) {
        Ok(_) => Ok(()),
        Err(GitError::Failed { stderr, .. })
            if stderr.contains("untracked working tree files would be") =>
        {
            Err(MergeError::UntrackedInTheWay {
                path: path.to_path_buf(),
                files: listed_after(&stderr, "untracked working tree files would be"),
            })
        }
        Err(GitError::Failed { stderr, .. }) => Err(MergeError::CheckoutRefused {
            path: path.to_path_buf(),
            message: stderr.trim().to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The tab-indented paths git lists after the line containing `marker`.
fn listed_after(stderr: &str, marker: &str) -> Vec<String> {
    stderr
        .lines()
        .skip_while(|l| !l.contains(marker))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .map(|l| l.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::{git_in, TestRepo};

    /// Paths as git prints them may be the real ones (macOS's `/var` is `/private/var`).
    fn real(p: impl AsRef<Path>) -> PathBuf {
        std::fs::canonicalize(p).unwrap()
    }

    /// A task worktree on `baa/<id>` from main's tip with `files` committed; its head.
    fn task_commit(r: &TestRepo, id: &str, files: &[(&str, &str)]) -> String {
        let wt = r.root.join(id);
        let branch = format!("baa/{id}");
        r.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            &branch,
            &wt.display().to_string(),
            "main",
        ]);
        for (name, text) in files {
            std::fs::write(wt.join(name), text).unwrap();
        }
        git_in(&wt, &["add", "-A"]);
        git_in(&wt, &["commit", "-q", "-m", id]);
        git_in(&wt, &["rev-parse", "HEAD"]).trim().to_string()
    }

    fn req<'a>(r: &'a TestRepo, id: &'a str, head: &'a str, into: &'a str) -> Request<'a> {
        Request {
            repo: &r.repo,
            task_id: id,
            branch: "baa/x",
            head,
            into,
            author_name: "baa",
            author_email: "baa@example.com",
        }
    }

    /// What "nothing changed" compares: every ref, the checkout's status and HEAD, and
    /// the worktree list.
    fn snapshot(r: &TestRepo) -> (String, String, String) {
        (
            r.git(&["for-each-ref"]),
            r.git(&["status", "--porcelain"]) + &r.head(),
            r.git(&["worktree", "list", "--porcelain"]),
        )
    }

    #[test]
    fn fast_forwards_a_branch_that_is_not_checked_out() {
        let r = TestRepo::new("merge-ff");
        r.git(&["branch", "release"]);
        let head = task_commit(&r, "t1", &[("a.txt", "a\n")]);
        let m = merge(&Git::default(), &req(&r, "t1", &head, "release")).unwrap();
        assert_eq!(
            (m.commit.as_str(), m.fast_forward, m.checkout),
            (head.as_str(), true, None)
        );
        assert_eq!(r.git(&["rev-parse", "release"]).trim(), head);
        // The main checkout is untouched.
        assert!(!r.repo.join("a.txt").exists());
        let again = merge(&Git::default(), &req(&r, "t1", &head, "release")).unwrap();
        assert!(again.already_contained && again.commit == head, "{again:?}");
    }

    #[test]
    fn fast_forwards_the_branch_checked_out_in_the_main_checkout_keeping_its_untracked_file() {
        let r = TestRepo::new("merge-ff-co");
        std::fs::write(r.repo.join("notes.txt"), "mine\n").unwrap();
        let head = task_commit(&r, "t1", &[("a.txt", "a\n")]);
        let m = merge(&Git::default(), &req(&r, "t1", &head, "main")).unwrap();
        assert!(m.fast_forward, "{m:?}");
        assert_eq!(m.checkout.map(real), Some(real(&r.repo)));
        assert_eq!(r.head(), head);
        assert_eq!(
            std::fs::read_to_string(r.repo.join("a.txt")).unwrap(),
            "a\n"
        );
        assert_eq!(
            std::fs::read_to_string(r.repo.join("notes.txt")).unwrap(),
            "mine\n"
        );
        assert_eq!(r.git(&["status", "--porcelain"]), "?? notes.txt\n");
    }

    #[test]
    fn a_target_checked_out_in_a_linked_worktree_is_brought_along_there() {
        let r = TestRepo::new("merge-linked");
        let head = task_commit(&r, "t1", &[("a.txt", "a\n")]);
        let rel = r.root.join("rel");
        r.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            "release",
            &rel.display().to_string(),
            "main",
        ]);
        let main_before = r.head();
        let m = merge(&Git::default(), &req(&r, "t1", &head, "release")).unwrap();
        assert_eq!(m.checkout.map(real), Some(real(&rel)));
        assert_eq!(git_in(&rel, &["rev-parse", "HEAD"]).trim(), head);
        assert!(rel.join("a.txt").exists());
        assert_eq!(git_in(&rel, &["status", "--porcelain"]), "");
        assert_eq!(r.head(), main_before, "main is not touched");
    }

    #[test]
    fn makes_a_merge_commit_when_the_target_moved_on() {
        let r = TestRepo::new("merge-commit");
        let head = task_commit(&r, "t1", &[("a.txt", "a\n")]);
        std::fs::write(r.repo.join("b.txt"), "b\n").unwrap();
        r.git(&["add", "b.txt"]);
        r.git(&["commit", "-q", "-m", "operator"]);
        let before = r.head();
        let m = merge(&Git::default(), &req(&r, "t1", &head, "main")).unwrap();
        assert!(!m.fast_forward);
        assert_eq!(r.head(), m.commit);
        let parents = r.git(&["rev-list", "--parents", "-n1", "HEAD"]);
        assert_eq!(parents.trim(), format!("{} {before} {head}", m.commit));
        assert!(r.repo.join("a.txt").exists() && r.repo.join("b.txt").exists());
        let log = r.git(&["log", "-1", "--format=%an <%ae>%n%B"]);
        assert!(
            log.starts_with("baa <baa@example.com>\nMerge branch 'baa/x' into main"),
            "{log}"
        );
        assert!(log.contains("Baa-Task: t1"), "{log}");
        assert_eq!(r.git(&["status", "--porcelain"]), "");
    }

    #[test]
    fn a_conflict_names_the_paths_and_changes_nothing() {
        let r = TestRepo::new("merge-conflict");
        let head = task_commit(&r, "t1", &[("README.md", "task\n"), ("ok.txt", "x\n")]);
        std::fs::write(r.repo.join("README.md"), "operator\n").unwrap();
        r.git(&["commit", "-q", "-am", "operator"]);
        let before = snapshot(&r);
        let e = merge(&Git::default(), &req(&r, "t1", &head, "main")).unwrap_err();
        assert_eq!(e, MergeError::Conflict(vec!["README.md".into()]));
        assert_eq!(snapshot(&r), before);
    }

    #[test]
    fn a_checkout_with_a_modified_tracked_file_refuses_and_changes_nothing() {
        let r = TestRepo::new("merge-dirty");
        let head = task_commit(&r, "t1", &[("a.txt", "a\n")]);
        std::fs::write(r.repo.join("README.md"), "edited\n").unwrap();
        let before = snapshot(&r);
        let e = merge(&Git::default(), &req(&r, "t1", &head, "main")).unwrap_err();
        let MergeError::CheckoutDirty { path, files } = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (real(path), files),
            (real(&r.repo), vec!["README.md".into()])
        );
        assert_eq!(snapshot(&r), before);
        assert_eq!(
            std::fs::read_to_string(r.repo.join("README.md")).unwrap(),
            "edited\n"
        );
    }

    #[test]
    fn an_untracked_file_in_the_way_refuses_and_changes_nothing() {
        let r = TestRepo::new("merge-untracked");
        let head = task_commit(&r, "t1", &[("a.txt", "from the task\n")]);
        std::fs::write(r.repo.join("a.txt"), "the operator's\n").unwrap();
        let before = snapshot(&r);
        let e = merge(&Git::default(), &req(&r, "t1", &head, "main")).unwrap_err();
        let MergeError::UntrackedInTheWay { path, files } = e else {
            panic!("{e:?}")
        };
        assert_eq!((real(path), files), (real(&r.repo), vec!["a.txt".into()]));
        assert_eq!(snapshot(&r), before);
        assert_eq!(
            std::fs::read_to_string(r.repo.join("a.txt")).unwrap(),
            "the operator's\n"
        );
    }

    #[test]
    fn an_unknown_target_refuses_and_update_ref_is_a_compare_and_swap() {
        let r = TestRepo::new("merge-moved");
        let head = task_commit(&r, "t1", &[("a.txt", "a\n")]);
        let git = Git::default();
        assert_eq!(
            merge(&git, &req(&r, "t1", &head, "nope")).unwrap_err(),
            MergeError::UnknownTarget
        );
        // The compare-and-swap: a ref that is not at the old value is not moved.
        r.git(&["branch", "release"]);
        let e = git
            .run(
                &r.repo,
                &["update-ref", "refs/heads/release", &head, &"0".repeat(40)],
            )
            .unwrap_err();
        assert_eq!(e.code(), "git_failed");
        assert_ne!(r.git(&["rev-parse", "release"]).trim(), head);
    }

    #[test]
    fn a_checkout_that_moved_since_it_was_read_is_not_brought_along() {
        let r = TestRepo::new("merge-moved-co");
        let head = task_commit(&r, "t1", &[("a.txt", "a\n")]);
        let before = r.head();
        let e = bring_along(&Git::default(), &r.repo, &head, &head, &[]).unwrap_err();
        assert_eq!(e, MergeError::TargetMoved);
        assert_eq!(r.head(), before);
        assert!(!r.repo.join("a.txt").exists());
    }
}
