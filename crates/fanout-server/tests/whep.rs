//! WHEP playback: a real WebRTC client (webrtc-rs) offers to receive audio and video with
//! `POST /v1/whep/...` and its UserSig, and gets a publisher's payloads byte for byte; `DELETE` on the
//! Location leaves the room. A room with nothing to play answers 409; bad tokens 401.

mod common;
#[path = "media_common/mod.rs"]
mod media_common;

use common::*;
use media_common::{assert_contiguous_suffix, build_pc, Publisher};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::json;
use std::time::Duration;

fn post_sdp(path: &str, token: &str, sdp: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// A receive-only client offer (audio + video), after ICE gathering.
async fn player() -> (media_common::Pc, String) {
    let mut pc = build_pc("player", true).await;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        pc.pc
            .add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .expect("recvonly transceiver");
    }
    let offer = pc.pc.create_offer(None).await.expect("offer");
    pc.pc.set_local_description(offer).await.expect("set offer");
    pc.wait_gathered().await;
    let sdp = pc
        .pc
        .local_description()
        .await
        .expect("local description")
        .sdp;
    (pc, sdp)
}

#[tokio::test]
async fn a_whep_player_receives_the_publishers_payloads() {
    let server = media_common::start().await;
    let addr = server.running.addr;
    let mut alice = Publisher::enter(&server, APP_A, "alice", 41, json!({})).await;
    let mut watcher = Client::entered(&server, APP_A, "watcher", 41).await;
    alice.publish().await;
    alice.start_streaming(7);
    // A WHEP session takes the streams the room has when it starts: alice's count once her media
    // flows, so wait for both.
    let mut missing = vec!["audio", "video"];
    while !missing.is_empty() {
        let added = watcher.event("stream_added").await;
        if added["user_id"] == "alice" {
            missing.retain(|k| added["kind"] != *k);
        }
    }

    let (mut pc, offer) = player().await;
    let token = fanout_auth::gen_usersig(APP_A, KEY_A, "player", 3600, now());
    let (status, head, answer) = http(
        addr,
        post_sdp(&format!("/v1/whep/{APP_A}/41"), &token, &offer),
    )
    .await;
    assert_eq!(status, 201, "{head}\n{answer}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("a Location header")
        .trim()
        .to_string();
    assert!(location.starts_with("/v1/whep/sessions/"), "{location}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/sdp"),
        "{head}"
    );
    let entered = watcher.event("user_entered").await;
    assert_eq!(entered["user_id"], "player");

    pc.pc
        .set_remote_description(RTCSessionDescription::answer(answer).expect("answer parses"))
        .await
        .expect("apply answer");
    pc.wait_connected("player").await;
    let video = pc
        .wait_track(RtpCodecKind::Video, Duration::from_secs(15))
        .await;
    let audio = pc
        .wait_track(RtpCodecKind::Audio, Duration::from_secs(15))
        .await;
    video.wait_packets(50, Duration::from_secs(15)).await;
    audio.wait_packets(50, Duration::from_secs(15)).await;
    alice.stop_streaming().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_contiguous_suffix(
        "player video",
        &alice.sent_of(RtpCodecKind::Video),
        &video.packets(),
    );
    assert_contiguous_suffix(
        "player audio",
        &alice.sent_of(RtpCodecKind::Audio),
        &audio.packets(),
    );

    let (status, _, _) = http(
        addr,
        format!("DELETE {location} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    let exited = watcher.event("user_exited").await;
    assert_eq!(exited["user_id"], "player");
    let (status, _, _) = http(
        addr,
        format!("DELETE {location} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 404, "a session ends once");
}

#[tokio::test]
async fn whep_without_streams_or_credentials_is_refused() {
    let server = media_common::start().await;
    let addr = server.running.addr;
    let (_pc, offer) = player().await;
    let token = fanout_auth::gen_usersig(APP_A, KEY_A, "player", 3600, now());
    let (status, _, body) = http(
        addr,
        post_sdp(&format!("/v1/whep/{APP_A}/42"), &token, &offer),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let forged = fanout_auth::gen_usersig(APP_A, "not-the-key", "player", 3600, now());
    let (status, _, _) = http(
        addr,
        post_sdp(&format!("/v1/whep/{APP_A}/42"), &forged, &offer),
    )
    .await;
    assert_eq!(status, 401);
    // Neither left anyone behind.
    assert!(server.running.state.with_hub(|h| h.rooms(APP_A)).is_empty());
}
