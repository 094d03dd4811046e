//! Probing: short clusters of packets (padding or retransmissions) sent faster than the estimate,
//! whose arrival rate tells whether the path has room for more. The [`ProbeController`] decides
//! when and how fast (quickly at the start, then only while the allocator wants more than the
//! estimate); the [`ProbeEstimator`] turns a cluster's feedback into a measured rate.

use std::time::{Duration, Instant};

/// A probe cluster's id, carried by every packet sent for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeId(pub u32);

/// A burst the transport should send now, at `bitrate_bps`, of at least `min_packets` packets
/// and `min_bytes` bytes, each recorded with the cluster's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    pub id: ProbeId,
    pub bitrate_bps: u64,
    pub min_packets: u32,
    pub min_bytes: u32,
}

/// How long a cluster lasts at its rate. Long enough to outlast a shaper's token-bucket burst
/// (tens of milliseconds of its rate), which would let a shorter cluster through at line rate.
pub const PROBE_DURATION: Duration = Duration::from_millis(50);
const MIN_PACKETS: u32 = 5;
/// At low rates a cluster still carries this much: fewer bytes measure only jitter, or pass
/// within a shaper's token-bucket burst (a few kB) at line rate.
const MIN_CLUSTER_BYTES: f64 = 10_000.0;
/// A cluster gives a result once this share of its packets and bytes arrived.
const ENOUGH: f64 = 0.8;
/// A received rate under this share of the sent rate means the probe filled the path.
const SATURATED: f64 = 0.9;
const SATURATED_BACKOFF: f64 = 0.95;
/// Results of clusters with longer send or arrival spans are not trusted.
const MAX_SPAN_US: i64 = 1_000_000;
const CLUSTERS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Cluster {
    id: ProbeId,
    /// The rate it was meant to go at.
    target_bps: f64,
    min_packets: u32,
    min_bytes: u32,
    /// Packets sent from here on (µs, the sender's clock) are the cluster's later half.
    late_from_us: i64,
    late_first_arrival_us: i64,
    late_first_size: u32,
    late_last_arrival_us: i64,
    late_bytes: u64,
    late_packets: u32,
    first_send_us: i64,
    last_send_us: i64,
    last_send_size: u32,
    first_arrival_us: i64,
    first_arrival_size: u32,
    last_arrival_us: i64,
    bytes: u64,
    packets: u32,
    done: bool,
}

/// What a cluster measured: the rate the path carried it at (b/s), and whether that was less than
/// it was sent at: a saturated probe measured the path's capacity, not only a lower bound of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measured {
    pub bps: f64,
    pub saturated: bool,
}

/// Measures clusters from their packets' feedback.
#[derive(Debug, Default)]
pub(crate) struct ProbeEstimator {
    clusters: [Option<Cluster>; CLUSTERS],
}

impl ProbeEstimator {
    /// A cluster starts being sent at `now_us` (the sender's clock).
    pub fn start(&mut self, c: &ProbeCluster, now_us: i64) {
        let planned_us = (f64::from(c.min_bytes) * 8e6 / c.bitrate_bps.max(1) as f64) as i64;
        self.clusters[c.id.0 as usize % CLUSTERS] = Some(Cluster {
            id: c.id,
            target_bps: c.bitrate_bps as f64,
            min_packets: c.min_packets,
            min_bytes: c.min_bytes,
            late_from_us: now_us + planned_us / 2,
            late_first_arrival_us: i64::MAX,
            late_first_size: 0,
            late_last_arrival_us: i64::MIN,
            late_bytes: 0,
            late_packets: 0,
            first_send_us: i64::MAX,
            last_send_us: i64::MIN,
            last_send_size: 0,
            first_arrival_us: i64::MAX,
            first_arrival_size: 0,
            last_arrival_us: i64::MIN,
            bytes: 0,
            packets: 0,
            done: false,
        });
    }

