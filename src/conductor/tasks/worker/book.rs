//! The run as its worker holds it: the task's spec, the run record, and the writes every
//! part of the worker makes (the run file, the task, the task log). The run file is
//! written first; the task's progress and the step lines follow from it
//! ([`RunBook::publish_steps`], the one place they are written), and its end line
//! ([`RunBook::take_end_line`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::super::codexd::Codexd;
use super::super::control::{RunControl, StopReason};
use super::super::model::{Run, Task, TaskSpec};
use super::super::progress::{completed_lines, Logged, Progress};
use super::timings::Timings;
use super::End;
use crate::app::App;

/// The worktree a run works in (set by `workspace::prepare` for a worktree task).
#[derive(Debug, Clone)]
pub struct Worktree {
    pub path: PathBuf,
    pub branch: String,
    pub base: String,
    pub title: String,
}

pub struct RunBook<'a> {
    pub app: &'a Arc<App>,
    pub ctl: &'a RunControl,
    pub cx: Arc<Codexd>,
    pub task_id: String,
    pub spec: TaskSpec,
    pub run: Run,
    pub timings: Timings,
    /// A worktree task's worktree, once made or found (`workspace::prepare`).
    pub worktree: Option<Worktree>,
    /// The run's lines the task log holds (its steps' "completed" lines, its end line).
    logged: Logged,
}

impl<'a> RunBook<'a> {
    pub fn load(app: &'a Arc<App>, ctl: &'a RunControl, run: Run) -> Option<RunBook<'a>> {
        let task = app.tasks.task(&ctl.task_id).ok()?;
        let spec = task.spec()?;
        // A run read back after a restart may have completed steps, or ended, with lines
        // the killed conductor did or did not write; a new one has none.
        let fresh = run.steps.is_empty() && run.status == "running";
        let logged = if fresh {
            Logged::default()
        } else {
            Logged::from_log(&app.tasks.logs.read(&task.task_id), &run.run_id)
        };
        Some(RunBook {
            app,
            ctl,
            cx: app.codexd.clone()?,
            task_id: task.task_id,
            spec,
            run,
            timings: Timings::new(ctl.started_ms),
            worktree: None,
            logged,
        })
    }

    pub fn log(&self, level: &str, message: &str, detail: Option<Value>) {
        self.app.tasks.logs.append(
            &self.task_id,
            Some(&self.run.run_id),
            level,
            message,
            detail,
        );
    }

    /// Writes the run file; a run that cannot be written is left for the next start.
    pub fn save_run(&mut self) -> Result<(), End> {
        let t0 = std::time::Instant::now();
        let saved = self.app.tasks.save_run(&self.run);
        self.timings.write(t0);
        saved.map_err(|e| {
            log::error!(
                "task {}: cannot persist run {}: {e}",
                self.task_id,
                self.run.run_id
            );
            End::Left(StopReason::Shutdown)
        })
    }

    /// Changes the task (and pushes it to the bridge); `None` when it is gone or unwritable.
    pub fn update_task(&mut self, f: impl FnOnce(&mut Task) -> bool) -> Option<Task> {
        let t0 = std::time::Instant::now();
        let updated = self.app.tasks.update(&self.task_id, f);
        self.timings.write(t0);
        match updated {
            Ok(Some(t)) => {
                self.app.task_changed(&t);
                Some(t)
            }
            Ok(None) => None,
            Err(e) => {
                log::error!("task {}: cannot persist it: {e}", self.task_id);
                None
            }
        }
    }

    /// What follows a write of the run file: the "step k/N completed" lines of its
    /// completed steps not yet in the task log, then the task's progress derived from the
    /// run (a live finish, a resumed run, and the run's end all come here). `clear_waiting`:
    /// the approval the task showed is over. Idempotent, so a conductor killed anywhere
    /// after the run's write leaves the next start the same writes to make.
    pub fn publish_steps(&mut self, clear_waiting: bool) -> Option<Task> {
        self.log_completed_steps();
        let progress = Progress::of(&self.run);
        self.update_task(|t| {
            let waited = clear_waiting && t.waiting.take().is_some();
            progress.apply(t) | waited
        })
    }

    /// The lines of the run's completed steps that the task log lacks.
    pub fn log_completed_steps(&mut self) {
        let total = self.total();
        for step in self.logged.take_missing(&self.run) {
            for (level, message, detail) in completed_lines(step, total) {
                self.log(level, &message, detail);
            }
        }
    }

    /// True when the run's end line is still to be written (once: it counts as written).
    pub fn take_end_line(&mut self) -> bool {
        self.logged.take_end()
    }

    pub fn is_leader(&self) -> bool {
        let st = self.app.lease.status();
        st.healthy_leader(self.app.lease.threshold)
    }

    pub fn session_id(&self) -> String {
        self.run.session_id.clone().unwrap_or_default()
    }

    /// Steps of the task.
    pub fn total(&self) -> usize {
        self.spec.steps.len()
    }
}
