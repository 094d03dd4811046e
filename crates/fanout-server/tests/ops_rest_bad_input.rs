//! Rule (docs/api.md, "Authentication and limits"): bad requests are answered with a JSON error —
//! 400 for a body that is not a JSON object or a field of the wrong type or value (naming the
//! field), 413 for a body over 16 KiB — and never disturb the server: it keeps serving REST and
//! signalling afterwards, and the rooms are as they were.

mod common;
mod ops_common;

use bytes::Bytes;
use ops_common::*;
use serde_json::json;
use std::time::Duration;

const MAX_BODY: usize = 16 * 1024;

async fn post_raw(server: &Server, rest: &str, body: impl Into<Bytes>) -> Reply {
    let path = format!("/v1/apps/{APP_A}{rest}");
    api_token(server, "POST", &path, &admin_token(APP_A), body).await
}

async fn put_raw(server: &Server, rest: &str, body: impl Into<Bytes>) -> Reply {
    let path = format!("/v1/apps/{APP_A}{rest}");
    api_token(server, "PUT", &path, &admin_token(APP_A), body).await
}

/// The server still serves: REST answers, the room and its users are intact, and a new WebSocket
/// user can enter and is seen by the others.
async fn still_serving(server: &Server, alice: &mut Client) {
    let d = get_ok(server, APP_A, "/rooms/1").await;
    assert_eq!(
        users_by_id(&d).keys().collect::<Vec<_>>(),
        ["alice", "bob"],
        "{d}"
    );
    alice.assert_alive().await;
    let (mut z, _) = enter_num(server, APP_A, "zoe", 1, None).await;
    assert_eq!(alice.event("user_entered").await["user_id"], "zoe");
    assert_eq!(z.request("exit_room", json!({})).await["ok"], true);
    assert_eq!(alice.event("user_exited").await["user_id"], "zoe");
}

async fn room_with_two(server: &Server) -> (Client, Client) {
    let (alice, _) = enter_num(server, APP_A, "alice", 1, None).await;
    let (bob, _) = enter_num(server, APP_A, "bob", 1, None).await;
    let mut alice = alice;
    alice.event("user_entered").await;
    (alice, bob)
}

#[tokio::test]
async fn bodies_that_are_not_a_json_object_are_400() {
    let server = start_ops().await;
    let (mut alice, _bob) = room_with_two(&server).await;
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<(&str, Bytes)> = vec![
        ("empty", Bytes::new()),
        ("not JSON", Bytes::from_static(b"user_ids=bob")),
        (
            "truncated JSON",
            Bytes::from_static(b"{\"user_ids\": [\"bob\""),
        ),
        ("JSON array", Bytes::from_static(b"[\"bob\"]")),
        ("JSON string", Bytes::from_static(b"\"bob\"")),
        ("JSON number", Bytes::from_static(b"1")),
        ("JSON null", Bytes::from_static(b"null")),
        (
            "invalid UTF-8",
            Bytes::from_static(b"{\"user_ids\": [\"b\xff\xfe\"]}"),
        ),
        (
            "trailing garbage",
            Bytes::from_static(b"{\"user_ids\": [\"bob\"]} x"),
        ),
        ("deeply nested", Bytes::from(nested)),
    ];
    for (what, body) in bodies {
        let r = post_raw(&server, "/rooms/1/remove_users", body.clone()).await;
        assert_eq!(r.status, 400, "remove_users with {what}: {r}");
        assert_error(&r, 400, None);
        let r = put_raw(&server, "/roles/vip", body).await;
        assert_eq!(r.status, 400, "PUT role with {what}: {r}");
        assert_error(&r, 400, None);
    }
    alice.no_event_within(Duration::from_millis(200)).await;
    still_serving(&server, &mut alice).await;
    let roles = get_ok(&server, APP_A, "/roles").await;
    assert!(roles["roles"].get("vip").is_none(), "{roles}");
}

