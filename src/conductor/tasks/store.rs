//! Where tasks and runs live: one atomically written JSON file per task
//! (`<state>/tasks/<task_id>.json`) and per run (`<state>/runs/<run_id>.json`), the task logs
//! (`logs`), and an in-memory index built from the task files at start.
//!
//! The index holds only what scheduling, counting and ordering need (status, priority,
//! times, the run list), a few hundred bytes per task, so 10k stored tasks stay cheap in
//! memory; a full record is read from its file when a route or a run needs it. Every change
//! goes through [`TaskStore::update`], which rewrites the file and the entry together under
//! one lock, so the index never disagrees with the disk.
//!
//! Today's single-file `tasks.json` / `runs.json` are read once, written out as one file per
//! record, and renamed `*.migrated-<ms>` so they are not read again. A task file that does
//! not parse is moved aside (`*.corrupt-<ms>`) with a warning shown in `/v1/runtime`, and the
//! rest load. Finished tasks beyond the retention are pruned oldest first with their runs
//! and logs.
//!
//! A standby shares the leader's state dir but never writes tasks; it reloads the index
//! when the tasks directory changed (an atomic rename always changes the directory's mtime)
//! and when it becomes the leader.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde_json::Value;

use baa::common::api_error::ApiError;
use baa::common::ids::new_id;
use baa::common::store::{JsonStore, StoreError};
use baa::common::sync::lock;
use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339};

use super::lines;
use super::logs::TaskLogs;
use super::model::{Run, RunRef, Status, Task, UsageTotal, CODEX_KIND};
use super::usage;
use super::validate::NewTask;

pub const TASKS_DIR: &str = "tasks";
pub const RUNS_DIR: &str = "runs";
pub const LEGACY_TASKS: &str = "tasks.json";
pub const LEGACY_RUNS: &str = "runs.json";

/// What the index keeps of a task.
#[derive(Debug, Clone)]
struct Entry {
    /// `None`: a migrated record whose status is none of ours (listed, never counted).
    status: Option<Status>,
    created_ms: u64,
    seq: u64,
    finished_ms: u64,
    priority: i64,
    runnable: bool,
    next_attempt_ms: u64,
    idempotency_key: Option<Box<str>>,
    /// (run_id, started_ms), oldest first.
    runs: Vec<(Box<str>, u64)>,
    /// What its turns cost, and the schedule that created it (the summary's totals).
    usage: Option<UsageTotal>,
    schedule_id: Option<Box<str>>,
}

fn ms(s: Option<&str>) -> u64 {
    s.and_then(ms_from_rfc3339).unwrap_or(0)
}

impl Entry {
    fn of(t: &Task) -> Entry {
        Entry {
            status: t.status(),
            created_ms: ms(Some(&t.created_at)),
            seq: t.seq,
            finished_ms: ms(t.finished_at.as_deref()).max(ms(t.updated_at.as_deref())),
            priority: t.priority,
            runnable: t.kind.as_deref() == Some(CODEX_KIND),
            next_attempt_ms: ms(t.next_attempt_at.as_deref()),
            idempotency_key: t.idempotency_key.as_deref().map(Box::from),
            runs: t
                .runs
                .iter()
                .map(|r| (Box::from(r.run_id.as_str()), ms(r.started_at.as_deref())))
                .collect(),
            usage: t.usage_total,
            schedule_id: t.schedule_id.as_deref().map(Box::from),
        }
    }
}

#[derive(Default)]
struct Index {
    tasks: HashMap<Box<str>, Entry>,
    idem: HashMap<Box<str>, Box<str>>,
    /// The tasks dir's mtime when this index was built (a standby's reload check).
    dir_mtime: Option<SystemTime>,
    /// When the last full rebuild read the directory.
    loaded_at: Option<SystemTime>,
    /// The highest `seq` seen: the next task gets one more.
    max_seq: u64,
}

impl Index {
    fn insert(&mut self, id: &str, e: Entry) {
        self.max_seq = self.max_seq.max(e.seq);
        if let Some(k) = &e.idempotency_key {
            self.idem.insert(k.clone(), Box::from(id));
        }
        self.tasks.insert(Box::from(id), e);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let e = self.tasks.remove(id)?;
        if let Some(k) = &e.idempotency_key {
            self.idem.remove(k);
        }
        Some(e)
    }
}

