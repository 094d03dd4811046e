//! Pacer: a leaky bucket per connection. Packets go out at once while the bucket has credit;
//! past that they wait in order and leave at the pacing rate (a multiple of the estimate, as
//! libwebrtc paces at 2.5x), so that a keyframe or several streams' frames at once do not hit the
//! path as one burst. The bucket holds at most [`MAX_BURST`] of credit. Audio is never given to
//! the pacer (it would wait behind video); the queue is bounded in packets and in time, and what
//! overflows is dropped oldest first (the subscriber's NACKs recover it if it still matters).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Credit the bucket may hold: this long at the pacing rate (15 ms of the estimate).
pub const MAX_BURST: Duration = Duration::from_millis(10);
/// The pacing rate, as a multiple of the estimate. libwebrtc paces at 2.5x, beside an encoder
/// that shrinks its frames to the estimate; an SFU forwards keyframes as they are, so a pace
/// much above the path's rate fills a shallow bottleneck buffer and loses the keyframe's tail.
pub const PACING_FACTOR: f64 = 1.5;
/// Packets waiting at most, and the longest any waits before being dropped.
pub const MAX_QUEUE: usize = 1024;
pub const MAX_QUEUE_DELAY: Duration = Duration::from_millis(500);

/// What the pacer did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Packets that had to wait, and those dropped from the queue.
    pub queued: u64,
    pub dropped: u64,
    /// The longest wait of a packet released so far (µs).
    pub max_delay_us: u64,
    /// Sum of the waits of released packets (µs), for a mean.
    pub delay_us_sum: u64,
    pub released: u64,
}

#[derive(Debug)]
pub struct Pacer<T> {
    queue: VecDeque<(Instant, usize, T)>,
    rate_bps: u64,
    /// Bytes of credit (negative after a packet larger than the credit left).
    credit: f64,
    last: Option<Instant>,
    stats: PacerStats,
}

impl<T> Pacer<T> {
    pub fn new(estimate_bps: u64) -> Pacer<T> {
        let mut p = Pacer {
            queue: VecDeque::with_capacity(64),
            rate_bps: 0,
            credit: 0.0,
            last: None,
            stats: PacerStats::default(),
        };
        p.set_estimate(estimate_bps);
        p.credit = p.max_credit();
        p
    }

    /// Follows a new estimate: the pacing rate is [`PACING_FACTOR`] times it.
    pub fn set_estimate(&mut self, estimate_bps: u64) {
        self.rate_bps = (estimate_bps as f64 * PACING_FACTOR) as u64;
    }

    fn max_credit(&self) -> f64 {
        self.rate_bps as f64 / 8.0 * MAX_BURST.as_secs_f64()
    }

    fn refill(&mut self, now: Instant) {
        let last = *self.last.get_or_insert(now);
        let dt = now.saturating_duration_since(last).as_secs_f64();
        self.last = Some(now.max(last));
        self.credit = (self.credit + dt * self.rate_bps as f64 / 8.0).min(self.max_credit());
    }

    /// A packet of `size` bytes may go now (nothing waits and there is credit): it is counted
    /// as sent. If not, give it to [`Self::push`].
    pub fn try_send(&mut self, now: Instant, size: usize) -> bool {
        self.refill(now);
        if self.queue.is_empty() && self.credit > 0.0 {
            self.credit -= size as f64;
            return true;
        }
        false
    }

    /// Queues a packet that may not go now. Returns what overflowed, if anything.
    pub fn push(&mut self, now: Instant, size: usize, item: T) -> Option<T> {
        self.stats.queued += 1;
        let overflow = if self.queue.len() >= MAX_QUEUE {
            self.stats.dropped += 1;
            self.queue.pop_front().map(|(_, _, t)| t)
        } else {
            None
        };
        self.queue.push_back((now, size, item));
        overflow
    }

    /// The next packet that may go now, oldest first, and how long it waited; packets that
    /// waited too long are dropped on the way (handed to `dropped`).
    pub fn poll(&mut self, now: Instant, mut dropped: impl FnMut(T)) -> Option<(T, Duration)> {
        self.refill(now);
        while let Some((at, _, _)) = self.queue.front() {
            if now.saturating_duration_since(*at) <= MAX_QUEUE_DELAY {
                break;
            }
            if let Some((_, _, t)) = self.queue.pop_front() {
                self.stats.dropped += 1;
                dropped(t);
            }
        }
        if self.credit <= 0.0 {
            return None;
        }
        let (at, size, item) = self.queue.pop_front()?;
        self.credit -= size as f64;
        let waited = now.saturating_duration_since(at);
        let us = waited.as_micros() as u64;
        self.stats.released += 1;
        self.stats.delay_us_sum += us;
        self.stats.max_delay_us = self.stats.max_delay_us.max(us);
        Some((item, waited))
    }

    /// When the next waiting packet has credit, if any waits.
    pub fn next_release(&self) -> Option<Instant> {
        let _ = self.queue.front()?;
        let last = self.last?;
        if self.credit > 0.0 || self.rate_bps == 0 {
            return Some(last);
        }
        let secs = -self.credit * 8.0 / self.rate_bps as f64;
        Some(last + Duration::from_secs_f64(secs.min(1.0)))
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn stats(&self) -> PacerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_credit_leaves_at_the_pacing_rate() {
        let t0 = Instant::now();
        // 1 Mb/s estimate: 1.5 Mb/s pacing, 1,875 bytes of credit.
        let mut p: Pacer<u32> = Pacer::new(1_000_000);
        let mut sent_now = 0;
        for i in 0..30u32 {
            if p.try_send(t0, 1000) {
                sent_now += 1;
            } else {
                assert!(p.push(t0, 1000, i).is_none());
            }
        }
        assert_eq!(sent_now, 2, "the burst credit, and one packet into debt");
        // The other 28 kB leave at 187.5 kB/s: about 150 ms.
        let mut released = Vec::new();
        let mut t = t0;
        while p.queued() > 0 && t < t0 + Duration::from_secs(1) {
            t += Duration::from_millis(1);
            while let Some((i, waited)) = p.poll(t, |_| panic!("nothing is that old")) {
                assert_eq!(waited, t - t0);
                released.push((t - t0, i));
            }
        }
        assert_eq!(released.len(), 28);
        let last = released.last().map(|r| r.0).unwrap_or_default();
        assert!(
            last >= Duration::from_millis(145) && last <= Duration::from_millis(155),
            "{last:?}"
        );
        // In order.
        assert!(released.windows(2).all(|w| w[0].1 < w[1].1));
        assert!(p.stats().max_delay_us >= 145_000);
    }

    #[test]
    fn the_queue_is_bounded_in_packets_and_in_time() {
        let t0 = Instant::now();
        let mut p: Pacer<usize> = Pacer::new(10_000);
        while p.try_send(t0, 1200) {}
        let mut overflowed = 0;
        for i in 0..MAX_QUEUE + 5 {
            overflowed += usize::from(p.push(t0, 1200, i).is_some());
        }
        assert_eq!(overflowed, 5);
        let mut dropped = 0;
        let _ = p.poll(t0 + MAX_QUEUE_DELAY + Duration::from_millis(1), |_| {
            dropped += 1
        });
        assert_eq!(dropped, MAX_QUEUE, "everything waited too long");
        assert_eq!(p.stats().dropped, (MAX_QUEUE + 5) as u64);
    }
}
