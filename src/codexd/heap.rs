//! Keeping glibc from holding on to the memory of large, short-lived replies: the session
//! list and the status list every open session, megabytes of `Value`s and a body of
//! several MiB with 2,000 sessions. glibc keeps freed chunks in its arenas, and the body,
//! carved from the space the freed tree left, stays resident after it is sent. One listing
//! left codexd's RSS at about 70 MiB instead of under 30 (`scripts/bench/codexd-sessions.sh`):
//! not a leak (the next listing reuses it), but codexd is polled for its status all day.
//! So a large listing asks the ticker for a trim a second later, when the reply has been
//! built, sent and freed (a trim while it is under way would miss it).

use std::sync::atomic::{AtomicU8, Ordering};

/// Listings of more sessions than this ask for a trim (smaller ones are cheap).
pub const LARGE_LISTING: usize = 256;

/// Ticker ticks (100 ms) from a large listing to its trim.
const TRIM_AFTER_TICKS: u8 = 10;

/// Ticks left until the trim; 0: none due.
static TRIM_IN: AtomicU8 = AtomicU8::new(0);

/// A reply listing `sessions` sessions is being built: trim soon if it is large.
pub fn listed(sessions: usize) {
    if sessions > LARGE_LISTING {
        TRIM_IN.store(TRIM_AFTER_TICKS, Ordering::Relaxed);
    }
}

/// The ticker, every tick: returns the free pages of every malloc arena to the system
/// when a large listing's trim is due (`malloc_trim(0)`: milliseconds with a heap of tens of MiB). A
/// no-op where the allocator is not glibc's.
pub fn trim_if_due() {
    let before = TRIM_IN.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    if before != Ok(1) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only works on the allocator's own free lists; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
