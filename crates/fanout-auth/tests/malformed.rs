//! Hostile and broken input is rejected as `Malformed` — never a panic, never
//! unbounded memory: empty, non-base64, non-zlib, non-JSON, wrong shapes, missing
//! and mistyped fields, bad `TLS.ver`, out-of-range numbers, oversized tokens, zlib
//! bombs, truncated or padded zlib streams, bad checksums, preset dictionaries.

mod common;

use common::vectors::VECTORS;
use common::{b64, signed_object, to_token_alphabet, wrap, zlib, APP, KEY};
use fanout_auth::codec::{decode_token, MAX_JSON_LEN, MAX_TOKEN_LEN};
use fanout_auth::{verify_private_map_key, verify_usersig, AuthError, Room};
use serde_json::{Map, Value};

const T: u64 = 1_700_000_000;

fn check(token: &str) -> Result<(), AuthError> {
    verify_usersig(token, APP, KEY, "xiaojun", T).map(drop)
}

fn assert_malformed(token: &str, what: &str) {
    match check(token) {
        Err(AuthError::Malformed(detail)) => {
            assert!(!detail.is_empty(), "{what}");
            assert_eq!(AuthError::Malformed(detail).code(), "malformed");
        }
        other => panic!("{what}: expected malformed, got {other:?}"),
    }
    // The PrivateMapKey path decodes the same way.
    assert!(
        matches!(
            verify_private_map_key(token, APP, KEY, "xiaojun", Room::Numeric(1), T),
            Err(AuthError::Malformed(_))
        ),
        "{what} (pmk)"
    );
}

fn good() -> Map<String, Value> {
    signed_object(KEY, "xiaojun", APP, 86_400, T, None)
}

fn token_of(m: &Map<String, Value>) -> String {
    wrap(Value::Object(m.clone()).to_string().as_bytes(), 6)
}

#[test]
fn sanity_the_baseline_token_verifies() {
    assert_eq!(check(&token_of(&good())), Ok(()));
}

#[test]
fn empty_and_non_base64() {
    for token in [
        "",
        " ",
        "!!!!",
        "eJyr Vgr",
        "eJyr\nVgr",
        "eJyré",
        "eJ%2B",
        "e",
        "eJy",
        "eJyrV",
        "====",
        "eJ_r",
        "\0",
    ] {
        assert_malformed(token, &format!("{token:?}"));
    }
    // A vector with one character appended or removed is no longer valid base64
    // or no longer a complete zlib stream.
    let v = VECTORS[0].sig;
    assert_malformed(&format!("{v}A"), "appended char");
    assert_malformed(&v[..v.len() - 3], "removed chars");
}

#[test]
fn base64_of_non_zlib() {
    for raw in [
        &b"hello world"[..],
        b"\x78\x9c",
        b"\x78\x9d\x00\x00",
        b"{\"TLS.ver\":\"2.0\"}",
        &[0u8; 64],
    ] {
        assert_malformed(&to_token_alphabet(&b64(raw)), &format!("{raw:?}"));
    }
    // Raw deflate and gzip framing are not zlib.
    let json = Value::Object(good()).to_string();
    let zl = zlib(json.as_bytes(), 6);
    assert_malformed(
        &to_token_alphabet(&b64(&zl[2..zl.len() - 4])),
        "raw deflate",
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, json.as_bytes()).expect("write");
    assert_malformed(&to_token_alphabet(&b64(&gz.finish().expect("gz"))), "gzip");
}

#[test]
fn broken_zlib_streams() {
    let json = Value::Object(good()).to_string();
    let zl = zlib(json.as_bytes(), 6);
    // Truncated anywhere (including just the checksum).
    for cut in [2, zl.len() / 2, zl.len() - 4, zl.len() - 1] {
        assert_malformed(
            &to_token_alphabet(&b64(&zl[..cut])),
            &format!("cut at {cut}"),
        );
    }
    // Trailing data after the stream.
    let mut trailing = zl.clone();
    trailing.extend_from_slice(b"xx");
    assert_malformed(&to_token_alphabet(&b64(&trailing)), "trailing data");
    // Two concatenated streams.
    let mut twice = zl.clone();
    twice.extend_from_slice(&zl);
    assert_malformed(&to_token_alphabet(&b64(&twice)), "two streams");
    // Corrupted adler-32.
    let mut bad_sum = zl.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0x01;
    assert_malformed(&to_token_alphabet(&b64(&bad_sum)), "bad checksum");
    // Preset dictionary required.
    let mut c = flate2::Compress::new(flate2::Compression::default(), true);
    c.set_dictionary(b"TLS.identifier").expect("dictionary");
    let mut out = Vec::with_capacity(json.len() + 64);
    c.compress_vec(json.as_bytes(), &mut out, flate2::FlushCompress::Finish)
        .expect("compress");
    assert_eq!(out[1] & 0x20, 0x20, "FDICT set");
    assert_malformed(&to_token_alphabet(&b64(&out)), "preset dictionary");
}

