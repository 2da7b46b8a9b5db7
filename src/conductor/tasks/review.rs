//! What a worktree task's result routes do, apart from HTTP: its diff, a merge of its
//! branch into a target branch, and a discard of its worktree and branch. Merge and
//! discard change the repository: the routes check the bearer token first, and only the
//! lease holder runs them. Each is idempotent: a second merge answers the first one's
//! record, a second discard finds nothing left to remove. What changed is on disk (the
//! task record) before it is answered.

use std::path::Path;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use baa::common::api_error::ApiError;
use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

use super::model::{Status, Task, TaskResult, Workspace};
use crate::app::App;
use crate::workspace::diff::{self, Diff};
use crate::workspace::discard;
use crate::workspace::git::GitError;
use crate::workspace::merge::{self, MergeError};

/// One merge or discard at a time: two merges of one task must not both merge, and a
/// discard must not pull a branch from under a merge.
static CHANGES: Mutex<()> = Mutex::new(());

fn conflict(code: &str, message: String, task: &Task) -> ApiError {
    ApiError::new(409, code, message)
        .with_details(json!({"task_id": task.task_id, "status": task.status}))
}

/// The task's worktree record, or 409 `task_in_place`.
fn worktree_of(task: &Task) -> Result<&Workspace, ApiError> {
    match &task.workspace {
        Some(w) if w.is_worktree() => Ok(w),
        _ => Err(conflict(
            "task_in_place",
            format!(
                "Task \"{}\" ran in place (in its cwd, not in a worktree of its own): it has no branch to diff, merge or discard.",
                task.task_id
            ),
            task,
        )),
    }
}

fn discarded(task: &Task) -> Option<&str> {
    task.result.as_ref().and_then(|r| r.discarded_at.as_deref())
}

fn refuse_discarded(task: &Task) -> Result<(), ApiError> {
    match discarded(task) {
        Some(at) => Err(conflict(
            "discarded",
            format!(
                "Task \"{}\"'s worktree and branch were discarded at {at}.",
                task.task_id
            ),
            task,
        )),
        None => Ok(()),
    }
}

/// The repo the record names, which must still be there.
fn repo_of<'a>(task: &Task, ws: &'a Workspace) -> Result<&'a Path, ApiError> {
    match ws.repo.as_deref().map(Path::new) {
        Some(p) if p.is_dir() => Ok(p),
        other => Err(conflict(
            "repo_missing",
            format!(
                "Task \"{}\"'s repository {} is not there any more.",
                task.task_id,
                other.map_or("(none recorded)".into(), |p| p.display().to_string())
            ),
            task,
        )),
    }
}

/// A git failure as an API error: retryable ones (a held lock, a full disk, a timeout)
/// are 503 with their code, the others 500.
fn git_error(what: &str, e: &GitError) -> ApiError {
    let status = if e.retryable() { 503 } else { 500 };
    ApiError::new(status, e.code(), format!("{what}: {e}."))
        .with_details(json!({"retryable": e.retryable()}))
}

fn persist_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("Cannot persist the task: {e}"))
}

// ---- diff -------------------------------------------------------------------------------

/// `max_bytes` of the diff query: 1 ..= [`diff::MAX_BYTES`], default [`diff::DEFAULT_MAX_BYTES`].
pub fn parse_max_bytes(raw: Option<String>) -> Result<usize, ApiError> {
    let Some(s) = raw.filter(|s| !s.trim().is_empty()) else {
        return Ok(diff::DEFAULT_MAX_BYTES);
    };
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=diff::MAX_BYTES).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "max_bytes must be an integer between 1 and {}, got {s:?}.",
                diff::MAX_BYTES
            ),
        )
        .with_details(json!({"parameter": "max_bytes", "max": diff::MAX_BYTES}))),
    }
}

