//! PrivateMapKey behaviour: rooms (numeric vs string, kind and value must match),
//! privileges, strict userbuf parsing (truncated, trailing bytes, unknown version,
//! non-UTF-8), userbuf app/account checks, expiry taken from the JSON, and the
//! inputs generation refuses.

mod common;

use common::{pmk_userbuf, APP, KEY};
use fanout_auth::{
    gen_private_map_key, gen_usersig_with_userbuf, verify_private_map_key, AuthError, Privileges,
    Room,
};

const T: u64 = 1_700_000_000;

fn pmk(room: Room<'_>, privileges: u32) -> String {
    gen_private_map_key(APP, KEY, "Alice", room, privileges, 3600, T).expect("valid inputs")
}

/// A token signed over an arbitrary userbuf.
fn signed(userbuf: &[u8]) -> String {
    gen_usersig_with_userbuf(APP, KEY, "alice", 3600, T, userbuf)
}

fn verify(token: &str, room: Room<'_>) -> Result<fanout_auth::PrivateMapKeyInfo, AuthError> {
    verify_private_map_key(token, APP, KEY, "alice", room, T + 1)
}

#[test]
fn numeric_and_string_rooms_roundtrip() {
    let p = Privileges::ENTER_ROOM | Privileges::RECV_AUDIO | Privileges::RECV_VIDEO;
    let num = verify(&pmk(Room::Numeric(42), p.into()), Room::Numeric(42)).expect("numeric");
    assert_eq!(
        (num.version, num.room_id, num.str_room_id.as_deref()),
        (0, 42, None)
    );
    assert_eq!(num.room(), Room::Numeric(42));
    assert_eq!(num.account, "Alice");
    assert_eq!(num.usersig.identifier, "Alice");
    assert_eq!(num.privileges(), p);
    assert!(!num.privileges().contains(Privileges::SEND_AUDIO));
    assert_eq!(u64::from(num.expires_at), T + 3600);
    assert_eq!(num.account_type, 0);

    let s = verify(&pmk(Room::Str("Lobby-1"), 255), Room::Str("Lobby-1")).expect("string");
    assert_eq!(
        (s.version, s.room_id, s.str_room_id.as_deref()),
        (1, 0, Some("Lobby-1"))
    );
    assert_eq!(s.room(), Room::Str("Lobby-1"));
    assert_eq!(s.privileges(), Privileges::ALL);

    let zero = verify(&pmk(Room::Numeric(0), 0), Room::Numeric(0)).expect("room 0");
    assert_eq!(zero.privileges(), Privileges::NONE);
}

#[test]
fn the_full_privilege_map_is_kept_but_only_eight_bits_are_privileges() {
    let info = verify(&pmk(Room::Numeric(1), 0xdead_be02), Room::Numeric(1)).expect("ok");
    assert_eq!(info.privilege_map, 0xdead_be02);
    assert_eq!(info.privileges(), Privileges::ENTER_ROOM);
    assert_eq!(
        serde_json::to_string(&info.privileges()).ok().as_deref(),
        Some("2")
    );
}

#[test]
fn room_mismatch() {
    let numeric = pmk(Room::Numeric(1234), 255);
    let string = pmk(Room::Str("1234"), 255);
    for (token, room) in [
        (&numeric, Room::Numeric(1235)),
        (&numeric, Room::Numeric(0)),
        (&numeric, Room::Str("1234")),
        (&string, Room::Numeric(1234)),
        (&string, Room::Numeric(0)),
        (&string, Room::Str("12345")),
        (&string, Room::Str("123")),
        (&string, Room::Str("")),
    ] {
        assert_eq!(
            verify(token, room),
            Err(AuthError::RoomMismatch),
            "{room:?}"
        );
    }
    // String rooms are case-sensitive (only the account ignores ASCII case).
    let named = pmk(Room::Str("Lobby"), 255);
    assert_eq!(
        verify(&named, Room::Str("lobby")),
        Err(AuthError::RoomMismatch)
    );
    assert_eq!(verify(&named, Room::Str("Lobby")).map(|i| i.version), Ok(1));
}

#[test]
fn account_is_compared_ignoring_ascii_case() {
    let token = pmk(Room::Numeric(1), 255);
    for who in ["alice", "ALICE", "Alice"] {
        assert!(
            verify_private_map_key(&token, APP, KEY, who, Room::Numeric(1), T).is_ok(),
            "{who}"
        );
    }
    assert_eq!(
        verify_private_map_key(&token, APP, KEY, "alicia", Room::Numeric(1), T).map(drop),
        Err(AuthError::IdentifierMismatch)
    );
}

