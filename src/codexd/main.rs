//! `baa-codexd`: the only Codex runtime on the node. Supervises one `codex app-server`
//! child (JSON-RPC over stdio, or over a Unix socket on which the child outlives codexd)
//! and serves sessions, turns and events over local HTTP/WS.
//!
//! This file only dispatches the command line; see `serve` for the daemon itself.

mod account;
mod approvals;
mod child;
mod child_changes;
mod child_reports;
mod codex_version;
mod config;
mod core;
mod cwd_field;
mod demo;
mod endpoint;
mod event_lines;
mod event_log;
mod event_stream;
mod events;
mod experimental;
mod heap;
mod history_ops;
mod hot_set;
mod json_path;
mod lifecycle_ops;
mod models;
mod notifications;
mod reattach;
mod recent_events;
mod registry;
mod review_ops;
mod routes;
mod rpc;
mod rpc_http;
mod serve;
mod server_requests;
mod session_ops;
mod session_store;
mod sessions;
mod smoke;
mod start_error;
mod state;
mod state_file;
mod state_health;
mod status;
mod stop_child;
mod stub;
mod stub_run;
mod stub_socket;
mod supervision;
mod ticker;
mod turn_ops;
mod turn_record;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use baa::common::cli::{self, Invocation};
use baa::common::settings::Resolver;

use config::{Command, Config, CLI};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Not a command: codexd runs itself as the stub child for `smoke` and the tests.
    if args.first().is_some_and(|a| a == "__stub-app-server") {
        return exit_code(stub_run::run());
    }
    let env = |k: &str| std::env::var(k).ok();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let routes = |inv: &Invocation<Command>| {
        // The event stream's path is the only setting a route depends on.
        let r = Resolver::new(config::SETTINGS, &inv.flags, &env, &cwd);
        match config::event_stream_path(&r) {
            Ok(path) => routes::command(&path, inv.json),
            Err(e) => CLI.fail(&e),
        }
    };
    CLI.main(args, routes, |command, inv| {
        let r = Resolver::new(config::SETTINGS, &inv.flags, &env, &cwd);
        match command {
            // `status` only talks to a running daemon: it needs no dirs.
            Command::Status => match config::local_api(&r) {
                Ok((base, _)) => status(&base, inv.json),
                Err(e) => CLI.fail(&e),
            },
            Command::Start => with_config(&r, serve::run),
            Command::Config if inv.json => {
                with_config(&r, |cfg| cli::print_json(CLI.binary, &cfg.to_json()))
            }
            Command::Config => with_config(&r, |cfg| {
                cli::print(CLI.binary, &(cfg.to_lines().join("\n") + "\n"))
            }),
            Command::Smoke => with_config(&r, |cfg| {
                baa::common::logging::init();
                exit_code(smoke::run(cfg))
            }),
            Command::StopChild => with_config(&r, |cfg| stop_child::run(&cfg)),
        }
    })
}

/// Resolves the whole configuration and runs `f` with it; a bad one exits 2.
fn with_config(r: &Resolver, f: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match config::resolve(r) {
        Ok(cfg) => f(cfg),
        Err(e) => CLI.fail(&e),
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `status`: asks the running daemon and prints its answer (`--json`: as received).
fn status(base: &str, json: bool) -> ExitCode {
    let agent = baa::common::client::local_agent(Duration::from_secs(2), Duration::from_secs(5));
    let url = format!("{base}/v1/codexd/status");
    let body = agent
        .get(&url)
        .call()
        .map_err(|e| e.to_string())
        .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()));
    let text = match body {
        Ok(text) => text,
        Err(e) => {
            cli::error_line(CLI.binary, &format!("codexd is unreachable at {base}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let out = if json { text } else { summary(&v) };
    let printed = cli::print(CLI.binary, &out);
    if v["ok"] != true {
        return ExitCode::FAILURE;
    }
    printed
}

/// The human form of `status`: a child that is not running says why and when codexd
/// tries again.
fn summary(v: &serde_json::Value) -> String {
    let snap = &v["data"]["snapshot"];
    let d = &snap["daemon"];
    let c = &d["child"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let mut out = format!(
        "codexd: {}\nmode: {}\nchild: {} (pid {})\n",
        if v["ok"] == true { "up" } else { "error" },
        text(&d["mode"]),
        text(&c["status"]),
        c["pid"],
    );
    if let Some(t) = c["transport"].as_str() {
        out.push_str(&format!("transport: {t}"));
        if let Some(sock) = c["socket"].as_str().filter(|_| t == "unix") {
            out.push_str(&format!(" ({sock})"));
        }
        if let Some(e) = c["transportError"].as_str() {
            out.push_str(&format!(" — unix transport unusable: {e}"));
        }
        out.push('\n');
    }
    if c["status"] != "running" {
        if let Some(e) = c["lastError"].as_str() {
            out.push_str(&format!("reason: {e}\n"));
        }
        if let Some(at) = c["nextRestartAt"].as_str() {
            out.push_str(&format!("next retry: {at}\n"));
        }
    }
    out.push_str(&format!(
        "codex: {}\naccount: {}\nlimits: {}\nsessions: {}\n",
        codex_line(&snap["codex"]),
        account_line(&snap["account"]),
        limits_line(&snap["limits"]),
        snap["sessionRegistry"]["sessions"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    ));
    out
}

/// `0.169.0 (codex-cli 0.169.0)`, or what is missing.
fn codex_line(c: &serde_json::Value) -> String {
    let version = c["version"].as_str().unwrap_or("unknown");
    match c["cliVersion"].as_str() {
        Some(cli) => format!("{version} ({cli})"),
        None => version.to_string(),
    }
}

fn account_line(a: &serde_json::Value) -> String {
    match (a["loggedIn"].as_bool(), a["authRequired"].as_bool()) {
        (Some(true), _) => format!("logged in ({})", a["plan"].as_str().unwrap_or("no plan")),
        (Some(false), Some(false)) => "none needed (the provider needs no OpenAI login)".into(),
        (Some(false), _) => "logged out".into(),
        (None, _) => format!(
            "unknown{}",
            a["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    }
}

fn limits_line(l: &serde_json::Value) -> String {
    let window = |name: &str| {
        let w = &l[name];
        w["usedPercent"].as_f64().map(|p| {
            format!(
                "{name} {p}%{}",
                w["resetsAt"]
                    .as_str()
                    .map(|r| format!(" until {r}"))
                    .unwrap_or_default()
            )
        })
    };
    let mut parts: Vec<String> = ["primary", "secondary"]
        .iter()
        .filter_map(|n| window(n))
        .collect();
    if let Some(until) = l["blockedUntil"].as_str() {
        parts.push(format!("BLOCKED until {until}"));
    }
    if parts.is_empty() {
        "none reported yet".into()
    } else {
        parts.join(", ")
    }
}
