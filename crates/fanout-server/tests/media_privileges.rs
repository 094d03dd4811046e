//! Media privileges with real WebRTC clients: a role that cannot publish gets -3343 and nothing is
//! forwarded; with an app that requires PrivateMapKeys, the send bits gate `publish` and the
//! receive bits gate what is offered (a key without bit 32 never gets the video offered).

mod common;
mod media_common;

use fanout_auth::Room;
use media_common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn media_events(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| ["offer", "stream_added"].contains(&e["event"].as_str().unwrap_or("")))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_publish_is_denied_and_nothing_is_forwarded() {
    let server = start().await;
    let mut watcher = Subscriber::enter(&server, APP_A, "watcher", 1, json!({})).await;
    let mut viewer = Publisher::enter(
        &server,
        APP_A,
        "viewer",
        1,
        json!({"role_name": "audience"}),
    )
    .await;
    let r = viewer.publish_request().await;
    assert_code(&r, -3343);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ok(&watcher.ws.request("ping", json!({})).await);
    let seen = media_events(&watcher.ws.events);
    assert!(
        seen.is_empty(),
        "the room saw media from a denied publish: {seen:?}"
    );
    viewer.close().await;
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmk_without_send_video_bit_cannot_publish_video() {
    let server = start().await;
    let room = 8;
    // Bits 1|2|4: create, enter, send audio; no send video (16).
    let key = pmk(APP_C, "dave", Room::Numeric(room), 1 | 2 | 4);
    let mut dave = Publisher::enter(
        &server,
        APP_C,
        "dave",
        room,
        json!({"private_map_key": key}),
    )
    .await;
    let r = dave.publish_request().await;
    assert_code(&r, -3343);
    dave.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmk_without_receive_video_bit_never_gets_video_offered() {
    let server = start().await;
    let room = 7;
    let key = |user: &str, bits: u32| json!({"private_map_key": pmk(APP_C, user, Room::Numeric(room), bits)});
    let mut alice = Publisher::enter(&server, APP_C, "alice", room, key("alice", 255)).await;
    // bob: enter (2) and receive audio (8), nothing else.
    let mut bob = Subscriber::enter(&server, APP_C, "bob", room, key("bob", 2 | 8)).await;
    // carol: everything (positive control: the video is published and offered to those allowed).
    let mut carol = Subscriber::enter(&server, APP_C, "carol", room, key("carol", 255)).await;

    alice.publish().await;
    alice.start_streaming(1);

    carol.subscribe_to("alice", &["audio", "video"], WAIT).await;
    carol.wait_connected().await;
    carol
        .wait_track(RtpCodecKind::Video, WAIT)
        .await
        .wait_packets(25, WAIT)
        .await;

    let tracks = bob.subscribe_to("alice", &["audio"], WAIT).await;
    bob.wait_connected().await;
    bob.wait_track(RtpCodecKind::Audio, WAIT)
        .await
        .wait_packets(25, WAIT)
        .await;
    // Keep answering whatever comes for a while: the video must never be offered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, bob.ws.event_within("offer", WAIT)).await {
            Ok(offer) => bob.answer(&offer).await,
            Err(_) => break,
        }
    }
    alice.stop_streaming().await;

    eprintln!("bob's offers: {:?}", bob.offers);
    assert!(
        tracks.iter().all(|t| t["kind"] == "audio"),
        "bob's offer tracks: {tracks:?}"
    );
    for offer_tracks in &bob.offers {
        let kinds: Vec<_> = offer_tracks
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].clone())
            .collect();
        assert!(
            kinds.iter().all(|k| k == "audio"),
            "bob was offered {kinds:?}"
        );
    }
    for sdp in &bob.offer_sdps {
        assert!(
            !sdp.contains("m=video"),
            "bob's offer SDP has a video section:\n{sdp}"
        );
    }
    assert!(
        bob.tracks().iter().all(|t| t.kind == RtpCodecKind::Audio),
        "bob received a video track"
    );
    assert_ok(&bob.ws.request("ping", json!({})).await);
    let added: Vec<_> = bob
        .ws
        .events
        .iter()
        .filter(|e| e["event"] == "stream_added")
        .cloned()
        .collect();
    assert!(
        added.iter().all(|e| e["kind"] == "audio"),
        "bob was told about a stream he may not receive: {added:?}"
    );

    alice.close().await;
    bob.close().await;
    carol.close().await;
}
