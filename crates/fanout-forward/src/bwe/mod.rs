//! Send-side bandwidth estimation for one subscriber connection, from transport-wide congestion
//! control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01), sans-I/O.
//!
//! The transport stamps every packet it sends on the connection with the sequence number
//! [`SendSideBwe::on_sent`] returns, and hands every feedback it receives to
//! [`SendSideBwe::on_feedback`]. The estimate ([`SendSideBwe::estimate_bps`]) is the lower of:
//! - the delay-based rate ([`aimd`], driven by the [`trendline`] detector over [`inter_arrival`]
//!   groups): grows while the path's delay is flat, cuts on a growing queue;
//! - the loss-based bound ([`loss`]), which learns the path's inherent loss and bounds the rate
//!   only on congestion loss.
//!
//! [`probe`]s find spare capacity faster than additive growth could: the transport sends the
//! clusters [`SendSideBwe::poll_probe`] asks for (padding or retransmissions), and a cluster's
//! measured rate lifts the estimate. The allocator says what it would like to send
//! ([`SendSideBwe::set_desired`]); probing happens only while that is more than the estimate.
//! A [`Pacer`] per connection spreads video bursts at [`PACING_FACTOR`] (1.5x) the estimate.

mod acked;
mod aimd;
mod history;
mod inter_arrival;
mod loss;
mod one_way;
mod pacer;
mod probe;
mod trendline;

pub use history::HISTORY_SIZE;
pub use pacer::{Pacer, PacerStats, MAX_BURST, MAX_QUEUE, MAX_QUEUE_DELAY, PACING_FACTOR};
pub use probe::{ProbeCluster, ProbeId, PROBE_DURATION};
pub use trendline::Usage;

use acked::AckedBitrate;
use aimd::Aimd;
use history::SendHistory;
use inter_arrival::InterArrival;
use loss::LossController;
use one_way::QueueDelay;
use probe::{Measured, ProbeController, ProbeEstimator};
use std::time::{Duration, Instant};
use trendline::Trendline;

/// The limits of one connection's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BweConfig {
    pub start_bps: u64,
    pub min_bps: u64,
    pub max_bps: u64,
}

impl Default for BweConfig {
    fn default() -> Self {
        BweConfig {
            start_bps: 300_000,
            min_bps: 30_000,
            max_bps: 20_000_000,
        }
    }
}

/// One packet's line in a transport-wide feedback: its sequence number as on the wire, and when
/// it arrived (µs on the receiver's clock), or `None` if it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketReport {
    pub sequence: u16,
    pub arrival_us: Option<i64>,
}

/// A queue this long (ms) that grew by [`QUEUE_GROWTH_MS`] since the previous feedback is overuse
/// at once, without waiting for the trendline: a capacity drop fills a queue faster than the
/// regression's window turns over. A queue that stands still (a competing flow's full buffer)
/// does not trigger it.
const QUEUE_TRIGGER_MS: f64 = 60.0;
const QUEUE_GROWTH_MS: f64 = 20.0;
/// A queue up to this long (ms) is left to drain by the usual cut alone.
const DRAIN_FREE_MS: f64 = 50.0;

/// A path whose measured capacity covers what is wanted is probed again after this long.
pub const REMEASURE: Duration = Duration::from_secs(10);

/// Acknowledged under this share of the delay-based rate: the sender is application-limited (a
/// simulcast layer below the estimate), and growth of the rate is untested.
const APP_LIMITED: f64 = 0.9;

/// Arrival times beyond this (µs, either sign) are refused: 2^24 × 64 ms is 2^40 µs.
pub const ARRIVAL_LIMIT_US: i64 = 1 << 42;

/// Without feedback for this long while sending, the estimate halves (once per such span).
pub const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the estimator knows, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BweStats {
    pub estimate_bps: u64,
    pub delay_based_bps: u64,
    pub loss_limit_bps: Option<u64>,
    pub acked_bps: Option<u64>,
    pub usage: Usage,
    /// The delay detector's scaled trend and its adaptive threshold (ms).
    pub trend_ms: f64,
    pub threshold_ms: f64,
    /// Loss of the last judgement, and the path's inherent loss as learned.
    pub loss_fraction: f64,
    pub inherent_loss: f64,
    pub rtt: Duration,
    /// Queueing delay of the newest feedback (ms, mean over its packets).
    pub queue_delay_ms: f64,
    /// The capacity the last saturated probe measured, while it bounds an application-limited
    /// estimate's growth.
    pub probe_ceiling_bps: Option<u64>,
    pub probes_sent: u64,
    pub probe_results: u64,
}

