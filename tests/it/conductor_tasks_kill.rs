//! A task and its run agree after the conductor is killed (issue 17's "task record wrong
//! after a kill": a task `succeeded` with `steps_done` 3/4 while its run said 4/4, an
//! earlier step's `final_message`, and no "step N/N completed" line). Against codexd's
//! stub child: a step's turn that finishes while the conductor is down, at every step
//! position; and the two windows between the run's write and the task's, set up on disk.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::{get, post};
use crate::support::tasks::{self, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn restart(dir: &TempDir, codexd: &Daemon) -> TaskConductor {
    TaskConductor {
        d: tasks::spawn(dir, &codexd.base, "mini-main", "primary").start(),
    }
}

fn run_file(dir: &TempDir, run_id: &str) -> PathBuf {
    dir.join("state")
        .join("runs")
        .join(format!("{run_id}.json"))
}

#[track_caller]
fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Every "step k/total completed" line of the task's log, counted per step.
#[track_caller]
fn completed_line_counts(c: &TaskConductor, id: &str, total: usize) -> Vec<usize> {
    let msgs = c.log_messages(id);
    (1..=total)
        .map(|k| {
            let want = format!("step {k}/{total} completed");
            msgs.iter().filter(|m| m.starts_with(&want)).count()
        })
        .collect()
}

/// What must hold for a task that succeeded in one run: the task's count and message
/// are the run's, the message is the last step's, and each step has its line once.
#[track_caller]
fn assert_agree(c: &TaskConductor, id: &str, last_message: &str) {
    let t = c.task(id);
    let task = &t["task"];
    let runs = t["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run, nothing sent again: {t:#}");
    let run = &runs[0];
    let total = task["steps_total"].as_u64().unwrap() as usize;
    assert_eq!(task["status"], "succeeded", "{t:#}");
    assert_eq!(run["status"], "succeeded", "{t:#}");
    assert_eq!(task["steps_done"], total, "{t:#}");
    assert_eq!(run["exit"]["steps_completed"], total, "{t:#}");
    assert_eq!(task["final_message"], last_message, "{t:#}");
    assert_eq!(run["final_message"], last_message, "{t:#}");
    assert_eq!(
        completed_line_counts(c, id, total),
        vec![1; total],
        "one completed line per step:\n{}",
        c.log_messages(id).join("\n")
    );
    let run_id = run["run_id"].as_str().unwrap();
    assert_eq!(
        end_line_count(c, id, run_id),
        1,
        "one end line for the run:\n{}",
        c.log_messages(id).join("\n")
    );
}

/// How many end lines ("run <id> succeeded…", "… failed …", canceled, paused) the
/// task's log has for one run.
#[track_caller]
fn end_line_count(c: &TaskConductor, id: &str, run_id: &str) -> usize {
    let ends = ["succeeded", "failed", "canceled", "paused"].map(|e| format!("run {run_id} {e}"));
    c.log_messages(id)
        .iter()
        .filter(|m| ends.iter().any(|e| m.starts_with(e.as_str())))
        .count()
}

/// The regression test the issue asks for: for each step of a four-step task, that
/// step's turn finishes while no conductor runs (killed with SIGKILL once the step
/// started; the turn, ten stub deltas 250 ms apart, ends at codexd meanwhile); the
/// restarted conductor records it once, from codexd, the way a live finish would.
#[test]
fn stub_step_turn_finished_while_the_conductor_was_killed_task_run_and_log_agree_at_every_step() {
    let dir = TempDir::new("tasks-kill-positions");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let mut c = tasks::start(&dir, &codexd.base);
    let names = ["first", "second", "third", "fourth"];
    for held in 0..names.len() {
        let steps: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"prompt": if i == held { "slow:250".to_string() } else { format!("{n} of {held}") }}))
            .collect();
        let id = c.create(json!({"title": format!("held at step {}", held + 1), "steps": steps}));
        let t = c.wait_task(&id, "running its held step", T, |t| {
            t["runs"][0]["steps"][held]["status"] == "running"
        });
        let run_id = t["runs"][0]["run_id"].as_str().unwrap().to_string();
        let sid = t["runs"][0]["session_id"].as_str().unwrap().to_string();
        let turn = t["runs"][0]["steps"][held]["turn_id"]
            .as_str()
            .unwrap()
            .to_string();
        c.d.kill9();
        let session = wait_for(T, || {
            let s = get(&codexd.url(&format!("/v1/codexd/sessions/{sid}"))).json()["data"].clone();
            let s = if s["session"].is_object() {
                s["session"].clone()
            } else {
                s
            };
            (s["lastTurnId"] == turn.as_str() && s["lastTurnStatus"] == "completed").then_some(s)
        });
        assert!(session.is_some(), "turn {turn} never completed at codexd");
        // The positive sign that the turn ended while nobody recorded it.
        let on_disk = read_json(&run_file(&dir, &run_id));
        assert_eq!(on_disk["steps"][held]["status"], "running", "{on_disk:#}");
        c = restart(&dir, &codexd);
        c.wait_status(&id, "succeeded", T);
        let last = if held == names.len() - 1 {
            "slow reply".to_string()
        } else {
            format!("stub reply: fourth of {held}")
        };
        assert_agree(&c, &id, &last);
    }
}

