//! Worktree tasks against codexd's stub child and real `git` (issue 18): a task runs in
//! its own worktree on `baa/<task_id>` from its base, a succeeded run leaves one commit
//! and a `result`, the operator's checkout is never touched, and a kill anywhere in the
//! worktree's creation or the commit recovers to one worktree and one commit.
//!
//! The stub child cannot edit files, so a turn that "changes" something is held on an
//! approval (`approval` in the prompt) while the test writes into the worktree, then let
//! go: the commit takes whatever the worktree holds when the turns are done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codex::MockCodexHome;
use crate::support::codexd::{start_running, with_mock_codex, with_stub, Dirs};
use crate::support::daemon::{wait_for, Daemon};
use crate::support::git::git;
use crate::support::http::get;
use crate::support::mock_model::{keywords, Reply};
use crate::support::tasks::{self, runs, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);
const AUTHOR: &str = "Baa Test <baa-test@example.invalid>";

/// The operator's repo: `main` with two commits, a `src/` dir, an untracked file and a
/// modified tracked one (what a person mid-work has).
fn operator_repo(dir: &TempDir) -> PathBuf {
    let repo = dir.child("repo");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    std::fs::write(repo.join("src/lib.txt"), "one\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    std::fs::write(repo.join("src/lib.txt"), "one\ntwo\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "second"]);
    std::fs::write(repo.join("notes.txt"), "mine, not committed\n").unwrap();
    std::fs::write(repo.join("README.md"), "hello, edited by the operator\n").unwrap();
    repo
}

/// What must not change in the operator's checkout: HEAD, the branch, the index, status.
fn checkout_state(repo: &Path) -> [String; 4] {
    [
        git(repo, &["rev-parse", "HEAD"]),
        git(repo, &["symbolic-ref", "HEAD"]),
        git(repo, &["ls-files", "--stage"]),
        git(repo, &["status", "--porcelain"]),
    ]
}

struct Stack {
    dir: TempDir,
    codexd: Daemon,
    c: TaskConductor,
    repo: PathBuf,
}

fn stack(tag: &str) -> Stack {
    let dir = TempDir::new(tag);
    let repo = operator_repo(&dir);
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = start_conductor(&dir, &codexd, None);
    Stack {
        dir,
        codexd,
        c,
        repo,
    }
}

/// A conductor with the test author, its PATH led by `git_wrapper_dir` when given.
fn start_conductor(
    dir: &TempDir,
    codexd: &Daemon,
    git_wrapper_dir: Option<&Path>,
) -> TaskConductor {
    let mut s = tasks::spawn(dir, &codexd.base, "mini-main", "primary")
        .env("BAA_CONDUCTOR_GIT_AUTHOR", AUTHOR);
    if let Some(w) = git_wrapper_dir {
        let path = std::env::var("PATH").unwrap_or_default();
        s = s.env("PATH", format!("{}:{path}", w.display()));
    }
    TaskConductor { d: s.start() }
}

impl Stack {
    fn worktrees(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.join("worktrees")).unwrap()
    }

    /// The task's worktree path as the task records it.
    #[track_caller]
    fn worktree_of(&self, id: &str) -> PathBuf {
        let t = self.c.task(id);
        let Some(p) = t["task"]["workspace"]["path"].as_str() else {
            panic!("no worktree path: {t:#}")
        };
        PathBuf::from(p)
    }

    /// The cwd codexd's session for the task's current run runs in.
    #[track_caller]
    fn session_cwd(&self, t: &Value) -> String {
        let runs = t["runs"].as_array().unwrap();
        let sid = runs.last().unwrap()["session_id"].as_str().unwrap();
        let s = get(&self.codexd.url(&format!("/v1/codexd/sessions/{sid}"))).expect(200)["data"]
            .clone();
        let s = if s["session"].is_object() {
            s["session"].clone()
        } else {
            s
        };
        s["cwd"].as_str().unwrap_or_default().to_string()
    }

    /// Worktrees git lists for the task.
    fn worktrees_of(&self, id: &str) -> usize {
        git(&self.repo, &["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree ") && l.ends_with(&format!("/{id}")))
            .count()
    }

    fn commits_on(&self, base: &str, id: &str) -> String {
        git(
            &self.repo,
            &["rev-list", "--count", &format!("{base}..baa/{id}")],
        )
    }
}

