//! Rule (docs/api.md, "Rooms"): the admin lists open rooms with their user counts, describes a room
//! (users, roles, limits, privileges, streams, connected), dismisses a room (every user gets
//! `kicked` reason 2, the room closes) and removes up to 10 users (they get `kicked` reason 1, the
//! others `user_exited` reason `kicked`); numeric rooms under `/rooms/{id}`, string rooms under
//! `/str_rooms/{url-encoded id}`; a room that is not open is 404.

mod common;
mod ops_common;

use ops_common::*;
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);
/// A string room id with spaces and punctuation that must be URL-encoded.
const STR_ROOM: &str = "Ops: room #2 [x] 100% & more?";

fn str_path(room: &str) -> String {
    format!("/str_rooms/{}", enc(room))
}

#[tokio::test]
async fn list_rooms_with_user_counts() {
    let server = start_ops().await;
    assert_eq!(get_ok(&server, APP_A, "/rooms").await, json!({"rooms": []}));
    let (_a, _) = enter_num(&server, APP_A, "alice", 101, None).await;
    let (_b, _) = enter_num(&server, APP_A, "bob", 101, Some("audience")).await;
    let (_c, _) = enter_str(&server, APP_A, "carol", STR_ROOM, None).await;
    let (_d, _) = enter_num(&server, APP_A, "dave", 7, None).await;
    // Numeric room 101 and string room "101" are different rooms.
    let (_e, _) = enter_str(&server, APP_A, "erin", "101", None).await;
    // Another app's rooms are not listed.
    let (_x, _) = enter_num(&server, APP_B, "xavier", 101, None).await;

    let rooms = get_ok(&server, APP_A, "/rooms").await;
    let mut list = rooms["rooms"].as_array().expect("rooms array").clone();
    list.sort_by_key(|r| r.to_string());
    let mut want = vec![
        json!({"room_id": 101, "owner": "alice", "users": 2}),
        json!({"room_id": 7, "owner": "dave", "users": 1}),
        json!({"str_room_id": STR_ROOM, "owner": "carol", "users": 1}),
        json!({"str_room_id": "101", "owner": "erin", "users": 1}),
    ];
    want.sort_by_key(|r| r.to_string());
    assert_eq!(list, want, "{rooms}");
    assert_eq!(
        get_ok(&server, APP_B, "/rooms").await,
        json!({"rooms": [{"room_id": 101, "owner": "xavier", "users": 1}]})
    );
}

#[tokio::test]
async fn list_counts_follow_exits() {
    let server = start_ops().await;
    let (_a, _) = enter_num(&server, APP_A, "alice", 5, None).await;
    let (mut b, _) = enter_num(&server, APP_A, "bob", 5, None).await;
    let (mut c, _) = enter_num(&server, APP_A, "carol", 6, None).await;
    assert_ok(&b.request("exit_room", json!({})).await);
    assert_ok(&c.request("exit_room", json!({})).await);
    assert_eq!(
        get_ok(&server, APP_A, "/rooms").await,
        json!({"rooms": [{"room_id": 5, "owner": "alice", "users": 1}]})
    );
}

