//! `baa-conductor task …` against a real conductor and codexd's stub child: add, list,
//! show, logs --follow to the end of the task, cancel and retry, `--json` that parses, and
//! the error shapes (usage → exit 2 on one line, API refusal → exit 1 with its code).

use std::time::Duration;

use serde_json::Value;

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::daemon::{Daemon, Ran, Spawn, CONDUCTOR};
use crate::support::tasks::{self, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn stack(tag: &str) -> (TempDir, Daemon, TaskConductor) {
    let dir = TempDir::new(tag);
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = tasks::start(&dir, &codexd.base);
    (dir, codexd, c)
}

/// `baa-conductor task <args>` pointed at `base` with `--conductor-url`.
fn task(base: &str, args: &[&str]) -> Ran {
    Spawn::new(CONDUCTOR)
        .arg("task")
        .args(args)
        .args(["--conductor-url", base])
        .output()
}

fn ok(r: &Ran) -> &str {
    assert!(r.status.success(), "expected success: {r:?}");
    &r.stdout
}

fn json(r: &Ran) -> Value {
    serde_json::from_str(ok(r))
        .unwrap_or_else(|e| panic!("--json output does not parse: {e}\n{r:?}"))
}

#[test]
fn task_cli_add_list_show_and_follow_to_success() {
    let (_dir, _codexd, c) = stack("task-cli-main");
    let base = c.d.base.as_str();
    let added = task(
        base,
        &[
            "add",
            "--title",
            "two steps",
            "--step",
            "first",
            "--step",
            "second",
            "--priority",
            "4",
        ],
    );
    let id = ok(&added).trim().to_string();
    assert!(
        id.starts_with("task") && !id.contains(char::is_whitespace),
        "add prints the id: {added:?}"
    );

    // --follow prints entries as they come and ends when the task succeeds (exit 0).
    let followed = task(base, &["logs", &id, "--follow"]);
    let out = ok(&followed);
    for want in [
        "task queued: 2 step(s), priority 4",
        "step 2/2 completed",
        "succeeded",
    ] {
        assert!(
            out.contains(want),
            "no {want:?} in the followed log:\n{out}"
        );
    }
    assert_eq!(c.status(&id), "succeeded");

    // The table has the task's row; the variable works as well as the flag.
    let listed = Spawn::new(CONDUCTOR)
        .args(["task", "list"])
        .env("BAA_CONDUCTOR_LOCAL_API", base)
        .output();
    let table = ok(&listed);
    assert!(table.starts_with("ID "), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
    for want in ["succeeded", " 4 ", "2/2", "two steps"] {
        assert!(row.contains(want), "row lacks {want:?}: {row:?}");
    }

    let shown = task(base, &["show", &id]);
    let text = ok(&shown);
    for want in [
        "status     succeeded",
        "steps      2/2 done",
        "attempt 1: succeeded",
        "step 1  completed",
        "step 2  completed",
    ] {
        assert!(text.contains(want), "show lacks {want:?}:\n{text}");
    }

    // --json is the API's answer as received.
    let v = json(&task(base, &["list", "--json", "--limit", "5"]));
    assert_eq!(
        (&v["ok"], &v["data"]["tasks"][0]["task_id"]),
        (&Value::Bool(true), &Value::from(id.clone())),
        "{v:#}"
    );
    let v = json(&task(base, &["show", &id, "--json"]));
    assert_eq!(v["data"]["runs"][0]["status"], "succeeded", "{v:#}");
    let v = json(&task(base, &["logs", &id, "--json", "--limit", "2"]));
    assert_eq!(v["data"]["logs"].as_array().map(Vec::len), Some(2), "{v:#}");

    // An unknown task: exit 1, one line naming the API's code.
    let r = task(base, &["show", "task_nope"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("not_found"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    let r = task(base, &["logs", "task_nope", "--follow"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("not_found"), "{r:?}");
}

#[test]
fn task_cli_cancel_then_retry_runs_it_again() {
    let (_dir, _codexd, c) = stack("task-cli-cancel");
    let base = c.d.base.as_str();
    // Ten deltas 300 ms apart: long enough to cancel while queued or running.
    let id = ok(&task(
        base,
        &[
            "add",
            "--title",
            "slow",
            "--prompt",
            "slow:300",
            "--max-attempts",
            "1",
        ],
    ))
    .trim()
    .to_string();
    let r = task(base, &["cancel", &id]);
    assert_eq!(
        ok(&r),
        format!("{id} cancel: canceled\n"),
        "{r:?}\n{}",
        c.explain(&id)
    );

    // Following a canceled task ends at once with exit 1 and says why.
    let r = task(base, &["logs", &id, "--follow"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains(&format!("task {id} canceled")), "{r:?}");

    // A finished task cannot be canceled again: the API's 409 code.
    let r = task(base, &["cancel", &id]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("task_finished"), "{r:?}");

    // Regression (scheduler took a task canceled between its pick and its dispatch and
    // ran it to success): still canceled, and no run of it went on.
    let t = c.task(&id);
    assert_eq!(t["task"]["status"], "canceled", "{t:#}");
    for run in t["runs"].as_array().into_iter().flatten() {
        assert_ne!(run["status"], "running", "{t:#}");
        assert_ne!(run["status"], "succeeded", "{t:#}");
    }

    // Issue 20: retry states the attempt that runs next (it said only "queued").
    let attempt = c.task(&id)["task"]["runs"].as_array().map_or(0, |r| {
        r.iter()
            .filter_map(|r| r["attempt"].as_u64())
            .max()
            .unwrap_or(0)
    }) + 1;
    let r = task(base, &["retry", &id]);
    assert_eq!(
        ok(&r),
        format!(
            "{id} retry: queued, as attempt {attempt} (max_attempts 1 counts again from here)\n"
        ),
        "{r:?}"
    );
    let r = task(base, &["logs", &id, "--follow"]);
    assert!(ok(&r).contains("task queued again by retry"), "{r:?}");
    c.wait_status(&id, "succeeded", T);
}

#[test]
fn task_cli_usage_errors_are_one_line_and_exit_2() {
    for args in [
        &["add", "--title", "x"][..],
        &["frob"][..],
        &["show"][..],
        &["list", "--bogus"][..],
    ] {
        let r = Spawn::new(CONDUCTOR).arg("task").args(args).output();
        assert_eq!(r.status.code(), Some(2), "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {r:?}");
        assert!(
            r.stderr.starts_with("baa-conductor: ")
                && r.stderr.contains("(try 'baa-conductor task --help')"),
            "{args:?}: {r:?}"
        );
        assert_eq!(r.stdout, "", "{args:?}");
    }
    let help = Spawn::new(CONDUCTOR).args(["task", "--help"]).output();
    for sub in ["add", "list", "show", "logs", "cancel", "retry"] {
        assert!(
            help.stdout.contains(&format!("\n    {sub} ")),
            "help lacks {sub}: {help:?}"
        );
    }
    // A conductor that is not there: exit 1, one line naming the URL.
    let r = Spawn::new(CONDUCTOR)
        .args(["task", "list", "--conductor-url", "http://127.0.0.1:9"])
        .output();
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("cannot reach the conductor at http://127.0.0.1:9"),
        "{r:?}"
    );
}

/// Issue 20: `task show` of a held task said only `queued`, with no reason.
#[test]
fn task_show_of_a_held_task_says_why_it_waits() {
    let c = crate::support::conductor::start("task-show-held");
    let base = c.d.base.as_str();
    let id = ok(&task(base, &["add", "--title", "held", "--prompt", "p"]))
        .trim()
        .to_string();
    // No codexd is configured: the dispatch gate holds the queue (a pass records it).
    crate::support::daemon::wait_for(T, || {
        let rt = crate::support::http::get(&c.url("/v1/runtime")).json();
        (!rt["data"]["daemon"]["scheduler"]["held"].is_null()).then_some(())
    })
    .expect("the scheduler never recorded its hold");
    let r = task(base, &["show", &id]);
    assert!(
        ok(&r).contains(
            "held       codexd_not_configured: BAA_CODEXD_LOCAL_API_BASE is not configured"
        ),
        "{r:?}"
    );
    crate::support::http::post(
        &c.url("/v1/system/pause"),
        &serde_json::json!({"requested_by": "ops", "reason": "upgrade"}),
    )
    .expect(200);
    let r = task(base, &["show", &id]);
    assert!(
        ok(&r).contains("held       automation is paused by ops (upgrade)"),
        "{r:?}"
    );
    // --json stays the API's answer as received.
    let v = json(&task(base, &["show", &id, "--json"]));
    assert_eq!(v["data"]["task"]["status"], "queued", "{v}");
}
