//! PrivateMapKey: a UserSig whose `TLS.userbuf` grants room privileges.
//!
//! The userbuf is big-endian binary:
//!
//! | field          | type         | notes                                         |
//! |----------------|--------------|-----------------------------------------------|
//! | version        | u8           | 0: numeric room, 1: string room               |
//! | account length | u16          |                                               |
//! | account        | bytes        | UTF-8 UserID                                  |
//! | sdkappid       | u32          |                                               |
//! | roomid         | u32          | 0 for a string room                           |
//! | expiry         | u32          | absolute unix time, `time + expire`           |
//! | privilege map  | u32          | low 8 bits, see [`Privileges`]                |
//! | account type   | u32          | 0                                             |
//! | room length    | u16          | version 1 only                                |
//! | room           | bytes        | version 1 only, UTF-8 string room id          |
//!
//! Lengths are byte lengths (the official Python library uses character counts,
//! which only differ for non-ASCII identifiers, where its tokens are broken anyway).
//!
//! Verification first verifies the token as a UserSig (without expiry), then parses
//! the userbuf strictly (truncation, trailing bytes, unknown versions or non-UTF-8
//! text are [`AuthError::Malformed`]), then requires the userbuf's sdkappid
//! ([`AuthError::SdkAppIdMismatch`]), account, compared ignoring ASCII case
//! ([`AuthError::IdentifierMismatch`]), and room — same kind and value —
//! ([`AuthError::RoomMismatch`]) to match, and finally enforces expiry from the
//! JSON `TLS.time + TLS.expire` ([`AuthError::Expired`]). The userbuf's own expiry
//! field is reported but not enforced.

use serde::Serialize;

use crate::error::AuthError;
use crate::privileges::Privileges;
use crate::usersig::{check_expiry, gen_usersig_with_userbuf, verify_signed, UserSigInfo};

/// The room a PrivateMapKey grants access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Room<'a> {
    /// A numeric room id (userbuf version 0).
    Numeric(u32),
    /// A string room id (userbuf version 1).
    Str(&'a str),
}

/// The verified contents of a PrivateMapKey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivateMapKeyInfo {
    /// The outer UserSig claims. `usersig.expires_at` is the enforced expiry.
    pub usersig: UserSigInfo,
    /// Userbuf version: 0 numeric room, 1 string room.
    pub version: u8,
    /// The account (UserID) in the userbuf, as written.
    pub account: String,
    /// The SDKAppID in the userbuf.
    pub sdk_app_id: u32,
    /// The numeric room id (0 for a string room).
    pub room_id: u32,
    /// The string room id (version 1 only).
    pub str_room_id: Option<String>,
    /// The userbuf's expiry field (absolute unix time); informational.
    pub expires_at: u32,
    /// The full 32-bit privilege map; see [`PrivateMapKeyInfo::privileges`].
    pub privilege_map: u32,
    /// The account type field (0).
    pub account_type: u32,
}

impl PrivateMapKeyInfo {
    /// The defined privileges (low eight bits of the privilege map).
    pub fn privileges(&self) -> Privileges {
        Privileges::from_map(self.privilege_map)
    }

    /// The room this key is for.
    pub fn room(&self) -> Room<'_> {
        match &self.str_room_id {
            Some(s) => Room::Str(s),
            None => Room::Numeric(self.room_id),
        }
    }
}

