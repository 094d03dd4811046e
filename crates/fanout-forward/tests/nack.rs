//! NACK: subscribers' NACKs are answered from the packet cache with the original down-track sequence
//! number and timestamp (and the shared payload); gaps in what publishers send are NACKed upstream,
//! batched, a bounded number of times.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

fn setup() -> (Room, Source, Vec<RtpPacket>) {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    room.subscribe(2, 1, 201);
    let mut src = Source::video(0xbeef);
    room.rtps(1, 0, src.keyframe(5));
    room.rtps(1, 0, src.delta(5));
    let out = room.take();
    (room, src, rtp_of(&out, 1))
}

#[test]
fn nack_is_served_with_original_sequence_and_timestamp() {
    let (mut room, _src, sent) = setup();
    let asked = vec![sent[2].sequence, sent[7].sequence];
    room.nack(1, asked.clone());
    let out = room.take();
    let resent = rtp_of(&out, 1);
    assert_eq!(resent.len(), 2);
    for (r, idx) in resent.iter().zip([2usize, 7]) {
        assert_eq!(r.sequence, sent[idx].sequence);
        assert_eq!(r.timestamp, sent[idx].timestamp);
        assert_eq!(r.ssrc, sent[idx].ssrc);
        assert_eq!(r.marker, sent[idx].marker);
        assert_eq!(r.payload.as_ptr(), sent[idx].payload.as_ptr(), "no copy");
    }
    // Only the asking subscriber gets them.
    assert!(rtp_of(&out, 2).is_empty());
    let s = room.router.stats();
    assert_eq!(s.nacks_received, 2);
    assert_eq!(s.nacks_served, 2);
    assert_eq!(s.nack_misses, 0);
    assert_eq!(s.rtp_forwarded, 20, "retransmissions are not forwards");
}

#[test]
fn nack_for_unsent_sequence_is_a_miss() {
    let (mut room, _src, sent) = setup();
    let last = sent.last().map(|p| p.sequence).unwrap_or_default();
    room.nack(
        1,
        vec![
            last.wrapping_add(1),
            last.wrapping_add(500),
            sent[0].sequence.wrapping_sub(1),
        ],
    );
    assert!(rtp_of(&room.take(), 1).is_empty());
    assert_eq!(room.router.stats().nack_misses, 3);
    assert_eq!(room.router.stats().nacks_served, 0);
}

#[test]
fn nack_for_publisher_loss_is_a_miss_until_it_arrives() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    let mut src = Source::video(3);
    let key = src.keyframe(4);
    room.rtp(1, 0, key[0].clone());
    room.rtp(1, 0, key[1].clone());
    room.rtp(1, 0, key[3].clone());
    let got = rtp_of(&room.take(), 1);
    let missing = got[1].sequence.wrapping_add(1);
    assert_eq!(got[2].sequence, missing.wrapping_add(1), "gap kept");
    room.nack(1, vec![missing]);
    assert!(rtp_of(&room.take(), 1).is_empty());
    assert_eq!(room.router.stats().nack_misses, 1);
    // The publisher's retransmission arrives: forwarded, then cached for the next NACK.
    room.rtp(1, 0, key[2].clone());
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sequence, missing);
    room.nack(1, vec![missing]);
    assert_eq!(rtp_of(&room.take(), 1).len(), 1);
    assert_eq!(room.router.stats().nacks_served, 1);
}

#[test]
fn nack_after_cache_eviction_or_age_is_a_miss() {
    let (mut room, mut src, sent) = setup();
    // 2.5 s later the cached packets are too old even though their slots were not reused.
    room.advance(Duration::from_millis(2500));
    room.nack(1, vec![sent[9].sequence]);
    assert!(rtp_of(&room.take(), 1).is_empty());
    assert_eq!(room.router.stats().nack_misses, 1);
    // Fresh packets, then more than the cache holds.
    room.rtps(1, 0, src.delta(1));
    let first = rtp_of(&room.take(), 1)[0].sequence;
    for _ in 0..PACKET_CACHE_SIZE {
        let d = src.delta(1);
        room.rtps(1, 0, d);
    }
    room.take();
    room.nack(1, vec![first, first.wrapping_add(1)]);
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 1, "only the second one is still cached");
    assert_eq!(got[0].sequence, first.wrapping_add(1));
}

