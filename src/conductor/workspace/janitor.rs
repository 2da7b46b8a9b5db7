//! Housekeeping of task worktrees: one named thread, owned by the daemon, that acts only
//! while this conductor holds the lease (as the scheduler does).
//!
//! - On becoming the leader: `git worktree prune` in every repo a task names, so
//!   registrations of worktree directories deleted by hand (or by a crash) go.
//! - On each pass (one right away, then every [`PASS_INTERVAL`]): the worktree of a task
//!   that finished more than `BAA_CONDUCTOR_WORKTREE_RETENTION` ago is removed and the task
//!   records `workspace.removed_at`. Its branch stays: it goes with a merge or a discard.
//!   A queued or running task, or one whose run thread is still winding down, is never
//!   touched. A git failure (the repo locked by another git process, a full disk) is logged
//!   and tried again on the next pass.
//! - A worktree directory no task names any more (the task was pruned by
//!   `BAA_CONDUCTOR_TASK_RETENTION` before its worktree's retention ran out, or its record
//!   was deleted) is removed once the directory is older than the retention, so pruning
//!   never leaks a worktree.
//! - Then the worktrees dir is measured (`usage`) for `/v1/runtime`, so a request never
//!   walks the disk.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use baa::common::logging;
use baa::common::signals::StopFlag;
use baa::common::store::StoreError;
use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339};

use super::git::{Git, GitError};
use super::remove;
use super::usage;
use crate::app::App;
use crate::tasks::model::{Status, Task};
use crate::tasks::store::TaskStore;

/// How often a pass runs. Retention is counted in hours or days; a pass reads every
/// finished task's record and walks the worktrees, so more often would be waste.
pub const PASS_INTERVAL: Duration = Duration::from_secs(600);
/// A worktree no task names is left alone at least this long, whatever the retention:
/// a task's record is written before its worktree is made, but a new leader's index may
/// lag the files for a moment.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(3600);
/// How often the thread looks at the lease and the stop flag between passes.
const TICK: Duration = Duration::from_secs(1);

/// What the janitor decides for one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Finished longer ago than the retention: its worktree goes now.
    Remove,
    /// Not yet (or still queued or running).
    Keep,
    /// Nothing to remove: in place, never given a worktree, or already removed.
    Nothing,
}

/// Whether `task`'s worktree goes at `now` (ms) with a retention of `retention_s`.
pub fn due(task: &Task, now: u64, retention_s: u64) -> Due {
    let Some(ws) = task.workspace.as_ref().filter(|w| w.is_worktree()) else {
        return Due::Nothing;
    };
    if ws.path.is_none() || ws.removed_at.is_some() {
        return Due::Nothing;
    }
    if !task.status().is_some_and(Status::is_finished) {
        return Due::Keep;
    }
    // A record without `finished_at` (it never had one before this issue) counts from its
    // last change; one without either is never old enough to guess.
    let Some(finished) = [task.finished_at.as_deref(), task.updated_at.as_deref()]
        .into_iter()
        .flatten()
        .find_map(ms_from_rfc3339)
    else {
        return Due::Keep;
    };
    if now >= finished.saturating_add(retention_s.saturating_mul(1000)) {
        Due::Remove
    } else {
        Due::Keep
    }
}

/// What a pass works with, borrowed from the app (or from a test).
pub struct Ctx<'a> {
    pub git: &'a Git,
    pub tasks: &'a TaskStore,
    pub worktrees_dir: &'a Path,
    pub retention_s: u64,
    /// A run thread is still in flight for the task (its worktree may be in use).
    pub in_flight: &'a dyn Fn(&str) -> bool,
    pub stopping: &'a dyn Fn() -> bool,
    /// A task changed (the Firefox bridge hears of it).
    pub changed: &'a dyn Fn(&Task),
}

/// The repos worker-mode tasks name (`workspace.repo` of worktree tasks), each once.
pub fn repos(tasks: &TaskStore) -> BTreeSet<PathBuf> {
    Status::ALL
        .into_iter()
        .flat_map(|s| tasks.runnable_ids_with(s))
        .filter_map(|id| tasks.task(&id).ok())
        .filter_map(|t| t.workspace.filter(|w| w.is_worktree())?.repo)
        .map(PathBuf::from)
        .collect()
}