#[tokio::test]
async fn wrong_types_and_values_name_the_field() {
    let server = start_ops().await;
    let (mut alice, _bob) = room_with_two(&server).await;
    let bodies = [
        json!({}),
        json!({"user_ids": "bob"}),
        json!({"user_ids": {"bob": true}}),
        json!({"user_ids": [1]}),
        json!({"user_ids": [null]}),
        json!({"user_ids": [["bob"]]}),
        json!({"user_ids": ["bob", 2]}),
        json!({"user_ids": ["a b"]}),
        json!({"user_ids": ["12345"]}),
        json!({"user_ids": [""]}),
        json!({"user_ids": ["x".repeat(33)]}),
        json!({"user_ids": ["bob", "no/slash"]}),
    ];
    for body in bodies {
        let r = post_raw(&server, "/rooms/1/remove_users", body.to_string()).await;
        assert_error(&r, 400, Some("user_ids"));
    }
    // A misspelled key is named itself (the API accepts no other keys).
    let r = post_raw(
        &server,
        "/rooms/1/remove_users",
        json!({"user_id": ["bob"]}).to_string(),
    )
    .await;
    assert_error(&r, 400, Some("user_id"));
    // Nobody was removed by any of them (not even bob, named in a bad list).
    alice.no_event_within(Duration::from_millis(200)).await;

    // Bad room ids in the path name the room field, for every room route.
    for room in [
        "abc",
        "0",
        "-1",
        "4294967295",
        "99999999999999999999",
        "1.5",
        "%201",
    ] {
        for (method, rest) in [
            ("GET", format!("/rooms/{room}")),
            ("POST", format!("/rooms/{room}/dismiss")),
            ("POST", format!("/rooms/{room}/remove_users")),
        ] {
            let r = api(&server, method, APP_A, &rest, json!({"user_ids": ["bob"]})).await;
            assert_error(&r, 400, Some("room_id"));
        }
    }
    for room in [
        "x".repeat(65),
        enc("é"),
        enc("a/b"),
        enc("tab\there"),
        enc("quote\""),
    ] {
        for (method, rest) in [
            ("GET", format!("/str_rooms/{room}")),
            ("POST", format!("/str_rooms/{room}/dismiss")),
            ("POST", format!("/str_rooms/{room}/remove_users")),
        ] {
            let r = api(&server, method, APP_A, &rest, json!({"user_ids": ["bob"]})).await;
            assert_error(&r, 400, Some("str_room_id"));
        }
    }
    alice.no_event_within(Duration::from_millis(200)).await;
    still_serving(&server, &mut alice).await;
}

/// A JSON body of exactly `len` bytes: `{"user_ids": [<user>]}` followed by spaces (whitespace is
/// valid JSON, so the body means the same at any size).
fn padded(user: &str, len: usize) -> String {
    let body = format!("{{\"user_ids\": [\"{user}\"]}}");
    let s = format!("{body}{}", " ".repeat(len - body.len()));
    assert_eq!(s.len(), len);
    s
}

#[tokio::test]
async fn bodies_over_16_kib_are_413() {
    let server = start_ops().await;
    let (mut alice, mut bob) = room_with_two(&server).await;
    // One byte over: 413, nobody removed.
    let r = post_raw(
        &server,
        "/rooms/1/remove_users",
        padded("bob", MAX_BODY + 1),
    )
    .await;
    assert_error(&r, 413, None);
    let r = put_raw(
        &server,
        "/roles/vip",
        format!(
            "{{\"can_publish\": true, \"x\": \"{}\"}}",
            "y".repeat(MAX_BODY)
        ),
    )
    .await;
    assert_error(&r, 413, None);
    let r = post_raw(&server, "/rooms/1/remove_users", padded("bob", 1024 * 1024)).await;
    assert_error(&r, 413, None);
    alice.no_event_within(Duration::from_millis(200)).await;
    bob.assert_alive().await;
    still_serving(&server, &mut alice).await;

    // Exactly 16 KiB is accepted.
    let r = post_raw(&server, "/rooms/1/remove_users", padded("bob", MAX_BODY)).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json, json!({"removed": ["bob"]}));
    assert_eq!(bob.event("kicked").await["reason"], 1);
}

/// A body larger than the HTTP layer's own default limit (2 MiB in axum) must still get the API's
/// JSON 413, not a plain-text one.
#[tokio::test]
async fn huge_bodies_get_a_json_413() {
    let server = start_ops().await;
    let (mut alice, _bob) = room_with_two(&server).await;
    let r = post_raw(
        &server,
        "/rooms/1/remove_users",
        padded("bob", 3 * 1024 * 1024),
    )
    .await;
    assert_error(&r, 413, None);
    let r = put_raw(&server, "/roles/vip", padded("bob", 3 * 1024 * 1024)).await;
    assert_error(&r, 413, None);
    still_serving(&server, &mut alice).await;
}

#[tokio::test]
async fn many_bad_requests_in_a_row_leave_the_server_serving() {
    let server = start_ops().await;
    let (mut alice, _bob) = room_with_two(&server).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let addr = server.running.addr;
        tasks.push(tokio::spawn(async move {
            let token = admin_token(APP_A);
            let auth = format!("Bearer {token}");
            let headers = [("authorization", auth.as_str())];
            let (method, path, body): (&str, String, Bytes) = match i % 4 {
                0 => (
                    "POST",
                    format!("/v1/apps/{APP_A}/rooms/1/remove_users"),
                    Bytes::from_static(b"{"),
                ),
                1 => (
                    "PUT",
                    format!("/v1/apps/{APP_A}/roles/{}", enc("a b")),
                    Bytes::from_static(b"{}"),
                ),
                2 => ("GET", format!("/v1/apps/{APP_A}/rooms/zero"), Bytes::new()),
                _ => (
                    "POST",
                    format!("/v1/apps/{APP_A}/rooms/1/remove_users"),
                    Bytes::from(padded("zed", MAX_BODY + 10)),
                ),
            };
            http(addr, method, &path, &headers, body).await.status
        }));
    }
    for t in tasks {
        let status = t.await.expect("task");
        assert!(status == 400 || status == 413, "status {status}");
    }
    still_serving(&server, &mut alice).await;
}