/// Generates a PrivateMapKey for `identifier` in `room` with `privilege_map` (see
/// [`Privileges`]; `u32::from(privileges)` converts), issued at `time` and valid
/// for `expire` seconds. Byte-identical to the official Python library for ASCII
/// identifiers and rooms.
///
/// Fails with [`AuthError::InvalidInput`] if the identifier or string room id is
/// longer than 65535 bytes, the string room id is empty, or `time + expire` does not
/// fit the userbuf's 32-bit expiry field. As for [`gen_usersig`](crate::gen_usersig),
/// tokens beyond the [`codec`](crate::codec) size caps will not verify.
pub fn gen_private_map_key(
    sdk_app_id: u32,
    key: &str,
    identifier: &str,
    room: Room<'_>,
    privilege_map: u32,
    expire: u64,
    time: u64,
) -> Result<String, AuthError> {
    let expires_at = time
        .checked_add(expire)
        .and_then(|t| u32::try_from(t).ok())
        .ok_or(AuthError::InvalidInput(
            "PrivateMapKey expiry (time + expire) exceeds u32",
        ))?;
    let account_len = u16::try_from(identifier.len())
        .map_err(|_| AuthError::InvalidInput("identifier longer than 65535 bytes"))?;
    let (version, room_id, str_room) = match room {
        Room::Numeric(id) => (0u8, id, None),
        Room::Str("") => return Err(AuthError::InvalidInput("empty string room id")),
        Room::Str(s) => {
            let len = u16::try_from(s.len())
                .map_err(|_| AuthError::InvalidInput("string room id longer than 65535 bytes"))?;
            (1u8, 0u32, Some((len, s)))
        }
    };

    let mut buf =
        Vec::with_capacity(27 + identifier.len() + str_room.map_or(0, |(_, s)| 2 + s.len()));
    buf.push(version);
    buf.extend_from_slice(&account_len.to_be_bytes());
    buf.extend_from_slice(identifier.as_bytes());
    buf.extend_from_slice(&sdk_app_id.to_be_bytes());
    buf.extend_from_slice(&room_id.to_be_bytes());
    buf.extend_from_slice(&expires_at.to_be_bytes());
    buf.extend_from_slice(&privilege_map.to_be_bytes());
    buf.extend_from_slice(&0u32.to_be_bytes()); // account type
    if let Some((len, s)) = str_room {
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    Ok(gen_usersig_with_userbuf(
        sdk_app_id, key, identifier, expire, time, &buf,
    ))
}

/// Verifies a PrivateMapKey for `identifier` (ignoring ASCII case) in `room` at
/// time `now`; see the [module docs](self) for the order of checks.
pub fn verify_private_map_key(
    token: &str,
    sdk_app_id: u32,
    key: &str,
    identifier: &str,
    room: Room<'_>,
    now: u64,
) -> Result<PrivateMapKeyInfo, AuthError> {
    let usersig = verify_signed(token, sdk_app_id, key, identifier)?;
    let Some(userbuf) = usersig.userbuf.as_deref() else {
        return Err(AuthError::malformed("PrivateMapKey has no TLS.userbuf"));
    };
    let parsed = Userbuf::parse(userbuf)?;
    if parsed.sdk_app_id != sdk_app_id {
        return Err(AuthError::SdkAppIdMismatch);
    }
    if !parsed.account.eq_ignore_ascii_case(identifier) {
        return Err(AuthError::IdentifierMismatch);
    }
    let room_matches = match (room, parsed.str_room_id.as_deref()) {
        (Room::Numeric(want), None) => parsed.room_id == want,
        (Room::Str(want), Some(have)) => have == want,
        _ => false,
    };
    if !room_matches {
        return Err(AuthError::RoomMismatch);
    }
    check_expiry(&usersig, now)?;
    let Userbuf {
        version,
        account,
        sdk_app_id,
        room_id,
        str_room_id,
        expires_at,
        privilege_map,
        account_type,
    } = parsed;
    Ok(PrivateMapKeyInfo {
        usersig,
        version,
        account,
        sdk_app_id,
        room_id,
        str_room_id,
        expires_at,
        privilege_map,
        account_type,
    })
}

/// The decoded userbuf fields.
struct Userbuf {
    version: u8,
    account: String,
    sdk_app_id: u32,
    room_id: u32,
    str_room_id: Option<String>,
    expires_at: u32,
    privilege_map: u32,
    account_type: u32,
}

impl Userbuf {
    /// Parses a userbuf exactly: every byte must be accounted for.
    fn parse(buf: &[u8]) -> Result<Userbuf, AuthError> {
        let mut r = Reader(buf);
        let version = r.u8()?;
        if version > 1 {
            return Err(AuthError::malformed(
                "unsupported PrivateMapKey userbuf version",
            ));
        }
        let account_len = usize::from(r.u16()?);
        let account = utf8(r.bytes(account_len)?, "account")?;
        let sdk_app_id = r.u32()?;
        let room_id = r.u32()?;
        let expires_at = r.u32()?;
        let privilege_map = r.u32()?;
        let account_type = r.u32()?;
        let str_room_id = if version == 1 {
            let len = usize::from(r.u16()?);
            Some(utf8(r.bytes(len)?, "room id")?)
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err(AuthError::malformed(
                "trailing bytes in PrivateMapKey userbuf",
            ));
        }
        Ok(Userbuf {
            version,
            account,
            sdk_app_id,
            room_id,
            str_room_id,
            expires_at,
            privilege_map,
            account_type,
        })
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, AuthError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| AuthError::malformed(format!("PrivateMapKey {what} is not UTF-8")))
}

/// A bounds-checked big-endian cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], AuthError> {
        let (head, tail) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| AuthError::malformed("truncated PrivateMapKey userbuf"))?;
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AuthError> {
        <[u8; N]>::try_from(self.bytes(N)?)
            .map_err(|_| AuthError::malformed("truncated PrivateMapKey userbuf"))
    }

    fn u8(&mut self) -> Result<u8, AuthError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, AuthError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, AuthError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}
