//! AckedBitrate: the rate the receiver actually got, from the arrival times transport-wide
//! feedback reports, over a sliding window. It is what the rate controller cuts from on overuse
//! and what bounds its growth.

/// The window the rate is measured over (µs of arrival time).
const WINDOW_US: i64 = 500_000;
/// The recent rate's window: what the path delivers now, which on overuse is its capacity.
const RECENT_US: i64 = 150_000;
/// Shorter spans than this give no rate yet.
const MIN_SPAN_US: i64 = 100_000;
/// Entries kept at most (at 4,000 packets a second, half a second).
const MAX_ENTRIES: usize = 2048;

#[derive(Debug)]
pub(crate) struct AckedBitrate {
    /// (arrival µs, bytes), in arrival order.
    packets: std::collections::VecDeque<(i64, u32)>,
    bytes: u64,
    first_arrival: Option<i64>,
}

impl Default for AckedBitrate {
    fn default() -> Self {
        AckedBitrate {
            packets: std::collections::VecDeque::with_capacity(MAX_ENTRIES),
            bytes: 0,
            first_arrival: None,
        }
    }
}

impl AckedBitrate {
    pub fn add(&mut self, arrival_us: i64, size: u32) {
        self.first_arrival.get_or_insert(arrival_us);
        if self.packets.len() == MAX_ENTRIES {
            if let Some((_, b)) = self.packets.pop_front() {
                self.bytes -= u64::from(b);
            }
        }
        self.packets.push_back((arrival_us, size));
        self.bytes += u64::from(size);
        while let Some(&(t, b)) = self.packets.front() {
            if arrival_us - t <= WINDOW_US {
                break;
            }
            self.packets.pop_front();
            self.bytes -= u64::from(b);
        }
    }

    /// Bits per second over the window that ends at the newest arrival.
    pub fn rate_bps(&self) -> Option<f64> {
        let (&(newest, _), first) = (self.packets.back()?, self.first_arrival?);
        let span = (newest - first).min(WINDOW_US);
        if span < MIN_SPAN_US {
            return None;
        }
        Some(self.bytes as f64 * 8.0 * 1e6 / span as f64)
    }

    /// Bits per second over the last [`RECENT_US`] of arrivals: when a queue overflows, this is
    /// the bottleneck's rate well before the half-second window has turned over.
    pub fn recent_bps(&self) -> Option<f64> {
        let &(newest, _) = self.packets.back()?;
        let mut bytes = 0u64;
        let mut oldest = newest;
        for &(t, b) in self.packets.iter().rev() {
            if newest - t > RECENT_US {
                break;
            }
            // The oldest packet in the window starts the span; its own bytes came before it.
            bytes += u64::from(b);
            oldest = t;
        }
        let span = newest - oldest;
        if span < RECENT_US / 2 {
            return None;
        }
        let first = self
            .packets
            .iter()
            .rev()
            .find(|(t, _)| *t == oldest)
            .map_or(0, |(_, b)| *b);
        Some((bytes - u64::from(first)) as f64 * 8.0 * 1e6 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_last_half_second() {
        let mut a = AckedBitrate::default();
        assert_eq!(a.rate_bps(), None);
        // 1,000 bytes every 10 ms: 800 kb/s.
        for i in 0..20 {
            a.add(i * 10_000, 1000);
        }
        let early = a.rate_bps().unwrap();
        assert!((early - 800_000.0).abs() / 800_000.0 < 0.12, "{early}");
        for i in 20..200 {
            a.add(i * 10_000, 1000);
        }
        // Then 500 bytes every 10 ms: 400 kb/s once the window has turned over.
        for i in 200..300 {
            a.add(i * 10_000, 500);
        }
        let late = a.rate_bps().unwrap();
        assert!((late - 400_000.0).abs() / 400_000.0 < 0.05, "{late}");
        // 100 bytes every 10 ms for 200 ms: the recent rate sees it, the window not yet.
        for i in 300..320 {
            a.add(i * 10_000, 100);
        }
        let recent = a.recent_bps().unwrap();
        assert!((recent - 80_000.0).abs() < 1.0, "{recent}");
        assert!(a.rate_bps().unwrap() > 200_000.0);
    }
}
