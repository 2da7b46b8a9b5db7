//! Workspaces end to end: tasks run as turns of the real pinned `codex app-server`
//! (through codexd) against the loopback mock model, which changes files with
//! `apply_patch` (paths relative to the turn's cwd, so a task only ever writes where its
//! session runs). Real `git` throughout: each task gets its own worktree and branch, the
//! operator's checkout is never touched by a run, and merge/discard act on the repo as
//! the issue says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::conductor::TOKEN;
use crate::support::daemon::wait_for;
use crate::support::git::git;
use crate::support::http::{get, post, post_h, Resp};
use crate::support::mock_model::{keywords, Call, Gate, Reply};
use crate::support::tasks::{self, RealRig, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(90);

/// A repo the operator works in: `main` with one commit (README.md), an untracked file.
struct Checkout {
    path: PathBuf,
}

impl Checkout {
    #[track_caller]
    fn new(parent: &Path) -> Checkout {
        let path = parent.join("app");
        std::fs::create_dir_all(&path).unwrap();
        git(&path, &["init", "-q", "-b", "main"]);
        std::fs::write(path.join("README.md"), "hello\n").unwrap();
        git(&path, &["add", "README.md"]);
        git(&path, &["commit", "-q", "-m", "first"]);
        std::fs::write(path.join("scratch.txt"), "the operator's own notes\n").unwrap();
        Checkout { path }
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// HEAD, the index entries and `status --porcelain`: what a run must never change.
    fn snapshot(&self) -> (String, String, String) {
        (
            self.head(),
            self.git(&["ls-files", "--stage"]),
            self.git(&["status", "--porcelain", "--untracked-files=all"]),
        )
    }

    fn worktrees(&self) -> String {
        self.git(&["worktree", "list", "--porcelain"])
    }
}

type Rig = RealRig;

fn rig(tag: &str) -> Rig {
    RealRig::new(tag)
}

impl Rig {
    fn workspace_conductor(&self, max_running: usize) -> TaskConductor {
        TaskConductor {
            d: tasks::spawn(&self.dir, &self.codexd.base, "mini-main", "primary")
                .env("BAA_CONDUCTOR_MAX_RUNNING_TASKS", max_running.to_string())
                .env("BAA_CONDUCTOR_GIT_AUTHOR", "Baa Bot <bot@example.com>")
                .start(),
        }
    }
}

/// The patch that adds `rel` (relative to the turn's cwd) holding `line`.
fn add_patch(rel: &str, line: &str) -> String {
    format!("*** Begin Patch\n*** Add File: {rel}\n+{line}\n*** End Patch\n")
}

/// The patch that replaces README.md's one line.
fn readme_patch(line: &str) -> String {
    format!("*** Begin Patch\n*** Update File: README.md\n@@\n-hello\n+{line}\n*** End Patch\n")
}

/// A prompt `"<word>: …"` gets the patch the table gives for its word; a tool's output
/// gets a text reply; anything else the default keywords.
fn patches(table: Vec<(&'static str, String)>) -> impl Fn(&Call) -> Reply + Send + Sync {
    move |call: &Call| {
        if call.tool_output().is_some() {
            return keywords(call);
        }
        for (word, patch) in &table {
            if call.prompt.starts_with(word) {
                return Reply::apply_patch(format!("call_{word}"), patch.clone());
            }
        }
        keywords(call)
    }
}

fn auth() -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {TOKEN}"))]
}

#[track_caller]
fn merge(c: &TaskConductor, id: &str, body: Value) -> Resp {
    let [(k, v)] = auth();
    post_h(
        &c.url(&format!("/v1/tasks/{id}/merge")),
        &body,
        &[(k, v.as_str())],
    )
}

#[track_caller]
fn discard(c: &TaskConductor, id: &str) -> Resp {
    let [(k, v)] = auth();
    post_h(
        &c.url(&format!("/v1/tasks/{id}/discard")),
        &json!({}),
        &[(k, v.as_str())],
    )
}

#[track_caller]
fn diff(c: &TaskConductor, id: &str) -> Value {
    get(&c.url(&format!("/v1/tasks/{id}/diff"))).expect(200)["data"].clone()
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

#[test]
fn real_three_parallel_tasks_on_one_repo_get_three_worktrees_branches_and_diffs_and_the_checkout_is_untouched(
) {
    let r = rig("ws-parallel");
    let repo = Checkout::new(r.dir.path());
    let before = repo.snapshot();
    // All three first turns are held until the third has reached the model: they run at
    // once, each in its own worktree.
    let gate = Gate::new();
    let table = patches(vec![
        ("alpha", add_patch("alpha.txt", "from alpha")),
        ("beta", add_patch("beta.txt", "from beta")),
        ("gamma", add_patch("gamma.txt", "from gamma")),
    ]);
    let held = gate.clone();
    r.home.mock.set_script(move |call| {
        let reply = table(call);
        if call.tool_output().is_none() && !held.is_open() {
            return reply.held(&held);
        }
        reply
    });
    let c = r.workspace_conductor(3);
    let ids: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|w| {
            c.create(json!({"title": format!("{w} task"), "prompt": format!("{w}: add a file"), "cwd": repo.path}))
        })
        .collect();
    let all_started = wait_for(T, || {
        (["alpha", "beta", "gamma"]
            .iter()
            .all(|w| r.home.mock.count_prompt_starts(w) >= 1))
        .then_some(())
    });
    assert!(
        all_started.is_some(),
        "the three tasks did not run at once:\n{}",
        c.explain(&ids[0])
    );
    gate.release();
    let mut worktree_paths = Vec::new();
    for (id, word) in ids.iter().zip(["alpha", "beta", "gamma"]) {
        let t = c.wait_status(id, "succeeded", T);
        let task = &t["task"];
        let ws = &task["workspace"];
        assert_eq!(str_of(ws, "mode"), "worktree", "{t:#}");
        assert_eq!(str_of(ws, "branch"), format!("baa/{id}"), "{t:#}");
        let res = &task["result"];
        assert_eq!(str_of(res, "changes"), "committed", "{t:#}");
        assert_eq!(str_of(res, "base"), before.0, "{t:#}");
        assert_eq!(
            (
                res["files_changed"].as_u64(),
                res["insertions"].as_u64(),
                res["deletions"].as_u64()
            ),
            (Some(1), Some(1), Some(0)),
            "{t:#}"
        );
        assert!(res["diff_bytes"].as_u64().unwrap_or(0) > 0, "{t:#}");
        // The branch holds exactly one commit on the base, by the configured author,
        // titled with the task and carrying its trailer.
        let branch = format!("baa/{id}");
        let log = repo.git(&[
            "log",
            "--format=%an <%ae>%n%B",
            &format!("{}..{branch}", before.0),
        ]);
        assert!(
            log.starts_with("Baa Bot <bot@example.com>\n")
                && log.contains(&format!("{word} task"))
                && log.contains(&format!("Baa-Task: {id}")),
            "{log}"
        );
        assert_eq!(
            repo.git(&["rev-list", "--count", &format!("{}..{branch}", before.0)])
                .trim(),
            "1"
        );
        assert_eq!(
            repo.git(&["rev-parse", &branch]).trim(),
            str_of(res, "head")
        );
        // Its diff names its own file only.
        let d = diff(&c, id);
        let text = str_of(&d, "diff");
        assert!(text.contains(&format!("+++ b/{word}.txt")), "{d:#}");
        for other in ["alpha", "beta", "gamma"].iter().filter(|o| **o != word) {
            assert!(!text.contains(&format!("{other}.txt")), "{d:#}");
        }
        assert_eq!(d["truncated"], false, "{d:#}");
        worktree_paths.push((word, PathBuf::from(str_of(ws, "path"))));
    }
    // None saw another's files.
    for (word, path) in &worktree_paths {
        for other in ["alpha", "beta", "gamma"] {
            assert_eq!(
                path.join(format!("{other}.txt")).exists(),
                *word == other,
                "{} holds {other}.txt",
                path.display()
            );
        }
    }
    // The operator's checkout: the same HEAD, index and status (its untracked file too).
    assert_eq!(
        repo.snapshot(),
        before,
        "a run changed the operator's checkout"
    );

    // Merging into `main`, checked out in the operator's checkout with no tracked changes:
    // a fast-forward that brings the checkout along and leaves its untracked file.
    let m = merge(&c, &ids[0], json!({})).expect(200)["data"].clone();
    let merged = &m["task"]["result"]["merged"];
    assert_eq!(
        (str_of(merged, "into"), merged["fast_forward"].as_bool()),
        ("main", Some(true)),
        "{m:#}"
    );
    assert_eq!(repo.head(), str_of(merged, "commit"));
    assert!(repo.path.join("alpha.txt").is_file());
    // Merged, its worktree and branch are gone (the commit lives on in main).
    assert!(
        !worktree_paths[0].1.exists(),
        "the merged task's worktree stays"
    );
    assert!(repo
        .git(&["branch", "--list", &format!("baa/{}", ids[0])])
        .trim()
        .is_empty());
    assert!(repo.path.join("scratch.txt").is_file());
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=all"]),
        before.2,
        "only the untracked file, as before"
    );
    // The second can no longer fast-forward: a merge commit, brought along the same way.
    let m = merge(&c, &ids[1], json!({"into": "main"})).expect(200)["data"].clone();
    let merged = &m["task"]["result"]["merged"];
    assert_eq!(merged["fast_forward"], false, "{m:#}");
    assert_eq!(repo.head(), str_of(merged, "commit"));
    assert!(repo.path.join("alpha.txt").is_file() && repo.path.join("beta.txt").is_file());
    let parents = repo.git(&["rev-list", "--parents", "-n", "1", "HEAD"]);
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "a merge commit: {parents}"
    );
    // Merging again answers the same record and changes nothing.
    let head = repo.head();
    let again = merge(&c, &ids[1], json!({})).expect(200)["data"].clone();
    assert_eq!(again["task"]["result"]["merged"], *merged, "{again:#}");
    assert_eq!(repo.head(), head);
}