/// `GET /v1/tasks/:id/diff`: the result's diff against the base, or, before there is a
/// result, the worktree's uncommitted diff.
pub fn diff(app: &App, id: &str, max_bytes: usize) -> Result<Value, ApiError> {
    let task = app.tasks.task(id)?;
    let ws = worktree_of(&task)?;
    refuse_discarded(&task)?;
    let (d, head) = match &task.result {
        Some(r) => {
            let repo = repo_of(&task, ws)?;
            let d = diff::committed(&app.git, repo, &r.base, &r.head, max_bytes)
                .map_err(|e| git_error("Cannot diff the task's branch", &e))?;
            (d, Some(r.head.clone()))
        }
        None => {
            let live = ws
                .path
                .as_deref()
                .map(Path::new)
                .filter(|p| ws.removed_at.is_none() && p.is_dir());
            let (Some(path), Some(base)) = (live, ws.base.as_deref()) else {
                let why = match &ws.removed_at {
                    Some(at) => format!("its worktree was removed at {at}"),
                    None => "its worktree is not made yet".to_string(),
                };
                return Err(conflict(
                    "no_worktree",
                    format!(
                        "Task \"{id}\" ({}) has no result and {why}: there is nothing to diff.",
                        task.status
                    ),
                    &task,
                ));
            };
            let d = diff::working_tree(&app.git, path, base, max_bytes)
                .map_err(|e| git_error("Cannot diff the task's worktree", &e))?;
            (d, None)
        }
    };
    Ok(diff_json(&task, ws, &d, head, max_bytes))
}

fn diff_json(task: &Task, ws: &Workspace, d: &Diff, head: Option<String>, max: usize) -> Value {
    let files: Vec<Value> = d
        .stat
        .files
        .iter()
        .map(|f| json!({"path": f.path, "insertions": f.insertions, "deletions": f.deletions}))
        .collect();
    let mut out = json!({
        "task_id": task.task_id,
        "status": task.status,
        "branch": ws.branch,
        "base": task.result.as_ref().map_or(ws.base.clone(), |r| Some(r.base.clone())),
        "head": head,
        "changes": task.result.as_ref().map(|r| r.changes.clone()),
        "uncommitted": d.uncommitted,
        "stat": {
            "files_changed": d.stat.files_changed,
            "insertions": d.stat.insertions,
            "deletions": d.stat.deletions,
            "files": files,
        },
        "diff": d.patch,
        "truncated": d.truncated,
        "max_bytes": max,
        "merged": task.result.as_ref().and_then(|r| r.merged.clone()),
    });
    if d.uncommitted {
        out["untracked"] = json!(d.untracked);
    }
    out
}

// ---- merge ------------------------------------------------------------------------------

fn bad_into(m: String) -> ApiError {
    ApiError::bad_request("invalid_request", m).with_details(json!({"field": "into"}))
}

/// The merge body: `{into?}`, a branch name (`refs/heads/` dropped).
fn asked_into(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    if let Some(k) = body.keys().find(|k| k.as_str() != "into") {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("Unknown field {k:?}; a merge takes only \"into\" (a branch name)."),
        )
        .with_details(json!({"field": k})));
    }
    let into = match body.get("into") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(bad_into("into must be a branch name (a string).".into())),
    };
    let into = into.strip_prefix("refs/heads/").unwrap_or(into);
    if into.is_empty()
        || into.starts_with('-')
        || into.len() > 255
        || into.chars().any(char::is_control)
    {
        return Err(bad_into(format!("into {into:?} is not a branch name.")));
    }
    Ok(Some(into.to_string()))
}

/// The target of a merge: the one asked, else the branch the base came from.
fn target(asked: Option<String>, ws: &Workspace, result: &TaskResult) -> Result<String, ApiError> {
    let into = match asked {
        Some(a) => a,
        None => ws.base_branch.clone().ok_or_else(|| {
            bad_into("into is needed: the task's base was not a branch, so there is no default target; send {\"into\": \"<branch>\"}.".into())
        })?,
    };
    if into == result.branch {
        return Err(bad_into(format!("into {into:?} is the task's own branch.")));
    }
    Ok(into)
}

