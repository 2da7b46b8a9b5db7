//! The task and run records as stored (one JSON file each) and served by the read routes.
//!
//! The public fields of SPEC §4.2b come first and keep their names and meaning; the
//! worker-mode fields after them default when absent, so a record written before worker
//! mode (today's `tasks.json` / `runs.json`, migrated once) reads as it always did.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `kind` of a task the scheduler runs as Codex turns; other kinds (migrated records) are
/// shown but never dispatched.
pub const CODEX_KIND: &str = "codex";
/// `worker` of a run driven through codexd.
pub const CODEXD_WORKER: &str = "codexd";

/// A task's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled)
    }
}

/// One step of a task: one Codex turn in the run's thread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepSpec {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
}

/// What a worker-mode task runs (its validated `input`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSpec {
    /// The single prompt, when the task was created with `prompt` (then `steps` holds it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub steps: Vec<StepSpec>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub sandbox: Option<String>,
    #[serde(default)]
    pub approval_policy: Option<String>,
    /// Per step.
    pub timeout_s: u64,
    pub max_attempts: u32,
    pub priority: i64,
    /// `worktree` or `in_place` as asked (absent: the default for the cwd, see
    /// `Task::workspace` for what was decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The base ref as asked (absent: the repo's `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

impl TaskSpec {
    /// The spec of a worker-mode task's `input`; `None` for anything else.
    pub fn from_input(input: &Value) -> Option<TaskSpec> {
        serde_json::from_value(input.clone()).ok()
    }
}

/// One run of a task, as listed in the task (the run file holds the rest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRef {
    pub run_id: String,
    pub attempt: u32,
    pub status: String,
    #[serde(default)]
    pub started_at: Option<String>,
    /// The thread the run's turns ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The thread's cumulative token usage after the run's last turn that reported one
    /// (`usage.rs`: the task's `usage_total` is summed from these, one per thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageTotal>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    pub task_id: String,
    #[serde(default)]
    pub title: String,
    pub status: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub input: Value,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub current_run_id: Option<String>,
    #[serde(default)]
    pub error: Option<Value>,
    // ---- worker mode ----
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub max_attempts: u32,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub steps_total: usize,
    /// Steps completed over all runs: a retry starts at this one.
    #[serde(default)]
    pub steps_done: usize,
    /// The codexd session and thread every run of the task continues.
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub thread_id: Option<String>,
    /// Not before this time (a retry's backoff).
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    /// The approval the running turn waits on: `{request_id, kind, command|path}`.
    #[serde(default)]
    pub waiting: Option<Value>,
    /// The last completed step's final message.
    #[serde(default)]
    pub final_message: Option<String>,
    #[serde(default)]
    pub runs: Vec<RunRef>,
    /// A cancel of the running task was accepted; honored by whoever drives its run.
    #[serde(default)]
    pub cancel_requested: bool,
    /// `runs` before this index were spent before the last manual retry.
    #[serde(default)]
    pub retry_from: usize,
    /// Creation order in this store (1, 2, …): keeps FIFO among tasks of one priority
    /// created in the same millisecond. 0 for migrated records (ordered by `created_at`).
    #[serde(default)]
    pub seq: u64,
    /// Where the task's turns run, decided when it was queued (absent on records from
    /// before workspaces: in place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// What a succeeded run left on the task's branch (worktree tasks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// The schedule whose fire created the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Tokens the task's turns used, summed over its runs and steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_total: Option<UsageTotal>,
    /// The queue held this task (a usage limit) until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<String>,
}

/// `usage_total`: tokens summed over a task's turns.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct UsageTotal {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// `workspace.mode`.
pub const WORKTREE: &str = "worktree";
pub const IN_PLACE: &str = "in_place";

/// A task's workspace. `in_place`: the turns run in `cwd` itself. `worktree`: they run in
/// a git worktree of `repo` on `branch`, made from the commit `base` on the first run
/// (`path` and `branch` are written before the worktree is made, so a conductor killed
/// while making it finds what it was making).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Workspace {
    /// `worktree` or `in_place`.
    pub mode: String,
    /// The repo's top-level directory (the work tree `cwd` lies in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// `cwd` relative to `repo` (empty: the top level); the turns run there in the worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// The base as asked (`HEAD`, `main`, a commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ref: Option<String>,
    /// The commit id it resolved to when the task was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The branch the base came from (`main`), the default target of a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    /// The worktree's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The task's branch (`baa/<task_id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// When the worktree was removed (retention, merge or discard); the branch may stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
}

impl Workspace {
    pub fn is_worktree(&self) -> bool {
        self.mode == WORKTREE
    }
}

