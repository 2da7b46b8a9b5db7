//! status-api's start step (the aggregate's upstreams, the Host/Origin policy for the bound
//! address, the HTTP server) and its stop; the sequence around it is `common::daemon`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::common::daemon::{self, Service, Startup};
use crate::common::http::guard::HostPolicy;
use crate::common::http::{Handler, Reply, ServerConfig};
use crate::common::listen::{Bound, Serving};

use crate::advice::Site;
use crate::config::Config;
use crate::fetch;
use crate::routes;

/// Requests in flight are bounded by the upstream timeouts, so this grace suffices.
const STOP_GRACE: Duration = Duration::from_secs(3);

pub fn run(cfg: Config) -> ExitCode {
    let startup = Startup {
        binary: "baa-status-api",
        bind: cfg.bind_addr(),
        stop_bound: STOP_GRACE + Duration::from_secs(2),
    };
    daemon::run(startup, move |bound, _stop| {
        start(&cfg, bound).map(|r| Box::new(r) as Box<dyn Service>)
    })
}

struct Running {
    server: Serving,
}

/// Why the server did not start.
#[derive(Debug)]
struct ServerError(std::io::Error);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start the server: {}", self.0)
    }
}

fn start(cfg: &Config, bound: Bound) -> Result<Running, ServerError> {
    let ctx = Arc::new(routes::Ctx {
        upstreams: fetch::Upstreams {
            conductor_base: cfg.conductor_base.clone(),
            codexd_base: cfg.codexd_base.clone(),
            connect_timeout: routes::CONNECT_TIMEOUT,
            total_timeout: routes::TOTAL_TIMEOUT,
        },
        site: Site {
            logs_dir: cfg.logs_dir.clone(),
            label_prefix: cfg.label_prefix.clone(),
            conductor_base: cfg.conductor_base.clone(),
            codexd_base: cfg.codexd_base.clone(),
        },
        // Loopback beside a Tailscale address answers to its own names too.
        policy: HostPolicy::for_listeners(&bound.listeners.addrs(), &[]),
    });
    let handler: Handler = Arc::new(move |req| Reply::Http(routes::handle(&ctx, req)));
    let server_cfg = ServerConfig {
        name: "status".to_string(),
        // A person and a few scripts; each page load also starts four short fetch threads.
        max_connections: 64,
        pretty_json: true,
        ..ServerConfig::default()
    };
    let server = Serving::start(bound, server_cfg, handler).map_err(ServerError)?;
    log::info!(
        "conductor at {}, codexd at {}",
        cfg.conductor_base,
        cfg.codexd_base
    );
    Ok(Running { server })
}

impl Service for Running {
    fn stop(self: Box<Self>) {
        if !self.server.stop(STOP_GRACE) {
            log::warn!("some requests were still running at exit");
        }
    }
}
