//! The conductor's start step (state dirs, store, lease, HTTP server, background loops)
//! and its graceful stop; the sequence around it is `common::daemon`.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use baa::common::daemon::{self, Service, Startup};
use baa::common::http::ServerConfig;
use baa::common::listen::{Bound, Serving};
use baa::common::malloc;
use baa::common::signals::StopFlag;
use baa::common::store::{JsonStore, StoreError};

use crate::app::App;
use crate::config::Config;
use crate::controllers::{self, Heartbeat};
use crate::lease::{self, Lease};
use crate::routes;
use crate::schedules::firer;
use crate::schedules::store::ScheduleStore;
use crate::tasks::scheduler::Scheduler;
use crate::tasks::store::TaskStore;
use crate::workspace::janitor;

/// Why the conductor could not start (the one line `common::daemon` prints).
#[derive(Debug)]
enum StartError {
    CreateDir(PathBuf, std::io::Error),
    StateDir(StoreError),
    Tasks(StoreError),
    Schedules(StoreError),
    Server(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::CreateDir(dir, e) => write!(f, "cannot create {}: {e}", dir.display()),
            StartError::StateDir(e) => write!(f, "state dir: {e}"),
            StartError::Tasks(e) => write!(f, "tasks: {e}"),
            StartError::Schedules(e) => write!(f, "schedules: {e}"),
            StartError::Server(e) => write!(f, "cannot start the HTTP server: {e}"),
        }
    }
}

/// How long in-flight requests get to finish on SIGTERM (launchd's ExitTimeOut is longer).
const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn run(cfg: Config) -> ExitCode {
    // Before any thread starts: one thread per connection and per run fragmented glibc's
    // per-thread arenas (3.8 → 246 MiB over 1,600 tasks); see `common::malloc`.
    let tuning = malloc::tune();
    let startup = Startup {
        binary: "baa-conductor",
        bind: cfg.local_api.bind_addr(),
        // The grace, then the scheduler (its runs get 3 s), then the notification thread
        // (a try in flight ends within its request timeout), then joining the lease,
        // heartbeat, janitor and schedule loops (each wakes within 50 ms).
        stop_bound: STOP_GRACE + Duration::from_secs(10) + crate::notify::REQUEST_TIMEOUT,
    };
    daemon::run(startup, move |bound, stop| {
        log::debug!("malloc tuning: {tuning:?}");
        start(cfg, bound, stop)
            .map(|r| Box::new(r) as Box<dyn Service>)
            .map_err(|e| e.to_string())
    })
}

/// The running conductor, stopped once by `common::daemon`.
struct Running {
    app: Arc<App>,
    server: Serving,
    scheduler: Option<Scheduler>,
    /// The notification delivery thread (None: no target configured).
    notify: Option<crate::notify::Delivery>,
    threads: Vec<JoinHandle<()>>,
}

fn start(cfg: Config, bound: Bound, stop: &StopFlag) -> Result<Running, StartError> {
    for w in &cfg.warnings {
        log::warn!("config: {w}");
    }
    for dir in [
        &cfg.state_dir,
        &cfg.logs_dir,
        &cfg.runs_dir,
        &cfg.worktrees_dir,
        &cfg.tmp_dir,
    ] {
        std::fs::create_dir_all(dir).map_err(|e| StartError::CreateDir(dir.clone(), e))?;
    }
    let store = Arc::new(JsonStore::open(&cfg.state_dir).map_err(StartError::StateDir)?);

    let loading = std::time::Instant::now();
    let tasks =
        Arc::new(TaskStore::open(&cfg.state_dir, cfg.task_retention).map_err(StartError::Tasks)?);
    log::info!(
        "tasks: {} in the store, loaded in {} ms",
        tasks.counts().total(),
        loading.elapsed().as_millis()
    );

    let schedules = ScheduleStore::open(&cfg.state_dir).map_err(StartError::Schedules)?;
    if let Some(f) = &cfg.clock_file {
        log::warn!(
            "schedules go by the test clock file {} (BAA_CONDUCTOR_CLOCK_FILE), not the system clock",
            f.display()
        );
    }

    let lease = Arc::new(Lease::new(&cfg));
    // Know our role before the first request is answered.
    lease.tick(&store);
    let app = Arc::new(App::new(
        cfg,
        bound.listeners.clone(),
        store.clone(),
        lease.clone(),
        tasks,
        schedules,
    ));

    let server_cfg = ServerConfig {
        name: "conductor".into(),
        max_connections: app.cfg.max_connections,
        max_body_bytes: app.cfg.max_body_bytes,
        head_timeout: Duration::from_millis(app.cfg.head_timeout_ms),
        idle_timeout: Duration::from_millis(app.cfg.idle_timeout_ms),
        ..ServerConfig::default()
    };
    let handler_app = app.clone();
    let server = Serving::start(
        bound,
        server_cfg,
        Arc::new(move |req| routes::handle(&handler_app, req)),
    )
    .map_err(StartError::Server)?;
    app.started.store(true, Ordering::SeqCst);
    log::info!(
        "{} started (lease: {})",
        app.cfg.identity(),
        lease.state().as_str()
    );

    app.mark_pushed();
    let watch_app = app.clone();
    let lease_loop = lease::spawn_loop(
        lease.clone(),
        store.clone(),
        stop.clone(),
        // Push a snapshot when the state changed behind our back (another conductor wrote
        // it before a takeover) or the lease holder changed.
        Box::new(move || {
            if let Ok(state) = watch_app.system_state() {
                watch_app.broadcast_state(&state);
            }
            // The scheduler follows the lease (takes over, lets go) from its next pass.
            watch_app.sched.wake();
        }),
    )
    .map_err(|e| log::error!("cannot start the lease thread: {e}"))
    .ok();
    let heartbeat = spawn_heartbeat(app.clone(), stop.clone());
    let janitor = janitor::spawn(app.clone(), stop.clone())
        .map_err(|e| log::error!("cannot start the janitor thread: {e}"))
        .ok();
    let schedules = firer::spawn(app.clone(), stop.clone())
        .map_err(|e| log::error!("cannot start the schedules thread: {e}"))
        .ok();
    let scheduler = Scheduler::start(app.clone(), stop.clone())
        .map_err(|e| log::error!("cannot start the scheduler thread: {e}"))
        .ok();
    let notify_lease = lease.clone();
    let notify = app
        .notify
        .start(Box::new(move || notify_lease.status().is_leader));
    Ok(Running {
        app,
        server,
        scheduler,
        notify,
        threads: [lease_loop, heartbeat, janitor, schedules]
            .into_iter()
            .flatten()
            .collect(),
    })
}

