//! Starting and stopping the whole daemon: state, HTTP listener, child supervisor and the
//! ticker. Shared by `start` and `smoke`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use baa::common::http::{Server, ServerConfig, ServerHandle};
use baa::common::mock_model::{write_codex_home, MockModel};
use baa::common::signals::StopFlag;

use crate::config::{Config, Strategy};
use crate::core::Core;
use crate::events::Level;
use crate::supervision::ChildThreads;

pub struct Running {
    pub core: Arc<Core>,
    pub base: String,
    server: ServerHandle,
    child: Option<ChildThreads>,
    ticker: JoinHandle<()>,
    /// Demo mode's built-in model; stopped after the child.
    demo_model: Option<MockModel>,
}

/// Loads state, binds the listener and starts the child. `stop` ends everything.
pub fn start(cfg: Config, stop: StopFlag) -> Result<Running, String> {
    let bind = cfg.listen.bind_addr();
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
    let server = Server::bind(&bind, server_cfg, crate::routes::handler(core.clone()))
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
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
    let ticker = crate::ticker::spawn(core.clone())
        .map_err(|e| format!("cannot start the ticker thread: {e}"))?;
    Ok(Running {
        core,
        base,
        server,
        child,
        ticker,
        demo_model,
    })
}

/// Demo mode: a loopback Responses-API model owned by this process, and a CODEX_HOME
/// under the state dir whose config.toml points the child at it (rewritten on every
/// start because the port changes; the rollouts kept beside it survive restarts).
fn start_demo_model(core: &Core) -> Result<MockModel, String> {
    let model = MockModel::start("127.0.0.1:0")
        .map_err(|e| format!("demo mode: cannot start the built-in model: {e}"))?;
    let home = core.cfg.demo_codex_home();
    write_codex_home(&home, &model.base_url())
        .map_err(|e| format!("demo mode: cannot write {}: {e}", home.display()))?;
    core.set_demo(&model.base_url(), &home);
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
    /// Stops accepting, stops the child (SIGTERM, then SIGKILL after the grace period),
    /// and writes every state file. The stop flag must already be set.
    pub fn shutdown(mut self) {
        self.core.stop.set();
        self.core.emit(
            Level::Info,
            "daemon.stopping",
            "baa-codexd is stopping",
            json!({"pid": std::process::id()}),
        );
        self.server.stop(Duration::from_secs(2));
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
