//! A worktree task's result routes and CLI against a real conductor and real git: the
//! token guard (401 in the routes' own words), 404 for an unknown task, 409
//! `task_in_place` for a task that ran in place (through codexd's stub child), and
//! `task diff|merge|discard|show` on a task whose worktree, branch, commit and record are
//! made here by hand (the worker that makes them is tested on its own), with the CLI's
//! usage errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::conductor::TOKEN;
use crate::support::daemon::{Ran, Spawn, CONDUCTOR};
use crate::support::git::{git, worktree_add};
use crate::support::http::{get, post, post_h};
use crate::support::tasks;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn auth() -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {TOKEN}"))]
}

#[test]
fn review_routes_need_the_token_404_an_unknown_task_and_409_an_in_place_one() {
    let dir = TempDir::new("review-guards");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    for action in ["merge", "discard"] {
        let url = c.url(&format!("/v1/tasks/task_nope/{action}"));
        let e = post(&url, &json!({})).expect_error(401, "unauthorized");
        assert_eq!(
            e["message"],
            "Task merges and discards require Authorization: Bearer <BAA_SHARED_TOKEN>.",
            "{e}"
        );
        let [(k, v)] = auth();
        post_h(&url, &json!({}), &[(k, &v)]).expect_error(404, "not_found");
    }
    get(&c.url("/v1/tasks/task_nope/diff")).expect_error(404, "not_found");

    // A task that ran in place has no branch: each route says so.
    let plain = dir.child("plain");
    let id = c.create(
        json!({"title": "in place", "prompt": "hi", "cwd": plain, "workspace": "in_place"}),
    );
    c.wait_status(&id, "succeeded", T);
    let [(k, v)] = auth();
    for (action, code) in [("merge", 409), ("discard", 409)] {
        let url = c.url(&format!("/v1/tasks/{id}/{action}"));
        post_h(&url, &json!({}), &[(k, &v)]).expect_error(code, "task_in_place");
    }
    get(&c.url(&format!("/v1/tasks/{id}/diff"))).expect_error(409, "task_in_place");
}

/// A repo (`main`, one commit, an untracked file in its checkout) and a task worktree on
/// `baa/<id>` under the conductor's worktrees dir with `a.txt` committed; returns the
/// repo, the worktree, the base and the head.
fn repo_and_task(dir: &TempDir, id: &str) -> (PathBuf, PathBuf, String, String) {
    let repo = dir.child("repo");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    git(&repo, &["add", "README.md"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    std::fs::write(repo.join("notes.txt"), "the operator's\n").unwrap();
    let base = git(&repo, &["rev-parse", "HEAD"]);
    let wt = dir.child("worktrees").join("repo-x").join(id);
    let branch = format!("baa/{id}");
    worktree_add(&repo, &branch, &wt, Some(&base));
    std::fs::write(wt.join("a.txt"), "from the task\n").unwrap();
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "task"]);
    let head = git(&wt, &["rev-parse", "HEAD"]);
    (repo, wt, base, head)
}

/// The record the worker would have written for a succeeded worktree task.
fn record(id: &str, repo: &Path, wt: &Path, base: &str, head: &str) -> Value {
    let branch = format!("baa/{id}");
    json!({
        "task_id": id, "title": "add a.txt", "status": "succeeded", "kind": "codex",
        "input": {"steps": [{"prompt": "add a.txt"}], "timeout_s": 60, "max_attempts": 1, "priority": 0},
        "created_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:01:00.000Z",
        "steps_total": 1, "steps_done": 1, "max_attempts": 1, "seq": 1,
        "workspace": {"mode": "worktree", "repo": repo, "subdir": "", "base_ref": "HEAD",
                      "base": base, "base_branch": "main", "path": wt, "branch": branch},
        "result": {"changes": "committed", "branch": branch, "base": base, "head": head,
                   "files_changed": 1, "insertions": 1, "deletions": 0, "diff_bytes": 120},
    })
}

