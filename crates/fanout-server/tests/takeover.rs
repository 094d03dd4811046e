//! Rule: when a UserID enters from a second connection, the first connection gets `kicked`
//! (reason 3) and loses its place but stays open; the same room is silent to the others, another
//! room is a `left` in the old room and a `user_entered` in the new one.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn same_room_kicks_the_first_connection_silently() {
    let server = start().await;
    let mut first = Client::entered(&server, APP_A, "alice", 1).await;
    let mut bob = Client::entered(&server, APP_A, "bob", 1).await;
    first.event("user_entered").await;

    let mut second = Client::connect(&server).await;
    let r = second.enter(APP_A, "alice", 1).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 1, "owner": "alice"}));
    assert_eq!(user_ids(&r), ["bob"]);

    assert_eq!(
        first.next_json().await,
        Some(json!({"event": "kicked", "reason": 3})),
        "the first connection is told exactly this"
    );
    first.no_event_within(QUIET).await;
    bob.no_event_within(QUIET).await;
    second.no_event_within(QUIET).await;
}

#[tokio::test]
async fn kicked_connection_stays_open_outside_any_room() {
    let server = start().await;
    let mut first = Client::entered(&server, APP_A, "alice", 1).await;
    let mut bob = Client::entered(&server, APP_A, "bob", 1).await;
    first.event("user_entered").await;
    let mut second = Client::entered(&server, APP_A, "alice", 1).await;
    assert_eq!(first.event("kicked").await["reason"], 3);

    first.assert_alive().await;
    assert_code(&first.request("exit_room", json!({})).await, -3341);
    assert_code(
        &first
            .request("switch_role", json!({"role_name": "audience"}))
            .await,
        -3341,
    );
    // Its failed requests did not touch alice's place: bob saw nothing, the second connection
    // is still in the room.
    bob.no_event_within(QUIET).await;
    second.no_event_within(QUIET).await;

    // It may enter again, taking the place back.
    assert_ok(&first.enter(APP_A, "alice", 1).await);
    assert_eq!(second.event("kicked").await["reason"], 3);
    bob.no_event_within(QUIET).await;
    assert_ok(&first.request("exit_room", json!({})).await);
    assert_eq!(
        bob.event("user_exited").await,
        json!({"event": "user_exited", "user_id": "alice", "reason": "left"})
    );
}

#[tokio::test]
async fn same_room_with_another_role_is_a_role_change_for_the_others() {
    let server = start().await;
    let mut first = Client::entered(&server, APP_A, "alice", 1).await;
    let mut bob = Client::entered(&server, APP_A, "bob", 1).await;
    first.event("user_entered").await;

    let mut fields = enter_fields(APP_A, "alice", 1);
    fields["role_name"] = json!("audience");
    let mut second = Client::connect(&server).await;
    assert_ok(&second.request("enter_room", fields).await);
    assert_eq!(first.event("kicked").await["reason"], 3);
    assert_eq!(
        bob.event("role_changed").await,
        json!({"event": "role_changed", "user_id": "alice", "role_name": "audience"})
    );
    bob.no_event_within(QUIET).await;
}

#[tokio::test]
async fn another_room_is_left_in_the_old_room_and_entered_in_the_new() {
    let server = start().await;
    let mut first = Client::entered(&server, APP_A, "alice", 1).await;
    let mut bob = Client::entered(&server, APP_A, "bob", 1).await;
    first.event("user_entered").await;
    let mut carol = Client::entered(&server, APP_A, "carol", 2).await;

    let mut second = Client::connect(&server).await;
    let r = second.enter(APP_A, "alice", 2).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 2, "owner": "carol"}));
    assert_eq!(user_ids(&r), ["carol"]);

    assert_eq!(
        first.event("kicked").await,
        json!({"event": "kicked", "reason": 3})
    );
    assert_eq!(
        bob.event("user_exited").await,
        json!({"event": "user_exited", "user_id": "alice", "reason": "left"})
    );
    assert_eq!(
        carol.event("user_entered").await,
        json!({"event": "user_entered", "user_id": "alice", "role_name": "anchor"})
    );
    first.no_event_within(QUIET).await;
    bob.no_event_within(QUIET).await;
    carol.no_event_within(QUIET).await;

    // The old connection is out of any room; alice is only in room 2 now.
    assert_code(&first.request("exit_room", json!({})).await, -3341);
    let mut dave = Client::connect(&server).await;
    let r = dave.enter(APP_A, "dave", 1).await;
    assert_ok(&r);
    assert_eq!(user_ids(&r), ["bob"]);
}
