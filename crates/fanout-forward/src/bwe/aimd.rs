//! Aimd: the delay-based rate controller. While the path's delay is steady the rate grows, by 8%
//! a second far from the link's last known capacity and by about a packet per round trip near it;
//! on overuse it drops to 85% of what the receiver acknowledged; while a queue drains it holds.
//! The rate never runs ahead of what was acknowledged by more than 1.5x (plus 10 kb/s): an
//! estimate nobody tested is not an estimate (probes test it instead).

use super::trendline::Usage;
use std::time::{Duration, Instant};

const BETA: f64 = 0.85;
const MULTIPLICATIVE_PER_SECOND: f64 = 1.08;
const PACKET_BITS: f64 = 1200.0 * 8.0;
const FRAMES_PER_SECOND: f64 = 30.0;
/// Added to the round trip for the additive increase's response time.
const RESPONSE_EXTRA: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hold,
    Increase,
    Decrease,
}

/// An average of the acknowledged rate at the moments of overuse: where the link's capacity is
/// believed to be (kb/s), and how sure that is.
#[derive(Debug, Clone, Copy, Default)]
struct LinkCapacity {
    average_kbps: Option<f64>,
    variance: f64,
}

impl LinkCapacity {
    fn update(&mut self, sample_bps: f64) {
        let sample = sample_bps / 1000.0;
        let avg = match self.average_kbps {
            None => sample,
            Some(a) => 0.95 * a + 0.05 * sample,
        };
        let norm = avg.max(1.0);
        self.variance =
            (0.95 * self.variance + 0.05 * (avg - sample).powi(2) / norm).clamp(0.4, 2.5);
        self.average_kbps = Some(avg);
    }

    fn deviation_bps(&self) -> Option<(f64, f64)> {
        let avg = self.average_kbps?;
        Some((avg * 1000.0, (self.variance * avg).sqrt() * 1000.0))
    }
}

#[derive(Debug)]
pub(crate) struct Aimd {
    rate_bps: f64,
    min_bps: f64,
    max_bps: f64,
    state: State,
    last_update: Option<Instant>,
    last_change: Option<Instant>,
    link: LinkCapacity,
}

impl Aimd {
    pub fn new(start_bps: u64, min_bps: u64, max_bps: u64) -> Aimd {
        Aimd {
            rate_bps: start_bps as f64,
            min_bps: min_bps as f64,
            max_bps: max_bps as f64,
            state: State::Hold,
            last_update: None,
            last_change: None,
            link: LinkCapacity::default(),
        }
    }

    pub fn rate_bps(&self) -> f64 {
        self.rate_bps
    }

    /// A probe measured this much: the rate jumps to it (if higher).
    pub fn raise_to(&mut self, now: Instant, bps: f64) {
        if bps > self.rate_bps {
            self.rate_bps = bps.min(self.max_bps);
            self.last_change = Some(now);
        }
    }

    /// The rate grows no further than `bps` (it is lowered to it if it did).
    pub fn limit_to(&mut self, bps: f64) {
        self.rate_bps = self.rate_bps.min(bps).max(self.min_bps);
    }

    /// Whether an overuse now may cut the rate again: one cut per round trip (10-200 ms), unless
    /// what the path delivers fell well below the rate (a capacity drop: the first cut, made from
    /// arrivals partly older than the drop, was not deep enough).
    pub fn may_cut(&self, now: Instant, rtt: Duration, acked_bps: Option<f64>) -> bool {
        let Some(last) = self.last_change else {
            return true;
        };
        let interval = rtt.clamp(Duration::from_millis(10), Duration::from_millis(200));
        now.saturating_duration_since(last) >= interval
            || acked_bps.is_some_and(|a| a < 0.8 * self.rate_bps)
    }

