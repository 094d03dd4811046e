//! Robustness: random sequences of commands, RTP packets (garbage and near-valid payloads, absurd
//! sequence jumps, wrapping timestamps, changing SSRCs, unknown ids and layers), feedback and time
//! (including time going backwards) never panic, and every output refers to things that exist.

mod common;

use bytes::Bytes;
use common::*;
use fanout_forward::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    AddPublication {
        id: u64,
        publisher: u64,
        kind: MediaKind,
        codec: Codec,
        layers: u8,
        limits: StreamLimits,
    },
    RemovePublication(u64),
    AddDownTrack {
        id: u64,
        publication: u64,
        subscriber: u64,
        ssrc: u32,
        pt: u8,
        high: bool,
    },
    RemoveDownTrack(u64),
    SetLayer(u64, bool),
    Rtp {
        publication: u64,
        layer: u8,
        packet: RtpPacket,
        back_ms: Option<u64>,
    },
    /// Well-formed traffic: `n` frames from the test's own source for that publication layer.
    Stream {
        publication: u64,
        layer: u8,
        frames: u8,
        keyframe: bool,
        codec: Codec,
    },
    Nack(u64, Vec<u16>),
    /// NACK the last `k` sequence numbers the down-track was sent.
    NackSeen(u64, usize),
    Pli(u64),
    ReceiverReport(u64, u8, u32),
    SenderReport(u64, u8, u64, u32),
    Advance(u64),
    RawTimeout(u64),
    /// A subscriber's bandwidth estimate.
    Bandwidth(u64, u64),
    /// A subscriber's constraints on a down-track: (max width, max height, paused, priority).
    Constraints(u64, u32, u32, bool, u8),
}

fn kind() -> impl Strategy<Value = MediaKind> {
    prop::sample::select(vec![
        MediaKind::Audio,
        MediaKind::Video,
        MediaKind::SubVideo,
    ])
}

fn codec() -> impl Strategy<Value = Codec> {
    prop::sample::select(vec![Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264])
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    let garbage = prop::collection::vec(any::<u8>(), 0..80);
    let vp8 = (any::<u16>(), any::<u16>()).prop_map(|(w, h)| vp8_keyframe(w, h));
    let vp9 = (any::<u16>(), any::<u16>()).prop_map(|(w, h)| vp9_keyframe(w, h));
    let sps = prop::collection::vec(any::<u8>(), 0..20).prop_map(|tail| {
        let mut sps = SPS_1280X720[..4].to_vec();
        sps.extend_from_slice(&tail);
        h264_stap_a(&sps)
    });
    let stap_sizes = prop::collection::vec(any::<u8>(), 0..30).prop_map(|mut v| {
        v.insert(0, 0x78);
        v
    });
    let fu = prop::collection::vec(any::<u8>(), 0..6).prop_map(|mut v| {
        v.insert(0, 0x7c);
        v
    });
    let mutated = (
        prop::sample::select(vec![
            vp8_keyframe(640, 360),
            vp9_keyframe(640, 360),
            h264_stap_a(&SPS_1280X720),
            vp8_delta(),
        ]),
        any::<usize>(),
        any::<u8>(),
        any::<usize>(),
    )
        .prop_map(|(mut p, at, b, cut)| {
            let i = at % p.len();
            p[i] ^= b;
            p.truncate(cut % (p.len() + 1));
            p
        });
    prop_oneof![garbage, vp8, vp9, sps, stap_sizes, fu, mutated]
}

