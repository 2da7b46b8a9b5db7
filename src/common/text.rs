//! Cutting text short: to a byte budget without splitting a character (every capped
//! message, log value and stored excerpt), or to a number of characters (text shown to a
//! person: the status page, the task CLI's columns).

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // `str::floor_char_boundary` is newer than the crate's rust-version.
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The longest suffix of `s` that is at most `max` bytes and starts on a character boundary.
pub fn suffix(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `s` itself when it fits in `max` bytes, else its [`prefix`] with `…` marking the cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!("{}…", prefix(s, max))
}

/// `s` itself when it has at most `max` characters, else its first `max` with `…` after.
pub fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_never_splits_a_character() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
        assert_eq!(prefix("abc", 10), "abc");
        assert_eq!(prefix("", 0), "");
        assert_eq!(suffix("héllo", 4), "llo");
        assert_eq!(suffix("héllo", 5), "éllo");
        assert_eq!(suffix("abc", 10), "abc");
    }

    #[test]
    fn cut_marks_only_a_real_cut() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
        assert_eq!(cut("ééé", 3), "é…");
        assert_eq!(cut_chars("ééé", 3), "ééé");
        assert_eq!(cut_chars("éééé", 3), "ééé…");
        assert_eq!(cut_chars("ab", 0), "…");
    }
}
