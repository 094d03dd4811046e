//! UserSig and PrivateMapKey (TLS-Sig-API v2): generate and verify.
//!
//! Tokens are compatible with Tencent's official TLS-Sig-API v2 libraries:
//! generation is byte-identical to the official Python library, and verification
//! accepts the variations other libraries produce (key order, spacing, `\/`
//! escapes, any zlib level, numbers as strings). The crate is pure: no I/O, no
//! clock — the caller passes `now` in unix seconds.
//!
//! * [`usersig`] — [`gen_usersig`], [`gen_usersig_with_userbuf`], [`verify_usersig`].
//! * [`privatemapkey`] — [`gen_private_map_key`], [`verify_private_map_key`], [`Room`].
//! * [`privileges`] — [`Privileges`], the PrivateMapKey privilege bits.
//! * [`codec`] — the zlib + base64-variant envelope, with size caps.
//! * [`error`] — [`AuthError`] and its stable [`AuthError::code`] strings.
//!
//! Identifiers are compared ignoring ASCII case, because UserIDs are
//! case-insensitive in this product; the verified info keeps the signed spelling.
//!
//! ```
//! use fanout_auth::{gen_usersig, verify_usersig, AuthError};
//!
//! let key = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
//! let issued = 1_700_000_000;
//! let token = gen_usersig(1400000000, key, "alice", 86_400, issued);
//!
//! let info = verify_usersig(&token, 1400000000, key, "Alice", issued + 100)?;
//! assert_eq!(info.identifier, "alice");
//! assert_eq!(info.expires_at, issued + 86_400);
//!
//! let late = verify_usersig(&token, 1400000000, key, "alice", issued + 86_401);
//! assert_eq!(late.unwrap_err().code(), "expired");
//! assert_eq!(
//!     verify_usersig(&token, 1400000000, "other key", "alice", issued),
//!     Err(AuthError::BadSignature)
//! );
//! # Ok::<(), AuthError>(())
//! ```
//!
//! A PrivateMapKey additionally binds a room and privileges:
//!
//! ```
//! use fanout_auth::{gen_private_map_key, verify_private_map_key, Privileges, Room};
//!
//! let key = "secret";
//! let privileges = Privileges::ENTER_ROOM | Privileges::RECV_AUDIO | Privileges::RECV_VIDEO;
//! let pmk = gen_private_map_key(1400000000, key, "bob", Room::Str("lobby"),
//!                               privileges.into(), 300, 1_700_000_000)?;
//! let info = verify_private_map_key(&pmk, 1400000000, key, "bob", Room::Str("lobby"),
//!                                   1_700_000_300)?;
//! assert!(info.privileges().contains(Privileges::ENTER_ROOM));
//! assert!(!info.privileges().contains(Privileges::SEND_AUDIO));
//! assert!(verify_private_map_key(&pmk, 1400000000, key, "bob", Room::Numeric(1),
//!                                1_700_000_000).is_err());
//! # Ok::<(), fanout_auth::AuthError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod claims;
pub mod codec;
pub mod error;
pub mod privatemapkey;
pub mod privileges;
mod pyjson;
mod signature;
pub mod usersig;

pub use error::AuthError;
pub use privatemapkey::{gen_private_map_key, verify_private_map_key, PrivateMapKeyInfo, Room};
pub use privileges::Privileges;
pub use usersig::{gen_usersig, gen_usersig_with_userbuf, verify_usersig, UserSigInfo};
