//! Keeping glibc from holding on to the memory of large, short-lived replies: the session
//! list and the status list every open session, megabytes of `Value`s and a body of
//! several MiB with 2,000 sessions. glibc keeps freed chunks in its arenas, and the body,
//! carved from the space the freed tree left, stays resident after it is sent. One listing
//! left codexd's RSS at about 70 MiB instead of under 30 (`scripts/bench/codexd-sessions.sh`):
//! not a leak (the next listing reuses it), but codexd is polled for its status all day.
//! So a large listing asks for a trim, which the ticker does within a second, once the
//! reply is sent and freed.

use std::sync::atomic::{AtomicBool, Ordering};

/// Listings of more sessions than this ask for a trim (smaller ones are cheap).
pub const LARGE_LISTING: usize = 256;

static TRIM_DUE: AtomicBool = AtomicBool::new(false);

/// A reply listing `sessions` sessions was built: trim soon if it was large.
pub fn listed(sessions: usize) {
    if sessions > LARGE_LISTING {
        TRIM_DUE.store(true, Ordering::Relaxed);
    }
}

/// At start: a fixed mmap threshold (128 KiB, glibc's default, which setting it stops
/// from rising after a large buffer is freed), so large buffers that need new memory are
/// mapped, and unmapped when freed.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once at start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The ticker: returns the free pages of every malloc arena to the system when a large
/// listing asked for it (`malloc_trim(0)`: milliseconds with a heap of tens of MiB). A
/// no-op where the allocator is not glibc's.
pub fn trim_if_due() {
    if !TRIM_DUE.swap(false, Ordering::Relaxed) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only works on the allocator's own free lists; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