#[test]
fn real_merge_refuses_a_conflict_and_a_dirty_checkout_and_discard_removes_everything() {
    let r = rig("ws-merge");
    let repo = Checkout::new(r.dir.path());
    r.home.mock.set_script(patches(vec![
        ("first", readme_patch("changed by the first task")),
        ("second", readme_patch("changed by the second task")),
        ("third", add_patch("third.txt", "from the third")),
    ]));
    let c = r.workspace_conductor(1);
    let ids: Vec<String> = ["first", "second", "third"]
        .iter()
        .map(|w| c.create(json!({"title": format!("{w} task"), "prompt": format!("{w}: edit"), "cwd": repo.path})))
        .collect();
    for id in &ids {
        c.wait_status(id, "succeeded", T);
    }
    merge(&c, &ids[0], json!({})).expect(200);
    assert_eq!(
        std::fs::read_to_string(repo.path.join("README.md")).unwrap(),
        "changed by the first task\n"
    );

    // The second changed the same line: 409 with the path, and nothing changed.
    let before = (repo.snapshot(), repo.worktrees(), repo.git(&["show-ref"]));
    let e = merge(&c, &ids[1], json!({})).expect_error(409, "merge_conflict");
    let paths = e["details"]["paths"].to_string();
    assert!(paths.contains("README.md"), "{e:#}");
    assert_eq!(
        (repo.snapshot(), repo.worktrees(), repo.git(&["show-ref"])),
        before,
        "a refused merge changed the repo"
    );

    // A tracked change in the checkout: 409 target_checkout_dirty, nothing changed.
    std::fs::write(repo.path.join("README.md"), "the operator is editing\n").unwrap();
    let before = (repo.snapshot(), repo.worktrees(), repo.git(&["show-ref"]));
    let e = merge(&c, &ids[2], json!({})).expect_error(409, "target_checkout_dirty");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("README.md")
            || e["details"].to_string().contains("README.md"),
        "{e:#}"
    );
    assert_eq!(
        (repo.snapshot(), repo.worktrees(), repo.git(&["show-ref"])),
        before
    );
    assert_eq!(
        std::fs::read_to_string(repo.path.join("README.md")).unwrap(),
        "the operator is editing\n"
    );

    // Discard: the worktree and the branch go; the task says so.
    let t = c.task(&ids[1]);
    let path = PathBuf::from(str_of(&t["task"]["workspace"], "path"));
    assert!(path.is_dir());
    let d = discard(&c, &ids[1]).expect(200)["data"].clone();
    assert!(!path.exists(), "{d:#}");
    assert!(!repo.worktrees().contains(&ids[1]), "{}", repo.worktrees());
    assert!(
        repo.git(&["branch", "--list", &format!("baa/{}", ids[1])])
            .trim()
            .is_empty(),
        "the branch is still there"
    );
    assert!(d["task"]["result"]["discarded_at"].is_string(), "{d:#}");
    // Merge and discard need the token.
    let e = post(&c.url(&format!("/v1/tasks/{}/discard", ids[2])), &json!({}));
    assert_eq!(e.status, 401, "{:?}", e.json());
}

