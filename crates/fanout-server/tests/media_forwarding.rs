//! Forwarding with real WebRTC clients: one publisher (Opus + VP8) and two subscribers in the same
//! room; both subscribers receive the publisher's payloads byte for byte, with contiguous sequence
//! numbers, and each subscriber's video starts at a keyframe.

mod common;
mod media_common;

use media_common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// What each subscriber received of each kind, and what the publisher sent.
struct Outcome {
    /// (subscriber, kind, packets received in arrival order, the track's SSRC)
    received: Vec<(String, RtpCodecKind, Vec<RecvPacket>, u32)>,
    sent_audio: Vec<Sent>,
    sent_video: Vec<Sent>,
}

impl Outcome {
    fn sent(&self, kind: RtpCodecKind) -> &[Sent] {
        match kind {
            RtpCodecKind::Audio => &self.sent_audio,
            _ => &self.sent_video,
        }
    }
}

/// alice publishes and streams; bob and carol subscribe; media flows for a couple of seconds
/// after both receive, then stops and drains.
async fn scenario() -> Outcome {
    let server = start().await;
    let mut alice = Publisher::enter(&server, APP_A, "alice", 1, json!({})).await;
    let audience = json!({"role_name": "audience"});
    let mut bob = Subscriber::enter(&server, APP_A, "bob", 1, audience.clone()).await;
    let mut carol = Subscriber::enter(&server, APP_A, "carol", 1, audience).await;

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

    let mut received = Vec::new();
    for sub in [&bob, &carol] {
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            let tracks: Vec<_> = sub
                .tracks()
                .into_iter()
                .filter(|t| t.kind == kind)
                .collect();
            assert_eq!(
                tracks.len(),
                1,
                "{} {kind:?}: exactly one track of the kind",
                sub.user
            );
            received.push((sub.user.clone(), kind, tracks[0].packets(), tracks[0].ssrc));
        }
    }
    let outcome = Outcome {
        received,
        sent_audio: alice.sent_of(RtpCodecKind::Audio),
        sent_video: alice.sent_of(RtpCodecKind::Video),
    };
    alice.close().await;
    bob.close().await;
    carol.close().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_receive_the_publishers_payloads_byte_for_byte() {
    let o = scenario().await;
    for (user, kind, received, ssrc) in &o.received {
        let who = format!("{user} {kind:?}");
        let pt = if *kind == RtpCodecKind::Audio {
            PT_OPUS
        } else {
            PT_VP8
        };
        assert!(
            received.len() >= 100,
            "{who}: only {} packets received",
            received.len()
        );
        for p in received {
            assert_eq!(p.payload_type, pt, "{who}: payload type");
            assert_eq!(p.ssrc, *ssrc, "{who}: one SSRC per track");
            let (_, tag, _) = parse_payload(&p.payload).expect("a payload we made");
            assert_eq!(tag, 1, "{who}: payload from alice");
        }
        let sent = o.sent(*kind);
        // Loopback does not reorder; a retransmission after a (rare) kernel drop would arrive late,
        // so compare in sequence-number order.
        let (ordered, late, dups) = in_seq_order(&who, received);
        assert_seq_contiguous(&who, &ordered);
        let start = assert_contiguous_suffix(&who, sent, &ordered);
        eprintln!(
            "{who}: {} packets byte for byte (sent {}, received from #{start}), seq {}..={}, \
             {late} out of order, {dups} duplicates",
            ordered.len(),
            sent.len(),
            ordered[0].seq,
            ordered[ordered.len() - 1].seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscribers_video_starts_at_a_keyframe() {
    let o = scenario().await;
    let keyframes_sent: Vec<_> = o
        .sent_video
        .iter()
        .filter(|s| s.keyframe)
        .map(|s| parse_payload(&s.payload).map(|x| x.2))
        .collect();
    for (user, kind, received, _) in &o.received {
        if *kind != RtpCodecKind::Video {
            continue;
        }
        let head: Vec<_> = received
            .iter()
            .take(4)
            .map(|p| {
                (
                    p.seq,
                    parse_payload(&p.payload).map(|x| x.2),
                    is_vp8_keyframe(&p.payload),
                )
            })
            .collect();
        let until_key = received
            .iter()
            .take_while(|p| !is_vp8_keyframe(&p.payload))
            .count();
        assert!(
            is_vp8_keyframe(&received[0].payload),
            "{user}: video starts with {until_key} undecodable interframes before the first \
             keyframe; first received (seq, counter, keyframe): {head:?}; keyframes sent at \
             counters {keyframes_sent:?}"
        );
    }
}
