//! Removal: removing a down-track stops its forwarding, removing a publication removes its
//! down-tracks and pending work, and unknown ids are ignored and counted.

mod common;

use common::*;
use fanout_forward::*;
use std::time::{Duration, Instant};

#[test]
fn remove_down_track_stops_forwarding() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    room.subscribe(2, 1, 201);
    let mut src = Source::video(1);
    room.rtps(1, 0, src.keyframe(2));
    room.take();
    room.command(Command::RemoveDownTrack { id: DownTrackId(1) });
    assert!(room.info(1).is_none());
    room.rtps(1, 0, src.delta(2));
    let out = room.take();
    assert!(rtp_of(&out, 1).is_empty());
    assert_eq!(rtp_of(&out, 2).len(), 2);
    // Feedback for it is now unknown.
    room.pli(1);
    room.nack(1, vec![1]);
    assert_eq!(room.router.stats().unknown_ids, 2);
}

#[test]
fn remove_publication_removes_its_down_tracks_and_pending_work() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.add_video(2, 101);
    let mut a = Source::video(1);
    room.rtps(1, 0, a.keyframe(1));
    room.subscribe(1, 1, 200);
    room.advance(Duration::from_millis(100));
    room.subscribe(2, 1, 201); // a throttled keyframe request is now pending
    room.subscribe(3, 2, 200);
    room.take();
    room.command(Command::RemovePublication {
        id: PublicationId(1),
    });
    assert!(room.info(1).is_none());
    assert!(room.info(2).is_none());
    assert!(room.info(3).is_some());
    room.advance(Duration::from_secs(2));
    let out = room.take();
    assert!(keyframe_requests(&out).iter().all(|(p, _)| *p != 1));
    assert!(receiver_reports(&out).iter().all(|r| r.0 != 1));
    room.rtps(1, 0, a.delta(1));
    assert!(all_rtp(&room.take()).is_empty());
    assert_eq!(room.router.stats().dropped_unknown, 1);
    // The id can be used again.
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    assert!(room.info(1).is_some());
}

#[test]
fn queued_outputs_for_a_removed_down_track_are_dropped() {
    let t0 = Instant::now();
    let mut router = Router::new();
    let cmd = |command| Input::Command { now: t0, command };
    router.handle_input(cmd(Command::AddPublication {
        id: PublicationId(1),
        publisher: ParticipantId(1),
        kind: MediaKind::Audio,
        codec: Codec::Opus,
        layers: 1,
        limits: StreamLimits::default(),
    }));
    for dt in 1..=2 {
        router.handle_input(cmd(Command::AddDownTrack {
            id: DownTrackId(dt),
            publication: PublicationId(1),
            subscriber: ParticipantId(10 + dt),
            ssrc: dt as u32,
            payload_type: 111,
            layer: LayerPreference::High,
        }));
    }
    let mut src = Source::audio(5);
    router.handle_input(Input::Rtp {
        now: t0,
        publication: PublicationId(1),
        layer: Layer(0),
        packet: src.audio_packet(None),
    });
    // Not drained yet: the transport removes down-track 1 first.
    router.handle_input(cmd(Command::RemoveDownTrack { id: DownTrackId(1) }));
    let mut out = Vec::new();
    while let Some(o) = router.poll_output() {
        out.push(o);
    }
    assert!(rtp_of(&out, 1).is_empty());
    assert_eq!(rtp_of(&out, 2).len(), 1);
}

#[test]
fn unknown_ids_are_ignored_and_counted() {
    let mut room = Room::new();
    room.command(Command::RemovePublication {
        id: PublicationId(5),
    });
    room.command(Command::RemoveDownTrack { id: DownTrackId(5) });
    room.set_layer(5, LayerPreference::Low);
    room.subscribe(5, 5, 1);
    room.pli(5);
    room.nack(5, vec![1, 2]);
    room.feedback(Feedback::ReceiverReport {
        down_track: DownTrackId(5),
        fraction_lost: 0,
        jitter: 0,
    });
    room.feedback(Feedback::SenderReport {
        publication: PublicationId(5),
        layer: Layer(0),
        ntp_time: 0,
        rtp_time: 0,
    });
    let mut src = Source::video(1);
    room.rtps(5, 0, src.keyframe(1));
    room.advance(Duration::from_secs(3));
    let out = room.take();
    assert!(out.is_empty(), "{out:?}");
    let s = room.router.stats();
    assert_eq!(s.unknown_ids, 8);
    assert_eq!(s.dropped_unknown, 1);
    assert_eq!(s.rtp_in, 1);
}

#[test]
fn poll_timeout_is_none_before_any_input() {
    let router = Router::new();
    assert_eq!(router.poll_timeout(), None);
    let mut room = Room::new();
    room.add_video(1, 1);
    let t = room
        .router
        .poll_timeout()
        .expect("timers run after the first input");
    assert!(t > room.now && t <= room.now + TICK_INTERVAL);
}