fn packet() -> impl Strategy<Value = RtpPacket> {
    (
        any::<u8>(),
        prop_oneof![any::<u16>(), 0u16..40, 65500u16..=65535],
        prop_oneof![any::<u32>(), (u32::MAX - 10_000)..=u32::MAX],
        prop::sample::select(vec![1u32, 2, 3, 0xffff_ffff]),
        any::<bool>(),
        prop::option::of(any::<u8>()),
        payload(),
    )
        .prop_map(
            |(payload_type, sequence, timestamp, ssrc, marker, audio_level, payload)| RtpPacket {
                payload_type,
                sequence,
                timestamp,
                ssrc,
                marker,
                audio_level,
                payload: Bytes::from(payload),
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u64..4, 0u64..4, kind(), codec(), 0u8..6, (0u32..3000, 0u32..2000, 0u32..2000)).prop_map(
            |(id, publisher, kind, codec, layers, (k, w, h))| Op::AddPublication {
                id,
                publisher,
                kind,
                codec,
                layers,
                limits: StreamLimits { max_kbps: k, max_width: w, max_height: h },
            }
        ),
        1 => (0u64..5).prop_map(Op::RemovePublication),
        3 => (0u64..8, 0u64..5, 0u64..4, any::<u32>(), any::<u8>(), any::<bool>()).prop_map(
            |(id, publication, subscriber, ssrc, pt, high)| Op::AddDownTrack {
                id, publication, subscriber, ssrc, pt, high
            }
        ),
        1 => (0u64..9).prop_map(Op::RemoveDownTrack),
        1 => (0u64..9, any::<bool>()).prop_map(|(d, h)| Op::SetLayer(d, h)),
        12 => (0u64..5, prop_oneof![0u8..3, any::<u8>()], packet(), prop::option::of(0u64..5000))
            .prop_map(|(publication, layer, packet, back_ms)| Op::Rtp { publication, layer, packet, back_ms }),
        8 => (0u64..5, 0u8..3, 1u8..5, any::<bool>(), codec()).prop_map(
            |(publication, layer, frames, keyframe, codec)| Op::Stream { publication, layer, frames, keyframe, codec }
        ),
        2 => (0u64..9, prop::collection::vec(any::<u16>(), 0..20)).prop_map(|(d, s)| Op::Nack(d, s)),
        2 => (0u64..9, 1usize..10).prop_map(|(d, k)| Op::NackSeen(d, k)),
        2 => (0u64..9).prop_map(Op::Pli),
        1 => (0u64..9, any::<u8>(), any::<u32>()).prop_map(|(d, f, j)| Op::ReceiverReport(d, f, j)),
        1 => (0u64..5, 0u8..4, any::<u64>(), any::<u32>()).prop_map(|(p, l, n, r)| Op::SenderReport(p, l, n, r)),
        3 => (0u64..1500).prop_map(Op::Advance),
        1 => (0u64..100_000).prop_map(Op::RawTimeout),
        2 => (0u64..5, prop_oneof![0u64..3_000_000, any::<u64>()]).prop_map(|(s, b)| Op::Bandwidth(s, b)),
        1 => (0u64..9, any::<u32>(), any::<u32>(), any::<bool>(), any::<u8>())
            .prop_map(|(d, w, h, p, r)| Op::Constraints(d, w, h, p, r)),
    ]
}

/// What the test believes exists (publication -> publisher), its sources and what it saw.
#[derive(Default)]
struct Model {
    publications: HashMap<u64, u64>,
    sources: HashMap<(u64, u8), Source>,
    seen: HashMap<u64, Vec<u16>>,
    rtp_inputs: u64,
}

