//! The usage-limit hold of the queue, and the one probe that ends it (issue 19).
//!
//! When codexd says the rate limit is used up (`codex_hold`: `blockedUntil`), no task is
//! dispatched. When that time passes, the whole queue must not go at once (codex#28897:
//! a limit that did not reset as announced fails every one of them): ONE task is
//! dispatched first, the probe. Once its first turn is over (a step completed, or its run
//! ended), the gate reads codexd's limits again: still used up, and the hold stands again
//! until the new reset; clear, and the queue is released.
//!
//! The scheduler thread owns this state. It survives a conductor restart through the
//! queued tasks' `held_until` (set on each task the hold kept waiting, cleared when the
//! task is dispatched): a conductor that starts with such tasks holds until codexd says
//! otherwise and sends a probe first, even when the hold's time passed while it was down.
//! A conductor that cannot reach codexd dispatches nothing either (the gate holds it).
//!
//! Each change is a log line and a `queue.held` / `queue.released` event line.

use std::collections::HashSet;

use serde_json::{json, Value};

use baa::common::logging;
use baa::common::time::{ms_from_rfc3339, now_ms, rfc3339_from_ms};

use super::gate::Held;
use super::model::Status;
use crate::app::App;
use crate::notify::queue_events;

/// The `reason` of the gate's rate-limit hold (`codex_hold::HoldReason::RateLimited`).
pub const RATE_LIMITED: &str = "rate_limited";

/// The probe in flight: the task, and how far it was when it was dispatched.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub task_id: String,
    pub run_id: String,
    pub steps_done: usize,
    pub since_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// No usage-limit hold: dispatch as usual.
    Open,
    /// Held until `until_ms` (or until codexd says it is over); the next dispatch is a probe.
    Held { until_ms: u64, reason: String },
    /// One probe runs; nothing else is dispatched until its first turn is over.
    Probing { probe: Probe, until_ms: u64 },
}

/// What the scheduler should do with the queue now.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Dispatch as usual.
    Dispatch,
    /// Dispatch exactly one task, as the probe ([`LimitHold::probing`] once dispatched).
    Probe,
    /// Dispatch nothing.
    Wait,
}

pub struct LimitHold {
    phase: Phase,
    /// The queued tasks already marked `held_until` for the current hold.
    marked: HashSet<String>,
}

impl LimitHold {
    /// The hold a restarted conductor starts with: the latest `held_until` of its queued
    /// tasks, if any has one (the hold had not let them go when it stopped).
    pub fn from_queue(app: &App) -> LimitHold {
        let until = app
            .tasks
            .runnable_ids_with(Status::Queued)
            .iter()
            .filter_map(|id| app.tasks.task(id).ok())
            .filter_map(|t| t.held_until.as_deref().and_then(ms_from_rfc3339))
            .max();
        let phase = match until {
            Some(until_ms) => {
                log::warn!(
                    "scheduler: queued tasks were held by the usage limit until {}; holding until codexd says it is over, then one probe task first",
                    rfc3339_from_ms(until_ms)
                );
                Phase::Held {
                    until_ms,
                    reason: "restarted during a usage-limit hold".into(),
                }
            }
            None => Phase::Open,
        };
        LimitHold {
            phase,
            marked: HashSet::new(),
        }
    }

    /// The gate held the queue: a rate-limit hold starts (or is extended by a probe that hit
    /// the limit again) and marks the queued tasks; another reason leaves the phase alone.
    pub fn held(&mut self, app: &App, held: &Held) {
        if held.reason != RATE_LIMITED {
            return;
        }
        let until_ms = held
            .until
            .as_deref()
            .and_then(ms_from_rfc3339)
            .unwrap_or_else(now_ms);
        let again = match &self.phase {
            Phase::Held { until_ms: u, .. } if *u == until_ms => None,
            Phase::Probing { probe, .. } => Some(format!(
                "the probe task {} hit the usage limit again",
                probe.task_id
            )),
            Phase::Held { .. } => Some("the usage-limit hold moved".into()),
            Phase::Open => Some("codex rate limit used up".into()),
        };
        if let Some(why) = again {
            let until = rfc3339_from_ms(until_ms);
            log::warn!("scheduler: queue held until {until}: {why}; no task is dispatched until then, then one probe first");
            logging::event(
                "queue.held",
                &[("reason", &RATE_LIMITED), ("until", &until), ("why", &why)],
            );
            app.notify.emit(queue_events::held(&until, &why));
            self.marked.clear();
            self.phase = Phase::Held {
                until_ms,
                reason: held.message.clone(),
            };
        }
        self.mark_queued(app, until_ms);
    }

