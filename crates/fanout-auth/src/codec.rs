//! The token envelope: zlib-compressed JSON in Tencent's URL-safe base64 variant.
//!
//! Encoding is what the official Python library does: `zlib.compress` at the default
//! level (6, header `78 9c`), then standard base64 with `+` → `*`, `/` → `-` and
//! `=` → `_`. With flate2's C zlib backend the output is byte-identical.
//!
//! Decoding is deliberately tolerant of how other libraries encode, and deliberately
//! bounded against hostile input:
//!
//! * tokens longer than [`MAX_TOKEN_LEN`] are rejected before any work is done;
//! * both the variant alphabet (`*-_`) and the standard one (`+/=`) are accepted, in
//!   any mix, and the trailing padding may be omitted;
//! * any zlib level inflates (stored blocks included); the adler-32 checksum is
//!   verified, preset dictionaries and data after the end of the stream are refused;
//! * inflation stops with an error as soon as the output would exceed
//!   [`MAX_JSON_LEN`], so a zlib bomb costs at most that much memory.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::AuthError;

/// Longest token [`decode_token`] looks at, in bytes. Real tokens are 150–400 bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Largest inflated JSON document [`decode_token`] accepts, in bytes.
pub const MAX_JSON_LEN: usize = 64 * 1024;

/// Standard alphabet; padding optional but, when present, canonical; non-zero
/// trailing bits rejected (so every accepted string decodes to distinct bytes).
const LENIENT_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Compresses `json` exactly like Python's `zlib.compress(json)` and encodes it in
/// the token alphabet.
pub fn encode_token(json: &[u8]) -> String {
    let b64 = STANDARD.encode(zlib_compress(json));
    b64.chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            other => other,
        })
        .collect()
}

/// Decodes a token to its (untrusted, unverified) JSON bytes.
///
/// Errors are always [`AuthError::Malformed`].
pub fn decode_token(token: &str) -> Result<Vec<u8>, AuthError> {
    if token.is_empty() {
        return Err(AuthError::malformed("empty token"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::malformed(format!(
            "token longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let standard: Vec<u8> = token
        .bytes()
        .map(|b| match b {
            b'*' => b'+',
            b'-' => b'/',
            b'_' => b'=',
            other => other,
        })
        .collect();
    let compressed = LENIENT_PADDING
        .decode(&standard)
        .map_err(|_| AuthError::malformed("invalid base64"))?;
    zlib_inflate_bounded(&compressed, MAX_JSON_LEN)
}

fn zlib_compress(input: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::default(), true);
    let mut out = Vec::with_capacity(input.len() + 64);
    loop {
        let consumed = usize::try_from(compressor.total_in()).unwrap_or(input.len());
        let rest = input.get(consumed..).unwrap_or_default();
        // Deflating into a Vec with the stream in a valid state cannot fail; the only
        // error zlib reports here is Z_STREAM_ERROR, i.e. a bug in this function.
        let status = compressor
            .compress_vec(rest, &mut out, FlushCompress::Finish)
            .expect("in-memory zlib deflate does not fail");
        match status {
            Status::StreamEnd => return out,
            Status::Ok | Status::BufError => out.reserve(out.capacity().max(64)),
        }
    }
}

/// Inflates a complete zlib stream, refusing output larger than `limit` bytes.
fn zlib_inflate_bounded(input: &[u8], limit: usize) -> Result<Vec<u8>, AuthError> {
    let mut inflater = Decompress::new(true);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let in_before = inflater.total_in();
        let out_before = inflater.total_out();
        let consumed =
            usize::try_from(in_before).map_err(|_| AuthError::malformed("invalid zlib stream"))?;
        let rest = input
            .get(consumed..)
            .ok_or_else(|| AuthError::malformed("invalid zlib stream"))?;
        let status = inflater
            .decompress(rest, &mut chunk, FlushDecompress::None)
            .map_err(|_| AuthError::malformed("invalid zlib stream"))?;
        let produced = usize::try_from(inflater.total_out() - out_before)
            .map_err(|_| AuthError::malformed("invalid zlib stream"))?;
        let piece = chunk
            .get(..produced)
            .ok_or_else(|| AuthError::malformed("invalid zlib stream"))?;
        if out.len() + piece.len() > limit {
            return Err(AuthError::malformed(format!(
                "decompressed JSON larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(piece);
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                if inflater.total_in() == in_before && inflater.total_out() == out_before {
                    return Err(AuthError::malformed("truncated zlib stream"));
                }
            }
        }
    }
    if usize::try_from(inflater.total_in()).ok() != Some(input.len()) {
        return Err(AuthError::malformed(
            "data after the end of the zlib stream",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_header() {
        let json = br#"{"TLS.ver": "2.0"}"#;
        let token = encode_token(json);
        assert!(token.starts_with("eJ"), "zlib default level header 78 9c");
        assert_eq!(decode_token(&token).as_deref(), Ok(&json[..]));
    }

    #[test]
    fn inflate_limit_is_exact() {
        let data = vec![b'a'; 1000];
        let z = zlib_compress(&data);
        assert_eq!(zlib_inflate_bounded(&z, 1000).map(|v| v.len()), Ok(1000));
        assert!(zlib_inflate_bounded(&z, 999).is_err());
    }

    #[test]
    fn truncated_and_trailing_streams_are_rejected() {
        let z = zlib_compress(b"hello hello hello");
        for cut in 0..z.len() {
            assert!(
                zlib_inflate_bounded(&z[..cut], 100).is_err(),
                "cut at {cut}"
            );
        }
        let mut extra = z.clone();
        extra.push(0);
        assert!(zlib_inflate_bounded(&extra, 100).is_err());
    }
}