/// The regression test for issue 18's "a task edits the checkout the operator is
/// working in": the session runs in `<worktrees>/repo-<hash>/<task_id>/src`, on
/// `baa/<task_id>` from the operator's HEAD; the commit has the settings' author and the
/// title plus trailer; the result counts it; the operator's HEAD, index and status (an
/// untracked and a modified file in it) are as they were.
#[test]
fn worktree_task_runs_and_commits_in_its_own_worktree_and_the_operators_checkout_is_untouched() {
    let s = stack("ws-own");
    let before = checkout_state(&s.repo);
    let base = before[0].clone();
    let id = s.c.create(
        json!({"title": "Add a greeting", "prompt": "approval to write",
        "cwd": s.repo.join("src").display().to_string()}),
    );
    let rid = s.c.wait_waiting(&id, T);
    let t = s.c.task(&id);
    let ws = &t["task"]["workspace"];
    assert_eq!(
        (
            ws["mode"].as_str(),
            ws["branch"].as_str(),
            ws["base"].as_str()
        ),
        (
            Some("worktree"),
            Some(format!("baa/{id}").as_str()),
            Some(base.as_str())
        ),
        "{t:#}"
    );
    let wt = s.worktree_of(&id);
    assert_eq!(wt.file_name().unwrap().to_str(), Some(id.as_str()));
    let repo_dir = wt.parent().unwrap();
    assert_eq!(repo_dir.parent(), Some(s.worktrees().as_path()), "{t:#}");
    assert!(
        repo_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("repo-"),
        "{t:#}"
    );
    assert_eq!(s.session_cwd(&t), wt.join("src").display().to_string());
    assert_eq!(
        git(&wt, &["symbolic-ref", "HEAD"]),
        format!("refs/heads/baa/{id}")
    );
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), base);
    // The operator's uncommitted edits are not in the task's worktree.
    assert_eq!(
        std::fs::read_to_string(wt.join("README.md")).unwrap(),
        "hello\n"
    );
    assert!(!wt.join("notes.txt").exists());
    // What "the turn" does.
    std::fs::write(wt.join("src/greeting.txt"), "hi\nthere\n").unwrap();
    std::fs::write(wt.join("src/lib.txt"), "one\n").unwrap();
    s.c.answer(&rid, "accept").expect(200);
    let t = s.c.wait_status(&id, "succeeded", T);
    let r = &t["task"]["result"];
    let head = git(&s.repo, &["rev-parse", &format!("baa/{id}")]);
    assert_eq!(r["changes"], "committed", "{t:#}");
    assert_eq!(r["branch"], format!("baa/{id}"));
    assert_eq!(
        (r["base"].as_str(), r["head"].as_str()),
        (Some(base.as_str()), Some(head.as_str()))
    );
    assert_eq!(
        (&r["files_changed"], &r["insertions"], &r["deletions"]),
        (&json!(2), &json!(2), &json!(1)),
        "{t:#}"
    );
    let diff = git(&s.repo, &["diff", "--no-color", &base, &head]);
    assert_eq!(
        r["diff_bytes"],
        diff.len() + 1,
        "the diff's size, its last newline included"
    );
    assert_eq!(t["runs"][0]["result"], *r, "the run carries it too");
    assert_eq!(s.commits_on(&base, &id), "1");
    assert_eq!(
        git(
            &s.repo,
            &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", &head]
        ),
        format!("{AUTHOR}|{AUTHOR}|Add a greeting\n\nBaa-Task: {id}")
    );
    assert_eq!(checkout_state(&s.repo), before, "the operator's checkout");
    let msgs = s.c.log_messages(&id);
    assert!(
        msgs.iter().any(|m| m.contains(&format!(
            "worktree {} made on branch baa/{id}",
            wt.display()
        ))),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter().any(|m| m.ends_with(&format!(
            "branch baa/{id} at {}: +2 \u{2212}1 in 2 files",
            &head[..12]
        ))),
        "{msgs:#?}"
    );
}