/// `git worktree prune` in each repo; a repo that is gone is skipped with one log line.
/// Returns how many failed (they are tried again on the next pass).
pub fn prune(ctx: &Ctx, repos: &BTreeSet<PathBuf>) -> usize {
    let mut failed = 0;
    for repo in repos {
        if (ctx.stopping)() {
            break;
        }
        if !repo.is_dir() {
            log::info!(
                "janitor: {} no longer exists; its worktrees are not pruned",
                repo.display()
            );
            continue;
        }
        if let Err(e) = ctx.git.run(repo, &["worktree", "prune"]) {
            log::warn!("janitor: git worktree prune in {}: {e}", repo.display());
            failed += 1;
        }
    }
    failed
}

/// Why a worktree could not be removed (each is tried again on the next pass).
#[derive(Debug)]
pub enum RemoveError {
    /// git failed (the repo busy, the disk full, a timeout, …).
    Git(GitError),
    /// A directory that is no git worktree could not be deleted.
    Delete(PathBuf, std::io::Error),
    /// The worktree is gone but the task could not record it.
    Record(StoreError),
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveError::Git(e) => e.fmt(f),
            RemoveError::Delete(p, e) => write!(f, "cannot delete {}: {e}", p.display()),
            RemoveError::Record(e) => write!(f, "cannot record workspace.removed_at: {e}"),
        }
    }
}

/// What one retention sweep did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sweep {
    pub removed: u64,
    /// Of `removed`: worktrees no task named.
    pub orphans: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// Removes the worktrees of finished tasks past the retention at `now` (ms).
pub fn sweep(ctx: &Ctx, now: u64) -> Sweep {
    let mut out = Sweep::default();
    let finished = [Status::Succeeded, Status::Failed, Status::Canceled];
    for id in finished
        .into_iter()
        .flat_map(|s| ctx.tasks.runnable_ids_with(s))
    {
        if (ctx.stopping)() {
            break;
        }
        // Pruned since the ids were listed: nothing to do.
        let Ok(task) = ctx.tasks.task(&id) else {
            continue;
        };
        if due(&task, now, ctx.retention_s) != Due::Remove || (ctx.in_flight)(&id) {
            continue;
        }
        match remove_worktree(ctx, &task) {
            Ok(true) => out.removed += 1,
            Ok(false) => {}
            Err(e) => {
                log::warn!(
                    "janitor: cannot remove the worktree of {id}: {e}; it is tried again on the next pass"
                );
                out.failed += 1;
                out.last_error = Some(format!("{id}: {e}"));
            }
        }
    }
    out
}

/// Removes the worktree directories under `<worktrees>/<repo>-<hash>/` that no task names
/// and that nothing changed for longer than the retention (and at least an hour). Their repo is read from the
/// worktree's `.git` file, so git forgets them too.
pub fn sweep_orphans(ctx: &Ctx, now: u64, out: &mut Sweep) {
    let retention_ms = ctx
        .retention_s
        .saturating_mul(1000)
        .max(ORPHAN_MIN_AGE.as_millis() as u64);
    for repo_dir in subdirs(ctx.worktrees_dir) {
        for wt in subdirs(&repo_dir) {
            if (ctx.stopping)() {
                return;
            }
            let Some(id) = wt.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if ctx.tasks.exists(id) {
                continue;
            }
            let changed = std::fs::symlink_metadata(&wt)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(now, |d| d.as_millis() as u64);
            if now < changed.saturating_add(retention_ms) {
                continue;
            }
            let done = match git_common_dir(&wt) {
                Some(repo) => remove::worktree(ctx.git, &repo, &wt, ctx.worktrees_dir)
                    .map_err(RemoveError::Git),
                // Not a git worktree (a half-made one, or a stray directory): only ours
                // to delete because it sits where task worktrees go.
                None => {
                    std::fs::remove_dir_all(&wt).map_err(|e| RemoveError::Delete(wt.clone(), e))
                }
            };
            match done {
                Ok(()) => {
                    logging::event(
                        "workspace.removed",
                        &[
                            ("task_id", &id),
                            ("path", &wt.display()),
                            ("why", &"orphan"),
                        ],
                    );
                    out.removed += 1;
                    out.orphans += 1;
                }
                Err(e) => {
                    log::warn!(
                        "janitor: cannot remove {}, which no task names: {e}; it is tried again on the next pass",
                        wt.display()
                    );
                    out.failed += 1;
                    out.last_error = Some(format!("{id}: {e}"));
                }
            }
        }
    }
}

/// The directories directly in `dir` (symlinks are not followed).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// The repository's git dir a worktree belongs to, from its `.git` file
/// (`gitdir: <repo>/.git/worktrees/<name>`); git runs fine there.
fn git_common_dir(worktree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let gitdir = PathBuf::from(text.trim().strip_prefix("gitdir:")?.trim());
    let common = gitdir.parent()?.parent()?;
    common.is_dir().then(|| common.to_path_buf())
}