/// Token usage summed over tasks (`usage_since`).
#[derive(Debug, Default, PartialEq)]
pub struct UsageTotals {
    /// Tasks with a usage record.
    pub tasks: usize,
    pub total: UsageTotal,
    pub by_schedule: std::collections::BTreeMap<Option<String>, UsageTotal>,
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub canceled: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.queued + self.running + self.succeeded + self.failed + self.canceled
    }
}

pub struct TaskStore {
    tasks: JsonStore,
    runs: JsonStore,
    state_dir: PathBuf,
    pub logs: TaskLogs,
    index: Mutex<Index>,
    retention: usize,
    /// Conditions found while loading (corrupt files moved aside, a migration).
    warnings: Mutex<Vec<String>>,
}

fn file(id: &str) -> String {
    format!("{id}.json")
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{what}: {e}"))
}

/// A task or run id from a URL is looked up in the index first; this only keeps odd ids
/// (a migrated record with a slash) from ever naming a path.
fn safe_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && !id.contains('/') && !id.contains('\0')
}

impl TaskStore {
    /// Opens the store under `state_dir`: migrates legacy files once, then builds the index.
    pub fn open(state_dir: &Path, retention: usize) -> Result<TaskStore, StoreError> {
        let open = |name: &str| JsonStore::open(state_dir.join(name));
        let store = TaskStore {
            tasks: open(TASKS_DIR)?,
            runs: open(RUNS_DIR)?,
            state_dir: state_dir.to_path_buf(),
            logs: TaskLogs::new(state_dir),
            index: Mutex::new(Index::default()),
            retention,
            warnings: Mutex::new(Vec::new()),
        };
        store.migrate();
        store.reload();
        store.prune();
        Ok(store)
    }

    pub fn warnings(&self) -> Vec<String> {
        lock(&self.warnings).clone()
    }

    fn warn(&self, w: String) {
        log::warn!("tasks: {w}");
        let mut ws = lock(&self.warnings);
        if ws.len() < 20 {
            ws.push(w);
        }
    }

    fn tasks_dir_mtime(&self) -> Option<SystemTime> {
        std::fs::metadata(self.tasks.dir())
            .and_then(|m| m.modified())
            .ok()
    }

