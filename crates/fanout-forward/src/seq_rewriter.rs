//! SeqRewriter: the sequence number and timestamp offsets of one down-track. Packets of one source
//! (one layer, one publisher SSRC) are mapped with fixed offsets during an *epoch*; a new epoch
//! starts at every switch (simulcast layer change, publisher source change) and continues the
//! subscriber's numbering: sequence +1 after the last one sent, timestamp advanced by the wall time
//! elapsed since the last packet (at least one tick). Inside an epoch, gaps are exactly the
//! publisher's own losses, late packets land in their gaps, and the mapping can be inverted to
//! answer NACKs. Packets deliberately not forwarded (a temporal layer above the subscriber's) are
//! [`SeqRewriter::skip`]ped: they close up, leaving no gap for the subscriber to NACK.

use std::collections::VecDeque;
use std::time::Instant;

/// Skipped sequence numbers remembered per epoch; beyond this the oldest are forgotten and
/// packets before them can no longer be mapped (retransmitted).
const MAX_SKIPPED: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// out_ext = in_ext + seq_delta
    seq_delta: i64,
    /// out_ts = in_ts + ts_offset (wrapping)
    ts_offset: u32,
    in_start: i64,
    out_start: i64,
}

/// Maps a source's extended sequence numbers and timestamps into a subscriber's continuous ones.
#[derive(Debug, Clone)]
pub(crate) struct SeqRewriter {
    initial_seq: u16,
    initial_ts: u32,
    epoch: Option<Epoch>,
    /// The highest extended sequence number sent so far, its timestamp and when it was sent.
    highest_out: i64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    /// The epoch's skipped input sequence numbers, ascending.
    skipped: VecDeque<i64>,
}

impl SeqRewriter {
    /// A rewriter whose first packet will get `initial_seq` and `initial_ts`.
    pub(crate) fn new(initial_seq: u16, initial_ts: u32) -> Self {
        Self {
            initial_seq,
            initial_ts,
            epoch: None,
            highest_out: 0,
            last_out_ts: 0,
            last_out_at: None,
            skipped: VecDeque::new(),
        }
    }

