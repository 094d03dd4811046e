//! Dynacast: the router tells a publisher which of its simulcast layers some subscriber needs
//! (`Event::LayersNeeded`), so that it can stop encoding the others. A layer needed again is
//! announced at once; one no longer needed only after `DYNACAST_HOLD`; the lowest is always
//! needed. A layer the publisher stopped is still one the allocator can give a subscriber (at
//! the rate it had), which is what asks for it back.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

const PUBLISHER: u64 = 100;
const CAM: u64 = 1;
const ALICE: u64 = 200;
const BOB: u64 = 201;
const ALICE_CAM: u64 = 10;
const BOB_CAM: u64 = 11;
/// Packets per frame on each layer: about 14, 55 and 165 kb/s at 30 fps.
const PACKETS: [usize; 3] = [1, 4, 12];

struct Sim {
    room: Room,
    layers: Vec<Source>,
    /// The layers the publisher sends (bit i: layer i).
    sending: u8,
    frame: u64,
}

impl Sim {
    fn new(subscribers: &[(u64, u64)]) -> Sim {
        let mut room = Room::new();
        room.add_simulcast(CAM, PUBLISHER, 3);
        for &(dt, subscriber) in subscribers {
            room.subscribe(dt, CAM, subscriber);
        }
        let layers = (0..3)
            .map(|i| Source::video(0x100 + i).with_size(320 << i, 180 << i))
            .collect();
        let mut sim = Sim {
            room,
            layers,
            sending: 0b111,
            frame: 0,
        };
        sim.run(Duration::from_secs(1));
        sim
    }

    /// 30 fps on every layer being sent, a keyframe each second.
    fn run(&mut self, d: Duration) {
        let end = self.room.elapsed() + d;
        while self.room.elapsed() < end {
            let key = self.frame % 30 == 0;
            for (i, l) in self.layers.iter_mut().enumerate() {
                if self.sending & (1 << i) == 0 {
                    continue;
                }
                let p = if key {
                    l.keyframe(PACKETS[i])
                } else {
                    l.delta(PACKETS[i])
                };
                self.room.rtps(CAM, i as u8, p);
            }
            self.frame += 1;
            self.room.advance(Duration::from_millis(33));
        }
    }

    fn constrain(&mut self, dt: u64, width: u32, height: u32) {
        self.room.command(Command::SetVideoConstraints {
            down_track: DownTrackId(dt),
            max_width: width,
            max_height: height,
            paused: false,
            priority: 0,
        });
    }

    /// The `LayersNeeded` masks announced since the last call.
    fn announced(&mut self) -> Vec<u8> {
        events(&self.room.take())
            .into_iter()
            .filter_map(|e| match e {
                Event::LayersNeeded {
                    publication,
                    publisher,
                    kind,
                    layers,
                } => {
                    assert_eq!(publication, PublicationId(CAM));
                    assert_eq!(publisher, ParticipantId(PUBLISHER));
                    assert_eq!(kind, MediaKind::Video);
                    Some(layers)
                }
                _ => None,
            })
            .collect()
    }

    fn current(&self, dt: u64) -> Option<u8> {
        self.room
            .info(dt)
            .and_then(|i| i.current_layer)
            .map(|l| l.0)
    }
}

#[test]
fn a_layer_no_subscriber_renders_is_announced_after_the_hold_and_asked_back_at_once() {
    let mut sim = Sim::new(&[(ALICE_CAM, ALICE)]);
    assert_eq!(sim.announced(), Vec::<u8>::new(), "nothing before the hold");
    // Alice takes the top layer: the middle one is needed by no one.
    sim.run(DYNACAST_HOLD);
    assert_eq!(sim.announced(), vec![0b101]);
    // Alice renders a 320x180 tile: only the lowest layer is needed.
    sim.constrain(ALICE_CAM, 320, 180);
    sim.run(DYNACAST_HOLD - Duration::from_millis(500));
    assert_eq!(sim.announced(), Vec::<u8>::new(), "not before the hold");
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.announced(), vec![0b001]);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.announced(), Vec::<u8>::new(), "announced once");
    // Full screen again: wanted at the next tick, not after a hold.
    sim.constrain(ALICE_CAM, 0, 0);
    sim.run(Duration::from_millis(150));
    assert_eq!(sim.announced(), vec![0b101]);
    assert_eq!(sim.room.router.stats().layers_needed_events, 3);
}

#[test]
fn the_layers_of_different_subscribers_add_up() {
    let mut sim = Sim::new(&[(ALICE_CAM, ALICE), (BOB_CAM, BOB)]);
    sim.constrain(ALICE_CAM, 320, 180);
    sim.room.set_layer(BOB_CAM, LayerPreference::High);
    sim.run(DYNACAST_HOLD + Duration::from_millis(500));
    assert_eq!(sim.announced(), vec![0b101], "the middle layer: no one");
    // Bob's tile shrinks to 640x360: the top is no longer needed, the middle is, at once.
    sim.constrain(BOB_CAM, 640, 360);
    sim.run(Duration::from_millis(150));
    assert_eq!(sim.announced(), vec![0b111], "the middle, at once");
    sim.run(DYNACAST_HOLD + Duration::from_millis(200));
    assert_eq!(sim.announced(), vec![0b011], "then the top goes");
}

#[test]
fn without_subscribers_only_the_lowest_layer_is_needed() {
    let mut sim = Sim::new(&[]);
    sim.run(DYNACAST_HOLD + Duration::from_millis(200));
    assert_eq!(sim.announced(), vec![0b001]);
    // Someone subscribes: the top layer at once.
    sim.room.subscribe(ALICE_CAM, CAM, ALICE);
    sim.run(Duration::from_millis(150));
    assert_eq!(sim.announced(), vec![0b101]);
}

#[test]
fn a_stopped_layer_is_allocated_from_its_last_rate_and_so_asked_back() {
    let mut sim = Sim::new(&[(ALICE_CAM, ALICE)]);
    sim.run(Duration::from_secs(1));
    // Alice's link carries only the lowest layer: the others are not needed, and the
    // publisher stops them.
    sim.room.feedback(Feedback::Bandwidth {
        subscriber: ParticipantId(ALICE),
        bitrate_bps: 30_000,
    });
    sim.run(DYNACAST_HOLD + Duration::from_millis(500));
    assert_eq!(
        sim.announced().last(),
        Some(&0b001),
        "the middle layer went first"
    );
    sim.sending = 0b001;
    sim.run(LAYER_ACTIVE_TIMEOUT + Duration::from_secs(1));
    assert_eq!(sim.current(ALICE_CAM), Some(0));
    assert_eq!(sim.announced(), Vec::<u8>::new());
    // Her estimate grows past the top layer's old rate: once it has held, the allocator gives
    // her the top layer, which asks the publisher for it.
    sim.room.feedback(Feedback::Bandwidth {
        subscriber: ParticipantId(ALICE),
        bitrate_bps: 2_000_000,
    });
    sim.run(UPGRADE_HOLD + Duration::from_millis(300));
    assert_eq!(
        sim.room.info(ALICE_CAM).map(|i| i.allowed),
        Some(Allowed::UpTo(2))
    );
    assert_eq!(sim.announced(), vec![0b101]);
    assert_eq!(sim.current(ALICE_CAM), Some(0), "still on what is sent");
    // The publisher sends it again: Alice switches up at its keyframe.
    sim.sending = 0b111;
    sim.run(Duration::from_millis(1500));
    assert_eq!(sim.current(ALICE_CAM), Some(2));
}