/// `result`: the task's branch against its base after a succeeded run. `changes` is
/// `committed` (the counts say what) or `none` (the turns changed nothing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TaskResult {
    pub changes: String,
    pub branch: String,
    pub base: String,
    pub head: String,
    #[serde(default)]
    pub files_changed: u64,
    #[serde(default)]
    pub insertions: u64,
    #[serde(default)]
    pub deletions: u64,
    #[serde(default)]
    pub diff_bytes: u64,
    /// `{into, commit, fast_forward, at}` once merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Value>,
    /// When the worktree and branch were discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_at: Option<String>,
}

impl Task {
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }

    pub fn is_runnable(&self) -> bool {
        self.kind.as_deref() == Some(CODEX_KIND) && self.spec().is_some()
    }

    pub fn spec(&self) -> Option<TaskSpec> {
        TaskSpec::from_input(&self.input)
    }

    /// Runs that ended `failed` since the last manual retry (what `max_attempts` counts).
    pub fn failures(&self) -> u32 {
        self.runs
            .iter()
            .skip(self.retry_from)
            .filter(|r| r.status == "failed")
            .count() as u32
    }

    /// The attempt number of the next run.
    pub fn next_attempt(&self) -> u32 {
        self.runs.iter().map(|r| r.attempt).max().unwrap_or(0) + 1
    }
}

/// One step as a run recorded it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StepRecord {
    pub index: usize,
    /// `sending` (intent persisted, the turn's 202 not yet recorded), `running`,
    /// `completed`, `failed`, `interrupted`, `canceled`.
    pub status: String,
    #[serde(default)]
    pub turn_id: Option<String>,
    /// The session's last turn when this one was sent: a newer one after a lost 202 is ours.
    #[serde(default)]
    pub prev_turn_id: Option<String>,
    /// When the intent was persisted.
    #[serde(default)]
    pub sent_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub final_message: Option<String>,
    #[serde(default)]
    pub usage: Option<Value>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub run_id: String,
    pub task_id: String,
    pub status: String,
    #[serde(default = "one")]
    pub attempt: u32,
    #[serde(default = "conductor_worker")]
    pub worker: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
    // ---- worker mode ----
    #[serde(default)]
    pub thread_id: Option<String>,
    /// The conductor that ran it (a takeover continues another's run).
    #[serde(default)]
    pub node_id: Option<String>,
    /// The first step this run sends (steps before it completed in earlier runs).
    #[serde(default)]
    pub first_step: usize,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    #[serde(default)]
    pub final_message: Option<String>,
    /// The thread's cumulative token usage after the run's last finished step.
    #[serde(default)]
    pub usage: Option<Value>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// A succeeded worktree run's result, written with its end so the task gets it from
    /// the run (also when the conductor was killed between the two writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
}

fn one() -> u32 {
    1
}

fn conductor_worker() -> String {
    "conductor".into()
}

impl Run {
    pub fn step_mut(&mut self, index: usize) -> &mut StepRecord {
        if let Some(i) = self.steps.iter().position(|s| s.index == index) {
            return &mut self.steps[i];
        }
        self.steps.push(StepRecord {
            index,
            ..StepRecord::default()
        });
        self.steps.last_mut().expect("just pushed")
    }

    pub fn step(&self, index: usize) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.index == index)
    }

    /// The step in flight: the last one recorded, if it has not finished.
    pub fn open_step(&self) -> Option<&StepRecord> {
        self.steps
            .last()
            .filter(|s| s.status == "sending" || s.status == "running")
    }

    /// Steps this run completed, counted from its first step.
    pub fn completed_through(&self) -> usize {
        let mut next = self.first_step;
        while self.step(next).is_some_and(|s| s.status == "completed") {
            next += 1;
        }
        next
    }
}

/// A run's or task's `error`: what happened, and whether a retry may help.
pub fn error_value(code: &str, message: &str, retryable: bool) -> Value {
    json!({"code": code, "message": message, "retryable": retryable})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_records_read_with_defaults() {
        let t: Task = serde_json::from_value(json!({
            "task_id": "t1", "title": "a", "status": "queued", "kind": "shell",
            "input": {"n": 1}, "created_at": "2026-01-01T00:00:00.000Z"
        }))
        .unwrap();
        assert_eq!((t.priority, t.runs.len(), t.is_runnable()), (0, 0, false));
        let r: Run = serde_json::from_value(json!({
            "run_id": "r1", "task_id": "t1", "status": "failed", "error": "boom"
        }))
        .unwrap();
        assert_eq!((r.attempt, r.worker.as_str()), (1, "conductor"));
    }

    #[test]
    fn completed_through_counts_the_prefix_from_the_first_step() {
        let mut r: Run = serde_json::from_value(json!({
            "run_id": "r1", "task_id": "t1", "status": "running", "first_step": 1
        }))
        .unwrap();
        assert_eq!(r.completed_through(), 1);
        r.step_mut(1).status = "completed".into();
        r.step_mut(2).status = "running".into();
        assert_eq!(r.completed_through(), 2);
        assert_eq!(r.open_step().map(|s| s.index), Some(2));
    }
}
