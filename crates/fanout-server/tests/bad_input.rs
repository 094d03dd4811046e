//! Rule: every malformed frame gets its error code on that connection only (`res: null` when the
//! request id could not be read); oversized frames close with 1009, a connection that never enters
//! a room closes with 1008 after `auth_timeout_secs` (2 s here); and one bad client never affects
//! another: a room on other connections sees no stray events and keeps working.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const QUIET: Duration = Duration::from_millis(200);

/// alice and bob in APP_A room 1, their entry events consumed.
async fn good_room(server: &Server) -> (Client, Client) {
    let mut alice = Client::entered(server, APP_A, "alice", 1).await;
    let bob = Client::entered(server, APP_A, "bob", 1).await;
    assert_eq!(alice.event("user_entered").await["user_id"], "bob");
    (alice, bob)
}

/// The good room got no stray events and both its connections still answer.
async fn assert_unaffected(alice: &mut Client, bob: &mut Client) {
    tokio::join!(alice.no_event_within(QUIET), bob.no_event_within(QUIET));
    alice.assert_alive().await;
    bob.assert_alive().await;
}

/// Sends a raw text frame and returns the next reply (whatever its `res`).
async fn send_text(c: &mut Client, text: &str) -> Value {
    c.send_raw(Message::text(text.to_owned())).await;
    loop {
        let v = c
            .next_json()
            .await
            .expect("a reply before the socket closed");
        if v.get("event").is_none() {
            return v;
        }
        c.events.push(v);
    }
}

#[track_caller]
fn assert_err(reply: &Value, res: Value, code: i64) {
    assert_eq!(reply["ok"], false, "expected failure {code}, got {reply}");
    assert_eq!(reply["res"], res, "wrong res in {reply}");
    assert_eq!(reply["code"], code, "wrong code in {reply}");
    assert!(reply["error"].is_string(), "no error text in {reply}");
}

