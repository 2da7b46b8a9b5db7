//! The task result routes in process, against a real git repository and task records made
//! by hand (the worker is not involved): diff, merge and discard, their token, their
//! refusals, and that a refusal changes nothing.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{expect, expect_error, Fixture, TOKEN};
use crate::tasks::model::{TaskResult, Workspace};
use crate::tasks::validate::NewTask;
use crate::workspace::layout;
use crate::workspace::test_repo::{git_in, TestRepo};

const AUTH: (&str, &str) = ("Authorization", "Bearer unit-token-0123456789abcdef");

/// A task of `status` whose worktree (made here, on `baa/<id>` from main) has `files`
/// written; with `commit`, they are committed and the task has its result.
fn task_in(
    f: &Fixture,
    r: &TestRepo,
    status: &str,
    files: &[(&str, &str)],
    commit: bool,
) -> (String, PathBuf) {
    let spec = serde_json::from_value(json!({
        "steps": [{"prompt": "p"}], "timeout_s": 60, "max_attempts": 1, "priority": 0,
    }))
    .unwrap();
    let (task, _) = f
        .app
        .tasks
        .create(NewTask {
            title: "t".into(),
            spec,
            idempotency_key: None,
            workspace: Workspace::default(),
        })
        .unwrap();
    let id = task.task_id;
    let base = r.head();
    let path = layout::path(&f.app.cfg.worktrees_dir, &r.repo, &id);
    let branch = format!("baa/{id}");
    r.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        &branch,
        &path.display().to_string(),
        &base,
    ]);
    for (name, text) in files {
        std::fs::write(path.join(name), text).unwrap();
    }
    let result = commit.then(|| {
        git_in(&path, &["add", "-A"]);
        git_in(&path, &["commit", "-q", "-m", "task"]);
        TaskResult {
            changes: "committed".into(),
            branch: branch.clone(),
            base: base.clone(),
            head: git_in(&path, &["rev-parse", "HEAD"]).trim().to_string(),
            files_changed: files.len() as u64,
            ..TaskResult::default()
        }
    });
    let ws = Workspace {
        mode: "worktree".into(),
        repo: Some(r.repo.display().to_string()),
        subdir: Some(String::new()),
        base_ref: Some("HEAD".into()),
        base: Some(base),
        base_branch: Some("main".into()),
        path: Some(path.display().to_string()),
        branch: Some(branch),
        removed_at: None,
    };
    f.app
        .tasks
        .update(&id, |t| {
            t.status = status.into();
            t.workspace = Some(ws);
            t.result = result;
            true
        })
        .unwrap();
    (id, path)
}

fn merge(f: &Fixture, id: &str, body: Value) -> baa::common::http::Response {
    f.call(
        "POST",
        &format!("/v1/tasks/{id}/merge"),
        &[AUTH],
        body.to_string().as_bytes(),
    )
}

fn discard(f: &Fixture, id: &str) -> baa::common::http::Response {
    f.call("POST", &format!("/v1/tasks/{id}/discard"), &[AUTH], b"")
}

fn task(f: &Fixture, id: &str) -> Value {
    expect(&f.get(&format!("/v1/tasks/{id}")), 200)["data"]["task"].clone()
}

/// Every ref, the main checkout's HEAD and status, the worktree list.
fn snapshot(r: &TestRepo) -> String {
    r.git(&["for-each-ref"])
        + &r.head()
        + &r.git(&["status", "--porcelain"])
        + &r.git(&["worktree", "list", "--porcelain"])
}

#[test]
fn merge_and_discard_need_the_token_and_say_so_in_their_own_words() {
    let f = Fixture::new(&[]);
    for path in ["/v1/tasks/task_x/merge", "/v1/tasks/task_x/discard"] {
        let e = expect_error(&f.call("POST", path, &[], b""), 401, "unauthorized");
        assert_eq!(
            e["message"],
            "Task merges and discards require Authorization: Bearer <BAA_SHARED_TOKEN>.",
            "{path}"
        );
        let wrong = [("Authorization", "Bearer wrong-token-0123456789abcdef")];
        expect_error(&f.call("POST", path, &wrong, b""), 401, "unauthorized");
        expect_error(&f.call("POST", path, &[AUTH], b""), 404, "not_found");
    }
    expect_error(&f.get("/v1/tasks/task_x/diff"), 404, "not_found");
    let none = Fixture::with_token(None, &[]);
    let e = expect_error(
        &none.call("POST", "/v1/tasks/task_x/merge", &[AUTH], b""),
        503,
        "token_not_configured",
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Task merges and discards are disabled"),
        "{e}"
    );
    let _ = TOKEN;
}

