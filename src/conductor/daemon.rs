//! Startup, the background loops (lease, heartbeat), and the graceful stop.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use baa::common::http::{Server, ServerConfig};
use baa::common::signals::{self, StopFlag};
use baa::common::store::JsonStore;

use crate::app::App;
use crate::config::Config;
use crate::controllers::{self, Heartbeat};
use crate::lease::{self, Lease};
use crate::routes;

/// How long in-flight requests get to finish on SIGTERM (launchd's ExitTimeOut is longer).
const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn run(cfg: Config) -> ExitCode {
    for w in &cfg.warnings {
        log::warn!("config: {w}");
    }
    if let Err(e) = baa::common::proc::raise_nofile_limit() {
        log::warn!("could not raise the open-files limit: {e}");
    }
    for dir in [
        &cfg.state_dir,
        &cfg.logs_dir,
        &cfg.runs_dir,
        &cfg.worktrees_dir,
        &cfg.tmp_dir,
    ] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("baa-conductor: cannot create {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    }
    let store = match JsonStore::open(&cfg.state_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("baa-conductor: state dir: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = StopFlag::new();
    if let Err(e) = signals::install(&stop) {
        eprintln!("baa-conductor: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    let listener = match std::net::TcpListener::bind(cfg.local_api.bind_addr()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "baa-conductor: cannot listen on {}: {e}",
                cfg.local_api.bind_addr()
            );
            return ExitCode::from(1);
        }
    };
    let bound = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baa-conductor: {e}");
            return ExitCode::from(1);
        }
    };

    let lease = Arc::new(Lease::new(&cfg));
    // Know our role before the first request is answered.
    lease.tick(&store);
    let app = Arc::new(App::new(cfg, bound, store.clone(), lease.clone()));

    let server_cfg = ServerConfig {
        name: "conductor".into(),
        max_connections: app.cfg.max_connections,
        max_body_bytes: app.cfg.max_body_bytes,
        head_timeout: Duration::from_millis(app.cfg.head_timeout_ms),
        idle_timeout: Duration::from_millis(app.cfg.idle_timeout_ms),
        ..ServerConfig::default()
    };
    let handler_app = app.clone();
    let server = match Server::start(
        listener,
        server_cfg,
        Arc::new(move |req| routes::handle(&handler_app, req)),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("baa-conductor: cannot start the HTTP server: {e}");
            return ExitCode::from(1);
        }
    };
    app.started.store(true, Ordering::SeqCst);
    println!("baa-conductor listening on {}", app.base_url);
    log::info!(
        "{} listening on {} (lease: {})",
        app.cfg.identity(),
        app.base_url,
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
        }),
    );
    let heartbeat = spawn_heartbeat(app.clone(), stop.clone());

    while !stop.sleep(Duration::from_secs(3600)) {}
    log::info!("stop requested; finishing in-flight requests (up to {STOP_GRACE:?})");
    app.started.store(false, Ordering::SeqCst);
    let drained = server.stop(STOP_GRACE);
    for t in [lease_loop.ok(), heartbeat].into_iter().flatten() {
        let _ = t.join();
    }
    log::info!(
        "stopped{}",
        if drained {
            ""
        } else {
            " (some requests were cut off)"
        }
    );
    ExitCode::SUCCESS
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
