//! RTCP: receiver reports every second per publication layer that received packets (RFC 3550 loss,
//! extended highest sequence number, interarrival jitter), and publishers' sender reports rebuilt
//! per down-track in its own timestamp space with its own counts.

mod common;

use common::*;
use fanout_forward::*;
use std::time::Duration;

#[test]
fn receiver_report_every_second_with_loss_and_extended_sequence() {
    let mut room = Room::new();
    room.add_video(1, 100);
    let mut src = Source::video(1);
    src.seq = 65_500;
    let mut sent = 0;
    for i in 0..100u16 {
        let p = src.delta(1);
        if i % 10 != 5 {
            room.rtps(1, 0, p);
            sent += 1;
        }
        room.advance(Duration::from_millis(9));
    }
    assert_eq!(sent, 90);
    room.advance(Duration::from_millis(100));
    let rr = receiver_reports(&room.take());
    assert_eq!(rr.len(), 1, "{rr:?}");
    let (publication, layer, fraction, total, highest, _) = rr[0];
    assert_eq!((publication, layer), (1, 0));
    assert_eq!(fraction, (10 * 256 / 100) as u8);
    assert_eq!(total, 10);
    // 65500 + 99 crossed the wrap once: cycles 1, sequence 63.
    assert_eq!(highest, (1 << 16) | 63);

    // A second without packets: no report.
    room.advance(Duration::from_secs(1));
    assert!(receiver_reports(&room.take()).is_empty());

    // A clean second: fraction 0, cumulative loss unchanged.
    for _ in 0..50 {
        room.rtps(1, 0, src.delta(1));
        room.advance(Duration::from_millis(10));
    }
    room.advance(Duration::from_millis(600));
    let rr = receiver_reports(&room.take());
    assert_eq!(rr.len(), 1);
    assert_eq!(rr[0].2, 0);
    assert_eq!(rr[0].3, 10);
    assert_eq!(rr[0].4, (1 << 16) | 113);
}

#[test]
fn receiver_report_is_addressed_to_the_publisher() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    let mut src = Source::audio(1);
    room.rtp(1, 0, src.audio_packet(None));
    room.advance(Duration::from_secs(1));
    let out = room.take();
    assert!(out.iter().any(|o| matches!(o,
        Output::ReceiverReport { publisher, publication, layer, .. }
            if publisher.0 == 100 && publication.0 == 1 && layer.0 == 0)));
}

#[test]
fn only_layers_that_received_packets_are_reported() {
    let mut room = Room::new();
    room.add_simulcast(1, 100, 3);
    let mut l0 = Source::video(1);
    let mut l1 = Source::video(2);
    room.rtps(1, 0, l0.keyframe(1));
    room.rtps(1, 1, l1.keyframe(1));
    room.advance(Duration::from_secs(1));
    let mut layers: Vec<u8> = receiver_reports(&room.take()).iter().map(|r| r.1).collect();
    layers.sort_unstable();
    assert_eq!(layers, vec![0, 1]);
}

#[test]
fn jitter_is_zero_for_perfect_pacing() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    let mut src = Source::audio(1);
    for _ in 0..49 {
        room.rtp(1, 0, src.audio_packet(None));
        room.advance(Duration::from_millis(20));
    }
    room.advance(Duration::from_millis(100));
    let rr = receiver_reports(&room.take());
    assert_eq!(rr.len(), 1);
    assert_eq!(rr[0].5, 0);
}

#[test]
fn jitter_follows_rfc3550() {
    let mut room = Room::new();
    room.add_audio(1, 100);
    let mut src = Source::audio(1);
    // Packets every 20 ms of media, arriving alternately on time and 7 ms late.
    let mut expected = 0f64;
    let mut prev_transit: Option<i64> = None;
    let base = room.now;
    for i in 0..45u64 {
        let arrival = Duration::from_millis(i * 20 + if i % 2 == 1 { 7 } else { 0 });
        let target = base + arrival;
        room.advance(target - room.now);
        let p = src.audio_packet(None);
        // Transit in 48 kHz units relative to the first arrival.
        let transit = (arrival.as_millis() as i64) * 48 - i64::from(p.timestamp);
        if let Some(prev) = prev_transit {
            let d = (transit - prev).abs() as f64;
            expected += (d - expected) / 16.0;
        }
        prev_transit = Some(transit);
        room.rtp(1, 0, p);
    }
    room.advance(Duration::from_secs(1));
    let rr = receiver_reports(&room.take());
    let jitter = rr.last().map(|r| r.5).unwrap_or_default();
    assert!(expected > 200.0, "{expected}");
    assert!(
        (f64::from(jitter) - expected).abs() <= 1.0,
        "{jitter} vs {expected}"
    );
}