#[test]
fn diff_then_fast_forward_into_the_checked_out_main_then_the_same_record_again() {
    let f = Fixture::new(&[]);
    let r = TestRepo::new("route-merge");
    std::fs::write(r.repo.join("notes.txt"), "mine\n").unwrap();
    let (id, _) = task_in(&f, &r, "succeeded", &[("a.txt", "from the task\n")], true);

    let d = expect(&f.get(&format!("/v1/tasks/{id}/diff")), 200)["data"].clone();
    assert_eq!(
        (&d["uncommitted"], &d["truncated"], &d["changes"]),
        (&json!(false), &json!(false), &json!("committed")),
        "{d}"
    );
    assert!(
        d["diff"].as_str().unwrap().contains("+from the task"),
        "{d}"
    );
    assert_eq!(d["stat"]["files_changed"], 1, "{d}");
    assert_eq!(d["stat"]["files"][0]["path"], "a.txt", "{d}");
    let cut = expect(&f.get(&format!("/v1/tasks/{id}/diff?max_bytes=20")), 200)["data"].clone();
    assert_eq!(
        (
            cut["truncated"].clone(),
            cut["diff"].as_str().unwrap().len()
        ),
        (json!(true), 20),
        "{cut}"
    );
    let e = expect_error(
        &f.get(&format!("/v1/tasks/{id}/diff?max_bytes=0")),
        400,
        "invalid_query",
    );
    assert_eq!(e["details"]["parameter"], "max_bytes", "{e}");

    let head = d["head"].as_str().unwrap().to_string();
    let m = expect(&merge(&f, &id, json!({})), 200)["data"].clone();
    assert_eq!(
        (
            &m["merged"]["into"],
            &m["merged"]["commit"],
            &m["merged"]["fast_forward"]
        ),
        (&json!("main"), &json!(head), &json!(true)),
        "{m}"
    );
    assert_eq!(r.head(), head);
    assert_eq!(
        std::fs::read_to_string(r.repo.join("a.txt")).unwrap(),
        "from the task\n"
    );
    assert_eq!(r.git(&["status", "--porcelain"]), "?? notes.txt\n");
    let t = task(&f, &id);
    assert_eq!(t["result"]["merged"], m["merged"], "recorded: {t}");

    // Idempotent: the record again, no second merge; another target is refused.
    let again = expect(&merge(&f, &id, json!({"into": "main"})), 200)["data"].clone();
    assert_eq!(
        (&again["merged"], &again["already_merged"]),
        (&m["merged"], &json!(true))
    );
    expect_error(
        &merge(&f, &id, json!({"into": "release"})),
        409,
        "already_merged",
    );
    expect_error(
        &merge(&f, &id, json!({"onto": "main"})),
        400,
        "invalid_request",
    );
}

#[test]
fn a_conflict_and_a_dirty_checkout_are_409s_that_change_nothing() {
    let f = Fixture::new(&[]);
    let r = TestRepo::new("route-conflict");
    let (id, _) = task_in(&f, &r, "succeeded", &[("README.md", "task\n")], true);
    std::fs::write(r.repo.join("README.md"), "operator\n").unwrap();
    r.git(&["commit", "-q", "-am", "operator"]);
    let before = snapshot(&r);
    let e = expect_error(&merge(&f, &id, json!({})), 409, "merge_conflict");
    assert_eq!(e["details"]["paths"], json!(["README.md"]), "{e}");
    assert_eq!(snapshot(&r), before);
    assert!(task(&f, &id)["result"]["merged"].is_null());

    let (id2, _) = task_in(&f, &r, "succeeded", &[("b.txt", "b\n")], true);
    std::fs::write(r.repo.join("README.md"), "edited, not committed\n").unwrap();
    let before = snapshot(&r);
    let e = expect_error(&merge(&f, &id2, json!({})), 409, "target_checkout_dirty");
    assert_eq!(e["details"]["files"], json!(["README.md"]), "{e}");
    let shown = std::fs::canonicalize(e["details"]["checkout"].as_str().unwrap()).unwrap();
    assert_eq!(shown, std::fs::canonicalize(&r.repo).unwrap(), "{e}");
    assert_eq!(snapshot(&r), before);
    let e = expect_error(
        &merge(&f, &id2, json!({"into": "nope"})),
        400,
        "invalid_request",
    );
    assert_eq!(e["details"]["field"], "into");
}