    /// One received packet of a cluster. Returns the cluster's measured rate (b/s) once enough of
    /// it arrived (once per cluster).
    pub fn on_packet(
        &mut self,
        id: ProbeId,
        send_us: i64,
        arrival_us: i64,
        size: u32,
    ) -> Option<Measured> {
        let c = self.clusters[id.0 as usize % CLUSTERS]
            .as_mut()
            .filter(|c| c.id == id && !c.done)?;
        c.packets += 1;
        c.bytes += u64::from(size);
        if send_us < c.first_send_us {
            c.first_send_us = send_us;
        }
        if send_us >= c.last_send_us {
            c.last_send_us = send_us;
            c.last_send_size = size;
        }
        if arrival_us < c.first_arrival_us {
            c.first_arrival_us = arrival_us;
            c.first_arrival_size = size;
        }
        c.last_arrival_us = c.last_arrival_us.max(arrival_us);
        if send_us >= c.late_from_us {
            c.late_packets += 1;
            c.late_bytes += u64::from(size);
            if arrival_us < c.late_first_arrival_us {
                c.late_first_arrival_us = arrival_us;
                c.late_first_size = size;
            }
            c.late_last_arrival_us = c.late_last_arrival_us.max(arrival_us);
        }
        if f64::from(c.packets) < ENOUGH * f64::from(c.min_packets)
            || (c.bytes as f64) < ENOUGH * f64::from(c.min_bytes)
        {
            return None;
        }
        c.done = true;
        let send_span = c.last_send_us.saturating_sub(c.first_send_us);
        let arrival_span = c.last_arrival_us.saturating_sub(c.first_arrival_us);
        if send_span <= 0
            || arrival_span <= 0
            || send_span > MAX_SPAN_US
            || arrival_span > MAX_SPAN_US
        {
            return None;
        }
        // The last packet sent ends the send span; the first received starts the arrival span.
        let send_bps =
            c.bytes.saturating_sub(u64::from(c.last_send_size)) as f64 * 8e6 / send_span as f64;
        let mut recv_bps = c.bytes.saturating_sub(u64::from(c.first_arrival_size)) as f64 * 8e6
            / arrival_span as f64;
        // A shaper's bucket lets the start of a cluster through at line rate; the later half
        // arrives at the rate the path sustains.
        if c.late_packets >= 2 {
            let late_span = c
                .late_last_arrival_us
                .saturating_sub(c.late_first_arrival_us);
            if late_span > 0 {
                let late = c.late_bytes.saturating_sub(u64::from(c.late_first_size)) as f64 * 8e6
                    / late_span as f64;
                recv_bps = recv_bps.min(late);
            }
        }
        // Media sent during the cluster belongs to it and can push its send rate above the
        // planned one; a shaper's bucket can then pass it whole. A cluster proves no more than
        // the rate it was meant to test.
        let send_bps = send_bps.min(c.target_bps);
        Some(if recv_bps < SATURATED * send_bps {
            Measured {
                bps: SATURATED_BACKOFF * recv_bps,
                saturated: true,
            }
        } else {
            Measured {
                bps: send_bps.min(recv_bps),
                saturated: false,
            }
        })
    }
}

/// After a probe that found room, the next may go right away; after one that did not, waits
/// double from [`RETRY_MIN`] up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(3);
/// A probe whose result has not come within this long failed.
const RESULT_TIMEOUT: Duration = Duration::from_secs(1);
/// A result above this share of the probe's rate found room: probe on, at twice the result.
const FURTHER: f64 = 0.7;
const STEP: f64 = 2.0;
/// The first probes, at these multiples of the start rate.
const INITIAL: [f64; 2] = [3.0, 6.0];

/// Probe while the allocator's wish times this is above the estimate, and probe up to it: the
/// allocator takes a layer up (or resumes a video) only with [`crate::UPGRADE_MARGIN`] of room,
/// so a probe that stopped at the wish itself would find exactly too little, and none would
/// follow.
pub const PROBE_HEADROOM: f64 = 1.2;

#[derive(Debug)]
enum Phase {
    /// Nothing sent yet: the initial probes go with the first packets.
    Start,
    /// Probe `id` is in flight; after a failure the next waits `retry`.
    Waiting {
        id: ProbeId,
        rate_bps: f64,
        sent: Instant,
        retry: Duration,
    },
    /// No probe in flight; the next one may go at `next`.
    Idle { next: Instant, retry: Duration },
}

/// Decides the probes of one connection.
#[derive(Debug)]
pub(crate) struct ProbeController {
    phase: Phase,
    next_id: u32,
    pending: Option<ProbeCluster>,
    max_bps: f64,
}

impl ProbeController {
    pub fn new(max_bps: u64) -> ProbeController {
        ProbeController {
            phase: Phase::Start,
            next_id: 0,
            pending: None,
            max_bps: max_bps as f64,
        }
    }

    fn cluster(&mut self, rate_bps: f64) -> ProbeCluster {
        let id = ProbeId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        let rate = rate_bps.min(self.max_bps);
        ProbeCluster {
            id,
            bitrate_bps: rate as u64,
            min_packets: MIN_PACKETS,
            min_bytes: (rate * PROBE_DURATION.as_secs_f64() / 8.0).max(MIN_CLUSTER_BYTES) as u32,
        }
    }

