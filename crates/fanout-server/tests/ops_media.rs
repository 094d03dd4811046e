//! Rule (docs/api.md, "Event callbacks"; metrics.rs): when media flows, the operator surface shows
//! it — the stream callbacks (203 audio / 201 video started, 204 / 202 stopped) reach the receiver,
//! and a real Prometheus scraping the server sees forwarded packets, one publisher and one
//! subscriber. One real WebRTC publisher and one subscriber (the media tests' clients) on loopback.

mod common;
mod media_common;
mod ops_common;

use media_common::{Publisher, Subscriber};
use ops_common::prom::Prometheus;
use ops_common::receiver::*;
use ops_common::{APP_A, APP_B};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_shows_in_callbacks_and_prometheus() {
    media_common::init_logging();
    let mut rx = Receiver::start().await;
    let server = start_cb("", &rx.url()).await;
    let mut prom = Prometheus::start(server.running.addr);
    let t0 = now_ms();

    let mut alice = Publisher::enter(&server, APP_A, "alice", 1, json!({})).await;
    let mut bob =
        Subscriber::enter(&server, APP_A, "bob", 1, json!({"role_name": "audience"})).await;
    alice.publish().await;
    alice.start_streaming(1);
    let tracks = bob.subscribe_to("alice", &["audio", "video"], WAIT).await;
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    bob.wait_connected().await;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        bob.wait_track(kind, WAIT)
            .await
            .wait_packets(25, WAIT)
            .await;
    }

    // Prometheus sees the media flowing.
    prom.wait_ready(Duration::from_secs(30)).await;
    let a = APP_A.to_string();
    let b = APP_B.to_string();
    prom.wait_values("fanout_publishers", "app", &[(&a, 1.0), (&b, 0.0)], WAIT)
        .await;
    prom.wait_values("fanout_subscribers", "app", &[(&a, 1.0), (&b, 0.0)], WAIT)
        .await;
    prom.wait_values(
        "fanout_packets_forwarded_total > bool 20",
        "kind",
        &[("audio", 1.0), ("video", 1.0)],
        WAIT,
    )
    .await;
    prom.wait_values(
        "fanout_packets_received_total > bool 20",
        "kind",
        &[("audio", 1.0), ("video", 1.0)],
        WAIT,
    )
    .await;
    // No screen share was sent.
    prom.wait_values(
        "fanout_packets_forwarded_total",
        "kind",
        &[("sub_video", 0.0)],
        WAIT,
    )
    .await;

    // alice leaves: her streams stop, then she exits.
    alice.stop_streaming().await;
    assert_eq!(alice.ws.request("exit_room", json!({})).await["ok"], true);
    let mut failed = Vec::new();
    let got = rx.delivered(8, WAIT, &mut failed).await;
    let s: Vec<String> = got.iter().map(summary).collect();
    assert_eq!(
        &s[..3],
        ["101 alice anchor", "103 alice anchor", "103 bob audience"],
        "{s:?}"
    );
    let mut started = s[3..5].to_vec();
    started.sort();
    assert_eq!(started, ["201 alice anchor", "203 alice anchor"], "{s:?}");
    let mut stopped = s[5..7].to_vec();
    stopped.sort();
    assert_eq!(stopped, ["202 alice anchor", "204 alice anchor"], "{s:?}");
    assert_eq!(s[7], "104 alice anchor 1", "{s:?}");
    for r in &got {
        check_envelope(r, &json!(1), t0);
    }
    prom.wait_values("fanout_publishers", "app", &[(&a, 0.0)], WAIT)
        .await;
    alice.close().await;
    bob.close().await;
}