/// What a merge needs of the task, or why it cannot merge.
fn mergeable(task: &Task) -> Result<(&Workspace, &TaskResult), ApiError> {
    let ws = worktree_of(task)?;
    refuse_discarded(task)?;
    if task.status() != Some(Status::Succeeded) {
        return Err(conflict(
            "task_not_succeeded",
            format!(
                "Task \"{}\" is {}; only a succeeded task's result can be merged.",
                task.task_id, task.status
            ),
            task,
        ));
    }
    match &task.result {
        Some(r) if r.changes == "committed" => Ok((ws, r)),
        _ => Err(conflict(
            "no_changes",
            format!(
                "Task \"{}\" changed nothing: its branch has no commit to merge.",
                task.task_id
            ),
            task,
        )),
    }
}

/// An already merged task answers its record again; a different target is refused.
fn merged_before(task: &Task, asked: Option<&str>) -> Result<Option<Value>, ApiError> {
    let Some(m) = task.result.as_ref().and_then(|r| r.merged.clone()) else {
        return Ok(None);
    };
    if asked.is_some_and(|a| Some(a) != m["into"].as_str()) {
        return Err(ApiError::new(
            409,
            "already_merged",
            format!(
                "Task \"{}\" was already merged into {} at {}.",
                task.task_id, m["into"], m["at"]
            ),
        )
        .with_details(json!({"task_id": task.task_id, "merged": m})));
    }
    Ok(Some(
        json!({"task": task, "merged": m, "already_merged": true}),
    ))
}

fn merge_error(e: MergeError, task: &Task, into: &str, branch: &str) -> ApiError {
    let id = &task.task_id;
    match e {
        MergeError::UnknownTarget => ApiError::bad_request(
            "invalid_request",
            format!("into {into:?}: there is no such branch in the task's repository."),
        )
        .with_details(json!({"field": "into"})),
        MergeError::Conflict(paths) => ApiError::new(
            409,
            "merge_conflict",
            format!(
                "Merging {branch} into {into} conflicts in {}; nothing was changed. Rebase or fix the branch by hand, or discard the task.",
                paths.join(", ")
            ),
        )
        .with_details(json!({"task_id": id, "into": into, "branch": branch, "paths": paths})),
        MergeError::CheckoutDirty { path, files } => ApiError::new(
            409,
            "target_checkout_dirty",
            format!(
                "{into} is checked out at {} with changes to tracked files ({}); commit or stash them, then merge again. Nothing was changed.",
                path.display(),
                files.join(", ")
            ),
        )
        .with_details(json!({"task_id": id, "into": into, "checkout": path, "files": files})),
        MergeError::UntrackedInTheWay { path, files } => ApiError::new(
            409,
            "untracked_files_in_the_way",
            format!(
                "{into} is checked out at {}, where untracked files would be overwritten by the merge ({}); move them away, then merge again. Nothing was changed.",
                path.display(),
                files.join(", ")
            ),
        )
        .with_details(json!({"task_id": id, "into": into, "checkout": path, "files": files})),
        MergeError::CheckoutRefused { path, message } => ApiError::new(
            409,
            "target_checkout_refused",
            format!(
                "{into} is checked out at {}, and git refused to bring it along; nothing was changed: {message}",
                path.display()
            ),
        )
        .with_details(json!({"task_id": id, "into": into, "checkout": path})),
        MergeError::TargetMoved => ApiError::new(
            409,
            "target_moved",
            format!("{into} moved while merging; nothing was changed. Merge again."),
        )
        .with_details(json!({"task_id": id, "into": into})),
        MergeError::GitTooOld(why) => ApiError::new(
            503,
            "git_too_old",
            format!("A merge commit needs git 2.38 or newer (merge-tree --write-tree): {why}"),
        ),
        MergeError::Git(e) => git_error("Cannot merge", &e),
    }
}