fn apply(room: &mut Room, model: &mut Model, op: Op) {
    match op {
        Op::AddPublication {
            id,
            publisher,
            kind,
            codec,
            layers,
            limits,
        } => {
            model.publications.entry(id).or_insert(publisher);
            room.add_publication(id, publisher, kind, codec, layers, limits);
        }
        Op::RemovePublication(id) => {
            model.publications.remove(&id);
            room.command(Command::RemovePublication {
                id: PublicationId(id),
            });
        }
        Op::AddDownTrack {
            id,
            publication,
            subscriber,
            ssrc,
            pt,
            high,
        } => room.command(Command::AddDownTrack {
            id: DownTrackId(id),
            publication: PublicationId(publication),
            subscriber: ParticipantId(subscriber),
            ssrc,
            payload_type: pt,
            layer: if high {
                LayerPreference::High
            } else {
                LayerPreference::Low
            },
        }),
        Op::RemoveDownTrack(id) => room.command(Command::RemoveDownTrack {
            id: DownTrackId(id),
        }),
        Op::SetLayer(id, high) => room.set_layer(
            id,
            if high {
                LayerPreference::High
            } else {
                LayerPreference::Low
            },
        ),
        Op::Rtp {
            publication,
            layer,
            packet,
            back_ms,
        } => {
            // Sometimes stamped in the past (clocks are not always monotonic across threads).
            let now = match back_ms {
                Some(ms) => room
                    .now
                    .checked_sub(Duration::from_millis(ms))
                    .unwrap_or(room.now)
                    .max(room.start),
                None => room.now,
            };
            model.rtp_inputs += 1;
            room.input(Input::Rtp {
                now,
                publication: PublicationId(publication),
                layer: Layer(layer),
                packet,
            });
        }
        Op::Stream {
            publication,
            layer,
            frames,
            keyframe,
            codec,
        } => {
            let src = model
                .sources
                .entry((publication, layer))
                .or_insert_with(|| {
                    Source::video(0x100 + publication as u32 * 4 + u32::from(layer))
                        .with_codec(codec)
                });
            for f in 0..frames {
                let packets = if keyframe && f == 0 {
                    src.keyframe(3)
                } else {
                    src.delta(2)
                };
                model.rtp_inputs += packets.len() as u64;
                room.rtps(publication, layer, packets);
                room.advance(Duration::from_millis(30));
            }
        }
        Op::Nack(dt, seqs) => room.nack(dt, seqs),
        Op::NackSeen(dt, k) => {
            let seen = model.seen.get(&dt).cloned().unwrap_or_default();
            let from = seen.len().saturating_sub(k);
            room.nack(dt, seen[from..].to_vec());
        }
        Op::Pli(dt) => room.pli(dt),
        Op::ReceiverReport(dt, fraction_lost, jitter) => room.feedback(Feedback::ReceiverReport {
            down_track: DownTrackId(dt),
            fraction_lost,
            jitter,
        }),
        Op::SenderReport(p, l, ntp_time, rtp_time) => room.feedback(Feedback::SenderReport {
            publication: PublicationId(p),
            layer: Layer(l),
            ntp_time,
            rtp_time,
        }),
        Op::Advance(ms) => room.advance(Duration::from_millis(ms)),
        Op::Bandwidth(subscriber, bitrate_bps) => room.feedback(Feedback::Bandwidth {
            subscriber: ParticipantId(subscriber),
            bitrate_bps,
        }),
        Op::Constraints(dt, max_width, max_height, paused, priority) => {
            room.command(Command::SetVideoConstraints {
                down_track: DownTrackId(dt),
                max_width,
                max_height,
                paused,
                priority,
            })
        }
        Op::RawTimeout(ms) => {
            // A timeout at an arbitrary moment, possibly before the last one.
            let at = room.start + Duration::from_millis(ms);
            room.input(Input::Timeout(at));
        }
    }
}