    /// The next cluster to send, if one is due. `desired_bps` is what the allocator would send
    /// with no limit.
    pub fn poll(
        &mut self,
        now: Instant,
        estimate_bps: f64,
        desired_bps: f64,
    ) -> Option<ProbeCluster> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let target = PROBE_HEADROOM * desired_bps;
        let wants_more = target > estimate_bps && estimate_bps < self.max_bps;
        match self.phase {
            Phase::Start => {
                let first = self.cluster(INITIAL[0] * estimate_bps);
                let second = self.cluster(INITIAL[1] * estimate_bps);
                self.pending = Some(second);
                self.phase = Phase::Waiting {
                    id: second.id,
                    rate_bps: second.bitrate_bps as f64,
                    sent: now,
                    retry: RETRY_MIN,
                };
                Some(first)
            }
            Phase::Waiting { sent, retry, .. } => {
                if now.saturating_duration_since(sent) >= RESULT_TIMEOUT {
                    self.phase = Phase::Idle {
                        next: now + retry,
                        retry: (retry * 2).min(RETRY_MAX),
                    };
                }
                None
            }
            Phase::Idle { next, retry } if wants_more && now >= next => {
                let rate = (STEP * estimate_bps).min(target);
                let c = self.cluster(rate);
                self.phase = Phase::Waiting {
                    id: c.id,
                    rate_bps: c.bitrate_bps as f64,
                    sent: now,
                    retry,
                };
                Some(c)
            }
            Phase::Idle { .. } => None,
        }
    }

    /// A probe is in flight (or queued): its result may still raise the estimate.
    pub fn in_flight(&self) -> bool {
        self.pending.is_some() || matches!(self.phase, Phase::Start | Phase::Waiting { .. })
    }

    /// When [`Self::poll`] may next have something to say.
    pub fn next_poll(&self) -> Option<Instant> {
        match self.phase {
            Phase::Start => None,
            Phase::Waiting { sent, .. } => Some(sent + RESULT_TIMEOUT),
            Phase::Idle { next, .. } => Some(next),
        }
    }

    /// Cluster `id` measured `result_bps`; the estimate before it was `estimate_before_bps`.
    /// Only the newest cluster decides what comes next.
    pub fn on_result(
        &mut self,
        now: Instant,
        id: ProbeId,
        result_bps: f64,
        estimate_before_bps: f64,
    ) {
        let Phase::Waiting {
            id: waiting,
            rate_bps,
            retry,
            ..
        } = self.phase
        else {
            return;
        };
        if waiting != id {
            return;
        }
        self.phase = if result_bps > FURTHER * rate_bps && result_bps > estimate_before_bps {
            // Room found: the next probe may go now.
            Phase::Idle {
                next: now,
                retry: RETRY_MIN,
            }
        } else {
            Phase::Idle {
                next: now + retry,
                retry: (retry * 2).min(RETRY_MAX),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_through_a_narrower_path_measures_the_path() {
        let mut e = ProbeEstimator::default();
        let c = ProbeCluster {
            id: ProbeId(3),
            bitrate_bps: 4_000_000,
            min_packets: 5,
            min_bytes: 10_000,
        };
        e.start(&c, 0);
        // Ten 1,000-byte packets sent 2 ms apart (4 Mb/s), arriving 4 ms apart (2 Mb/s).
        let mut result = None;
        for i in 0..10i64 {
            if let Some(r) = e.on_packet(c.id, i * 2_000, 100_000 + i * 4_000, 1000) {
                assert!(result.is_none(), "one result per cluster");
                result = Some(r);
            }
        }
        let r = result.unwrap();
        assert!(r.saturated);
        assert!((r.bps - 0.95 * 2_000_000.0).abs() < 1.0, "{r:?}");
        assert_eq!(e.on_packet(c.id, 30_000, 200_000, 1000), None, "done");
        assert_eq!(
            e.on_packet(ProbeId(11), 0, 0, 1000),
            None,
            "unknown cluster"
        );
    }

    #[test]
    fn a_shaper_burst_at_the_start_of_a_cluster_is_not_taken_for_capacity() {
        let mut e = ProbeEstimator::default();
        // 2 Mb/s for 50 ms: 12.5 kB in 1,250-byte packets every 5 ms.
        let c = ProbeCluster {
            id: ProbeId(1),
            bitrate_bps: 2_000_000,
            min_packets: 5,
            min_bytes: 12_500,
        };
        e.start(&c, 0);
        // A 600 kb/s token bucket with a 5 kB burst: four packets pass at once, then one every
        // 16.7 ms.
        let mut result = None;
        for i in 0..10i64 {
            let arrival = if i < 4 {
                20_000 + i * 10
            } else {
                20_030 + (i - 3) * 16_667
            };
            result = result.or(e.on_packet(c.id, i * 5_000, arrival, 1250));
        }
        let r = result.unwrap();
        // The whole cluster arrives at ~1 Mb/s; the path sustains 600 kb/s.
        assert!(r.saturated);
        assert!((500_000.0..650_000.0).contains(&r.bps), "{r:?}");
    }

    /// Seen with Chromium behind a 600 kbit/s tbf: a 650 kb/s cluster, with the media sent
    /// during it, passed the shaper's bucket whole and "measured" 760 kb/s.
    #[test]
    fn a_cluster_proves_no_more_than_its_own_rate() {
        let mut e = ProbeEstimator::default();
        let c = ProbeCluster {
            id: ProbeId(2),
            bitrate_bps: 650_000,
            min_packets: 5,
            min_bytes: 10_000,
        };
        e.start(&c, 0);
        // 1,000-byte packets every 10 ms (800 kb/s with the media), arriving as sent.
        let mut result = None;
        for i in 0..12i64 {
            result = result.or(e.on_packet(c.id, i * 10_000, 50_000 + i * 10_000, 1000));
        }
        let r = result.unwrap();
        assert!(!r.saturated);
        assert!(r.bps <= 650_000.0, "{r:?}");
    }

    #[test]
    fn starts_with_two_probes_then_probes_only_while_more_is_wanted() {
        let t0 = Instant::now();
        let mut p = ProbeController::new(10_000_000);
        let a = p.poll(t0, 300_000.0, 3_000_000.0).unwrap();
        let b = p.poll(t0, 300_000.0, 3_000_000.0).unwrap();
        assert_eq!((a.bitrate_bps, b.bitrate_bps), (900_000, 1_800_000));
        assert_eq!(
            p.poll(t0, 300_000.0, 3_000_000.0),
            None,
            "waiting for a result"
        );
        // The second found room: the next probe goes at once, at twice the result, up to what
        // is wanted.
        let t1 = t0 + Duration::from_millis(200);
        p.on_result(t1, a.id, 850_000.0, 300_000.0);
        assert_eq!(
            p.poll(t1, 850_000.0, 3_000_000.0),
            None,
            "the newest cluster decides"
        );
        p.on_result(t1, b.id, 1_700_000.0, 300_000.0);
        let c = p.poll(t1, 1_700_000.0, 3_000_000.0).unwrap();
        assert_eq!(c.bitrate_bps, 3_400_000);
        // That one found no room: the next waits, and only while more is wanted.
        let t2 = t1 + Duration::from_millis(200);
        p.on_result(t2, c.id, 1_800_000.0, 1_700_000.0);
        assert_eq!(
            p.poll(t2 + Duration::from_millis(500), 1_800_000.0, 3_000_000.0),
            None
        );
        assert_eq!(
            p.poll(t2 + Duration::from_secs(5), 1_800_000.0, 1_400_000.0),
            None
        );
        assert!(p
            .poll(t2 + Duration::from_secs(5), 1_800_000.0, 3_000_000.0)
            .is_some());
    }

    /// The allocator resumes a video only with `UPGRADE_MARGIN` of room: an estimate that
    /// reached exactly what it wants must still be probed past, or the video stays paused with
    /// nothing left to raise the estimate (seen with Chromium: a join under CPU load paused a
    /// video for good).
    #[test]
    fn probes_past_the_wish_by_more_than_the_upgrade_margin() {
        let t0 = Instant::now();
        let mut p = ProbeController::new(10_000_000);
        let a = p.poll(t0, 300_000.0, 0.0).unwrap();
        let b = p.poll(t0, 300_000.0, 0.0).unwrap();
        p.on_result(t0, a.id, 400_000.0, 300_000.0);
        p.on_result(t0, b.id, 460_000.0, 300_000.0);
        let c = p
            .poll(t0 + RETRY_MAX, 460_000.0, 460_000.0)
            .expect("a probe above the wish");
        assert!(
            c.bitrate_bps as f64 >= crate::UPGRADE_MARGIN * 460_000.0,
            "{}",
            c.bitrate_bps
        );
        // Comfortably above the wish: no probing.
        p.on_result(t0 + RETRY_MAX, c.id, 600_000.0, 460_000.0);
        assert_eq!(
            p.poll(t0 + RETRY_MAX * 2, 600_000.0, 460_000.0),
            None,
            "600k covers a 460k wish with its margin"
        );
    }
}
