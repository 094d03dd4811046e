//! VP8 temporal layers in the router: a subscriber whose estimate does not cover the whole of a
//! video's lowest layer gets fewer of its frames (temporal layer 2, then 1, dropped) instead of a
//! pause; what it receives has no holes in its sequence numbers or picture IDs; the frame rate
//! comes back after the estimate has held, at a frame that allows it (layer sync).

mod common;

use common::*;
use fanout_forward::codec::vp8_descriptor;
use fanout_forward::*;
use std::time::Duration;

const PUBLISHER: u64 = 100;
const CAM: u64 = 1;
const MIC: u64 = 2;
const SLOW: u64 = 200;
const FREE: u64 = 201;
const SLOW_CAM: u64 = 10;
const SLOW_MIC: u64 = 11;
const FREE_CAM: u64 = 12;
/// Packets of 200 bytes per frame: 3 x 200 x 8 x 30 = 144 kb/s, of which temporal layer 0 is a
/// quarter, layer 1 a quarter and layer 2 half.
const PACKETS: usize = 3;

/// L1T3's pattern: 0 2 1 2.
fn tid_of(frame: u64) -> u8 {
    [0, 2, 1, 2][(frame % 4) as usize]
}

/// A VP8 payload with the I, L and T fields: 15-bit picture ID, TL0PICIDX, TID and Y.
fn payload(frame: u64, first: bool, key: bool) -> Vec<u8> {
    let tid = tid_of(frame);
    let pid = (frame as u16 + 0x7f00) & 0x7fff;
    let sync = tid > 0 && frame % 4 != 3;
    let mut p = vec![
        if first { 0x90 } else { 0x80 },
        0xe0,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        (frame / 4) as u8,
        (tid << 6) | if sync { 0x20 } else { 0 },
    ];
    if first && key {
        let tag: u32 = (1 << 4) | (100 << 5);
        p.extend_from_slice(&tag.to_le_bytes()[..3]);
        p.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00]);
    } else if first {
        let tag: u32 = 1 | (1 << 4) | (50 << 5);
        p.extend_from_slice(&tag.to_le_bytes()[..3]);
    }
    p.resize(200, 0xab);
    p
}

struct Sim {
    room: Room,
    cam: Source,
    mic: Source,
    frame: u64,
}

/// Packets of down-track `dt` as its subscriber gets them (forwards, or retransmissions):
/// sequence number, temporal index, picture ID (after the router's patch).
fn packets_of(outputs: &[Output], dt: u64, resent: bool) -> Vec<(u16, u8, u16)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Rtp {
                down_track,
                packet,
                patch,
                retransmission,
                ..
            } if down_track.0 == dt && *retransmission == resent => {
                let mut bytes = packet.payload.to_vec();
                if let Some(p) = patch {
                    p.apply(&mut bytes);
                }
                let d = vp8_descriptor(&bytes)?;
                Some((packet.sequence, d.tid?, d.picture_id?.value))
            }
            _ => None,
        })
        .collect()
}

fn received(outputs: &[Output], dt: u64) -> Vec<(u16, u8, u16)> {
    packets_of(outputs, dt, false)
}

impl Sim {
    fn new() -> Sim {
        let mut room = Room::new();
        room.add_video(CAM, PUBLISHER);
        room.add_audio(MIC, PUBLISHER);
        room.subscribe(SLOW_CAM, CAM, SLOW);
        room.subscribe(SLOW_MIC, MIC, SLOW);
        room.subscribe(FREE_CAM, CAM, FREE);
        let mut sim = Sim {
            room,
            cam: Source::video(0x100),
            mic: Source::audio(0x200),
            frame: 0,
        };
        sim.run(Duration::from_secs(2));
        sim
    }

    fn run(&mut self, d: Duration) {
        let end = self.room.elapsed() + d;
        while self.room.elapsed() < end {
            let key = self.frame % 60 == 0;
            for i in 0..PACKETS {
                let p = self
                    .cam
                    .packet(payload(self.frame, i == 0, key), i == PACKETS - 1);
                self.room.rtp(CAM, 0, p);
            }
            self.cam.ts = self.cam.ts.wrapping_add(3000);
            self.frame += 1;
            let a = self.mic.audio_packet(Some(30));
            self.room.rtp(MIC, 0, a);
            self.room.advance(Duration::from_millis(17));
            let a = self.mic.audio_packet(Some(30));
            self.room.rtp(MIC, 0, a);
            self.room.advance(Duration::from_millis(16));
        }
    }

