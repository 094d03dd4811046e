//! Property tests.
//!
//! * Round trips: for arbitrary apps, keys, identifiers (any Unicode, including
//!   control characters and astral-plane characters), times and lifetimes over the
//!   whole accepted range, userbufs, rooms and privilege maps, what is generated
//!   verifies — anywhere in `[time, time + expire]`, with the identifier in any
//!   ASCII case — to exactly the inputs; one second later it is `Expired`; another
//!   identifier, app, key or room is rejected with the matching error.
//! * Tampering: changing any single byte of a generated token (to any ASCII byte)
//!   is accepted only if an independent decoder shows the token still decodes to
//!   the identical JSON bytes, and then with identical claims; changing any single
//!   byte of the decoded JSON (to any byte, re-compressed at any level) is accepted
//!   only if the result is semantically identical JSON, and then with identical
//!   claims. So no single-byte change ever yields different verified content.
//! * Garbage: arbitrary strings, and arbitrary JSON text in a valid envelope, never
//!   panic and never verify.

mod common;

use common::{unwrap_token, wrap};
use fanout_auth::codec::MAX_TOKEN_LEN;
use fanout_auth::{
    gen_private_map_key, gen_usersig, gen_usersig_with_userbuf, verify_private_map_key,
    verify_usersig, AuthError, Privileges, Room, UserSigInfo,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

const MAX_I64: u64 = i64::MAX as u64;

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn nonempty_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..max).prop_map(String::from_iter)
}

#[derive(Debug, Clone)]
struct Sig {
    app: u32,
    key: String,
    identifier: String,
    time: u64,
    expire: u64,
    userbuf: Option<Vec<u8>>,
}

impl Sig {
    fn token(&self) -> String {
        match &self.userbuf {
            Some(ub) => gen_usersig_with_userbuf(
                self.app,
                &self.key,
                &self.identifier,
                self.expire,
                self.time,
                ub,
            ),
            None => gen_usersig(
                self.app,
                &self.key,
                &self.identifier,
                self.expire,
                self.time,
            ),
        }
    }

    fn info(&self) -> UserSigInfo {
        UserSigInfo {
            identifier: self.identifier.clone(),
            sdk_app_id: self.app,
            time: self.time,
            expire: self.expire,
            expires_at: self.time + self.expire,
            userbuf: self.userbuf.clone(),
        }
    }

    fn verify(&self, token: &str, now: u64) -> Result<UserSigInfo, AuthError> {
        verify_usersig(token, self.app, &self.key, &self.identifier, now)
    }
}

fn times() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=MAX_I64,
        1_500_000_000u64..2_000_000_000,
        0u64..=86_400 * 365,
        Just(0),
        Just(MAX_I64),
    ]
}

fn sigs() -> impl Strategy<Value = Sig> {
    (
        any::<u32>(),
        text(80),
        text(40),
        times(),
        times(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    )
        .prop_map(|(app, key, identifier, time, expire, userbuf)| Sig {
            app,
            key,
            identifier,
            time,
            expire,
            userbuf,
        })
}

#[derive(Debug, Clone)]
enum OwnedRoom {
    Numeric(u32),
    Str(String),
}

impl OwnedRoom {
    fn borrow(&self) -> Room<'_> {
        match self {
            OwnedRoom::Numeric(n) => Room::Numeric(*n),
            OwnedRoom::Str(s) => Room::Str(s),
        }
    }
}

