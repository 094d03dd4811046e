//! Isolation with real WebRTC clients: while a publisher streams in room 1 of app A (with a
//! subscriber there as a positive control), a user in room 2 of app A and a user in room 1 of app
//! B get no `offer`, no `stream_added` and no RTP. Both isolated users also publish on their own
//! (connected) publishing connections, on the same media worker and UDP socket, so a misrouted
//! packet would have somewhere to arrive.

mod common;
mod media_common;

use media_common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_reaches_another_room_or_another_app() {
    let server = start().await;

    // The isolated users enter first, so they are present for everything that follows.
    let mut room2 = Publisher::enter(&server, APP_A, "dave", 2, json!({})).await;
    let mut app_b =
        Publisher::enter(&server, APP_B, "erin", 1, json!({"role_name": "anchor"})).await;
    room2.publish().await;
    app_b.publish().await;
    room2.start_streaming(2);
    app_b.start_streaming(3);

    let mut alice = Publisher::enter(&server, APP_A, "alice", 1, json!({})).await;
    let mut bob =
        Subscriber::enter(&server, APP_A, "bob", 1, json!({"role_name": "audience"})).await;
    alice.publish().await;
    alice.start_streaming(1);

    // Positive control: bob in room 1 gets alice's streams, and only hers.
    let tracks = bob.subscribe_to("alice", &["audio", "video"], WAIT).await;
    assert!(
        tracks.iter().all(|t| t["user_id"] == "alice"),
        "bob's offer: {tracks:?}"
    );
    bob.wait_connected().await;
    let bob_video = bob.wait_track(RtpCodecKind::Video, WAIT).await;
    let bob_audio = bob.wait_track(RtpCodecKind::Audio, WAIT).await;
    bob_video.wait_packets(25, WAIT).await;
    bob_audio.wait_packets(25, WAIT).await;

    // Let room 1 stream for a while longer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    alice.stop_streaming().await;

    for p in bob.tracks().iter().flat_map(|t| t.packets()) {
        let (_, tag, _) = parse_payload(&p.payload).expect("a payload we made");
        assert_eq!(
            tag, 1,
            "bob in room 1 received a payload of tag {tag} (another room or app)"
        );
    }

    for (who, isolated) in [
        ("dave (app A, room 2)", &mut room2),
        ("erin (app B, room 1)", &mut app_b),
    ] {
        let offers: Vec<_> = isolated
            .ws
            .events
            .iter()
            .filter(|e| e["event"] == "offer")
            .cloned()
            .collect();
        assert!(offers.is_empty(), "{who} got offers: {offers:?}");
        // Take every event still queued on the socket, then check none is about media.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = isolated.ws.request("ping", json!({})).await;
        assert_ok(&r);
        let media: Vec<_> = isolated
            .ws
            .events
            .iter()
            .filter(|e| {
                ["offer", "stream_added", "stream_removed", "user_entered"]
                    .contains(&e["event"].as_str().unwrap_or(""))
            })
            .cloned()
            .collect();
        assert!(
            media.is_empty(),
            "{who} got events from another room or app: {media:?}"
        );
        // Its publishing connection never received a track (RTP) from anyone.
        let tracks = isolated.received_tracks();
        assert!(
            tracks.is_empty(),
            "{who} received RTP tracks: {:?}",
            tracks
                .iter()
                .map(|t| (t.kind, t.count()))
                .collect::<Vec<_>>()
        );
        // Its own stream was accepted and is being fed back nowhere: it did publish successfully.
        assert!(!isolated.sent_of(RtpCodecKind::Video).is_empty());
    }

    room2.close().await;
    app_b.close().await;
    alice.close().await;
    bob.close().await;
}