    /// Each pass of a leader in `running` mode: a probe whose first turn is over decides,
    /// after reading codexd's limits again (its model responses may have used them up):
    /// used up, the hold stands again until the new reset; clear, the queue is released.
    pub fn settle(&mut self, app: &App) {
        let Phase::Probing { probe, .. } = &self.phase else {
            return;
        };
        if !probe_over(app, probe) {
            return;
        }
        app.codex_hold.invalidate();
        match super::gate::check(&app.codex, &app.codex_hold) {
            Some(h) if h.reason == RATE_LIMITED => self.held(app, &h),
            // codexd unreachable, its child restarting, …: the gate holds for that; the
            // probe's answer is still due.
            Some(_) => {}
            None => self.release(
                app,
                &format!(
                    "the probe task {}'s turn did not hit the usage limit",
                    probe.task_id
                ),
            ),
        }
    }

    /// The gate lets turns go: what to dispatch.
    pub fn open(&self) -> Next {
        match &self.phase {
            Phase::Open => Next::Dispatch,
            Phase::Held { .. } => Next::Probe,
            Phase::Probing { .. } => Next::Wait,
        }
    }

    /// The probe was dispatched as `probe`.
    pub fn probing(&mut self, probe: Probe) {
        let until_ms = match &self.phase {
            Phase::Held { until_ms, .. } => *until_ms,
            _ => now_ms(),
        };
        log::info!(
            "scheduler: the usage-limit hold's time passed; task {} goes first as the probe (run {})",
            probe.task_id,
            probe.run_id
        );
        self.phase = Phase::Probing { probe, until_ms };
    }

    /// The probe left the queue without a run (canceled before its start): probe again.
    pub fn probe_not_started(&mut self) {
        if let Phase::Probing { until_ms, .. } = self.phase {
            self.phase = Phase::Held {
                until_ms,
                reason: "the probe task did not start".into(),
            };
        }
    }

    fn release(&mut self, app: &App, why: &str) {
        log::info!("scheduler: queue released: {why}");
        logging::event("queue.released", &[("why", &why)]);
        let until = match &self.phase {
            Phase::Held { until_ms, .. } | Phase::Probing { until_ms, .. } => *until_ms,
            Phase::Open => now_ms(),
        };
        app.notify
            .emit(queue_events::released(&rfc3339_from_ms(until), why));
        self.phase = Phase::Open;
        self.marked.clear();
    }

