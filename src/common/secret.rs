//! Token comparison that does not leak how many leading bytes matched.

/// Compares `given` with `expected` in time that depends only on their lengths.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    // Fold the length difference in instead of returning early, and always walk the
    // expected token's full length.
    let mut diff = (given.len() ^ expected.len()) as u64;
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= u64::from(g ^ e);
    }
    diff == 0
}

/// Placeholder values that must never open host operations.
pub fn is_placeholder_token(token: &str) -> bool {
    matches!(
        token.trim().to_ascii_lowercase().as_str(),
        "replace-me" | "changeme" | "change-me" | "your-token-here" | "token" | "secret"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }

    #[test]
    fn flags_placeholders() {
        assert!(is_placeholder_token("replace-me"));
        assert!(is_placeholder_token(" Replace-Me "));
        assert!(!is_placeholder_token("a-real-token-with-entropy"));
    }
}
