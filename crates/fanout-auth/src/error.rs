//! The crate's single error type, [`AuthError`].
//!
//! Every way a token can fail verification maps to exactly one variant, and each
//! variant has a short, stable code ([`AuthError::code`]) that command-line tools and
//! logs can print. `Malformed` carries a human-readable detail; details never quote
//! bytes from the token, so they are safe to log.

use thiserror::Error;

/// Why a token was rejected (or, for generation, why the inputs were refused).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The token could not be decoded: bad length, bad base64, bad zlib, bad JSON,
    /// missing or mistyped fields, unsupported `TLS.ver`, out-of-range numbers, or a
    /// PrivateMapKey userbuf that does not parse exactly.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature is genuine but `now` is past `TLS.time + TLS.expire`.
    #[error("token expired at {expires_at} (now {now})")]
    Expired {
        /// Last valid second (unix time): `TLS.time + TLS.expire`.
        expires_at: u64,
        /// The time the caller verified at.
        now: u64,
    },
    /// The token was issued to a different identifier (UserID).
    #[error("identifier mismatch")]
    IdentifierMismatch,
    /// The token was issued for a different SDKAppID.
    #[error("sdkappid mismatch")]
    SdkAppIdMismatch,
    /// The HMAC-SHA256 in `TLS.sig` does not match: wrong key or tampered content.
    #[error("bad signature")]
    BadSignature,
    /// A PrivateMapKey for a different room (different number, or numeric vs string).
    #[error("room mismatch")]
    RoomMismatch,
    /// Generation only: the inputs cannot be encoded (e.g. an identifier longer than
    /// 65535 bytes, or an empty string room id, in a PrivateMapKey).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
}

impl AuthError {
    /// A short, stable code for this error kind, suitable for printing by a CLI or
    /// for a metrics label: `"malformed"`, `"expired"`, `"identifier mismatch"`,
    /// `"sdkappid mismatch"`, `"bad signature"`, `"room mismatch"`, `"invalid input"`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::Expired { .. } => "expired",
            AuthError::IdentifierMismatch => "identifier mismatch",
            AuthError::SdkAppIdMismatch => "sdkappid mismatch",
            AuthError::BadSignature => "bad signature",
            AuthError::RoomMismatch => "room mismatch",
            AuthError::InvalidInput(_) => "invalid input",
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        AuthError::Malformed(detail.into())
    }
}