/// `POST /v1/tasks/:id/merge` with `{into?}` → `{task, merged}`.
pub fn merge(app: &App, id: &str, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let asked = asked_into(body)?;
    app.require_leader("merges")?;
    let _one = lock(&CHANGES);
    let task = app.tasks.task(id)?;
    worktree_of(&task)?;
    if let Some(answer) = merged_before(&task, asked.as_deref())? {
        return Ok(answer);
    }
    let (ws, result) = mergeable(&task)?;
    let into = target(asked, ws, result)?;
    let repo = repo_of(&task, ws)?;
    let cfg = &app.cfg.workspaces;
    let m = merge::merge(
        &app.git,
        &merge::Request {
            repo,
            task_id: id,
            branch: &result.branch,
            head: &result.head,
            into: &into,
            author_name: &cfg.author_name,
            author_email: &cfg.author_email,
        },
    )
    .map_err(|e| merge_error(e, &task, &into, &result.branch))?;
    let mut record = json!({
        "into": into,
        "commit": m.commit,
        "fast_forward": m.fast_forward,
        "at": now_rfc3339(),
    });
    if m.already_contained {
        record["already_contained"] = json!(true);
    }
    if let Some(p) = &m.checkout {
        record["checkout"] = json!(p);
    }
    let t = app
        .tasks
        .update(id, |t| match t.result.as_mut() {
            Some(r) => {
                r.merged = Some(record.clone());
                true
            }
            None => false,
        })
        .map_err(persist_error)?
        .ok_or_else(|| ApiError::not_found(format!("Unknown task \"{id}\".")))?;
    let how = if m.already_contained {
        "already contained it".to_string()
    } else if m.fast_forward {
        "fast-forward".to_string()
    } else {
        "merge commit".to_string()
    };
    app.tasks.logs.append(
        id,
        None,
        "info",
        &format!(
            "merged {} into {into} ({how}) at {}",
            result.branch, m.commit
        ),
        None,
    );
    let t = retire_after_merge(app, t);
    app.task_changed(&t);
    Ok(json!({"task": t, "merged": record}))
}

/// After a merge the task's branch has done its job (its commit is in the target) and so
/// has its worktree: both go, as the issue says the branch stays only "until it is merged
/// or discarded". The merge stands whatever happens here; a failure is logged and a
/// discard finishes the job.
fn retire_after_merge(app: &App, t: Task) -> Task {
    let Some(ws) = t.workspace.clone() else {
        return t;
    };
    let id = t.task_id.clone();
    if let Err(e) = discard::discard(&app.git, &ws, &app.cfg.worktrees_dir) {
        app.tasks.logs.append(
            &id,
            None,
            "warn",
            &format!("merged, but the worktree and branch could not be removed ({e}); POST /v1/tasks/{id}/discard removes them"),
            None,
        );
        return t;
    }
    let now = now_rfc3339();
    let updated = app.tasks.update(&id, |t| match t.workspace.as_mut() {
        Some(w) if w.path.is_some() && w.removed_at.is_none() => {
            w.removed_at = Some(now.clone());
            true
        }
        _ => false,
    });
    app.tasks.logs.append(
        &id,
        None,
        "info",
        &format!(
            "worktree and branch {} removed after the merge",
            ws.branch.as_deref().unwrap_or("-")
        ),
        None,
    );
    match updated {
        Ok(Some(t)) => t,
        _ => t,
    }
}

// ---- discard ----------------------------------------------------------------------------