#[derive(Debug, Clone, Copy)]
struct Received {
    send_us: i64,
    arrival_us: i64,
    size: u32,
    probe: Option<ProbeId>,
}

/// The estimator of one connection.
#[derive(Debug)]
pub struct SendSideBwe {
    config: BweConfig,
    base: Instant,
    history: SendHistory,
    inter_arrival: InterArrival,
    trendline: Trendline,
    aimd: Aimd,
    acked: AckedBitrate,
    /// The same for packets outside probe clusters: what the path carries of the sender's own
    /// traffic, which a probe's measure of capacity cannot be below.
    acked_unprobed: AckedBitrate,
    loss: LossController,
    queue: QueueDelay,
    probe_estimator: ProbeEstimator,
    probes: ProbeController,
    rtt: Option<Duration>,
    desired_bps: u64,
    /// A saturated probe's measure of the path: while the sender is application-limited the
    /// estimate does not grow past it, until a probe gets through at a higher rate. Without it the rate of an application-limited sender creeps up
    /// untested (to 1.5x what is acknowledged), and the allocator keeps or takes a layer the
    /// link cannot carry.
    ceiling_bps: Option<f64>,
    /// When the ceiling was last measured.
    ceiling_at: Option<Instant>,
    last_feedback: Option<Instant>,
    last_timeout_cut: Option<Instant>,
    queue_delay_ms: f64,
    /// Queueing delay of the newest packet of the previous feedback (ms).
    newest_queue_ms: f64,
    probes_sent: u64,
    probe_results: u64,
    /// Reused for each feedback's received packets (sorted by arrival).
    scratch: Vec<Received>,
}

impl SendSideBwe {
    pub fn new(now: Instant, config: BweConfig) -> SendSideBwe {
        let start = config.start_bps.clamp(config.min_bps, config.max_bps);
        SendSideBwe {
            config,
            base: now,
            history: SendHistory::default(),
            inter_arrival: InterArrival::default(),
            trendline: Trendline::default(),
            aimd: Aimd::new(start, config.min_bps, config.max_bps),
            acked: AckedBitrate::default(),
            acked_unprobed: AckedBitrate::default(),
            loss: LossController::default(),
            queue: QueueDelay::default(),
            probe_estimator: ProbeEstimator::default(),
            probes: ProbeController::new(config.max_bps),
            rtt: None,
            desired_bps: 0,
            ceiling_bps: None,
            ceiling_at: None,
            last_feedback: None,
            last_timeout_cut: None,
            queue_delay_ms: 0.0,
            newest_queue_ms: 0.0,
            probes_sent: 0,
            probe_results: 0,
            scratch: Vec::with_capacity(256),
        }
    }

    /// The rate the connection may send at now (b/s).
    pub fn estimate_bps(&self) -> u64 {
        let delay = self.aimd.rate_bps();
        let rate = self.loss.limit_bps().map_or(delay, |l| l.min(delay));
        (rate as u64).clamp(self.config.min_bps, self.config.max_bps)
    }

    /// What the allocator would send with no limit: probing happens while it is above the
    /// estimate.
    pub fn set_desired(&mut self, bps: u64) {
        self.desired_bps = bps;
    }

    /// A packet of `size` bytes (the whole datagram) goes out now: returns the transport-wide
    /// sequence number to stamp on it.
    pub fn on_sent(&mut self, now: Instant, size: usize, probe: Option<ProbeId>) -> u16 {
        self.history.add(now, size, probe) as u16
    }

