//! Worker-mode helpers: a conductor pointed at a codexd (stub child or the real app-server)
//! with fast task settings, and calls for creating tasks and waiting on them. Every wait is
//! bounded and a timeout panics with the task, its runs and its log.

use std::time::Duration;

use serde_json::{json, Value};

use super::conductor::{self, TOKEN};
use super::daemon::{wait_for, Daemon, Spawn};
use super::http::{get, get_h, post, post_h, Resp};
use super::tmp::TempDir;

/// A conductor started for task tests (its dirs under `dir`).
pub struct TaskConductor {
    pub d: Daemon,
}

/// A conductor command for `codexd_base` with a 300 ms first retry delay, not yet started.
pub fn spawn(dir: &TempDir, codexd_base: &str, node: &str, role: &str) -> Spawn {
    conductor::spawn(dir, node, role)
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("BAA_CODEXD_LOCAL_API_BASE", codexd_base)
        .env("BAA_CONDUCTOR_TASK_BACKOFF_MS", "300")
        .env("BAA_CONDUCTOR_TASK_BACKOFF_MAX_MS", "2000")
}

#[track_caller]
pub fn start(dir: &TempDir, codexd_base: &str) -> TaskConductor {
    TaskConductor {
        d: spawn(dir, codexd_base, "mini-main", "primary").start(),
    }
}

impl TaskConductor {
    pub fn url(&self, path: &str) -> String {
        self.d.url(path)
    }

    /// `POST /v1/tasks`, returning the response as is.
    #[track_caller]
    pub fn post_task(&self, body: Value) -> Resp {
        post(&self.url("/v1/tasks"), &body)
    }

    /// Creates a task (asserting 201) and returns its id.
    #[track_caller]
    pub fn create(&self, body: Value) -> String {
        let v = self.post_task(body).expect(201);
        let Some(id) = v["data"]["task"]["task_id"].as_str() else {
            panic!("no task_id: {v}")
        };
        id.to_string()
    }

    /// `{task, runs}` of a task.
    #[track_caller]
    pub fn task(&self, id: &str) -> Value {
        get(&self.url(&format!("/v1/tasks/{id}"))).expect(200)["data"].clone()
    }

    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.task(id)["task"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The task's log lines (the last 500).
    #[track_caller]
    pub fn logs(&self, id: &str) -> Vec<Value> {
        get(&self.url(&format!("/v1/tasks/{id}/logs?limit=500"))).expect(200)["data"]["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    #[track_caller]
    pub fn log_messages(&self, id: &str) -> Vec<String> {
        self.logs(id)
            .iter()
            .filter_map(|l| l["message"].as_str().map(str::to_string))
            .collect()
    }

    /// What a failing wait prints about a task.
    pub fn explain(&self, id: &str) -> String {
        format!(
            "task: {:#}\nlog:\n{}\nconductor log:\n{}",
            self.task(id),
            self.log_messages(id).join("\n"),
            self.d.log()
        )
    }

    /// Waits until the task's status is `want`; returns `{task, runs}`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let found = wait_for(timeout, || {
            let t = self.task(id);
            (t["task"]["status"] == want).then_some(t)
        });
        let Some(t) = found else {
            panic!(
                "task {id} never {want} within {timeout:?}\n{}",
                self.explain(id)
            )
        };
        t
    }

    /// Waits until `pred` holds for `{task, runs}`.
    #[track_caller]
    pub fn wait_task(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let found = wait_for(timeout, || {
            let t = self.task(id);
            pred(&t).then_some(t)
        });
        let Some(t) = found else {
            panic!(
                "task {id}: never {what} within {timeout:?}\n{}",
                self.explain(id)
            )
        };
        t
    }

    #[track_caller]
    pub fn cancel(&self, id: &str) -> Resp {
        post(&self.url(&format!("/v1/tasks/{id}/cancel")), &json!({}))
    }

