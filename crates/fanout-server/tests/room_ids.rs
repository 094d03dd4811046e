//! Rule: a room is `room_id` (1..=4294967294) or `str_room_id` (1..=64 bytes of an allowed
//! character set), never both; anything else is `-3318`. Numeric 123 and string "123" are
//! different rooms.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn str_room_fields(app: u32, user: &str, room: &str) -> Value {
    json!({"sdk_app_id": app, "user_id": user, "user_sig": sig(app, user), "str_room_id": room})
}

#[tokio::test]
async fn bad_room_ids_are_rejected() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let base = enter_fields(APP_A, "alice", 1);
    let with = |changes: Value| {
        let mut f = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                f.as_object_mut().unwrap().remove(k);
            } else {
                f[k] = v.clone();
            }
        }
        f
    };
    let cases = [
        json!({"room_id": 0}),
        json!({"room_id": 4294967295u64}),
        json!({"room_id": 4294967296u64}),
        json!({"room_id": -1}),
        json!({"room_id": 1.5}),
        json!({"room_id": "12"}),
        json!({"room_id": true}),
        json!({"room_id": 5, "str_room_id": "five"}),
        json!({"room_id": null, "str_room_id": "a/b"}),
        json!({"room_id": null, "str_room_id": "r".repeat(65)}),
        json!({"room_id": null, "str_room_id": "caf\u{e9}"}),
        json!({"room_id": null, "str_room_id": "quote\"d"}),
        json!({"room_id": null, "str_room_id": 12}),
    ];
    for case in cases {
        let r = c.request("enter_room", with(case.clone())).await;
        assert_eq!(r["code"], -3318, "{case} gave {r}");
    }
    assert_code(&c.request("exit_room", json!({})).await, -3341);
}

#[tokio::test]
async fn largest_numeric_room_id_is_accepted() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let r = c.enter(APP_A, "alice", 4294967294).await;
    assert_ok(&r);
    assert_eq!(
        r["room"],
        json!({"room_id": 4294967294u64, "owner": "alice"})
    );
}

#[tokio::test]
async fn numeric_and_string_room_with_the_same_digits_are_different_rooms() {
    let server = start().await;
    let mut num = Client::entered(&server, APP_A, "alice", 123).await;
    let mut s = Client::connect(&server).await;
    let r = s
        .request("enter_room", str_room_fields(APP_A, "bob", "123"))
        .await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"str_room_id": "123", "owner": "bob"}));
    assert_eq!(
        r["users"],
        json!([]),
        "the string room lists the numeric room's user"
    );
    num.no_event_within(Duration::from_millis(300)).await;

    // And the other way round: a second user of the numeric room sees only alice.
    let mut num2 = Client::connect(&server).await;
    let r = num2.enter(APP_A, "carol", 123).await;
    assert_ok(&r);
    assert_eq!(user_ids(&r), ["alice"]);
    assert_eq!(num.event("user_entered").await["user_id"], "carol");
    s.no_event_within(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn string_room_with_punctuation_works() {
    let server = start().await;
    let room = "a b!#$%&()+-:;<=.>?@[]^_{}|~,Z9";
    let mut a = Client::connect(&server).await;
    let r = a
        .request("enter_room", str_room_fields(APP_A, "alice", room))
        .await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"str_room_id": room, "owner": "alice"}));
    assert!(
        r["room"].get("room_id").is_none(),
        "a string room has no room_id: {r}"
    );

    let mut b = Client::connect(&server).await;
    let r = b
        .request("enter_room", str_room_fields(APP_A, "bob", room))
        .await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"str_room_id": room, "owner": "alice"}));
    assert_eq!(user_ids(&r), ["alice"]);
    assert_eq!(a.event("user_entered").await["user_id"], "bob");
}

#[tokio::test]
async fn string_room_of_64_bytes_is_accepted() {
    let server = start().await;
    let room = "r".repeat(64);
    let mut a = Client::connect(&server).await;
    let r = a
        .request("enter_room", str_room_fields(APP_A, "alice", &room))
        .await;
    assert_ok(&r);
    assert_eq!(r["room"]["str_room_id"], room);
}
