//! Rule: `enter_room` admits only with a valid UserSig for this app and user (TLS-Sig-API v2);
//! a rejected one is `-100018` (expired, forged, other user, other app) or `-3320` (malformed).

mod common;

use common::*;
use serde_json::{json, Value};

fn fields_with_sig(app: u32, user: &str, user_sig: &str, room: u32) -> Value {
    json!({"sdk_app_id": app, "user_id": user, "user_sig": user_sig, "room_id": room})
}

/// Sends `enter_room` as alice in APP_A room 1 with `user_sig`, asserts it fails with `code`, and
/// checks that nothing was admitted: the connection is still usable and room 1 does not exist
/// (bob creates it and is alone).
async fn assert_rejected(user_sig: &str, code: i64) {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let r = c
        .request("enter_room", fields_with_sig(APP_A, "alice", user_sig, 1))
        .await;
    assert_code(&r, code);
    c.assert_alive().await;
    // Not in a room: exit_room says so.
    assert_code(&c.request("exit_room", json!({})).await, -3341);

    let mut bob = Client::connect(&server).await;
    let r = bob.enter(APP_A, "bob", 1).await;
    assert_ok(&r);
    assert_eq!(
        r["room"]["owner"], "bob",
        "the rejected user created the room: {r}"
    );
    assert_eq!(
        r["users"],
        json!([]),
        "the rejected user is in the room: {r}"
    );
}

#[tokio::test]
async fn valid_usersig_admits() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let user_sig = fanout_auth::gen_usersig(APP_A, KEY_A, "alice", 300, now());
    let r = c
        .request("enter_room", fields_with_sig(APP_A, "alice", &user_sig, 1))
        .await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 1, "owner": "alice"}));
    assert_eq!(r["users"], json!([]));
}

#[tokio::test]
async fn usersig_issued_long_ago_and_still_valid_admits() {
    // Control for the expiry test below: an old issue time alone is no reason to reject.
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let user_sig = fanout_auth::gen_usersig(APP_A, KEY_A, "alice", 7200, now() - 3600);
    let r = c
        .request("enter_room", fields_with_sig(APP_A, "alice", &user_sig, 1))
        .await;
    assert_ok(&r);
}

#[tokio::test]
async fn expired_usersig_is_rejected() {
    // Issued an hour ago, valid for a minute.
    let user_sig = fanout_auth::gen_usersig(APP_A, KEY_A, "alice", 60, now() - 3600);
    assert_rejected(&user_sig, -100018).await;
}

#[tokio::test]
async fn forged_usersig_is_rejected() {
    let user_sig = fanout_auth::gen_usersig(APP_A, "not-the-key-of-app-a", "alice", 86400, now());
    assert_rejected(&user_sig, -100018).await;
}

#[tokio::test]
async fn usersig_of_another_user_is_rejected() {
    let user_sig = fanout_auth::gen_usersig(APP_A, KEY_A, "bob", 86400, now());
    assert_rejected(&user_sig, -100018).await;
}

#[tokio::test]
async fn usersig_of_another_app_is_rejected() {
    // Issued by app B with app B's key.
    let user_sig = fanout_auth::gen_usersig(APP_B, KEY_B, "alice", 86400, now());
    assert_rejected(&user_sig, -100018).await;
}

#[tokio::test]
async fn usersig_naming_another_app_is_rejected_even_with_the_right_key() {
    // Signed with app A's key but naming app B: the sdkappid in the token must match.
    let user_sig = fanout_auth::gen_usersig(APP_B, KEY_A, "alice", 86400, now());
    assert_rejected(&user_sig, -100018).await;
}

#[tokio::test]
async fn garbage_usersig_is_malformed() {
    assert_rejected("garbage", -3320).await;
}

#[tokio::test]
async fn base64_of_junk_usersig_is_malformed() {
    // Valid base64 ("joke junk"), but not a zlib stream.
    assert_rejected("am9rZSBqdW5r", -3320).await;
}

#[tokio::test]
async fn token_envelope_around_non_json_is_malformed() {
    // Valid base64 and zlib, but the content is not the JSON of a UserSig.
    let user_sig = fanout_auth::codec::encode_token(b"this is not json");
    assert_rejected(&user_sig, -3320).await;
}

#[tokio::test]
async fn identifier_is_case_insensitive() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    // Signed for "Alice", entering as "alice".
    let user_sig = fanout_auth::gen_usersig(APP_A, KEY_A, "Alice", 86400, now());
    let r = c
        .request("enter_room", fields_with_sig(APP_A, "alice", &user_sig, 1))
        .await;
    assert_ok(&r);
    assert_eq!(r["room"]["owner"], "alice");

    // And the other way round: signed for "bob", entering as "BOB".
    let mut b = Client::connect(&server).await;
    let user_sig = fanout_auth::gen_usersig(APP_A, KEY_A, "bob", 86400, now());
    let r = b
        .request("enter_room", fields_with_sig(APP_A, "BOB", &user_sig, 1))
        .await;
    assert_ok(&r);
    assert_eq!(user_ids(&r), ["alice"]);
}
