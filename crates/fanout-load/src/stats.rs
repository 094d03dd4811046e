//! Measurement: a log-linear histogram (latency, join time) and the per-stream receive state a
//! subscriber keeps (loss, duplicates, reordering, jitter) from the sequence numbers and send times
//! the payloads carry.

use crate::payload::Kind;

const SUB_BUCKETS: usize = 16;
const BUCKETS: usize = 61 * SUB_BUCKETS;

/// A histogram of non-negative integers with ~6% resolution (16 sub-buckets per power of two).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB_BUCKETS as u64 {
            return v as usize;
        }
        let b = 63 - v.leading_zeros() as usize; // >= 4
        let sub = ((v >> (b - 4)) & 0xF) as usize;
        (b - 3) * SUB_BUCKETS + sub
    }

    /// The smallest value of bucket `i`, and its width.
    fn bucket(i: usize) -> (u64, u64) {
        if i < SUB_BUCKETS {
            return (i as u64, 1);
        }
        let b = i / SUB_BUCKETS + 3;
        let sub = (i % SUB_BUCKETS) as u64;
        ((16 + sub) << (b - 4), 1 << (b - 4))
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the middle of its bucket, at most the maximum seen.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = Self::bucket(i);
                return Some((lo + w / 2).min(self.max));
            }
        }
        Some(self.max)
    }
}

const WINDOW: u32 = 1024;

/// What a subscriber knows about one received stream (one publisher, kind and layer).
#[derive(Clone, Debug)]
pub struct StreamRx {
    pub publisher: u32,
    pub kind: Kind,
    pub layer: u8,
    pub first: u32,
    pub max: u32,
    /// Distinct sequence numbers received.
    pub unique: u64,
    pub duplicates: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    /// RFC 3550 interarrival jitter, nanoseconds.
    pub jitter_ns: f64,
    last_transit: Option<i64>,
    /// Video: whether the first packet received started a keyframe.
    pub first_keyframe: Option<bool>,
    window: [u64; (WINDOW / 64) as usize],
}

/// How one arrival counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    New,
    Late,
    Duplicate,
}

impl StreamRx {
    pub fn new(publisher: u32, kind: Kind, layer: u8) -> Self {
        StreamRx {
            publisher,
            kind,
            layer,
            first: 0,
            max: 0,
            unique: 0,
            duplicates: 0,
            reordered: 0,
            jitter_ns: 0.0,
            last_transit: None,
            first_keyframe: None,
            window: [0; (WINDOW / 64) as usize],
        }
    }

    #[inline]
    fn bit(&self, s: u32) -> bool {
        let i = s % WINDOW;
        self.window[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    #[inline]
    fn set(&mut self, s: u32, on: bool) {
        let i = s % WINDOW;
        let w = &mut self.window[(i / 64) as usize];
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// Counts one arrival of sequence number `seq`; `gaps` (sequence numbers skipped and not yet
    /// filled, over all streams) is kept up to date for the live loss estimate.
    pub fn arrive(&mut self, seq: u32, gaps: &mut i64) -> Arrival {
        if self.unique == 0 {
            self.first = seq;
            self.max = seq;
            self.unique = 1;
            self.set(seq, true);
            return Arrival::New;
        }
        if seq > self.max {
            let adv = seq - self.max;
            if adv >= WINDOW {
                self.window = [0; (WINDOW / 64) as usize];
            } else {
                for s in self.max + 1..seq {
                    self.set(s, false);
                }
            }
            *gaps += i64::from(adv - 1);
            self.max = seq;
            self.set(seq, true);
            self.unique += 1;
            return Arrival::New;
        }
        if seq < self.first {
            // Earlier than the first arrival: the stream starts here instead.
            *gaps += i64::from(self.first - seq - 1);
            self.first = seq;
            self.unique += 1;
            self.reordered += 1;
            if self.max - seq < WINDOW {
                self.set(seq, true);
            }
            return Arrival::Late;
        }
        if self.max - seq >= WINDOW || !self.bit(seq) {
            if self.max - seq < WINDOW {
                self.set(seq, true);
            }
            self.unique += 1;
            self.reordered += 1;
            *gaps -= 1;
            return Arrival::Late;
        }
        self.duplicates += 1;
        Arrival::Duplicate
    }

    /// Updates the jitter from one packet's send and arrival times (nanoseconds).
    #[inline]
    pub fn transit(&mut self, send_ns: u64, recv_ns: u64) {
        let transit = recv_ns as i64 - send_ns as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Packets lost, given the number the publisher sent in all (`sent`: sequence numbers 0..sent);
    /// without it, up to the highest received.
    pub fn lost(&self, sent: Option<u32>) -> u64 {
        self.expected(sent).saturating_sub(self.unique)
    }

    /// Packets expected from the first received one to the last sent (or received).
    pub fn expected(&self, sent: Option<u32>) -> u64 {
        if self.unique == 0 {
            return 0;
        }
        let end = sent.map_or(u64::from(self.max) + 1, |s| {
            u64::from(s).max(u64::from(self.max) + 1)
        });
        end - u64::from(self.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.07, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.07, "{p99}");
        assert_eq!(h.max(), 10_000);
        assert_eq!(Histogram::default().quantile(0.5), None);
        for v in [0u64, 1, 15, 16, 17, 31, 32, 1 << 40, u64::MAX] {
            let i = Histogram::index(v);
            let (lo, w) = Histogram::bucket(i);
            assert!(lo <= v && v - lo < w, "{v}: bucket {i} = {lo}+{w}");
        }
    }

    #[test]
    fn counts_loss_duplicates_and_reordering() {
        let mut s = StreamRx::new(1, Kind::Audio, 0);
        let mut gaps = 0;
        for seq in [10u32, 11, 13, 12, 12, 15, 16] {
            s.arrive(seq, &mut gaps);
        }
        assert_eq!(s.unique, 6);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(gaps, 1); // 14
        assert_eq!(s.lost(None), 1);
        assert_eq!(s.lost(Some(20)), 4); // 14, 17, 18, 19
        assert_eq!(s.expected(Some(20)), 10);
        // Far behind the window: counted as late, not duplicate.
        s.arrive(5000, &mut gaps);
        s.arrive(4000, &mut gaps);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 2);
    }
}
