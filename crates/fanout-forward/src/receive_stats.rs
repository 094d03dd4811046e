//! ReceiveStats: what the server knows about receiving one publication layer, for its RTCP receiver
//! reports (RFC 3550 A.3 loss accounting and A.8 interarrival jitter) and for upstream NACKs (the
//! list of sequence numbers that went missing, each requested a bounded number of times).

use std::time::{Duration, Instant};

/// At most this many missing sequence numbers are tracked per layer (the oldest are forgotten).
pub const MAX_MISSING: usize = 256;
/// A missing packet is requested from the publisher at most this many times.
pub const NACK_MAX_TRIES: u8 = 3;
/// Time between two requests for the same missing packet.
pub const NACK_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// A missing packet older than this is given up (the publisher's history and ours are ~1 s).
pub const NACK_MAX_AGE: Duration = Duration::from_secs(1);

/// One receiver report block's worth of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReportBlock {
    pub fraction_lost: u8,
    pub total_lost: u32,
    pub highest_sequence: u32,
    pub jitter: u32,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    ext: i64,
    tries: u8,
    last_sent: Option<Instant>,
    since: Instant,
}

/// Loss, jitter and missing-packet bookkeeping for one layer (one source; reset when it changes).
#[derive(Debug, Clone)]
pub(crate) struct ReceiveStats {
    clock_rate: u32,
    base_ext: Option<i64>,
    highest_ext: i64,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units, as a float to keep the 1/16 steps exact enough.
    jitter: f64,
    last_transit: Option<u32>,
    arrival_base: Option<Instant>,
    missing: Vec<Missing>,
}

impl ReceiveStats {
    pub(crate) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            base_ext: None,
            highest_ext: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            last_transit: None,
            arrival_base: None,
            missing: Vec::with_capacity(MAX_MISSING),
        }
    }

    /// Forgets everything (a new source); keeps the allocation of the missing list.
    pub(crate) fn reset(&mut self) {
        let mut missing = std::mem::take(&mut self.missing);
        missing.clear();
        *self = Self {
            missing,
            ..Self::new(self.clock_rate)
        };
    }

    /// Records an accepted packet. `advanced` is true when it is a new highest sequence number.
    pub(crate) fn on_packet(&mut self, ext: i64, timestamp: u32, now: Instant, advanced: bool) {
        self.received += 1;
        match self.base_ext {
            None => {
                self.base_ext = Some(ext);
                self.highest_ext = ext;
                self.expected_prior = 0;
            }
            Some(base) if ext < base => {
                // A late packet from before the first one we saw: widen the range it belongs to.
                self.base_ext = Some(ext);
                self.expected_prior += base - ext;
            }
            Some(_) => {}
        }
        if advanced || ext > self.highest_ext {
            self.highest_ext = self.highest_ext.max(ext);
            self.update_jitter(timestamp, now);
        }
    }

    fn update_jitter(&mut self, timestamp: u32, now: Instant) {
        let base = *self.arrival_base.get_or_insert(now);
        let elapsed = now.saturating_duration_since(base);
        let arrival = (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// The highest extended sequence number received.
    pub(crate) fn highest_ext(&self) -> i64 {
        self.highest_ext
    }

    /// Whether a packet arrived since the last report.
    pub(crate) fn has_news(&self) -> bool {
        self.received > self.received_prior
    }

    /// Builds a report block and starts a new reporting interval; `None` if nothing arrived since the
    /// previous report.
    pub(crate) fn report(&mut self) -> Option<ReportBlock> {
        if !self.has_news() {
            return None;
        }
        let base = self.base_ext?;
        let expected = self.highest_ext - base + 1;
        let received = i64::try_from(self.received).unwrap_or(i64::MAX);
        let total_lost = (expected - received).clamp(0, i64::from(u32::MAX)) as u32;
        let expected_interval = expected - self.expected_prior;
        let received_interval = received - i64::try_from(self.received_prior).unwrap_or(i64::MAX);
        let lost_interval = expected_interval - received_interval;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        self.expected_prior = expected;
        self.received_prior = self.received;
        Some(ReportBlock {
            fraction_lost,
            total_lost,
            highest_sequence: self.highest_ext as u32,
            jitter: self.jitter as u32,
        })
    }

    /// Remembers the sequence numbers skipped between `prev_highest` and `ext` as missing, at most
    /// the newest `max_span` ones (older ones are not worth asking for: they left the cache).
    pub(crate) fn on_gap(&mut self, prev_highest: i64, ext: i64, max_span: i64, now: Instant) {
        let span = max_span.min(MAX_MISSING as i64);
        let first = (prev_highest + 1).max(ext - span);
        for e in first..ext {
            if self.missing.len() == MAX_MISSING {
                self.missing.remove(0);
            }
            self.missing.push(Missing {
                ext: e,
                tries: 0,
                last_sent: None,
                since: now,
            });
        }
    }

    /// A late packet arrived: stop asking for it.
    pub(crate) fn on_recovered(&mut self, ext: i64) {
        if let Some(i) = self.missing.iter().position(|m| m.ext == ext) {
            self.missing.remove(i);
        }
    }

    pub(crate) fn has_missing(&self) -> bool {
        !self.missing.is_empty()
    }

    /// The sequence numbers to request now (first time, or again after [`NACK_RETRY_INTERVAL`]),
    /// forgetting the ones asked for [`NACK_MAX_TRIES`] times, too old, or outside `max_span`.
    pub(crate) fn take_due(&mut self, now: Instant, max_span: i64) -> Vec<u16> {
        let highest = self.highest_ext;
        self.missing.retain(|m| {
            highest - m.ext < max_span && now.saturating_duration_since(m.since) < NACK_MAX_AGE
        });
        let mut due = Vec::new();
        for m in &mut self.missing {
            let ready = match m.last_sent {
                None => true,
                Some(t) => now.saturating_duration_since(t) >= NACK_RETRY_INTERVAL,
            };
            if ready {
                m.tries += 1;
                m.last_sent = Some(now);
                due.push(m.ext as u16);
            }
        }
        self.missing.retain(|m| m.tries < NACK_MAX_TRIES);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_fraction() {
        let now = Instant::now();
        let mut s = ReceiveStats::new(90_000);
        for e in 0..100i64 {
            if e % 10 != 5 {
                s.on_packet(e, 0, now, true);
            }
        }
        let r = s.report().expect("report");
        assert_eq!(r.total_lost, 10);
        assert_eq!(r.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(r.highest_sequence, 99);
        assert!(s.report().is_none());
        for e in 100..200i64 {
            s.on_packet(e, 0, now, true);
        }
        let r = s.report().expect("report");
        assert_eq!(r.total_lost, 10);
        assert_eq!(r.fraction_lost, 0);
    }

    #[test]
    fn nack_retries_are_bounded() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(90_000);
        s.on_packet(0, 0, t0, true);
        s.on_packet(3, 0, t0, true);
        s.on_gap(0, 3, 512, t0);
        assert_eq!(s.take_due(t0, 512), vec![1, 2]);
        assert!(s.take_due(t0 + Duration::from_millis(50), 512).is_empty());
        assert_eq!(s.take_due(t0 + Duration::from_millis(100), 512), vec![1, 2]);
        s.on_recovered(1);
        assert_eq!(s.take_due(t0 + Duration::from_millis(200), 512), vec![2]);
        assert!(!s.has_missing());
        assert!(s.take_due(t0 + Duration::from_millis(300), 512).is_empty());
    }
}
