//! A task's progress is what its runs recorded: `steps_done`, `final_message` and the
//! "step k/N completed" log lines are derived here from a run's step records, and nowhere
//! else. The run file is written first and is the truth; the task and its log follow
//! from it, so a conductor killed between the two writes leaves nothing to disagree
//! about: the next start derives the same fields and writes the lines still missing
//! ([`Logged`] says which), the same way a live finish does.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::logs::{cut, MESSAGE_CAP};
use super::model::{Run, StepRecord, Task, UsageTotal};
use super::usage;

/// The task fields a run's step records decide.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Steps completed over all runs: this run's first step plus the prefix it completed.
    pub steps_done: usize,
    /// The last completed step's message; `None` when this run completed no step (the
    /// task keeps the one an earlier run left).
    pub final_message: Option<Option<String>>,
    /// The run, its thread and the thread's latest cumulative usage (`usage.rs`).
    pub run_id: String,
    pub thread_id: Option<String>,
    pub usage: Option<UsageTotal>,
}

impl Progress {
    pub fn of(run: &Run) -> Progress {
        let steps_done = run.completed_through();
        let final_message = (steps_done > run.first_step)
            .then(|| run.step(steps_done - 1))
            .flatten()
            .map(|s| s.final_message.clone());
        Progress {
            steps_done,
            final_message,
            run_id: run.run_id.clone(),
            thread_id: run.thread_id.clone(),
            usage: usage::of_run(run),
        }
    }

    /// Writes the progress into `task`; true when it changed. `steps_done` never goes
    /// back (a run starts at the task's count, so it can only add to it). The run's usage
    /// goes to its run ref and `usage_total` is summed again from the refs.
    pub fn apply(&self, task: &mut Task) -> bool {
        let before = (
            task.steps_done,
            task.final_message.clone(),
            task.usage_total,
        );
        task.steps_done = task.steps_done.max(self.steps_done);
        if let Some(m) = &self.final_message {
            task.final_message = m.clone();
        }
        if let Some(u) = self.usage {
            if let Some(r) = task.runs.iter_mut().find(|r| r.run_id == self.run_id) {
                r.usage = Some(u);
                r.thread_id = self.thread_id.clone();
            }
        }
        task.usage_total = usage::total(&task.runs).or(task.usage_total);
        before
            != (
                task.steps_done,
                task.final_message.clone(),
                task.usage_total,
            )
    }
}

