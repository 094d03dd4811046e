//! NACK recovery with real WebRTC clients: a lossy loopback UDP relay sits between the server and
//! one subscriber and drops 5% of the server's VP8 RTP datagrams (deterministic PRNG). The
//! subscriber (the webrtc crate's default NACK generator) asks for the lost packets and the server
//! resends them from its cache: the subscriber ends with every video payload.
//!
//! Only video is dropped: the server negotiates NACK feedback for its video codecs only (as
//! browsers do), so lost Opus packets are not recoverable by design.

mod common;
mod media_common;

use media_common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_subscriber_recovers_every_video_packet_by_nack() {
    let server = start().await;
    let media = media_addr(&server);
    let relay = LossyRelay::start(media, PT_VP8, 5, 0x00c0_ffee_5eed).await;
    let relay_addr = relay.client_addr;

    let mut alice = Publisher::enter(&server, APP_A, "alice", 1, json!({})).await;
    let mut bob =
        Subscriber::enter(&server, APP_A, "bob", 1, json!({"role_name": "audience"})).await;
    bob.rewrite_offer = Some(Box::new(move |sdp: &str| {
        let out = LossyRelay::rewrite(media, relay_addr, sdp);
        assert_ne!(out, sdp, "the offer names the server's candidate {media}");
        out
    }));

    alice.publish().await;
    alice.start_streaming(1);
    bob.subscribe_to("alice", &["audio", "video"], WAIT).await;
    bob.wait_connected().await;
    let video = bob.wait_track(RtpCodecKind::Video, WAIT).await;
    video.wait_packets(25, WAIT).await;

    // About 200 video packets through the lossy path, then stop and leave time for the last NACKs.
    tokio::time::sleep(Duration::from_secs(4)).await;
    alice.stop_streaming().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let dropped = relay.dropped.load(Ordering::Relaxed);
    let forwarded = relay.forwarded_rtp.load(Ordering::Relaxed);
    let received = video.packets();
    eprintln!(
        "relay: {forwarded} video RTP datagrams forwarded, {dropped} dropped (seqs {:?}); bob received {} packets",
        relay.dropped_seqs.lock().unwrap(),
        received.len()
    );
    assert!(
        dropped >= 3,
        "the relay dropped only {dropped} datagrams: the test proves nothing"
    );

    // Order by sequence number (retransmissions arrive late), keep one copy of each.
    let (ordered, late, dups) = in_seq_order("bob video", &received);
    let missing: Vec<u16> = ordered
        .windows(2)
        .flat_map(|w| (1..w[1].seq.wrapping_sub(w[0].seq)).map(move |d| w[0].seq.wrapping_add(d)))
        .collect();
    let nacks_up = relay.nacks_up.load(Ordering::Relaxed);
    let rtcp_in = bob.rtcp_log().len();
    assert!(
        missing.is_empty(),
        "bob is missing {} of {} video packets after NACK (seqs {missing:?}); {late} retransmissions \
         arrived; bob sent {nacks_up} NACK datagrams to the server; bob received {rtcp_in} RTCP \
         packets from the server",
        missing.len(),
        ordered.len() + missing.len()
    );
    let sent = alice.sent_of(RtpCodecKind::Video);
    let start = assert_contiguous_suffix("bob video (ordered by seq)", &sent, &ordered);
    eprintln!(
        "bob: all {} video payloads from #{start} recovered ({late} arrived out of order, {dups} \
         duplicates, {nacks_up} NACK datagrams sent)",
        ordered.len()
    );

    alice.close().await;
    bob.close().await;
}
