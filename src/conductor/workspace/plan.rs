//! Where a new task runs, decided when it is queued: its `cwd` (the repo root when none
//! is given) must lie under an allowed root; inside a git work tree it gets a worktree
//! unless it asks for `in_place`, outside one it runs in place; a worktree task's base is
//! resolved to a commit now, so later commits in the checkout do not change what it
//! starts from. Every refusal is a 400 naming the field (or the setting).

use std::path::{Path, PathBuf};

use serde_json::json;

use baa::common::api_error::ApiError;

use super::git::{Git, GitError};
use crate::config::WorkspaceConfig;
use crate::tasks::model::{TaskSpec, Workspace, IN_PLACE, WORKTREE};

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_details(json!({ "field": field }))
}

fn git_down(e: &GitError) -> ApiError {
    ApiError::new(
        503,
        e.code(),
        format!("Cannot inspect the task's repository: {e}."),
    )
}

/// Decides the workspace of `spec` (filling in its `cwd` when absent).
pub fn plan(
    cfg: &WorkspaceConfig,
    repo_root: &Path,
    git: &Git,
    spec: &mut TaskSpec,
) -> Result<Workspace, ApiError> {
    let cwd = match &spec.cwd {
        Some(c) => PathBuf::from(c),
        None => repo_root.to_path_buf(),
    };
    let real = std::fs::canonicalize(&cwd).map_err(|e| {
        bad(
            "cwd",
            format!("cwd {} cannot be resolved: {e}.", cwd.display()),
        )
    })?;
    check_roots(cfg, &cwd, &real)?;
    spec.cwd = Some(cwd.display().to_string());
    let top = toplevel(git, &real)?;
    let asked = spec.workspace.as_deref();
    let Some(top) = top.filter(|_| asked != Some(IN_PLACE)) else {
        if asked == Some(WORKTREE) {
            return Err(bad(
                "workspace",
                format!(
                    "workspace \"worktree\" needs a cwd inside a git work tree, and {} is not in one; send \"workspace\": \"in_place\" to run there.",
                    cwd.display()
                ),
            ));
        }
        if spec.base.is_some() {
            return Err(bad(
                "base",
                "base applies to worktree tasks only; this task runs in place.",
            ));
        }
        return Ok(Workspace {
            mode: IN_PLACE.into(),
            ..Workspace::default()
        });
    };
    let base_ref = spec.base.clone().unwrap_or_else(|| "HEAD".into());
    let base = resolve_commit(git, &top, &base_ref)?;
    let subdir = real
        .strip_prefix(&top)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(Workspace {
        mode: WORKTREE.into(),
        repo: Some(top.display().to_string()),
        subdir: Some(subdir),
        base_branch: base_branch(git, &top, &base_ref)?,
        base_ref: Some(base_ref),
        base: Some(base),
        ..Workspace::default()
    })
}

fn check_roots(cfg: &WorkspaceConfig, cwd: &Path, real: &Path) -> Result<(), ApiError> {
    if cfg.task_roots.iter().any(|r| real.starts_with(r)) {
        return Ok(());
    }
    let roots: Vec<String> = cfg
        .task_roots
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    let allowed = if roots.is_empty() {
        "none is set".to_string()
    } else {
        roots.join(", ")
    };
    Err(bad(
        "cwd",
        format!(
            "cwd {} is not under an allowed task root (BAA_CONDUCTOR_TASK_ROOTS: {allowed}); add its directory to BAA_CONDUCTOR_TASK_ROOTS to run tasks there.",
            cwd.display()
        ),
    )
    .with_details(json!({"field": "cwd", "setting": "BAA_CONDUCTOR_TASK_ROOTS", "roots": roots})))
}

/// The top level of the work tree `dir` lies in; `None` outside git (or inside a `.git`
/// directory or a bare repo, which have no work tree).
fn toplevel(git: &Git, dir: &Path) -> Result<Option<PathBuf>, ApiError> {
    // One call for both (every queued task and schedule fire pays for it): outside git,
    // and inside a `.git` dir where --show-toplevel refuses, it exits 128.
    let o = git
        .run_status(
            dir,
            &["rev-parse", "--is-inside-work-tree", "--show-toplevel"],
            &[],
            &[0, 128],
        )
        .map_err(|e| git_down(&e))?;
    let mut lines = o.stdout.lines();
    match (o.code, lines.next(), lines.next()) {
        (0, Some("true"), Some(top)) if !top.is_empty() => {
            let top = PathBuf::from(top);
            Ok(Some(std::fs::canonicalize(&top).unwrap_or(top)))
        }
        _ => Ok(None),
    }
}

fn resolve_commit(git: &Git, top: &Path, base_ref: &str) -> Result<String, ApiError> {
    let spec = format!("{base_ref}^{{commit}}");
    let o = git
        .run_status(
            top,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &spec,
            ],
            &[],
            &[0, 1, 128],
        )
        .map_err(|e| git_down(&e))?;
    if o.code == 0 && !o.line().is_empty() {
        return Ok(o.line().to_string());
    }
    let why = if base_ref == "HEAD" {
        format!("the repository {} has no commit yet; commit something first, or send \"workspace\": \"in_place\".", top.display())
    } else {
        format!(
            "base {base_ref:?} is not a branch, tag or commit of {}.",
            top.display()
        )
    };
    Err(bad("base", why))
}

