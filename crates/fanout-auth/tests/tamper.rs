//! Exhaustive single-byte tampering of the official vectors.
//!
//! What is asserted, for every position and every replacement byte:
//!
//! * **Token string** (each position × each ASCII byte): verification succeeds
//!   *if and only if* the modified token still decodes — by an independent decoder
//!   in `common` — to exactly the original JSON bytes, and when it succeeds the
//!   returned claims equal the original claims. The only such changes are no-ops
//!   of the encoding: swapping a character for its alias in the other base64
//!   alphabet (`*`↔`+`, `-`↔`/`, `_`↔`=`), all of which are accepted, and changing
//!   the unused padding bits of the final deflate byte, which inflate ignores.
//! * **Decoded JSON** (each position × each of the 256 byte values, re-compressed
//!   and re-encoded): verification succeeds *if and only if* the modified document
//!   is semantically identical JSON (equal `serde_json::Value`, i.e. only
//!   insignificant whitespace or escape spelling changed), and then with identical
//!   claims. Every change to any claim, key, the signature or the syntax is rejected.

mod common;

use common::vectors::{Vector, VECTORS};
use common::{unwrap_token, wrap};
use fanout_auth::{verify_usersig, UserSigInfo};
use serde_json::Value;

fn verify(v: &Vector, token: &str) -> Result<UserSigInfo, fanout_auth::AuthError> {
    verify_usersig(token, v.sdkappid, v.key, v.identifier, v.valid_at)
}

fn is_alias(a: u8, b: u8) -> bool {
    matches!(
        (a, b),
        (b'*', b'+') | (b'+', b'*') | (b'-', b'/') | (b'/', b'-') | (b'_', b'=') | (b'=', b'_')
    )
}

#[test]
fn every_single_byte_change_of_a_token() {
    for v in [&VECTORS[0], &VECTORS[2]] {
        let original = verify(v, v.sig).expect("vector verifies");
        let original_json = unwrap_token(v.sig).expect("vector decodes");
        let (mut aliases, mut aliases_accepted) = (0usize, 0usize);
        for i in 0..v.sig.len() {
            for b in 0u8..128 {
                let old = v.sig.as_bytes()[i];
                if b == old {
                    continue;
                }
                let mut bytes = v.sig.as_bytes().to_vec();
                bytes[i] = b;
                let token = String::from_utf8(bytes).expect("ascii");
                let same_json = unwrap_token(&token).as_deref() == Some(&original_json[..]);
                let result = verify(v, &token);
                match &result {
                    Ok(info) => {
                        assert!(same_json, "{} pos {i} {old:?}->{b:?} accepted", v.id);
                        assert_eq!(info, &original, "{} pos {i}", v.id);
                    }
                    Err(_) => assert!(!same_json, "{} pos {i} {old:?}->{b:?} rejected", v.id),
                }
                if is_alias(old, b) {
                    aliases += 1;
                    aliases_accepted += usize::from(result.is_ok());
                }
            }
        }
        // Every alias swap is accepted. (Other accepted changes exist: v3's token has
        // a character covering the unused high bits of the final deflate byte, which
        // inflate ignores; the assertions above prove they decode identically.)
        assert!(aliases > 0, "{}: vector has alias characters", v.id);
        assert_eq!(aliases_accepted, aliases, "{}", v.id);
    }
}

#[test]
fn every_single_byte_change_of_the_decoded_json() {
    for v in [&VECTORS[0], &VECTORS[2]] {
        let original = verify(v, v.sig).expect("vector verifies");
        let json = v.decoded_json.as_bytes();
        let original_value: Value = serde_json::from_slice(json).expect("valid JSON");
        let mut accepted = 0usize;
        for i in 0..json.len() {
            for b in 0u8..=255 {
                if b == json[i] {
                    continue;
                }
                let mut modified = json.to_vec();
                modified[i] = b;
                let equivalent = serde_json::from_slice::<Value>(&modified).ok().as_ref()
                    == Some(&original_value);
                match verify(v, &wrap(&modified, 6)) {
                    Ok(info) => {
                        assert!(equivalent, "{} pos {i} -> {b:#04x} accepted", v.id);
                        assert_eq!(info, original);
                        accepted += 1;
                    }
                    Err(_) => assert!(!equivalent, "{} pos {i} -> {b:#04x} rejected", v.id),
                }
            }
        }
        // Python's separators put a space after every ':' and ',', each of which can
        // become '\t', '\n' or '\r': exactly those are accepted.
        let spaces = v.decoded_json.matches(", ").count() + v.decoded_json.matches(": ").count();
        assert_eq!(accepted, spaces * 3, "{}", v.id);
    }
}
