//! Rule: a user whose connection drops stays in the room for `reconnect_grace_secs` (2 s in the
//! test config); re-entering within it resumes silently, after it the others get `user_exited`
//! with reason `timeout`, and a room whose users all dropped closes. A connection that goes
//! silent (idle timeout) or closes without `exit_room` counts as dropped.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// `reconnect_grace_secs` in the test config.
const GRACE: Duration = Duration::from_secs(2);
/// `idle_timeout_secs` and `ping_interval_secs` in the test config.
const IDLE: Duration = Duration::from_secs(2);
const PING: Duration = Duration::from_secs(1);
/// Allowance for the server's 250 ms timer tick and scheduling.
const SLACK: Duration = Duration::from_secs(1);
/// A little less than the grace: the earliest a timeout may be reported (the drop is registered a
/// moment after the test's own clock starts, so the true lower bound is GRACE).
const NOT_BEFORE: Duration = Duration::from_millis(1900);

async fn room_with_alice_and_bob(server: &Server, room: u32) -> (Client, Client) {
    let mut alice = Client::entered(server, APP_A, "alice", room).await;
    let bob = Client::entered(server, APP_A, "bob", room).await;
    assert_eq!(alice.event("user_entered").await["user_id"], "bob");
    (alice, bob)
}

#[tokio::test]
async fn dropped_user_stays_until_the_grace_runs_out() {
    let server = start().await;
    let (alice, mut bob) = room_with_alice_and_bob(&server, 1).await;
    alice.vanish();
    let dropped = Instant::now();

    // Nothing right away.
    bob.no_event_within(Duration::from_secs(1)).await;
    // Still in the room: a newcomer is told about her.
    let mut carol = Client::connect(&server).await;
    let r = carol.enter(APP_A, "carol", 1).await;
    assert_ok(&r);
    assert_eq!(
        user_ids(&r),
        ["alice", "bob"],
        "the dropped user left at once"
    );
    assert_eq!(bob.event("user_entered").await["user_id"], "carol");

    let expected = json!({"event": "user_exited", "user_id": "alice", "reason": "timeout"});
    assert_eq!(
        bob.event_within("user_exited", GRACE + SLACK).await,
        expected
    );
    let after = dropped.elapsed();
    assert!(
        after >= NOT_BEFORE,
        "timed out after {after:?}, before the grace"
    );
    assert_eq!(carol.event("user_exited").await, expected);
    bob.no_event_within(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn reentering_within_the_grace_resumes_silently() {
    let server = start().await;
    let (alice, mut bob) = room_with_alice_and_bob(&server, 1).await;
    alice.vanish();
    // Give the server time to see the drop (so this is a resume, not a takeover).
    bob.no_event_within(Duration::from_millis(500)).await;

    let mut again = Client::connect(&server).await;
    let r = again.enter(APP_A, "alice", 1).await;
    assert_ok(&r);
    assert_eq!(r["room"], json!({"room_id": 1, "owner": "alice"}));
    assert_eq!(user_ids(&r), ["bob"]);

    // Neither a user_entered now nor a user_exited when the old connection's grace would have run
    // out (1.5 s from here, plus the tick).
    bob.no_event_within(GRACE + Duration::from_millis(500))
        .await;
    again.no_event_within(Duration::from_millis(10)).await;

    // She really is back: leaving is seen.
    assert_ok(&again.request("exit_room", json!({})).await);
    assert_eq!(
        bob.event("user_exited").await,
        json!({"event": "user_exited", "user_id": "alice", "reason": "left"})
    );
}

#[tokio::test]
async fn room_whose_users_all_dropped_closes_after_the_grace() {
    let server = start().await;
    let (alice, bob) = room_with_alice_and_bob(&server, 5).await;
    alice.vanish();
    bob.vanish();
    let dropped = Instant::now();

    // Poll by entering and leaving as carol (leaving never closes the room while the dropped
    // users are in it) until carol finds a new, empty room.
    let mut carol = Client::connect(&server).await;
    let mut polls = 0;
    loop {
        let r = carol.enter(APP_A, "carol", 5).await;
        assert_ok(&r);
        if r["room"]["owner"] == "carol" {
            assert_eq!(r["users"], json!([]));
            break;
        }
        assert_eq!(r["room"]["owner"], "alice");
        assert_eq!(user_ids(&r), ["alice", "bob"]);
        polls += 1;
        assert!(
            dropped.elapsed() < GRACE + SLACK,
            "the room is still open after {:?}",
            dropped.elapsed()
        );
        assert_ok(&carol.request("exit_room", json!({})).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let after = dropped.elapsed();
    assert!(
        polls > 0,
        "the room closed at once instead of after the grace"
    );
    assert!(
        after >= NOT_BEFORE,
        "the room closed after {after:?}, before the grace"
    );
}

#[tokio::test]
async fn silent_connection_counts_as_dropped() {
    let server = start().await;
    let (mut alice, mut bob) = room_with_alice_and_bob(&server, 1).await;
    // Keep the TCP connection, stop reading: no pong ever goes back.
    alice.go_silent();
    let silent = Instant::now();

    let ev = bob
        // Worst case: idle timeout, plus one ping interval until the check, plus the grace and tick.
        .event_within("user_exited", IDLE + PING + GRACE + 2 * SLACK)
        .await;
    assert_eq!(
        ev,
        json!({"event": "user_exited", "user_id": "alice", "reason": "timeout"})
    );
    // Dropped only after the idle timeout, then removed only after the grace.
    let after = silent.elapsed();
    assert!(
        after >= IDLE + GRACE - Duration::from_millis(300),
        "user_exited after only {after:?}"
    );
    drop(alice);
}

#[tokio::test]
async fn closing_without_exit_room_counts_as_dropped() {
    let server = start().await;
    let (alice, mut bob) = room_with_alice_and_bob(&server, 1).await;
    // A WebSocket close handshake, but no exit_room: the server treats it as a drop (signal_ws.rs
    // breaks out on a Close frame and calls `Hub::disconnect`), so the grace applies.
    alice.close().await;
    let closed = Instant::now();

    bob.no_event_within(Duration::from_secs(1)).await;
    assert_eq!(
        bob.event_within("user_exited", GRACE + SLACK).await,
        json!({"event": "user_exited", "user_id": "alice", "reason": "timeout"})
    );
    let after = closed.elapsed();
    assert!(
        after >= NOT_BEFORE,
        "timed out after {after:?}, before the grace"
    );
}

#[tokio::test]
async fn closing_without_exit_room_then_reentering_resumes_silently() {
    let server = start().await;
    let (alice, mut bob) = room_with_alice_and_bob(&server, 1).await;
    alice.close().await;
    bob.no_event_within(Duration::from_millis(300)).await;

    let mut again = Client::connect(&server).await;
    let r = again.enter(APP_A, "alice", 1).await;
    assert_ok(&r);
    assert_eq!(user_ids(&r), ["bob"]);
    bob.no_event_within(GRACE + Duration::from_millis(500))
        .await;
}
