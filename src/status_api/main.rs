//! baa-status-api: read-only local observation of the node. Serves `/healthz`, the
//! `/v1/status` JSON aggregate of conductor and codexd, and an HTML page at `/`.
//!
//! This file only dispatches: parse flags, resolve config, bind, announce, wait for a stop
//! signal. The modules hold the logic.

mod aggregate;
mod config;
mod page;
mod routes;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use baa::common;
use common::http::guard::HostPolicy;
use common::http::{Handler, Reply, Server, ServerConfig};
use common::signals::{self, StopFlag};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "routes") {
        return routes::command(&args[1..]);
    }
    ExitCode::from(run(args))
}

fn run(args: Vec<std::ffi::OsString>) -> u8 {
    let raw = match config::parse_args(args) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("baa-status-api: {e}\nTry --help.");
            return 2;
        }
    };
    if raw.help {
        print!("{}", config::USAGE);
        return 0;
    }
    if raw.version {
        println!("baa-status-api {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let cfg = match config::Config::resolve(&raw, |k| std::env::var(k).ok()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("baa-status-api: {e}");
            return 2;
        }
    };
    common::logging::init();

    // Installed before binding so a stop right after the announcement is never lost.
    let stop = StopFlag::new();
    if let Err(e) = signals::install(&stop) {
        log::error!("cannot install signal handlers: {e}");
        return 1;
    }
    let listener = match TcpListener::bind(cfg.bind_addr()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baa-status-api: cannot listen on {}: {e}", cfg.bind_addr());
            return 1;
        }
    };
    let bound = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baa-status-api: cannot read the bound address: {e}");
            return 1;
        }
    };
    let ctx = Arc::new(routes::Ctx {
        upstreams: aggregate::Upstreams {
            conductor_base: cfg.conductor_base.clone(),
            codexd_base: cfg.codexd_base.clone(),
            connect_timeout: routes::CONNECT_TIMEOUT,
            total_timeout: routes::TOTAL_TIMEOUT,
        },
        policy: HostPolicy::for_listener(bound, &[]),
    });
    let handler: Handler = Arc::new(move |req| Reply::Http(routes::handle(&ctx, req)));
    let server_cfg = ServerConfig {
        name: "status".to_string(),
        // A person and a few scripts; each page load also starts three short fetch threads.
        max_connections: 64,
        pretty_json: true,
        ..ServerConfig::default()
    };
    let server = match Server::start(listener, server_cfg, handler) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("baa-status-api: cannot start the server: {e}");
            return 1;
        }
    };
    println!("baa-status-api listening on http://{}", authority(bound));
    let _ = std::io::stdout().flush();
    log::info!(
        "conductor at {}, codexd at {}",
        cfg.conductor_base,
        cfg.codexd_base
    );

    while !stop.sleep(Duration::from_secs(1)) {}
    log::info!("stop signal received; shutting down");
    // Requests in flight are bounded by the upstream timeouts, so this grace suffices.
    if !server.stop(Duration::from_secs(3)) {
        log::warn!("some requests were still running at exit");
    }
    0
}

fn authority(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}
