//! `TLS.sig`: HMAC-SHA256 over the canonical claim string.
//!
//! The key is the SDKSecretKey *as written*: the UTF-8 bytes of the string, not its
//! hex decoding. The signed content is
//!
//! ```text
//! TLS.identifier:<identifier>\n
//! TLS.sdkappid:<sdkappid>\n
//! TLS.time:<time>\n
//! TLS.expire:<expire>\n
//! [TLS.userbuf:<base64 userbuf>\n]
//! ```
//!
//! with numbers in plain decimal. Verification compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The string that `TLS.sig` authenticates.
pub(crate) fn content(
    identifier: &str,
    sdk_app_id: u32,
    time: u64,
    expire: u64,
    userbuf_b64: Option<&str>,
) -> String {
    let mut s = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdk_app_id}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(buf) = userbuf_b64 {
        s.push_str("TLS.userbuf:");
        s.push_str(buf);
        s.push('\n');
    }
    s
}

fn mac(key: &str, content: &str) -> HmacSha256 {
    // HMAC takes keys of any length (long keys are hashed first); `new_from_slice`
    // only exists with a `Result` because the trait is shared with fixed-key MACs.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(content.as_bytes());
    mac
}

/// HMAC-SHA256 of `content` under `key`.
pub(crate) fn sign(key: &str, content: &str) -> [u8; 32] {
    mac(key, content).finalize().into_bytes().into()
}

/// Whether `sig` is the HMAC-SHA256 of `content` under `key` (constant time in the
/// contents; the length is not secret).
pub(crate) fn matches(key: &str, content: &str, sig: &[u8]) -> bool {
    let expected = sign(key, content);
    bool::from(expected.as_slice().ct_eq(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_layout() {
        assert_eq!(
            content("u", 1, 2, 3, None),
            "TLS.identifier:u\nTLS.sdkappid:1\nTLS.time:2\nTLS.expire:3\n"
        );
        assert_eq!(
            content("u", 1, 2, 3, Some("YWJj")),
            "TLS.identifier:u\nTLS.sdkappid:1\nTLS.time:2\nTLS.expire:3\nTLS.userbuf:YWJj\n"
        );
    }

    #[test]
    fn matches_checks_every_byte_and_the_length() {
        let sig = sign("k", "c");
        assert!(matches("k", "c", &sig));
        assert!(!matches("k", "c", &sig[..31]));
        assert!(!matches("K", "c", &sig));
        for i in 0..sig.len() {
            let mut bad = sig;
            bad[i] ^= 1;
            assert!(!matches("k", "c", &bad));
        }
    }
}
