//! Worker mode against codexd's built-in stub child: the queue, its order and the
//! scheduler's cap, bad bodies, idempotency, cancel and retry, the dispatch gate, and what
//! the status surfaces report. The real app-server is in `conductor_tasks_real.rs`.
#![allow(unused_imports, dead_code)] // helpers for the issue 10 tests still being written (i10-stub, i10-tasks)

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::daemon::Daemon;
use crate::support::tasks::{self, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn stack(tag: &str, mode: &str) -> (TempDir, Daemon, TaskConductor) {
    let dir = TempDir::new(tag);
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), mode));
    let c = tasks::start(&dir, &codexd.base);
    (dir, codexd, c)
}

#[test]
fn stub_three_step_task_runs_its_steps_in_order_in_one_session() {
    let (_dir, _codexd, c) = stack("tasks-stub-3", "normal");
    let id = c.create(json!({"title": "three", "steps": [
        {"prompt": "first"}, {"prompt": "second"}, {"prompt": "third"}]}));
    let t = c.wait_status(&id, "succeeded", T);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "succeeded", "{t:#}");
    let steps: Vec<(&Value, &Value)> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (&s["index"], &s["status"]))
        .collect();
    assert_eq!(
        steps,
        [
            (&json!(0), &json!("completed")),
            (&json!(1), &json!("completed")),
            (&json!(2), &json!("completed"))
        ],
        "{t:#}"
    );
    assert_eq!(run["final_message"], "stub reply: third", "{t:#}");
    assert_eq!(t["task"]["steps_done"], 3);
    let msgs = c.log_messages(&id);
    for want in [
        "step 1/3 started",
        "step 2/3 completed",
        "final message: stub reply: third",
        "succeeded",
    ] {
        assert!(
            msgs.iter().any(|m| m.contains(want)),
            "no {want:?} in {msgs:#?}"
        );
    }
}
