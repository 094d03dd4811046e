//! Simulcast: `High` is the highest active allowed layer, `Low` layer 0; switches happen only at a
//! keyframe of the target layer (asked for, throttled), the current layer keeps flowing until then,
//! and a layer that stops makes its subscribers fall back to another active one.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

/// Three layers, all sending.
struct Sim {
    room: Room,
    layers: Vec<Source>,
}

impl Sim {
    fn new() -> Self {
        let mut room = Room::new();
        room.add_simulcast(1, 100, 3);
        let mut layers: Vec<Source> = (0..3)
            .map(|i| Source::video(0x100 + i).with_size(320 << i, 180 << i))
            .collect();
        for (i, l) in layers.iter_mut().enumerate() {
            room.rtps(1, i as u8, l.keyframe(1));
        }
        room.take();
        Self { room, layers }
    }

    fn key(&mut self, layer: u8) -> Vec<RtpPacket> {
        let p = self.layers[usize::from(layer)].keyframe(2);
        self.room.rtps(1, layer, p.clone());
        p
    }

    fn delta(&mut self, layer: u8) -> Vec<RtpPacket> {
        let p = self.layers[usize::from(layer)].delta(2);
        self.room.rtps(1, layer, p.clone());
        p
    }

    /// One frame on each of `layers`, then 33 ms pass.
    fn frame(&mut self, layers: &[u8]) {
        for &l in layers {
            self.delta(l);
        }
        self.room.advance(Duration::from_millis(33));
    }

    fn current(&self, dt: u64) -> Option<u8> {
        self.room
            .info(dt)
            .and_then(|i| i.current_layer)
            .map(|l| l.0)
    }

    fn target(&self, dt: u64) -> Option<u8> {
        self.room.info(dt).and_then(|i| i.target_layer).map(|l| l.0)
    }
}

/// Payload identity tells which layer a forwarded packet came from.
fn from_layer(got: &RtpPacket, sent: &[RtpPacket]) -> bool {
    sent.iter()
        .any(|s| s.payload.as_ptr() == got.payload.as_ptr())
}

#[test]
fn high_picks_the_highest_active_layer() {
    let mut sim = Sim::new();
    sim.room.subscribe(1, 1, 200);
    assert_eq!(keyframe_requests(&sim.room.take()), vec![(1, 2)]);
    assert_eq!(sim.target(1), Some(2));
    assert_eq!(sim.current(1), None);
    sim.delta(0);
    sim.delta(1);
    assert!(rtp_of(&sim.room.take(), 1).is_empty());
    let k2 = sim.key(2);
    let k0 = sim.key(0);
    let got = rtp_of(&sim.room.take(), 1);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| from_layer(p, &k2)));
    assert!(!got.iter().any(|p| from_layer(p, &k0)));
    assert_eq!(sim.current(1), Some(2));
}

#[test]
fn low_picks_layer_zero() {
    let mut sim = Sim::new();
    sim.room.subscribe_with(1, 1, 200, LayerPreference::Low);
    assert_eq!(keyframe_requests(&sim.room.take()), vec![(1, 0)]);
    sim.key(2);
    sim.key(1);
    assert!(rtp_of(&sim.room.take(), 1).is_empty());
    let k0 = sim.key(0);
    let got = rtp_of(&sim.room.take(), 1);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| from_layer(p, &k0)));
}

#[test]
fn set_layer_switches_only_at_the_target_keyframe() {
    let mut sim = Sim::new();
    sim.room.subscribe(1, 1, 200);
    sim.key(2);
    sim.frame(&[0, 1, 2]);
    sim.room.take();

    sim.room.set_layer(1, LayerPreference::Low);
    assert_eq!(keyframe_requests(&sim.room.take()), vec![(1, 0)]);
    // Until layer 0's keyframe, layer 2 keeps flowing and layer 0 deltas are not forwarded.
    let d2 = sim.delta(2);
    let d0 = sim.delta(0);
    let got = rtp_of(&sim.room.take(), 1);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| from_layer(p, &d2)));
    assert!(!got.iter().any(|p| from_layer(p, &d0)));
    assert_eq!(sim.current(1), Some(2));

    let k0 = sim.key(0);
    let after2 = sim.delta(2);
    let d0 = sim.delta(0);
    let got = rtp_of(&sim.room.take(), 1);
    assert_eq!(got.len(), 4);
    assert!(got[..2].iter().all(|p| from_layer(p, &k0)));
    assert!(got[2..].iter().all(|p| from_layer(p, &d0)));
    assert!(!got.iter().any(|p| from_layer(p, &after2)));
    assert_eq!(sim.current(1), Some(0));
    assert_eq!(sim.room.router.stats().layer_switches, 2);
}

