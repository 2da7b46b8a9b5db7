//! Which MCP protocol revisions this server speaks, and what each one allows.
//!
//! Offered: 2025-11-25 (the newest revision with the `initialize` handshake that the
//! official SDKs negotiate) and 2025-06-18 (the one before it; codex 0.169 asks for it).
//! 2025-03-26 is also accepted when a client asks for it, because it is the one revision
//! with JSON-RPC batches. A client asking for anything else gets the newest and decides.

/// Newest first; the first is what an unknown request is answered with.
pub const SUPPORTED: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// A negotiated revision (always one of [`SUPPORTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(&'static str);

impl Version {
    /// The client's wish if we speak it, else our newest.
    pub fn negotiate(requested: &str) -> Self {
        Self::known(requested).unwrap_or(Version(SUPPORTED[0]))
    }

    /// The revision named `s`, when it is one we speak.
    pub fn known(s: &str) -> Option<Self> {
        SUPPORTED.iter().find(|v| **v == s).map(|v| Version(v))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// JSON-RPC batches exist only in 2025-03-26 (2025-06-18 removed them).
    pub fn allows_batches(self) -> bool {
        self.0 == "2025-03-26"
    }

    /// Tool `outputSchema` and results' `structuredContent` came in 2025-06-18.
    pub fn has_structured_output(self) -> bool {
        self.0 >= "2025-06-18"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_keeps_a_known_wish_and_answers_the_newest_otherwise() {
        assert_eq!(Version::negotiate("2025-06-18").as_str(), "2025-06-18");
        assert_eq!(Version::negotiate("2025-03-26").as_str(), "2025-03-26");
        for other in ["2024-11-05", "2099-01-01", "", "zzz"] {
            assert_eq!(Version::negotiate(other).as_str(), "2025-11-25", "{other}");
        }
    }

    #[test]
    fn features_follow_the_revision() {
        let v = |s| Version::known(s).unwrap();
        assert!(v("2025-03-26").allows_batches());
        assert!(!v("2025-06-18").allows_batches() && !v("2025-11-25").allows_batches());
        assert!(!v("2025-03-26").has_structured_output());
        assert!(v("2025-06-18").has_structured_output() && v("2025-11-25").has_structured_output());
    }
}