/// A worktree task whose turns change nothing: `result.changes` is `none`, the branch
/// stays at the base (no empty commit); an in-place task (a plain directory) runs where
/// it was told and gets no workspace result.
#[test]
fn a_worktree_task_that_changes_nothing_gets_changes_none_and_an_in_place_task_runs_in_place() {
    let s = stack("ws-none");
    let base = git(&s.repo, &["rev-parse", "HEAD"]);
    let id = s.c.create(json!({"title": "look only", "prompt": "hello",
        "cwd": s.repo.display().to_string()}));
    let t = s.c.wait_status(&id, "succeeded", T);
    let r = &t["task"]["result"];
    assert_eq!(
        (
            r["changes"].as_str(),
            r["head"].as_str(),
            r["base"].as_str()
        ),
        (Some("none"), Some(base.as_str()), Some(base.as_str())),
        "{t:#}"
    );
    assert_eq!(
        (&r["files_changed"], &r["diff_bytes"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(s.commits_on(&base, &id), "0");
    assert_eq!(s.session_cwd(&t), s.worktree_of(&id).display().to_string());

    let plain = s.dir.child("plain");
    let id = s.c.create(json!({"title": "in place", "prompt": "hello",
        "cwd": plain.display().to_string()}));
    let t = s.c.wait_status(&id, "succeeded", T);
    assert_eq!(t["task"]["workspace"]["mode"], "in_place", "{t:#}");
    assert!(t["task"]["result"].is_null(), "{t:#}");
    assert!(t["runs"][0]["result"].is_null(), "{t:#}");
    assert_eq!(s.session_cwd(&t), plain.display().to_string());
}

/// A canceled run commits nothing and leaves its worktree as it is (the file its turn
/// wrote stays, uncommitted); the manual retry continues in the same worktree and its
/// commit has both runs' files.
#[test]
fn a_canceled_run_keeps_its_worktree_and_the_retry_continues_in_it() {
    let s = stack("ws-retry");
    let base = git(&s.repo, &["rev-parse", "HEAD"]);
    let id =
        s.c.create(json!({"title": "two tries", "prompt": "approval please",
        "cwd": s.repo.display().to_string()}));
    s.c.wait_waiting(&id, T);
    let wt = s.worktree_of(&id);
    std::fs::write(wt.join("first.txt"), "from the first run\n").unwrap();
    s.c.cancel(&id).expect(200);
    s.c.wait_status(&id, "canceled", T);
    assert_eq!(
        std::fs::read_to_string(wt.join("first.txt")).unwrap(),
        "from the first run\n"
    );
    assert_eq!(git(&wt, &["status", "--porcelain"]), "?? first.txt");
    assert_eq!(
        s.commits_on(&base, &id),
        "0",
        "a canceled run commits nothing"
    );

    s.c.retry(&id).expect(200);
    let rid = s.c.wait_task(&id, "waiting in its second run", T, |t| {
        t["runs"].as_array().is_some_and(|r| r.len() == 2)
            && t["task"]["waiting"]["request_id"].is_string()
    });
    assert_eq!(s.session_cwd(&rid), wt.display().to_string());
    let rid = rid["task"]["waiting"]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(wt.join("second.txt"), "from the retry\n").unwrap();
    s.c.answer(&rid, "accept").expect(200);
    let t = s.c.wait_status(&id, "succeeded", T);
    assert_eq!(t["task"]["result"]["files_changed"], 2, "{t:#}");
    assert_eq!(s.commits_on(&base, &id), "1");
    assert_eq!(s.worktrees_of(&id), 1);
    let msgs = s.c.log_messages(&id);
    assert!(
        msgs.iter().any(|m| m.starts_with("continuing in worktree")),
        "{msgs:#?}"
    );
}

/// A branch `baa/<task_id>` made before the task first ran is someone else's: the run
/// fails with `branch_exists` (not retried), the branch keeps its commit, and no
/// worktree is made.
#[test]
fn a_branch_that_existed_before_the_task_is_refused_and_left_untouched() {
    let s = stack("ws-branch");
    s.c.system(
        "pause",
        json!({"requested_by": "test", "reason": "make the branch first"}),
    );
    let id = s.c.create(json!({"title": "collides", "prompt": "hello",
        "cwd": s.repo.display().to_string(), "max_attempts": 3}));
    git(&s.repo, &["branch", &format!("baa/{id}"), "HEAD~1"]);
    let theirs = git(&s.repo, &["rev-parse", &format!("baa/{id}")]);
    s.c.system("resume", json!({"requested_by": "test"}));
    let t = s.c.wait_status(&id, "failed", T);
    let e = &t["task"]["error"];
    assert_eq!(
        (e["code"].as_str(), &e["retryable"]),
        (Some("branch_exists"), &json!(false)),
        "{t:#}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("branch baa/{id} already exists")),
        "{t:#}"
    );
    assert_eq!(runs(&t), [(1, "failed".to_string())], "not retried: {t:#}");
    assert_eq!(git(&s.repo, &["rev-parse", &format!("baa/{id}")]), theirs);
    assert_eq!(s.worktrees_of(&id), 0);
    assert!(
        t["task"]["workspace"]["path"].is_null(),
        "no intent recorded: {t:#}"
    );
}

/// Another git process holding the worktree's `index.lock` when the run commits: the run
/// fails retryably with a message that says so, the task goes back to the queue, and once
/// the lock is gone the next run commits what the first run's turn wrote (one commit).
#[test]
fn a_held_index_lock_fails_the_run_retryably_and_the_task_succeeds_once_it_is_gone() {
    let s = stack("ws-lock");
    let base = git(&s.repo, &["rev-parse", "HEAD"]);
    let id =
        s.c.create(json!({"title": "locked out", "prompt": "approval please",
        "cwd": s.repo.display().to_string(), "max_attempts": 10}));
    let rid = s.c.wait_waiting(&id, T);
    let wt = s.worktree_of(&id);
    std::fs::write(wt.join("made.txt"), "by the turn\n").unwrap();
    let lock = wt.join(git(&wt, &["rev-parse", "--git-path", "index.lock"]));
    std::fs::write(&lock, "").unwrap();
    s.c.answer(&rid, "accept").expect(200);
    let t = s.c.wait_task(&id, "a run failed on the lock", T, |t| {
        t["runs"][0]["status"] == "failed"
    });
    let e = &t["runs"][0]["error"];
    assert_eq!(
        (e["code"].as_str(), &e["retryable"]),
        (Some("repo_busy"), &json!(true)),
        "{t:#}"
    );
    let m = e["message"].as_str().unwrap();
    assert!(
        m.starts_with(
            "cannot commit the run's changes: the repository is locked by another git process"
        ),
        "{m}"
    );
    assert_ne!(s.c.status(&id), "failed", "retryable: back in the queue");
    std::fs::remove_file(&lock).unwrap();
    let t = s.c.wait_status(&id, "succeeded", T);
    assert_eq!(t["task"]["result"]["files_changed"], 1, "{t:#}");
    assert_eq!(s.commits_on(&base, &id), "1");
    assert_eq!(
        git(
            &s.repo,
            &["show", "--format=", "--name-only", &format!("baa/{id}")]
        ),
        "made.txt"
    );
    let msgs = s.c.log_messages(&id);
    assert!(
        msgs.iter()
            .any(|m| m.contains("every step is done; committing the result")),
        "{msgs:#?}"
    );
}

/// A `git` first on the conductor's PATH that, for `worktree add` (or `commit`), writes
/// `<dir>/marker` with its pid and waits (at most 60 s) before or after running the real
/// git. The conductor is killed while it waits.
fn git_wrapper(dir: &Path, first: &str, second: Option<&str>, after: bool) -> PathBuf {
    let real = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .expect("sh");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    assert!(real.starts_with('/'), "no git on PATH: {real:?}");
    std::fs::create_dir_all(dir).unwrap();
    let marker = dir.join("marker");
    let hit = match second {
        Some(b) => format!(r#"[ "$prev" = "{first}" ] && [ "$a" = "{b}" ] && hit=1"#),
        None => format!(r#"[ "$a" = "{first}" ] && hit=1"#),
    };
    let hold = format!(
        r#"echo $$ > "{m}.tmp" && mv "{m}.tmp" "{m}"; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"#,
        m = marker.display()
    );
    let run = if after {
        format!("\"{real}\" \"$@\"; rc=$?; {hold}; exit $rc")
    } else {
        format!("{hold}; exec \"{real}\" \"$@\"")
    };
    let script = format!(
        "#!/bin/sh\nhit=0; prev=\nfor a in \"$@\"; do {hit}; prev=$a; done\nif [ $hit = 1 ]; then {run}; fi\nexec \"{real}\" \"$@\"\n"
    );
    let path = dir.join("git");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    marker
}

/// The regression test the issue asks for: the conductor SIGKILLed while `git worktree
/// add` is about to run and just after it ran, and while `git commit` is about to run and
/// just after it ran; restarted with the real git, each task succeeds with exactly one
/// worktree and (for the commit cases) exactly one commit on its branch.
#[test]
fn kill9_mid_worktree_creation_and_mid_commit_recovers_to_one_worktree_and_one_commit() {
    let dir = TempDir::new("ws-kill");
    let repo = operator_repo(&dir);
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let base = git(&repo, &["rev-parse", "HEAD"]);
    let cases = [
        ("add-before", "worktree", Some("add"), false),
        ("add-after", "worktree", Some("add"), true),
        ("commit-before", "commit", None, false),
        ("commit-after", "commit", None, true),
    ];
    for (name, first, second, after) in cases {
        let marker = git_wrapper(&dir.join(&format!("wrap-{name}")), first, second, after);
        let wrap_dir = marker.parent().unwrap().to_path_buf();
        let mut c = start_conductor(&dir, &codexd, Some(&wrap_dir));
        let changes = first == "commit";
        let prompt = if changes { "approval please" } else { "hello" };
        let id = c.create(
            json!({"title": format!("killed at {name}"), "prompt": prompt,
            "cwd": repo.display().to_string()}),
        );
        if changes {
            let rid = c.wait_waiting(&id, T);
            let wt = PathBuf::from(c.task(&id)["task"]["workspace"]["path"].as_str().unwrap());
            std::fs::write(wt.join(format!("{name}.txt")), "x\n").unwrap();
            c.answer(&rid, "accept").expect(200);
        }
        let pid = wait_for(T, || {
            std::fs::read_to_string(&marker)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
        });
        let Some(pid) = pid else {
            panic!("{name}: the wrapper never held git\n{}", c.explain(&id))
        };
        c.d.kill9();
        // The wrapper leads its own session (the runner's): kill its whole group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        // The positive sign of where the kill landed, from the files the conductor left.
        let task_file = dir.join("state").join("tasks").join(format!("{id}.json"));
        let on_disk: Value =
            serde_json::from_str(&std::fs::read_to_string(&task_file).unwrap()).unwrap();
        assert_eq!(on_disk["status"], "running", "{name}: {on_disk:#}");
        let wt = on_disk["workspace"]["path"].as_str().map(PathBuf::from);
        let Some(wt) = wt else {
            panic!("{name}: the intent is recorded before git runs: {on_disk:#}")
        };
        let made = git(&repo, &["worktree", "list", "--porcelain"]).contains(&format!("/{id}\n"));
        let branch_made = !git(&repo, &["branch", "--list", &format!("baa/{id}")]).is_empty();
        let committed = if branch_made {
            git(
                &repo,
                &["rev-list", "--count", &format!("{base}..baa/{id}")],
            )
        } else {
            "0".to_string()
        };
        let want = match name {
            "add-before" => (false, "0"),
            "add-after" | "commit-before" => (true, "0"),
            _ => (true, "1"),
        };
        assert_eq!((made, committed.as_str()), want, "{name}: {}", wt.display());
        let c = start_conductor(&dir, &codexd, None);
        let t = c.wait_status(&id, "succeeded", T);
        let wts = git(&repo, &["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree ") && l.ends_with(&format!("/{id}")))
            .count();
        assert_eq!(wts, 1, "{name}: one worktree\n{}", c.explain(&id));
        let count = git(
            &repo,
            &["rev-list", "--count", &format!("{base}..baa/{id}")],
        );
        let r = &t["task"]["result"];
        if changes {
            assert_eq!(count, "1", "{name}: one commit\n{}", c.explain(&id));
            assert_eq!(r["changes"], "committed", "{name}: {t:#}");
            assert_eq!(r["files_changed"], 1, "{name}: {t:#}");
        } else {
            assert_eq!(count, "0", "{name}: {t:#}");
            assert_eq!(r["changes"], "none", "{name}: {t:#}");
        }
        assert_eq!(
            git(&repo, &["worktree", "list", "--porcelain"])
                .matches("locked")
                .count(),
            0,
            "{name}"
        );
        drop(c);
    }
}

/// The window between the run's end (written with its result) and the task's write: a
/// conductor killed there leaves the task `running` without a result; the next start
/// settles it from the run, result included, without a second run or commit.
#[test]
fn a_task_settled_from_its_ended_run_after_a_kill_gets_the_runs_result() {
    let s = stack("ws-settle");
    let base = git(&s.repo, &["rev-parse", "HEAD"]);
    let id = s.c.create(
        json!({"title": "settled later", "prompt": "approval please",
        "cwd": s.repo.display().to_string()}),
    );
    let rid = s.c.wait_waiting(&id, T);
    std::fs::write(s.worktree_of(&id).join("late.txt"), "x\n").unwrap();
    s.c.answer(&rid, "accept").expect(200);
    let done = s.c.wait_status(&id, "succeeded", T);
    let result = done["task"]["result"].clone();
    assert_eq!(result["changes"], "committed", "{done:#}");
    let Stack {
        dir,
        codexd,
        mut c,
        repo,
    } = s;
    c.d.kill9();
    // The task as it was before its last write.
    let file = dir.join("state").join("tasks").join(format!("{id}.json"));
    let mut task: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let obj = task.as_object_mut().unwrap();
    obj.remove("result");
    obj.insert("status".into(), json!("running"));
    obj.insert("finished_at".into(), Value::Null);
    task["runs"][0]["status"] = json!("running");
    std::fs::write(&file, task.to_string()).unwrap();
    let c = start_conductor(&dir, &codexd, None);
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(t["task"]["result"], result, "{t:#}");
    assert_eq!(runs(&t), [(1, "succeeded".to_string())], "{t:#}");
    let count = git(
        &repo,
        &["rev-list", "--count", &format!("{base}..baa/{id}")],
    );
    assert_eq!(count, "1");
}

/// The real pinned `codex app-server` (loopback mock model): the model's `apply_patch`
/// with a relative path lands in the task's worktree (the thread's cwd), not in the
/// operator's checkout, and is the run's one commit.
#[test]
fn real_codex_apply_patch_lands_in_the_worktree_and_is_committed_on_the_branch() {
    let home = MockCodexHome::new("ws-real");
    home.mock.set_script(|call| {
        if call.tool_output().is_none() && call.prompt.contains("add a greeting") {
            return Reply::apply_patch(
                "call_1",
                "*** Begin Patch\n*** Add File: src/greeting.txt\n+hello from codex\n*** End Patch\n",
            );
        }
        keywords(call)
    });
    let dir = TempDir::new("ws-real-dirs");
    let repo = operator_repo(&dir);
    let before = checkout_state(&repo);
    let codexd = start_running(with_mock_codex(&Dirs::under(&dir.child("cx")), &home));
    let c = start_conductor(&dir, &codexd, None);
    let id = c.create(json!({"title": "Greet", "prompt": "add a greeting",
        "cwd": repo.display().to_string()}));
    let t = c.wait_status(&id, "succeeded", Duration::from_secs(60));
    let r = &t["task"]["result"];
    assert_eq!(
        (r["changes"].as_str(), &r["files_changed"], &r["insertions"]),
        (Some("committed"), &json!(1), &json!(1)),
        "{t:#}"
    );
    let branch = format!("baa/{id}");
    assert_eq!(
        git(&repo, &["show", &format!("{branch}:src/greeting.txt")]),
        "hello from codex"
    );
    assert_eq!(
        git(
            &repo,
            &["rev-list", "--count", &format!("{}..{branch}", before[0])]
        ),
        "1"
    );
    assert!(!repo.join("src/greeting.txt").exists());
    assert_eq!(checkout_state(&repo), before, "the operator's checkout");
}
