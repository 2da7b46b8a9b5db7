//! Worker mode end to end: the conductor runs tasks as turns of the real pinned `codex
//! app-server` (through codexd) against the loopback mock model. What the model receives
//! is counted per prompt (`count_prompt_starts`), so "never sent twice" is checked where it
//! matters: at the model. Replies held on a `Gate` keep a turn in flight for as long as a
//! test needs, without sleeping.
#![allow(unused_imports, dead_code)] // helpers for the issue 10 tests still being written (i10-stub, i10-tasks)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codex::MockCodexHome;
use crate::support::codexd::{start_running, with_mock_codex, Dirs};
use crate::support::daemon::{wait_for, Daemon};
use crate::support::mock_model::{add_file_patch, keywords, Gate, Reply};
use crate::support::tasks::{self, runs, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(60);

struct Rig {
    home: MockCodexHome,
    dir: TempDir,
    dirs: Dirs,
    codexd: Daemon,
}

fn rig(tag: &str) -> Rig {
    let home = MockCodexHome::new(tag);
    let dir = TempDir::new(&format!("{tag}-dirs"));
    let dirs = Dirs::under(&dir.child("cx"));
    let codexd = start_running(with_mock_codex(&dirs, &home));
    Rig {
        home,
        dir,
        dirs,
        codexd,
    }
}

impl Rig {
    fn conductor(&self) -> TaskConductor {
        tasks::start(&self.dir, &self.codexd.base)
    }

    /// A script that holds the first turn whose prompt contains `needle` on `gate`, and
    /// answers everything else by keywords.
    fn hold_first(&self, needle: &'static str, gate: &Gate) {
        let seen = Arc::new(AtomicUsize::new(0));
        let gate = gate.clone();
        self.home.mock.set_script(move |call| {
            if call.prompt.contains(needle)
                && call.tool_output().is_none()
                && seen.fetch_add(1, Ordering::SeqCst) == 0
            {
                return keywords(call).held(&gate);
            }
            keywords(call)
        });
    }

    /// Waits until the model received a turn start containing `needle`.
    fn wait_model(&self, needle: &str, n: usize) {
        wait_for(T, || {
            (self.home.mock.count_prompt_starts(needle) >= n).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the model never got {needle:?} {n} time(s); codexd log:\n{}",
                self.codexd.log()
            )
        });
    }
}

fn step_statuses(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn real_three_step_task_runs_in_order_in_one_thread_with_command_and_file_lines() {
    let r = rig("tasks-real-3");
    let target = r.home.work.join("made-by-step-two.txt");
    let patch = add_file_patch(&target, "hello from step two");
    r.home.mock.set_script(move |call| {
        if call.tool_output().is_some() {
            return keywords(call);
        }
        if call.prompt.contains("step one") {
            Reply::exec("call_1", "echo from-step-one")
        } else if call.prompt.contains("step two") {
            Reply::apply_patch("call_2", patch.clone())
        } else {
            keywords(call)
        }
    });
    let c = r.conductor();
    let id = c.create(json!({"title": "three steps", "cwd": r.home.work, "steps": [
        {"prompt": "step one: run a command"}, {"prompt": "step two: add a file"}, {"prompt": "step three: summarize"}]}));
    let t = c.wait_status(&id, "succeeded", T);
    let run = &t["runs"][0];
    assert_eq!(
        step_statuses(run),
        ["completed", "completed", "completed"],
        "{t:#}"
    );
    assert_eq!(
        run["final_message"], "mock reply: step three: summarize",
        "{t:#}"
    );
    assert!(target.is_file(), "step two's file was not written");
    // One thread: each step's turn is in the same session, in order.
    let sid = run["session_id"].as_str().unwrap();
    let turns = crate::support::codexd::CodexApi::codexd(&r.codexd).turns_page(sid, 10, None);
    let turn_ids: Vec<&Value> = turns["turns"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|t| &t["turnId"])
        .collect();
    let step_turns: Vec<&Value> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["turn_id"])
        .collect();
    assert_eq!(turn_ids, step_turns, "{turns:#}");
    let order: Vec<String> = r
        .home
        .mock
        .requests()
        .iter()
        .map(baa::common::responses::last_user_text)
        .filter(|p| p.starts_with("step "))
        .collect();
    let mut dedup = order.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        [
            "step one: run a command",
            "step two: add a file",
            "step three: summarize"
        ]
    );
    for step in ["step one", "step two", "step three"] {
        assert_eq!(r.home.mock.count_prompt_starts(step), 1, "{step}");
    }
    let msgs = c.log_messages(&id);
    let has = |s: &str| msgs.iter().any(|m| m.contains(s));
    assert!(
        has("command `") && has("echo from-step-one") && has("exited 0"),
        "{msgs:#?}"
    );
    assert!(has(&format!("file add: {}", target.display())), "{msgs:#?}");
    assert!(
        has("step 3/3 completed") && has("final message: mock reply: step three"),
        "{msgs:#?}"
    );
}
