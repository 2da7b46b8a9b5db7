//! The run as its worker holds it: the task's spec, the run record, and the writes every
//! part of the worker makes (the run file, the task, the task log).

use std::sync::Arc;

use serde_json::Value;

use super::super::codexd::Codexd;
use super::super::control::{RunControl, StopReason};
use super::super::model::{Run, Task, TaskSpec};
use super::timings::Timings;
use super::End;
use crate::app::App;

pub struct RunBook<'a> {
    pub app: &'a Arc<App>,
    pub ctl: &'a RunControl,
    pub cx: Arc<Codexd>,
    pub task_id: String,
    pub spec: TaskSpec,
    pub run: Run,
    pub timings: Timings,
}

impl<'a> RunBook<'a> {
    pub fn load(app: &'a Arc<App>, ctl: &'a RunControl, run: Run) -> Option<RunBook<'a>> {
        let task = app.tasks.task(&ctl.task_id).ok()?;
        let spec = task.spec()?;
        Some(RunBook {
            app,
            ctl,
            cx: app.codexd.clone()?,
            task_id: task.task_id,
            spec,
            run,
            timings: Timings::new(ctl.started_ms),
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
