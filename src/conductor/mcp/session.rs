//! MCP sessions: the id handed out at `initialize`, the protocol revision it agreed, and
//! when it was last used. Bounded: at most `max` at once, and one unused for `idle` is
//! forgotten (its client gets 404 and initializes again, as the transport spec says).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use baa::common::sync::lock;

use super::version::Version;

pub struct Sessions {
    max: usize,
    idle: Duration,
    live: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    version: Version,
    last_used: Instant,
}

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// `max` sessions are in use and none has idled out.
    Full { max: usize, idle: Duration },
    /// The OS random source failed (the id must not be guessable).
    NoRandom,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Full { max, idle } => write!(
                f,
                "Too many MCP sessions ({max}, BAA_MCP_MAX_SESSIONS). End one with DELETE /mcp \
                 (Mcp-Session-Id header) or wait: a session unused for {}s ends by itself.",
                idle.as_secs()
            ),
            OpenError::NoRandom => write!(f, "Cannot make a session id: no OS random source."),
        }
    }
}

impl Sessions {
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            max: max.max(1),
            idle,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// A new session at `version`; idle ones are dropped first to make room.
    pub fn open(&self, version: Version, now: Instant) -> Result<String, OpenError> {
        let mut live = lock(&self.live);
        self.expire(&mut live, now);
        if live.len() >= self.max {
            return Err(OpenError::Full {
                max: self.max,
                idle: self.idle,
            });
        }
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| OpenError::NoRandom)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        live.insert(
            id.clone(),
            Entry {
                version,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// The session's revision, marking it used; None when unknown or idled out.
    pub fn touch(&self, id: &str, now: Instant) -> Option<Version> {
        let mut live = lock(&self.live);
        let idle = self.idle;
        match live.get_mut(id) {
            Some(e) if now.saturating_duration_since(e.last_used) < idle => {
                e.last_used = now;
                Some(e.version)
            }
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session; false when there was none by that id.
    pub fn close(&self, id: &str) -> bool {
        lock(&self.live).remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        lock(&self.live).len()
    }

    fn expire(&self, live: &mut HashMap<String, Entry>, now: Instant) {
        live.retain(|_, e| now.saturating_duration_since(e.last_used) < self.idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Version {
        Version::negotiate("2025-06-18")
    }

    #[test]
    fn ids_are_random_hex_and_known_until_closed() {
        let s = Sessions::new(4, Duration::from_secs(60));
        let t = Instant::now();
        let (a, b) = (s.open(v(), t).unwrap(), s.open(v(), t).unwrap());
        assert_ne!(a, b);
        assert!(
            a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
        assert_eq!(s.touch(&a, t), Some(v()));
        assert!(s.close(&a));
        assert!(!s.close(&a));
        assert_eq!(s.touch(&a, t), None);
        assert_eq!(s.touch("nope", t), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_bound_holds_until_an_idle_session_expires() {
        let idle = Duration::from_secs(60);
        let s = Sessions::new(2, idle);
        let t0 = Instant::now();
        let a = s.open(v(), t0).unwrap();
        let _b = s.open(v(), t0 + Duration::from_secs(30)).unwrap();
        let full = s.open(v(), t0 + Duration::from_secs(31)).unwrap_err();
        assert_eq!(full, OpenError::Full { max: 2, idle });
        assert!(full.to_string().contains("DELETE /mcp"), "{full}");
        // Used at 50 s, `a` outlives `b` (idle at 91 s); at 111 s it has been idle 61 s.
        assert!(s.touch(&a, t0 + Duration::from_secs(50)).is_some());
        assert!(s.open(v(), t0 + Duration::from_secs(91)).is_ok());
        assert_eq!(s.touch(&a, t0 + Duration::from_secs(111)), None);
        assert_eq!(s.len(), 1);
    }
}