/// Removes `task`'s worktree and records `removed_at`; `false` when the task changed
/// meanwhile (a retry queued it again: its next run makes the worktree again).
fn remove_worktree(ctx: &Ctx, task: &Task) -> Result<bool, RemoveError> {
    let Some(ws) = &task.workspace else {
        return Ok(false);
    };
    let (Some(repo), Some(path)) = (ws.repo.as_deref(), ws.path.as_deref()) else {
        return Ok(false);
    };
    let path = Path::new(path);
    // The record's path is the one the conductor made (`layout::path`), named after the
    // task; anything else is not ours to remove.
    if path.file_name().and_then(|n| n.to_str()) != Some(task.task_id.as_str()) {
        log::warn!(
            "janitor: task {} names the worktree {}, which is not a task worktree; left alone",
            task.task_id,
            path.display()
        );
        return Ok(false);
    }
    remove::worktree(ctx.git, Path::new(repo), path, ctx.worktrees_dir)
        .map_err(RemoveError::Git)?;
    let at = now_rfc3339();
    let updated = ctx.tasks.update(&task.task_id, |t| {
        if t.status != task.status || t.finished_at != task.finished_at {
            return false;
        }
        match t.workspace.as_mut() {
            Some(w) if w.removed_at.is_none() => {
                w.removed_at = Some(at.clone());
                true
            }
            _ => false,
        }
    });
    match updated {
        Ok(Some(t)) if t.workspace.as_ref().and_then(|w| w.removed_at.as_ref()) == Some(&at) => {
            logging::event(
                "workspace.removed",
                &[
                    ("task_id", &task.task_id),
                    ("path", &path.display()),
                    ("why", &"retention"),
                ],
            );
            (ctx.changed)(&t);
            Ok(true)
        }
        Ok(_) => Ok(false),
        // The worktree is gone; the next pass finds it gone and records it then.
        Err(e) => Err(RemoveError::Record(e)),
    }
}

/// Starts the janitor thread; it ends when `stop` is set (within [`TICK`], or when the git
/// call or walk under way notices the stop).
pub fn spawn(app: Arc<App>, stop: StopFlag) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("janitor".into())
        .spawn(move || Loop::new(app, stop).run())
}

struct Loop {
    app: Arc<App>,
    stop: StopFlag,
    was_leader: bool,
    prune_due: bool,
}

impl Loop {
    fn new(app: Arc<App>, stop: StopFlag) -> Loop {
        Loop {
            app,
            stop,
            was_leader: false,
            prune_due: false,
        }
    }

    fn run(mut self) {
        let mut next = Instant::now();
        loop {
            let lease = self.app.lease.status();
            let leader = lease.healthy_leader(self.app.lease.threshold);
            if leader && !self.was_leader {
                self.prune_due = true;
                next = Instant::now();
            }
            self.was_leader = leader;
            if leader && Instant::now() >= next {
                self.pass();
                next = Instant::now() + PASS_INTERVAL;
            }
            if self.stop.sleep(TICK) {
                break;
            }
        }
    }