#[test]
fn discard_removes_worktree_and_branch_once_and_then_merge_and_diff_say_discarded() {
    let f = Fixture::new(&[]);
    let r = TestRepo::new("route-discard");
    let (id, path) = task_in(&f, &r, "succeeded", &[("a.txt", "a\n")], true);
    let t = expect(&discard(&f, &id), 200)["data"]["task"].clone();
    assert!(
        t["result"]["discarded_at"].is_string() && t["workspace"]["removed_at"].is_string(),
        "{t}"
    );
    assert!(!path.exists());
    assert!(r
        .git(&["branch", "--list", &format!("baa/{id}")])
        .trim()
        .is_empty());
    let again = expect(&discard(&f, &id), 200)["data"].clone();
    assert_eq!(again["already_discarded"], true);
    expect_error(&merge(&f, &id, json!({})), 409, "discarded");
    expect_error(&f.get(&format!("/v1/tasks/{id}/diff")), 409, "discarded");
}

#[test]
fn a_failed_task_shows_its_uncommitted_diff_and_refuses_a_merge_and_an_active_one_a_discard() {
    let f = Fixture::new(&[]);
    let r = TestRepo::new("route-failed");
    let (id, path) = task_in(
        &f,
        &r,
        "failed",
        &[("README.md", "half done\n"), ("new.txt", "n\n")],
        false,
    );
    let d = expect(&f.get(&format!("/v1/tasks/{id}/diff")), 200)["data"].clone();
    assert_eq!(
        (&d["uncommitted"], &d["head"]),
        (&json!(true), &Value::Null),
        "{d}"
    );
    assert_eq!(d["untracked"], json!(["new.txt"]), "{d}");
    assert!(d["diff"].as_str().unwrap().contains("+half done"), "{d}");
    expect_error(&merge(&f, &id, json!({})), 409, "task_not_succeeded");

    let (running, _) = task_in(&f, &r, "running", &[], false);
    expect_error(&discard(&f, &running), 409, "task_not_finished");
    // The failed one can go: the result-less discard removes its worktree too.
    expect(&discard(&f, &id), 200);
    assert!(!path.exists());
    expect_error(&f.get(&format!("/v1/tasks/{id}/diff")), 409, "no_worktree");

    let (none, _) = task_in(&f, &r, "succeeded", &[], false);
    f.app
        .tasks
        .update(&none, |t| {
            t.result = Some(TaskResult {
                changes: "none".into(),
                ..TaskResult::default()
            });
            true
        })
        .unwrap();
    expect_error(&merge(&f, &none, json!({})), 409, "no_changes");
}

#[test]
fn an_in_place_task_has_nothing_to_diff_merge_or_discard() {
    let f = Fixture::new(&[]);
    let spec = serde_json::from_value(json!({
        "steps": [{"prompt": "p"}], "timeout_s": 60, "max_attempts": 1, "priority": 0,
    }))
    .unwrap();
    let (t, _) = f
        .app
        .tasks
        .create(NewTask {
            title: "t".into(),
            spec,
            idempotency_key: None,
            workspace: Workspace {
                mode: "in_place".into(),
                ..Workspace::default()
            },
        })
        .unwrap();
    let id = t.task_id;
    expect_error(
        &f.get(&format!("/v1/tasks/{id}/diff")),
        409,
        "task_in_place",
    );
    expect_error(&merge(&f, &id, json!({})), 409, "task_in_place");
    expect_error(&discard(&f, &id), 409, "task_in_place");
}