    /// Rebuilds the index from the task files. Returns how many tasks it holds.
    pub fn reload(&self) -> usize {
        // Held for the whole rebuild: a create or update between listing the directory and
        // swapping the index in would otherwise vanish from it (a task queued just as the
        // scheduler became the leader answered 404 and never ran).
        let mut current = lock(&self.index);
        let mtime = self.tasks_dir_mtime();
        let mut index = Index {
            dir_mtime: mtime,
            loaded_at: Some(SystemTime::now()),
            ..Index::default()
        };
        let entries = match std::fs::read_dir(self.tasks.dir()) {
            Ok(e) => e,
            Err(e) => {
                self.warn(format!("cannot list {}: {e}", self.tasks.dir().display()));
                return current.tasks.len();
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            else {
                continue;
            };
            match self.tasks.read::<Task>(&name) {
                Ok(Some(t)) if t.task_id == id => index.insert(id, Entry::of(&t)),
                Ok(Some(t)) => self.warn(format!("{name} holds task {}; skipped", t.task_id)),
                Ok(None) => {}
                Err(e) => self.warn(format!("{e}")),
            }
        }
        let n = index.tasks.len();
        *current = index;
        n
    }

    /// A standby's view, and a new leader's: reloads when the tasks directory changed
    /// since the last load. An mtime that was less than `RACY` old when the index was
    /// built proves nothing (a write in the same clock tick leaves it unchanged, as git's
    /// "racily clean" index entries), so that case reloads too. Returns the tasks held.
    pub fn sync_if_changed(&self) -> usize {
        const RACY: Duration = Duration::from_secs(2);
        let now = self.tasks_dir_mtime();
        let stale = {
            let index = lock(&self.index);
            let racy = match (index.dir_mtime, index.loaded_at) {
                (Some(m), Some(at)) => at.duration_since(m).map_or(true, |d| d < RACY),
                _ => true,
            };
            now.is_none() || now != index.dir_mtime || racy
        };
        if stale {
            self.reload()
        } else {
            lock(&self.index).tasks.len()
        }
    }

    /// One-time move from `tasks.json` / `runs.json` to a file per record.
    fn migrate(&self) {
        let state = match JsonStore::open(&self.state_dir) {
            Ok(s) => s,
            Err(e) => return self.warn(format!("cannot open the state dir to migrate: {e}")),
        };
        let tasks: Vec<Task> = self.legacy(&state, LEGACY_TASKS, "tasks");
        let runs: Vec<Run> = self.legacy(&state, LEGACY_RUNS, "runs");
        if tasks.is_empty() && runs.is_empty() {
            return;
        }
        let mut by_task: HashMap<String, Vec<RunRef>> = HashMap::new();
        let mut moved_runs = 0;
        for r in runs.iter().filter(|r| safe_id(&r.run_id)) {
            by_task.entry(r.task_id.clone()).or_default().push(RunRef {
                run_id: r.run_id.clone(),
                attempt: r.attempt,
                status: r.status.clone(),
                started_at: r.started_at.clone(),
                thread_id: None,
                usage: None,
            });
            if self.runs.key(&file(&r.run_id)).ok().flatten().is_none() {
                match self.runs.write(&file(&r.run_id), r) {
                    Ok(()) => moved_runs += 1,
                    Err(e) => self.warn(format!("migrating run {}: {e}", r.run_id)),
                }
            }
        }
        let mut moved_tasks = 0;
        for mut t in tasks {
            if !safe_id(&t.task_id) {
                self.warn(format!(
                    "{LEGACY_TASKS}: task id {} cannot name a file; skipped",
                    t.task_id.escape_debug()
                ));
                continue;
            }
            if self.tasks.key(&file(&t.task_id)).ok().flatten().is_some() {
                continue;
            }
            let mut refs = by_task.remove(&t.task_id).unwrap_or_default();
            refs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
            t.runs = refs;
            match self.tasks.write(&file(&t.task_id), &t) {
                Ok(()) => moved_tasks += 1,
                Err(e) => self.warn(format!("migrating task {}: {e}", t.task_id)),
            }
        }
        let stamp = now_ms();
        for name in [LEGACY_TASKS, LEGACY_RUNS] {
            let from = state.path(name);
            if from.exists() {
                let to = state.path(&format!("{name}.migrated-{stamp}"));
                if let Err(e) = std::fs::rename(&from, &to) {
                    self.warn(format!("cannot rename {name} after migrating it: {e}"));
                }
            }
        }
        log::info!(
            "tasks: migrated {moved_tasks} task(s) and {moved_runs} run(s) to one file each"
        );
    }

    /// The records of a legacy list file; bad entries are skipped with a warning.
    fn legacy<T: DeserializeOwned>(&self, state: &JsonStore, name: &str, key: &str) -> Vec<T> {
        let doc: Option<Value> = match state.read(name) {
            Ok(d) => d,
            Err(e) => {
                self.warn(format!("{e}"));
                None
            }
        };
        let items = match doc {
            Some(Value::Object(mut m)) => match m.remove(key) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        items
            .into_iter()
            .filter_map(|v| match serde_json::from_value::<T>(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.warn(format!("{name}: skipping a malformed {key} entry: {e}"));
                    None
                }
            })
            .collect()
    }

    // ---- reads ------------------------------------------------------------------------

    fn read_task(&self, id: &str) -> Result<Task, ApiError> {
        if !safe_id(id) || !lock(&self.index).tasks.contains_key(id) {
            return Err(ApiError::not_found(format!("Unknown task \"{id}\".")));
        }
        match self.tasks.read::<Task>(&file(id)) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(ApiError::not_found(format!("Unknown task \"{id}\"."))),
            Err(e) => Err(internal("Cannot read the task", e)),
        }
    }

    /// The task's full record.
    pub fn task(&self, id: &str) -> Result<Task, ApiError> {
        self.read_task(id)
    }

    pub fn exists(&self, id: &str) -> bool {
        lock(&self.index).tasks.contains_key(id)
    }