fn rooms() -> impl Strategy<Value = OwnedRoom> {
    prop_oneof![
        any::<u32>().prop_map(OwnedRoom::Numeric),
        nonempty_text(40).prop_map(OwnedRoom::Str),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn usersig_roundtrip(s in sigs(), at in any::<u64>()) {
        let token = s.token();
        prop_assert!(token.len() <= MAX_TOKEN_LEN);
        prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"*-_".contains(&b)));
        let expires_at = s.time + s.expire;
        let now = s.time + at % (s.expire + 1);
        for now in [s.time, now, expires_at] {
            prop_assert_eq!(s.verify(&token, now), Ok(s.info()));
        }
        let upper = s.identifier.to_ascii_uppercase();
        prop_assert_eq!(
            verify_usersig(&token, s.app, &s.key, &upper, s.time).map(|i| i.identifier),
            Ok(s.identifier.clone())
        );
        prop_assert_eq!(
            s.verify(&token, expires_at + 1),
            Err(AuthError::Expired { expires_at, now: expires_at + 1 })
        );
        let other_key = format!("{}x", s.key);
        prop_assert_eq!(
            verify_usersig(&token, s.app, &other_key, &s.identifier, s.time),
            Err(AuthError::BadSignature)
        );
        let other_id = format!("{}x", s.identifier);
        prop_assert_eq!(
            verify_usersig(&token, s.app, &s.key, &other_id, s.time),
            Err(AuthError::IdentifierMismatch)
        );
        prop_assert_eq!(
            verify_usersig(&token, s.app.wrapping_add(1), &s.key, &s.identifier, s.time),
            Err(AuthError::SdkAppIdMismatch)
        );
    }

    #[test]
    fn private_map_key_roundtrip(
        app in any::<u32>(),
        key in text(80),
        identifier in text(32),
        room in rooms(),
        other_room in rooms(),
        privilege_map in any::<u32>(),
        time in 0u64..=u64::from(u32::MAX),
        expire_frac in any::<u64>(),
    ) {
        let expire = expire_frac % (u64::from(u32::MAX) - time + 1);
        let token = gen_private_map_key(app, &key, &identifier, room.borrow(), privilege_map, expire, time)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let info = verify_private_map_key(&token, app, &key, &identifier, room.borrow(), time + expire)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(info.version, u8::from(matches!(room, OwnedRoom::Str(_))));
        prop_assert_eq!(&info.account, &identifier);
        prop_assert_eq!(info.sdk_app_id, app);
        prop_assert_eq!(info.room(), room.borrow());
        prop_assert_eq!(info.privilege_map, privilege_map);
        prop_assert_eq!(info.privileges(), Privileges::from_map(privilege_map));
        prop_assert_eq!(u64::from(info.expires_at), time + expire);
        prop_assert_eq!(info.usersig.expires_at, time + expire);
        prop_assert_eq!(info.account_type, 0);

        let other = verify_private_map_key(&token, app, &key, &identifier, other_room.borrow(), time);
        if other_room.borrow() == room.borrow() {
            prop_assert!(other.is_ok());
        } else {
            prop_assert_eq!(other.map(drop), Err(AuthError::RoomMismatch));
        }
        prop_assert_eq!(
            verify_private_map_key(&token, app, &key, &identifier, room.borrow(), time + expire + 1).map(drop),
            Err(AuthError::Expired { expires_at: time + expire, now: time + expire + 1 })
        );
    }

    #[test]
    fn single_byte_change_of_a_token(s in sigs(), pos in any::<Index>(), byte in 0u8..128) {
        let token = s.token();
        let original_json = unwrap_token(&token).ok_or_else(|| TestCaseError::fail("decodes"))?;
        let i = pos.index(token.len());
        prop_assume!(token.as_bytes()[i] != byte);
        let mut bytes = token.clone().into_bytes();
        bytes[i] = byte;
        let tampered = String::from_utf8(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let same_json = unwrap_token(&tampered).as_deref() == Some(&original_json[..]);
        match s.verify(&tampered, s.time) {
            Ok(info) => {
                prop_assert!(same_json, "accepted a token that decodes differently");
                prop_assert_eq!(info, s.info());
            }
            Err(_) => prop_assert!(!same_json, "rejected a token that decodes identically"),
        }
    }

    #[test]
    fn single_byte_change_of_the_json(
        s in sigs(),
        pos in any::<Index>(),
        byte in any::<u8>(),
        level in 0u32..=9,
    ) {
        let token = s.token();
        let json = unwrap_token(&token).ok_or_else(|| TestCaseError::fail("decodes"))?;
        let original_value: Value = serde_json::from_slice(&json)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let i = pos.index(json.len());
        prop_assume!(json[i] != byte);
        let mut modified = json.clone();
        modified[i] = byte;
        let equivalent = serde_json::from_slice::<Value>(&modified).ok().as_ref() == Some(&original_value);
        match s.verify(&wrap(&modified, level), s.time) {
            Ok(info) => {
                prop_assert!(equivalent, "accepted different JSON");
                prop_assert_eq!(info, s.info());
            }
            Err(_) => prop_assert!(!equivalent, "rejected equivalent JSON"),
        }
    }

    #[test]
    fn arbitrary_strings_never_verify(token in text(300), ascii in "[A-Za-z0-9*_+/=-]{0,300}") {
        for t in [&token, &ascii] {
            prop_assert!(verify_usersig(t, 1400000000, "k", "u", 0).is_err());
            prop_assert!(verify_private_map_key(t, 1400000000, "k", "u", Room::Numeric(1), 0).is_err());
        }
    }

    #[test]
    fn arbitrary_json_in_a_valid_envelope_never_verifies(doc in text(300), bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for t in [wrap(doc.as_bytes(), 6), wrap(&bytes, 1)] {
            prop_assert!(verify_usersig(&t, 1400000000, "k", "u", 0).is_err());
        }
    }
}
