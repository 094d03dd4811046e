//! Role limits: a layer above 1.25x its bitrate cap for 5 s, or a keyframe above the resolution
//! limit, is disabled with one `LimitExceeded` event; subscribers fall to an allowed layer. REMB tells
//! each publisher the sum of its caps every second.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

fn limits(max_kbps: u32, max_width: u32, max_height: u32) -> StreamLimits {
    StreamLimits {
        max_kbps,
        max_width,
        max_height,
    }
}

/// Sends `kbps` (payload + 12-byte header estimate) on a layer for `dur`, one packet every 10 ms,
/// a keyframe every second.
fn send_rate(
    room: &mut Room,
    src: &mut Source,
    publication: u64,
    layer: u8,
    kbps: u32,
    dur: Duration,
) {
    let bytes = (kbps as usize * 1000 / 8 / 100).saturating_sub(12);
    let steps = dur.as_millis() / 10;
    for i in 0..steps {
        let mut first = if i % 100 == 0 {
            vp8_keyframe(320, 180)
        } else {
            vp8_delta()
        };
        first.resize(bytes.max(first.len()), 0x77);
        let p = src.packet(first, true);
        src.ts = src.ts.wrapping_add(900);
        room.rtp(publication, layer, p);
        room.advance(Duration::from_millis(10));
    }
}

fn limit_events(out: &[Output]) -> Vec<(u8, LimitReason)> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::LimitExceeded { layer, reason, .. } => Some((layer.0, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn bitrate_over_1_25x_for_5s_disables_the_layer_once() {
    let mut room = Room::new();
    room.add_publication(1, 100, MediaKind::Video, Codec::Vp8, 1, limits(500, 0, 0));
    room.subscribe(1, 1, 200);
    let mut src = Source::video(1);
    send_rate(&mut room, &mut src, 1, 0, 750, Duration::from_secs(5));
    let out = room.take();
    assert!(
        limit_events(&out).is_empty(),
        "not before 5 s over the limit"
    );
    assert!(!rtp_of(&out, 1).is_empty());
    send_rate(&mut room, &mut src, 1, 0, 750, Duration::from_millis(1500));
    let out = room.take();
    let ev = limit_events(&out);
    assert_eq!(ev.len(), 1);
    match &ev[0] {
        (
            0,
            LimitReason::Bitrate {
                measured_kbps,
                max_kbps: 500,
            },
        ) => assert!((700..=800).contains(measured_kbps), "{measured_kbps}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(events(&out).iter().any(|e| matches!(e,
        Event::LimitExceeded { publication, publisher, kind: MediaKind::Video, .. }
            if publication.0 == 1 && publisher.0 == 100)));
    // Nothing is forwarded any more, and the event is not repeated.
    send_rate(&mut room, &mut src, 1, 0, 750, Duration::from_secs(8));
    let out = room.take();
    assert!(rtp_of(&out, 1).is_empty());
    assert!(limit_events(&out).is_empty());
    assert!(room.router.stats().dropped_limit >= 700);
    assert_eq!(room.info(1).and_then(|i| i.current_layer), None);
}

#[test]
fn bitrate_under_1_25x_is_tolerated() {
    let mut room = Room::new();
    room.add_publication(1, 100, MediaKind::Video, Codec::Vp8, 1, limits(500, 0, 0));
    room.subscribe(1, 1, 200);
    let mut src = Source::video(1);
    send_rate(&mut room, &mut src, 1, 0, 600, Duration::from_secs(12));
    let out = room.take();
    assert!(limit_events(&out).is_empty());
    assert_eq!(room.router.stats().dropped_limit, 0);
}

#[test]
fn short_bursts_are_tolerated() {
    let mut room = Room::new();
    room.add_publication(1, 100, MediaKind::Video, Codec::Vp8, 1, limits(500, 0, 0));
    let mut src = Source::video(1);
    for _ in 0..3 {
        send_rate(&mut room, &mut src, 1, 0, 900, Duration::from_secs(3));
        send_rate(&mut room, &mut src, 1, 0, 400, Duration::from_secs(2));
    }
    assert!(limit_events(&room.take()).is_empty());
}

#[test]
fn audio_bitrate_cap_applies_too() {
    let mut room = Room::new();
    room.add_publication(1, 100, MediaKind::Audio, Codec::Opus, 1, limits(32, 0, 0));
    let mut src = Source::audio(1);
    send_rate(&mut room, &mut src, 1, 0, 128, Duration::from_secs(7));
    let ev = events(&room.take());
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::LimitExceeded {
            kind: MediaKind::Audio,
            reason: LimitReason::Bitrate { max_kbps: 32, .. },
            ..
        }
    )));
}