    fn pass(&mut self) {
        let started = Instant::now();
        let app = &self.app;
        let stop = &self.stop;
        let ctx = Ctx {
            git: &app.git,
            tasks: &app.tasks,
            worktrees_dir: &app.cfg.worktrees_dir,
            retention_s: app.cfg.workspaces.retention_s,
            in_flight: &|id| app.sched.control(id).is_some(),
            stopping: &|| stop.is_set(),
            changed: &|t| app.task_changed(t),
        };
        // The files are the truth: a conductor that just took the lease over may hold an
        // index older than them (cheap when nothing changed).
        app.tasks.sync_if_changed();
        if self.prune_due {
            self.prune_due = prune(&ctx, &repos(&app.tasks)) > 0;
        }
        let now = now_ms();
        let mut swept = sweep(&ctx, now);
        sweep_orphans(&ctx, now, &mut swept);
        let usage = usage::measure(&app.cfg.worktrees_dir, usage::MAX_ENTRIES, &|| {
            stop.is_set()
        });
        let took = started.elapsed();
        if swept.removed > 0 {
            log::info!(
                "janitor: removed {} worktree(s) of tasks finished more than {} s ago ({} no task named any more); their branches stay",
                swept.removed,
                app.cfg.workspaces.retention_s,
                swept.orphans
            );
        }
        if let Some(u) = &usage {
            log::debug!(
                "janitor: pass took {} ms; {} worktree(s), {} bytes{} (walk of {} entries: {} ms)",
                took.as_millis(),
                u.count,
                u.bytes,
                if u.approximate { " at least" } else { "" },
                u.entries,
                u.took_ms
            );
        }
        app.janitor.record(
            swept.removed,
            swept.failed,
            swept.last_error.clone(),
            usage,
            took,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::TestRepo;
    use baa::common::sync::lock;
    use baa::common::time::rfc3339_from_ms;
    use serde_json::{json, Value};
    use std::sync::Mutex;

    const HOUR_MS: u64 = 3_600_000;

    fn task(id: &str, status: &str, finished_ms: Option<u64>, ws: Value) -> Task {
        serde_json::from_value(json!({
            "task_id": id,
            "status": status,
            "kind": "codex",
            "input": {"steps": [{"prompt": "p"}], "timeout_s": 60, "max_attempts": 1, "priority": 0},
            "created_at": rfc3339_from_ms(1_000),
            "finished_at": finished_ms.map(rfc3339_from_ms),
            "workspace": ws,
        }))
        .unwrap()
    }

    fn worktree_ws(path: &str) -> Value {
        json!({"mode": "worktree", "repo": "/r", "path": path, "branch": "baa/x"})
    }

    #[test]
    fn only_finished_worktrees_older_than_the_retention_go() {
        let now = 100 * HOUR_MS;
        let ret = 24 * 3600;
        let old = Some(now - 25 * HOUR_MS);
        let young = Some(now - 23 * HOUR_MS);
        let ws = worktree_ws("/w/app-1/t");
        for status in ["succeeded", "failed", "canceled"] {
            assert_eq!(
                due(&task("t", status, old, ws.clone()), now, ret),
                Due::Remove
            );
            assert_eq!(
                due(&task("t", status, young, ws.clone()), now, ret),
                Due::Keep
            );
        }
        // Exactly at the retention: goes.
        assert_eq!(
            due(
                &task("t", "failed", Some(now - 24 * HOUR_MS), ws.clone()),
                now,
                ret
            ),
            Due::Remove
        );
        // Never a queued or running task's, however old.
        for status in ["queued", "running", "something-else"] {
            assert_eq!(
                due(&task("t", status, old, ws.clone()), now, ret),
                Due::Keep
            );
        }
        // Retention 0: right after finishing.
        assert_eq!(
            due(&task("t", "succeeded", Some(now), ws.clone()), now, 0),
            Due::Remove
        );
        // In place, no workspace (older records), never made, already removed.
        let in_place = json!({"mode": "in_place"});
        assert_eq!(
            due(&task("t", "succeeded", old, in_place), now, ret),
            Due::Nothing
        );
        assert_eq!(
            due(&task("t", "succeeded", old, Value::Null), now, ret),
            Due::Nothing
        );
        let unmade = json!({"mode": "worktree", "repo": "/r"});
        assert_eq!(
            due(&task("t", "canceled", old, unmade), now, ret),
            Due::Nothing
        );
        let mut removed = ws.clone();
        removed["removed_at"] = json!(rfc3339_from_ms(now - HOUR_MS));
        assert_eq!(
            due(&task("t", "succeeded", old, removed), now, ret),
            Due::Nothing
        );
        // No finished_at: counted from the last change; neither: kept.
        let mut t = task("t", "failed", None, ws.clone());
        assert_eq!(due(&t, now, ret), Due::Keep);
        t.updated_at = old.map(rfc3339_from_ms);
        assert_eq!(due(&t, now, ret), Due::Remove);
    }

    /// A state dir holding `tasks` as files, the store opened over it.
    fn store_with(root: &Path, tasks: &[Task]) -> TaskStore {
        let dir = root.join("state/tasks");
        std::fs::create_dir_all(&dir).unwrap();
        for t in tasks {
            std::fs::write(
                dir.join(format!("{}.json", t.task_id)),
                serde_json::to_vec(t).unwrap(),
            )
            .unwrap();
        }
        TaskStore::open(&root.join("state"), 100).unwrap()
    }

    #[test]
    fn a_sweep_removes_old_finished_worktrees_keeps_branches_and_retries_a_failure() {
        let r = TestRepo::new("janitor");
        let git = Git::default();
        let wdir = r.root.join("worktrees");
        let repo = r.repo.display().to_string();
        let mut tasks = Vec::new();
        let now = now_ms();
        let old = Some(now - 48 * HOUR_MS);
        for (id, status, finished) in [
            ("task_old", "succeeded", old),
            ("task_young", "failed", Some(now)),
            ("task_running", "running", None),
            ("task_busy", "canceled", old),
        ] {
            let path = crate::workspace::layout::path(&wdir, &r.repo, id);
            r.git(&[
                "worktree",
                "add",
                "-q",
                "-b",
                &format!("baa/{id}"),
                &path.display().to_string(),
            ]);
            let ws = json!({"mode": "worktree", "repo": repo, "path": path, "branch": format!("baa/{id}")});
            tasks.push(task(id, status, finished, ws));
        }
        let store = store_with(&r.root, &tasks);
        let changed = Mutex::new(Vec::new());
        let ctx = Ctx {
            git: &git,
            tasks: &store,
            worktrees_dir: &wdir,
            retention_s: 24 * 3600,
            in_flight: &|id| id == "task_busy",
            stopping: &|| false,
            changed: &|t| lock(&changed).push(t.task_id.clone()),
        };
        let wt = |id: &str| crate::workspace::layout::path(&wdir, &r.repo, id);

        // git cannot run (a failure of the kind a full disk or a stop gives): logged,
        // nothing recorded, the worktree still there, and the next pass tries again.
        let broken = Git::new("/nonexistent/git", crate::workspace::git::DEFAULT_TIMEOUT);
        let failing = Ctx {
            git: &broken,
            ..ctx
        };
        let f = sweep(&failing, now);
        assert_eq!((f.removed, f.failed), (0, 1), "{f:?}");
        assert!(
            f.last_error
                .as_deref()
                .unwrap()
                .starts_with("task_old: cannot run git"),
            "{f:?}"
        );
        assert!(wt("task_old").join("README.md").exists());
        assert!(store
            .task("task_old")
            .unwrap()
            .workspace
            .unwrap()
            .removed_at
            .is_none());

        let s = sweep(&ctx, now);
        assert_eq!(s.failed, 0, "{s:?}");
        assert_eq!(s.removed, 1, "{s:?}");
        assert!(!wt("task_old").exists());
        let t = store.task("task_old").unwrap();
        assert!(t.workspace.unwrap().removed_at.is_some());
        assert_eq!(*lock(&changed), ["task_old"]);
        // The branch stays; git no longer lists the worktree.
        assert!(!r
            .git(&["branch", "--list", "baa/task_old"])
            .trim()
            .is_empty());
        assert!(!r.git(&["worktree", "list"]).contains("task_old"));
        // Young, running and in-flight tasks keep theirs.
        for id in ["task_young", "task_running", "task_busy"] {
            assert!(wt(id).join("README.md").exists(), "{id}");
            assert!(
                store
                    .task(id)
                    .unwrap()
                    .workspace
                    .unwrap()
                    .removed_at
                    .is_none(),
                "{id}"
            );
        }
        // A second sweep has nothing to do.
        assert_eq!(sweep(&ctx, now), Sweep::default());

        // Worktrees no task names: removed once older than the retention (a git worktree,
        // then a stray directory), never before.
        let orphan = wdir.join("repo-0000000000/task_pruned");
        r.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            "baa/task_pruned",
            &orphan.display().to_string(),
        ]);
        let stray = wdir.join("repo-0000000000/task_half");
        std::fs::create_dir_all(stray.join("sub")).unwrap();
        let mut o = Sweep::default();
        sweep_orphans(&ctx, now_ms(), &mut o);
        assert_eq!(o, Sweep::default());
        assert!(orphan.exists() && stray.exists());
        sweep_orphans(&ctx, now_ms() + 25 * HOUR_MS, &mut o);
        assert_eq!((o.removed, o.orphans, o.failed), (2, 2, 0), "{o:?}");
        assert!(!orphan.exists() && !stray.exists());
        assert!(!r.git(&["worktree", "list"]).contains("task_pruned"));
        assert!(!r
            .git(&["branch", "--list", "baa/task_pruned"])
            .trim()
            .is_empty());
        // Tasks the store knows are left to `sweep`, however old.
        for id in ["task_young", "task_running", "task_busy"] {
            assert!(wt(id).join("README.md").exists(), "{id}");
        }

        // Prune: a worktree directory deleted by hand leaves a registration that prune
        // drops; a repo that is gone is skipped.
        std::fs::remove_dir_all(wt("task_young")).unwrap();
        assert!(r.git(&["worktree", "list"]).contains("task_young"));
        let mut repos = repos(&store);
        assert_eq!(repos.iter().collect::<Vec<_>>(), [&r.repo]);
        repos.insert(r.root.join("gone"));
        assert_eq!(prune(&ctx, &repos), 0);
        assert!(!r.git(&["worktree", "list"]).contains("task_young"));
    }
}
