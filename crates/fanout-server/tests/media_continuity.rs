//! A publisher whose client reconnects within the grace period (new WebSocket, new peer connection,
//! new SSRCs and sequence numbers) continues its streams: the subscriber is not re-offered and its
//! sequence numbers and timestamps run on without a jump.

mod common;
#[path = "media_common/mod.rs"]
mod media_common;

use common::*;
use media_common::{in_seq_order, parse_payload, Publisher, Subscriber};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_reconnecting_publisher_continues_its_streams_seamlessly() {
    let server = media_common::start().await;
    let mut alice = Publisher::enter(&server, APP_A, "alice", 51, json!({})).await;
    alice.publish().await;
    alice.start_streaming(1);
    let mut bob = Subscriber::enter(&server, APP_A, "bob", 51, json!({})).await;
    bob.subscribe_to("alice", &["audio", "video"], Duration::from_secs(15))
        .await;
    bob.wait_connected().await;
    let audio = bob
        .wait_track(RtpCodecKind::Audio, Duration::from_secs(15))
        .await;
    let video = bob
        .wait_track(RtpCodecKind::Video, Duration::from_secs(15))
        .await;
    audio.wait_packets(40, Duration::from_secs(15)).await;
    video.wait_packets(20, Duration::from_secs(15)).await;

    // alice's client goes away without exit_room (her WebSocket and peer connection die) ...
    alice.stop_streaming().await;
    let old_ws = std::mem::replace(&mut alice.ws, Client::connect(&server).await);
    old_ws.vanish();
    alice.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (audio_before, video_before) = (audio.count(), video.count());

    // ... and comes back within the grace period on new connections.
    let mut alice = Publisher::enter(&server, APP_A, "alice", 51, json!({})).await;
    alice.publish().await;
    alice.start_streaming(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while audio.count() < audio_before + 40 || video.count() < video_before + 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the continued streams did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.stop_streaming().await;

    for (name, track) in [("audio", &audio), ("video", &video)] {
        let packets = track.packets();
        let (ordered, _, dups) = in_seq_order(name, &packets);
        assert_eq!(dups, 0, "{name}: duplicates");
        // One run of sequence numbers across both sessions (no gap, no jump) ...
        assert_eq!(
            ordered.len(),
            packets.len(),
            "{name}: gaps in the sequence numbers"
        );
        // ... carrying the first session's packets, then the second's.
        let tags: Vec<u8> = ordered
            .iter()
            .filter_map(|p| parse_payload(&p.payload).map(|(_, tag, _)| tag))
            .collect();
        let switch = tags
            .iter()
            .position(|t| *t == 2)
            .expect("second session's packets");
        assert!(tags[..switch].iter().all(|t| *t == 1), "{name}: {tags:?}");
        assert!(tags[switch..].iter().all(|t| *t == 2), "{name}: {tags:?}");
        // Timestamps move forward across the switch.
        let (a, b) = (&ordered[switch - 1], &ordered[switch]);
        assert!(
            b.timestamp.wrapping_sub(a.timestamp) < u32::MAX / 2 && b.timestamp != a.timestamp,
            "{name}: timestamp {} -> {}",
            a.timestamp,
            b.timestamp
        );
    }
    // bob was never re-offered for alice's streams and never told they stopped.
    assert!(
        bob.ws.events.iter().all(|e| e["event"] != "stream_removed"),
        "{:?}",
        bob.ws.events
    );
}