/// One log line: level, message, detail.
pub type Line = (&'static str, String, Option<Value>);

/// The lines of a completed step: "step k/N completed (turn …, … ms)" and its final
/// message. The same lines whether the step finished live or was settled after a restart.
pub fn completed_lines(step: &StepRecord, total: usize) -> Vec<Line> {
    let turn = step.turn_id.as_deref().unwrap_or("?");
    let mut lines = vec![(
        "info",
        format!(
            "step {}/{total} completed (turn {turn}, {} ms)",
            step.index + 1,
            step.duration_ms.map_or("?".into(), |d| d.to_string())
        ),
        Some(json!({"step": step.index + 1, "turn_id": step.turn_id, "usage": step.usage})),
    )];
    if let Some(m) = &step.final_message {
        lines.push((
            "info",
            format!("final message: {}", cut(m, MESSAGE_CAP)),
            None,
        ));
    }
    lines
}

/// Which of one run's lines the task log holds: its steps' "completed" lines and its end
/// line (the one line carrying `detail.end`, written by `worker::finish::close`).
#[derive(Debug, Default)]
pub struct Logged {
    steps: HashSet<usize>,
    end: bool,
}

impl Logged {
    /// From the task log's lines (a resumed or settled run: lines a killed conductor wrote).
    pub fn from_log(lines: &[Value], run_id: &str) -> Logged {
        let ours = || lines.iter().filter(|l| l["run_id"] == run_id);
        Logged {
            steps: ours()
                .filter(|l| {
                    l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("step ") && m.contains(" completed"))
                })
                .filter_map(|l| l["detail"]["step"].as_u64())
                .filter_map(|n| usize::try_from(n).ok()?.checked_sub(1))
                .collect(),
            end: ours().any(|l| l["detail"]["end"].is_string()),
        }
    }

    /// The completed steps of `run` whose line is missing, in order; each is counted as
    /// logged from now on.
    pub fn take_missing<'r>(&mut self, run: &'r Run) -> Vec<&'r StepRecord> {
        let mut steps: Vec<&StepRecord> = run
            .steps
            .iter()
            .filter(|s| s.status == "completed" && !self.steps.contains(&s.index))
            .collect();
        steps.sort_by_key(|s| s.index);
        self.steps.extend(steps.iter().map(|s| s.index));
        steps
    }

    /// True when the run's end line is missing; it counts as logged from now on.
    pub fn take_end(&mut self) -> bool {
        !std::mem::replace(&mut self.end, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: usize, done: &[(usize, &str)]) -> Run {
        let mut r: Run = serde_json::from_value(json!({
            "run_id": "r1", "task_id": "t1", "status": "running", "first_step": first
        }))
        .unwrap();
        for (i, m) in done {
            let s = r.step_mut(*i);
            s.status = "completed".into();
            s.turn_id = Some(format!("turn-{i}"));
            s.final_message = Some(m.to_string());
        }
        r
    }

    fn task(steps_done: usize, final_message: Option<&str>) -> Task {
        serde_json::from_value(json!({
            "task_id": "t1", "status": "running", "created_at": "2026-01-01T00:00:00.000Z",
            "steps_done": steps_done, "final_message": final_message,
        }))
        .unwrap()
    }

    #[test]
    fn the_task_takes_steps_done_and_final_message_from_the_run() {
        let r = run(0, &[(0, "one"), (1, "two"), (2, "three"), (3, "four")]);
        // The task lagging one step behind (killed between the run's write and its own).
        let mut t = task(3, Some("three"));
        assert!(Progress::of(&r).apply(&mut t));
        assert_eq!(
            (t.steps_done, t.final_message.as_deref()),
            (4, Some("four"))
        );
        assert!(
            !Progress::of(&r).apply(&mut t),
            "applying again changes nothing"
        );
    }

    #[test]
    fn usage_total_follows_the_runs_step_records_and_applying_again_changes_nothing() {
        let mut r = run(0, &[(0, "one"), (1, "two")]);
        r.thread_id = Some("th1".into());
        let tokens = |i: u64, o: u64| json!({"total": {"inputTokens": i, "cachedInputTokens": 1, "outputTokens": o, "reasoningOutputTokens": 2}});
        r.step_mut(0).usage = Some(tokens(10, 5));
        r.step_mut(1).usage = Some(tokens(30, 9));
        let mut t = task(0, None);
        t.runs.push(
            serde_json::from_value(json!({"run_id": "r1", "attempt": 1, "status": "running"}))
                .unwrap(),
        );
        assert!(Progress::of(&r).apply(&mut t));
        let want = UsageTotal {
            input_tokens: 30,
            cached_input_tokens: 1,
            output_tokens: 9,
            reasoning_tokens: 2,
        };
        assert_eq!(t.usage_total, Some(want));
        assert_eq!(t.runs[0].thread_id.as_deref(), Some("th1"));
        assert!(
            !Progress::of(&r).apply(&mut t),
            "applying again changes nothing"
        );
        assert_eq!(t.usage_total, Some(want));
    }

    #[test]
    fn a_run_that_completed_nothing_keeps_the_earlier_runs_message() {
        let mut r = run(2, &[]);
        r.step_mut(2).status = "failed".into();
        let mut t = task(2, Some("two"));
        assert!(!Progress::of(&r).apply(&mut t));
        assert_eq!((t.steps_done, t.final_message.as_deref()), (2, Some("two")));
        // A retry that completed the rest.
        let r = run(2, &[(2, "three"), (3, "four")]);
        Progress::of(&r).apply(&mut t);
        assert_eq!(
            (t.steps_done, t.final_message.as_deref()),
            (4, Some("four"))
        );
    }

    #[test]
    fn missing_step_lines_are_found_in_the_log_and_written_once() {
        let r = run(0, &[(0, "one"), (1, "two"), (2, "three")]);
        let lines: Vec<Value> = completed_lines(r.step(0).unwrap(), 3)
            .into_iter()
            .map(|(_, m, d)| json!({"run_id": "r1", "message": m, "detail": d}))
            .chain([
                // Another run's line for step 2 does not count for this one.
                json!({"run_id": "r0", "message": "step 2/3 completed (turn x, 1 ms)", "detail": {"step": 2}}),
                json!({"run_id": "r1", "message": "step 3/3 failed: boom", "detail": {"step": 3}}),
            ])
            .collect();
        let mut logged = Logged::from_log(&lines, "r1");
        let missing: Vec<usize> = logged.take_missing(&r).iter().map(|s| s.index).collect();
        assert_eq!(missing, [1, 2]);
        assert!(logged.take_missing(&r).is_empty());
        let l = completed_lines(r.step(2).unwrap(), 3);
        assert!(
            l[0].1.starts_with("step 3/3 completed (turn turn-2, "),
            "{l:?}"
        );
        assert_eq!(l[1].1, "final message: three");
    }

    #[test]
    fn the_end_line_is_found_in_the_log_and_written_once() {
        let lines = [
            json!({"run_id": "r0", "message": "run r0 succeeded: 3 step(s) done", "detail": {"end": "succeeded"}}),
            json!({"run_id": "r1", "message": "run r1 started (attempt 2, step 1 of 3)", "detail": {"attempt": 2}}),
        ];
        let mut logged = Logged::from_log(&lines, "r1");
        assert!(logged.take_end(), "another run's end line does not count");
        assert!(!logged.take_end());
        assert!(!Logged::from_log(&lines, "r0").take_end());
    }
}