/// The local branch `base_ref` names (for `HEAD`, the branch checked out), the default
/// target of a merge; `None` for a tag, a commit or a detached HEAD.
fn base_branch(git: &Git, top: &Path, base_ref: &str) -> Result<Option<String>, ApiError> {
    if base_ref.starts_with('-') {
        return Ok(None);
    }
    let o = git
        .run_status(
            top,
            // No `--end-of-options` here: with `--symbolic-full-name` git prints it back as
            // a line. `validate` already refused a ref starting with '-'.
            &["rev-parse", "--symbolic-full-name", base_ref],
            &[],
            &[0, 128],
        )
        .map_err(|e| git_down(&e))?;
    let full = o.line();
    let full = if full == "HEAD" {
        let o = git
            .run_status(top, &["symbolic-ref", "-q", "HEAD"], &[], &[0, 1])
            .map_err(|e| git_down(&e))?;
        o.line().to_string()
    } else {
        full.to_string()
    };
    Ok(full
        .strip_prefix("refs/heads/")
        .filter(|b| !b.is_empty())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::TestRepo;

    fn cfg(roots: &[&Path]) -> WorkspaceConfig {
        WorkspaceConfig {
            task_roots: roots
                .iter()
                .map(|r| std::fs::canonicalize(r).unwrap())
                .collect(),
            task_roots_configured: true,
            branch_prefix: "baa/".into(),
            author_name: "t".into(),
            author_email: "t@x".into(),
            retention_s: 60,
        }
    }

    fn spec(cwd: &Path) -> TaskSpec {
        TaskSpec {
            prompt: None,
            steps: vec![],
            cwd: Some(cwd.display().to_string()),
            model: None,
            effort: None,
            sandbox: None,
            approval_policy: None,
            timeout_s: 1,
            max_attempts: 1,
            priority: 0,
            workspace: None,
            base: None,
        }
    }

    fn field(e: ApiError) -> String {
        e.details.unwrap()["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_git_cwd_gets_a_worktree_from_head_and_a_plain_dir_runs_in_place() {
        let r = TestRepo::new("plan");
        let git = Git::default();
        let c = cfg(&[r.root.as_path()]);
        let sub = r.repo.join("src");
        std::fs::create_dir_all(&sub).unwrap();
        let w = plan(&c, &r.repo, &git, &mut spec(&sub)).unwrap();
        assert_eq!(w.mode, "worktree");
        assert_eq!(w.base.as_deref(), Some(r.head().as_str()));
        assert_eq!(w.base_branch.as_deref(), Some("main"));
        assert_eq!(w.subdir.as_deref(), Some("src"));
        let plain = r.root.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let w = plan(&c, &r.repo, &git, &mut spec(&plain)).unwrap();
        assert_eq!(w.mode, "in_place");
        // Inside the .git dir there is no work tree either.
        let w = plan(&c, &r.repo, &git, &mut spec(&r.repo.join(".git"))).unwrap();
        assert_eq!(w.mode, "in_place");
        let mut s = spec(&r.repo);
        s.workspace = Some("in_place".into());
        assert_eq!(plan(&c, &r.repo, &git, &mut s).unwrap().mode, "in_place");
        let mut s = spec(&r.repo);
        s.base = Some(r.head());
        let w = plan(&c, &r.repo, &git, &mut s).unwrap();
        assert_eq!((w.base.unwrap(), w.base_branch), (r.head(), None));
    }

    #[test]
    fn outside_the_roots_a_worktree_outside_git_and_a_bad_base_are_refused() {
        let r = TestRepo::new("plan-bad");
        let git = Git::default();
        let c = cfg(&[r.repo.as_path()]);
        let e = plan(&c, &r.repo, &git, &mut spec(&r.root)).unwrap_err();
        assert!(
            e.message.contains("BAA_CONDUCTOR_TASK_ROOTS"),
            "{}",
            e.message
        );
        assert_eq!(field(e), "cwd");
        let c = cfg(&[r.root.as_path()]);
        let plain = r.root.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let mut s = spec(&plain);
        s.workspace = Some("worktree".into());
        assert_eq!(
            field(plan(&c, &r.repo, &git, &mut s).unwrap_err()),
            "workspace"
        );
        let mut s = spec(&r.repo);
        s.base = Some("no-such-branch".into());
        let e = plan(&c, &r.repo, &git, &mut s).unwrap_err();
        assert_eq!((e.status, field(e)), (400, "base".to_string()));
        let e = plan(&cfg(&[]), &r.repo, &git, &mut spec(&r.repo)).unwrap_err();
        assert!(e.message.contains("none is set"), "{}", e.message);
    }
}
