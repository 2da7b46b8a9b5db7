//! SIGTERM/SIGINT → a shared flag the daemon's main loop polls.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Set once a stop signal arrives; cloned into every part that must wind down.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst)
    }

    /// Sleeps up to `d`, waking early (in 50 ms steps) when the flag is set.
    /// Returns true if the flag is set.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        while !self.is_set() {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
        self.is_set()
    }
}

/// Routes SIGTERM and SIGINT to `flag` (async-signal-safe: the handler only stores a bool).
pub fn install(flag: &StopFlag) -> io::Result<()> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, flag.0.clone())?;
    }
    Ok(())
}
