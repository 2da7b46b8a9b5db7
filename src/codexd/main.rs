//! `baa-codexd`: the only Codex runtime on the node. Supervises one `codex app-server`
//! child over stdio JSON-RPC and serves sessions, turns and events over local HTTP/WS.
//!
//! This file only dispatches the command line; see `serve` for the daemon itself.

mod approvals;
mod child;
mod config;
mod core;
mod events;
mod logfile;
mod notifications;
mod routes;
mod rpc;
mod serve;
mod server_requests;
mod session_ops;
mod sessions;
mod smoke;
mod state;
mod status;
mod stub;
mod supervision;
mod ticker;
mod turn_ops;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use config::{Config, Flags};

const USAGE: &str = "\
baa-codexd — supervises codex app-server and serves Codex sessions over local HTTP/WS

USAGE:
    baa-codexd <COMMAND> [FLAGS]

COMMANDS:
    start     run the daemon (prints `baa-codexd listening on http://HOST:PORT`)
    status    ask the running daemon for /v1/codexd/status
    config    print the resolved configuration (--json for JSON)
    smoke     run the daemon against a built-in stub child and check its files
    routes    print the route table (--json for JSON); nothing is started

FLAGS (each overrides its BAA_CODEXD_* variable):
    --local-api URL          BAA_CODEXD_LOCAL_API_BASE (loopback only)
    --state-dir DIR          BAA_CODEXD_STATE_DIR
    --logs-dir DIR           BAA_CODEXD_LOGS_DIR
    --repo-root DIR          BAA_CODEXD_REPO_ROOT
    --server-strategy S      BAA_CODEXD_SERVER_STRATEGY (spawn|external)
    --server-command CMD     BAA_CODEXD_SERVER_COMMAND
    --server-args ARGS       BAA_CODEXD_SERVER_ARGS (whitespace-separated)
    --server-cwd DIR         BAA_CODEXD_SERVER_CWD
    --demo                   BAA_CODEXD_DEMO=1: run a built-in loopback model provider and
                             point the child's CODEX_HOME at <state>/demo-codex-home, so a
                             turn completes without credentials or network
    --json                   JSON output (config, status)
    -h, --help               this text
    -V, --version            version

EXIT CODES: 0 ok, 1 failure, 2 usage or configuration error.
See docs/runtime/codexd.md for every environment variable.
";

struct Cli {
    command: String,
    flags: Flags,
    json: bool,
}

enum Parsed {
    Run(Box<Cli>),
    Help,
    Version,
}

fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Parsed, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut command: Option<String> = None;
    let mut flags = Flags::default();
    let mut json = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Long("json") => json = true,
            Long("local-api") => flags.local_api = Some(p.value()?.string()?),
            Long("state-dir") => flags.state_dir = Some(p.value()?.string()?),
            Long("logs-dir") => flags.logs_dir = Some(p.value()?.string()?),
            Long("repo-root") => flags.repo_root = Some(p.value()?.string()?),
            Long("server-strategy") => flags.server_strategy = Some(p.value()?.string()?),
            Long("server-command") => flags.server_command = Some(p.value()?.string()?),
            Long("server-args") => flags.server_args = Some(p.value()?.string()?),
            Long("server-cwd") => flags.server_cwd = Some(p.value()?.string()?),
            Long("demo") => flags.demo = true,
            Value(v) if command.is_none() => command = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    match command {
        Some(c) => Ok(Parsed::Run(Box::new(Cli {
            command: c,
            flags,
            json,
        }))),
        None => Err(lexopt::Error::from(
            "missing command (start, status, config or smoke)",
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "__stub-app-server") {
        return ExitCode::from(stub::run() as u8);
    }
    if args.first().is_some_and(|a| a == "routes") {
        return routes::command(&args[1..]);
    }
    let cli = match parse_args(args) {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("baa-codexd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("baa-codexd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let env = |k: &str| std::env::var(k).ok();
    let cfg = match Config::resolve(&env, &cli.flags, &cwd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("baa-codexd: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.as_str() {
        "start" => start(cfg),
        "config" => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&cfg.to_json()).unwrap_or_default()
                );
            } else {
                for line in cfg.to_lines() {
                    println!("{line}");
                }
            }
            ExitCode::SUCCESS
        }
        "status" => status(&cfg, cli.json),
        "smoke" => {
            baa::common::logging::init();
            ExitCode::from(smoke::run(cfg) as u8)
        }
        other => {
            eprintln!("baa-codexd: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn start(cfg: Config) -> ExitCode {
    baa::common::logging::init();
    let stop = baa::common::signals::StopFlag::new();
    if let Err(e) = baa::common::signals::install(&stop) {
        eprintln!("baa-codexd: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = baa::common::proc::raise_nofile_limit() {
        log::warn!("could not raise the open-files limit: {e}");
    }
    let running = match serve::start(cfg, stop.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("baa-codexd: {e}");
            return ExitCode::from(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "baa-codexd listening on {}", running.base);
        let _ = out.flush();
    }
    log::info!("listening on {}", running.base);
    while !stop.sleep(Duration::from_secs(1)) {}
    log::info!("stop signal received; shutting down");
    running.shutdown();
    log::info!("stopped");
    ExitCode::SUCCESS
}

fn status(cfg: &Config, json: bool) -> ExitCode {
    let agent = baa::common::client::local_agent(Duration::from_secs(2), Duration::from_secs(5));
    let url = format!("{}/v1/codexd/status", cfg.local_api_base);
    let body = agent
        .get(&url)
        .call()
        .map_err(|e| e.to_string())
        .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()));
    match body {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if json {
                print!("{text}");
            } else {
                let d = &v["data"]["snapshot"]["daemon"];
                println!("codexd: {}", if v["ok"] == true { "up" } else { "error" });
                println!("mode: {}", d["mode"].as_str().unwrap_or("?"));
                println!(
                    "child: {} (pid {})",
                    d["child"]["status"].as_str().unwrap_or("?"),
                    d["child"]["pid"]
                );
                println!(
                    "sessions: {}",
                    v["data"]["snapshot"]["sessionRegistry"]["sessions"]
                        .as_array()
                        .map(Vec::len)
                        .unwrap_or(0)
                );
            }
            if v["ok"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!(
                "baa-codexd: codexd is unreachable at {}: {e}",
                cfg.local_api_base
            );
            ExitCode::from(1)
        }
    }
}
