//! SendHistory: what a connection sent, by transport-wide sequence number (time, size, probe
//! cluster), so that transport-wide feedback can be matched to send times. A fixed ring: sending
//! allocates nothing, and an entry older than the ring is simply forgotten (its feedback ignored).

use super::ProbeId;
use std::time::Instant;

/// Entries kept: at 2,000 packets a second, two seconds of history.
pub const HISTORY_SIZE: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    /// Unwrapped transport sequence number.
    pub seq: u64,
    pub at: Instant,
    pub size: u32,
    pub probe: Option<ProbeId>,
    /// Feedback already reported this packet received (a later report of it is ignored).
    pub acked: bool,
}

#[derive(Debug)]
pub(crate) struct SendHistory {
    ring: Box<[Option<Sent>]>,
    /// The next sequence number to send (unwrapped).
    next: u64,
}

impl Default for SendHistory {
    fn default() -> Self {
        SendHistory {
            ring: vec![None; HISTORY_SIZE].into_boxed_slice(),
            next: 0,
        }
    }
}

impl SendHistory {
    /// Records a packet about to be sent; returns its unwrapped sequence number (the wire carries
    /// the low 16 bits).
    pub fn add(&mut self, at: Instant, size: usize, probe: Option<ProbeId>) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.ring[seq as usize % HISTORY_SIZE] = Some(Sent {
            seq,
            at,
            size: size.min(u32::MAX as usize) as u32,
            probe,
            acked: false,
        });
        seq
    }

    /// The unwrapped sequence number nearest to the last one sent whose low 16 bits are `wire`.
    /// Sequence numbers never sent (ahead of the last) unwrap into the past.
    pub fn unwrap(&self, wire: u16) -> Option<u64> {
        let last = self.next.checked_sub(1)?;
        let back = (last as u16).wrapping_sub(wire);
        last.checked_sub(u64::from(back))
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Sent> {
        self.ring[seq as usize % HISTORY_SIZE]
            .as_mut()
            .filter(|s| s.seq == seq)
    }

    pub fn sent(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unwraps_across_the_16_bit_boundary_and_forgets_old_entries() {
        let t0 = Instant::now();
        let mut h = SendHistory::default();
        assert_eq!(h.unwrap(0), None, "nothing sent yet");
        for i in 0..70_000u64 {
            assert_eq!(h.add(t0 + Duration::from_micros(i), 100, None), i);
        }
        // Last sent is 69_999 (wire 4463); wire 65535 is 65_535, four thousand back.
        assert_eq!(h.unwrap(4463), Some(69_999));
        assert_eq!(h.unwrap(65_535), Some(65_535));
        assert!(h.get_mut(65_535).is_none(), "older than the ring");
        assert_eq!(h.get_mut(69_000).map(|s| s.seq), Some(69_000));
        // A number never sent unwraps into the past, never ahead.
        assert_eq!(h.unwrap(4464), Some(69_999 - 65_535));
    }
}