#[test]
fn simulcast_top_layer_over_cap_falls_back_to_the_next() {
    let mut room = Room::new();
    room.add_publication(1, 100, MediaKind::Video, Codec::Vp8, 3, limits(1000, 0, 0));
    room.subscribe_with(1, 1, 200, LayerPreference::High);
    room.subscribe_with(2, 1, 201, LayerPreference::Low);
    let mut src: Vec<Source> = (0..3).map(|i| Source::video(10 + i)).collect();
    let rates = [150u32, 500, 1500];
    for step in 0..700u32 {
        for (i, s) in src.iter_mut().enumerate() {
            let bytes = (rates[i] as usize * 1000 / 8 / 100).saturating_sub(12);
            let mut first = if step % 100 == 0 {
                vp8_keyframe(320, 180)
            } else {
                vp8_delta()
            };
            first.resize(bytes, 0x11);
            let p = s.packet(first, true);
            room.rtp(1, i as u8, p);
        }
        room.advance(Duration::from_millis(10));
    }
    let out = room.take();
    let ev = limit_events(&out);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].0, 2, "only the top layer exceeds the cap");
    assert!(keyframe_requests(&out).contains(&(1, 1)));
    // The High subscriber is on layer 1 after its keyframe (sent every second), Low stays on 0.
    assert_eq!(room.info(1).and_then(|i| i.current_layer), Some(Layer(1)));
    assert_eq!(room.info(2).and_then(|i| i.current_layer), Some(Layer(0)));
}

#[test]
fn keyframe_above_resolution_limit_disables_the_layer() {
    let mut room = Room::new();
    room.add_publication(
        1,
        100,
        MediaKind::Video,
        Codec::Vp8,
        1,
        limits(0, 1280, 720),
    );
    room.subscribe(1, 1, 200);
    let mut src = Source::video(1).with_size(1920, 1080);
    room.rtps(1, 0, src.keyframe(3));
    room.rtps(1, 0, src.delta(3));
    let out = room.take();
    assert_eq!(
        limit_events(&out),
        vec![(
            0,
            LimitReason::Resolution {
                width: 1920,
                height: 1080,
                max_width: 1280,
                max_height: 720
            }
        )]
    );
    assert!(rtp_of(&out, 1).is_empty());
    assert_eq!(room.router.stats().dropped_limit, 6);
}

#[test]
fn rotated_resolution_within_limits_is_allowed() {
    let mut room = Room::new();
    room.add_publication(
        1,
        100,
        MediaKind::Video,
        Codec::Vp8,
        1,
        limits(0, 1280, 720),
    );
    room.subscribe(1, 1, 200);
    let mut src = Source::video(1).with_size(720, 1280);
    room.rtps(1, 0, src.keyframe(2));
    let mut src2 = Source::video(1).with_size(1280, 720);
    src2.seq = src.seq;
    room.rtps(1, 0, src2.keyframe(2));
    let out = room.take();
    assert!(limit_events(&out).is_empty());
    assert_eq!(rtp_of(&out, 1).len(), 4);
}

