//! Forwarding with real WebRTC clients: one publisher (Opus + VP8) and two subscribers in the same
//! room; both subscribers receive the publisher's payloads byte for byte, with contiguous sequence
//! numbers.

mod common;
mod media_common;

use media_common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_receive_the_publishers_payloads_byte_for_byte() {
    let server = start().await;
    let mut alice = Publisher::enter(&server, APP_A, "alice", 1, json!({})).await;
    let mut bob =
        Subscriber::enter(&server, APP_A, "bob", 1, json!({"role_name": "audience"})).await;
    let mut carol =
        Subscriber::enter(&server, APP_A, "carol", 1, json!({"role_name": "audience"})).await;

    alice.publish().await;
    alice.start_streaming(1);

    for sub in [&mut bob, &mut carol] {
        let tracks = sub.subscribe_to("alice", &["audio", "video"], WAIT).await;
        assert_eq!(tracks.len(), 2, "{}: offer tracks {tracks:?}", sub.user);
    }
    for sub in [&mut bob, &mut carol] {
        sub.wait_connected().await;
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            let t = sub.wait_track(kind, WAIT).await;
            t.wait_packets(25, WAIT).await;
        }
    }
    // Both are receiving: let a couple of seconds of media flow, then stop and let it drain.
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice.stop_streaming().await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    for sub in [&bob, &carol] {
        for (kind, pt) in [
            (RtpCodecKind::Audio, PT_OPUS),
            (RtpCodecKind::Video, PT_VP8),
        ] {
            let who = format!("{} {kind:?}", sub.user);
            let tracks: Vec<_> = sub
                .tracks()
                .into_iter()
                .filter(|t| t.kind == kind)
                .collect();
            assert_eq!(tracks.len(), 1, "{who}: exactly one track of the kind");
            let received = tracks[0].packets();
            let sent = alice.sent_of(kind);
            assert!(
                received.len() >= 100,
                "{who}: only {} packets received",
                received.len()
            );
            for p in &received {
                assert_eq!(p.payload_type, pt, "{who}: payload type");
                assert_eq!(p.ssrc, tracks[0].ssrc, "{who}: one SSRC per track");
                let (_, tag, _) = parse_payload(&p.payload).expect("a payload we made");
                assert_eq!(tag, 1, "{who}: payload from alice");
            }
            if kind == RtpCodecKind::Video {
                let head: Vec<_> = received
                    .iter()
                    .take(4)
                    .map(|p| {
                        let counter = parse_payload(&p.payload).map(|x| x.2);
                        (p.seq, counter, is_vp8_keyframe(&p.payload))
                    })
                    .collect();
                let keyframes_sent: Vec<_> = sent
                    .iter()
                    .filter(|s| s.keyframe)
                    .map(|s| parse_payload(&s.payload).map(|x| x.2))
                    .collect();
                assert!(
                    is_vp8_keyframe(&received[0].payload),
                    "{who}: video starts with a keyframe; first received (seq, counter, \
                     keyframe): {head:?}; keyframes sent at counters {keyframes_sent:?}"
                );
            }
            let start = assert_contiguous_suffix(&who, &sent, &received);
            assert_seq_contiguous(&who, &received);
            eprintln!(
                "{who}: {} packets byte for byte (sent {}, from #{start}), seq {}..={}",
                received.len(),
                sent.len(),
                received[0].seq,
                received[received.len() - 1].seq
            );
        }
    }
    alice.close().await;
    bob.close().await;
    carol.close().await;
}
