//! Feedback is input from the network: forged, duplicated, reordered or nonsensical reports must
//! never panic the estimator or push its estimate outside its limits.

use fanout_forward::bwe::{BweConfig, PacketReport, SendSideBwe, ARRIVAL_LIMIT_US};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn sending(t0: Instant, n: u64) -> SendSideBwe {
    let mut bwe = SendSideBwe::new(t0, BweConfig::default());
    // Probing wanted: clusters run through the packets, so that forged feedback reaches the
    // probe estimator too (a panic there once stopped a media worker).
    bwe.set_desired(10_000_000);
    let mut cluster = None;
    for i in 0..n {
        let now = t0 + Duration::from_millis(i);
        if i % 40 == 0 {
            cluster = bwe.poll_probe(now).map(|c| c.id).or(cluster);
        }
        let probe = cluster.filter(|_| i % 40 < 20);
        bwe.on_sent(now, 1200, probe);
    }
    bwe
}

fn within_limits(bwe: &SendSideBwe) -> bool {
    let c = BweConfig::default();
    let e = bwe.estimate_bps();
    e >= c.min_bps && e <= c.max_bps
}

proptest! {
    #[test]
    fn arbitrary_reports_never_panic(
        reports in proptest::collection::vec((any::<u16>(), proptest::option::of(any::<i64>())), 0..400),
        step_ms in 0u64..2_000,
    ) {
        let t0 = Instant::now();
        let mut bwe = sending(t0, 3_000);
        assert!(bwe.stats().probes_sent > 0);
        for (k, chunk) in reports.chunks(40).enumerate() {
            let now = t0 + Duration::from_millis(3_000 + step_ms * k as u64);
            bwe.on_feedback(now, chunk.iter().map(|(s, a)| PacketReport { sequence: *s, arrival_us: *a }));
            bwe.handle_timeout(now);
            let _ = bwe.poll_probe(now);
            prop_assert!(within_limits(&bwe));
        }
    }
}

#[test]
fn extreme_arrival_times_are_refused() {
    let t0 = Instant::now();
    let mut bwe = sending(t0, 100);
    let now = t0 + Duration::from_millis(200);
    bwe.on_feedback(
        now,
        (0..100u16).map(|s| PacketReport {
            sequence: s,
            arrival_us: Some(if s % 2 == 0 { i64::MAX } else { i64::MIN }),
        }),
    );
    let st = bwe.stats();
    assert_eq!(st.acked_bps, None, "nothing taken as received");
    assert!(within_limits(&bwe));
    // The same packets with sane times are still accepted afterwards.
    bwe.on_feedback(
        now,
        (0..100u16).map(|s| PacketReport {
            sequence: s,
            arrival_us: Some(ARRIVAL_LIMIT_US - 1_000_000 + i64::from(s) * 2_000),
        }),
    );
    assert!(bwe.stats().acked_bps.is_some());
}

#[test]
fn duplicate_and_unknown_reports_count_once() {
    let t0 = Instant::now();
    let mut bwe = sending(t0, 200);
    let now = t0 + Duration::from_millis(300);
    let good: Vec<PacketReport> = (0..200u16)
        .map(|s| PacketReport {
            sequence: s,
            arrival_us: Some(50_000 + i64::from(s) * 1_000),
        })
        .collect();
    bwe.on_feedback(now, good.iter().copied());
    let once = bwe.stats().acked_bps;
    // The same feedback again (a duplicated RTCP packet), and reports of packets never sent.
    bwe.on_feedback(now, good.iter().copied());
    bwe.on_feedback(
        now,
        (5_000..5_100u16).map(|s| PacketReport {
            sequence: s,
            arrival_us: Some(1),
        }),
    );
    assert_eq!(bwe.stats().acked_bps, once);
}