    /// Tasks newest first, optionally of one status; `before`: only those listed after
    /// that task (the cursor of the next page), 404 when it is unknown.
    pub fn list(
        &self,
        status: Option<Status>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<Task>, ApiError> {
        let ids: Vec<String> = {
            let index = lock(&self.index);
            let key = |id: &str, e: &Entry| (e.created_ms, e.seq, id.to_string());
            let cursor = match before {
                None => None,
                Some(b) => match index.tasks.get_key_value(b) {
                    Some((id, e)) => Some(key(id, e)),
                    None => {
                        return Err(ApiError::not_found(format!(
                            "Unknown task \"{b}\" in before= (the cursor of a listing)."
                        )))
                    }
                },
            };
            let mut picked: Vec<(&Box<str>, &Entry)> = index
                .tasks
                .iter()
                .filter(|(_, e)| status.is_none() || e.status == status)
                .filter(|(id, e)| cursor.as_ref().is_none_or(|c| key(id, e) < *c))
                .collect();
            picked.sort_by(|a, b| {
                (b.1.created_ms, b.1.seq, b.0).cmp(&(a.1.created_ms, a.1.seq, a.0))
            });
            picked
                .into_iter()
                .take(limit)
                .map(|(id, _)| id.to_string())
                .collect()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.read_task(&id) {
                Ok(t) => out.push(t),
                // Pruned or moved aside since the index was read.
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub fn run(&self, run_id: &str) -> Result<Run, ApiError> {
        if !safe_id(run_id) {
            return Err(ApiError::not_found(format!("Unknown run \"{run_id}\".")));
        }
        match self.runs.read::<Run>(&file(run_id)) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(ApiError::not_found(format!("Unknown run \"{run_id}\"."))),
            Err(e) => Err(internal("Cannot read the run", e)),
        }
    }

    /// Runs newest first, of one task or of all.
    pub fn list_runs(&self, task_id: Option<&str>, limit: usize) -> Result<Vec<Run>, ApiError> {
        let ids: Vec<String> = {
            let index = lock(&self.index);
            let mut all: Vec<(&str, u64)> = index
                .tasks
                .iter()
                .filter(|(id, _)| task_id.is_none_or(|t| &***id == t))
                .flat_map(|(_, e)| e.runs.iter().map(|(r, at)| (&**r, *at)))
                .collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(a.0)));
            all.into_iter()
                .take(limit)
                .map(|(r, _)| r.to_string())
                .collect()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.run(&id) {
                Ok(r) => out.push(r),
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for e in lock(&self.index).tasks.values() {
            match e.status {
                Some(Status::Queued) => c.queued += 1,
                Some(Status::Running) => c.running += 1,
                Some(Status::Succeeded) => c.succeeded += 1,
                Some(Status::Failed) => c.failed += 1,
                Some(Status::Canceled) => c.canceled += 1,
                None => {}
            }
        }
        c
    }

    /// Tasks `running` that worker mode drives (a migrated record of another kind marked
    /// running is shown as such but never ran here, so it never holds up `drained`).
    pub fn runnable_running(&self) -> usize {
        lock(&self.index)
            .tasks
            .values()
            .filter(|e| e.status == Some(Status::Running) && e.runnable)
            .count()
    }

    /// Ids of the worker-mode tasks in `status` (migrated records of another kind are
    /// left out by the index, without reading their files).
    pub fn runnable_ids_with(&self, status: Status) -> Vec<String> {
        lock(&self.index)
            .tasks
            .iter()
            .filter(|(_, e)| e.status == Some(status) && e.runnable)
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The usage of the tasks last active (finished or updated) at or after `since_ms`,
    /// overall and per schedule (`None`: created by hand), from the index alone.
    pub fn usage_since(&self, since_ms: u64) -> UsageTotals {
        let index = lock(&self.index);
        let mut out = UsageTotals::default();
        for e in index.tasks.values().filter(|e| e.finished_ms >= since_ms) {
            let Some(u) = &e.usage else { continue };
            out.tasks += 1;
            out.total = usage::add(&out.total, u);
            let s = out
                .by_schedule
                .entry(e.schedule_id.as_deref().map(str::to_string))
                .or_default();
            *s = usage::add(s, u);
        }
        out
    }

    /// The `n` most recently finished tasks, newest first.
    pub fn recent_finished(&self, n: usize) -> Vec<Task> {
        let ids: Vec<String> = {
            let index = lock(&self.index);
            let mut done: Vec<(&Box<str>, &Entry)> = index
                .tasks
                .iter()
                .filter(|(_, e)| e.status.is_some_and(Status::is_finished))
                .collect();
            done.sort_by(|a, b| b.1.finished_ms.cmp(&a.1.finished_ms).then(b.0.cmp(a.0)));
            done.into_iter()
                .take(n)
                .map(|(id, _)| id.to_string())
                .collect()
        };
        ids.iter()
            .filter_map(|id| self.read_task(id).ok())
            .collect()
    }

    /// The queued task to run next at `now`: highest priority, then oldest; runnable, not
    /// waiting out a backoff, not in `skip`.
    pub fn pick_next(&self, now: u64, skip: &HashSet<String>) -> Option<String> {
        let index = lock(&self.index);
        index
            .tasks
            .iter()
            .filter(|(id, e)| {
                e.status == Some(Status::Queued)
                    && e.runnable
                    && e.next_attempt_ms <= now
                    && !skip.contains(&***id)
            })
            .min_by(|a, b| {
                b.1.priority
                    .cmp(&a.1.priority)
                    .then(a.1.created_ms.cmp(&b.1.created_ms))
                    .then(a.1.seq.cmp(&b.1.seq))
                    .then(a.0.cmp(b.0))
            })
            .map(|(id, _)| id.to_string())
    }

    /// When the earliest backoff of a queued task ends (after `now`), if any.
    pub fn next_due(&self, now: u64) -> Option<u64> {
        lock(&self.index)
            .tasks
            .values()
            .filter(|e| e.status == Some(Status::Queued) && e.runnable && e.next_attempt_ms > now)
            .map(|e| e.next_attempt_ms)
            .min()
    }

    // ---- writes -----------------------------------------------------------------------

    #[cfg(test)]
    pub fn create(&self, new: NewTask) -> Result<(Task, bool), ApiError> {
        self.create_for(new, None)
    }

    /// Queues a new task; with an idempotency key already used, returns that task
    /// (`false`: nothing was created). `schedule_id`: the schedule whose fire made it.
    pub fn create_for(
        &self,
        new: NewTask,
        schedule_id: Option<String>,
    ) -> Result<(Task, bool), ApiError> {
        let mut index = lock(&self.index);
        if let Some(key) = new.idempotency_key.as_deref() {
            if let Some(id) = index.idem.get(key).map(|id| id.to_string()) {
                drop(index);
                return Ok((self.read_task(&id)?, false));
            }
        }
        let now = now_rfc3339();
        let spec = new.spec;
        let task = Task {
            task_id: new_id("task"),
            title: new.title,
            status: Status::Queued.as_str().into(),
            kind: Some(CODEX_KIND.into()),
            input: serde_json::to_value(&spec)
                .map_err(|e| internal("Cannot encode the task", e))?,
            created_at: now.clone(),
            updated_at: Some(now),
            started_at: None,
            finished_at: None,
            current_run_id: None,
            error: None,
            priority: spec.priority,
            max_attempts: spec.max_attempts,
            idempotency_key: new.idempotency_key,
            steps_total: spec.steps.len(),
            steps_done: 0,
            session_id: None,
            thread_id: None,
            next_attempt_at: None,
            waiting: None,
            final_message: None,
            runs: Vec::new(),
            cancel_requested: false,
            retry_from: 0,
            seq: index.max_seq + 1,
            workspace: Some(new.workspace),
            result: None,
            schedule_id,
            usage_total: None,
            held_until: None,
        };
        self.tasks
            .write(&file(&task.task_id), &task)
            .map_err(|e| internal("Cannot persist the task", e))?;
        index.insert(&task.task_id, Entry::of(&task));
        index.dir_mtime = self.tasks_dir_mtime();
        lines::created(&task);
        Ok((task, true))
    }

    /// Reads the task, applies `f`, and writes file and index entry together. `f` returns
    /// false to leave everything as it was.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Task) -> bool,
    ) -> Result<Option<Task>, StoreError> {
        let mut index = lock(&self.index);
        if !index.tasks.contains_key(id) {
            return Ok(None);
        }
        let Some(mut task) = self.tasks.read::<Task>(&file(id))? else {
            return Ok(None);
        };
        let before = (task.status.clone(), task.steps_done);
        if !f(&mut task) {
            return Ok(Some(task));
        }
        task.updated_at = Some(now_rfc3339());
        self.tasks.write(&file(id), &task)?;
        index.insert(id, Entry::of(&task));
        index.dir_mtime = self.tasks_dir_mtime();
        lines::changed(&before.0, before.1, &task);
        Ok(Some(task))
    }

    pub fn save_run(&self, run: &Run) -> Result<(), StoreError> {
        self.runs.write(&file(&run.run_id), run)
    }

    /// Removes the oldest finished tasks beyond the retention, with their runs and logs.
    pub fn prune(&self) -> usize {
        let victims: Vec<(String, Entry)> = {
            let mut index = lock(&self.index);
            let mut done: Vec<(Box<str>, u64)> = index
                .tasks
                .iter()
                .filter(|(_, e)| e.status.is_some_and(Status::is_finished))
                .map(|(id, e)| (id.clone(), e.finished_ms.max(e.created_ms)))
                .collect();
            if done.len() <= self.retention {
                return 0;
            }
            done.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
            let n = done.len() - self.retention;
            let out = done
                .into_iter()
                .take(n)
                .filter_map(|(id, _)| index.remove(&id).map(|e| (id.to_string(), e)))
                .collect();
            index.dir_mtime = None;
            out
        };
        for (id, e) in &victims {
            for (run, _) in &e.runs {
                let _ = self.runs.remove(&file(run));
            }
            self.logs.forget(id, true);
            let _ = self.tasks.remove(&file(id));
        }
        if !victims.is_empty() {
            log::info!(
                "tasks: pruned {} finished task(s) beyond the retention of {}",
                victims.len(),
                self.retention
            );
        }
        victims.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::model::TaskSpec;
    use crate::tasks::usage::add;
    use serde_json::json;

    fn dir() -> PathBuf {
        std::env::temp_dir().join(new_id("tstore"))
    }

    fn new(title: &str, priority: i64, key: Option<&str>) -> NewTask {
        NewTask {
            title: title.into(),
            idempotency_key: key.map(str::to_string),
            spec: TaskSpec {
                prompt: Some("p".into()),
                steps: vec![crate::tasks::model::StepSpec {
                    prompt: "p".into(),
                    model: None,
                    effort: None,
                }],
                cwd: None,
                model: None,
                effort: None,
                sandbox: None,
                approval_policy: None,
                timeout_s: 60,
                max_attempts: 2,
                priority,
                workspace: None,
                base: None,
            },
            workspace: Default::default(),
        }
    }

    #[test]
    fn sync_rereads_only_a_changed_or_racily_recent_tasks_dir() {
        let d = dir();
        let leader = TaskStore::open(&d, 1000).unwrap();
        let standby = TaskStore::open(&d, 1000).unwrap();
        let set_dir_mtime = |t: SystemTime| {
            std::fs::File::open(d.join(TASKS_DIR))
                .and_then(|f| f.set_modified(t))
                .unwrap();
        };
        let old = SystemTime::now() - Duration::from_secs(60);
        let a = leader.create(new("a", 0, None)).unwrap().0.task_id;
        // Written a moment ago: the mtime is racy, so the standby reads the dir.
        assert_eq!(standby.sync_if_changed(), 1);
        assert!(standby.exists(&a));
        set_dir_mtime(old);
        standby.reload();
        // A file added behind an unchanged, old mtime is not looked for: no re-read.
        let b = leader.create(new("b", 0, None)).unwrap().0.task_id;
        set_dir_mtime(old);
        assert_eq!(standby.sync_if_changed(), 1);
        assert!(!standby.exists(&b));
        // Once the mtime moves, it is.
        set_dir_mtime(SystemTime::now());
        assert_eq!(standby.sync_if_changed(), 2);
        assert!(standby.exists(&b));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_task_created_during_a_reload_stays_in_the_index() {
        let d = dir();
        let s = std::sync::Arc::new(TaskStore::open(&d, 1000).unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, stop2) = (s.clone(), stop.clone());
        let reloader = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                s2.reload();
            }
        });
        let ids: Vec<String> = (0..100)
            .map(|i| s.create(new(&format!("t{i}"), 0, None)).unwrap().0.task_id)
            .collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        reloader.join().unwrap();
        let missing: Vec<&String> = ids.iter().filter(|id| !s.exists(id)).collect();
        assert!(missing.is_empty(), "lost from the index: {missing:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn create_pick_update_and_reload() {
        let d = dir();
        let s = TaskStore::open(&d, 100).unwrap();
        let (a, created) = s.create(new("a", 0, Some("k"))).unwrap();
        assert!(created);
        let (again, created) = s.create(new("other", 5, Some("k"))).unwrap();
        assert_eq!(
            (again.task_id.as_str(), created),
            (a.task_id.as_str(), false)
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (b, _) = s.create(new("b", 0, None)).unwrap();
        let (c, _) = s.create(new("c", 9, None)).unwrap();
        let none = HashSet::new();
        assert_eq!(
            s.pick_next(now_ms(), &none),
            Some(c.task_id.clone()),
            "priority first"
        );
        let skip: HashSet<String> = [c.task_id.clone()].into();
        assert_eq!(
            s.pick_next(now_ms(), &skip),
            Some(a.task_id.clone()),
            "then oldest"
        );
        s.update(&a.task_id, |t| {
            t.next_attempt_at = Some(baa::common::time::rfc3339_from_ms(now_ms() + 60_000));
            true
        })
        .unwrap();
        assert_eq!(
            s.pick_next(now_ms(), &skip),
            Some(b.task_id.clone()),
            "backoff"
        );
        assert!(s.next_due(now_ms()).is_some());
        let listed: Vec<String> = s
            .list(None, 10, None)
            .unwrap()
            .into_iter()
            .map(|t| t.title)
            .collect();
        assert_eq!(listed, ["c", "b", "a"]);
        // Pages: the cursor is the last task of the page before.
        let page = |before: Option<&str>| -> Vec<Task> { s.list(None, 2, before).unwrap() };
        let first = page(None);
        let second = page(Some(&first[1].task_id));
        let titles = |v: &[Task]| v.iter().map(|t| t.title.clone()).collect::<Vec<_>>();
        assert_eq!(
            (titles(&first), titles(&second)),
            (vec!["c".to_string(), "b".into()], vec!["a".to_string()])
        );
        assert_eq!(s.list(None, 2, Some("task_nope")).unwrap_err().status, 404);
        // A second store on the same dir (a restart) sees the same.
        let s2 = TaskStore::open(&d, 100).unwrap();
        assert_eq!(s2.counts().queued, 3);
        let (replayed, created) = s2.create(new("x", 0, Some("k"))).unwrap();
        assert_eq!((replayed.title.as_str(), created), ("a", false));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn usage_since_sums_recent_tasks_overall_and_per_schedule() {
        let d = dir();
        let s = TaskStore::open(&d, 100).unwrap();
        let u = |n: u64| UsageTotal {
            input_tokens: n,
            cached_input_tokens: 1,
            output_tokens: 2,
            reasoning_tokens: 0,
        };
        let ids: Vec<String> = (0..3)
            .map(|i| s.create(new(&format!("t{i}"), 0, None)).unwrap().0.task_id)
            .collect();
        for (id, (n, schedule)) in
            ids.iter()
                .zip([(10, None), (20, Some("sch-1")), (30, Some("sch-1"))])
        {
            s.update(id, |t| {
                t.usage_total = Some(u(n));
                t.schedule_id = schedule.map(str::to_string);
                true
            })
            .unwrap();
        }
        s.create(new("no usage", 0, None)).unwrap();
        let all = s.usage_since(0);
        assert_eq!(all.tasks, 3);
        assert_eq!(all.total, add(&u(10), &add(&u(20), &u(30))));
        assert_eq!(all.by_schedule[&None], u(10));
        assert_eq!(all.by_schedule[&Some("sch-1".into())], add(&u(20), &u(30)));
        assert_eq!(s.usage_since(now_ms() + 60_000), UsageTotals::default());
    }

    #[test]
    fn tasks_created_in_one_millisecond_are_picked_in_creation_order() {
        let d = dir();
        let s = TaskStore::open(&d, 100).unwrap();
        // Fast enough that many share a millisecond; random ids must not reorder them.
        let ids: Vec<String> = (0..50)
            .map(|i| s.create(new(&format!("t{i}"), 0, None)).unwrap().0.task_id)
            .collect();
        let mut picked = Vec::new();
        let mut skip = HashSet::new();
        while let Some(id) = s.pick_next(now_ms(), &skip) {
            skip.insert(id.clone());
            picked.push(id);
        }
        assert_eq!(picked, ids);
        // The order survives a restart (seq is in the task files).
        let s2 = TaskStore::open(&d, 100).unwrap();
        let first = s2.pick_next(now_ms(), &HashSet::new());
        assert_eq!(first.as_deref(), Some(ids[0].as_str()));
        let (t, _) = s2.create(new("after", 0, None)).unwrap();
        assert_eq!(t.seq, 51);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn legacy_files_are_migrated_once_and_corrupt_task_files_moved_aside() {
        let d = dir();
        let state = JsonStore::open(&d).unwrap();
        state
            .write(LEGACY_TASKS, &json!({"tasks": [
                {"task_id": "t1", "title": "a", "status": "succeeded", "created_at": "2026-01-01T00:00:00.000Z"},
                {"task_id": "t2", "title": "b", "status": "queued", "kind": "shell", "created_at": "2026-01-02T00:00:00.000Z"},
                {"bogus": true}
            ]}))
            .unwrap();
        state
            .write(LEGACY_RUNS, &json!({"runs": [
                {"run_id": "r1", "task_id": "t1", "status": "succeeded", "started_at": "2026-01-01T00:00:01.000Z"}
            ]}))
            .unwrap();
        let s = TaskStore::open(&d, 100).unwrap();
        assert_eq!(
            s.counts(),
            Counts {
                queued: 1,
                succeeded: 1,
                ..Counts::default()
            }
        );
        assert_eq!(s.list_runs(Some("t1"), 10).unwrap()[0].run_id, "r1");
        assert_eq!(s.task("t1").unwrap().runs.len(), 1);
        assert!(!state.path(LEGACY_TASKS).exists());
        assert_eq!(
            s.pick_next(now_ms(), &HashSet::new()),
            None,
            "legacy kinds never run"
        );
        assert!(
            s.warnings().iter().any(|w| w.contains("malformed")),
            "{:?}",
            s.warnings()
        );
        // Without its last-good copy (with one, the store puts the copy back).
        std::fs::remove_file(d.join(TASKS_DIR).join(".t2.json.last-good")).unwrap();
        std::fs::write(d.join(TASKS_DIR).join("t2.json"), b"{\"task_id\": ").unwrap();
        let s = TaskStore::open(&d, 100).unwrap();
        assert_eq!(s.counts().queued, 0);
        assert!(
            s.warnings().iter().any(|w| w.contains("corrupt")),
            "{:?}",
            s.warnings()
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn finished_tasks_beyond_the_retention_are_pruned_oldest_first() {
        let d = dir();
        let s = TaskStore::open(&d, 2).unwrap();
        let mut ids = Vec::new();
        for i in 0..4 {
            let (t, _) = s.create(new(&format!("t{i}"), 0, None)).unwrap();
            s.update(&t.task_id, |t| {
                t.status = "succeeded".into();
                t.finished_at = Some(baa::common::time::rfc3339_from_ms(1_000_000 + i));
                true
            })
            .unwrap();
            s.logs.append(&t.task_id, None, "info", "x", None);
            ids.push(t.task_id);
        }
        assert_eq!(s.prune(), 2);
        assert!(!s.exists(&ids[0]) && !s.exists(&ids[1]) && s.exists(&ids[3]));
        assert!(!s.logs.path(&ids[0]).exists());
        let _ = std::fs::remove_dir_all(d);
    }
}