    /// Starts a new epoch at the packet (`in_ext`, `in_ts`) arriving at `now`.
    pub(crate) fn start_epoch(&mut self, in_ext: i64, in_ts: u32, now: Instant, clock_rate: u32) {
        let (out_start, out_ts) = match self.last_out_at {
            None => (
                // Keep a positive headroom so late packets of the first epoch stay positive.
                (1i64 << 32) + i64::from(self.initial_seq),
                self.initial_ts,
            ),
            Some(at) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000)
                    .clamp(1, u128::from(u32::MAX / 2)) as u32;
                (self.highest_out + 1, self.last_out_ts.wrapping_add(ticks))
            }
        };
        self.skipped.clear();
        self.epoch = Some(Epoch {
            seq_delta: out_start - in_ext,
            ts_offset: out_ts.wrapping_sub(in_ts),
            in_start: in_ext,
            out_start,
        });
    }

    /// Skipped packets before `in_ext`.
    fn skipped_before(&self, in_ext: i64) -> i64 {
        match self.skipped.back() {
            None => 0,
            Some(&last) if last < in_ext => self.skipped.len() as i64,
            _ => self.skipped.partition_point(|&s| s < in_ext) as i64,
        }
    }

    fn out_ext(&self, in_ext: i64) -> Option<i64> {
        let e = self.epoch?;
        if in_ext < e.in_start || self.skipped.binary_search(&in_ext).is_ok() {
            return None;
        }
        Some(in_ext + e.seq_delta - self.skipped_before(in_ext))
    }

    /// The newest packet `in_ext` (higher than any of the epoch so far) is not forwarded: the
    /// numbers after it close up. Returns false (nothing changes) for an older packet, which
    /// has its place in the numbering already and must be forwarded or left as a gap.
    pub(crate) fn skip(&mut self, in_ext: i64) -> bool {
        let Some(e) = self.epoch else {
            return false;
        };
        let newest = self.skipped.back().copied().unwrap_or(i64::MIN);
        let out = in_ext + e.seq_delta - self.skipped_before(in_ext);
        if in_ext < e.in_start || in_ext <= newest || out <= self.highest_out {
            return false;
        }
        if self.skipped.len() == MAX_SKIPPED {
            if let (Some(old), Some(ep)) = (self.skipped.pop_front(), self.epoch.as_mut()) {
                // Fold the forgotten skip into the offset; packets before it become unmappable.
                ep.seq_delta -= 1;
                ep.in_start = ep.in_start.max(old + 1);
            }
        }
        self.skipped.push_back(in_ext);
        true
    }

    /// Rewrites a packet of the current epoch, or `None` if it belongs before the epoch (or there is
    /// none, or it was skipped).
    pub(crate) fn rewrite(&mut self, in_ext: i64, in_ts: u32, now: Instant) -> Option<(u16, u32)> {
        let e = self.epoch?;
        let out = self.out_ext(in_ext)?;
        let ts = in_ts.wrapping_add(e.ts_offset);
        if out > self.highest_out || self.last_out_at.is_none() {
            self.highest_out = out;
            self.last_out_ts = ts;
            self.last_out_at = Some(now);
        }
        Some((out as u16, ts))
    }

    /// The rewritten sequence number and timestamp a packet of the current epoch got (or would get),
    /// without changing any state. Used for retransmissions.
    pub(crate) fn map(&self, in_ext: i64, in_ts: u32) -> Option<(u16, u32)> {
        let e = self.epoch?;
        let out = self.out_ext(in_ext)?;
        Some((out as u16, in_ts.wrapping_add(e.ts_offset)))
    }

    /// The source's extended sequence number for a subscriber-facing sequence number already sent in
    /// the current epoch.
    pub(crate) fn unmap(&self, out_seq: u16) -> Option<i64> {
        let e = self.epoch?;
        let delta = i64::from(out_seq.wrapping_sub(self.highest_out as u16) as i16);
        let out_ext = self.highest_out + delta;
        if out_ext < e.out_start || out_ext > self.highest_out {
            return None;
        }
        // Every skip at or before the candidate pushes it one further.
        let mut in_ext = out_ext - e.seq_delta;
        for &s in &self.skipped {
            if s <= in_ext {
                in_ext += 1;
            } else {
                break;
            }
        }
        Some(in_ext)
    }

    /// The timestamp offset of the current epoch (for translating sender reports).
    pub(crate) fn ts_offset(&self) -> Option<u32> {
        self.epoch.map(|e| e.ts_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_epochs() {
        let t0 = Instant::now();
        let mut r = SeqRewriter::new(1000, 5000);
        r.start_epoch(10, 90_000, t0, 90_000);
        assert_eq!(r.rewrite(10, 90_000, t0), Some((1000, 5000)));
        assert_eq!(r.rewrite(11, 93_000, t0), Some((1001, 8000)));
        assert_eq!(r.rewrite(9, 87_000, t0), None);
        // Switch 100 ms later to a source with a different base.
        let t1 = t0 + Duration::from_millis(100);
        r.start_epoch(50_000, 7, t1, 90_000);
        assert_eq!(r.rewrite(50_000, 7, t1), Some((1002, 8000 + 9000)));
        assert_eq!(r.unmap(1002), Some(50_000));
        assert_eq!(r.unmap(1001), None, "previous epoch");
        assert_eq!(r.map(50_000, 7), Some((1002, 17_000)));
    }

    #[test]
    fn skipped_packets_close_up_and_map_back() {
        let t0 = Instant::now();
        let mut r = SeqRewriter::new(100, 0);
        r.start_epoch(10, 0, t0, 90_000);
        assert_eq!(r.rewrite(10, 0, t0).map(|x| x.0), Some(100));
        assert!(r.skip(11));
        assert!(r.skip(12));
        assert_eq!(r.rewrite(13, 0, t0).map(|x| x.0), Some(101));
        assert!(!r.skip(13), "already sent");
        assert!(r.skip(14));
        assert_eq!(r.rewrite(15, 0, t0).map(|x| x.0), Some(102));
        assert_eq!(r.rewrite(12, 0, t0), None, "a skipped packet is never sent");
        assert_eq!(r.map(11, 0), None);
        assert_eq!(r.map(13, 0).map(|x| x.0), Some(101));
        for (out, inp) in [(100, 10), (101, 13), (102, 15)] {
            assert_eq!(r.unmap(out), Some(inp), "{out}");
        }
        // A gap of the publisher's own (16 lost) stays a gap; a late packet fills it.
        assert_eq!(r.rewrite(17, 0, t0).map(|x| x.0), Some(104));
        assert!(
            !r.skip(16),
            "older than the newest sent: it keeps its place"
        );
        assert_eq!(r.rewrite(16, 0, t0).map(|x| x.0), Some(103));
        assert_eq!(r.unmap(103), Some(16));
    }

    #[test]
    fn forgotten_skips_leave_older_packets_unmappable() {
        let t0 = Instant::now();
        let mut r = SeqRewriter::new(0, 0);
        r.start_epoch(0, 0, t0, 90_000);
        let mut expect = 0u16;
        for i in 0..(2 * MAX_SKIPPED as i64 + 10) {
            let ext = 2 * i;
            assert_eq!(r.rewrite(ext, 0, t0).map(|x| x.0), Some(expect), "{ext}");
            expect = expect.wrapping_add(1);
            assert!(r.skip(ext + 1));
        }
        assert_eq!(r.map(0, 0), None, "its skips forgotten");
        let last = 2 * (2 * MAX_SKIPPED as i64 + 9);
        assert_eq!(r.map(last, 0).map(|x| x.0), Some(expect - 1));
        assert_eq!(r.unmap(expect - 1), Some(last));
    }

    #[test]
    fn seq_wraps() {
        let t0 = Instant::now();
        let mut r = SeqRewriter::new(65535, u32::MAX);
        r.start_epoch(0, 0, t0, 48_000);
        assert_eq!(r.rewrite(0, 0, t0), Some((65535, u32::MAX)));
        assert_eq!(r.rewrite(1, 960, t0), Some((0, 959)));
        assert_eq!(r.unmap(65535), Some(0));
        assert_eq!(r.unmap(0), Some(1));
    }
}