#[track_caller]
fn assert_ok(v: &Value) {
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn describe_numeric_room() {
    let server = start_ops().await;
    let (_a, _) = enter_num(&server, APP_A, "Alice", 42, None).await;
    let (_b, _) = enter_num(&server, APP_A, "bob", 42, Some("audience")).await;
    let (mut c, _) = enter_num(&server, APP_A, "carol", 42, Some("anchor_sd")).await;
    let d = get_ok(&server, APP_A, "/rooms/42").await;
    assert_eq!(d["room_id"], 42, "{d}");
    assert!(d.get("str_room_id").is_none(), "{d}");
    assert_eq!(d["owner"], "Alice", "{d}");
    let users = users_by_id(&d);
    assert_eq!(
        users.keys().collect::<Vec<_>>(),
        ["Alice", "bob", "carol"],
        "{d}"
    );
    assert_eq!(
        users["Alice"],
        json!({"user_id": "Alice", "role_name": "anchor", "limits": anchor_limits(),
               "privileges": 255, "streams": [], "connected": true})
    );
    assert_eq!(users["bob"]["role_name"], "audience");
    assert_eq!(users["bob"]["limits"], audience_limits());
    assert_eq!(users["carol"]["role_name"], "anchor_sd");
    assert_eq!(
        users["carol"]["limits"],
        json!({"can_publish": true, "max_video_kbps": 600, "max_width": 640, "max_height": 360,
               "max_fps": 15, "max_audio_kbps": 64, "max_sub_video_kbps": 1500})
    );
    // A switched role shows up.
    let r = c
        .request("switch_role", json!({"role_name": "audience"}))
        .await;
    assert_ok(&r);
    let d = get_ok(&server, APP_A, "/rooms/42").await;
    assert_eq!(users_by_id(&d)["carol"]["role_name"], "audience", "{d}");
    assert_eq!(users_by_id(&d)["carol"]["limits"], audience_limits(), "{d}");

    // A dropped user (in its grace period) is still listed, not connected.
    c.vanish();
    let d = eventually(Duration::from_secs(3), "carol disconnected", || async {
        let d = get_ok(&server, APP_A, "/rooms/42").await;
        let users = users_by_id(&d);
        match users.get("carol") {
            Some(u) if u["connected"] == false => Ok(d),
            _ => Err(d.to_string()),
        }
    })
    .await;
    assert_eq!(users_by_id(&d)["bob"]["connected"], true, "{d}");
}

#[tokio::test]
async fn describe_string_room_and_not_open() {
    let server = start_ops().await;
    let (_c, _) = enter_str(&server, APP_A, "carol", STR_ROOM, Some("audience")).await;
    let (_n, _) = enter_num(&server, APP_A, "nick", 55, None).await;
    let d = get_ok(&server, APP_A, &str_path(STR_ROOM)).await;
    assert_eq!(d["str_room_id"], STR_ROOM, "{d}");
    assert!(d.get("room_id").is_none(), "{d}");
    assert_eq!(d["owner"], "carol");
    assert_eq!(
        d["users"],
        json!([{"user_id": "carol", "role_name": "audience", "limits": audience_limits(),
                "privileges": 255, "streams": [], "connected": true}])
    );

    // Not open: an unknown room, the string twin of an open numeric room, the numeric twin of an
    // open string room, and the same room in another app.
    for (app, rest) in [
        (APP_A, "/rooms/56".to_string()),
        (APP_A, str_path("55")),
        (APP_A, str_path("Ops: room #2")),
        (APP_B, "/rooms/55".to_string()),
        (APP_B, str_path(STR_ROOM)),
    ] {
        let r = api(&server, "GET", app, &rest, Value::Null).await;
        assert_error(&r, 404, None);
    }
}

/// The `reason` of the client's next `kicked` event (other events are kept aside).
async fn kicked_reason(c: &mut Client) -> Value {
    let ev = c.event("kicked").await;
    ev["reason"].clone()
}

#[tokio::test]
async fn dismiss_numeric_room() {
    let server = start_ops().await;
    let (mut a, _) = enter_num(&server, APP_A, "alice", 201, None).await;
    let (mut b, _) = enter_num(&server, APP_A, "bob", 201, Some("audience")).await;
    let (mut c, _) = enter_num(&server, APP_A, "carol", 201, None).await;
    // A user in another room of the app is not affected.
    let (mut other, _) = enter_num(&server, APP_A, "olga", 202, None).await;

    let r = api(&server, "POST", APP_A, "/rooms/201/dismiss", Value::Null).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json, json!({"dismissed": true, "users_removed": 3}));
    for (name, client) in [("alice", &mut a), ("bob", &mut b), ("carol", &mut c)] {
        assert_eq!(
            kicked_reason(client).await,
            2,
            "{name}: {:?}",
            client.events
        );
        // The connection stays open but is no longer in a room.
        let r = client.request("exit_room", json!({})).await;
        assert_eq!(r["code"], -3341, "{name} after dismiss: {r}");
    }
    other.no_event_within(QUIET).await;

    let rooms = get_ok(&server, APP_A, "/rooms").await;
    assert_eq!(
        rooms,
        json!({"rooms": [{"room_id": 202, "owner": "olga", "users": 1}]})
    );
    let r = api(&server, "GET", APP_A, "/rooms/201", Value::Null).await;
    assert_error(&r, 404, None);
    // Dismissing again: the room is not open.
    let r = api(&server, "POST", APP_A, "/rooms/201/dismiss", Value::Null).await;
    assert_error(&r, 404, None);

    // A later entrant creates the room afresh and owns it; a dismissed user may enter again.
    let (_d, r) = enter_num(&server, APP_A, "dave", 201, None).await;
    assert_eq!(r["room"], json!({"room_id": 201, "owner": "dave"}), "{r}");
    assert_eq!(r["users"], json!([]), "{r}");
    let r = b
        .request(
            "enter_room",
            json!({"sdk_app_id": APP_A, "user_id": "bob", "user_sig": user_sig(APP_A, "bob"),
                   "room_id": 201}),
        )
        .await;
    assert_ok(&r);
    assert_eq!(r["room"]["owner"], "dave", "{r}");
}