    /// One transport-wide feedback packet's reports, in any order.
    pub fn on_feedback(&mut self, now: Instant, reports: impl IntoIterator<Item = PacketReport>) {
        self.scratch.clear();
        let (mut lost, mut total) = (0u32, 0u32);
        let mut newest: Option<(u64, Instant)> = None;
        for r in reports {
            let Some(seq) = self.history.unwrap(r.sequence) else {
                continue;
            };
            let base = self.base;
            let Some(sent) = self.history.get_mut(seq) else {
                continue;
            };
            if sent.acked {
                continue;
            }
            if r.arrival_us
                .is_some_and(|a| !(-ARRIVAL_LIMIT_US..=ARRIVAL_LIMIT_US).contains(&a))
            {
                // No TWCC feedback can say this (24-bit reference time in 64 ms units, 16-bit
                // deltas): forged; and time arithmetic on it could overflow.
                continue;
            }
            total += 1;
            let Some(arrival_us) = r.arrival_us else {
                lost += 1;
                continue;
            };
            sent.acked = true;
            if newest.is_none_or(|(s, _)| seq > s) {
                newest = Some((seq, sent.at));
            }
            self.scratch.push(Received {
                send_us: sent.at.saturating_duration_since(base).as_micros() as i64,
                arrival_us,
                size: sent.size,
                probe: sent.probe,
            });
        }
        if total == 0 {
            return;
        }
        self.last_feedback = Some(now);
        if let Some((_, at)) = newest {
            let sample = now.saturating_duration_since(at);
            self.rtt = Some(match self.rtt {
                None => sample,
                Some(r) => (r * 7 + sample) / 8,
            });
        }
        let rtt = self.rtt.unwrap_or(Duration::from_millis(100));
        self.scratch
            .sort_unstable_by_key(|p| (p.arrival_us, p.send_us));
        let mut probe_result: Option<(ProbeId, Measured)> = None;
        let mut queue_sum = 0.0;
        let mut newest_queue = self.newest_queue_ms;
        for i in 0..self.scratch.len() {
            let p = self.scratch[i];
            self.acked.add(p.arrival_us, p.size);
            if p.probe.is_none() {
                self.acked_unprobed.add(p.arrival_us, p.size);
            }
            newest_queue = self.queue.push(p.send_us, p.arrival_us);
            queue_sum += newest_queue;
            if let Some(id) = p.probe {
                if let Some(r) = self
                    .probe_estimator
                    .on_packet(id, p.send_us, p.arrival_us, p.size)
                {
                    let best = match probe_result {
                        Some((_, b)) if b.bps >= r.bps => b,
                        _ => r,
                    };
                    probe_result = Some((id, best));
                }
            }
            if let Some(delta) = self.inter_arrival.push(p.send_us, p.arrival_us) {
                self.trendline.update(delta);
            }
        }
        let received = self.scratch.len();
        self.queue_delay_ms = if received > 0 {
            queue_sum / received as f64
        } else {
            self.queue_delay_ms
        };
        let acked = self.acked.rate_bps();
        let queue_growing = newest_queue > QUEUE_TRIGGER_MS
            && newest_queue - self.newest_queue_ms > QUEUE_GROWTH_MS;
        self.newest_queue_ms = newest_queue;
        let usage = if queue_growing {
            Usage::Overusing
        } else {
            self.trendline.usage()
        };
        if let Some((id, measured)) = probe_result {
            self.probe_results += 1;
            let before = self.estimate_bps() as f64;
            let result = measured.bps;
            if measured.saturated {
                // Under what the path already carries, a "capacity" is the measure's noise.
                if self.acked_unprobed.rate_bps().is_none_or(|a| result >= a) {
                    self.ceiling_bps = Some(result);
                    self.ceiling_at = Some(now);
                }
            } else if self.ceiling_bps.is_some_and(|c| result >= c) {
                self.ceiling_bps = None;
            }
            if usage != Usage::Overusing {
                self.aimd.raise_to(now, result);
                self.loss.raise_to(result);
            }
            self.probes.on_result(now, id, result, before);
        }
        if usage == Usage::Overusing {
            // With a queue standing (a capacity drop), cut from what the path delivers now, not
            // from the half-second average, and deeper by the queue already built, so that it
            // drains within about a second. Without one the recent rate is only the gaps
            // between an application-limited sender's frames: the average it is.
            let queued = newest_queue > QUEUE_TRIGGER_MS;
            let drain = 1.0 - (self.queue_delay_ms - DRAIN_FREE_MS).clamp(0.0, 500.0) / 1000.0;
            let recent = if queued {
                self.acked.recent_bps()
            } else {
                None
            };
            let now_rate = match (acked, recent) {
                (Some(a), Some(r)) => Some(a.min(r).max(0.5 * a) * drain),
                (a, r) => a.or(r).map(|x| x * drain),
            };
            if self.aimd.may_cut(now, rtt, now_rate) {
                self.aimd.update(now, usage, now_rate, rtt);
            }
        } else {
            let before = self.aimd.rate_bps();
            self.aimd.update(now, usage, acked, rtt);
            // An application-limited sender tests no growth: past a probe-measured capacity it
            // waits for a probe (or its own traffic) to show more.
            if let (Some(c), Some(a)) = (self.ceiling_bps, acked) {
                // What arrives of what is sent: random loss is no sign of a limited sender.
                let (recent_loss, inherent) = self.loss.fractions();
                let delivered = 1.0 - recent_loss.max(inherent).clamp(0.0, 0.5);
                if a < APP_LIMITED * before * delivered {
                    self.aimd.limit_to(before.max(c));
                }
            }
        }
        self.loss.update(
            now,
            lost,
            total,
            self.queue_delay_ms,
            acked,
            self.aimd.rate_bps(),
            rtt,
        );
    }

