//! Keyframe requests: merged and throttled to one per publication layer per 500 ms, a request inside
//! the window is sent when it ends unless a keyframe came; new video subscribers ask for a keyframe
//! and start at one, audio starts at once.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

/// A video publication with two subscribers already receiving.
fn receiving() -> (Room, Source) {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(0x42);
    room.rtps(1, 0, src.keyframe(2));
    room.subscribe(1, 1, 200);
    room.subscribe(2, 1, 201);
    room.rtps(1, 0, src.keyframe(2));
    room.advance(Duration::from_secs(1));
    room.take();
    (room, src)
}

#[test]
fn requests_within_the_window_are_merged_and_deferred() {
    let (mut room, _src) = receiving();
    let up_before = room.router.stats().keyframe_requests_up;
    room.pli(1);
    assert_eq!(keyframe_requests(&room.take()), vec![(1, 0)]);
    room.advance(Duration::from_millis(100));
    room.pli(2);
    room.pli(1);
    room.pli(2);
    assert!(keyframe_requests(&room.take()).is_empty(), "throttled");
    room.advance(Duration::from_millis(399));
    assert!(keyframe_requests(&room.take()).is_empty());
    room.advance(Duration::from_millis(1));
    assert_eq!(
        keyframe_requests(&room.take()),
        vec![(1, 0)],
        "sent when the window ends"
    );
    room.advance(Duration::from_secs(2));
    assert!(
        keyframe_requests(&room.take()).is_empty(),
        "merged into one"
    );
    let s = room.router.stats();
    assert_eq!(s.keyframe_requests_in, 4);
    assert_eq!(s.keyframe_requests_up - up_before, 2);
}

#[test]
fn deferred_request_is_dropped_when_a_keyframe_arrives() {
    let (mut room, mut src) = receiving();
    room.pli(1);
    room.advance(Duration::from_millis(50));
    room.pli(2);
    assert_eq!(keyframe_requests(&room.take()), vec![(1, 0)]);
    room.advance(Duration::from_millis(100));
    room.rtps(1, 0, src.keyframe(3));
    room.advance(Duration::from_secs(1));
    assert!(keyframe_requests(&room.take()).is_empty());
}

#[test]
fn at_most_one_per_500ms_under_a_storm() {
    let (mut room, _src) = receiving();
    let mut sent_at = Vec::new();
    for _ in 0..300 {
        room.pli(1);
        room.pli(2);
        room.advance(Duration::from_millis(10));
        if !keyframe_requests(&room.take()).is_empty() {
            sent_at.push(room.now);
        }
    }
    assert!(sent_at.len() >= 5, "{}", sent_at.len());
    for w in sent_at.windows(2) {
        assert!(w[1] - w[0] >= KEYFRAME_THROTTLE - Duration::from_millis(10));
    }
}

#[test]
fn throttle_is_per_layer() {
    let mut room = Room::new();
    room.add_simulcast(1, 100, 2);
    let mut l0 = Source::video(1);
    let mut l1 = Source::video(2);
    room.rtps(1, 0, l0.keyframe(1));
    room.rtps(1, 1, l1.keyframe(1));
    room.subscribe_with(1, 1, 200, LayerPreference::Low);
    room.subscribe_with(2, 1, 201, LayerPreference::High);
    room.rtps(1, 0, l0.keyframe(1));
    room.rtps(1, 1, l1.keyframe(1));
    room.advance(Duration::from_secs(1));
    room.take();
    room.pli(1);
    room.pli(2);
    let mut got = keyframe_requests(&room.take());
    got.sort_unstable();
    assert_eq!(got, vec![(1, 0), (1, 1)]);
}

#[test]
fn new_video_down_track_requests_a_keyframe_and_waits_for_it() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(9);
    room.rtps(1, 0, src.keyframe(2));
    room.rtps(1, 0, src.delta(2));
    room.advance(Duration::from_millis(33));
    room.take();
    room.subscribe(1, 1, 200);
    assert_eq!(keyframe_requests(&room.take()), vec![(1, 0)]);
    // Deltas are not forwarded before the keyframe.
    room.rtps(1, 0, src.delta(3));
    assert!(rtp_of(&room.take(), 1).is_empty());
    let key = src.keyframe(3);
    room.rtps(1, 0, key.clone());
    room.rtps(1, 0, src.delta(2));
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].payload, key[0].payload, "starts at the keyframe");
    assert_contiguous(&got);
}

