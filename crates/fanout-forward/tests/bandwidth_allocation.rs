//! The stream allocator in the router: a subscriber's bandwidth estimate (`Feedback::Bandwidth`)
//! picks the simulcast layer each of its videos may have, down at once and up only after the
//! estimate has held; a video whose lowest layer does not fit is paused and announced; audio
//! always flows; a subscriber's rendered size and pause (`SetVideoConstraints`) are respected;
//! other subscribers are untouched.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

const PUBLISHER: u64 = 100;
const CAM: u64 = 1;
const MIC: u64 = 2;
/// Subscriber 200 gets an estimate; 201 never does.
const SLOW: u64 = 200;
const FREE: u64 = 201;
const SLOW_CAM: u64 = 10;
const SLOW_MIC: u64 = 11;
const FREE_CAM: u64 = 12;
/// Packets per frame on each layer: rates of about 14, 55 and 165 kb/s at 30 fps.
const PACKETS: [usize; 3] = [1, 4, 12];

struct Sim {
    room: Room,
    layers: Vec<Source>,
    mic: Source,
    frame: u64,
}

impl Sim {
    fn new() -> Sim {
        let mut room = Room::new();
        room.add_simulcast(CAM, PUBLISHER, 3);
        room.add_audio(MIC, PUBLISHER);
        let layers = (0..3)
            .map(|i| Source::video(0x100 + i).with_size(320 << i, 180 << i))
            .collect();
        room.subscribe(SLOW_CAM, CAM, SLOW);
        room.subscribe(SLOW_MIC, MIC, SLOW);
        room.subscribe(FREE_CAM, CAM, FREE);
        let mut sim = Sim {
            room,
            layers,
            mic: Source::audio(0x200),
            frame: 0,
        };
        // Two seconds of media, with keyframes at the start, so every layer's rate is known.
        sim.run(Duration::from_secs(2));
        sim
    }

