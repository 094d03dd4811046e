//! Shared test helpers: a second, independent implementation of the token envelope
//! (so tests do not trust the code under test to build their inputs), signing, and
//! the vector tables.
#![allow(dead_code)]

pub mod python;
pub mod vectors;

use std::io::{Read, Write};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
pub const APP: u32 = 1400000000;

pub fn hex(s: &str) -> Vec<u8> {
    let pairs = s.as_bytes().chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd hex length");
    pairs
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Standard base64 → the token alphabet (`+/=` → `*-_`).
pub fn to_token_alphabet(standard: &str) -> String {
    standard
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_")
}

/// zlib at `level`, then the token alphabet.
pub fn wrap(json: &[u8], level: u32) -> String {
    to_token_alphabet(&b64(&zlib(json, level)))
}

pub fn zlib(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(data).expect("write to Vec");
    enc.finish().expect("finish to Vec")
}

/// The token's compressed bytes (token alphabet, standard alphabet or a mix;
/// padding optional), or `None`.
pub fn unbase64(token: &str) -> Option<Vec<u8>> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let standard = token.replace('*', "+").replace('-', "/").replace('_', "=");
    ENGINE.decode(standard).ok()
}

/// Inflates one complete zlib stream with nothing after it, or `None`.
pub fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    let mut dec = ZlibDecoder::new(data);
    let mut out = Vec::new();
    dec.read_to_end(&mut out).ok()?;
    (dec.total_in() == data.len() as u64).then_some(out)
}

/// Test-side decoding of a token to its JSON bytes.
pub fn unwrap_token(token: &str) -> Option<Vec<u8>> {
    inflate(&unbase64(token)?)
}

pub fn hmac_b64(key: &str, content: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(content.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// The signed content for the given claims.
pub fn content(
    identifier: &str,
    app: u64,
    time: u64,
    expire: u64,
    userbuf_b64: Option<&str>,
) -> String {
    let mut s = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{app}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(u) = userbuf_b64 {
        s.push_str(&format!("TLS.userbuf:{u}\n"));
    }
    s
}

/// Builds claims as a `serde_json` object (correctly signed under `key`), so tests
/// can reorder, retype or drop fields and serialize however they like.
pub fn signed_object(
    key: &str,
    identifier: &str,
    app: u32,
    expire: u64,
    time: u64,
    userbuf: Option<&[u8]>,
) -> serde_json::Map<String, serde_json::Value> {
    let ub = userbuf.map(b64);
    let sig = hmac_b64(
        key,
        &content(identifier, u64::from(app), time, expire, ub.as_deref()),
    );
    let mut m = serde_json::Map::new();
    m.insert("TLS.ver".into(), "2.0".into());
    m.insert("TLS.identifier".into(), identifier.into());
    m.insert("TLS.sdkappid".into(), app.into());
    m.insert("TLS.expire".into(), expire.into());
    m.insert("TLS.time".into(), time.into());
    if let Some(ub) = ub {
        m.insert("TLS.userbuf".into(), ub.into());
    }
    m.insert("TLS.sig".into(), sig.into());
    m
}

/// A PrivateMapKey userbuf, built independently of the library.
pub fn pmk_userbuf(
    account: &str,
    app: u32,
    room: Result<u32, &str>,
    expires_at: u32,
    privilege_map: u32,
) -> Vec<u8> {
    let mut b = vec![u8::from(room.is_err())];
    b.extend_from_slice(&(account.len() as u16).to_be_bytes());
    b.extend_from_slice(account.as_bytes());
    b.extend_from_slice(&app.to_be_bytes());
    b.extend_from_slice(&room.unwrap_or(0).to_be_bytes());
    b.extend_from_slice(&expires_at.to_be_bytes());
    b.extend_from_slice(&privilege_map.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    if let Err(s) = room {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    b
}
