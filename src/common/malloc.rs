//! Start-up tuning of glibc's allocator, so a daemon's memory stays flat.
//!
//! A daemon here runs one short-lived thread per connection and per task run. glibc gives
//! threads their own malloc arenas (up to 8 per core) and a freed chunk goes back to the arena
//! that made it, where it mostly stays: over about 1,600 tasks the conductor grew from 3.8 to
//! 246 MiB, and stayed flat at about 11 MiB with `MALLOC_ARENA_MAX=1`. This was fragmentation
//! across arenas, not a leak. Nothing here is throughput-bound, so a couple of arenas cost
//! nothing measurable.
//!
//! Large blocks (a host-op read of several MiB, a big response) get the same treatment: glibc
//! raises its mmap threshold after the first large block is freed (up to 32 MiB), so later
//! large blocks come from an arena and stay there. A fixed threshold keeps them
//! in their own mappings, which go back to the system when freed.
//!
//! Other platforms (macOS's allocator, musl) are left alone. So is a process started with
//! `MALLOC_ARENA_MAX` set: an operator's (or a bench's) explicit choice wins.

/// Arenas shared by all threads.
pub const ARENA_MAX: i32 = 2;
/// Blocks at least this large get their own mapping (glibc's initial default, here kept
/// fixed).
pub const MMAP_THRESHOLD: i32 = 256 * 1024;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Arenas capped at [`ARENA_MAX`] and the mmap threshold fixed at [`MMAP_THRESHOLD`].
    Applied,
    /// `MALLOC_ARENA_MAX` was set in the environment; glibc already follows it.
    LeftToEnvironment,
    /// glibc refused a setting (mallopt returned 0).
    Refused,
    /// Not glibc: nothing to do.
    NotGlibc,
}

/// Applies the settings; call first thing at start-up, before other threads exist.
pub fn tune() -> Tuning {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return Tuning::LeftToEnvironment;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    // SAFETY: mallopt only changes allocator parameters; both are documented glibc options
    // with in-range values.
    let arenas = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) };
    // SAFETY: as above.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if arenas == 1 && mmap == 1 {
        Tuning::Applied
    } else {
        Tuning::Refused
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_settings() {
        // Applied twice is harmless; the test process's allocator keeps working.
        assert_eq!(apply(), Tuning::Applied);
        let v: Vec<u8> = vec![7; 4 * MMAP_THRESHOLD as usize];
        assert_eq!(v.iter().map(|b| *b as usize).sum::<usize>(), v.len() * 7);
    }
}