    /// Probing has not finished: a probe in flight may still raise the estimate (at the start,
    /// the estimate is a guess until the start probes have measured the path).
    pub fn is_probing(&self) -> bool {
        self.probes.in_flight()
    }

    /// The next probe cluster to send now, if any.
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeCluster> {
        if let Some((c, at)) = self.ceiling_bps.zip(self.ceiling_at) {
            // The estimate covers what is wanted (if without the allocator's upgrade margin) and
            // the path was measured to carry no more: probing it again soon would only fill its
            // queue. It is measured again now and then, in case it grew.
            let wanted = self.desired_bps as f64;
            if c >= wanted
                && self.estimate_bps() as f64 >= wanted
                && now.saturating_duration_since(at) < REMEASURE
            {
                return None;
            }
        }
        let c = self
            .probes
            .poll(now, self.estimate_bps() as f64, self.desired_bps as f64)?;
        let now_us = now.saturating_duration_since(self.base).as_micros() as i64;
        self.probe_estimator.start(&c, now_us);
        self.probes_sent += 1;
        Some(c)
    }

    /// When [`Self::handle_timeout`] or [`Self::poll_probe`] next have something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let feedback = self
            .last_feedback
            .map(|t| self.last_timeout_cut.unwrap_or(t).max(t) + FEEDBACK_TIMEOUT);
        match (feedback, self.probes.next_poll()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Feedback stopped while packets were sent: the path may have collapsed, so the estimate
    /// halves every [`FEEDBACK_TIMEOUT`] without feedback.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(last) = self.last_feedback else {
            return;
        };
        let since = self.last_timeout_cut.unwrap_or(last).max(last);
        if now.saturating_duration_since(since) >= FEEDBACK_TIMEOUT && self.history.sent() > 0 {
            let acked = self.acked.rate_bps();
            let rtt = self.rtt.unwrap_or(Duration::from_millis(100));
            self.aimd
                .update(now, Usage::Overusing, acked.map(|a| a * 0.5 / 0.85), rtt);
            self.last_timeout_cut = Some(now);
        }
    }

    pub fn stats(&self) -> BweStats {
        let (loss_fraction, inherent_loss) = self.loss.fractions();
        BweStats {
            estimate_bps: self.estimate_bps(),
            delay_based_bps: self.aimd.rate_bps() as u64,
            loss_limit_bps: self.loss.limit_bps().map(|l| l as u64),
            acked_bps: self.acked.rate_bps().map(|a| a as u64),
            usage: self.trendline.usage(),
            trend_ms: self.trendline.signal().0,
            threshold_ms: self.trendline.signal().1,
            loss_fraction,
            inherent_loss,
            rtt: self.rtt.unwrap_or_default(),
            queue_delay_ms: self.queue_delay_ms,
            probe_ceiling_bps: self.ceiling_bps.map(|c| c as u64),
            probes_sent: self.probes_sent,
            probe_results: self.probe_results,
        }
    }
}