fn task(base: &str, args: &[&str], token: Option<&str>) -> Ran {
    let mut s = Spawn::new(CONDUCTOR)
        .arg("task")
        .args(args)
        .args(["--conductor-url", base]);
    if let Some(t) = token {
        s = s.env("BAA_SHARED_TOKEN", t);
    }
    s.output()
}

#[track_caller]
fn ok(r: &Ran) -> &str {
    assert!(r.status.success(), "expected success: {r:?}");
    &r.stdout
}

#[test]
fn review_cli_diffs_merges_shows_and_discards_a_worktree_task() {
    let dir = TempDir::new("review-cli");
    let id = "task_review0001";
    let (repo, wt, base, head) = repo_and_task(&dir, id);
    let state = dir.child("state").join("tasks");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(format!("{id}.json")),
        record(id, &repo, &wt, &base, &head).to_string(),
    )
    .unwrap();
    let c = tasks::start(&dir, "http://127.0.0.1:9");
    let url = c.d.base.as_str();

    // diff: the patch on stdout, the stat on stderr.
    let d = task(url, &["diff", id], None);
    assert!(ok(&d).contains("+from the task"), "{d:?}");
    assert!(d.stderr.contains("+1 \u{2212}0 in 1 file"), "{d:?}");

    // merge without a token: refused before sending, exit 1.
    let r = task(url, &["merge", id], None);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("BAA_SHARED_TOKEN"), "{r:?}");
    assert_eq!(git(&repo, &["rev-parse", "main"]), base);

    let m = task(url, &["merge", id], Some(TOKEN));
    assert_eq!(
        ok(&m),
        format!("merged baa/{id} into main (fast-forward) at {head}\n")
    );
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        std::fs::read_to_string(repo.join("a.txt")).unwrap(),
        "from the task\n"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "?? notes.txt");
    // Merged: the worktree and the branch have done their job and go.
    assert!(!wt.exists(), "the worktree is still there after the merge");
    assert_eq!(git(&repo, &["branch", "--list", &format!("baa/{id}")]), "");
    let again = task(url, &["merge", id], Some(TOKEN));
    assert!(ok(&again).starts_with("already merged"), "{again:?}");

    let shown = task(url, &["show", id], None);
    for want in [
        format!("branch     baa/{id} (worktree removed "),
        "changes    +1 \u{2212}0 in 1 file".to_string(),
        "merged     into main (fast-forward)".to_string(),
    ] {
        assert!(ok(&shown).contains(&want), "no {want:?} in {shown:?}");
    }
    let summary = c.summary();
    assert_eq!(
        summary["recent"][0]["branch"],
        format!("baa/{id}"),
        "{summary:#}"
    );
    assert_eq!(
        summary["recent"][0]["result"]["insertions"], 1,
        "{summary:#}"
    );

    let gone = task(url, &["discard", id], Some(TOKEN));
    assert_eq!(
        ok(&gone),
        format!("discarded {id}: its worktree and branch baa/{id} are removed\n")
    );
    assert!(!wt.exists());
    assert_eq!(git(&repo, &["branch", "--list", &format!("baa/{id}")]), "");
    assert_eq!(git(&repo, &["rev-parse", "main"]), head, "the merge stays");

    // Usage errors: one line, exit 2.
    for (args, want) in [
        (&["merge"][..], "task merge needs a task ID"),
        (
            &["diff", id, "--max-bytes", "x"][..],
            "--max-bytes must be a number",
        ),
        (
            &["discard", id, "--into", "main"][..],
            "unknown flag --into",
        ),
    ] {
        let r = task(url, args, Some(TOKEN));
        assert_eq!(r.status.code(), Some(2), "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    }
    let help = task(url, &["--help"], None);
    for sub in ["diff ID", "merge ID", "discard ID"] {
        assert!(ok(&help).contains(sub), "no {sub:?} in the help");
    }
}
