//! HMAC-SHA256 (ring's, already in the build through rustls): the webhook signature and
//! the approval links.

use ring::hmac;

/// Lower-case hex of HMAC-SHA256(`key`, `msg`).
pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    hex(tag.as_ref())
}

/// Whether `given_hex` is HMAC-SHA256(`key`, `msg`), compared in constant time.
pub fn verify_hex(key: &[u8], msg: &[u8], given_hex: &str) -> bool {
    let Some(given) = unhex(given_hex) else {
        return false;
    };
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), msg, &given).is_ok()
}

/// The string a webhook signature covers: `<timestamp>.<body>` (the timestamp is the
/// `X-Baa-Timestamp` header, unix seconds), so a captured delivery cannot be replayed
/// later with a fresh timestamp.
pub fn webhook_signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!("sha256={}", hmac_hex(secret.as_bytes(), &msg))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1 and 2 (HMAC-SHA-256).
    #[test]
    fn rfc4231_vectors() {
        assert_eq!(
            hmac_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_the_tag_and_refuses_tampering() {
        let tag = hmac_hex(b"k", b"msg");
        assert!(verify_hex(b"k", b"msg", &tag));
        assert!(!verify_hex(b"k", b"msg2", &tag));
        assert!(!verify_hex(b"k", b"msg", &tag[1..]));
        assert!(!verify_hex(b"k", b"msg", "zz"));
        assert_eq!(
            webhook_signature("s", 10, b"{}"),
            format!("sha256={}", hmac_hex(b"s", b"10.{}"))
        );
    }
}