fn check(room: &Room, model: &Model, outputs: &[Output]) -> Result<(), TestCaseError> {
    for o in outputs {
        match o {
            Output::Rtp {
                subscriber,
                down_track,
                packet,
                ..
            } => {
                let info = room.router.down_track(*down_track);
                prop_assert!(
                    info.is_some(),
                    "RTP for a missing down-track {:?}",
                    down_track
                );
                let info = info.expect("checked");
                prop_assert_eq!(info.subscriber, *subscriber);
                prop_assert_eq!(info.ssrc, packet.ssrc);
                prop_assert_eq!(info.payload_type, packet.payload_type);
                let publisher = model.publications.get(&info.publication.0).copied();
                prop_assert!(publisher.is_some());
                prop_assert_ne!(
                    publisher,
                    Some(subscriber.0),
                    "publisher got its own stream"
                );
            }
            Output::SenderReport {
                subscriber,
                down_track,
                ssrc,
                ..
            } => {
                let info = room.router.down_track(*down_track);
                prop_assert!(info.is_some());
                let info = info.expect("checked");
                prop_assert_eq!(info.subscriber, *subscriber);
                prop_assert_eq!(info.ssrc, *ssrc);
            }
            Output::KeyframeRequest {
                publisher,
                publication,
                ..
            }
            | Output::Nack {
                publisher,
                publication,
                ..
            }
            | Output::ReceiverReport {
                publisher,
                publication,
                ..
            } => {
                prop_assert_eq!(model.publications.get(&publication.0), Some(&publisher.0));
            }
            Output::Remb { publisher, .. } => {
                prop_assert!(model.publications.values().any(|p| *p == publisher.0));
            }
            Output::Event(Event::LimitExceeded {
                publication,
                publisher,
                ..
            }) => {
                prop_assert_eq!(model.publications.get(&publication.0), Some(&publisher.0));
            }
            Output::Event(Event::ActiveSpeakers { .. }) => {}
            Output::Event(
                Event::StreamPaused {
                    subscriber,
                    down_track,
                    publication,
                    ..
                }
                | Event::StreamResumed {
                    subscriber,
                    down_track,
                    publication,
                },
            ) => {
                let info = room.router.down_track(*down_track);
                prop_assert!(info.is_some(), "an event for a missing down-track");
                let info = info.expect("checked");
                prop_assert_eq!(info.subscriber, *subscriber);
                prop_assert_eq!(info.publication, *publication);
            }
            Output::Event(Event::LayersNeeded { layers, .. }) => {
                prop_assert!(*layers & 1 == 1, "the lowest layer is always needed");
                prop_assert!(*layers < 8, "at most three layers");
            }
            Output::BandwidthWanted { .. } => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_never_panic_and_outputs_are_consistent(ops in prop::collection::vec(op(), 1..250)) {
        let mut room = Room::new();
        let mut model = Model::default();
        for op in ops {
            apply(&mut room, &mut model, op);
            let outputs = room.take();
            check(&room, &model, &outputs)?;
            for (dt, p) in all_rtp(&outputs) {
                model.seen.entry(dt).or_default().push(p.sequence);
            }
        }
        let s = room.router.stats();
        prop_assert_eq!(s.rtp_in, model.rtp_inputs);
        // Each packet is dropped for at most one reason.
        prop_assert!(
            s.dropped_duplicate + s.dropped_out_of_window + s.dropped_unknown + s.dropped_limit
                <= s.rtp_in
        );
        prop_assert!(s.nacks_served + s.nack_misses == s.nacks_received);
    }

    #[test]
    fn one_stream_with_random_sequence_numbers(
        seqs in prop::collection::vec(any::<u16>(), 1..400),
        codec in codec(),
    ) {
        let mut room = Room::new();
        room.add_publication(1, 1, MediaKind::Video, codec, 1, StreamLimits::default());
        room.subscribe(1, 1, 2);
        let mut src = Source::video(9).with_codec(codec);
        let key = src.keyframe(1);
        room.rtps(1, 0, key.clone());
        for (i, s) in seqs.into_iter().enumerate() {
            let mut p = key[0].clone();
            p.sequence = s;
            p.timestamp = (i as u32).wrapping_mul(0x1234_5678);
            room.rtp(1, 0, p);
            if i % 50 == 0 {
                room.advance(Duration::from_millis(120));
            }
        }
        let out = room.take();
        let model = Model { publications: HashMap::from([(1, 1)]), ..Model::default() };
        check(&room, &model, &out)?;
        // Whatever came in, the subscriber never sees the same sequence number twice in a row.
        let got = rtp_of(&out, 1);
        for w in got.windows(2) {
            prop_assert_ne!(w[0].sequence, w[1].sequence);
        }
    }
}

#[test]
fn empty_payloads_everywhere() {
    let mut room = Room::new();
    for (i, codec) in [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264]
        .into_iter()
        .enumerate()
    {
        let id = i as u64 + 1;
        room.add_publication(
            id,
            1,
            MediaKind::Video,
            codec,
            3,
            StreamLimits {
                max_kbps: 1,
                max_width: 1,
                max_height: 1,
            },
        );
        room.subscribe(id * 10, id, 2);
        let mut src = Source::video(id as u32);
        for layer in 0..3 {
            room.rtp(id, layer, src.packet(Bytes::new(), true));
        }
    }
    room.advance(Duration::from_secs(10));
    room.take();
}
