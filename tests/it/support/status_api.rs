//! A real `baa-status-api` on a free loopback port, observing the given conductor and codexd.

use super::daemon::{Daemon, Spawn, STATUS_API};

#[track_caller]
pub fn start(conductor: &str, codexd: &str) -> Daemon {
    Spawn::new(STATUS_API)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("BAA_CONDUCTOR_LOCAL_API", conductor)
        .args(["--codexd-local-api", codexd])
        .start()
}

/// [`start`]'s command line, not yet started (to add flags such as `--logs-dir`).
pub fn spawn(conductor: &str, codexd: &str) -> Spawn {
    Spawn::new(STATUS_API)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("BAA_CONDUCTOR_LOCAL_API", conductor)
        .args(["--codexd-local-api", codexd])
}