#[test]
fn zlib_of_non_json_or_wrong_shape() {
    for doc in [
        "",
        "not json",
        "{",
        "{\"TLS.ver\": \"2.0\"",
        "[]",
        "[{\"TLS.ver\": \"2.0\"}]",
        "\"string\"",
        "42",
        "null",
        "true",
        "{}",
        "{\"TLS.ver\": \"2.0\"} trailing",
        "\u{feff}{}",
    ] {
        assert_malformed(&wrap(doc.as_bytes(), 6), &format!("{doc:?}"));
    }
    // Valid JSON followed by garbage, and invalid UTF-8 inside a string.
    let mut json = Value::Object(good()).to_string().into_bytes();
    json.extend_from_slice(b" }");
    assert_malformed(&wrap(&json, 6), "trailing brace");
    let json = Value::Object(good())
        .to_string()
        .replace("xiaojun", "xiao\u{1}jun");
    let mut bytes = json.into_bytes();
    let pos = bytes.iter().position(|&b| b == 1).expect("marker");
    bytes[pos] = 0xff;
    assert_malformed(&wrap(&bytes, 6), "invalid utf-8");
    // Raw control character inside a string.
    bytes[pos] = b'\n';
    assert_malformed(&wrap(&bytes, 6), "raw newline in string");
    // Deep nesting in an ignored member stays bounded (serde_json's recursion limit).
    let deep = format!("{{\"x\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_malformed(&wrap(deep.as_bytes(), 9), "deep nesting");
}

#[test]
fn missing_fields() {
    for field in [
        "TLS.ver",
        "TLS.identifier",
        "TLS.sdkappid",
        "TLS.expire",
        "TLS.time",
        "TLS.sig",
    ] {
        let mut m = good();
        m.remove(field);
        assert_malformed(&token_of(&m), field);
    }
}

#[test]
fn wrong_types_and_values() {
    let cases: Vec<(&str, Value)> = vec![
        ("TLS.ver", Value::from(2.0)),
        ("TLS.ver", Value::from(2)),
        ("TLS.ver", Value::from("1.0")),
        ("TLS.ver", Value::from("2")),
        ("TLS.ver", Value::from("2.00")),
        ("TLS.ver", Value::from(" 2.0")),
        ("TLS.ver", Value::Null),
        ("TLS.identifier", Value::from(42)),
        ("TLS.identifier", Value::Null),
        ("TLS.identifier", serde_json::json!(["xiaojun"])),
        ("TLS.sdkappid", Value::from(-1)),
        ("TLS.sdkappid", Value::from(1.4e9)),
        ("TLS.sdkappid", Value::from(4294967296u64)),
        ("TLS.sdkappid", Value::from("1400000000.0")),
        ("TLS.sdkappid", Value::from("01400000000")),
        ("TLS.sdkappid", Value::from("+1400000000")),
        ("TLS.sdkappid", Value::from("")),
        ("TLS.sdkappid", Value::from("0x5372")),
        ("TLS.sdkappid", Value::Bool(true)),
        ("TLS.sdkappid", Value::Null),
        ("TLS.expire", Value::from(-86400)),
        ("TLS.expire", Value::from(86400.5)),
        ("TLS.expire", Value::from(9223372036854775808u64)),
        ("TLS.expire", Value::from(u64::MAX)),
        ("TLS.expire", Value::from("18446744073709551616")),
        ("TLS.expire", Value::from("-1")),
        ("TLS.expire", serde_json::json!({})),
        ("TLS.time", Value::from(-1)),
        ("TLS.time", Value::from(9223372036854775808u64)),
        ("TLS.time", Value::from(" 1700000000")),
        ("TLS.time", Value::Bool(false)),
        ("TLS.sig", Value::from(0)),
        ("TLS.sig", Value::Null),
        ("TLS.sig", Value::from("not base64!")),
        (
            "TLS.sig",
            Value::from("LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4"),
        ),
        ("TLS.userbuf", Value::from(5)),
        ("TLS.userbuf", Value::from("YWJ")),
        ("TLS.userbuf", Value::from("YWJj=")),
        ("TLS.userbuf", Value::from("YW-j")),
        ("TLS.userbuf", serde_json::json!(["YWJj"])),
    ];
    for (field, value) in cases {
        let mut m = good();
        m.insert(field.into(), value.clone());
        assert_malformed(&token_of(&m), &format!("{field} = {value}"));
    }
}

#[test]
fn duplicate_tls_keys_are_ambiguous() {
    let json = Value::Object(good()).to_string();
    for (key, dup) in [
        ("TLS.identifier", "\"TLS.identifier\":\"someone-else\""),
        ("TLS.time", "\"TLS.time\":1"),
        (
            "TLS.sig",
            "\"TLS.sig\":\"LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=\"",
        ),
    ] {
        let doubled = format!("{{{dup},{}", &json[1..]);
        assert_malformed(&wrap(doubled.as_bytes(), 6), key);
    }
}

#[test]
fn absurd_lifetimes_are_malformed_not_overflows() {
    // Within the per-field bound, and the sum fits u64: accepted and never expires
    // in practice. (Correctly signed, so it verifies.)
    let m = signed_object(KEY, "xiaojun", APP, i64::MAX as u64, i64::MAX as u64, None);
    let info = verify_usersig(&token_of(&m), APP, KEY, "xiaojun", u64::MAX - 1)
        .expect("largest accepted values");
    assert_eq!(info.expires_at, u64::MAX - 1);
    assert_eq!(
        verify_usersig(&token_of(&m), APP, KEY, "xiaojun", u64::MAX),
        Err(AuthError::Expired {
            expires_at: u64::MAX - 1,
            now: u64::MAX
        })
    );
    let m = signed_object(KEY, "xiaojun", APP, i64::MAX as u64 + 1, 0, None);
    assert_malformed(&token_of(&m), "expire above i64::MAX");
}

#[test]
fn oversized_tokens_are_rejected_before_decoding() {
    let huge = "A".repeat(MAX_TOKEN_LEN + 1);
    assert_malformed(&huge, "huge token");
    let huge = "A".repeat(10 * 1024 * 1024);
    assert_malformed(&huge, "10 MiB token");
    // A real token padded with an ignored member to just over the length cap.
    let mut m = good();
    let filler: String = (0..MAX_TOKEN_LEN)
        .map(|i| char::from(b'a' + ((i * 7919) % 26) as u8))
        .collect();
    m.insert("filler".into(), Value::from(filler));
    let token = wrap(Value::Object(m).to_string().as_bytes(), 0);
    assert!(token.len() > MAX_TOKEN_LEN);
    assert_malformed(&token, "signed but too long");
}

#[test]
fn zlib_bombs_stop_at_the_inflate_cap() {
    // 10 MiB of whitespace inside an otherwise valid, correctly signed document:
    // a ~10 KiB token that would inflate 1000x.
    let json = Value::Object(good()).to_string();
    let mut bomb = json.as_bytes()[..json.len() - 1].to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 10 * 1024 * 1024));
    bomb.push(b'}');
    let token = wrap(&bomb, 9);
    assert!(
        token.len() <= MAX_TOKEN_LEN,
        "bomb fits the length cap: {}",
        token.len()
    );
    assert_malformed(&token, "zlib bomb");

    // Exactly at the cap is fine; one byte over is not.
    let pad = MAX_JSON_LEN - json.len();
    let mut at_cap = json.as_bytes()[..json.len() - 1].to_vec();
    at_cap.extend(std::iter::repeat_n(b' ', pad));
    at_cap.push(b'}');
    assert_eq!(at_cap.len(), MAX_JSON_LEN);
    assert_eq!(
        decode_token(&wrap(&at_cap, 9)).map(|j| j.len()),
        Ok(MAX_JSON_LEN)
    );
    assert_eq!(check(&wrap(&at_cap, 9)), Ok(()));
    at_cap.insert(1, b' ');
    assert_malformed(&wrap(&at_cap, 9), "one byte over the cap");
}

#[test]
fn error_codes_are_stable() {
    let codes = [
        (AuthError::Malformed("x".into()), "malformed"),
        (
            AuthError::Expired {
                expires_at: 1,
                now: 2,
            },
            "expired",
        ),
        (AuthError::IdentifierMismatch, "identifier mismatch"),
        (AuthError::SdkAppIdMismatch, "sdkappid mismatch"),
        (AuthError::BadSignature, "bad signature"),
        (AuthError::RoomMismatch, "room mismatch"),
        (AuthError::InvalidInput("x"), "invalid input"),
    ];
    for (e, code) in codes {
        assert_eq!(e.code(), code);
        assert!(!e.to_string().is_empty());
    }
}