    fn estimate(&mut self, subscriber: u64, bps: u64) {
        self.room.feedback(Feedback::Bandwidth {
            subscriber: ParticipantId(subscriber),
            bitrate_bps: bps,
        });
    }
}

fn assert_continuous(got: &[(u16, u8, u16)]) {
    for w in got.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence numbers: {got:?}");
        let step = w[1].2.wrapping_sub(w[0].2) & 0x7fff;
        assert!(step <= 1, "picture IDs: {:?} then {:?}", w[0], w[1]);
    }
}

#[test]
fn a_short_estimate_drops_temporal_layers_not_the_video() {
    let mut sim = Sim::new();
    // Audio (~29 kb/s) and layers 0+1 (~72 kb/s) fit, the whole layer (~144 kb/s) does not.
    sim.estimate(SLOW, 120_000);
    sim.run(Duration::from_millis(500));
    sim.room.take();
    sim.run(Duration::from_secs(2));
    let out = sim.room.take();
    let slow = received(&out, SLOW_CAM);
    assert!(!slow.is_empty());
    assert!(slow.iter().all(|(_, t, _)| *t <= 1), "{slow:?}");
    assert!(slow.iter().any(|(_, t, _)| *t == 1));
    assert_continuous(&slow);
    let info = sim.room.info(SLOW_CAM).unwrap();
    assert_eq!(info.allowed, Allowed::UpTo(0));
    assert_eq!((info.temporal_target, info.temporal_current), (1, 1));
    assert!(events(&out)
        .iter()
        .all(|e| !matches!(e, Event::StreamPaused { .. })));
    // The other subscriber gets every frame.
    let free = received(&out, FREE_CAM);
    assert!(free.iter().any(|(_, t, _)| *t == 2));
    assert_continuous(&free);
    assert!(free.len() > slow.len() * 3 / 2);

    // Less: layer 0 alone (~36 kb/s).
    sim.estimate(SLOW, 70_000);
    sim.run(Duration::from_millis(200));
    sim.room.take();
    sim.run(Duration::from_secs(1));
    let slow = received(&sim.room.take(), SLOW_CAM);
    assert!(
        !slow.is_empty() && slow.iter().all(|(_, t, _)| *t == 0),
        "{slow:?}"
    );
    assert_continuous(&slow);
}

#[test]
fn the_frame_rate_comes_back_after_holding_at_a_sync_frame() {
    let mut sim = Sim::new();
    sim.estimate(SLOW, 70_000);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.room.info(SLOW_CAM).unwrap().temporal_current, 0);
    sim.estimate(SLOW, 1_000_000);
    sim.run(Duration::from_secs(1));
    assert_eq!(
        sim.room.info(SLOW_CAM).unwrap().temporal_current,
        0,
        "not before the hold"
    );
    sim.room.take();
    sim.run(UPGRADE_HOLD + Duration::from_millis(500));
    let out = sim.room.take();
    let slow = received(&out, SLOW_CAM);
    assert!(slow.iter().any(|(_, t, _)| *t == 2), "{slow:?}");
    assert_continuous(&slow);
    let info = sim.room.info(SLOW_CAM).unwrap();
    assert_eq!(info.temporal_current, ALL_TEMPORAL);
}

#[test]
fn a_retransmission_carries_the_picture_id_it_was_sent_with() {
    let mut sim = Sim::new();
    sim.estimate(SLOW, 120_000);
    sim.run(Duration::from_millis(500));
    sim.room.take();
    sim.run(Duration::from_millis(300));
    let out = sim.room.take();
    let sent = received(&out, SLOW_CAM);
    // Ask again for a packet sent a few frames ago.
    let (seq, tid, pid) = sent[sent.len() - 7];
    sim.room.nack(SLOW_CAM, vec![seq]);
    let out = sim.room.take();
    let resent: Vec<(u16, u16)> = packets_of(&out, SLOW_CAM, true)
        .into_iter()
        .map(|(s, _, p)| (s, p))
        .collect();
    assert_eq!(resent, vec![(seq, pid)], "tid {tid}");
}
