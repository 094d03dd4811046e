//! Identifiers: validated UserIDs (case-insensitive) and room ids (numeric or string), scoped per app.

use crate::error::SignalError;
use serde::Serialize;
use std::fmt;

/// Longest UserID in bytes.
pub const MAX_USER_ID_LEN: usize = 32;
/// Longest string room id in bytes.
pub const MAX_STR_ROOM_LEN: usize = 64;
/// Largest numeric room id (4294967295 is reserved).
pub const MAX_ROOM_ID: u32 = 4_294_967_294;

/// A validated UserID. Equality and hashing use the lower-cased form, so `Alice` and `alice` are one
/// user; `display` keeps the spelling the user entered with.
#[derive(Debug, Clone)]
pub struct UserId {
    display: String,
    key: String,
}

impl UserId {
    /// Letters, digits, `_` and `-`; 1..=32 bytes; not digits only.
    pub fn parse(s: &str) -> Result<Self, SignalError> {
        if s.is_empty() {
            return Err(SignalError::MissingParam("user_id"));
        }
        if s.len() > MAX_USER_ID_LEN {
            return Err(SignalError::BadUserId(format!(
                "longer than {MAX_USER_ID_LEN} bytes"
            )));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(SignalError::BadUserId(
                "only letters, digits, `_` and `-` are allowed".into(),
            ));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SignalError::BadUserId("must not be digits only".into()));
        }
        Ok(UserId {
            display: s.to_string(),
            key: s.to_ascii_lowercase(),
        })
    }

    /// The spelling the user entered with.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-folded form used for identity.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl PartialEq for UserId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for UserId {}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// A room id inside one application. Numeric 123 and string "123" are different rooms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomId {
    Num(u32),
    Str(String),
}

impl RoomId {
    /// Validates a numeric room id: 1..=4294967294.
    pub fn numeric(n: u64) -> Result<Self, SignalError> {
        if n == 0 || n > u64::from(MAX_ROOM_ID) {
            return Err(SignalError::BadRoomId(format!(
                "room_id must be in 1..={MAX_ROOM_ID}"
            )));
        }
        // The range check above makes the conversion lossless.
        Ok(RoomId::Num(n as u32))
    }

    /// Validates a string room id: 1..=64 bytes of letters, digits, space and
    /// ``!#$%&()+-:;<=.>?@[]^_{}|~,``.
    pub fn string(s: &str) -> Result<Self, SignalError> {
        if s.is_empty() {
            return Err(SignalError::MissingParam("str_room_id"));
        }
        if s.len() > MAX_STR_ROOM_LEN {
            return Err(SignalError::BadRoomId(format!(
                "str_room_id longer than {MAX_STR_ROOM_LEN} bytes"
            )));
        }
        const EXTRA: &[u8] = b" !#$%&()+-:;<=.>?@[]^_{}|~,";
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || (c.is_ascii() && EXTRA.contains(&(*c as u8)))))
        {
            return Err(SignalError::BadRoomId(format!(
                "str_room_id contains a character that is not allowed: {c:?}"
            )));
        }
        Ok(RoomId::Str(s.to_string()))
    }

    /// The credential library's view of this room.
    pub fn as_auth_room(&self) -> fanout_auth::Room<'_> {
        match self {
            RoomId::Num(n) => fanout_auth::Room::Numeric(*n),
            RoomId::Str(s) => fanout_auth::Room::Str(s),
        }
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomId::Num(n) => write!(f, "{n}"),
            RoomId::Str(s) => write!(f, "\"{s}\""),
        }
    }
}

/// How a room id appears in JSON: `{"room_id": n}` or `{"str_room_id": s}`.
#[derive(Debug, Clone, Serialize)]
pub struct RoomIdJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub str_room_id: Option<&'a str>,
}

impl RoomId {
    pub fn to_json(&self) -> RoomIdJson<'_> {
        match self {
            RoomId::Num(n) => RoomIdJson {
                room_id: Some(*n),
                str_room_id: None,
            },
            RoomId::Str(s) => RoomIdJson {
                room_id: None,
                str_room_id: Some(s),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(UserId::parse("alice_01-x").is_ok());
        assert_eq!(
            UserId::parse("Alice").unwrap(),
            UserId::parse("aLICE").unwrap()
        );
        assert_eq!(UserId::parse("12345").unwrap_err().code(), -3319);
        assert_eq!(UserId::parse("a b").unwrap_err().code(), -3319);
        assert_eq!(UserId::parse("ü").unwrap_err().code(), -3319);
        assert_eq!(UserId::parse(&"a".repeat(33)).unwrap_err().code(), -3319);
        assert!(UserId::parse(&"a".repeat(32)).is_ok());
        assert_eq!(UserId::parse("").unwrap_err().code(), -3316);
    }

    #[test]
    fn room_ids() {
        assert_eq!(RoomId::numeric(0).unwrap_err().code(), -3318);
        assert_eq!(RoomId::numeric(4_294_967_295).unwrap_err().code(), -3318);
        assert_eq!(
            RoomId::numeric(4_294_967_294).unwrap(),
            RoomId::Num(4_294_967_294)
        );
        assert_ne!(
            RoomId::numeric(123).unwrap(),
            RoomId::string("123").unwrap()
        );
        assert!(RoomId::string("a b!#$%&()+-:;<=.>?@[]^_{}|~,").is_ok());
        assert_eq!(RoomId::string("a/b").unwrap_err().code(), -3318);
        assert_eq!(RoomId::string("é").unwrap_err().code(), -3318);
        assert_eq!(RoomId::string(&"r".repeat(65)).unwrap_err().code(), -3318);
        assert!(RoomId::string(&"r".repeat(64)).is_ok());
    }
}