#[test]
fn a_cwd_outside_the_roots_a_plain_dir_asking_for_a_worktree_and_a_bad_base_are_refused() {
    let r = rig("ws-refused");
    let repo = Checkout::new(r.dir.path());
    // Roots: the repo's parent only.
    let c = TaskConductor {
        d: tasks::spawn(&r.dir, &r.codexd.base, "mini-main", "primary")
            .args(["--task-roots", &r.dir.path().display().to_string()])
            .start(),
    };
    let outside = TempDir::new("ws-outside");
    let e = c
        .post_task(json!({"title": "t", "prompt": "p", "cwd": outside.path()}))
        .expect_error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "cwd", "{e:#}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("BAA_CONDUCTOR_TASK_ROOTS"),
        "{e:#}"
    );
    let plain = r.dir.child("plain");
    let e = c
        .post_task(json!({"title": "t", "prompt": "p", "cwd": plain, "workspace": "worktree"}))
        .expect_error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "workspace", "{e:#}");
    let e = c
        .post_task(json!({"title": "t", "prompt": "p", "cwd": repo.path, "base": "no-such-branch"}))
        .expect_error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "base", "{e:#}");
    // A later commit in the checkout does not change what a queued task starts from.
    c.system("pause", json!({}));
    let head = repo.head();
    let id = c.create(json!({"title": "t", "prompt": "p", "cwd": repo.path}));
    std::fs::write(repo.path.join("later.txt"), "x").unwrap();
    repo.git(&["add", "later.txt"]);
    repo.git(&["commit", "-q", "-m", "later"]);
    let t = c.task(&id);
    assert_eq!(str_of(&t["task"]["workspace"], "base"), head, "{t:#}");
    assert_eq!(str_of(&t["task"]["workspace"], "mode"), "worktree", "{t:#}");
    // A plain directory runs in place.
    let id = c.create(json!({"title": "t", "prompt": "p", "cwd": plain}));
    assert_eq!(
        str_of(&c.task(&id)["task"]["workspace"], "mode"),
        "in_place"
    );
}
