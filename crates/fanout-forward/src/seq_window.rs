//! SeqWindow: owns the extended (wrap-free) sequence number space of one publication layer and the
//! bitmap of which recent sequence numbers arrived, so duplicates and too-old packets are dropped
//! and late-but-missing packets are recognised. It also recognises a publisher's sequence restart
//! (RFC 3550 A.1 style: two consecutive packets after a huge jump).

/// How many sequence numbers behind the highest one are still accepted (late packets, retransmissions).
pub const SEQ_WINDOW: i64 = 1024;

/// A forward jump larger than this (or a backward one larger than this) is not believed at once: the
/// packet is dropped, and if the next packet continues from it the stream is considered restarted.
pub const MAX_DROPOUT: i64 = 3000;

const WORDS: usize = (SEQ_WINDOW as usize) / 64;

/// The verdict on one arriving sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// A new highest sequence number; `gap` sequence numbers were skipped since the previous highest
    /// (`prev_highest` is `None` for the first packet of the stream).
    New {
        ext: i64,
        prev_highest: Option<i64>,
        gap: i64,
    },
    /// An older sequence number inside the window that had not arrived yet.
    Late { ext: i64 },
    /// Already received.
    Duplicate,
    /// Before the window, or an unbelievable jump (see [`MAX_DROPOUT`]).
    OutOfWindow,
    /// The packet continues a huge jump seen on the previous packet: the publisher restarted its
    /// sequence numbers. The caller resets the layer and inserts the packet again.
    Restart,
}

/// Extended sequence numbers and a received-bitmap of the last [`SEQ_WINDOW`] numbers.
#[derive(Debug, Clone)]
pub(crate) struct SeqWindow {
    highest: Option<i64>,
    bits: [u64; WORDS],
    /// After a huge jump, the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
}

impl Default for SeqWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqWindow {
    pub(crate) fn new() -> Self {
        Self {
            highest: None,
            bits: [0; WORDS],
            bad_seq: None,
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    /// The highest extended sequence number received so far.
    #[cfg(test)]
    pub(crate) fn highest(&self) -> Option<i64> {
        self.highest
    }

    /// Classifies `seq` and records it when it is accepted (`New` or `Late`).
    pub(crate) fn insert(&mut self, seq: u16) -> Arrival {
        let Some(highest) = self.highest else {
            let ext = i64::from(seq);
            self.highest = Some(ext);
            self.set(ext);
            return Arrival::New {
                ext,
                prev_highest: None,
                gap: 0,
            };
        };
        // Truncating to 16 bits and back to signed gives the shortest signed distance.
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        if delta.abs() > MAX_DROPOUT {
            if self.bad_seq == Some(seq) {
                self.bad_seq = None;
                return Arrival::Restart;
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return Arrival::OutOfWindow;
        }
        let ext = highest + delta;
        if delta > 0 {
            self.bad_seq = None;
            if delta >= SEQ_WINDOW {
                self.bits = [0; WORDS];
            } else {
                for e in highest + 1..ext {
                    self.clear(e);
                }
            }
            self.set(ext);
            self.highest = Some(ext);
            return Arrival::New {
                ext,
                prev_highest: Some(highest),
                gap: delta - 1,
            };
        }
        if delta == 0 {
            return Arrival::Duplicate;
        }
        if -delta >= SEQ_WINDOW {
            return Arrival::OutOfWindow;
        }
        if self.is_set(ext) {
            Arrival::Duplicate
        } else {
            self.set(ext);
            Arrival::Late { ext }
        }
    }

    fn slot(ext: i64) -> (usize, u64) {
        // Two's complement masking keeps negative extended numbers (late packets before the first
        // one) consistent with the positive ones.
        let idx = (ext & (SEQ_WINDOW - 1)) as usize;
        (idx / 64, 1u64 << (idx % 64))
    }

    fn set(&mut self, ext: i64) {
        let (w, b) = Self::slot(ext);
        self.bits[w] |= b;
    }

    fn clear(&mut self, ext: i64) {
        let (w, b) = Self::slot(ext);
        self.bits[w] &= !b;
    }

    fn is_set(&self, ext: i64) -> bool {
        let (w, b) = Self::slot(ext);
        self.bits[w] & b != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_duplicate() {
        let mut w = SeqWindow::new();
        assert!(matches!(w.insert(10), Arrival::New { ext: 10, .. }));
        assert!(matches!(
            w.insert(11),
            Arrival::New {
                ext: 11,
                gap: 0,
                ..
            }
        ));
        assert_eq!(w.insert(11), Arrival::Duplicate);
        assert_eq!(w.insert(10), Arrival::Duplicate);
    }

    #[test]
    fn wraps_around() {
        let mut w = SeqWindow::new();
        w.insert(65534);
        w.insert(65535);
        assert!(matches!(w.insert(0), Arrival::New { ext: 65536, .. }));
        assert!(matches!(
            w.insert(2),
            Arrival::New {
                ext: 65538,
                gap: 1,
                ..
            }
        ));
        assert_eq!(w.insert(1), Arrival::Late { ext: 65537 });
        assert_eq!(w.insert(1), Arrival::Duplicate);
        assert_eq!(w.highest(), Some(65538));
    }

    #[test]
    fn late_before_first_packet() {
        let mut w = SeqWindow::new();
        w.insert(0);
        assert_eq!(w.insert(65535), Arrival::Late { ext: -1 });
        assert_eq!(w.insert(65535), Arrival::Duplicate);
    }

    #[test]
    fn too_old_and_restart() {
        let mut w = SeqWindow::new();
        for s in 0..2000u16 {
            w.insert(s);
        }
        assert_eq!(w.insert(100), Arrival::OutOfWindow);
        assert_eq!(w.insert(100), Arrival::OutOfWindow);
        // A jump of 30000 is not believed until the next packet continues it.
        assert_eq!(w.insert(32000), Arrival::OutOfWindow);
        assert_eq!(w.insert(32001), Arrival::Restart);
    }

    #[test]
    fn big_gap_clears_bitmap() {
        let mut w = SeqWindow::new();
        w.insert(0);
        assert!(matches!(w.insert(2000), Arrival::New { gap: 1999, .. }));
        // 1500 is inside the window again and was never received.
        assert_eq!(w.insert(1500), Arrival::Late { ext: 1500 });
    }
}
