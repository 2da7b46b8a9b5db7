//! Starting and stopping the whole daemon: the state-dir lock, state, HTTP listener, child
//! supervisor and the ticker. `run` is `start` under `common::daemon`; `smoke` calls
//! `start` directly.
//!
//! One codexd per state dir: before anything else (even the bind), `codexd.lock` in the
//! state dir is locked; a second codexd on the same dir exits 1 naming the first and
//! touches nothing (it used to take the running codexd's child for a stale one).

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use baa::common::cli;
use baa::common::codex_home::write_codex_home;
use baa::common::daemon::{self, Service, Startup};
use baa::common::dirlock::{DirLock, LockError};
use baa::common::http::{Server, ServerConfig, ServerHandle};
use baa::common::signals::StopFlag;

use crate::config::{Config, Strategy};
use crate::core::Core;
use crate::demo::DemoModel;
use crate::events::Level;
use crate::start_error::StartError;
use crate::supervision::ChildThreads;

/// In-flight HTTP requests get this long on stop; the child then gets its own grace.
const HTTP_STOP_GRACE: Duration = Duration::from_secs(2);

pub struct Running {
    pub core: Arc<Core>,
    pub base: String,
    server: ServerHandle,
    child: Option<ChildThreads>,
    ticker: JoinHandle<()>,
    /// Demo mode's built-in model; stopped after the child.
    demo_model: Option<DemoModel>,
    /// Held until the last state file is written.
    _lock: DirLock,
}

/// The lock file in the state dir.
pub const LOCK_FILE: &str = "codexd.lock";

/// Takes the state dir's lock (creating the dir if it does not exist yet).
pub fn lock_state_dir(cfg: &Config) -> Result<DirLock, StartError> {
    let dir = &cfg.state_dir;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|source| StartError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
    }
    DirLock::acquire(dir, LOCK_FILE).map_err(|e| match e {
        LockError::Held { pid, .. } => StartError::StateDirHeld {
            dir: dir.clone(),
            pid,
        },
        other => StartError::Lock(other),
    })
}

/// `baa-codexd start`: the daemon in the foreground until SIGTERM/SIGINT.
pub fn run(cfg: Config) -> ExitCode {
    // Few arenas and a fixed mmap threshold (see common::malloc); large listings are
    // trimmed after they are sent (heap.rs).
    let tuning = baa::common::malloc::tune();
    log::debug!("malloc tuning: {tuning:?}");
    let lock = match lock_state_dir(&cfg) {
        Ok(l) => l,
        Err(e) => {
            cli::error_line("baa-codexd", &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let startup = Startup {
        binary: "baa-codexd",
        bind: cfg.listen.bind_addr(),
        // HTTP grace, the child's SIGTERM→SIGKILL grace, then joins and state writes.
        stop_bound: HTTP_STOP_GRACE
            + Duration::from_millis(cfg.stop_grace_ms)
            + Duration::from_secs(5),
    };
    daemon::run(startup, move |bound, stop| {
        // codexd listens on loopback only (its config refuses anything else): one socket.
        let Some((listener, _)) = bound.sockets.into_iter().next() else {
            return Err(StartError::Listen {
                bind: cfg.listen.bind_addr(),
                source: std::io::Error::other("no listener was bound"),
            });
        };
        start_on(listener, cfg, stop.clone(), lock).map(|r| Box::new(r) as Box<dyn Service>)
    })
}

impl Service for Running {
    fn stop(self: Box<Self>) {
        self.shutdown();
    }
}

/// Binds the configured address, then [`start_on`] it.
pub fn start(cfg: Config, stop: StopFlag) -> Result<Running, StartError> {
    let lock = lock_state_dir(&cfg)?;
    let bind = cfg.listen.bind_addr();
    let listener =
        TcpListener::bind(&bind).map_err(|source| StartError::Listen { bind, source })?;
    start_on(listener, cfg, stop, lock)
}

/// Loads state, serves on `listener` and starts the child. `stop` ends everything; `lock`
/// (the state dir's) is held until the last state file is written.
pub fn start_on(
    listener: TcpListener,
    cfg: Config,
    stop: StopFlag,
    lock: DirLock,
) -> Result<Running, StartError> {
    let core = Core::open(cfg, stop.clone())?;
    let demo_model = if core.cfg.demo && core.cfg.strategy == Strategy::Spawn {
        Some(start_demo_model(&core)?)
    } else {
        None
    };
    let server_cfg = ServerConfig {
        name: "codexd-http".into(),
        max_connections: 256,
        pretty_json: true,
        ..ServerConfig::default()
    };
    let server = Server::start(listener, server_cfg, crate::routes::handler(core.clone()))
        .map_err(StartError::Http)?;
    let addr = server.local_addr();
    let base = format!("http://{addr}");
    core.set_listening(&base);
    core.flush_all();
    core.emit(
        Level::Info,
        "daemon.started",
        format!("baa-codexd {} listening on {base}", core.cfg.version),
        json!({"pid": std::process::id(), "base": base, "strategy": core.cfg.strategy.as_str()}),
    );
    let child = match core.cfg.strategy {
        Strategy::Spawn => Some(ChildThreads::start(&core)?),
        Strategy::External => None,
    };
    let ticker = crate::ticker::spawn(core.clone()).map_err(|source| StartError::Thread {
        name: "ticker",
        source,
    })?;
    Ok(Running {
        core,
        base,
        server,
        child,
        ticker,
        demo_model,
        _lock: lock,
    })
}

/// Demo mode: a loopback Responses-API model owned by this process, and a CODEX_HOME
/// under the state dir whose config.toml points the child at it (rewritten on every
/// start because the port changes; the rollouts kept beside it survive restarts).
fn start_demo_model(core: &Core) -> Result<DemoModel, StartError> {
    let model = DemoModel::start().map_err(StartError::DemoModel)?;
    let home = core.cfg.demo_codex_home();
    write_codex_home(&home, model.base_url()).map_err(|source| StartError::DemoHome {
        home: home.clone(),
        source,
    })?;
    core.set_demo(model.base_url(), &home);
    core.emit(
        Level::Info,
        "daemon.demo",
        format!(
            "demo mode: built-in model at {}, CODEX_HOME={}",
            model.base_url(),
            home.display()
        ),
        json!({"modelBaseUrl": model.base_url(), "codexHome": home}),
    );
    Ok(model)
}

impl Running {
    /// Stops accepting, stops the child (stdio: SIGTERM, then SIGKILL after the grace
    /// period; unix: leaves it running for the next codexd), and writes every state file.
    /// The stop flag must already be set.
    pub fn shutdown(mut self) {
        self.core.stop.set();
        self.core.emit(
            Level::Info,
            "daemon.stopping",
            "baa-codexd is stopping",
            json!({"pid": std::process::id()}),
        );
        self.server.stop(HTTP_STOP_GRACE);
        if let Some(c) = self.child.take() {
            c.join();
        }
        let _ = self.ticker.join();
        if let Some(m) = self.demo_model.take() {
            m.stop();
        }
        self.core.emit(
            Level::Info,
            "daemon.stopped",
            "baa-codexd stopped",
            json!({"pid": std::process::id()}),
        );
        self.core.flush_all();
    }
}
