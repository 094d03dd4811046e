//! Well-formed tokens that must not verify: wrong key, another user, another app,
//! expired by one second, and every kind of edit after signing (tampered `TLS.sig`,
//! changed identifier / numbers / userbuf, userbuf added or removed).

mod common;

use common::vectors::VECTORS;
use common::{b64, signed_object, wrap, APP, KEY};
use fanout_auth::codec::decode_token;
use fanout_auth::{gen_usersig, gen_usersig_with_userbuf, verify_usersig, AuthError};
use serde_json::{Map, Value};

const T: u64 = 1_700_000_000;

/// Re-wraps a vector's JSON after an edit, keeping Python's exact formatting.
fn edit_json(token: &str, edit: impl FnOnce(&str) -> String) -> String {
    let json = String::from_utf8(decode_token(token).expect("decodes")).expect("utf-8");
    let edited = edit(&json);
    assert_ne!(edited, json, "edit must change something");
    wrap(edited.as_bytes(), 6)
}

fn edit_object(m: &Map<String, Value>, field: &str, value: Value) -> String {
    let mut m = m.clone();
    m.insert(field.into(), value);
    wrap(Value::Object(m).to_string().as_bytes(), 6)
}

#[test]
fn wrong_key_is_a_bad_signature() {
    for v in VECTORS {
        for key in [
            "",
            "wrong",
            &v.key.to_uppercase(),
            &v.key[..v.key.len() - 1],
            &format!("{} ", v.key),
        ] {
            assert_eq!(
                verify_usersig(v.sig, v.sdkappid, key, v.identifier, v.valid_at),
                Err(AuthError::BadSignature),
                "{} key {key:?}",
                v.id
            );
        }
    }
    // The key is used as written, not hex-decoded.
    let token = gen_usersig(APP, KEY, "u", 60, T);
    let hex_decoded: String = (0..KEY.len())
        .step_by(2)
        .map(|i| char::from(u8::from_str_radix(&KEY[i..i + 2], 16).unwrap_or(0) % 128))
        .collect();
    assert_eq!(
        verify_usersig(&token, APP, &hex_decoded, "u", T),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn other_identifier_and_other_app() {
    for v in VECTORS {
        for other in ["", "xiaojun2", "xiaoju", "someone", "xiaojun "] {
            assert_eq!(
                verify_usersig(v.sig, v.sdkappid, v.key, other, v.valid_at),
                Err(AuthError::IdentifierMismatch),
                "{} as {other:?}",
                v.id
            );
        }
        for app in [0, v.sdkappid - 1, v.sdkappid + 1, u32::MAX] {
            assert_eq!(
                verify_usersig(v.sig, app, v.key, v.identifier, v.valid_at),
                Err(AuthError::SdkAppIdMismatch),
                "{} for app {app}",
                v.id
            );
        }
    }
}

#[test]
fn expired_by_one_second() {
    for (expire, time) in [(0, T), (1, T), (86_400, T), (60, 0)] {
        let token = gen_usersig(APP, KEY, "u", expire, time);
        assert!(verify_usersig(&token, APP, KEY, "u", time + expire).is_ok());
        let e = verify_usersig(&token, APP, KEY, "u", time + expire + 1);
        assert_eq!(
            e,
            Err(AuthError::Expired {
                expires_at: time + expire,
                now: time + expire + 1
            })
        );
        assert_eq!(e.map(drop).unwrap_err().code(), "expired");
        // Not-yet-valid tokens (now before TLS.time) are accepted, as upstream does.
        assert!(verify_usersig(&token, APP, KEY, "u", time.saturating_sub(10)).is_ok());
    }
}

#[test]
fn tampered_tls_sig() {
    let v = &VECTORS[0];
    let sig = v.tls_sig_b64;
    // Change one base64 character in the middle (the value stays valid base64).
    for i in [0, 5, 20, 40] {
        let c = sig.as_bytes()[i];
        let repl = if c == b'A' { "B" } else { "A" };
        let tampered = format!("{}{}{}", &sig[..i], repl, &sig[i + 1..]);
        let token = edit_json(v.sig, |j| j.replace(sig, &tampered));
        assert_eq!(
            verify_usersig(&token, v.sdkappid, v.key, v.identifier, v.valid_at),
            Err(AuthError::BadSignature),
            "sig char {i}"
        );
    }
    // Wrong length (31 and 33 bytes, valid base64), empty, and an HMAC of something else.
    for replacement in [
        b64(&[0u8; 31]),
        b64(&[0u8; 33]),
        String::new(),
        VECTORS[1].tls_sig_b64.to_string(),
    ] {
        let token = edit_json(v.sig, |j| j.replace(sig, &replacement));
        assert_eq!(
            verify_usersig(&token, v.sdkappid, v.key, v.identifier, v.valid_at),
            Err(AuthError::BadSignature),
            "sig {replacement:?}"
        );
    }
}

#[test]
fn claims_edited_after_signing() {
    let v = &VECTORS[1]; // with userbuf "abc"
    let edits = [
        ("userbuf changed", "\"YWJj\"", "\"YWJk\""),
        ("userbuf emptied", "\"YWJj\"", "\"\""),
        ("userbuf removed", "\"TLS.userbuf\": \"YWJj\", ", ""),
        ("userbuf null", "\"YWJj\"", "null"),
        ("expire extended", "15552000", "15552001"),
        ("time moved", "1700000000", "1700000001"),
        ("time as different string", "1700000000", "\"1700000001\""),
        ("identifier case changed", "\"xiaojun\"", "\"Xiaojun\""),
    ];
    for (what, from, to) in edits {
        let token = edit_json(v.sig, |j| j.replace(from, to));
        assert_eq!(
            verify_usersig(&token, v.sdkappid, v.key, v.identifier, v.valid_at),
            Err(AuthError::BadSignature),
            "{what}"
        );
    }
    // The renamed sdkappid is caught as a mismatch before the HMAC; signed for a
    // matching app but then edited, it is a bad signature.
    let token = edit_json(v.sig, |j| j.replace("1400000000", "1400000001"));
    assert_eq!(
        verify_usersig(&token, 1400000001, v.key, v.identifier, v.valid_at),
        Err(AuthError::BadSignature)
    );
    // A userbuf added to a token that had none.
    let v1 = &VECTORS[0];
    let token = edit_json(v1.sig, |j| {
        j.replace("\"TLS.sig\"", "\"TLS.userbuf\": \"YWJj\", \"TLS.sig\"")
    });
    assert_eq!(
        verify_usersig(&token, v1.sdkappid, v1.key, v1.identifier, v1.valid_at),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn userbuf_edits_on_generated_tokens() {
    let token = gen_usersig_with_userbuf(APP, KEY, "u", 600, T, b"\x00\x01\x02");
    assert!(verify_usersig(&token, APP, KEY, "u", T).is_ok());
    let m = signed_object(KEY, "u", APP, 600, T, Some(b"\x00\x01\x02"));
    for replacement in ["AAEC", "AAED", "AAECAA==", ""] {
        let expect = if replacement == "AAEC" {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        };
        assert_eq!(
            verify_usersig(
                &edit_object(&m, "TLS.userbuf", replacement.into()),
                APP,
                KEY,
                "u",
                T
            )
            .map(drop),
            expect,
            "{replacement}"
        );
    }
}