/// A hand-written record of a four-step task as the conductor leaves it, with a real
/// codexd session (`sid`) for its run.
fn records(id: &str, run_id: &str, sid: &str, run_status: &str, done: usize) -> (Value, Value) {
    let at = "2026-01-01T00:00:00.000Z";
    let prompts = ["one", "two", "three", "four"];
    let steps: Vec<Value> = (0..done)
        .map(|i| {
            json!({"index": i, "status": "completed", "turn_id": format!("turn-{i}"),
                   "sent_at": at, "started_at": at, "finished_at": at, "duration_ms": 5,
                   "final_message": format!("stub reply: {}", prompts[i])})
        })
        .collect();
    let run = json!({
        "run_id": run_id, "task_id": id, "status": run_status, "attempt": 1, "worker": "codexd",
        "session_id": sid, "started_at": at, "node_id": "mini-main", "first_step": 0,
        "steps": steps, "final_message": format!("stub reply: {}", prompts[done - 1]),
        "exit": (run_status != "running").then(|| json!({"steps_completed": done, "steps_total": 4, "completed_in_this_run": done})),
        "finished_at": (run_status != "running").then_some(at),
    });
    // The task as written before the run's last write: one step behind.
    let task = json!({
        "task_id": id, "title": "one step behind its run", "status": "running", "kind": "codex",
        "input": {"steps": prompts.iter().map(|p| json!({"prompt": p})).collect::<Vec<_>>(),
                  "cwd": null, "timeout_s": 600, "max_attempts": 3, "priority": 0},
        "created_at": at, "updated_at": at, "started_at": at, "current_run_id": run_id,
        "priority": 0, "max_attempts": 3, "steps_total": 4, "steps_done": done - 1,
        "final_message": (done > 1).then(|| format!("stub reply: {}", prompts[done - 2])),
        "session_id": sid,
        "runs": [{"run_id": run_id, "attempt": 1, "status": "running", "started_at": at}],
    });
    (task, run)
}

