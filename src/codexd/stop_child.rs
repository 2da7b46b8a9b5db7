//! `baa-codexd stop-child`: stops, on purpose, the app-server a stopped codexd left
//! running (in unix mode codexd's own stop leaves it up, so that the next codexd attaches
//! to it). Only the exact process found on the socket (its listener when the command line
//! names the socket, else the pid file's process) or recorded in `daemon-state.json` is
//! signalled (pid and OS start time; SIGTERM, SIGKILL after `BAA_CODEXD_STOP_GRACE_MS`),
//! never one found by name. It takes the state dir's lock first: with a codexd running it
//! refuses, because that codexd supervises the child (restart it with
//! `POST /v1/codexd/child/restart`).

use std::process::ExitCode;
use std::time::Duration;

use baa::common::cli;
use baa::common::proc::{kill_if_same, KillOutcome};
use baa::common::store::JsonStore;

use crate::child;
use crate::config::Config;
use crate::serve::lock_state_dir;
use crate::state::{ChildStatus, DaemonState, DAEMON_STATE};

const BINARY: &str = "baa-codexd";

pub fn run(cfg: &Config) -> ExitCode {
    let _lock = match lock_state_dir(cfg) {
        Ok(l) => l,
        Err(e) => {
            cli::error_line(
                BINARY,
                &format!(
                    "{e}. That codexd supervises the app-server: stop codexd first (scripts/runtime/stop-launchd.sh --service codexd --with-child does both), or restart the app-server with POST /v1/codexd/child/restart"
                ),
            );
            return ExitCode::FAILURE;
        }
    };
    let store = match JsonStore::open(&cfg.state_dir) {
        Ok(s) => s,
        Err(e) => {
            cli::error_line(BINARY, &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let mut state: Option<DaemonState> = match store.read_or_warn(DAEMON_STATE) {
        Ok(s) => s,
        Err(e) => {
            cli::error_line(BINARY, &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let recorded = state
        .as_ref()
        .and_then(|s| Some((s.child.pid?, s.child.start_time.clone()?)));
    // The app-server on the socket (`child::find`) outranks the record, which may be lost,
    // emptied or older than the last spawn.
    let sock = cfg.transport.socket();
    let found = sock.and_then(child::find).map(|f| (f.pid, f.start_time));
    let Some((pid, start)) = found.or(recorded) else {
        let said = match &state {
            None => format!(
                "no app-server recorded in {} and none runs on the socket: nothing to stop\n",
                cfg.state_dir.display()
            ),
            Some(_) => "no app-server recorded as running: nothing to stop\n".to_string(),
        };
        return cli::print(BINARY, &said);
    };
    let grace = Duration::from_millis(cfg.stop_grace_ms);
    let outcome = kill_if_same(pid, &start, grace);
    let said = match outcome {
        KillOutcome::Killed => format!("stopped the app-server pid {pid}\n"),
        KillOutcome::Gone => format!("the app-server pid {pid} is not running any more\n"),
        KillOutcome::Reused => {
            format!("pid {pid} is another process now (its start time differs); left alone\n")
        }
    };
    if let Some(sock) = sock {
        if !matches!(outcome, KillOutcome::Reused) {
            child::pid_file::remove(sock);
        }
    }
    if let Some(state) = state.as_mut() {
        state.child.pid = None;
        state.child.start_time = None;
        state.child.attached = false;
        state.child.status = ChildStatus::Stopped;
        if let Err(e) = store.write(DAEMON_STATE, &*state) {
            cli::error_line(BINARY, &format!("{said}but cannot record it: {e}"));
            return ExitCode::FAILURE;
        }
    }
    cli::print(BINARY, &said)
}
