//! Rule: in an app with `private_map_key_required` (APP_C), `enter_room` needs a PrivateMapKey
//! valid for this user, app and room that grants bit 2 (enter) and, for a new room, bit 1
//! (create); its bits become the user's `privileges`. Any failure is `-100006`. `switch_role` may
//! carry a new key that replaces the privileges. Apps without the requirement grant 255.

mod common;

use common::*;
use fanout_auth::Room;
use serde_json::{json, Value};
use std::time::Duration;

const CREATE: u32 = 1;
const ENTER: u32 = 2;
const SEND_AUDIO: u32 = 4;
const RECV_AUDIO: u32 = 8;
const SEND_VIDEO: u32 = 16;
const RECV_VIDEO: u32 = 32;

fn fields_with_key(user: &str, room: u32, key: &str) -> Value {
    let mut f = enter_fields(APP_C, user, room);
    f["private_map_key"] = json!(key);
    f
}

/// alice enters APP_C room 1 with `key`; returns the reply.
async fn alice_enters_with(server: &Server, key: &str) -> Value {
    let mut c = Client::connect(server).await;
    c.request("enter_room", fields_with_key("alice", 1, key))
        .await
}

/// Opens APP_C room 1 with owner "owner" so that it exists.
async fn open_room_1(server: &Server) -> Client {
    let mut c = Client::connect(server).await;
    let key = pmk(APP_C, "owner", Room::Numeric(1), CREATE | ENTER);
    assert_ok(
        &c.request("enter_room", fields_with_key("owner", 1, &key))
            .await,
    );
    c
}

#[tokio::test]
async fn missing_key_is_rejected() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    assert_code(&c.enter(APP_C, "alice", 1).await, -100006);
    // An empty key is a missing key.
    assert_code(
        &c.request("enter_room", fields_with_key("alice", 1, ""))
            .await,
        -100006,
    );
}

#[tokio::test]
async fn create_and_enter_bits_open_a_new_room_with_the_keys_privileges() {
    let server = start().await;
    let bits = CREATE | ENTER | SEND_AUDIO | RECV_VIDEO;
    let r = alice_enters_with(&server, &pmk(APP_C, "alice", Room::Numeric(1), bits)).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 1, "owner": "alice"}));
    assert_eq!(r["privileges"], bits);

    let bits = CREATE | ENTER;
    let mut c = Client::connect(&server).await;
    let r = c
        .request(
            "enter_room",
            fields_with_key("bob", 2, &pmk(APP_C, "bob", Room::Numeric(2), bits)),
        )
        .await;
    assert_ok(&r);
    assert_eq!(r["privileges"], bits);
}

#[tokio::test]
async fn enter_bit_alone_cannot_create_a_room() {
    let server = start().await;
    let r = alice_enters_with(
        &server,
        &pmk(APP_C, "alice", Room::Numeric(1), ENTER | RECV_AUDIO),
    )
    .await;
    assert_code(&r, -100006);
    // Nor does create without enter get in.
    let r = alice_enters_with(
        &server,
        &pmk(APP_C, "alice", Room::Numeric(1), CREATE | RECV_AUDIO),
    )
    .await;
    assert_code(&r, -100006);
}

#[tokio::test]
async fn enter_bit_alone_enters_an_existing_room() {
    let server = start().await;
    let mut owner = open_room_1(&server).await;
    let bits = ENTER | RECV_AUDIO | RECV_VIDEO;
    let r = alice_enters_with(&server, &pmk(APP_C, "alice", Room::Numeric(1), bits)).await;
    assert_ok(&r);
    assert_eq!(r["room"]["owner"], "owner");
    assert_eq!(r["privileges"], bits);
    assert_eq!(owner.event("user_entered").await["user_id"], "alice");
}

#[tokio::test]
async fn key_for_another_room_is_rejected() {
    let server = start().await;
    let _owner = open_room_1(&server).await;
    let all = CREATE | ENTER;
    // Another numeric room.
    let r = alice_enters_with(&server, &pmk(APP_C, "alice", Room::Numeric(2), all)).await;
    assert_code(&r, -100006);
    // The string room "1" for numeric room 1.
    let r = alice_enters_with(&server, &pmk(APP_C, "alice", Room::Str("1"), all)).await;
    assert_code(&r, -100006);
    // The numeric room 1 for string room "1".
    let mut c = Client::connect(&server).await;
    let r = c
        .request(
            "enter_room",
            json!({
                "sdk_app_id": APP_C, "user_id": "alice", "user_sig": sig(APP_C, "alice"),
                "str_room_id": "1", "private_map_key": pmk(APP_C, "alice", Room::Numeric(1), all),
            }),
        )
        .await;
    assert_code(&r, -100006);
    // Control: the right string-room key works.
    let r = c
        .request(
            "enter_room",
            json!({
                "sdk_app_id": APP_C, "user_id": "alice", "user_sig": sig(APP_C, "alice"),
                "str_room_id": "1", "private_map_key": pmk(APP_C, "alice", Room::Str("1"), all),
            }),
        )
        .await;
    assert_ok(&r);
    assert_eq!(r["privileges"], all);
}