/// `POST /v1/tasks/:id/discard` → `{task}`: the worktree and the branch are removed (a
/// queued or running task is refused: its turns work there).
pub fn discard(app: &App, id: &str) -> Result<Value, ApiError> {
    app.require_leader("discards")?;
    let _one = lock(&CHANGES);
    let task = app.tasks.task(id)?;
    let ws = worktree_of(&task)?.clone();
    if matches!(task.status(), Some(Status::Queued | Status::Running)) {
        return Err(conflict(
            "task_not_finished",
            format!(
                "Task \"{id}\" is {}; cancel it before discarding its worktree.",
                task.status
            ),
            &task,
        ));
    }
    if discarded(&task).is_some() {
        return Ok(json!({"task": task, "already_discarded": true}));
    }
    discard::discard(&app.git, &ws, &app.cfg.worktrees_dir)
        .map_err(|e| git_error("Cannot discard the task's worktree", &e))?;
    let now = now_rfc3339();
    let t = app
        .tasks
        .update(id, |t| {
            if let Some(w) = t.workspace.as_mut() {
                if w.path.is_some() && w.removed_at.is_none() {
                    w.removed_at = Some(now.clone());
                }
            }
            if let Some(r) = t.result.as_mut() {
                r.discarded_at = Some(now.clone());
            }
            true
        })
        .map_err(persist_error)?
        .ok_or_else(|| ApiError::not_found(format!("Unknown task \"{id}\".")))?;
    app.tasks.logs.append(
        id,
        None,
        "warn",
        &format!(
            "discarded: worktree and branch {} removed",
            ws.branch.as_deref().unwrap_or("-")
        ),
        None,
    );
    app.task_changed(&t);
    Ok(json!({"task": t}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: &str, result: Option<TaskResult>) -> Task {
        serde_json::from_value(json!({
            "task_id": "t1", "status": status, "created_at": "2026-01-01T00:00:00.000Z",
            "workspace": {"mode": "worktree", "repo": "/r", "base": "b", "base_branch": "main",
                          "branch": "baa/t1"},
            "result": result,
        }))
        .unwrap()
    }

    fn committed() -> TaskResult {
        TaskResult {
            changes: "committed".into(),
            branch: "baa/t1".into(),
            base: "b".into(),
            head: "h".into(),
            ..TaskResult::default()
        }
    }

    #[test]
    fn only_a_succeeded_task_with_a_commit_merges_and_each_refusal_says_why() {
        assert!(mergeable(&task("succeeded", Some(committed()))).is_ok());
        let code = |t: Task| mergeable(&t).unwrap_err().code;
        assert_eq!(code(task("failed", None)), "task_not_succeeded");
        assert_eq!(code(task("running", None)), "task_not_succeeded");
        let none = TaskResult {
            changes: "none".into(),
            ..committed()
        };
        assert_eq!(code(task("succeeded", Some(none))), "no_changes");
        assert_eq!(code(task("succeeded", None)), "no_changes");
        let gone = TaskResult {
            discarded_at: Some("2026-01-01T00:00:00.000Z".into()),
            ..committed()
        };
        assert_eq!(code(task("succeeded", Some(gone))), "discarded");
        let mut in_place = task("succeeded", Some(committed()));
        in_place.workspace = None;
        assert_eq!(code(in_place), "task_in_place");
    }

    #[test]
    fn the_target_defaults_to_the_base_branch_and_a_bad_one_names_into() {
        let t = task("succeeded", Some(committed()));
        let ws = t.workspace.as_ref().unwrap();
        let r = committed();
        let into = |v: Value| asked_into(v.as_object().unwrap()).and_then(|a| target(a, ws, &r));
        assert_eq!(into(json!({})).unwrap(), "main");
        assert_eq!(into(json!({"into": "refs/heads/dev"})).unwrap(), "dev");
        for bad in [
            json!({"into": ""}),
            json!({"into": "-x"}),
            json!({"into": 3}),
            json!({"into": "baa/t1"}),
        ] {
            let e = into(bad.clone()).unwrap_err();
            assert_eq!(
                (e.status, e.details.unwrap()["field"].clone()),
                (400, json!("into")),
                "{bad}"
            );
        }
        let e = into(json!({"onto": "main"})).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "onto");
        let mut detached = ws.clone();
        detached.base_branch = None;
        let e = target(None, &detached, &r).unwrap_err();
        assert!(e.message.contains("into is needed"), "{}", e.message);
    }

    #[test]
    fn max_bytes_is_bounded() {
        assert_eq!(parse_max_bytes(None).unwrap(), diff::DEFAULT_MAX_BYTES);
        assert_eq!(parse_max_bytes(Some("100".into())).unwrap(), 100);
        for bad in ["0", "x", "99999999999"] {
            assert_eq!(
                parse_max_bytes(Some(bad.into())).unwrap_err().code,
                "invalid_query"
            );
        }
    }
}
