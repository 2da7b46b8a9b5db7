//! The one start-up sequence of the three daemons: logging, signal handlers, the
//! open-files limit, bind, the daemon's own start, the single `listening on` line on
//! stdout, wait for SIGTERM/SIGINT, and a stop that finishes within a bound.
//!
//! Each daemon supplies only what differs: the address to bind, a start function that
//! turns the bound listeners into a running [`Service`], and how long its stop may take.
//! A Tailscale address brings a loopback listener along (see `common::listen`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use crate::common::cli;
use crate::common::listen::{self, Bound};
use crate::common::logging;
use crate::common::proc::raise_nofile_limit;
use crate::common::signals::{self, StopFlag};

/// A started daemon: everything that runs until the stop signal.
pub trait Service {
    /// Stops accepting, lets in-flight work finish within the daemon's grace, joins the
    /// daemon's threads and writes its state. Called once, after the stop signal.
    fn stop(self: Box<Self>);
}

/// What differs between the daemons' start-ups.
pub struct Startup {
    /// `baa-conductor`; prefixes the announcement and every start-up error.
    pub binary: &'static str,
    /// `host:port` to bind; port 0 picks a free one (tests read it from the announcement).
    /// A Tailscale address also binds `127.0.0.1` at the same port.
    pub bind: String,
    /// Upper bound of [`Service::stop`]. Past it the process exits 1 anyway: a stop that
    /// hangs would otherwise wait for launchd's SIGKILL and lose the log line saying why.
    pub stop_bound: Duration,
}

/// Runs a daemon from bind to exit. `start` gets the bound listeners (serve them with
/// `listen::Serving`) and the stop flag (set by SIGTERM/SIGINT; a daemon may clone it into
/// its loops). Exit codes: 0 after a clean stop, 1 when start-up fails.
pub fn run<F, E>(s: Startup, start: F) -> ExitCode
where
    F: FnOnce(Bound, &StopFlag) -> Result<Box<dyn Service>, E>,
    E: std::fmt::Display,
{
    logging::init();
    let fail = |message: String| {
        cli::error_line(s.binary, &message);
        ExitCode::FAILURE
    };
    // Installed before binding so a stop sent right after the announcement is never lost.
    let stop = StopFlag::new();
    if let Err(e) = signals::install(&stop) {
        return fail(format!("cannot install signal handlers: {e}"));
    }
    // Each connection holds a descriptor or two; macOS starts launchd jobs at 256.
    match raise_nofile_limit() {
        Ok(n) => log::debug!("open-files limit: {n}"),
        Err(e) => log::warn!("could not raise the open-files limit: {e}"),
    }
    let bound = match listen::bind(&s.bind) {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    let Some(announced) = bound.announced() else {
        return fail(format!("nothing bound for {}", s.bind));
    };
    let listening = bound
        .sockets
        .iter()
        .map(|(_, a)| format!("http://{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let service = match start(bound, &stop) {
        Ok(svc) => svc,
        Err(e) => return fail(e.to_string()),
    };
    announce(s.binary, announced);
    logging::event(
        "daemon.started",
        &[
            ("binary", &s.binary),
            ("listen", &listening),
            ("version", &env!("CARGO_PKG_VERSION")),
            ("pid", &std::process::id()),
        ],
    );

    while !stop.sleep(Duration::from_secs(3600)) {}
    logging::event(
        "daemon.stopping",
        &[
            ("binary", &s.binary),
            ("bound_ms", &s.stop_bound.as_millis()),
        ],
    );
    let watchdog = Watchdog::arm(s.binary, s.stop_bound);
    service.stop();
    watchdog.disarm();
    logging::event("daemon.stopped", &[("binary", &s.binary)]);
    ExitCode::SUCCESS
}

/// The one line on stdout tests and scripts wait for: `<binary> listening on
/// http://HOST:PORT`, with the port actually bound. Logs say other things, so a terminal
/// showing both streams shows it once.
fn announce(binary: &str, bound: SocketAddr) {
    let line = format!("{binary} listening on http://{bound}\n");
    if let Err(e) = cli::write_stdout(&line) {
        log::warn!("cannot write the listening line to stdout: {e}");
    }
}

/// Ends the process if the stop takes longer than its bound.
struct Watchdog {
    done: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn arm(binary: &'static str, bound: Duration) -> Watchdog {
        let (done, rx) = bounded::<()>(1);
        let thread = thread::Builder::new()
            .name("stop-watchdog".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(bound) {
                    log::error!(
                        "{binary} did not stop within {} ms; exiting now",
                        bound.as_millis()
                    );
                    std::process::exit(1);
                }
            })
            .map_err(|e| log::warn!("no stop watchdog (cannot start its thread): {e}"))
            .ok();
        Watchdog { done, thread }
    }

    fn disarm(mut self) {
        let _ = self.done.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