#[test]
fn second_subscriber_request_is_throttled_then_sent() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(9);
    room.rtps(1, 0, src.keyframe(1));
    room.subscribe(1, 1, 200);
    room.advance(Duration::from_millis(100));
    room.subscribe(2, 1, 201);
    assert_eq!(keyframe_requests(&room.take()), vec![(1, 0)]);
    room.advance(Duration::from_millis(400));
    assert_eq!(keyframe_requests(&room.take()), vec![(1, 0)]);
    // One keyframe serves both.
    room.rtps(1, 0, src.keyframe(2));
    let out = room.take();
    assert_eq!(rtp_of(&out, 1).len(), 2);
    assert_eq!(rtp_of(&out, 2).len(), 2);
}

#[test]
fn waiting_subscriber_request_is_repeated_until_a_keyframe() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(9);
    room.rtps(1, 0, src.keyframe(1));
    room.subscribe(1, 1, 200);
    room.take();
    let mut requests = 0;
    for _ in 0..30 {
        room.rtps(1, 0, src.delta(1));
        room.advance(Duration::from_millis(100));
        requests += keyframe_requests(&room.take()).len();
    }
    // Every KEYFRAME_RETRY while the subscriber has nothing to decode.
    assert!((2..=4).contains(&requests), "{requests}");
    room.rtps(1, 0, src.keyframe(1));
    room.take();
    for _ in 0..30 {
        room.rtps(1, 0, src.delta(1));
        room.advance(Duration::from_millis(100));
        assert!(keyframe_requests(&room.take()).is_empty());
    }
}

#[test]
fn audio_down_track_starts_immediately_without_request() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    let mut src = Source::audio(3);
    room.rtp(1, 0, src.audio_packet(None));
    room.subscribe(1, 1, 200);
    room.pli(1);
    let out = room.take();
    assert!(keyframe_requests(&out).is_empty());
    room.rtp(1, 0, src.audio_packet(None));
    assert_eq!(rtp_of(&room.take(), 1).len(), 1);
}

#[test]
fn request_goes_to_the_publisher() {
    let (mut room, _src) = receiving();
    room.pli(2);
    let out = room.take();
    assert!(out.iter().any(|o| matches!(o,
        Output::KeyframeRequest { publisher, publication, layer }
            if publisher.0 == 100 && publication.0 == 1 && layer.0 == 0)));
}

#[test]
fn retransmitted_keyframe_start_still_starts_the_subscriber() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(9);
    room.rtps(1, 0, src.keyframe(1));
    room.subscribe(1, 1, 200);
    room.take();
    // The keyframe's first packet is lost; the rest arrive and are not a place to start.
    let key = src.keyframe(3);
    room.rtp(1, 0, key[1].clone());
    room.rtp(1, 0, key[2].clone());
    assert!(rtp_of(&room.take(), 1).is_empty());
    // Its retransmission arrives: the subscriber starts there and recovers the rest by NACK.
    room.rtp(1, 0, key[0].clone());
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 1);
    // The next frame shows the subscriber the gap, which it NACKs.
    room.rtps(1, 0, src.delta(1));
    let next = rtp_of(&room.take(), 1);
    assert_eq!(next[0].sequence, got[0].sequence.wrapping_add(3));
    room.nack(
        1,
        vec![
            got[0].sequence.wrapping_add(1),
            got[0].sequence.wrapping_add(2),
        ],
    );
    let resent = rtp_of(&room.take(), 1);
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[1].payload, key[2].payload);
    assert!(resent[1].marker);
}

#[test]
fn an_old_late_keyframe_is_not_a_start() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(9);
    room.rtps(1, 0, src.keyframe(1));
    room.subscribe(1, 1, 200);
    let old_key = src.keyframe(1);
    for _ in 0..100 {
        let d = src.delta(1);
        room.rtps(1, 0, d);
    }
    room.rtps(1, 0, old_key);
    assert!(rtp_of(&room.take(), 1).is_empty());
    assert_eq!(room.info(1).and_then(|i| i.current_layer), None);
}