#[test]
fn nack_for_previous_layer_epoch_is_a_miss() {
    let mut room = Room::new();
    room.add_simulcast(1, 100, 2);
    let mut l0 = Source::video(10);
    let mut l1 = Source::video(11);
    room.rtps(1, 0, l0.keyframe(2));
    room.subscribe_with(1, 1, 200, LayerPreference::Low);
    room.rtps(1, 0, l0.keyframe(3));
    let on_low = rtp_of(&room.take(), 1);
    assert_eq!(on_low.len(), 3);
    room.rtps(1, 1, l1.keyframe(1));
    room.set_layer(1, LayerPreference::High);
    room.rtps(1, 1, l1.keyframe(2));
    let on_high = rtp_of(&room.take(), 1);
    assert_eq!(on_high.len(), 2);
    assert_eq!(on_high[0].sequence, on_low[2].sequence.wrapping_add(1));
    room.nack(1, vec![on_low[1].sequence, on_high[1].sequence]);
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sequence, on_high[1].sequence);
    assert_eq!(room.router.stats().nack_misses, 1);
}

#[test]
fn nack_for_unknown_down_track_is_counted() {
    let mut room = Room::new();
    room.nack(42, vec![1, 2, 3]);
    assert!(room.take().is_empty());
    assert_eq!(room.router.stats().unknown_ids, 1);
}

#[test]
fn gap_is_nacked_upstream_immediately_and_retried_three_times() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(77);
    let key = src.keyframe(6);
    room.rtp(1, 0, key[0].clone());
    room.rtp(1, 0, key[3].clone());
    let out = room.take();
    let n = nacks(&out);
    assert_eq!(n, vec![(1, 0, vec![key[1].sequence, key[2].sequence])]);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Nack { publisher, .. } if publisher.0 == 100)));
    // Retried every 100 ms, three requests in all.
    let mut tries = 1;
    for _ in 0..10 {
        room.advance(Duration::from_millis(100));
        for (_, _, seqs) in nacks(&room.take()) {
            assert_eq!(seqs, vec![key[1].sequence, key[2].sequence]);
            tries += 1;
        }
    }
    assert_eq!(tries, NACK_MAX_TRIES);
    assert_eq!(
        room.router.stats().nacks_sent_up,
        2 * u64::from(NACK_MAX_TRIES)
    );
}

#[test]
fn recovered_packet_is_not_asked_again() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(78);
    let key = src.keyframe(5);
    room.rtp(1, 0, key[0].clone());
    room.rtp(1, 0, key[4].clone());
    assert_eq!(nacks(&room.take())[0].2.len(), 3);
    room.rtp(1, 0, key[2].clone());
    room.advance(Duration::from_millis(100));
    let n = nacks(&room.take());
    assert_eq!(n, vec![(1, 0, vec![key[1].sequence, key[3].sequence])]);
}

#[test]
fn huge_gap_only_asks_for_what_the_cache_could_hold() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(79);
    room.rtps(1, 0, src.keyframe(1));
    src.seq = src.seq.wrapping_add(2000);
    let p = src.delta(1);
    let top = p[0].sequence;
    room.rtps(1, 0, p);
    let n = nacks(&room.take());
    assert_eq!(n.len(), 1);
    let seqs = &n[0].2;
    assert!(!seqs.is_empty());
    assert!(seqs.len() < PACKET_CACHE_SIZE);
    assert!(seqs
        .iter()
        .all(|s| top.wrapping_sub(*s) as usize <= PACKET_CACHE_SIZE));
    assert_eq!(*seqs.last().unwrap_or(&0), top.wrapping_sub(1));
}

#[test]
fn missing_packets_are_not_asked_forever() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(80);
    let key = src.keyframe(3);
    room.rtp(1, 0, key[0].clone());
    room.rtp(1, 0, key[2].clone());
    room.take();
    room.advance(Duration::from_secs(3));
    room.take();
    // Keep the stream going: nothing asked for the old gap any more.
    room.rtps(1, 0, src.delta(1));
    room.advance(Duration::from_millis(500));
    assert!(nacks(&room.take()).is_empty());
}

#[test]
fn audio_gaps_are_not_nacked_upstream() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    let mut src = Source::audio(81);
    room.rtp(1, 0, src.audio_packet(None));
    src.audio_packet(None);
    room.rtp(1, 0, src.audio_packet(None));
    room.advance(Duration::from_millis(300));
    assert!(nacks(&room.take()).is_empty());
}
