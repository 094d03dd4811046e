//! Rule: an app's `max_rooms` and `max_users_per_room` (3 and 3 for APP_A) give `-3345` when
//! reached; closed rooms and departed users free their places; a user re-entering its own room
//! takes no second place.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn fourth_room_exceeds_max_rooms() {
    let server = start().await;
    let _a = Client::entered(&server, APP_A, "alice", 1).await;
    let _b = Client::entered(&server, APP_A, "bob", 2).await;
    let _c = Client::entered(&server, APP_A, "carol", 3).await;
    let mut d = Client::connect(&server).await;
    assert_code(&d.enter(APP_A, "dave", 4).await, -3345);
    // A string room is a room too.
    let mut f = enter_fields(APP_A, "dave", 1);
    f.as_object_mut().unwrap().remove("room_id");
    f["str_room_id"] = json!("four");
    assert_code(&d.request("enter_room", f).await, -3345);
    // Existing rooms can still be entered, and other apps are not limited by app A's rooms.
    assert_ok(&d.enter(APP_A, "dave", 1).await);
    let _e = Client::entered(&server, APP_B, "erin", 4).await;
}

#[tokio::test]
async fn fourth_user_exceeds_max_users_per_room() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let _b = Client::entered(&server, APP_A, "bob", 1).await;
    let _c = Client::entered(&server, APP_A, "carol", 1).await;
    a.event("user_entered").await;
    a.event("user_entered").await;

    let mut d = Client::connect(&server).await;
    assert_code(&d.enter(APP_A, "dave", 1).await, -3345);
    a.no_event_within(Duration::from_millis(300)).await;
    // Another room still has space.
    assert_ok(&d.enter(APP_A, "dave", 2).await);

    // A departure frees a place.
    assert_ok(&a.request("exit_room", json!({})).await);
    let mut e = Client::connect(&server).await;
    assert_ok(&e.enter(APP_A, "erin", 1).await);
}

#[tokio::test]
async fn closed_room_frees_its_place() {
    let server = start().await;
    let _a = Client::entered(&server, APP_A, "alice", 1).await;
    let _b = Client::entered(&server, APP_A, "bob", 2).await;
    let mut c = Client::entered(&server, APP_A, "carol", 3).await;
    let mut d = Client::connect(&server).await;
    assert_code(&d.enter(APP_A, "dave", 4).await, -3345);
    // Room 3 closes when its only user leaves.
    assert_ok(&c.request("exit_room", json!({})).await);
    let r = d.enter(APP_A, "dave", 4).await;
    assert_ok(&r);
    assert_eq!(r["room"]["owner"], "dave");
}

#[tokio::test]
async fn takeover_in_a_full_room_is_not_counted_twice() {
    let server = start().await;
    let mut a = Client::entered(&server, APP_A, "alice", 1).await;
    let _b = Client::entered(&server, APP_A, "bob", 1).await;
    let mut c = Client::entered(&server, APP_A, "carol", 1).await;
    // The room is full, yet carol from another connection gets back in (the same place).
    let mut c2 = Client::connect(&server).await;
    let r = c2.enter(APP_A, "carol", 1).await;
    assert_ok(&r);
    assert_eq!(user_ids(&r), ["alice", "bob"]);
    assert_eq!(c.event("kicked").await["reason"], 3);
    // Still full: three users, not four.
    let mut d = Client::connect(&server).await;
    assert_code(&d.enter(APP_A, "dave", 1).await, -3345);
    a.event("user_entered").await;
    a.event("user_entered").await;
    a.no_event_within(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn resume_in_a_full_room_is_not_counted_twice() {
    let server = start().await;
    let _a = Client::entered(&server, APP_A, "alice", 1).await;
    let mut b = Client::entered(&server, APP_A, "bob", 1).await;
    let c = Client::entered(&server, APP_A, "carol", 1).await;
    assert_eq!(b.event("user_entered").await["user_id"], "carol");
    c.vanish();
    b.no_event_within(Duration::from_millis(300)).await;
    // carol is in her grace period and still holds her place; she may resume it...
    let mut c2 = Client::connect(&server).await;
    assert_ok(&c2.enter(APP_A, "carol", 1).await);
    // ...while a newcomer finds the room full.
    let mut d = Client::connect(&server).await;
    assert_code(&d.enter(APP_A, "dave", 1).await, -3345);
}

#[tokio::test]
async fn takeover_at_max_rooms_into_own_room_is_allowed() {
    let server = start().await;
    let _a = Client::entered(&server, APP_A, "alice", 1).await;
    let _b = Client::entered(&server, APP_A, "bob", 2).await;
    let mut c = Client::entered(&server, APP_A, "carol", 3).await;
    let mut c2 = Client::connect(&server).await;
    let r = c2.enter(APP_A, "carol", 3).await;
    assert_ok(&r);
    assert_eq!(r["room"]["owner"], "carol");
    assert_eq!(c.event("kicked").await["reason"], 3);
}
