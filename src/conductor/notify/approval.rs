//! Signed answer links for one approval request: `POST
//! /v1/approvals/<request_id>/<decision>?exp=<unix s>&sig=<hex>`, where `sig` is
//! HMAC-SHA256 over `<request_id>\n<decision>\n<exp>` with a per-node key generated once
//! and kept 0600 under the state dir (`notify-approval-key.json`) (never the bearer token). A link answers that request
//! with that decision until `exp` (the request's deadline, at most [`MAX_TTL_S`] away);
//! any other request id, decision or expiry breaks the signature.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

use baa::common::client::encode_component;
use baa::common::store::{JsonStore, StoreError};
use baa::common::time::{ms_from_rfc3339, now_ms};

use super::sign::{hex, hmac_hex, verify_hex};

/// The key file under the state dir: a JSON string of 64 hex digits, 0600.
pub const KEY_FILE: &str = "notify-approval-key.json";
/// A link never lives longer than this, whatever the request's deadline.
pub const MAX_TTL_S: u64 = 24 * 3600;
pub const DECISIONS: &[&str] = &["accept", "decline"];

/// Why a link is refused (each a 403 with its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The signature does not match (tampered, or another request, decision or expiry).
    BadSignature,
    Expired,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::BadSignature => "approval_link_invalid",
            Refusal::Expired => "approval_link_expired",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::BadSignature => {
                "This approval link is not valid for this request and decision (its signature does not match)."
            }
            Refusal::Expired => "This approval link has expired.",
        })
    }
}

pub struct LinkKey {
    key: Vec<u8>,
}

impl LinkKey {
    /// The node's key, made (32 random bytes as hex) the first time. Created with
    /// create-if-absent, so a standby starting at the same moment on the same state dir
    /// ends up with the same key.
    pub fn load_or_create(store: &JsonStore) -> Result<LinkKey, StoreError> {
        if let Some(key) = store.read::<String>(KEY_FILE)?.filter(|k| k.len() >= 32) {
            return Ok(LinkKey {
                key: key.into_bytes(),
            });
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| StoreError::Io {
                path: store.path(KEY_FILE),
                source: std::io::Error::other("the OS random source failed"),
            })?;
        let fresh = hex(&bytes);
        if store.create(KEY_FILE, &fresh)? {
            return Ok(LinkKey {
                key: fresh.into_bytes(),
            });
        }
        // Another process made it first.
        match store.read::<String>(KEY_FILE)? {
            Some(key) if key.len() >= 32 => Ok(LinkKey {
                key: key.into_bytes(),
            }),
            _ => Err(StoreError::Io {
                path: store.path(KEY_FILE),
                source: std::io::Error::other("the approval-link key file is not a key"),
            }),
        }
    }

    /// A key for this process only (the key file could not be written).
    pub fn ephemeral() -> LinkKey {
        let mut bytes = [0u8; 32];
        // Without randomness no link can be trusted: an empty key never verifies a link
        // made before, and links made with it are refused after a restart anyway.
        let _ = SystemRandom::new().fill(&mut bytes);
        LinkKey {
            key: hex(&bytes).into_bytes(),
        }
    }

    #[cfg(test)]
    pub fn fixed(key: &[u8]) -> LinkKey {
        LinkKey { key: key.to_vec() }
    }

    fn message(request_id: &str, decision: &str, exp: u64) -> String {
        format!("{request_id}\n{decision}\n{exp}")
    }

    /// When a link for a request with `deadline_at` expires (unix seconds).
    pub fn expiry(deadline_at: Option<&str>) -> u64 {
        let cap = now_ms() / 1000 + MAX_TTL_S;
        deadline_at
            .and_then(ms_from_rfc3339)
            .map(|ms| ms / 1000)
            .map_or(cap, |d| d.min(cap))
    }

    /// `<base>/v1/approvals/<request_id>/<decision>?exp=…&sig=…`.
    pub fn link(&self, base: &str, request_id: &str, decision: &str, exp: u64) -> String {
        let sig = hmac_hex(
            &self.key,
            Self::message(request_id, decision, exp).as_bytes(),
        );
        format!(
            "{}/v1/approvals/{}/{decision}?exp={exp}&sig={sig}",
            base.trim_end_matches('/'),
            encode_component(request_id)
        )
    }

    /// Checks a link's parts (the signature first: an expiry is only trusted once signed).
    pub fn check(
        &self,
        request_id: &str,
        decision: &str,
        exp: &str,
        sig: &str,
        now_s: u64,
    ) -> Result<(), Refusal> {
        let msg = Self::message(
            request_id,
            decision,
            exp.parse::<u64>().map_err(|_| Refusal::BadSignature)?,
        );
        if !DECISIONS.contains(&decision) || !verify_hex(&self.key, msg.as_bytes(), sig) {
            return Err(Refusal::BadSignature);
        }
        if exp.parse::<u64>().unwrap_or(0) <= now_s {
            return Err(Refusal::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(link: &str) -> (String, String, String) {
        let (_, q) = link.split_once('?').unwrap();
        let mut exp = String::new();
        let mut sig = String::new();
        for kv in q.split('&') {
            let (k, v) = kv.split_once('=').unwrap();
            match k {
                "exp" => exp = v.into(),
                "sig" => sig = v.into(),
                _ => {}
            }
        }
        (link.to_string(), exp, sig)
    }

    #[test]
    fn a_link_answers_its_request_and_decision_until_it_expires() {
        let k = LinkKey::fixed(b"0123456789abcdef0123456789abcdef");
        let (link, exp, sig) = parts(&k.link("http://h:1/", "req 1", "accept", 2000));
        assert!(
            link.starts_with("http://h:1/v1/approvals/req%201/accept?exp=2000&sig="),
            "{link}"
        );
        assert_eq!(k.check("req 1", "accept", &exp, &sig, 1999), Ok(()));
        assert_eq!(
            k.check("req 1", "accept", &exp, &sig, 2000),
            Err(Refusal::Expired)
        );
        assert_eq!(
            k.check("req 2", "accept", &exp, &sig, 1),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            k.check("req 1", "decline", &exp, &sig, 1),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            k.check("req 1", "accept", "3000", &sig, 1),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            k.check("req 1", "accept", "x", &sig, 1),
            Err(Refusal::BadSignature)
        );
        let other = LinkKey::fixed(b"another key another key another k");
        assert_eq!(
            other.check("req 1", "accept", &exp, &sig, 1),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn expiry_is_the_deadline_capped_at_a_day() {
        let now = now_ms() / 1000;
        assert!(LinkKey::expiry(None) >= now + MAX_TTL_S - 1);
        assert_eq!(
            LinkKey::expiry(Some("2001-01-01T00:00:00.000Z")),
            978_307_200
        );
        assert!(LinkKey::expiry(Some("2999-01-01T00:00:00.000Z")) <= now + MAX_TTL_S + 1);
    }
}
