//! The stub app-server's entry (`baa-codexd __stub-app-server`): reads its mode and
//! `--listen`, then serves codexd over stdio (`stub`) or a Unix socket (`stub_socket`).

use std::io::{self, BufRead};

use crate::stub::{handle_line, Out, Stub};
use crate::stub_socket;

/// Runs the stub until stdin closes (or, listening, until it is killed). Returns the
/// process exit code.
pub fn run() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .map(|i| args.get(i + 1).cloned().unwrap_or_default());
    let mut mode = std::env::var("BAA_CODEXD_STUB_MODE").unwrap_or_else(|_| "normal".into());
    if listen.is_some() && mode != "listen" {
        eprintln!(
            "error: unexpected argument '--listen' found (the stub app-server speaks stdio only)"
        );
        return 2;
    }
    if let Some(path) = mode.strip_prefix("exit-while:") {
        mode = if std::path::Path::new(path).exists() {
            "exit"
        } else {
            "normal"
        }
        .into();
    }
    if mode == "exit" {
        eprintln!("stub app-server: exiting at once (BAA_CODEXD_STUB_MODE=exit)");
        return 3;
    }
    eprintln!("stub app-server: mode {mode}");
    let stub = Stub::new(mode, Out::Stdout(io::stdout()));
    if let Some(endpoint) = listen {
        let path = endpoint.strip_prefix("unix://").unwrap_or(&endpoint);
        return stub_socket::serve(&stub, std::path::Path::new(path));
    }
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        handle_line(&stub, &line);
    }
    0
}