/// Writes the records and the task log up to (not including) the line of step `done`.
fn write_records(dir: &TempDir, task: &Value, run: &Value, done: usize) {
    let state = dir.join("state");
    for sub in ["tasks", "runs", "task-logs"] {
        std::fs::create_dir_all(state.join(sub)).unwrap();
    }
    let id = task["task_id"].as_str().unwrap();
    let run_id = run["run_id"].as_str().unwrap();
    std::fs::write(state.join(format!("tasks/{id}.json")), task.to_string()).unwrap();
    std::fs::write(run_file(dir, run_id), run.to_string()).unwrap();
    let log: String = (1..done)
        .map(|k| {
            json!({"seq": k, "task_id": id, "run_id": run_id, "level": "info",
                   "message": format!("step {k}/4 completed (turn turn-{}, 5 ms)", k - 1),
                   "created_at": "2026-01-01T00:00:00.000Z", "detail": {"step": k}})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(state.join(format!("task-logs/{id}.jsonl")), log).unwrap();
}

/// The window the kill run hit: the run's end (all four steps) is on disk, the
/// task still says `running` with three steps and the third step's message, and the log
/// lacks "step 4/4 completed". The next start settles the task from the run: nothing is
/// sent again (no second run), and task, run and log agree.
#[test]
fn stub_run_ended_on_disk_before_its_task_write_is_settled_from_the_run_not_sent_again() {
    let dir = TempDir::new("tasks-kill-run-ended");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let id = "task_endedondisk0000001";
    let (task, run) = records(id, "run_endedondisk01", "cxs_none", "succeeded", 4);
    write_records(&dir, &task, &run, 4);
    let c = restart(&dir, &codexd);
    c.wait_status(id, "succeeded", T);
    assert_agree(&c, id, "stub reply: four");
    assert!(
        c.log_messages(id)
            .iter()
            .any(|m| m.starts_with("run run_endedondisk01 succeeded")),
        "{:#?}",
        c.log_messages(id)
    );
}

/// The other window: a step before the last is completed in the run file, the task and
/// the log are one step behind (killed right after the run's write). The resumed run
/// writes the missing line and the task's progress, then runs the remaining steps.
#[test]
fn stub_step_recorded_in_the_run_before_its_task_write_gets_its_line_and_progress_on_resume() {
    let dir = TempDir::new("tasks-kill-step-behind");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let created = post(
        &codexd.url("/v1/codexd/sessions"),
        &json!({"purpose": "worker"}),
    )
    .json();
    let sid = created["data"]["session"]["sessionId"]
        .as_str()
        .or_else(|| created["data"]["sessionId"].as_str())
        .unwrap_or_else(|| panic!("no session id: {created}"))
        .to_string();
    let id = "task_stepbehind00000001";
    let (task, run) = records(id, "run_stepbehind001", &sid, "running", 2);
    write_records(&dir, &task, &run, 2);
    let c = restart(&dir, &codexd);
    c.wait_status(id, "succeeded", T);
    assert_agree(&c, id, "stub reply: four");
}

/// The end line a kill could lose: it was written after the task's write, so a conductor
/// killed between the two left a settled task (nothing to settle at the next start) and a
/// log without "run … succeeded" or "run … failed …; retrying in …" for good. The line is
/// now written before the task's write; a kill between them leaves the line and a task
/// still `running`, which the next start settles from the run without writing the line a
/// second time. Both ends: a run that succeeded, and one that failed and is retried.
#[test]
fn stub_run_end_line_lost_when_killed_after_the_task_write_is_written_once_before_it() {
    let dir = TempDir::new("tasks-kill-end-line");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let cases = [
        ("task_endlinesucceeded01", "run_endlinesucc01", 4),
        ("task_endlineretried0001", "run_endlineretr01", 2),
    ];
    for (id, run_id, done) in cases {
        let (task, mut run) = records(id, run_id, "cxs_none", "succeeded", done);
        let end = if done == 4 {
            json!({"level": "info", "message": format!("run {run_id} succeeded: 4 step(s) done"),
                   "detail": {"end": "succeeded"}})
        } else {
            let error = json!({"code": "turn_failed", "message": "boom", "retryable": true});
            run["status"] = json!("failed");
            run["error"] = error.clone();
            run["steps"].as_array_mut().unwrap().push(json!({
                "index": done, "status": "failed", "turn_id": "turn-x", "error": error.clone()}));
            json!({"level": "error", "message": format!("run {run_id} failed (turn_failed: boom); retrying in 0 s"),
                   "detail": {"end": "failed", "error": error, "retry_in_ms": 300}})
        };
        // Killed between the end line and the task's write: every step line and the end
        // line are in the log, the task still says running one step behind.
        write_records(&dir, &task, &run, done + 1);
        let mut end = end;
        end["seq"] = json!(done + 1);
        end["task_id"] = json!(id);
        end["run_id"] = json!(run_id);
        end["created_at"] = json!("2026-01-01T00:00:00.000Z");
        let log = dir.join("state").join(format!("task-logs/{id}.jsonl"));
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str(&format!("{end}\n"));
        std::fs::write(&log, text).unwrap();
    }
    let c = restart(&dir, &codexd);
    c.wait_status(cases[0].0, "succeeded", T);
    assert_agree(&c, cases[0].0, "stub reply: four");
    let (id, run_id, done) = cases[1];
    let t = c.wait_task(id, "settled from its failed run", T, |t| {
        t["runs"][0]["status"] == "failed"
    });
    assert_eq!(t["task"]["steps_done"], done, "{t:#}");
    assert_eq!(
        end_line_count(&c, id, run_id),
        1,
        "one end line for the run:\n{}",
        c.log_messages(id).join("\n")
    );
}
