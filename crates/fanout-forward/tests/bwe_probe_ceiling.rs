//! A saturated probe measures the path's capacity: an application-limited sender's estimate (a
//! simulcast layer below the link, more wanted) does not creep past it untested. Seen with
//! Chromium behind a 600 kbit/s tbf: the estimate grew to 1.5x what was acknowledged (685 kb/s),
//! the 360p layer kept it, and a queue of 180 ms froze the picture.

use fanout_forward::bwe::{BweConfig, PacketReport, ProbeId, SendSideBwe};
use std::time::{Duration, Instant};

const LINK_BPS: f64 = 600_000.0;
const SEND_BPS: f64 = 450_000.0;
const SIZE: usize = 1000;

/// A shaper's bucket (33 ms of the rate): it lets the start of a probe through at line rate, so
/// the queue a probe builds stays small and the delay detector may not see it, as with the tbf
/// of the Chromium test. (With a bucket of 4 kB or more a 10 kB cluster at twice the estimate
/// passes whole and measures more than the link: see docs/performance.md.)
const BURST_BYTES: f64 = 2500.0;

#[derive(Clone, Copy)]
struct Cluster {
    id: ProbeId,
    bps: f64,
    start: f64,
    sent: u32,
    min_bytes: u32,
}

/// Drives one connection for `secs`: media at 450 kb/s, probe clusters as asked, all through a
/// token-bucket bottleneck with a 1 ms path, feedback every 50 ms. Returns (time, estimate)
/// samples.
fn run(secs: u64, capacity_after: impl Fn(f64) -> f64) -> (Vec<(f64, u64)>, SendSideBwe) {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(t0, BweConfig::default());
    bwe.set_desired(900_000);
    // The bucket: the last departure (s) and the tokens (bytes) left at it.
    let mut bucket = (0.0f64, BURST_BYTES);
    let mut pending: Vec<PacketReport> = Vec::new();
    let mut next_media = 0.0f64;
    let mut next_feedback = 0.05f64;
    let mut probe: Option<Cluster> = None;
    let mut samples = Vec::new();
    let tick = 0.0005;
    let mut t = 0.0f64;
    while t < secs as f64 {
        let now = t0 + Duration::from_secs_f64(t);
        let mut send = |bwe: &mut SendSideBwe, probe_id, bucket: &mut (f64, f64)| {
            let seq = bwe.on_sent(now, SIZE, probe_id);
            let rate = capacity_after(t) / 8.0;
            let (last, tokens) = *bucket;
            let mut depart = last.max(t);
            let mut tokens = (tokens + (depart - last) * rate).min(BURST_BYTES);
            if tokens < SIZE as f64 {
                depart += (SIZE as f64 - tokens) / rate;
                tokens = SIZE as f64;
            }
            *bucket = (depart, tokens - SIZE as f64);
            pending.push(PacketReport {
                sequence: seq,
                arrival_us: Some(((depart + 0.001) * 1e6) as i64),
            });
        };
        // As the transport does: every packet sent while a cluster runs belongs to it, and
        // padding tops the cluster up to its rate.
        if t >= next_media {
            next_media += SIZE as f64 * 8.0 / SEND_BPS;
            send(&mut bwe, probe.map(|p| p.id), &mut bucket);
            if let Some(p) = probe.as_mut() {
                p.sent += SIZE as u32;
            }
        }
        if probe.is_none() {
            if let Some(c) = bwe.poll_probe(now) {
                probe = Some(Cluster {
                    id: c.id,
                    bps: c.bitrate_bps as f64,
                    start: t,
                    sent: 0,
                    min_bytes: c.min_bytes,
                });
            }
        }
        if let Some(p) = probe.as_mut() {
            let due = (t - p.start + tick) * p.bps / 8.0;
            if f64::from(p.sent) + SIZE as f64 <= due {
                p.sent += SIZE as u32;
                send(&mut bwe, Some(p.id), &mut bucket);
            }
            if p.sent >= p.min_bytes {
                probe = None;
            }
        }
        if t >= next_feedback {
            next_feedback += 0.05;
            let arrived: Vec<PacketReport> = pending
                .iter()
                .copied()
                .filter(|r| r.arrival_us.is_some_and(|a| a as f64 <= t * 1e6))
                .collect();
            pending.retain(|r| r.arrival_us.is_some_and(|a| a as f64 > t * 1e6));
            bwe.on_feedback(now, arrived);
            samples.push((t, bwe.estimate_bps()));
        }
        t += tick;
    }
    (samples, bwe)
}

#[test]
fn an_application_limited_estimate_stays_under_a_probed_capacity() {
    let (samples, bwe) = run(30, |_| LINK_BPS);
    let high = samples
        .iter()
        .filter(|(t, _)| *t >= 5.0)
        .map(|(_, e)| *e)
        .max()
        .unwrap_or(0);
    let st = bwe.stats();
    println!(
        "450 kb/s sent on 600 kb/s, 900 kb/s wanted: highest estimate {} kb/s, ceiling {:?}, probes {}",
        high / 1000,
        st.probe_ceiling_bps,
        st.probe_results
    );
    assert!(st.probe_results >= 3, "probed: {st:?}");
    assert!(high as f64 <= 1.05 * LINK_BPS, "{high}: {samples:?}");
}

#[test]
fn a_probe_that_gets_through_lifts_the_ceiling() {
    let (samples, bwe) = run(40, |t| if t < 20.0 { LINK_BPS } else { 3_000_000.0 });
    let reached = samples
        .iter()
        .find(|(t, e)| *t >= 20.0 && *e >= 900_000)
        .map(|(t, _)| t - 20.0);
    println!("capacity back to 3 Mb/s: estimate at 900 kb/s after {reached:?} s");
    assert!(matches!(reached, Some(r) if r <= 5.0), "{samples:?}");
    assert_eq!(bwe.stats().probe_ceiling_bps, None);
}
