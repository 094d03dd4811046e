//! Rule (docs/api.md, "Event callbacks"): with `callback_url` and `callback_key` set, Fanout POSTs
//! every room and user event to the URL as JSON in TRTC's shape, in order, with the headers
//! `SdkAppId` and `Sign` = base64(HMAC-SHA256(callback_key, raw body)). Failed deliveries (connection
//! refused, non-2xx) are retried every `callback_retry_secs`, in order; a slow receiver never slows
//! signalling.
//!
//! The receiver (`ops_common::receiver`) is a real HTTP/1.1 server on loopback that can be told to
//! fail or to be slow.

mod common;
mod ops_common;

use ops_common::receiver::*;
use ops_common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[track_caller]
fn assert_ok(v: &Value) {
    assert_eq!(v["ok"], true, "{v}");
}

/// A whole session of a numeric room: created, entries, a role switch, exits for each reason
/// (left, timeout, kicked), closed — in order, each signed and shaped as TRTC's.
#[tokio::test]
async fn whole_session_in_order_signed() {
    let mut rx = Receiver::start().await;
    // Grace of 1 s so the dropped user times out quickly.
    let server = start_cb("reconnect_grace_secs = 1", &rx.url()).await;
    let t0 = now_ms();
    let (mut alice, _) = enter_num(&server, APP_A, "alice", 7001, None).await;
    let (mut bob, _) = enter_num(&server, APP_A, "bob", 7001, Some("audience")).await;
    assert_ok(
        &bob.request("switch_role", json!({"role_name": "anchor_sd"}))
            .await,
    );
    assert_ok(&bob.request("exit_room", json!({})).await);
    // Carol (an anchor, so alice hears of her) drops her connection and times out (Reason 2).
    let (carol, _) = enter_num(&server, APP_A, "carol", 7001, None).await;
    carol.vanish();
    let ev = alice
        .event_within("user_exited", Duration::from_secs(5))
        .await;
    assert_eq!(ev["reason"], "left", "bob left first: {ev}");
    let ev = alice
        .event_within("user_exited", Duration::from_secs(5))
        .await;
    assert_eq!(
        ev,
        json!({"event": "user_exited", "user_id": "carol", "reason": "timeout"})
    );
    // Dave is removed by the admin (Reason 3).
    let (mut dave, _) = enter_num(&server, APP_A, "dave", 7001, None).await;
    let r = api(
        &server,
        "POST",
        APP_A,
        "/rooms/7001/remove_users",
        json!({"user_ids": ["dave"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(dave.event("kicked").await["reason"], 1);
    // Events of app B (no callback URL) go nowhere.
    let (mut b, _) = enter_num(&server, APP_B, "bea", 7001, None).await;
    assert_ok(&b.request("exit_room", json!({})).await);
    assert_ok(&alice.request("exit_room", json!({})).await);

    let want = [
        "101 alice anchor",
        "103 alice anchor",
        "103 bob audience",
        "105 bob anchor_sd",
        "104 bob anchor_sd 1",
        "103 carol anchor",
        "104 carol anchor 2",
        "103 dave anchor",
        "104 dave anchor 3",
        "104 alice anchor 1",
        "102",
    ];
    let mut failed = Vec::new();
    let got = rx
        .delivered(want.len(), Duration::from_secs(10), &mut failed)
        .await;
    assert!(failed.is_empty(), "the receiver never failed: {failed:?}");
    assert_eq!(got.iter().map(summary).collect::<Vec<_>>(), want);
    let mut last_ms = 0;
    for r in &got {
        check_envelope(r, &json!(7001), t0);
        let v = r.json();
        let ms = v["EventInfo"]["EventMsTs"].as_u64().unwrap();
        assert!(ms >= last_ms, "events are in time order: {v}");
        last_ms = ms;
        let info = v["EventInfo"].as_object().unwrap();
        // Room closed has no user; a user exit has a Reason; the others have UserId and Role only.
        let mut keys: Vec<&str> = info.keys().map(String::as_str).collect();
        keys.sort();
        let expect: &[&str] = match v["EventType"].as_u64().unwrap() {
            102 => &["EventMsTs", "EventTs", "RoomId"],
            104 => &["EventMsTs", "EventTs", "Reason", "Role", "RoomId", "UserId"],
            _ => &["EventMsTs", "EventTs", "Role", "RoomId", "UserId"],
        };
        assert_eq!(keys, expect, "{v}");
    }
    rx.quiet(Duration::from_millis(500)).await;
}

/// A string room: RoomId is the string; dismissal gives exits with Reason 3 and a room closed.
#[tokio::test]
async fn string_room_and_dismiss() {
    let mut rx = Receiver::start().await;
    let server = start_cb("", &rx.url()).await;
    let t0 = now_ms();
    let room = "cb room #1 (x+y)";
    let (_a, _) = enter_str(&server, APP_A, "alice", room, Some("audience")).await;
    let (_b, _) = enter_str(&server, APP_A, "bob", room, None).await;
    let r = api(
        &server,
        "POST",
        APP_A,
        &format!("/str_rooms/{}/dismiss", enc(room)),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let mut failed = Vec::new();
    let got = rx.delivered(6, Duration::from_secs(10), &mut failed).await;
    let mut summaries: Vec<String> = got.iter().map(summary).collect();
    // Dismissal removes the users in an unspecified order; the room closes last.
    assert_eq!(
        &summaries[..3],
        ["101 alice audience", "103 alice audience", "103 bob anchor"]
    );
    assert_eq!(summaries[5], "102");
    summaries[3..5].sort();
    assert_eq!(
        &summaries[3..5],
        ["104 alice audience 3", "104 bob anchor 3"]
    );
    for r in &got {
        check_envelope(r, &json!(room), t0);
    }
}

/// The receiver is down (connection refused) for ~3 s, then comes back: the queued events arrive,
/// all of them, once each, in order.
#[tokio::test]
async fn receiver_down_then_back_gets_queued_events_in_order() {
    // Reserve a port, then close it: connections are refused until the receiver binds it again.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().unwrap()
    };
    let url = format!("http://{addr}/cb?tenant=a");
    let server = start_cb("", &url).await;
    let t0 = now_ms();
    let (mut alice, _) = enter_num(&server, APP_A, "alice", 7002, None).await;
    let (mut bob, _) = enter_num(&server, APP_A, "bob", 7002, Some("audience")).await;
    assert_ok(&bob.request("exit_room", json!({})).await);
    assert_ok(&alice.request("exit_room", json!({})).await);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut rx = Receiver::start_at(addr).await;
    let back = Instant::now();
    let want = [
        "101 alice anchor",
        "103 alice anchor",
        "103 bob audience",
        "104 bob audience 1",
        "104 alice anchor 1",
        "102",
    ];
    let mut failed = Vec::new();
    let got = rx
        .delivered(want.len(), Duration::from_secs(10), &mut failed)
        .await;
    assert_eq!(got.iter().map(summary).collect::<Vec<_>>(), want);
    for r in &got {
        check_envelope(r, &json!(7002), t0);
    }
    // Retried every second: the first arrives within about a second of the receiver coming back.
    let first = got[0].at.duration_since(back);
    assert!(
        first < Duration::from_millis(2500),
        "first delivery {first:?} after the receiver came back"
    );
    // Exactly once each.
    rx.quiet(Duration::from_millis(1500)).await;
    // The retries are counted.
    let metrics = http(server.running.addr, "GET", "/metrics", &[], "")
        .await
        .text();
    let retries = metrics
        .lines()
        .find(|l| l.starts_with("fanout_callbacks_total{result=\"retry\"}"))
        .unwrap_or_else(|| panic!("no retry counter in:\n{metrics}"));
    let n: f64 = retries.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2.0, "{retries}");
    assert!(
        metrics.contains("fanout_callbacks_total{result=\"ok\"} 6"),
        "{metrics}"
    );
}

/// A receiver answering 500 gets the same event again a retry period later (the same event, with
/// `CallbackTs` and `Sign` of the new attempt), and the later events follow in order.
#[tokio::test]
async fn receiver_500_then_200_is_retried() {
    let mut rx = Receiver::start().await;
    rx.set(|b| b.fail_next = 2);
    let server = start_cb("", &rx.url()).await;
    let t0 = now_ms();
    let (mut alice, _) = enter_num(&server, APP_A, "alice", 7003, None).await;
    assert_ok(&alice.request("exit_room", json!({})).await);
    let mut failed = Vec::new();
    let got = rx.delivered(4, Duration::from_secs(10), &mut failed).await;
    assert_eq!(
        got.iter().map(summary).collect::<Vec<_>>(),
        [
            "101 alice anchor",
            "103 alice anchor",
            "104 alice anchor 1",
            "102"
        ]
    );
    assert_eq!(failed.len(), 2, "two failed attempts: {failed:?}");
    for f in &failed {
        assert_eq!(f.status, 500);
        let mut failed_json: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
        let mut got_json: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
        let (t_failed, t_got) = (
            failed_json["CallbackTs"].as_u64().unwrap(),
            got_json["CallbackTs"].as_u64().unwrap(),
        );
        assert!(t_failed < t_got, "each attempt is stamped when sent");
        failed_json["CallbackTs"] = json!(0);
        got_json["CallbackTs"] = json!(0);
        assert_eq!(failed_json, got_json, "the same event is retried");
        assert_eq!(
            f.headers.get("sign").map(String::as_str),
            Some(expected_sign(&f.body).as_str()),
            "each attempt is signed over its own body"
        );
    }
    for r in &got {
        check_envelope(r, &json!(7003), t0);
    }
    // Retried every callback_retry_secs (1 s), not in a tight loop.
    let gap1 = failed[1].at.duration_since(failed[0].at);
    let gap2 = got[0].at.duration_since(failed[1].at);
    for gap in [gap1, gap2] {
        assert!(
            gap >= Duration::from_millis(900) && gap < Duration::from_millis(3000),
            "retry gap {gap:?}"
        );
    }
    rx.quiet(Duration::from_millis(500)).await;
}

/// A receiver that takes 4 s per request: signalling and the REST API stay fast while callbacks are
/// pending, and the callbacks still arrive in order.
#[tokio::test]
async fn slow_receiver_does_not_slow_signalling() {
    let mut rx = Receiver::start().await;
    rx.set(|b| b.delay = Duration::from_secs(4));
    let server = start_cb("", &rx.url()).await;
    let (_watcher, _) = enter_num(&server, APP_A, "watcher", 7004, None).await;
    let mut c = Client::connect(&server).await;
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let started = Instant::now();
        let r = c
            .request(
                "enter_room",
                json!({"sdk_app_id": APP_A, "user_id": "walker",
                       "user_sig": user_sig(APP_A, "walker"), "room_id": 7005 + round}),
            )
            .await;
        assert_ok(&r);
        worst = worst.max(started.elapsed());
        let started = Instant::now();
        assert_ok(&c.request("exit_room", json!({})).await);
        worst = worst.max(started.elapsed());
        let started = Instant::now();
        let r = api(&server, "GET", APP_A, "/rooms", Value::Null).await;
        assert_eq!(r.status, 200, "{r}");
        worst = worst.max(started.elapsed());
    }
    assert!(
        worst < Duration::from_millis(500),
        "slowest round trip {worst:?} while callbacks are pending"
    );
    // Callbacks are pending (the first takes 4 s), then arrive in order.
    let first = rx.next(Duration::from_secs(7)).await;
    assert_eq!(summary(&first), "101 watcher anchor");
    let second = rx.next(Duration::from_secs(7)).await;
    assert_eq!(summary(&second), "103 watcher anchor");
    // One at a time: the second starts only after the first was answered.
    assert!(second.at.duration_since(first.at) >= Duration::from_millis(3900));
}

/// A receiver that hangs: the per-app queue (1024) fills, newer events are dropped and counted in
/// `fanout_callbacks_total{result="dropped"}`, and signalling stays fast throughout.
#[tokio::test]
async fn full_queue_drops_and_counts_without_slowing_signalling() {
    let rx = Receiver::start().await;
    rx.set(|b| b.delay = Duration::from_secs(30));
    let server = start_cb("", &rx.url()).await;
    let mut c = Client::connect(&server).await;
    let rounds = 300; // 4 events each (created, entered, exited, closed): 1200 events
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    for _ in 0..rounds {
        let t = Instant::now();
        let r = c
            .request(
                "enter_room",
                json!({"sdk_app_id": APP_A, "user_id": "walker",
                       "user_sig": user_sig(APP_A, "walker"), "room_id": 7100}),
            )
            .await;
        assert_ok(&r);
        assert_ok(&c.request("exit_room", json!({})).await);
        worst = worst.max(t.elapsed());
    }
    assert!(
        worst < Duration::from_millis(500),
        "slowest enter+exit {worst:?}"
    );
    let total = started.elapsed();
    assert!(
        total < Duration::from_secs(20),
        "{rounds} rounds took {total:?}"
    );
    let metrics = http(server.running.addr, "GET", "/metrics", &[], "")
        .await
        .text();
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("fanout_callbacks_total{result=\"dropped\"}"))
        .unwrap_or_else(|| panic!("no dropped counter in:\n{metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // 1200 events, at most 1024 queued plus one in flight.
    assert!(
        (1200.0 - 1025.0..=1200.0 - 1024.0).contains(&dropped),
        "dropped {dropped}"
    );
}