    pub fn update(&mut self, now: Instant, usage: Usage, acked_bps: Option<f64>, rtt: Duration) {
        self.state = match (usage, self.state) {
            (Usage::Normal, State::Hold) => State::Increase,
            (Usage::Normal, s) => s,
            (Usage::Overusing, _) => State::Decrease,
            (Usage::Underusing, _) => State::Hold,
        };
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_update = Some(now);
        let mut rate = self.rate_bps;
        match self.state {
            State::Hold => {}
            State::Increase => {
                if let (Some(acked), Some((avg, std))) = (acked_bps, self.link.deviation_bps()) {
                    if acked > avg + 3.0 * std {
                        // Well above where the link was: it has more capacity now.
                        self.link = LinkCapacity::default();
                    }
                }
                let near_max = self.link.average_kbps.is_some();
                let increase = if near_max {
                    let response = (rtt + RESPONSE_EXTRA).as_secs_f64();
                    let bits_per_frame = rate / FRAMES_PER_SECOND;
                    let packets = (bits_per_frame / PACKET_BITS).ceil().max(1.0);
                    let per_second = (bits_per_frame / packets / response).max(4000.0);
                    per_second * dt.as_secs_f64()
                } else {
                    let alpha = MULTIPLICATIVE_PER_SECOND.powf(dt.as_secs_f64().min(1.0));
                    (rate * (alpha - 1.0)).max(1000.0 * dt.as_secs_f64().min(1.0))
                };
                let mut next = rate + increase;
                if let Some(acked) = acked_bps {
                    let limit = 1.5 * acked + 10_000.0;
                    if rate < limit {
                        next = next.min(limit);
                    } else {
                        next = rate;
                    }
                }
                rate = next;
            }
            State::Decrease => {
                let base = acked_bps.unwrap_or(rate);
                let mut cut = BETA * base;
                if cut > rate {
                    if let Some((avg, _)) = self.link.deviation_bps() {
                        cut = BETA * avg;
                    }
                }
                if cut < rate {
                    rate = cut;
                }
                if let Some(acked) = acked_bps {
                    if let Some((avg, std)) = self.link.deviation_bps() {
                        if acked < avg - 3.0 * std {
                            // Well below where the link was: forget it.
                            self.link = LinkCapacity::default();
                        }
                    }
                    self.link.update(acked);
                }
                self.state = State::Hold;
                self.last_change = Some(now);
            }
        }
        self.rate_bps = rate.clamp(self.min_bps, self.max_bps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(50);

    #[test]
    fn grows_about_8_percent_a_second_while_normal() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1_000_000, 50_000, 10_000_000);
        for i in 0..=10u64 {
            a.update(
                t0 + Duration::from_millis(100 * i),
                Usage::Normal,
                Some(1_000_000.0),
                RTT,
            );
        }
        let r = a.rate_bps();
        assert!(r > 1_070_000.0 && r < 1_090_000.0, "{r}");
    }

    #[test]
    fn overuse_cuts_to_85_percent_of_acknowledged_then_holds() {
        let t0 = Instant::now();
        let mut a = Aimd::new(2_000_000, 50_000, 10_000_000);
        a.update(t0, Usage::Overusing, Some(1_500_000.0), RTT);
        assert_eq!(a.rate_bps(), 0.85 * 1_500_000.0);
        assert!(!a.may_cut(t0 + Duration::from_millis(20), RTT, Some(1_400_000.0)));
        assert!(
            a.may_cut(t0 + Duration::from_millis(20), RTT, Some(900_000.0)),
            "a drop"
        );
        assert!(a.may_cut(t0 + Duration::from_millis(60), RTT, Some(1_400_000.0)));
        a.update(
            t0 + Duration::from_millis(60),
            Usage::Underusing,
            Some(1_000_000.0),
            RTT,
        );
        assert_eq!(a.rate_bps(), 0.85 * 1_500_000.0, "held while draining");
    }

    #[test]
    fn never_runs_far_ahead_of_what_was_acknowledged() {
        let t0 = Instant::now();
        let mut a = Aimd::new(300_000, 50_000, 10_000_000);
        for i in 0..=300u64 {
            a.update(
                t0 + Duration::from_millis(100 * i),
                Usage::Normal,
                Some(300_000.0),
                RTT,
            );
        }
        assert!(a.rate_bps() <= 1.5 * 300_000.0 + 10_000.0 + 1.0);
    }
}
