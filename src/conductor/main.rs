//! `baa-conductor`: the node's local control API. This file only dispatches the CLI.

mod app;
mod codex_hold;
mod codex_proxy;
mod codexd_client;
mod config;
mod controllers;
mod daemon;
mod describe;
mod firefox;
mod host_ops;
mod lease;
mod mcp;
mod mcp_cli;
mod notify;
mod records;
#[cfg(test)]
mod route_tests;
mod routes;
mod schedule_cli;
mod schedules;
mod system;
mod task_cli;
mod tasks;
mod workspace;

use std::process::ExitCode;

use baa::common::cli;
use baa::common::settings::Resolver;

use config::{Command, CLI};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // `task` has subcommands and operands the shared parser does not take.
    if args.first().is_some_and(|a| a == "task") {
        return task_cli::main(args[1..].to_vec());
    }
    if args.first().is_some_and(|a| a == "schedule") {
        return schedule_cli::main(args[1..].to_vec());
    }
    if args.first().is_some_and(|a| a == "mcp-config") {
        return mcp_cli::main(args[1..].to_vec());
    }
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
                // Reached only when a flag came before `task`.
                Command::Task => CLI.fail(&baa::common::settings::Error::Usage(
                    "put task first: baa-conductor task <SUBCOMMAND> [FLAGS]".into(),
                )),
                Command::Schedule => CLI.fail(&baa::common::settings::Error::Usage(
                    "put schedule first: baa-conductor schedule <SUBCOMMAND> [FLAGS]".into(),
                )),
                Command::McpConfig => CLI.fail(&baa::common::settings::Error::Usage(
                    "put mcp-config first: baa-conductor mcp-config [--conductor-url URL]".into(),
                )),
                Command::Start => daemon::run(cfg),
                Command::Config if inv.json => {
                    cli::print_json(CLI.binary, &config::render_json(&cfg))
                }
                Command::Config => cli::print(CLI.binary, &config::render_text(&cfg)),
            }
        },
    )
}