    #[track_caller]
    pub fn retry(&self, id: &str) -> Resp {
        post(&self.url(&format!("/v1/tasks/{id}/retry")), &json!({}))
    }

    #[track_caller]
    pub fn system(&self, action: &str, body: Value) -> Value {
        post(&self.url(&format!("/v1/system/{action}")), &body).expect(200)["data"].clone()
    }

    #[track_caller]
    pub fn state(&self) -> Value {
        get(&self.url("/v1/system/state")).expect(200)["data"].clone()
    }

    #[track_caller]
    pub fn runtime(&self) -> Value {
        get(&self.url("/v1/runtime")).expect(200)["data"].clone()
    }

    #[track_caller]
    pub fn summary(&self) -> Value {
        get(&self.url("/v1/tasks/summary")).expect(200)["data"].clone()
    }

    #[track_caller]
    pub fn requests(&self) -> Value {
        let auth = format!("Bearer {TOKEN}");
        get_h(&self.url("/v1/codex/requests"), &[("Authorization", &auth)]).expect(200)["data"]
            .clone()
    }

    #[track_caller]
    pub fn answer(&self, request_id: &str, decision: &str) -> Resp {
        let auth = format!("Bearer {TOKEN}");
        post_h(
            &self.url(&format!("/v1/codex/requests/{request_id}")),
            &json!({"decision": decision}),
            &[("Authorization", &auth)],
        )
    }
}

/// The ids of the runs of `{task, runs}`, oldest first, with their attempt and status.
pub fn runs(t: &Value) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = t["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["attempt"].as_u64().unwrap_or(0),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

impl TaskConductor {
    /// `/v1/runtime` `daemon.scheduler`.
    #[track_caller]
    pub fn scheduler(&self) -> Value {
        self.runtime()["daemon"]["scheduler"].clone()
    }

    /// Waits until the scheduler made `n` more passes than now (each pass looks at the
    /// whole queue, so "still queued after n passes" means it decided n times not to run).
    #[track_caller]
    pub fn wait_passes(&self, n: u64) {
        let start = self.scheduler()["passes"].as_u64().unwrap_or(0);
        let passed = wait_for(Duration::from_secs(30), || {
            (self.scheduler()["passes"].as_u64().unwrap_or(0) >= start + n).then_some(())
        });
        if passed.is_none() {
            panic!(
                "the scheduler made fewer than {n} passes: {:#}\n{}",
                self.scheduler(),
                self.d.log()
            )
        }
    }

    /// Waits until the task's running turn asks for an approval; returns its request id.
    #[track_caller]
    pub fn wait_waiting(&self, id: &str, timeout: Duration) -> String {
        let t = self.wait_task(id, "waiting on an approval", timeout, |t| {
            t["task"]["waiting"]["request_id"].is_string()
        });
        t["task"]["waiting"]["request_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The sessions codexd holds (ids), asked of codexd itself.
#[track_caller]
pub fn codexd_session_ids(codexd: &Daemon) -> Vec<String> {
    get(&codexd.url("/v1/codexd/sessions")).expect(200)["data"]["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["sessionId"].as_str().map(str::to_string))
        .collect()
}

/// Worker mode on the real pinned `codex app-server`: the mock model's home, a codexd
/// running it (its dirs under `dir`), ready for a conductor made by the test.
pub struct RealRig {
    pub home: crate::support::codex::MockCodexHome,
    pub dir: TempDir,
    pub dirs: crate::support::codexd::Dirs,
    pub codexd: Daemon,
}

impl RealRig {
    #[track_caller]
    pub fn new(tag: &str) -> RealRig {
        use crate::support::codexd::{start_running, with_mock_codex, Dirs};
        let home = crate::support::codex::MockCodexHome::new(tag);
        let dir = TempDir::new(&format!("{tag}-dirs"));
        let dirs = Dirs::under(&dir.child("cx"));
        let codexd = start_running(with_mock_codex(&dirs, &home));
        RealRig {
            home,
            dir,
            dirs,
            codexd,
        }
    }
}
