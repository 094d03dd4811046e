//! Continuity: a subscriber's sequence numbers go up by exactly one per forwarded packet across
//! simulcast switches and publisher source changes (new SSRC, sequence restart), with timestamps
//! advanced by the wall time elapsed; gaps appear only where the publisher really lost packets.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

#[test]
fn simulcast_switch_keeps_sequence_and_timestamp_continuous() {
    let mut room = Room::new();
    room.add_simulcast(1, 100, 2);
    let mut l0 = Source::video(0x10);
    let mut l1 = Source::video(0x11);
    l1.seq = 40_000;
    l1.ts = 3_000_000_000;
    room.rtps(1, 0, l0.keyframe(1));
    room.rtps(1, 1, l1.keyframe(1));
    room.subscribe_with(1, 1, 200, LayerPreference::Low);
    room.rtps(1, 0, l0.keyframe(3));
    room.advance(Duration::from_millis(33));
    room.rtps(1, 0, l0.delta(2));
    room.set_layer(1, LayerPreference::High);
    room.advance(Duration::from_millis(40));
    room.rtps(1, 1, l1.keyframe(3));
    room.advance(Duration::from_millis(33));
    room.rtps(1, 1, l1.delta(2));
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 10);
    assert_contiguous(&got);
    // At the switch, the timestamp advanced by the 40 ms that passed (90 kHz).
    assert_eq!(got[5].timestamp.wrapping_sub(got[4].timestamp), 40 * 90);
    // Inside the new epoch, the publisher's own spacing.
    assert_eq!(got[8].timestamp.wrapping_sub(got[5].timestamp), 3000);
}

#[test]
fn many_switches_never_leave_a_gap() {
    let mut room = Room::new();
    room.add_simulcast(1, 100, 3);
    let mut src: Vec<Source> = (0..3).map(|i| Source::video(0x20 + i)).collect();
    for (i, s) in src.iter_mut().enumerate() {
        room.rtps(1, i as u8, s.keyframe(1));
    }
    room.subscribe(1, 1, 200);
    let prefs = [LayerPreference::Low, LayerPreference::High];
    for round in 0..20 {
        room.set_layer(1, prefs[round % 2]);
        for frame in 0..5 {
            for (i, s) in src.iter_mut().enumerate() {
                // Every layer sends a keyframe on the 3rd frame.
                let p = if frame == 2 {
                    s.keyframe(3)
                } else {
                    s.delta(3)
                };
                room.rtps(1, i as u8, p);
            }
            room.advance(Duration::from_millis(33));
        }
    }
    let got = rtp_of(&room.take(), 1);
    assert!(got.len() > 100);
    assert_contiguous(&got);
    for w in got.windows(2) {
        // Timestamps never go back.
        assert!((w[1].timestamp.wrapping_sub(w[0].timestamp) as i32) >= 0);
    }
    assert!(room.router.stats().layer_switches >= 20);
}

#[test]
fn publisher_ssrc_change_rebases_video_at_the_next_keyframe() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    let mut old = Source::video(0xaaaa);
    room.rtps(1, 0, old.keyframe(2));
    room.rtps(1, 0, old.delta(2));
    room.take();
    // The publisher reconnects: new SSRC, new sequence and timestamp bases.
    room.advance(Duration::from_millis(500));
    let mut new = Source::video(0xbbbb);
    new.seq = 9;
    new.ts = 77;
    room.rtps(1, 0, new.delta(2));
    let out = room.take();
    assert!(
        rtp_of(&out, 1).is_empty(),
        "waits for the new source's keyframe"
    );
    assert_eq!(keyframe_requests(&out), vec![(1, 0)]);
    assert_eq!(room.router.stats().source_changes, 1);
    room.advance(Duration::from_millis(20));
    room.rtps(1, 0, new.keyframe(2));
    room.rtps(1, 0, new.delta(1));
    let after = rtp_of(&room.take(), 1);
    assert_eq!(after.len(), 3);
    assert_contiguous(&after);
    assert!(after.iter().all(|p| p.ssrc == dt_ssrc(1)));
}

#[test]
fn publisher_ssrc_change_keeps_numbering_continuous() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    let mut old = Source::video(0xaaaa);
    room.rtps(1, 0, old.keyframe(2));
    let before = rtp_of(&room.take(), 1);
    room.advance(Duration::from_millis(250));
    let mut new = Source::video(0xbbbb);
    new.seq = 60_000;
    new.ts = 5;
    room.rtps(1, 0, new.keyframe(2));
    let after = rtp_of(&room.take(), 1);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].sequence, before[1].sequence.wrapping_add(1));
    assert_eq!(
        after[0].timestamp.wrapping_sub(before[1].timestamp),
        250 * 90
    );
}