#[test]
fn userbuf_must_parse_exactly() {
    let exp = (T + 3600) as u32;
    let good_num = pmk_userbuf("alice", APP, Ok(9), exp, 255);
    let good_str = pmk_userbuf("alice", APP, Err("room"), exp, 255);
    assert!(verify(&signed(&good_num), Room::Numeric(9)).is_ok());
    assert!(verify(&signed(&good_str), Room::Str("room")).is_ok());

    for (name, good, room) in [
        ("numeric", &good_num, Room::Numeric(9)),
        ("string", &good_str, Room::Str("room")),
    ] {
        // Every truncation, including the empty userbuf.
        for cut in 0..good.len() {
            let r = verify(&signed(&good[..cut]), room);
            assert!(
                matches!(r, Err(AuthError::Malformed(_))),
                "{name} cut {cut}: {r:?}"
            );
        }
        // Trailing bytes.
        for extra in [&b"\x00"[..], b"\xff\xff", b"junk"] {
            let mut long = good.clone();
            long.extend_from_slice(extra);
            let r = verify(&signed(&long), room);
            assert!(
                matches!(r, Err(AuthError::Malformed(_))),
                "{name} + {extra:?}: {r:?}"
            );
        }
    }
    // Unknown versions.
    for version in [2u8, 3, 0xff] {
        let mut b = good_num.clone();
        b[0] = version;
        let r = verify(&signed(&b), Room::Numeric(9));
        assert!(
            matches!(r, Err(AuthError::Malformed(_))),
            "version {version}"
        );
    }
    // Account length pointing past the end.
    let mut b = good_num.clone();
    b[1] = 0xff;
    assert!(matches!(
        verify(&signed(&b), Room::Numeric(9)),
        Err(AuthError::Malformed(_))
    ));
    // Non-UTF-8 account and room.
    let mut b = pmk_userbuf("alic\u{e9}", APP, Ok(9), exp, 255);
    let pos = b.iter().position(|&x| x == 0xc3).expect("utf-8 lead byte");
    b[pos] = 0xff;
    assert!(matches!(
        verify_private_map_key(
            &gen_usersig_with_userbuf(APP, KEY, "alic\u{e9}", 3600, T, &b),
            APP,
            KEY,
            "alic\u{e9}",
            Room::Numeric(9),
            T
        ),
        Err(AuthError::Malformed(_))
    ));
    let mut b = good_str.clone();
    let last = b.len() - 1;
    b[last] = 0x80;
    assert!(matches!(
        verify(&signed(&b), Room::Str("room")),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn userbuf_app_and_account_must_match() {
    let exp = (T + 3600) as u32;
    let other_app = pmk_userbuf("alice", APP + 1, Ok(9), exp, 255);
    assert_eq!(
        verify(&signed(&other_app), Room::Numeric(9)).map(drop),
        Err(AuthError::SdkAppIdMismatch)
    );
    let other_account = pmk_userbuf("mallory", APP, Ok(9), exp, 255);
    assert_eq!(
        verify(&signed(&other_account), Room::Numeric(9)).map(drop),
        Err(AuthError::IdentifierMismatch)
    );
    let upper = pmk_userbuf("ALICE", APP, Ok(9), exp, 255);
    assert_eq!(
        verify(&signed(&upper), Room::Numeric(9)).map(|i| i.account),
        Ok("ALICE".into())
    );
}

#[test]
fn expiry_comes_from_the_json_not_the_userbuf() {
    // Userbuf claims validity until 2106, JSON says one hour.
    let far = pmk_userbuf("alice", APP, Ok(9), u32::MAX, 255);
    let token = signed(&far);
    assert!(verify_private_map_key(&token, APP, KEY, "alice", Room::Numeric(9), T + 3600).is_ok());
    assert_eq!(
        verify_private_map_key(&token, APP, KEY, "alice", Room::Numeric(9), T + 3601).map(drop),
        Err(AuthError::Expired {
            expires_at: T + 3600,
            now: T + 3601
        })
    );
    // Userbuf expiry in the past, JSON still valid: accepted, reported as written.
    let past = pmk_userbuf("alice", APP, Ok(9), 1, 255);
    let info = verify_private_map_key(&signed(&past), APP, KEY, "alice", Room::Numeric(9), T)
        .expect("JSON expiry governs");
    assert_eq!(info.expires_at, 1);
    assert_eq!(info.usersig.expires_at, T + 3600);
}

#[test]
fn wrong_key_and_missing_userbuf() {
    let token = pmk(Room::Numeric(1), 255);
    assert_eq!(
        verify_private_map_key(&token, APP, "other", "alice", Room::Numeric(1), T).map(drop),
        Err(AuthError::BadSignature)
    );
    let plain = fanout_auth::gen_usersig(APP, KEY, "alice", 3600, T);
    assert!(matches!(
        verify(&plain, Room::Numeric(1)),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn generation_refuses_unencodable_inputs() {
    let long = "x".repeat(65_536);
    let cases = [
        gen_private_map_key(APP, KEY, &long, Room::Numeric(1), 255, 60, T),
        gen_private_map_key(APP, KEY, "a", Room::Str(&long), 255, 60, T),
        gen_private_map_key(APP, KEY, "a", Room::Str(""), 255, 60, T),
        gen_private_map_key(APP, KEY, "a", Room::Numeric(1), 255, 1, u64::from(u32::MAX)),
        gen_private_map_key(APP, KEY, "a", Room::Numeric(1), 255, u64::MAX, 1),
    ];
    for (i, r) in cases.into_iter().enumerate() {
        assert!(
            matches!(r, Err(AuthError::InvalidInput(_))),
            "case {i}: {r:?}"
        );
    }
    // The field limits themselves are fine for generation, but such a token is far
    // beyond what verification accepts (the inflated-JSON cap), by design.
    let max = "x".repeat(65_535);
    let t = gen_private_map_key(APP, KEY, &max, Room::Str(&max), 255, 0, u64::from(u32::MAX))
        .expect("at the limits");
    assert!(matches!(
        verify_private_map_key(&t, APP, KEY, &max, Room::Str(&max), 0),
        Err(AuthError::Malformed(_))
    ));
    // Realistic sizes (Tencent caps UserIDs at 32 bytes) are nowhere near the caps.
    let id = "u".repeat(32);
    let room = "r".repeat(64);
    let t = gen_private_map_key(APP, KEY, &id, Room::Str(&room), 255, 0, u64::from(u32::MAX))
        .expect("realistic");
    assert!(verify_private_map_key(&t, APP, KEY, &id, Room::Str(&room), 0).is_ok());
}
