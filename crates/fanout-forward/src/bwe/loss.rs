//! LossController: the loss-based bound on the rate, which tells loss from congestion.
//!
//! A classic loss-based controller (cut at more than 10% loss) collapses on a lossy wireless
//! link whose queue is empty: the loss is not caused by the sender, and sending less does not
//! reduce it. This one learns the path's *inherent* loss, the loss it sees while no queue stands
//! on the path (one-way delay near its minimum), and bounds the rate only on loss above it:
//! congestion loss is new loss, or loss with a standing queue (a full drop-tail buffer, whose
//! delay is flat and so invisible to the delay-based detector).

use std::time::{Duration, Instant};

/// Loss is judged over at least this many packets and this long.
const MIN_PACKETS: u32 = 50;
const MIN_SPAN: Duration = Duration::from_millis(200);
/// Excess loss must also stand this many standard deviations above the inherent loss (a sample
/// of 50 at 10% loss varies by 4%): chance is not congestion.
const SIGNIFICANCE: f64 = 2.5;
/// A queue shorter than this (ms of one-way delay over the minimum) is no queue.
pub const QUEUE_FREE_MS: f64 = 20.0;
/// Weight of one judgement in the inherent loss (about 4 s at 5 judgements a second).
const INHERENT_GAIN: f64 = 0.05;
/// Loss above the inherent that is congestion without a queue, and with one.
const EXCESS_CONGESTED: f64 = 0.10;
const EXCESS_CONGESTED_QUEUED: f64 = 0.02;
const INCREASE_PER_SECOND: f64 = 1.08;
/// Between two cuts, at least a round trip and this.
const CUT_INTERVAL_EXTRA: Duration = Duration::from_millis(300);

#[derive(Debug, Default)]
pub(crate) struct LossController {
    inherent: f64,
    last_fraction: f64,
    /// The bound, once congestion loss was seen; `None`: loss does not limit the rate.
    limit_bps: Option<f64>,
    lost: u32,
    total: u32,
    queue_ms_sum: f64,
    since: Option<Instant>,
    last_update: Option<Instant>,
    last_cut: Option<Instant>,
}

impl LossController {
    pub fn limit_bps(&self) -> Option<f64> {
        self.limit_bps
    }

    /// The loss fraction of the last judgement, and the inherent loss learned.
    pub fn fractions(&self) -> (f64, f64) {
        (self.last_fraction, self.inherent)
    }

    /// A probe measured `bps` without congestion loss: the bound (if any) rises to it.
    pub fn raise_to(&mut self, bps: f64) {
        if let Some(l) = self.limit_bps.as_mut() {
            *l = l.max(bps);
        }
    }

    /// One feedback's packets: `lost` of `total`, with this mean queueing delay.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        now: Instant,
        lost: u32,
        total: u32,
        queue_ms: f64,
        acked_bps: Option<f64>,
        delay_based_bps: f64,
        rtt: Duration,
    ) {
        self.lost += lost;
        self.total += total;
        self.queue_ms_sum += queue_ms * f64::from(total);
        let since = *self.since.get_or_insert(now);
        if self.total < MIN_PACKETS || now.saturating_duration_since(since) < MIN_SPAN {
            return;
        }
        let fraction = f64::from(self.lost) / f64::from(self.total);
        let total_judged = self.total;
        let queue = self.queue_ms_sum / f64::from(self.total);
        self.lost = 0;
        self.total = 0;
        self.queue_ms_sum = 0.0;
        self.since = Some(now);
        self.last_fraction = fraction;
        let queued = queue >= QUEUE_FREE_MS;
        if !queued {
            self.inherent += INHERENT_GAIN * (fraction - self.inherent);
        }
        let excess = fraction - self.inherent;
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_update = Some(now);
        let p = self.inherent.clamp(0.01, 0.99);
        let chance = SIGNIFICANCE * (p * (1.0 - p) / f64::from(total_judged)).sqrt();
        let congested = excess > EXCESS_CONGESTED.max(chance)
            || (queued && excess > EXCESS_CONGESTED_QUEUED.max(chance));
        if congested {
            let may_cut = self
                .last_cut
                .is_none_or(|t| now.saturating_duration_since(t) >= rtt + CUT_INTERVAL_EXTRA);
            if may_cut {
                // What was sent: the acknowledged rate without the path's own loss.
                let base =
                    acked_bps.map_or(delay_based_bps, |a| a / (1.0 - self.inherent.min(0.5)));
                let cut = base * (1.0 - 0.5 * excess.min(1.0));
                self.limit_bps = Some(self.limit_bps.map_or(cut, |l| l.min(cut)));
                self.last_cut = Some(now);
            }
        } else if excess < EXCESS_CONGESTED_QUEUED {
            if let Some(l) = self.limit_bps {
                let grown = l * INCREASE_PER_SECOND.powf(dt.as_secs_f64().min(1.0));
                // Once the bound no longer binds, loss does not limit the rate.
                self.limit_bps = (grown < delay_based_bps).then_some(grown);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(50);

    fn feed(c: &mut LossController, t0: Instant, steps: u64, lost: u32, queue_ms: f64) {
        for i in 0..steps {
            c.update(
                t0 + Duration::from_millis(200 * i),
                lost,
                100,
                queue_ms,
                Some(1_000_000.0),
                1_000_000.0,
                RTT,
            );
        }
    }

    #[test]
    fn steady_random_loss_without_a_queue_is_learned_not_cut() {
        let t0 = Instant::now();
        let mut c = LossController::default();
        // 20% loss appears: new loss, so at first it is taken for congestion...
        feed(&mut c, t0, 5, 20, 2.0);
        assert!(c.limit_bps().is_some_and(|l| l < 950_000.0));
        // ...but it stays, with no queue: it is learned as the path's, and the bound goes.
        feed(&mut c, t0 + Duration::from_secs(1), 400, 20, 2.0);
        let (fraction, inherent) = c.fractions();
        assert_eq!(fraction, 0.20);
        assert!((inherent - 0.20).abs() < 0.005, "{inherent}");
        assert_eq!(c.limit_bps(), None);
    }

    #[test]
    fn loss_with_a_standing_queue_is_congestion() {
        let t0 = Instant::now();
        let mut c = LossController::default();
        feed(&mut c, t0, 50, 0, 2.0);
        assert_eq!(c.limit_bps(), None);
        feed(&mut c, t0 + Duration::from_secs(10), 1, 5, 80.0);
        let limit = c.limit_bps().unwrap();
        assert!((limit - 975_000.0).abs() < 1.0, "{limit}");
    }

    #[test]
    fn new_heavy_loss_is_congestion_even_without_a_queue() {
        let t0 = Instant::now();
        let mut c = LossController::default();
        feed(&mut c, t0, 50, 1, 2.0);
        feed(&mut c, t0 + Duration::from_secs(10), 1, 30, 2.0);
        assert!(c.limit_bps().unwrap() < 900_000.0);
    }
}
