//! Short unique identifiers for requests, sessions and temp files.
//!
//! Uniqueness comes from time + pid + a process-wide counter, mixed so ids do not look
//! sequential. They are identifiers, not secrets.

use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new id such as `req_5f3a9c0d1e2b4a67`.
pub fn new_id(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = splitmix(nanos ^ (u64::from(std::process::id()) << 32) ^ splitmix(n));
    format!("{prefix}_{mixed:016x}")
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = super::new_id("req");
        let b = super::new_id("req");
        assert_ne!(a, b);
        assert!(a.starts_with("req_"), "{a}");
        assert_eq!(a.len(), 4 + 16, "{a}");
    }
}
