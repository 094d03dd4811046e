//! UserSig: generation (byte-identical to the official Python library) and
//! verification.
//!
//! Verification checks, in this order, and reports the first failure:
//!
//! 1. the token decodes (length cap, base64, zlib, JSON, field types, `TLS.ver`
//!    `"2.0"`) — otherwise [`AuthError::Malformed`];
//! 2. `TLS.sdkappid` equals the expected SDKAppID — [`AuthError::SdkAppIdMismatch`];
//! 3. `TLS.identifier` equals the expected identifier **ignoring ASCII case**
//!    (UserIDs are case-insensitive in this product) — [`AuthError::IdentifierMismatch`];
//! 4. `TLS.sig` is the HMAC-SHA256 of the claims under the key — [`AuthError::BadSignature`];
//! 5. `now <= TLS.time + TLS.expire` — [`AuthError::Expired`].
//!
//! A result is `Ok` only after the HMAC check. The returned [`UserSigInfo`] carries
//! the identifier exactly as signed, so a caller that needs case-sensitive matching
//! can additionally compare `info.identifier == expected`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use crate::claims::{self, Claims};
use crate::codec;
use crate::error::AuthError;
use crate::signature;

/// The verified claims of a UserSig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSigInfo {
    /// `TLS.identifier` exactly as in the token (the spelling that was signed).
    pub identifier: String,
    /// `TLS.sdkappid`.
    pub sdk_app_id: u32,
    /// `TLS.time`: issue time, unix seconds.
    pub time: u64,
    /// `TLS.expire`: lifetime in seconds.
    pub expire: u64,
    /// `time + expire`: the last second (unix time) at which the token is valid.
    pub expires_at: u64,
    /// `TLS.userbuf` decoded, if the token has one (`Some(vec![])` for an empty one).
    pub userbuf: Option<Vec<u8>>,
}

/// Generates a UserSig for `identifier`, issued at `time` (unix seconds) and valid
/// for `expire` seconds, i.e. through second `time + expire` inclusive.
///
/// `key` is the SDKSecretKey string; its UTF-8 bytes are the HMAC key. The token is
/// byte-identical to the official Python library's `gen_sig` with the same inputs.
///
/// Generation accepts any input, but [`verify_usersig`] refuses tokens beyond the
/// [`codec`] size caps and `time` or `expire` above `i64::MAX`; realistic inputs
/// (UserIDs up to 32 bytes, userbufs of a few hundred bytes) are far below them.
pub fn gen_usersig(sdk_app_id: u32, key: &str, identifier: &str, expire: u64, time: u64) -> String {
    generate(sdk_app_id, key, identifier, expire, time, None)
}

/// Like [`gen_usersig`], with a signed `TLS.userbuf` carrying `userbuf` (an empty
/// slice still produces an empty `TLS.userbuf`, as Python does for `b""`).
pub fn gen_usersig_with_userbuf(
    sdk_app_id: u32,
    key: &str,
    identifier: &str,
    expire: u64,
    time: u64,
    userbuf: &[u8],
) -> String {
    generate(sdk_app_id, key, identifier, expire, time, Some(userbuf))
}

/// Verifies a UserSig (with or without userbuf) at time `now` (unix seconds).
///
/// The identifier comparison ignores ASCII case; see the [module docs](self) for
/// the order of checks. Numbers beyond `i64::MAX` in the token are malformed.
pub fn verify_usersig(
    token: &str,
    sdk_app_id: u32,
    key: &str,
    identifier: &str,
    now: u64,
) -> Result<UserSigInfo, AuthError> {
    let info = verify_signed(token, sdk_app_id, key, identifier)?;
    check_expiry(&info, now)?;
    Ok(info)
}

fn generate(
    sdk_app_id: u32,
    key: &str,
    identifier: &str,
    expire: u64,
    time: u64,
    userbuf: Option<&[u8]>,
) -> String {
    let userbuf_b64 = userbuf.map(|b| STANDARD.encode(b));
    let content = signature::content(identifier, sdk_app_id, time, expire, userbuf_b64.as_deref());
    let sig_b64 = STANDARD.encode(signature::sign(key, &content));
    let json = claims::render(
        identifier,
        sdk_app_id,
        expire,
        time,
        userbuf_b64.as_deref(),
        &sig_b64,
    );
    codec::encode_token(json.as_bytes())
}

/// Steps 1–4 of verification: everything except the expiry check.
pub(crate) fn verify_signed(
    token: &str,
    sdk_app_id: u32,
    key: &str,
    identifier: &str,
) -> Result<UserSigInfo, AuthError> {
    let json = codec::decode_token(token)?;
    let Claims {
        identifier: claimed_identifier,
        sdk_app_id: claimed_app,
        expire,
        time,
        userbuf_b64,
        userbuf,
        sig,
    } = claims::parse(&json)?;
    let expires_at = time
        .checked_add(expire)
        .ok_or_else(|| AuthError::malformed("TLS.time + TLS.expire overflows"))?;
    if claimed_app != sdk_app_id {
        return Err(AuthError::SdkAppIdMismatch);
    }
    if !claimed_identifier.eq_ignore_ascii_case(identifier) {
        return Err(AuthError::IdentifierMismatch);
    }
    let content = signature::content(
        &claimed_identifier,
        claimed_app,
        time,
        expire,
        userbuf_b64.as_deref(),
    );
    if !signature::matches(key, &content, &sig) {
        return Err(AuthError::BadSignature);
    }
    Ok(UserSigInfo {
        identifier: claimed_identifier,
        sdk_app_id: claimed_app,
        time,
        expire,
        expires_at,
        userbuf,
    })
}

/// Step 5: valid while `now <= expires_at`.
pub(crate) fn check_expiry(info: &UserSigInfo, now: u64) -> Result<(), AuthError> {
    if now <= info.expires_at {
        Ok(())
    } else {
        Err(AuthError::Expired {
            expires_at: info.expires_at,
            now,
        })
    }
}