#[tokio::test]
async fn non_json_text_is_malformed_with_null_res() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    for text in ["hello", "{\"req\":1,", "", "{req:1}"] {
        assert_err(&send_text(&mut bad, text).await, Value::Null, -3344);
    }
    bad.assert_alive().await;
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_malformed() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    for text in [
        r#"[1,2]"#,
        r#"[{"req":1,"op":"ping"}]"#,
        r#""ping""#,
        "42",
        "null",
    ] {
        assert_err(&send_text(&mut bad, text).await, Value::Null, -3344);
    }
    bad.assert_alive().await;
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn missing_or_unreadable_req_gives_null_res() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    assert_err(
        &send_text(&mut bad, r#"{"op":"ping"}"#).await,
        Value::Null,
        -3316,
    );
    for text in [
        r#"{"req":"1","op":"ping"}"#,
        r#"{"req":1.5,"op":"ping"}"#,
        r#"{"req":[1],"op":"ping"}"#,
    ] {
        assert_err(&send_text(&mut bad, text).await, Value::Null, -3344);
    }
    bad.assert_alive().await;
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn unknown_op_is_malformed_and_echoes_req() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    assert_err(
        &send_text(&mut bad, r#"{"req":77,"op":"fly"}"#).await,
        json!(77),
        -3344,
    );
    assert_err(
        &send_text(&mut bad, r#"{"req":-5,"op":"ENTER_ROOM"}"#).await,
        json!(-5),
        -3344,
    );
    assert_err(
        &send_text(&mut bad, r#"{"req":78,"op":7}"#).await,
        json!(78),
        -3344,
    );
    assert_err(
        &send_text(&mut bad, r#"{"req":79}"#).await,
        json!(79),
        -3316,
    );
    bad.assert_alive().await;
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn unlisted_fields_are_ignored() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let r = send_text(
        &mut c,
        r#"{"req":1,"op":"ping","room_id":"x","extra":[1,{}]}"#,
    )
    .await;
    assert_eq!(r, json!({"res": 1, "ok": true}));
    let mut f = enter_fields(APP_A, "alice", 1);
    f["colour"] = json!({"nested": true});
    f["streams"] = json!(42);
    assert_ok(&c.request("enter_room", f).await);
    let r = c.request("exit_room", json!({"reason": 5})).await;
    assert_ok(&r);
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_malformed() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    let cases = [
        ("sdk_app_id", json!(APP_A.to_string())),
        ("sdk_app_id", json!([APP_A])),
        ("user_id", json!(5)),
        ("user_sig", json!({"sig": "x"})),
        ("role_name", json!(7)),
        ("role_name", json!(["anchor"])),
        ("private_map_key", json!(5)),
    ];
    for (field, value) in cases {
        let mut f = enter_fields(APP_A, "carol", 1);
        f[field] = value.clone();
        let r = bad.request("enter_room", f).await;
        assert_eq!(r["code"], -3344, "{field}: {value} gave {r}");
    }
    // The shape is checked before the state: -3344 even outside a room.
    assert_code(
        &bad.request("switch_role", json!({"role_name": 3})).await,
        -3344,
    );
    // None of these let carol in.
    assert_code(&bad.request("exit_room", json!({})).await, -3341);
    assert_unaffected(&mut alice, &mut bob).await;

    // Inside a room too, and the role is left alone.
    assert_code(
        &bob.request("switch_role", json!({"role_name": 3})).await,
        -3344,
    );
    assert_code(
        &bob.request(
            "switch_role",
            json!({"role_name": "audience", "private_map_key": 1}),
        )
        .await,
        -3344,
    );
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn missing_parameters_are_reported() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    for field in ["sdk_app_id", "user_id", "user_sig", "room_id"] {
        let mut f = enter_fields(APP_A, "carol", 1);
        f.as_object_mut().unwrap().remove(field);
        let r = bad.request("enter_room", f).await;
        assert_eq!(r["code"], -3316, "without {field}: {r}");
        let mut f = enter_fields(APP_A, "carol", 1);
        f[field] = Value::Null;
        let r = bad.request("enter_room", f).await;
        assert_eq!(r["code"], -3316, "with {field}: null: {r}");
    }
    let mut f = enter_fields(APP_A, "carol", 1);
    f["user_sig"] = json!("");
    assert_code(&bad.request("enter_room", f).await, -3316);
    assert_code(&bad.request("switch_role", json!({})).await, -3316);
    assert_code(
        &bob.request("switch_role", json!({"role_name": ""})).await,
        -3316,
    );
    assert_code(&bad.request("exit_room", json!({})).await, -3341);
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn binary_frame_is_answered_and_the_connection_stays_usable() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    bad.send_raw(Message::binary(br#"{"req":1,"op":"ping"}"#.to_vec()))
        .await;
    assert_err(&bad.reply_for(None).await, Value::Null, -3344);
    bad.send_raw(Message::binary(vec![0u8, 159, 146, 150]))
        .await;
    assert_err(&bad.reply_for(None).await, Value::Null, -3344);
    bad.assert_alive().await;
    // It can still enter a room, and the room hears of it normally.
    assert_ok(&bad.enter(APP_A, "carol", 1).await);
    assert_eq!(alice.event("user_entered").await["user_id"], "carol");
    assert_eq!(bob.event("user_entered").await["user_id"], "carol");
    // Even in a room a binary frame changes nothing.
    bad.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_err(&bad.reply_for(None).await, Value::Null, -3344);
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn frame_of_exactly_65536_bytes_is_accepted() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let mut text = r#"{"req":1,"op":"ping"}"#.to_string();
    text.push_str(&" ".repeat(65536 - text.len()));
    assert_eq!(text.len(), 65536);
    assert_eq!(
        send_text(&mut c, &text).await,
        json!({"res": 1, "ok": true})
    );
}

#[tokio::test]
async fn oversized_text_frame_closes_with_1009() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    assert_ok(&bad.enter(APP_A, "carol", 2).await);
    let mut text = r#"{"req":1,"op":"ping","pad":""#.to_string();
    text.push_str(&"x".repeat(70_000 - text.len() - 2));
    text.push_str("\"}");
    assert_eq!(text.len(), 70_000);
    bad.send_raw(Message::text(text)).await;
    let (code, reason) = bad
        .wait_close()
        .await
        .expect("a close frame with a code and reason");
    assert_eq!(code, 1009, "reason {reason:?}");
    assert!(reason.contains("65536"), "reason {reason:?}");
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn huge_text_frame_ends_the_connection() {
    // Over 256 KiB the WebSocket layer cuts the connection off itself (no reason promised).
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    bad.send_raw(Message::text("y".repeat(300_000))).await;
    let _ = bad.wait_close().await;
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn connection_that_never_enters_is_closed_after_the_auth_timeout() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;
    let opened = Instant::now();
    // Activity is not authentication: pings and failed enters do not extend the deadline.
    assert_code(&bad.enter(APP_C, "mallory", 1).await, -100006);
    bad.assert_alive().await;

    let (closed, _, _) = tokio::join!(
        bad.wait_close_within(Duration::from_secs(4)),
        alice.no_event_within(Duration::from_millis(2500)),
        bob.no_event_within(Duration::from_millis(2500)),
    );
    let after = opened.elapsed();
    let (code, reason) = closed.expect("a close frame with a code and reason");
    assert_eq!(code, 1008, "reason {reason:?}");
    assert!(
        reason.contains("authentication timeout"),
        "reason {reason:?}"
    );
    assert!(
        after >= Duration::from_millis(1900),
        "closed after only {after:?}"
    );
    alice.assert_alive().await;
    bob.assert_alive().await;
}

#[tokio::test]
async fn connection_that_entered_is_not_closed_by_the_auth_timeout() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    assert_ok(&c.enter(APP_A, "alice", 1).await);
    // Leaving the room does not make it unauthenticated again.
    assert_ok(&c.request("exit_room", json!({})).await);
    c.no_event_within(Duration::from_millis(2600)).await;
    c.assert_alive().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut c = Client::connect(&server).await;
    let enter = {
        let mut f = enter_fields(APP_A, "carol", 1);
        f["req"] = json!(2);
        f["op"] = json!("enter_room");
        f.to_string()
    };
    let frames = [
        r#"{"req":1,"op":"ping"}"#.to_string(),
        "garbage".to_string(),
        enter,
        r#"{"req":3,"op":"fly"}"#.to_string(),
        r#"{"req":4,"op":"switch_role","role_name":"nope"}"#.to_string(),
        r#"{"req":5,"op":"exit_room"}"#.to_string(),
    ];
    for f in frames {
        c.send_raw(Message::text(f)).await;
    }
    let mut replies = Vec::new();
    while replies.len() < 6 {
        let v = c.next_json().await.expect("replies");
        if v.get("event").is_none() {
            replies.push((v["res"].clone(), v["ok"].clone(), v.get("code").cloned()));
        }
    }
    assert_eq!(
        replies,
        vec![
            (json!(1), json!(true), None),
            (Value::Null, json!(false), Some(json!(-3344))),
            (json!(2), json!(true), None),
            (json!(3), json!(false), Some(json!(-3344))),
            (json!(4), json!(false), Some(json!(-3340))),
            (json!(5), json!(true), None),
        ]
    );
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.event("user_entered").await["user_id"], "carol");
        assert_eq!(c.event("user_exited").await["user_id"], "carol");
    }
    assert_unaffected(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn bad_client_interleaved_with_a_working_room() {
    let server = start().await;
    let (mut alice, mut bob) = good_room(&server).await;
    let mut bad = Client::connect(&server).await;

    // Junk on the bad connection...
    assert_err(&send_text(&mut bad, "}{").await, Value::Null, -3344);
    // ...the room carries on...
    let mut carol = Client::entered(&server, APP_A, "carol", 1).await;
    assert_eq!(alice.event("user_entered").await["user_id"], "carol");
    assert_eq!(bob.event("user_entered").await["user_id"], "carol");
    // ...more junk, including an attempt to take alice's place with a forged UserSig...
    bad.send_raw(Message::binary(vec![9; 10])).await;
    assert_err(&bad.reply_for(None).await, Value::Null, -3344);
    let mut forged = enter_fields(APP_A, "alice", 1);
    forged["user_sig"] = json!(fanout_auth::gen_usersig(
        APP_A,
        "wrong",
        "alice",
        600,
        now()
    ));
    assert_code(&bad.request("enter_room", forged).await, -100018);
    // ...and into the full room (-3345) with a valid credential of its own.
    assert_code(&bad.enter(APP_A, "mallory", 1).await, -3345);
    // The room still works: a role switch is seen by everyone else.
    let r = bob
        .request("switch_role", json!({"role_name": "audience"}))
        .await;
    assert_ok(&r);
    assert_eq!(alice.event("role_changed").await["user_id"], "bob");
    assert_eq!(carol.event("role_changed").await["user_id"], "bob");
    // Finally the bad client sends an oversized frame and is closed.
    bad.send_raw(Message::text("z".repeat(70_000))).await;
    assert_eq!(bad.wait_close().await.map(|(code, _)| code), Some(1009));

    tokio::join!(
        alice.no_event_within(QUIET),
        bob.no_event_within(QUIET),
        carol.no_event_within(QUIET),
    );
    alice.assert_alive().await;
    carol.assert_alive().await;
    assert_ok(&carol.request("exit_room", json!({})).await);
    assert_eq!(alice.event("user_exited").await["user_id"], "carol");
    assert_eq!(bob.event("user_exited").await["user_id"], "carol");
}

#[tokio::test]
async fn checks_come_in_the_documented_order() {
    let server = start().await;
    let (_alice, mut bob) = good_room(&server).await;

    // Shape (-3316, -3344, -3318) before "already in a room" (-3342).
    let mut f = enter_fields(APP_A, "bob", 1);
    f.as_object_mut().unwrap().remove("user_sig");
    assert_code(&bob.request("enter_room", f).await, -3316);
    let mut f = enter_fields(APP_A, "bob", 1);
    f["role_name"] = json!(1);
    assert_code(&bob.request("enter_room", f).await, -3344);
    assert_code(&bob.enter(APP_A, "bob", 0).await, -3318);
    // "Already in a room" before the application.
    assert_code(&bob.enter(1400000099, "bob", 1).await, -3342);

    let mut c = Client::connect(&server).await;
    // Application before UserID.
    assert_code(&c.enter(1400000099, "12345", 1).await, -3317);
    // UserID before UserSig.
    let mut f = enter_fields(APP_A, "a b", 1);
    f["user_sig"] = json!("garbage");
    assert_code(&c.request("enter_room", f).await, -3319);
    // UserSig before PrivateMapKey (app C requires one; none is given).
    let mut f = enter_fields(APP_C, "carol", 1);
    f["user_sig"] = json!("garbage");
    assert_code(&c.request("enter_room", f).await, -3320);
    let mut f = enter_fields(APP_C, "carol", 1);
    f["user_sig"] = json!(sig(APP_A, "carol"));
    assert_code(&c.request("enter_room", f).await, -100018);
    // UserSig before quota: app A has 1 room of 3; fill it, then a forged UserSig for a 4th room.
    let _r2 = Client::entered(&server, APP_A, "dave", 2).await;
    let _r3 = Client::entered(&server, APP_A, "erin", 3).await;
    let mut f = enter_fields(APP_A, "carol", 4);
    f["user_sig"] = json!(fanout_auth::gen_usersig(
        APP_A,
        "wrong",
        "carol",
        600,
        now()
    ));
    assert_code(&c.request("enter_room", f).await, -100018);
    assert_code(&c.enter(APP_A, "carol", 4).await, -3345);
}

#[tokio::test]
async fn sdk_app_id_beyond_u32_is_checked_in_the_documented_order() {
    // docs/protocol.md: an sdk_app_id that is not a u32 is -3317 (application), and the application
    // is checked after the shape of the request (-3318 for a bad room id) and after "already in a
    // room" (-3342).
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let mut f = enter_fields(APP_A, "alice", 0);
    f["sdk_app_id"] = json!(4294967296u64);
    let r = c.request("enter_room", f).await;
    assert_eq!(
        r["code"], -3318,
        "bad room id must be reported before the app: {r}"
    );

    assert_ok(&c.enter(APP_A, "alice", 1).await);
    let mut f = enter_fields(APP_A, "alice", 1);
    f["sdk_app_id"] = json!(4294967296u64);
    let r = c.request("enter_room", f).await;
    assert_eq!(
        r["code"], -3342,
        "already in a room must be reported before the app: {r}"
    );
}
