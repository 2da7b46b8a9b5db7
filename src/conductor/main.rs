//! `baa-conductor`: the node's local control API. This file only dispatches the CLI.

mod app;
mod codex_proxy;
mod config;
mod controllers;
mod daemon;
mod describe;
mod firefox;
mod host_ops;
mod lease;
mod records;
mod routes;
mod system;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "routes") {
        return routes::command(&args[1..]);
    }
    let (command, overrides) = match config::parse_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("baa-conductor: {e}");
            return ExitCode::from(2);
        }
    };
    let resolve = || {
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        config::resolve(&overrides, &|k| std::env::var(k).ok(), &cwd)
    };
    match command {
        config::Command::Help => {
            print!("{}", config::USAGE);
            ExitCode::SUCCESS
        }
        config::Command::Version => {
            println!("baa-conductor {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        config::Command::Config { json } => match resolve() {
            Ok(cfg) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&config::render_json(&cfg))
                            .unwrap_or_default()
                    );
                } else {
                    print!("{}", config::render_text(&cfg));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("baa-conductor: configuration error: {e}");
                ExitCode::from(2)
            }
        },
        config::Command::Start => {
            baa::common::logging::init();
            match resolve() {
                Ok(cfg) => daemon::run(cfg),
                Err(e) => {
                    eprintln!("baa-conductor: configuration error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