#[tokio::test]
async fn dismiss_string_room() {
    let server = start_ops().await;
    let (mut a, _) = enter_str(&server, APP_A, "alice", STR_ROOM, None).await;
    let (mut b, _) = enter_str(&server, APP_A, "bob", STR_ROOM, None).await;
    // The numeric room and a string room with a similar name are different rooms.
    let (mut n, _) = enter_str(&server, APP_A, "nina", "Ops: room #2", None).await;

    let r = api(
        &server,
        "POST",
        APP_A,
        &format!("{}/dismiss", str_path(STR_ROOM)),
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json, json!({"dismissed": true, "users_removed": 2}));
    assert_eq!(kicked_reason(&mut a).await, 2);
    assert_eq!(kicked_reason(&mut b).await, 2);
    n.no_event_within(QUIET).await;
    assert_eq!(
        get_ok(&server, APP_A, "/rooms").await,
        json!({"rooms": [{"str_room_id": "Ops: room #2", "owner": "nina", "users": 1}]})
    );
    let (_c, r) = enter_str(&server, APP_A, "carol", STR_ROOM, None).await;
    assert_eq!(
        r["room"],
        json!({"str_room_id": STR_ROOM, "owner": "carol"}),
        "{r}"
    );
}

/// Room with alice, bob, carol, dave; returns the clients in that order.
async fn four_in(server: &Server, room: Option<u32>) -> Vec<Client> {
    let mut out = Vec::new();
    for u in ["alice", "bob", "carol", "dave"] {
        let (c, _) = match room {
            Some(n) => enter_num(server, APP_A, u, n, None).await,
            None => enter_str(server, APP_A, u, STR_ROOM, None).await,
        };
        out.push(c);
    }
    // Let the user_entered events settle, then forget them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for c in &mut out {
        c.assert_alive().await;
        c.events.clear();
    }
    out
}

