//! BitrateMeter: a sliding-window bitrate meter over fixed time buckets (no allocation), used to
//! enforce a role's `max_kbps` per publication layer.

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_millis(100);
/// The window a rate is measured over.
pub const BITRATE_WINDOW: Duration = Duration::from_secs(1);

/// Bytes received per 100 ms bucket over the last second.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitrateMeter {
    buckets: [u64; BUCKETS],
    current: usize,
    bucket_start: Option<Instant>,
    first: Option<Instant>,
}

impl BitrateMeter {
    fn advance(&mut self, now: Instant) {
        let Some(start) = self.bucket_start else {
            self.bucket_start = Some(now);
            self.first = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        let steps = (elapsed.as_nanos() / BUCKET.as_nanos()) as u64;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS as u64) {
            self.current = (self.current + 1) % BUCKETS;
            self.buckets[self.current] = 0;
        }
        // `steps` is bounded by the elapsed time, so this cannot overflow an Instant.
        self.bucket_start = Some(start + BUCKET * (steps.min(u64::from(u32::MAX)) as u32));
    }

    pub(crate) fn add(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        self.buckets[self.current] = self.buckets[self.current].saturating_add(bytes as u64);
    }

    /// Bits per second over the last [`BITRATE_WINDOW`] (or since the first byte, if sooner).
    pub(crate) fn rate_bps(&mut self, now: Instant) -> u64 {
        self.advance(now);
        let (Some(start), Some(first)) = (self.bucket_start, self.first) else {
            return 0;
        };
        let bytes: u64 = self.buckets.iter().fold(0u64, |a, b| a.saturating_add(*b));
        // The current bucket is partial: the window is the full older buckets plus its elapsed part.
        let window = BUCKET * (BUCKETS as u32 - 1) + now.saturating_duration_since(start);
        let span = window.min(now.saturating_duration_since(first)).max(BUCKET);
        let micros = span.as_micros().max(1) as u64;
        bytes.saturating_mul(8_000_000) / micros
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::default();
        // 1250 bytes every 10 ms = 1 Mbps.
        for i in 0..300u32 {
            m.add(t0 + Duration::from_millis(u64::from(i) * 10), 1250);
        }
        let r = m.rate_bps(t0 + Duration::from_millis(2995));
        assert!((950_000..=1_050_000).contains(&r), "{r}");
        assert_eq!(m.rate_bps(t0 + Duration::from_secs(10)), 0);
    }
}
