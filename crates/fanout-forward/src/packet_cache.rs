//! PacketCache: a per-layer ring of the most recent packets a publisher sent, so a subscriber's NACK
//! can be answered without asking the publisher. Entries hold the original [`RtpPacket`] whose
//! payload is the shared buffer (no copy); a slot is reused when the ring wraps.

use crate::api::RtpPacket;
use std::time::{Duration, Instant};

/// Packets kept per layer (a power of two).
pub const PACKET_CACHE_SIZE: usize = 512;
/// Packets older than this are not served even if their slot was not reused yet.
pub const PACKET_CACHE_MAX_AGE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Slot {
    ext: i64,
    at: Instant,
    packet: RtpPacket,
}

/// Ring of the last [`PACKET_CACHE_SIZE`] packets of one layer, indexed by extended sequence number.
#[derive(Debug, Clone)]
pub(crate) struct PacketCache {
    slots: Vec<Option<Slot>>,
}

impl PacketCache {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..PACKET_CACHE_SIZE).map(|_| None).collect(),
        }
    }

    fn index(ext: i64) -> usize {
        (ext & (PACKET_CACHE_SIZE as i64 - 1)) as usize
    }

    /// Stores `packet` under `ext` unless it is so old (relative to `highest`) that it would evict a
    /// newer packet.
    pub(crate) fn insert(&mut self, ext: i64, highest: i64, packet: RtpPacket, now: Instant) {
        if highest - ext >= PACKET_CACHE_SIZE as i64 {
            return;
        }
        if let Some(slot) = self.slots.get_mut(Self::index(ext)) {
            *slot = Some(Slot {
                ext,
                at: now,
                packet,
            });
        }
    }

    /// The packet stored under `ext`, if it is still there and not too old.
    pub(crate) fn get(&self, ext: i64, now: Instant) -> Option<&RtpPacket> {
        match self.slots.get(Self::index(ext))? {
            Some(slot)
                if slot.ext == ext
                    && now.saturating_duration_since(slot.at) <= PACKET_CACHE_MAX_AGE =>
            {
                Some(&slot.packet)
            }
            _ => None,
        }
    }

    pub(crate) fn clear(&mut self) {
        for slot in &mut self.slots {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(seq: u16) -> RtpPacket {
        RtpPacket {
            payload_type: 96,
            sequence: seq,
            timestamp: 0,
            ssrc: 1,
            marker: false,
            audio_level: None,
            payload: Bytes::from_static(b"abc"),
        }
    }

    #[test]
    fn ring_reuses_slots_and_ages_out() {
        let t0 = Instant::now();
        let mut c = PacketCache::new();
        for e in 0..600i64 {
            c.insert(e, e, packet(e as u16), t0);
        }
        assert!(c.get(10, t0).is_none(), "evicted by 522");
        assert_eq!(c.get(599, t0).map(|p| p.sequence), Some(599));
        assert!(c.get(599, t0 + Duration::from_secs(3)).is_none());
        // Too old to be stored: it would evict 599.
        c.insert(87, 599, packet(87), t0);
        assert_eq!(c.get(599, t0).map(|p| p.sequence), Some(599));
    }
}
