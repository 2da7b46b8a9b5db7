//! Real `git` for the workspace tests, run as an operator would (an identity set, nothing
//! of the daemons' settings), panicking with git's message when it fails.

use std::path::Path;
use std::process::Command;

/// `git -C dir args…`; its stdout without the trailing newline.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "operator")
        .env("GIT_AUTHOR_EMAIL", "op@example.com")
        .env("GIT_COMMITTER_NAME", "operator")
        .env("GIT_COMMITTER_EMAIL", "op@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// `git worktree add -q -b branch path [base]` in `repo`: a task's worktree made by hand.
#[track_caller]
pub fn worktree_add(repo: &Path, branch: &str, path: &Path, base: Option<&str>) {
    let path = path.display().to_string();
    let mut args = vec!["worktree", "add", "-q", "-b", branch, &path];
    args.extend(base);
    git(repo, &args);
}
