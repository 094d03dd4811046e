//! Duplicates and the sequence window: packets received twice and packets before the window are
//! dropped and counted; late packets inside the window fill their gap with the right sequence number.

mod common;

use common::*;
use fanout_forward::*;

fn room_with_one_subscriber() -> (Room, Source) {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    room.take();
    (room, Source::video(0x1234))
}

#[test]
fn duplicate_is_dropped_and_counted() {
    let (mut room, mut src) = room_with_one_subscriber();
    let key = src.keyframe(3);
    room.rtps(1, 0, key.clone());
    // A retransmission that arrives although the original did too.
    room.rtp(1, 0, key[1].clone());
    room.rtp(1, 0, key[2].clone());
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 3);
    assert_contiguous(&got);
    assert_eq!(room.router.stats().dropped_duplicate, 2);
    assert_eq!(room.router.stats().rtp_in, 5);
}

#[test]
fn too_old_is_dropped_and_counted() {
    let (mut room, mut src) = room_with_one_subscriber();
    let first = src.keyframe(1);
    room.rtps(1, 0, first.clone());
    for _ in 0..SEQ_WINDOW + 10 {
        let d = src.delta(1);
        room.rtps(1, 0, d);
    }
    room.take();
    let mut old = first[0].clone();
    // Pretend it was never received: a sequence number far behind, never seen.
    old.sequence = src.seq.wrapping_sub(SEQ_WINDOW as u16 + 5);
    room.rtp(1, 0, old);
    assert!(rtp_of(&room.take(), 1).is_empty());
    assert_eq!(room.router.stats().dropped_out_of_window, 1);
    assert_eq!(room.router.stats().dropped_duplicate, 0);
}

#[test]
fn late_packet_in_window_fills_its_gap() {
    let (mut room, mut src) = room_with_one_subscriber();
    let key = src.keyframe(5);
    // 0, 1, 3, 4 then 2 late.
    for i in [0usize, 1, 3, 4] {
        room.rtp(1, 0, key[i].clone());
    }
    room.rtp(1, 0, key[2].clone());
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 5);
    let base = got[0].sequence;
    let offsets: Vec<u16> = got.iter().map(|p| p.sequence.wrapping_sub(base)).collect();
    assert_eq!(offsets, vec![0, 1, 3, 4, 2]);
    // The late one carries its own payload and timestamp.
    assert_eq!(got[4].payload, key[2].payload);
    assert_eq!(got[4].timestamp, got[0].timestamp);
    // Arriving a second time it is a duplicate.
    room.rtp(1, 0, key[2].clone());
    assert!(rtp_of(&room.take(), 1).is_empty());
    assert_eq!(room.router.stats().dropped_duplicate, 1);
}

#[test]
fn late_packet_far_back_but_inside_window() {
    let (mut room, mut src) = room_with_one_subscriber();
    room.rtps(1, 0, src.keyframe(1));
    let lost = src.delta(1);
    for _ in 0..900 {
        let d = src.delta(1);
        room.rtps(1, 0, d);
    }
    room.take();
    room.rtps(1, 0, lost);
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 1, "900 behind is inside the {SEQ_WINDOW} window");
    assert_eq!(room.router.stats().dropped_out_of_window, 0);
}

#[test]
fn window_wraps_around_u16() {
    let (mut room, mut src) = room_with_one_subscriber();
    src.seq = 65530;
    let key = src.keyframe(12);
    room.rtps(1, 0, key.clone());
    // Duplicates from both sides of the wrap.
    room.rtp(1, 0, key[3].clone());
    room.rtp(1, 0, key[9].clone());
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 12);
    assert_contiguous(&got);
    assert_eq!(room.router.stats().dropped_duplicate, 2);
}

#[test]
fn duplicates_are_not_sent_to_any_subscriber() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    for dt in 1..=4 {
        room.subscribe(dt, 1, 200 + dt);
    }
    let mut src = Source::audio(5);
    let p = src.audio_packet(Some(10));
    for _ in 0..3 {
        room.rtp(1, 0, p.clone());
    }
    assert_eq!(all_rtp(&room.take()).len(), 4);
    assert_eq!(room.router.stats().dropped_duplicate, 2);
}
