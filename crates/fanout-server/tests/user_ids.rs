//! Rule: a UserID is 1..=32 bytes of letters, digits, `_` and `-`, not digits only, and
//! case-insensitive; a bad one is `-3319`, an empty one `-3316`.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn invalid_user_ids_are_rejected() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let too_long = "a".repeat(33);
    for user in [
        "12345",
        "0",
        "a b",
        " alice",
        "alice!",
        "al.ice",
        "al/ice",
        too_long.as_str(),
        "ümit",
        "用户",
    ] {
        // The UserSig is valid for exactly this identifier, so only the UserID rule can refuse it.
        let r = c.enter(APP_A, user, 1).await;
        assert_code(&r, -3319);
    }
    // Nothing was admitted: this connection is not in a room.
    assert_code(&c.request("exit_room", json!({})).await, -3341);
}

#[tokio::test]
async fn boundary_user_ids_are_accepted() {
    let server = start().await;
    for (i, user) in ["a".repeat(32), "x".into(), "9lives".into(), "a_b-C9".into()]
        .iter()
        .enumerate()
    {
        let mut c = Client::connect(&server).await;
        // Two rooms, so the per-room quota (3) is not reached.
        let r = c.enter(APP_A, user, 10 + (i as u32 % 2)).await;
        assert_ok(&r);
    }
}

#[tokio::test]
async fn empty_user_id_is_a_missing_parameter() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let mut fields = enter_fields(APP_A, "alice", 1);
    fields["user_id"] = json!("");
    assert_code(&c.request("enter_room", fields).await, -3316);
}

#[tokio::test]
async fn user_ids_differing_in_case_are_one_user() {
    let server = start().await;
    let mut first = Client::connect(&server).await;
    let r = first.enter(APP_A, "Alice", 1).await;
    assert_ok(&r);
    let mut bob = Client::entered(&server, APP_A, "bob", 1).await;
    assert_eq!(
        first.event("user_entered").await["user_id"],
        "bob",
        "bob's entry is seen"
    );

    let mut second = Client::connect(&server).await;
    let r = second.enter(APP_A, "ALICE", 1).await;
    assert_ok(&r);
    // The same user, so a takeover: not listed as someone else, nobody new for bob.
    assert_eq!(
        user_ids(&r),
        ["bob"],
        "ALICE sees Alice as another user: {r}"
    );
    assert_eq!(r["room"]["owner"], "Alice");
    assert_eq!(
        first.event("kicked").await,
        json!({"event": "kicked", "reason": 3})
    );
    bob.no_event_within(Duration::from_millis(300)).await;

    // `alice` (lower case) from a third connection takes over again.
    let mut third = Client::connect(&server).await;
    assert_ok(&third.enter(APP_A, "alice", 1).await);
    assert_eq!(second.event("kicked").await["reason"], 3);
    bob.no_event_within(Duration::from_millis(300)).await;
}
