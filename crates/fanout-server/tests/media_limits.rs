//! Role limits bind the publisher, not just its client: a video stream whose bitrate stays above
//! 1.25x its role's cap for 5 s, or whose keyframes show a resolution above the role's, stops being
//! forwarded, and the publisher gets `limit_exceeded`.

mod common;
#[path = "media_common/mod.rs"]
mod media_common;

use common::*;
use media_common::{Publisher, Subscriber};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::Duration;

/// alice publishes with `role`; bob receives; returns both once bob's video flows (or not).
async fn setup(role: &str) -> (Server, Publisher, Subscriber) {
    let server = media_common::start().await;
    let mut alice = Publisher::enter(&server, APP_A, "alice", 61, json!({"role_name": role})).await;
    alice.publish().await;
    alice.start_streaming(1);
    let mut bob = Subscriber::enter(&server, APP_A, "bob", 61, json!({})).await;
    bob.subscribe_to("alice", &["audio", "video"], Duration::from_secs(15))
        .await;
    bob.wait_connected().await;
    (server, alice, bob)
}

#[tokio::test]
async fn video_above_its_bitrate_cap_for_5_s_is_stopped_and_the_publisher_told() {
    let (_server, mut alice, bob) = setup("tiny_bitrate").await;
    let video = bob
        .wait_track(RtpCodecKind::Video, Duration::from_secs(15))
        .await;
    video.wait_packets(20, Duration::from_secs(10)).await;
    // About 170 kbit/s against a cap of 8: the stream is cut after 5 s over 1.25x the cap.
    let ev = alice
        .ws
        .event_within("limit_exceeded", Duration::from_secs(12))
        .await;
    assert_eq!(ev["kind"], "video", "{ev}");
    assert!(
        ev["reason"].as_str().unwrap_or("").contains("bitrate"),
        "{ev}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_cut = video.count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(video.count(), after_cut, "video is no longer forwarded");
    // Audio, within its cap, keeps flowing.
    let audio = bob
        .wait_track(RtpCodecKind::Audio, Duration::from_secs(5))
        .await;
    let before = audio.count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(audio.count() > before + 20, "audio keeps flowing");
    alice.stop_streaming().await;
}

#[tokio::test]
async fn keyframes_above_the_roles_resolution_are_not_forwarded() {
    let (_server, mut alice, bob) = setup("tiny_resolution").await;
    let ev = alice
        .ws
        .event_within("limit_exceeded", Duration::from_secs(10))
        .await;
    assert_eq!(ev["kind"], "video", "{ev}");
    assert!(
        ev["reason"].as_str().unwrap_or("").contains("resolution"),
        "{ev}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let video_packets = bob
        .tracks()
        .iter()
        .filter(|t| t.kind == RtpCodecKind::Video)
        .map(|t| t.count())
        .sum::<usize>();
    assert_eq!(
        video_packets, 0,
        "no video above the role's resolution reaches subscribers"
    );
    alice.stop_streaming().await;
}
