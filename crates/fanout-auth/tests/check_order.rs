//! Which error wins when several things are wrong. Decoding problems come first,
//! then "this token is for someone else" (app, then identifier, then — for a
//! PrivateMapKey — userbuf app, account and room), and expiry is reported only for
//! tokens whose HMAC is genuine: nothing is ever reported valid, or merely expired,
//! without the signature check.

mod common;

use common::{pmk_userbuf, APP, KEY};
use fanout_auth::{
    gen_private_map_key, gen_usersig, gen_usersig_with_userbuf, verify_private_map_key,
    verify_usersig, AuthError, Room,
};

const T: u64 = 1_700_000_000;
const LATE: u64 = T + 10_000;

#[test]
fn usersig_order() {
    let token = gen_usersig(APP, KEY, "alice", 60, T);
    // Everything wrong: app mismatch first.
    assert_eq!(
        verify_usersig(&token, APP + 1, "bad", "bob", LATE),
        Err(AuthError::SdkAppIdMismatch)
    );
    // Right app: identifier before signature and expiry.
    assert_eq!(
        verify_usersig(&token, APP, "bad", "bob", LATE),
        Err(AuthError::IdentifierMismatch)
    );
    // Right app and user, wrong key, expired: bad signature, never "expired".
    assert_eq!(
        verify_usersig(&token, APP, "bad", "alice", LATE),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        verify_usersig(&token, APP, KEY, "alice", LATE),
        Err(AuthError::Expired {
            expires_at: T + 60,
            now: LATE
        })
    );
    // Malformed beats everything.
    assert!(matches!(
        verify_usersig("garbage", APP + 1, "bad", "bob", LATE),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn private_map_key_order() {
    let token =
        gen_private_map_key(APP, KEY, "alice", Room::Numeric(7), 255, 60, T).expect("valid inputs");
    assert_eq!(
        verify_private_map_key(&token, APP + 1, "bad", "bob", Room::Str("x"), LATE),
        Err(AuthError::SdkAppIdMismatch)
    );
    assert_eq!(
        verify_private_map_key(&token, APP, "bad", "bob", Room::Str("x"), LATE),
        Err(AuthError::IdentifierMismatch)
    );
    assert_eq!(
        verify_private_map_key(&token, APP, "bad", "alice", Room::Str("x"), LATE),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        verify_private_map_key(&token, APP, KEY, "alice", Room::Str("x"), LATE),
        Err(AuthError::RoomMismatch)
    );
    assert_eq!(
        verify_private_map_key(&token, APP, KEY, "alice", Room::Numeric(7), LATE),
        Err(AuthError::Expired {
            expires_at: T + 60,
            now: LATE
        })
    );
    // A signed but unparsable userbuf is malformed even if also expired.
    let bad = gen_usersig_with_userbuf(APP, KEY, "alice", 60, T, b"\x00\x00");
    assert!(matches!(
        verify_private_map_key(&bad, APP, KEY, "alice", Room::Numeric(7), LATE),
        Err(AuthError::Malformed(_))
    ));
    // A garbage userbuf is only looked at after the signature check.
    assert_eq!(
        verify_private_map_key(&bad, APP, "bad", "alice", Room::Numeric(7), T),
        Err(AuthError::BadSignature)
    );
    // Userbuf app is checked before userbuf account, which is checked before room.
    let ub = pmk_userbuf("bob", APP + 1, Ok(8), (T + 60) as u32, 255);
    let t = gen_usersig_with_userbuf(APP, KEY, "alice", 60, T, &ub);
    assert_eq!(
        verify_private_map_key(&t, APP, KEY, "alice", Room::Numeric(7), T),
        Err(AuthError::SdkAppIdMismatch)
    );
    let ub = pmk_userbuf("bob", APP, Ok(8), (T + 60) as u32, 255);
    let t = gen_usersig_with_userbuf(APP, KEY, "alice", 60, T, &ub);
    assert_eq!(
        verify_private_map_key(&t, APP, KEY, "alice", Room::Numeric(7), T),
        Err(AuthError::IdentifierMismatch)
    );
}