#[tokio::test]
async fn key_for_another_user_is_rejected() {
    let server = start().await;
    let r = alice_enters_with(
        &server,
        &pmk(APP_C, "bob", Room::Numeric(1), CREATE | ENTER),
    )
    .await;
    assert_code(&r, -100006);
}

#[tokio::test]
async fn expired_key_is_rejected() {
    let server = start().await;
    let key = fanout_auth::gen_private_map_key(
        APP_C,
        KEY_C,
        "alice",
        Room::Numeric(1),
        CREATE | ENTER,
        60,
        now() - 3600,
    )
    .unwrap();
    assert_code(&alice_enters_with(&server, &key).await, -100006);
}

#[tokio::test]
async fn forged_key_is_rejected() {
    let server = start().await;
    let forged = fanout_auth::gen_private_map_key(
        APP_C,
        "not-the-key-of-app-c",
        "alice",
        Room::Numeric(1),
        CREATE | ENTER,
        86400,
        now(),
    )
    .unwrap();
    assert_code(&alice_enters_with(&server, &forged).await, -100006);
    // A key of another app (its own secret) is no better.
    let other_app = pmk(APP_A, "alice", Room::Numeric(1), CREATE | ENTER);
    assert_code(&alice_enters_with(&server, &other_app).await, -100006);
    // Nor is a plain UserSig in place of a key.
    assert_code(
        &alice_enters_with(&server, &sig(APP_C, "alice")).await,
        -100006,
    );
}

#[tokio::test]
async fn switch_role_with_a_new_key_replaces_privileges() {
    let server = start().await;
    let mut owner = open_room_1(&server).await;
    let mut a = Client::connect(&server).await;
    let first = ENTER | RECV_AUDIO;
    let r = a
        .request(
            "enter_room",
            fields_with_key("alice", 1, &pmk(APP_C, "alice", Room::Numeric(1), first)),
        )
        .await;
    assert_ok(&r);
    assert_eq!(r["privileges"], first);
    owner.event("user_entered").await;

    let second = ENTER | SEND_AUDIO | SEND_VIDEO | RECV_AUDIO | RECV_VIDEO;
    let r = a
        .request(
            "switch_role",
            json!({"role_name": "anchor", "private_map_key": pmk(APP_C, "alice", Room::Numeric(1), second)}),
        )
        .await;
    assert_ok(&r);
    assert_eq!(r["privileges"], second);
    assert_eq!(owner.event("role_changed").await["user_id"], "alice");

    // Bad keys: forged, another room, another user. Each fails and changes nothing.
    let forged = fanout_auth::gen_private_map_key(
        APP_C,
        "wrong-secret",
        "alice",
        Room::Numeric(1),
        255,
        86400,
        now(),
    )
    .unwrap();
    for bad in [
        forged,
        pmk(APP_C, "alice", Room::Numeric(2), 255),
        pmk(APP_C, "owner", Room::Numeric(1), 255),
    ] {
        let r = a
            .request(
                "switch_role",
                json!({"role_name": "anchor", "private_map_key": bad}),
            )
            .await;
        assert_code(&r, -100006);
    }
    owner.no_event_within(Duration::from_millis(300)).await;

    // Without a key the privileges stay as the last good key set them.
    let r = a
        .request("switch_role", json!({"role_name": "anchor"}))
        .await;
    assert_ok(&r);
    assert_eq!(r["privileges"], second);
}

#[tokio::test]
async fn apps_without_the_requirement_grant_all_privileges() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let r = c.enter(APP_A, "alice", 1).await;
    assert_ok(&r);
    assert_eq!(r["privileges"], 255);
    // A key given anyway does not narrow them.
    let mut c = Client::connect(&server).await;
    let mut f = enter_fields(APP_A, "bob", 1);
    f["private_map_key"] = json!(pmk(APP_A, "bob", Room::Numeric(1), ENTER));
    let r = c.request("enter_room", f).await;
    assert_ok(&r);
    assert_eq!(r["privileges"], 255);
}
