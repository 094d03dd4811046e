//! Outgoing datagrams in reused buffers. The engine writes each datagram (a rewritten header, the
//! payload copied once, sealed in place) straight into a slot; the driver sends every queued slot
//! (`sendmmsg`) and clears the queue, which keeps the buffers for the next turn. Buffers are
//! allocated only while the queue grows past its high-water mark.

use std::net::SocketAddr;

/// Room for the largest datagram Fanout sends: an MTU-sized packet plus SRTP's tag.
pub const SLOT_BYTES: usize = 1500 + 64;

pub struct TxQueue {
    slots: Vec<[u8; SLOT_BYTES]>,
    queued: Vec<(SocketAddr, usize)>,
}

impl Default for TxQueue {
    fn default() -> Self {
        TxQueue::with_capacity(64)
    }
}

impl TxQueue {
    pub fn with_capacity(n: usize) -> TxQueue {
        TxQueue {
            slots: vec![[0u8; SLOT_BYTES]; n],
            queued: Vec::with_capacity(n),
        }
    }

    /// The buffer for the next datagram; it is queued only by [`TxQueue::commit`].
    pub fn next_slot(&mut self) -> &mut [u8; SLOT_BYTES] {
        let n = self.queued.len();
        if n == self.slots.len() {
            self.slots.push([0u8; SLOT_BYTES]);
        }
        &mut self.slots[n]
    }

    /// Queues the first `len` bytes of the slot [`TxQueue::next_slot`] returned.
    pub fn commit(&mut self, to: SocketAddr, len: usize) {
        debug_assert!(len <= SLOT_BYTES);
        self.queued.push((to, len));
    }

    /// Copies `data` into a slot and queues it (control datagrams: STUN, DTLS).
    pub fn push(&mut self, to: SocketAddr, data: &[u8]) {
        if data.len() > SLOT_BYTES {
            return;
        }
        let slot = self.next_slot();
        slot[..data.len()].copy_from_slice(data);
        self.commit(to, data.len());
    }

    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Queued datagram `i` (which must be below [`TxQueue::len`]).
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        let (to, len) = self.queued[i];
        (to, &self.slots[i][..len])
    }

    /// The queued datagrams, in order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.queued
            .iter()
            .zip(&self.slots)
            .map(|((to, len), slot)| (*to, &slot[..*len]))
    }

    /// Forgets the queued datagrams; keeps their buffers.
    pub fn clear(&mut self) {
        self.queued.clear();
    }
}