impl Service for Running {
    fn stop(self: Box<Self>) {
        let Running {
            app,
            server,
            scheduler,
            notify,
            threads,
        } = *self;
        log::info!(
            "finishing in-flight requests (up to {} ms)",
            STOP_GRACE.as_millis()
        );
        app.started.store(false, Ordering::SeqCst);
        // Exec'd commands alongside the drain: they get a few seconds to finish, then their
        // process groups are killed (TERM, then KILL), so none outlives the conductor and
        // the drain never waits out a long command.
        let exec_app = app.clone();
        let exec_stop = thread::Builder::new()
            .name("exec-stop".into())
            .spawn(move || exec_app.exec_slots.stop_all() + exec_app.git.stop_all())
            .map_err(|e| log::error!("cannot start the exec-stop thread: {e}"))
            .ok();
        if !server.stop(STOP_GRACE) {
            log::warn!("some requests were cut off");
        }
        let groups = match exec_stop {
            Some(h) => h.join().unwrap_or(0),
            // No thread: still make sure nothing outlives us.
            None => app.exec_slots.stop_all() + app.git.stop_all(),
        };
        if groups > 0 {
            log::info!("killed {groups} exec process group(s) still running at the stop");
        }
        // Runs let go of their turns (still running in codexd); the next start reconciles.
        if let Some(s) = scheduler {
            s.stop();
        }
        // After the scheduler: what its runs announced last is written (a try in flight
        // ends within its request timeout).
        if let Some(n) = notify {
            n.stop();
        }
        // The loops watch the same stop flag and wake within 50 ms (the janitor's git call,
        // if one was running, was ended with the exec groups above).
        for t in threads {
            let _ = t.join();
        }
    }
}

fn spawn_heartbeat(app: Arc<App>, stop: StopFlag) -> Option<thread::JoinHandle<()>> {
    let c = &app.cfg;
    let mut hb = Heartbeat {
        controller_id: format!("{}@{}", c.node_id, c.host),
        node_id: c.node_id.clone(),
        host: c.host.clone(),
        role: c.role.as_str().to_string(),
        priority: c.priority,
        pid: std::process::id(),
        started_at: app.started_at.clone(),
        last_heartbeat_at: String::new(),
        last_heartbeat_ms: 0,
        heartbeat_interval_ms: c.heartbeat_interval_ms,
        version: c.version.clone(),
    };
    let interval = Duration::from_millis(c.heartbeat_interval_ms);
    let dir = match controllers::open_dir(&app.store) {
        Ok(d) => d,
        Err(e) => {
            log::error!("heartbeat: cannot open the controllers dir: {e}");
            return None;
        }
    };
    thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || loop {
            if let Err(e) = controllers::beat(&dir, &mut hb) {
                log::warn!("heartbeat: {e}");
            }
            if stop.sleep(interval) {
                break;
            }
        })
        .map_err(|e| log::error!("cannot start the heartbeat thread: {e}"))
        .ok()
}