    /// Frames on every layer (a keyframe on each every second, as an encoder asked for PLIs
    /// would send them) and audio every 20 ms, for `d`.
    fn run(&mut self, d: Duration) {
        let end = self.room.elapsed() + d;
        while self.room.elapsed() < end {
            let key = self.frame % 30 == 0;
            for (i, l) in self.layers.iter_mut().enumerate() {
                let p = if key {
                    l.keyframe(PACKETS[i])
                } else {
                    l.delta(PACKETS[i])
                };
                self.room.rtps(CAM, i as u8, p);
            }
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

    fn current(&self, dt: u64) -> Option<u8> {
        self.room
            .info(dt)
            .and_then(|i| i.current_layer)
            .map(|l| l.0)
    }

    fn allowed(&self, dt: u64) -> Allowed {
        self.room.info(dt).map(|i| i.allowed).unwrap_or_default()
    }
}

#[test]
fn without_an_estimate_every_subscriber_gets_the_top_layer() {
    let sim = Sim::new();
    assert_eq!(sim.current(SLOW_CAM), Some(2));
    assert_eq!(sim.current(FREE_CAM), Some(2));
    assert_eq!(sim.allowed(SLOW_CAM), Allowed::Any);
}

#[test]
fn a_low_estimate_moves_its_subscriber_down_and_no_one_else() {
    let mut sim = Sim::new();
    sim.room.take();
    // Audio (~29 kb/s) and the middle layer (~55 kb/s) fit; the top (~165 kb/s) does not.
    sim.estimate(SLOW, 110_000);
    sim.run(Duration::from_millis(1500));
    assert_eq!(sim.allowed(SLOW_CAM), Allowed::UpTo(1));
    assert_eq!(
        sim.current(SLOW_CAM),
        Some(1),
        "switched at the layer's keyframe"
    );
    assert_eq!(
        sim.current(FREE_CAM),
        Some(2),
        "the other subscriber keeps the top"
    );
    let out = sim.room.take();
    assert!(!rtp_of(&out, SLOW_MIC).is_empty(), "audio flows");
    assert!(
        events(&out).is_empty(),
        "a layer change is not a pause: {:?}",
        events(&out)
    );
}

#[test]
fn up_only_after_the_estimate_has_held() {
    let mut sim = Sim::new();
    sim.estimate(SLOW, 110_000);
    sim.run(Duration::from_millis(1500));
    assert_eq!(sim.allowed(SLOW_CAM), Allowed::UpTo(1));
    sim.estimate(SLOW, 5_000_000);
    sim.run(Duration::from_millis(1500));
    assert_eq!(sim.allowed(SLOW_CAM), Allowed::UpTo(1), "not yet: holding");
    sim.run(UPGRADE_HOLD);
    assert_eq!(sim.allowed(SLOW_CAM), Allowed::UpTo(2));
    sim.run(Duration::from_millis(1200));
    assert_eq!(sim.current(SLOW_CAM), Some(2));
}

#[test]
fn a_video_that_cannot_fit_its_lowest_layer_is_paused_and_resumed_with_events() {
    let mut sim = Sim::new();
    sim.room.take();
    // Audio alone nearly fills 35 kb/s: no video layer fits.
    sim.estimate(SLOW, 35_000);
    sim.run(Duration::from_millis(500));
    assert_eq!(
        sim.allowed(SLOW_CAM),
        Allowed::UpTo(0),
        "not paused for one short moment"
    );
    sim.run(PAUSE_AFTER);
    assert_eq!(
        sim.allowed(SLOW_CAM),
        Allowed::Paused(PauseReason::Bandwidth)
    );
    let out = sim.room.take();
    let paused: Vec<_> = events(&out)
        .into_iter()
        .filter(|e| matches!(e, Event::StreamPaused { .. }))
        .collect();
    assert_eq!(
        paused,
        vec![Event::StreamPaused {
            subscriber: ParticipantId(SLOW),
            down_track: DownTrackId(SLOW_CAM),
            publication: PublicationId(CAM),
            reason: PauseReason::Bandwidth,
        }]
    );
    sim.run(Duration::from_millis(500));
    let out = sim.room.take();
    assert!(
        rtp_of(&out, SLOW_CAM).is_empty(),
        "nothing forwarded while paused"
    );
    assert!(!rtp_of(&out, SLOW_MIC).is_empty(), "audio is never paused");
    assert!(!rtp_of(&out, FREE_CAM).is_empty());
    // Room again: resumed once it has held, announced, and forwarding restarts at a keyframe.
    sim.estimate(SLOW, 80_000);
    sim.run(UPGRADE_HOLD + Duration::from_millis(1200));
    let out = sim.room.take();
    assert!(events(&out).contains(&Event::StreamResumed {
        subscriber: ParticipantId(SLOW),
        down_track: DownTrackId(SLOW_CAM),
        publication: PublicationId(CAM),
    }));
    let resumed = rtp_of(&out, SLOW_CAM);
    assert!(!resumed.is_empty());
    assert_contiguous(&resumed);
    assert_eq!(sim.room.router.stats().bandwidth_pauses, 1);
}

#[test]
fn the_rendered_size_caps_the_layer_even_with_bandwidth() {
    let mut sim = Sim::new();
    sim.room.command(Command::SetVideoConstraints {
        down_track: DownTrackId(FREE_CAM),
        max_width: 320,
        max_height: 180,
        paused: false,
        priority: 0,
    });
    sim.run(Duration::from_millis(1200));
    assert_eq!(
        sim.current(FREE_CAM),
        Some(0),
        "the 320x180 layer covers a 320x180 tile"
    );
    sim.room.command(Command::SetVideoConstraints {
        down_track: DownTrackId(FREE_CAM),
        max_width: 400,
        max_height: 225,
        paused: false,
        priority: 0,
    });
    sim.run(Duration::from_millis(1200));
    assert_eq!(
        sim.current(FREE_CAM),
        Some(1),
        "a larger tile needs the 640x360 layer"
    );
}

#[test]
fn a_client_pause_stops_forwarding_without_an_event() {
    let mut sim = Sim::new();
    sim.room.take();
    sim.room.command(Command::SetVideoConstraints {
        down_track: DownTrackId(FREE_CAM),
        max_width: 0,
        max_height: 0,
        paused: true,
        priority: 0,
    });
    sim.run(Duration::from_millis(500));
    let out = sim.room.take();
    assert!(rtp_of(&out, FREE_CAM).is_empty());
    assert!(events(&out).is_empty());
    assert!(!rtp_of(&out, SLOW_CAM).is_empty());
    sim.room.command(Command::SetVideoConstraints {
        down_track: DownTrackId(FREE_CAM),
        max_width: 0,
        max_height: 0,
        paused: false,
        priority: 0,
    });
    sim.run(Duration::from_millis(1200));
    assert_eq!(sim.current(FREE_CAM), Some(2));
}

#[test]
fn what_a_subscriber_would_want_is_reported_for_probing() {
    let mut sim = Sim::new();
    sim.room.take();
    sim.estimate(SLOW, 110_000);
    sim.run(Duration::from_millis(300));
    let out = sim.room.take();
    let wanted: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::BandwidthWanted {
                subscriber,
                bitrate_bps,
            } if *subscriber == ParticipantId(SLOW) => Some(*bitrate_bps),
            _ => None,
        })
        .collect();
    assert_eq!(wanted.len(), 1, "reported once, not every tick: {wanted:?}");
    // The top layer (~165 kb/s) and the audio (~29 kb/s).
    assert!((170_000..230_000).contains(&wanted[0]), "{wanted:?}");
}