#[test]
fn h264_and_vp9_resolutions_are_checked() {
    let mut room = Room::new();
    room.add_publication(
        1,
        100,
        MediaKind::Video,
        Codec::H264,
        1,
        limits(0, 640, 360),
    );
    room.add_publication(
        2,
        100,
        MediaKind::SubVideo,
        Codec::Vp9,
        1,
        limits(0, 1920, 1080),
    );
    let mut h = Source::video(1).with_codec(Codec::H264);
    room.rtps(1, 0, h.keyframe(2));
    let mut v = Source::video(2)
        .with_codec(Codec::Vp9)
        .with_size(2560, 1440);
    room.rtps(2, 0, v.keyframe(2));
    let ev = events(&room.take());
    assert!(ev.iter().any(|e| matches!(e,
        Event::LimitExceeded { publication, reason: LimitReason::Resolution { width: 1280, height: 720, .. }, .. }
            if publication.0 == 1)));
    assert!(ev.iter().any(|e| matches!(e,
        Event::LimitExceeded { publication, kind: MediaKind::SubVideo,
            reason: LimitReason::Resolution { width: 2560, height: 1440, .. }, .. }
            if publication.0 == 2)));
}

#[test]
fn simulcast_resolution_limit_disables_only_the_big_layer() {
    let mut room = Room::new();
    room.add_publication(
        1,
        100,
        MediaKind::Video,
        Codec::Vp8,
        3,
        limits(0, 1280, 720),
    );
    let mut src: Vec<Source> = (0..3)
        .map(|i| Source::video(20 + i).with_size(480 << i, 270 << i))
        .collect();
    for (i, s) in src.iter_mut().enumerate() {
        room.rtps(1, i as u8, s.keyframe(1));
    }
    let ev = limit_events(&room.take());
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, 2);
    room.subscribe(1, 1, 200);
    assert_eq!(
        keyframe_requests(&room.take()),
        vec![(1, 1)],
        "High means highest allowed"
    );
    room.rtps(1, 2, src[2].keyframe(1));
    room.rtps(1, 1, src[1].keyframe(1));
    assert_eq!(room.info(1).and_then(|i| i.current_layer), Some(Layer(1)));
}

#[test]
fn zero_limits_mean_unlimited() {
    let mut room = Room::new();
    room.add_publication(
        1,
        100,
        MediaKind::Video,
        Codec::Vp8,
        1,
        StreamLimits::default(),
    );
    room.subscribe(1, 1, 200);
    let mut src = Source::video(1).with_size(4096, 2160);
    room.rtps(1, 0, src.keyframe(1));
    send_rate(&mut room, &mut src, 1, 0, 5000, Duration::from_secs(7));
    assert!(limit_events(&room.take()).is_empty());
}

#[test]
fn remb_is_the_sum_of_caps_every_second() {
    let mut room = Room::new();
    room.add_publication(
        1,
        100,
        MediaKind::Video,
        Codec::Vp8,
        3,
        limits(1500, 1280, 720),
    );
    room.add_publication(2, 100, MediaKind::Audio, Codec::Opus, 1, limits(64, 0, 0));
    room.add_publication(
        3,
        101,
        MediaKind::SubVideo,
        Codec::Vp8,
        1,
        limits(2000, 0, 0),
    );
    room.add_publication(
        4,
        102,
        MediaKind::Video,
        Codec::Vp8,
        1,
        StreamLimits::default(),
    );
    room.take();
    room.advance(Duration::from_millis(999));
    assert!(rembs(&room.take()).is_empty());
    room.advance(Duration::from_millis(1));
    let mut r = rembs(&room.take());
    r.sort_unstable();
    assert_eq!(r, vec![(100, 1_564_000), (101, 2_000_000)]);
    room.advance(Duration::from_secs(3));
    assert_eq!(rembs(&room.take()).len(), 6);
    room.command(Command::RemovePublication {
        id: PublicationId(3),
    });
    room.advance(Duration::from_secs(1));
    assert_eq!(rembs(&room.take()), vec![(100, 1_564_000)]);
}
