//! Rule: entering a room that does not exist creates it with the caller as owner; the room closes
//! when its last user exits (the owner cannot close it); a connection is in at most one room.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn first_entrant_creates_the_room_and_is_owner() {
    let server = start().await;
    let mut a = Client::connect(&server).await;
    let r = a.enter(APP_A, "alice", 1).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 1, "owner": "alice"}));
    assert_eq!(r["users"], json!([]));
}

#[tokio::test]
async fn later_entrants_see_the_owner_and_the_users_who_can_publish() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let mut b = Client::connect(&server).await;
    let mut fields = enter_fields(APP_A, "bob", 1);
    fields["role_name"] = json!("audience");
    let r = b.request("enter_room", fields).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 1, "owner": "alice"}));
    assert_eq!(
        r["users"],
        json!([{"user_id": "alice", "role_name": "anchor", "streams": []}])
    );

    let mut c = Client::connect(&server).await;
    let r = c.enter(APP_A, "carol", 1).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 1, "owner": "alice"}));
    assert_eq!(
        r["users"],
        json!([{"user_id": "alice", "role_name": "anchor", "streams": []}]),
        "users is everyone else who can publish: not the caller, not bob the audience"
    );
    // Carol (an anchor) is announced to both; bob (audience) was announced to no one.
    let e = a.event("user_entered").await;
    assert_eq!(e["user_id"], "carol");
    let e = b.event("user_entered").await;
    assert_eq!(e["user_id"], "carol");
}

#[tokio::test]
async fn user_entered_reaches_the_others_only() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let mut b = Client::entered(&server, APP_A, "bob", 1).await;
    assert_eq!(
        a.event("user_entered").await,
        json!({"event": "user_entered", "user_id": "bob", "role_name": "anchor"})
    );
    let mut fields = enter_fields(APP_A, "carol", 1);
    fields["role_name"] = json!("anchor_sd");
    let mut c = Client::connect(&server).await;
    assert_ok(&c.request("enter_room", fields).await);
    let expected = json!({"event": "user_entered", "user_id": "carol", "role_name": "anchor_sd"});
    assert_eq!(a.event("user_entered").await, expected);
    assert_eq!(b.event("user_entered").await, expected);
    // The entrant is not told about itself.
    c.no_event_within(QUIET).await;
}

#[tokio::test]
async fn exit_room_tells_the_others_left() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let mut b = Client::entered(&server, APP_A, "bob", 1).await;
    a.event("user_entered").await;
    let r = b.request("exit_room", json!({})).await;
    assert_eq!(r, json!({"res": 2, "ok": true}), "exit_room replies {{}}");
    assert_eq!(
        a.event("user_exited").await,
        json!({"event": "user_exited", "user_id": "bob", "reason": "left"})
    );
    b.no_event_within(QUIET).await;
}

#[tokio::test]
async fn owner_leaving_does_not_close_the_room() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let mut b = Client::entered(&server, APP_A, "bob", 1).await;
    a.event("user_entered").await;
    assert_ok(&a.request("exit_room", json!({})).await);
    assert_eq!(
        b.event("user_exited").await,
        json!({"event": "user_exited", "user_id": "alice", "reason": "left"})
    );

    let mut c = Client::connect(&server).await;
    let r = c.enter(APP_A, "carol", 1).await;
    assert_ok(&r);
    assert_eq!(
        r["room"],
        json!({"room_id": 1, "owner": "alice"}),
        "the room stays open and its owner is still its creator"
    );
    assert_eq!(
        r["users"],
        json!([{"user_id": "bob", "role_name": "anchor", "streams": []}])
    );
    assert_eq!(b.event("user_entered").await["user_id"], "carol");
}

#[tokio::test]
async fn room_closes_when_the_last_user_exits() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let mut b = Client::entered(&server, APP_A, "bob", 1).await;
    assert_ok(&a.request("exit_room", json!({})).await);
    assert_ok(&b.request("exit_room", json!({})).await);

    let mut d = Client::connect(&server).await;
    let r = d.enter(APP_A, "dave", 1).await;
    assert_ok(&r);
    assert_eq!(
        r["room"],
        json!({"room_id": 1, "owner": "dave"}),
        "a new room, owned by its new creator"
    );
    assert_eq!(r["users"], json!([]));
}

#[tokio::test]
async fn second_enter_room_on_one_connection_fails() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let mut b = Client::entered(&server, APP_A, "bob", 1).await;
    a.event("user_entered").await;

    // Same room, another room, another user: all refused while in a room.
    assert_code(&b.enter(APP_A, "bob", 1).await, -3342);
    assert_code(&b.enter(APP_A, "bob", 2).await, -3342);
    assert_code(&b.enter(APP_A, "carol", 2).await, -3342);
    // Nothing changed: alice saw nothing, bob is still in room 1.
    a.no_event_within(QUIET).await;
    assert_ok(&b.request("exit_room", json!({})).await);
    assert_eq!(a.event("user_exited").await["user_id"], "bob");
}

#[tokio::test]
async fn exit_room_and_switch_role_outside_a_room_fail() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    assert_code(&c.request("exit_room", json!({})).await, -3341);
    assert_code(
        &c.request("switch_role", json!({"role_name": "anchor"}))
            .await,
        -3341,
    );

    // And again after leaving a room.
    assert_ok(&c.enter(APP_A, "alice", 1).await);
    assert_ok(&c.request("exit_room", json!({})).await);
    assert_code(&c.request("exit_room", json!({})).await, -3341);
    assert_code(
        &c.request("switch_role", json!({"role_name": "anchor"}))
            .await,
        -3341,
    );
}

#[tokio::test]
async fn after_exit_room_the_connection_may_enter_another_room() {
    let server = start().await;
    let mut b = Client::entered(&server, APP_A, "bob", 1).await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    b.event("user_entered").await;
    assert_ok(&a.request("exit_room", json!({})).await);
    assert_eq!(b.event("user_exited").await["reason"], "left");

    let r = a.enter(APP_A, "alice", 2).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 2, "owner": "alice"}));
    assert_eq!(r["users"], json!([]));
    b.no_event_within(QUIET).await;
}