async fn check_remove(server: &Server, base: &str, mut clients: Vec<Client>) {
    // "zed" is not in the room and is not listed as removed; "CAROL" is carol (case-insensitive).
    let r = api(
        server,
        "POST",
        APP_A,
        &format!("{base}/remove_users"),
        json!({"user_ids": ["bob", "CAROL", "zed"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(sorted_strings(&r.json["removed"]), ["bob", "carol"], "{r}");
    let mut dave = clients.pop().expect("dave");
    let mut carol = clients.pop().expect("carol");
    let mut bob = clients.pop().expect("bob");
    let mut alice = clients.pop().expect("alice");
    assert_eq!(kicked_reason(&mut bob).await, 1, "{:?}", bob.events);
    assert_eq!(kicked_reason(&mut carol).await, 1, "{:?}", carol.events);
    for (name, c) in [("alice", &mut alice), ("dave", &mut dave)] {
        let mut exited = Vec::new();
        for _ in 0..2 {
            let ev = c.event("user_exited").await;
            assert_eq!(ev["reason"], "kicked", "{name}: {ev}");
            exited.push(ev["user_id"].as_str().expect("user_id").to_owned());
        }
        exited.sort();
        assert_eq!(exited, ["bob", "carol"], "{name}");
        c.no_event_within(QUIET).await;
    }
    // The removed are out of the room; the others stay.
    let d = get_ok(server, APP_A, base).await;
    assert_eq!(
        users_by_id(&d).keys().collect::<Vec<_>>(),
        ["alice", "dave"],
        "{d}"
    );
    assert_eq!(bob.request("exit_room", json!({})).await["code"], -3341);
    // Removing someone who is not there removes nobody.
    let r = api(
        server,
        "POST",
        APP_A,
        &format!("{base}/remove_users"),
        json!({"user_ids": ["bob"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json, json!({"removed": []}));
    alice.no_event_within(QUIET).await;

    // 11 users is too many: 400 naming user_ids, and nobody is removed.
    let eleven: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
    let mut with_alice = eleven.clone();
    with_alice[0] = "alice".into();
    let r = api(
        server,
        "POST",
        APP_A,
        &format!("{base}/remove_users"),
        json!({"user_ids": with_alice}),
    )
    .await;
    assert_error(&r, 400, Some("user_ids"));
    // None at all is also a 400.
    let r = api(
        server,
        "POST",
        APP_A,
        &format!("{base}/remove_users"),
        json!({"user_ids": []}),
    )
    .await;
    assert_error(&r, 400, Some("user_ids"));
    alice.no_event_within(QUIET).await;
    // 10 is allowed.
    let mut ten: Vec<String> = eleven[..10].to_vec();
    ten[9] = "dave".into();
    let r = api(
        server,
        "POST",
        APP_A,
        &format!("{base}/remove_users"),
        json!({"user_ids": ten}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json, json!({"removed": ["dave"]}));
    assert_eq!(kicked_reason(&mut dave).await, 1);
    let ev = alice.event("user_exited").await;
    assert_eq!(
        ev,
        json!({"event": "user_exited", "user_id": "dave", "reason": "kicked"})
    );

    // A removed user may enter again.
    let r = bob
        .request(
            "enter_room",
            match base.strip_prefix("/rooms/") {
                Some(n) => json!({"sdk_app_id": APP_A, "user_id": "bob",
                                  "user_sig": user_sig(APP_A, "bob"),
                                  "room_id": n.parse::<u32>().unwrap()}),
                None => json!({"sdk_app_id": APP_A, "user_id": "bob",
                               "user_sig": user_sig(APP_A, "bob"), "str_room_id": STR_ROOM}),
            },
        )
        .await;
    assert_ok(&r);
    assert_eq!(alice.event("user_entered").await["user_id"], "bob");
}

#[tokio::test]
async fn remove_users_numeric_room() {
    let server = start_ops().await;
    let clients = four_in(&server, Some(301)).await;
    check_remove(&server, "/rooms/301", clients).await;
}

#[tokio::test]
async fn remove_users_string_room() {
    let server = start_ops().await;
    let clients = four_in(&server, None).await;
    check_remove(&server, &str_path(STR_ROOM), clients).await;
}

#[tokio::test]
async fn remove_users_room_not_open() {
    let server = start_ops().await;
    let (mut a, _) = enter_num(&server, APP_A, "alice", 1, None).await;
    for rest in ["/rooms/2".to_string(), str_path("1"), str_path(STR_ROOM)] {
        let r = api(
            &server,
            "POST",
            APP_A,
            &format!("{rest}/remove_users"),
            json!({"user_ids": ["alice"]}),
        )
        .await;
        assert_error(&r, 404, None);
    }
    // The same room number in app B is another room.
    let r = api(
        &server,
        "POST",
        APP_B,
        "/rooms/1/remove_users",
        json!({"user_ids": ["alice"]}),
    )
    .await;
    assert_error(&r, 404, None);
    a.no_event_within(QUIET).await;
}
