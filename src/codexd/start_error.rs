//! Why codexd did not start: each step of `serve::start_on` and `Core::open` that can fail,
//! with what the operator's one line needs.

use std::fmt;
use std::io;
use std::path::PathBuf;

use baa::common::dirlock::LockError;
use baa::common::store::StoreError;

#[derive(Debug)]
pub enum StartError {
    CreateDir {
        dir: PathBuf,
        source: io::Error,
    },
    /// Another codexd runs on the state dir.
    StateDirHeld {
        dir: PathBuf,
        pid: Option<u32>,
    },
    Lock(LockError),
    Listen {
        bind: String,
        source: io::Error,
    },
    Store(StoreError),
    Http(io::Error),
    Thread {
        name: &'static str,
        source: io::Error,
    },
    DemoModel(io::Error),
    DemoHome {
        home: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::CreateDir { dir, source } => {
                write!(f, "cannot create {}: {source}", dir.display())
            }
            StartError::StateDirHeld { dir, pid } => write!(
                f,
                "another baa-codexd{} already runs on the state dir {}; one codexd per state dir (stop that one first)",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                dir.display()
            ),
            StartError::Lock(e) => e.fmt(f),
            StartError::Listen { bind, source } => write!(f, "cannot listen on {bind}: {source}"),
            StartError::Store(e) => e.fmt(f),
            StartError::Http(e) => write!(f, "cannot start the HTTP server: {e}"),
            StartError::Thread { name, source } => {
                write!(f, "cannot start the {name} thread: {source}")
            }
            StartError::DemoModel(e) => {
                write!(f, "demo mode: cannot start the built-in model: {e}")
            }
            StartError::DemoHome { home, source } => {
                write!(f, "demo mode: cannot write {}: {source}", home.display())
            }
        }
    }
}

impl std::error::Error for StartError {}