#[test]
fn audio_ssrc_change_rebases_immediately() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    room.subscribe(1, 1, 200);
    let mut old = Source::audio(1);
    for _ in 0..5 {
        room.rtp(1, 0, old.audio_packet(None));
        room.advance(Duration::from_millis(20));
    }
    room.advance(Duration::from_millis(100));
    let mut new = Source::audio(2);
    new.seq = 123;
    new.ts = 456;
    for _ in 0..5 {
        room.rtp(1, 0, new.audio_packet(None));
        room.advance(Duration::from_millis(20));
    }
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 10);
    assert_contiguous(&got);
    // 20 ms after the last old packet plus the 100 ms pause, at 48 kHz.
    assert_eq!(got[5].timestamp.wrapping_sub(got[4].timestamp), 120 * 48);
    assert_eq!(got[6].timestamp.wrapping_sub(got[5].timestamp), 960);
}

#[test]
fn stale_packets_of_the_old_ssrc_are_dropped() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    room.subscribe(1, 1, 200);
    let mut old = Source::audio(1);
    room.rtp(1, 0, old.audio_packet(None));
    let straggler = old.audio_packet(None);
    let mut new = Source::audio(2);
    room.rtp(1, 0, new.audio_packet(None));
    room.rtp(1, 0, straggler);
    room.rtp(1, 0, new.audio_packet(None));
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), 3);
    assert_contiguous(&got);
    assert_eq!(room.router.stats().source_changes, 1);
    assert_eq!(room.router.stats().dropped_out_of_window, 1);
}

#[test]
fn publisher_losses_stay_gaps_of_the_same_size() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    let mut src = Source::video(3);
    let key = src.keyframe(10);
    for (i, p) in key.iter().enumerate() {
        if i != 3 && i != 6 && i != 7 {
            room.rtp(1, 0, p.clone());
        }
    }
    let got = rtp_of(&room.take(), 1);
    let base = got[0].sequence;
    let offsets: Vec<u16> = got.iter().map(|p| p.sequence.wrapping_sub(base)).collect();
    assert_eq!(offsets, vec![0, 1, 2, 4, 5, 8, 9]);
}

#[test]
fn sequence_restart_on_the_same_ssrc_is_rebased() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    room.subscribe(1, 1, 200);
    let mut src = Source::audio(7);
    src.seq = 1000;
    for _ in 0..5 {
        room.rtp(1, 0, src.audio_packet(None));
    }
    // The publisher restarts its sequence numbers far away (same SSRC).
    src.seq = 40_000;
    for _ in 0..5 {
        room.rtp(1, 0, src.audio_packet(None));
    }
    let got = rtp_of(&room.take(), 1);
    // The first packet after the jump is not believed; the second confirms the restart.
    assert_eq!(got.len(), 9);
    assert_contiguous(&got);
    assert_eq!(room.router.stats().source_changes, 1);
    assert_eq!(room.router.stats().dropped_out_of_window, 1);
}

#[test]
fn timestamps_and_sequences_wrap() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    let mut src = Source::video(3);
    src.seq = 65_500;
    src.ts = u32::MAX - 5000;
    let mut sent = src.keyframe(3);
    for _ in 0..40 {
        sent.extend(src.delta(2));
    }
    room.rtps(1, 0, sent.clone());
    let got = rtp_of(&room.take(), 1);
    assert_eq!(got.len(), sent.len());
    assert_contiguous(&got);
    for (g, s) in got.iter().zip(&sent) {
        assert_eq!(
            g.timestamp.wrapping_sub(got[0].timestamp),
            s.timestamp.wrapping_sub(sent[0].timestamp)
        );
    }
}

#[test]
fn resubscribing_starts_fresh() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    room.subscribe(1, 1, 200);
    let mut src = Source::audio(7);
    room.rtp(1, 0, src.audio_packet(None));
    room.command(Command::RemoveDownTrack { id: DownTrackId(1) });
    room.rtp(1, 0, src.audio_packet(None));
    assert_eq!(rtp_of(&room.take(), 1).len(), 1);
    room.subscribe(1, 1, 200);
    room.rtp(1, 0, src.audio_packet(None));
    assert_eq!(rtp_of(&room.take(), 1).len(), 1);
}
