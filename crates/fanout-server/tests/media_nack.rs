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
use std::collections::BTreeMap;
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
    let first = received[0].seq;
    let mut by_seq: BTreeMap<i32, &RecvPacket> = BTreeMap::new();
    for p in &received {
        let ext = i32::from(p.seq.wrapping_sub(first) as i16);
        by_seq.entry(ext).or_insert(p);
    }
    let (lo, hi) = (
        *by_seq.keys().next().unwrap(),
        *by_seq.keys().last().unwrap(),
    );
    let missing: Vec<u16> = (lo..=hi)
        .filter(|e| !by_seq.contains_key(e))
        .map(|e| first.wrapping_add(e as u16))
        .collect();
    let late = received
        .windows(2)
        .filter(|w| w[1].seq != w[0].seq.wrapping_add(1))
        .count();
    let nacks_up = relay.nacks_up.load(Ordering::Relaxed);
    let rtcp_in = bob.rtcp_log().len();
    assert!(
        missing.is_empty(),
        "bob is missing {} of {} video packets after NACK (seqs {missing:?}); {late} out-of-order \
         arrivals; bob sent {nacks_up} NACK datagrams to the server; bob received {rtcp_in} RTCP \
         packets from the server",
        missing.len(),
        hi - lo + 1
    );
    let ordered: Vec<RecvPacket> = by_seq.values().map(|p| (*p).clone()).collect();
    let sent = alice.sent_of(RtpCodecKind::Video);
    let start = assert_contiguous_suffix("bob video (ordered by seq)", &sent, &ordered);
    eprintln!(
        "bob: all {} video payloads from #{start} recovered ({late} arrived out of order)",
        ordered.len()
    );

    alice.close().await;
    bob.close().await;
}