#[test]
fn sender_report_is_translated_per_down_track() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    room.subscribe(2, 1, 201);
    let mut src = Source::video(1);
    let key = src.keyframe(3);
    room.rtps(1, 0, key.clone());
    room.rtps(1, 0, src.delta(2));
    let out = room.take();
    let ntp = 0xdead_beef_0000_1234u64;
    let publisher_rtp = key[0].timestamp.wrapping_add(4500);
    room.feedback(Feedback::SenderReport {
        publication: PublicationId(1),
        layer: Layer(0),
        ntp_time: ntp,
        rtp_time: publisher_rtp,
    });
    let srs = room.take();
    assert_eq!(srs.len(), 2);
    for dt in [1u64, 2] {
        let forwarded = rtp_of(&out, dt);
        let octets: usize = forwarded.iter().map(|p| p.payload.len()).sum();
        let sr = srs
            .iter()
            .find(|o| matches!(o, Output::SenderReport { down_track, .. } if down_track.0 == dt))
            .expect("sender report");
        match sr {
            Output::SenderReport {
                subscriber,
                ssrc,
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
                ..
            } => {
                assert_eq!(subscriber.0, 199 + dt);
                assert_eq!(*ssrc, dt_ssrc(dt));
                assert_eq!(*ntp_time, ntp);
                // Same offset as the packets: the keyframe's rewritten timestamp + 4500.
                assert_eq!(*rtp_time, forwarded[0].timestamp.wrapping_add(4500));
                assert_eq!(*packet_count, 5);
                assert_eq!(*octet_count as usize, octets);
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn sender_report_follows_the_layer_switch() {
    let mut room = Room::new();
    room.add_simulcast(1, 100, 2);
    let mut l0 = Source::video(1);
    let mut l1 = Source::video(2);
    room.rtps(1, 0, l0.keyframe(1));
    room.rtps(1, 1, l1.keyframe(1));
    room.subscribe_with(1, 1, 200, LayerPreference::Low);
    let sr = |layer: u8, rtp_time: u32| Feedback::SenderReport {
        publication: PublicationId(1),
        layer: Layer(layer),
        ntp_time: 1,
        rtp_time,
    };
    // Waiting for its first keyframe: no sender report yet.
    room.feedback(sr(0, 0));
    room.take();
    let k0 = l0.keyframe(1);
    room.rtps(1, 0, k0.clone());
    let first = rtp_of(&room.take(), 1);
    room.feedback(sr(1, 0));
    assert!(room.take().is_empty(), "not forwarding layer 1");
    room.feedback(sr(0, k0[0].timestamp));
    let out = room.take();
    assert!(
        matches!(out.as_slice(), [Output::SenderReport { rtp_time, .. }] if *rtp_time == first[0].timestamp)
    );

    room.set_layer(1, LayerPreference::High);
    room.advance(Duration::from_millis(50));
    let k1 = l1.keyframe(1);
    room.rtps(1, 1, k1.clone());
    let second = rtp_of(&room.take(), 1);
    room.feedback(sr(0, k0[0].timestamp));
    assert!(room.take().is_empty(), "no longer on layer 0");
    room.feedback(sr(1, k1[0].timestamp.wrapping_add(90)));
    let out = room.take();
    assert!(matches!(out.as_slice(),
        [Output::SenderReport { rtp_time, packet_count: 2, .. }] if *rtp_time == second[0].timestamp.wrapping_add(90)));
}

#[test]
fn sender_report_for_unknown_publication_or_layer_is_counted() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.feedback(Feedback::SenderReport {
        publication: PublicationId(9),
        layer: Layer(0),
        ntp_time: 0,
        rtp_time: 0,
    });
    room.feedback(Feedback::SenderReport {
        publication: PublicationId(1),
        layer: Layer(5),
        ntp_time: 0,
        rtp_time: 0,
    });
    assert!(room.take().is_empty());
    assert_eq!(room.router.stats().unknown_ids, 2);
}

#[test]
fn subscriber_receiver_report_is_accepted() {
    let mut room = Room::new();
    room.add_video(1, 100);
    room.subscribe(1, 1, 200);
    room.feedback(Feedback::ReceiverReport {
        down_track: DownTrackId(1),
        fraction_lost: 3,
        jitter: 10,
    });
    room.feedback(Feedback::ReceiverReport {
        down_track: DownTrackId(2),
        fraction_lost: 3,
        jitter: 10,
    });
    assert_eq!(room.router.stats().unknown_ids, 1);
    assert_eq!(room.info(1).and_then(|i| i.receiver_report), Some((3, 10)));
}
