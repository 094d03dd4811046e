//! Tokens shaped the way other TLS-Sig-API v2 libraries shape them must verify:
//! any key order, no spaces or pretty-printed, `\/` and `\uXXXX` escapes, any zlib
//! level (0 = stored blocks, 1, 9), numbers as decimal strings, the standard base64
//! alphabet or a mix, missing padding, extra unknown keys, `"TLS.userbuf": null`.
//! Each variant carries a correct HMAC, so each must verify to the same claims.

mod common;

use common::vectors::VECTORS;
use common::{signed_object, wrap, APP, KEY};
use fanout_auth::{verify_private_map_key, verify_usersig, AuthError, Room, UserSigInfo};
use serde_json::{Map, Value};

const T: u64 = 1_700_000_000;
const NOW: u64 = T + 100;

fn expected(userbuf: Option<&[u8]>) -> UserSigInfo {
    UserSigInfo {
        identifier: "xiaojun".into(),
        sdk_app_id: APP,
        time: T,
        expire: 86_400,
        expires_at: T + 86_400,
        userbuf: userbuf.map(<[u8]>::to_vec),
    }
}

fn object(userbuf: Option<&[u8]>) -> Map<String, Value> {
    signed_object(KEY, "xiaojun", APP, 86_400, T, userbuf)
}

/// Serializes members compactly in exactly the given order.
fn compact_in_order(m: &Map<String, Value>, order: &[&str]) -> String {
    let members: Vec<String> = order
        .iter()
        .filter_map(|k| m.get(*k).map(|v| format!("{}:{}", Value::from(*k), v)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn verify_json(json: &str, userbuf: Option<&[u8]>) {
    for level in [0, 1, 6, 9] {
        let token = wrap(json.as_bytes(), level);
        assert_eq!(
            verify_usersig(&token, APP, KEY, "xiaojun", NOW),
            Ok(expected(userbuf)),
            "level {level}: {json}"
        );
    }
}

const GO_ORDER: [&str; 7] = [
    "TLS.ver",
    "TLS.identifier",
    "TLS.sdkappid",
    "TLS.expire",
    "TLS.time",
    "TLS.userbuf",
    "TLS.sig",
];

#[test]
fn compact_json_any_key_order() {
    let ub: &[u8] = b"\x00\x01binary\xff";
    for userbuf in [None, Some(ub)] {
        let m = object(userbuf);
        let mut order = GO_ORDER;
        verify_json(&compact_in_order(&m, &order), userbuf);
        order.reverse();
        verify_json(&compact_in_order(&m, &order), userbuf);
        order.rotate_left(3);
        verify_json(&compact_in_order(&m, &order), userbuf);
        // serde_json's own compact and pretty output.
        verify_json(&Value::Object(m.clone()).to_string(), userbuf);
        verify_json(
            &serde_json::to_string_pretty(&m).expect("serialize"),
            userbuf,
        );
    }
}

#[test]
fn escaped_slashes_and_unicode_escapes() {
    // v7's userbuf and sig both contain '/'; PHP's json_encode writes "\/".
    let v7 = &VECTORS[5];
    let escaped = v7.decoded_json.replace('/', "\\/");
    assert!(escaped.matches("\\/").count() >= 4);
    let token = wrap(escaped.as_bytes(), 6);
    let info = verify_usersig(&token, v7.sdkappid, v7.key, v7.identifier, v7.valid_at)
        .expect("escaped slashes verify");
    assert_eq!(info.expires_at, v7.last_valid_second);
    verify_private_map_key(
        &token,
        v7.sdkappid,
        v7.key,
        v7.identifier,
        Room::Numeric(4294967294),
        v7.valid_at,
    )
    .expect("PMK with escaped slashes verifies");

    // Keys and values spelled with \u escapes (uppercase and lowercase hex).
    let v1 = &VECTORS[0];
    let json = v1
        .decoded_json
        .replace("\"TLS.sig\"", "\"TLS.\\u0073ig\"")
        .replace("\"xiaojun\"", "\"\\u0078iao\\u006Aun\"");
    verify_usersig(
        &wrap(json.as_bytes(), 9),
        v1.sdkappid,
        v1.key,
        "xiaojun",
        v1.valid_at,
    )
    .expect("unicode escapes verify");
}

#[test]
fn numbers_as_decimal_strings() {
    let ub: &[u8] = b"abc";
    for userbuf in [None, Some(ub)] {
        let fields = ["TLS.sdkappid", "TLS.expire", "TLS.time"];
        for mask in 1..8u8 {
            let mut m = object(userbuf);
            for (i, f) in fields.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    let n = m[*f].as_u64().expect("number");
                    m.insert((*f).into(), Value::String(n.to_string()));
                }
            }
            verify_json(&compact_in_order(&m, &GO_ORDER), userbuf);
        }
    }
}

#[test]
fn base64_alphabets_and_padding() {
    for v in VECTORS {
        let standard = v.sig.replace('*', "+").replace('-', "/").replace('_', "=");
        let unpadded = v.sig.trim_end_matches('_');
        let mixed: String = v
            .sig
            .chars()
            .enumerate()
            .map(|(i, c)| match (i % 2, c) {
                (0, '*') => '+',
                (0, '-') => '/',
                (0, '_') => '=',
                _ => c,
            })
            .collect();
        for token in [standard.as_str(), unpadded, &mixed] {
            let info = verify_usersig(token, v.sdkappid, v.key, v.identifier, v.valid_at)
                .unwrap_or_else(|e| panic!("{}: {token}: {e}", v.id));
            assert_eq!(info.expires_at, v.last_valid_second);
        }
    }
}

#[test]
fn extra_keys_and_null_userbuf_are_tolerated() {
    let mut m = object(None);
    m.insert("TLS.userbuf".into(), Value::Null);
    m.insert(
        "x-extra".into(),
        serde_json::json!({"nested": [1, 2, {"TLS.sig": 0}]}),
    );
    verify_json(&Value::Object(m).to_string(), None);
}

#[test]
fn extra_keys_are_not_signed_so_they_carry_no_authority() {
    // Documented behaviour: unknown keys are ignored entirely; they never reach the
    // returned info, so nothing can be smuggled through them.
    let mut m = object(None);
    m.insert("TLS.admin".into(), Value::Bool(true));
    let token = wrap(Value::Object(m).to_string().as_bytes(), 6);
    assert_eq!(
        verify_usersig(&token, APP, KEY, "xiaojun", NOW),
        Ok(expected(None))
    );
}

#[test]
fn identifier_is_case_insensitive_but_reported_as_signed() {
    let token = wrap(Value::Object(object(None)).to_string().as_bytes(), 6);
    for asked in ["xiaojun", "XIAOJUN", "XiaoJun"] {
        let info = verify_usersig(&token, APP, KEY, asked, NOW).expect("case-insensitive");
        assert_eq!(info.identifier, "xiaojun");
    }
    // Only ASCII folds: non-ASCII letters must match exactly.
    let m = signed_object(KEY, "élan", APP, 60, T, None);
    let token = wrap(Value::Object(m).to_string().as_bytes(), 6);
    assert!(verify_usersig(&token, APP, KEY, "ÉLAN", T).is_err());
    assert_eq!(
        verify_usersig(&token, APP, KEY, "ÉLAN", T),
        Err(AuthError::IdentifierMismatch)
    );
    assert!(verify_usersig(&token, APP, KEY, "éLAN", T).is_ok());
}