    /// `held_until` on each queued task the hold keeps waiting (once per task and hold).
    fn mark_queued(&mut self, app: &App, until_ms: u64) {
        let until = rfc3339_from_ms(until_ms);
        for id in app.tasks.runnable_ids_with(Status::Queued) {
            if self.marked.contains(&id) {
                continue;
            }
            let r = app.tasks.update(&id, |t| {
                if t.status() != Some(Status::Queued) || t.held_until.as_ref() == Some(&until) {
                    return false;
                }
                t.held_until = Some(until.clone());
                true
            });
            match r {
                Ok(_) => {
                    self.marked.insert(id);
                }
                Err(e) => log::warn!("scheduler: cannot mark task {id} held: {e}"),
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// For `/v1/runtime` `scheduler.held` when the hold decides: `{reason, message, until,
    /// probe}`; `None` when open.
    pub fn to_json(&self) -> Option<Value> {
        match &self.phase {
            Phase::Held { until_ms, reason } if *until_ms > now_ms() => Some(json!({
                "reason": RATE_LIMITED,
                "message": reason,
                "until": rfc3339_from_ms(*until_ms),
                "probe": null,
            })),
            Phase::Probing { probe, until_ms } => Some(json!({
                "reason": "rate_limit_probe",
                "message": format!("the usage-limit hold's time passed; only the probe task {} runs until its first turn is over", probe.task_id),
                "until": rfc3339_from_ms(*until_ms),
                "probe": probe_json(probe),
            })),
            Phase::Held { until_ms, reason } if *until_ms <= now_ms() => Some(json!({
                "reason": "rate_limit_probe",
                "message": format!("the usage-limit hold's time passed ({reason}); the next task goes alone as the probe"),
                "until": rfc3339_from_ms(*until_ms),
                "probe": null,
            })),
            _ => None,
        }
    }

    /// The probe of the hold, if one is in flight (added to a rate-limit hold's JSON).
    pub fn probe_json(&self) -> Value {
        match &self.phase {
            Phase::Probing { probe, .. } => probe_json(probe),
            _ => Value::Null,
        }
    }
}

fn probe_json(p: &Probe) -> Value {
    json!({"task_id": p.task_id, "run_id": p.run_id, "since": rfc3339_from_ms(p.since_ms)})
}

/// The probe's first turn is over: a step completed, or the run is not in flight any more
/// (ended, waiting for nothing else), or the task left it.
fn probe_over(app: &App, p: &Probe) -> bool {
    let Ok(t) = app.tasks.task(&p.task_id) else {
        return true;
    };
    t.steps_done > p.steps_done
        || t.status() != Some(Status::Running)
        || t.current_run_id.as_deref() != Some(p.run_id.as_str())
        || app.sched.control(&p.task_id).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use baa::common::store::JsonStore;

    use crate::lease::Lease;
    use crate::tasks::store::TaskStore;
    use crate::tasks::validate;

    /// An app over a fresh state dir (no codexd: the gate would hold for that).
    fn app(tag: &str) -> Arc<App> {
        let dir = std::env::temp_dir().join(format!(
            "baa-limit-hold-{tag}-{}",
            baa::common::ids::new_id("t")
        ));
        let state = dir.join("state").display().to_string();
        let cfg = crate::config::for_test(&[("state-dir", &state)]);
        let store = Arc::new(JsonStore::open(&cfg.state_dir).unwrap());
        let tasks = Arc::new(TaskStore::open(&cfg.state_dir, 100).unwrap());
        let lease = Arc::new(Lease::new(&cfg));
        let schedules = crate::schedules::store::ScheduleStore::open(&cfg.state_dir).unwrap();
        Arc::new(App::new(
            cfg,
            baa::common::listen::Listeners::single("127.0.0.1:1".parse().unwrap()),
            store,
            lease,
            tasks,
            schedules,
        ))
    }

    fn queue(app: &App, title: &str) -> String {
        let body = json!({"title": title, "prompt": "p"});
        let new = validate::new_task(body.as_object().unwrap(), &|_| true).unwrap();
        app.tasks.create(new).unwrap().0.task_id
    }

    fn rate_limited(until_ms: u64) -> Held {
        Held {
            reason: RATE_LIMITED.into(),
            message: "used up".into(),
            until: Some(rfc3339_from_ms(until_ms)),
        }
    }

    #[test]
    fn a_hold_marks_the_queue_then_lets_one_probe_go_and_a_restart_remembers_it() {
        let app = app("marks");
        let ids = [queue(&app, "a"), queue(&app, "b")];
        let mut h = LimitHold::from_queue(&app);
        assert_eq!(h.open(), Next::Dispatch);
        assert_eq!(h.to_json(), None);
        // Another reason holds without starting a usage-limit hold.
        let down = Held {
            reason: "codexd_unreachable".into(),
            message: "down".into(),
            until: None,
        };
        h.held(&app, &down);
        assert!(h.is_open());
        let until = now_ms() + 60_000;
        h.held(&app, &rate_limited(until));
        for id in &ids {
            let t = app.tasks.task(id).unwrap();
            assert_eq!(t.held_until, Some(rfc3339_from_ms(until)), "{id}");
        }
        let j = h.to_json().unwrap();
        assert_eq!(j["reason"], RATE_LIMITED);
        assert_eq!(j["until"], rfc3339_from_ms(until));
        // The gate lets turns go (the time passed): one probe, then nothing until it is over.
        assert_eq!(h.open(), Next::Probe);
        // A conductor restarted now holds too (the queued tasks say so).
        let again = LimitHold::from_queue(&app);
        assert_eq!(again.open(), Next::Probe);
        h.probing(Probe {
            task_id: ids[0].clone(),
            run_id: "run_x".into(),
            steps_done: 0,
            since_ms: now_ms(),
        });
        assert_eq!(h.open(), Next::Wait);
        let j = h.to_json().unwrap();
        assert_eq!(j["reason"], "rate_limit_probe");
        assert_eq!(j["probe"]["task_id"], ids[0].as_str());
        // The probe hits the limit again: held until the new reset.
        let later = until + 60_000;
        h.held(&app, &rate_limited(later));
        assert_eq!(h.open(), Next::Probe);
        assert_eq!(h.to_json().unwrap()["until"], rfc3339_from_ms(later));
        assert_eq!(
            app.tasks.task(&ids[1]).unwrap().held_until,
            Some(rfc3339_from_ms(later)),
            "marked again for the new reset"
        );
        // A probe that never started is replaced by the next one.
        h.probing(Probe {
            task_id: ids[1].clone(),
            run_id: "run_y".into(),
            steps_done: 0,
            since_ms: now_ms(),
        });
        h.probe_not_started();
        assert_eq!(h.open(), Next::Probe);
    }
}
