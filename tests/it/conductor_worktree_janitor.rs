//! Workspace housekeeping against real git: the janitor removes a finished task's worktree
//! after `BAA_CONDUCTOR_WORKTREE_RETENTION` while its branch stays, removes an old worktree
//! no task names any more (its task pruned), prunes registrations of worktrees deleted by
//! hand at start, and `/v1/runtime` shows what is left.
//!
//! The worktrees and task records are made by hand before the conductor starts (the store
//! reads `state/tasks/*.json` at start), so this needs neither codexd nor a run.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use baa::common::time::{now_ms, rfc3339_from_ms};

use crate::support::conductor::{spawn, TOKEN};
use crate::support::daemon::wait_for;
use crate::support::git::{git, worktree_add};
use crate::support::http::get;
use crate::support::tmp::TempDir;

const DAY_MS: u64 = 86_400_000;

/// A finished worktree task's record, as the worker leaves it.
fn finished_task(id: &str, repo: &Path, path: &Path, finished_ms: u64) -> Value {
    let at = rfc3339_from_ms(finished_ms);
    json!({
        "task_id": id,
        "title": id,
        "status": "succeeded",
        "kind": "codex",
        "input": {"steps": [{"prompt": "p"}], "timeout_s": 60, "max_attempts": 1, "priority": 0},
        "created_at": rfc3339_from_ms(finished_ms - 60_000),
        "updated_at": at,
        "started_at": rfc3339_from_ms(finished_ms - 50_000),
        "finished_at": at,
        "steps_total": 1,
        "steps_done": 1,
        "workspace": {
            "mode": "worktree",
            "repo": repo,
            "subdir": "",
            "base_ref": "HEAD",
            "base_branch": "main",
            "path": path,
            "branch": format!("baa/{id}"),
        },
    })
}

#[test]
fn a_finished_tasks_worktree_was_kept_forever_now_it_goes_after_the_retention_and_its_branch_stays()
{
    let dir = TempDir::new("wt-janitor");
    let repo = dir.child("repo");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    git(&repo, &["add", "README.md"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let repo = std::fs::canonicalize(&repo).unwrap();
    let worktrees = dir.join("worktrees");
    let wt = |id: &str| worktrees.join("repo-0123456789").join(id);
    let tasks_dir = dir.child("state/tasks");
    let now = now_ms();
    // Finished three days ago (retention 1d): goes. Finished now: stays. A worktree whose
    // directory was deleted by hand: its registration is pruned at start.
    for (id, finished) in [
        ("task_old", now - 3 * DAY_MS),
        ("task_new", now),
        ("task_gone", now),
    ] {
        let path = wt(id);
        worktree_add(&repo, &format!("baa/{id}"), &path, None);
        std::fs::write(path.join("work.txt"), vec![b'x'; 50_000]).unwrap();
        let task = finished_task(id, &repo, &path, finished);
        std::fs::write(
            tasks_dir.join(format!("{id}.json")),
            serde_json::to_vec(&task).unwrap(),
        )
        .unwrap();
    }
    std::fs::remove_dir_all(wt("task_gone")).unwrap();
    // A worktree whose task was pruned (no record), untouched for three days: goes too.
    let orphan = wt("task_pruned");
    worktree_add(&repo, "baa/task_pruned", &orphan, None);
    std::fs::File::open(&orphan)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_millis(3 * DAY_MS))
        .unwrap();
    assert!(git(&repo, &["worktree", "list"]).contains("task_gone"));

    let c = spawn(&dir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .args(["--worktree-retention", "1d"])
        .start();
    let runtime = || get(&c.url("/v1/runtime")).expect(200)["data"]["worktrees"].clone();
    let w = wait_for(Duration::from_secs(30), || {
        let w = runtime();
        (w["passes"].as_u64() >= Some(1)).then_some(w)
    })
    .unwrap_or_else(|| panic!("no janitor pass in 30 s: {}\n{}", runtime(), c.log()));

    // The old worktree is gone, its branch stays, and the task says when.
    assert!(!wt("task_old").exists(), "{w:#}\n{}", c.log());
    let branches = git(&repo, &["branch", "--list", "baa/*"]);
    assert!(branches.contains("baa/task_old"), "{branches}");
    let task =
        |id: &str| get(&c.url(&format!("/v1/tasks/{id}"))).expect(200)["data"]["task"].clone();
    let old = task("task_old");
    let removed_at = old["workspace"]["removed_at"].as_str().unwrap_or_default();
    assert!(
        removed_at.ends_with('Z') && removed_at >= rfc3339_from_ms(now - 60_000).as_str(),
        "{old:#}"
    );
    assert_eq!(old["workspace"]["branch"], "baa/task_old");
    // The young one is untouched.
    assert!(wt("task_new").join("work.txt").exists());
    assert!(task("task_new")["workspace"]["removed_at"].is_null());
    // git lists neither the removed worktrees nor the one deleted by hand.
    assert!(!orphan.exists());
    assert!(branches.contains("baa/task_pruned"), "{branches}");
    let list = git(&repo, &["worktree", "list"]);
    assert!(
        !list.contains("task_old")
            && !list.contains("task_gone")
            && !list.contains("task_pruned")
            && list.contains("task_new"),
        "{list}"
    );

    // The runtime shows what is left, measured on the pass.
    assert_eq!(w["dir"], json!(worktrees), "{w:#}");
    assert_eq!(w["retention_s"], 86_400, "{w:#}");
    assert_eq!(w["removed_total"], 2, "{w:#}");
    assert_eq!(w["failed_total"], 0, "{w:#}");
    assert_eq!(w["count"], 1, "{w:#}");
    assert_eq!(w["approximate"], false, "{w:#}");
    let bytes = w["bytes"].as_u64().unwrap_or(0);
    assert!((50_000..10_000_000).contains(&bytes), "{w:#}");
    assert!(
        w["measured_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{w:#}"
    );
    assert!(w["last_pass_at"].as_str().is_some(), "{w:#}");
}
