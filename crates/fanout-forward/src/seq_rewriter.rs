//! SeqRewriter: the sequence number and timestamp offsets of one down-track. Packets of one source
//! (one layer, one publisher SSRC) are mapped with fixed offsets during an *epoch*; a new epoch
//! starts at every switch (simulcast layer change, publisher source change) and continues the
//! subscriber's numbering: sequence +1 after the last one sent, timestamp advanced by the wall time
//! elapsed since the last packet (at least one tick). Inside an epoch, gaps are exactly the
//! publisher's own losses, late packets land in their gaps, and the mapping can be inverted to
//! answer NACKs.

use std::time::Instant;

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
        self.epoch = Some(Epoch {
            seq_delta: out_start - in_ext,
            ts_offset: out_ts.wrapping_sub(in_ts),
            in_start: in_ext,
            out_start,
        });
    }

    /// Rewrites a packet of the current epoch, or `None` if it belongs before the epoch (or there is
    /// none).
    pub(crate) fn rewrite(&mut self, in_ext: i64, in_ts: u32, now: Instant) -> Option<(u16, u32)> {
        let e = self.epoch?;
        if in_ext < e.in_start {
            return None;
        }
        let out = in_ext + e.seq_delta;
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
        if in_ext < e.in_start {
            return None;
        }
        Some((
            (in_ext + e.seq_delta) as u16,
            in_ts.wrapping_add(e.ts_offset),
        ))
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
        Some(out_ext - e.seq_delta)
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
