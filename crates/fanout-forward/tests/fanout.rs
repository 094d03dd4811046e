//! Fan-out: one output per down-track, rewritten per subscriber, sharing one payload buffer.

mod common;

use bytes::Bytes;
use common::*;
use fanout_forward::*;
use std::time::Duration;

#[test]
fn one_output_per_down_track_rewritten_per_subscriber() {
    let mut room = Room::new();
    room.add_video(1, 100);
    for dt in 1..=3 {
        room.subscribe(dt, 1, 200 + dt);
    }
    room.take();
    let mut src = Source::video(0xaaaa);
    let mut sent = src.keyframe(3);
    room.rtps(1, 0, sent.clone());
    room.advance(Duration::from_millis(33));
    let more = src.delta(2);
    room.rtps(1, 0, more.clone());
    sent.extend(more);
    let out = room.take();

    assert_eq!(all_rtp(&out).len(), 3 * sent.len());
    let mut first_seqs = Vec::new();
    for dt in 1..=3u64 {
        let got = rtp_of(&out, dt);
        assert_eq!(got.len(), sent.len());
        assert_contiguous(&got);
        first_seqs.push(got[0].sequence);
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(g.ssrc, dt_ssrc(dt));
            assert_eq!(g.payload_type, VIDEO_PT + dt as u8);
            assert_eq!(g.marker, s.marker);
            assert_eq!(g.audio_level, s.audio_level);
            assert_eq!(g.payload, s.payload);
            // The timestamp offset is constant per down-track.
            assert_eq!(
                g.timestamp.wrapping_sub(got[0].timestamp),
                s.timestamp.wrapping_sub(sent[0].timestamp)
            );
        }
        // Each output names its subscriber.
        assert!(out.iter().all(|o| match o {
            Output::Rtp {
                subscriber,
                down_track,
                ..
            } => subscriber.0 == 200 + down_track.0,
            _ => true,
        }));
    }
    // Every subscriber has its own sequence space.
    first_seqs.sort_unstable();
    first_seqs.dedup();
    assert_eq!(first_seqs.len(), 3);
    assert_eq!(room.router.stats().rtp_forwarded, 3 * sent.len() as u64);
    assert_eq!(room.router.stats().rtp_in, sent.len() as u64);
}

#[test]
fn payload_is_shared_not_copied() {
    let mut room = Room::new();
    room.add_video(1, 100);
    for dt in 1..=10 {
        room.subscribe(dt, 1, 200 + dt);
    }
    let mut src = Source::video(7);
    let mut key = src.keyframe(1);
    let payload = Bytes::from(vp8_keyframe(640, 360));
    key[0].payload = payload.clone();
    let ptr = payload.as_ptr();
    room.rtps(1, 0, key);
    let out = room.take();
    let rtp = all_rtp(&out);
    assert_eq!(rtp.len(), 10);
    for (_, p) in &rtp {
        assert_eq!(
            p.payload.as_ptr(),
            ptr,
            "payload must be the publisher's buffer"
        );
        assert_eq!(p.payload.len(), payload.len());
    }
}

#[test]
fn audio_keeps_level_and_marker() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    room.subscribe(1, 1, 200);
    let mut src = Source::audio(9);
    let mut p = src.audio_packet(Some(33));
    p.marker = true;
    room.rtp(1, 0, p.clone());
    let q = src.audio_packet(None);
    room.rtp(1, 0, q);
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].audio_level, Some(33));
    assert!(got[0].marker);
    assert_eq!(got[1].audio_level, None);
    assert!(!got[1].marker);
    assert_eq!(got[1].timestamp.wrapping_sub(got[0].timestamp), 960);
    assert_contiguous(&got);
}

#[test]
fn publisher_never_receives_its_own_stream() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 100);
    assert!(room.info(1).is_none());
    assert_eq!(room.router.stats().refused_commands, 1);
    room.subscribe(2, 1, 200);
    let mut src = Source::video(1);
    room.rtps(1, 0, src.keyframe(2));
    let out = room.take();
    assert!(rtp_of(&out, 1).is_empty());
    assert_eq!(rtp_of(&out, 2).len(), 2);
    assert!(out.iter().all(|o| !matches!(o,
        Output::Rtp { subscriber, .. } if subscriber.0 == 100)));
}

#[test]
fn packets_go_only_to_their_publication() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.add_video(2, 101);
    room.subscribe(1, 1, 200);
    room.subscribe(2, 2, 200);
    let mut a = Source::video(1);
    room.rtps(1, 0, a.keyframe(2));
    let out = room.take();
    assert_eq!(rtp_of(&out, 1).len(), 2);
    assert!(rtp_of(&out, 2).is_empty());
}

#[test]
fn duplicate_ids_are_refused() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.add_audio(1, 101);
    room.subscribe(1, 1, 200);
    room.subscribe(1, 1, 201);
    assert_eq!(room.router.stats().refused_commands, 2);
    assert_eq!(room.info(1).map(|i| i.subscriber), Some(ParticipantId(200)));
}

#[test]
fn down_track_info_counts_packets_and_octets() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    let mut src = Source::video(1);
    let pkts = src.keyframe(4);
    let octets: usize = pkts.iter().map(|p| p.payload.len()).sum();
    room.rtps(1, 0, pkts);
    let info = room.info(1).expect("down-track");
    assert_eq!(info.packets_sent, 4);
    assert_eq!(info.octets_sent as usize, octets);
    assert_eq!(info.current_layer, Some(Layer(0)));
    assert_eq!(info.publication, PublicationId(1));
}