#[test]
fn switch_up_again_with_set_layer_high() {
    let mut sim = Sim::new();
    sim.room.subscribe_with(1, 1, 200, LayerPreference::Low);
    sim.key(0);
    sim.room.take();
    sim.room.set_layer(1, LayerPreference::High);
    assert_eq!(keyframe_requests(&sim.room.take()), vec![(1, 2)]);
    sim.frame(&[0, 1, 2]);
    sim.key(1);
    assert_eq!(sim.current(1), Some(0), "layer 1 is not the target");
    sim.key(2);
    assert_eq!(sim.current(1), Some(2));
}

#[test]
fn inactive_layer_falls_back_then_comes_back() {
    let mut sim = Sim::new();
    sim.room.subscribe(1, 1, 200);
    sim.key(2);
    sim.room.take();
    // Layer 2 stops (e.g. the publisher's uplink got worse); 0 and 1 continue.
    for _ in 0..40 {
        sim.frame(&[0, 1]);
    }
    let out = sim.room.take();
    assert!(keyframe_requests(&out).contains(&(1, 1)));
    assert_eq!(sim.target(1), Some(1));
    assert_eq!(sim.current(1), Some(2), "no switch before a keyframe");
    assert!(rtp_of(&out, 1).is_empty());
    let k1 = sim.key(1);
    let got = rtp_of(&sim.room.take(), 1);
    assert!(got.iter().all(|p| from_layer(p, &k1)) && got.len() == 2);
    assert_eq!(sim.current(1), Some(1));

    // Layer 2 resumes: back up at its next keyframe.
    sim.delta(2);
    assert!(keyframe_requests(&sim.room.take()).contains(&(1, 2)));
    assert_eq!(sim.current(1), Some(1));
    sim.frame(&[0, 1, 2]);
    let k2 = sim.key(2);
    let got = rtp_of(&sim.room.take(), 1);
    assert!(got.iter().rev().take(2).all(|p| from_layer(p, &k2)));
    assert_eq!(sim.current(1), Some(2));
}

#[test]
fn low_falls_back_to_lowest_active_layer() {
    let mut sim = Sim::new();
    sim.room.subscribe_with(1, 1, 200, LayerPreference::Low);
    sim.key(0);
    for _ in 0..40 {
        sim.frame(&[1, 2]);
    }
    assert_eq!(sim.target(1), Some(1));
    sim.key(1);
    assert_eq!(sim.current(1), Some(1));
}

#[test]
fn late_packets_of_the_previous_layer_are_not_forwarded() {
    let mut sim = Sim::new();
    sim.room.subscribe(1, 1, 200);
    sim.key(2);
    sim.room.set_layer(1, LayerPreference::Low);
    // A layer-2 packet that is delayed past the switch.
    let late = sim.layers[2].delta(1);
    sim.key(0);
    sim.room.take();
    sim.room.rtps(1, 2, late);
    assert!(rtp_of(&sim.room.take(), 1).is_empty());
    // And a layer-0 packet from before its keyframe.
    let mut early = sim.layers[0].delta(1)[0].clone();
    early.sequence = early.sequence.wrapping_sub(10);
    sim.room.rtp(1, 0, early);
    assert!(rtp_of(&sim.room.take(), 1).is_empty());
}

#[test]
fn subscribers_on_different_layers() {
    let mut sim = Sim::new();
    sim.room.subscribe_with(1, 1, 200, LayerPreference::Low);
    sim.room.subscribe_with(2, 1, 201, LayerPreference::High);
    let mut req = keyframe_requests(&sim.room.take());
    req.sort_unstable();
    assert_eq!(req, vec![(1, 0), (1, 2)]);
    let k0 = sim.key(0);
    let k1 = sim.key(1);
    let k2 = sim.key(2);
    let out = sim.room.take();
    assert!(rtp_of(&out, 1).iter().all(|p| from_layer(p, &k0)));
    assert!(rtp_of(&out, 2).iter().all(|p| from_layer(p, &k2)));
    assert!(!all_rtp(&out).iter().any(|(_, p)| from_layer(p, &k1)));
}

#[test]
fn unknown_layer_is_dropped() {
    let mut room = Room::new();
    room.add_simulcast(1, 100, 2);
    room.subscribe(1, 1, 200);
    let mut src = Source::video(5);
    room.rtps(1, 2, src.keyframe(1));
    room.rtps(1, 200, src.keyframe(1));
    assert!(rtp_of(&room.take(), 1).is_empty());
    assert_eq!(room.router.stats().dropped_unknown, 2);
}
