//! PacketCache: a per-layer ring of the most recent packets a publisher sent, so a subscriber's NACK
//! can be answered without asking the publisher. Entries hold the original [`RtpPacket`] whose
//! payload is the shared buffer (no copy); a slot is reused when the ring wraps, and emptied once its
//! packet is older than [`PACKET_CACHE_MAX_AGE`] (so a low-rate layer does not pin 512 payloads it can
//! never serve).

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
    /// One past the highest extended sequence number stored so far.
    head: Option<i64>,
    /// The oldest extended sequence number whose slot may still hold a live packet.
    tail: i64,
}

impl PacketCache {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..PACKET_CACHE_SIZE).map(|_| None).collect(),
            head: None,
            tail: 0,
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
        let head = self.head.map_or(ext + 1, |h| h.max(ext + 1));
        // A first or late packet starts the cursor at itself, so it is released in its turn too.
        self.tail = if self.head.is_none() {
            ext
        } else {
            self.tail.min(ext)
        };
        self.head = Some(head);
        self.expire(now);
    }

    /// Empties slots from the oldest while their packet is past the maximum age. Runs on every insert
    /// and on the router's tick (for layers that went quiet). Amortised O(1): the cursor only moves
    /// back for a late packet, and never more than a ring behind the head.
    pub(crate) fn expire(&mut self, now: Instant) {
        let Some(head) = self.head else {
            return;
        };
        let floor = head - PACKET_CACHE_SIZE as i64;
        if self.tail < floor {
            // The sequence jumped more than a ring ahead: whatever the skipped range still holds is
            // unreachable now (rare; at most one pass over the ring).
            let skipped = (floor - self.tail).min(PACKET_CACHE_SIZE as i64);
            for e in floor - skipped..floor {
                if let Some(slot) = self.slots.get_mut(Self::index(e)) {
                    if slot.as_ref().is_some_and(|s| s.ext < floor) {
                        *slot = None;
                    }
                }
            }
            self.tail = floor;
        }
        while self.tail < head {
            let Some(slot) = self.slots.get_mut(Self::index(self.tail)) else {
                return;
            };
            match slot {
                Some(s)
                    if s.ext == self.tail
                        && now.saturating_duration_since(s.at) <= PACKET_CACHE_MAX_AGE =>
                {
                    return; // the oldest live packet: everything after it is younger
                }
                Some(s) if s.ext == self.tail => *slot = None,
                _ => {} // empty, or already reused by a newer packet
            }
            self.tail += 1;
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
        self.head = None;
        self.tail = 0;
    }

    #[cfg(test)]
    fn occupied(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
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

    #[test]
    fn payloads_past_the_maximum_age_are_released() {
        // 50 packets per second (an audio stream): 512 slots would hold ~10 s of payloads, but only
        // the last 2 s can ever be served.
        let t0 = Instant::now();
        let step = Duration::from_millis(20);
        let mut c = PacketCache::new();
        let payload = Bytes::from(vec![7u8; 160]);
        for e in 0..500i64 {
            let mut p = packet(e as u16);
            p.payload = payload.clone();
            c.insert(e, e, p, t0 + step * e as u32);
        }
        let live = c.occupied();
        assert!(
            (100..=102).contains(&live),
            "{live} payloads held; 2 s at 50/s is 101"
        );
        let now = t0 + step * 499;
        assert!(c.get(499 - 100, now).is_some(), "2 s old: still served");
        assert!(c.get(499 - 102, now).is_none());
        // Once everything is past the maximum age, the cache holds no reference to the buffer.
        assert!(!payload.is_unique());
        c.expire(now + Duration::from_secs(3));
        assert!(payload.is_unique(), "expired payloads are really released");
    }

    #[test]
    fn gaps_and_late_packets_do_not_stall_expiry() {
        let t0 = Instant::now();
        let mut c = PacketCache::new();
        // Every other packet lost, then a jump of 10,000 in the sequence space.
        for e in (0..200i64).step_by(2) {
            c.insert(
                e,
                e,
                packet(e as u16),
                t0 + Duration::from_millis(e as u64 * 10),
            );
        }
        let later = t0 + Duration::from_secs(10);
        c.insert(10_000, 10_000, packet(10_000), later);
        assert_eq!(c.occupied(), 1, "everything before the jump is 8+ s old");
        // A late packet from before the jump is not stored: it is more than a ring behind.
        c.insert(150, 10_000, packet(150), later);
        assert_eq!(c.occupied(), 1);
        assert_eq!(c.get(10_000, later).map(|p| p.sequence), Some(10_000));
    }

    #[test]
    fn a_quiet_layer_empties_on_expire_and_late_packets_are_released_too() {
        let t0 = Instant::now();
        let mut c = PacketCache::new();
        // Packets 1 and 0 arrive swapped, then 2..50; then the layer goes quiet.
        c.insert(1, 1, packet(1), t0);
        c.insert(0, 1, packet(0), t0);
        for e in 2..50i64 {
            c.insert(e, e, packet(e as u16), t0 + Duration::from_millis(e as u64));
        }
        assert_eq!(c.occupied(), 50);
        // Nothing arrives for 3 s; the router's tick expires the layer.
        c.expire(t0 + Duration::from_secs(3));
        assert_eq!(c.occupied(), 0, "a quiet layer holds nothing past 2 s");
        // A late packet from before the pause arrives, then nothing more.
        let later = t0 + Duration::from_secs(3);
        c.insert(10, 49, packet(10), later);
        assert_eq!(c.occupied(), 1);
        c.expire(later + Duration::from_secs(3));
        assert_eq!(c.occupied(), 0, "the late packet is released in its turn");
    }
}
