//! baa-status-api: read-only local observation of the node. Serves `/healthz`, the
//! `/v1/status` JSON aggregate of conductor and codexd, and an HTML page at `/`.
//!
//! This file only dispatches the command line; `serve` runs the daemon.

mod advice;
mod aggregate;
mod cards;
mod config;
mod fetch;
mod html;
mod page;
mod routes;
mod schedules;
mod serve;
mod tables;
mod tasks;
mod values;

use std::process::ExitCode;

use baa::common;
use common::settings::Resolver;

use config::{Command, CLI};

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    CLI.main(
        args,
        |inv| routes::command(inv.json),
        |command, inv| {
            let env = |k: &str| std::env::var(k).ok();
            let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
            let cfg =
                match config::resolve(&Resolver::new(config::SETTINGS, &inv.flags, &env, &cwd)) {
                    Ok(cfg) => cfg,
                    Err(e) => return CLI.fail(&e),
                };
            match command {
                Command::Start => serve::run(cfg),
            }
        },
    )
}
