//! The SRTP/SRTCP replay window (RFC 3711 §3.3.2): a packet whose index is more than the window behind
//! the highest one authenticated, or that was already authenticated, is rejected. Checking is apart
//! from accepting so that a forged packet (which fails authentication) never moves the window.

/// How many indices behind the highest one are still accepted (libsrtp's default is 128).
pub const WINDOW: u64 = 128;

/// A sliding window over 48-bit SRTP or 31-bit SRTCP indices.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// The highest index accepted, once one has been.
    highest: Option<u64>,
    /// Bit `i` set: `highest - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `index` may be accepted: new, or inside the window and not seen yet.
    pub fn check(&self, index: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if index > h => true,
            Some(h) => {
                let behind = h - index;
                behind < WINDOW && self.seen & (1u128 << behind) == 0
            }
        }
    }

    /// Records `index` as authenticated. Call only after [`Self::check`] said yes.
    pub fn accept(&mut self, index: u64) {
        match self.highest {
            None => {
                self.highest = Some(index);
                self.seen = 1;
            }
            Some(h) if index > h => {
                let ahead = index - h;
                self.seen = if ahead >= WINDOW {
                    1
                } else {
                    (self.seen << ahead) | 1
                };
                self.highest = Some(index);
            }
            Some(h) => {
                let behind = h - index;
                if behind < WINDOW {
                    self.seen |= 1u128 << behind;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_new_and_reordered_rejects_duplicates_and_old() {
        let mut w = ReplayWindow::default();
        assert!(w.check(10));
        w.accept(10);
        assert!(!w.check(10), "duplicate");
        assert!(w.check(12));
        w.accept(12);
        assert!(w.check(11), "reordered inside the window");
        w.accept(11);
        assert!(!w.check(11));
        w.accept(12 + WINDOW);
        assert!(!w.check(12), "fell out of the window");
        assert!(w.check(13), "never seen, still inside");
        assert!(!w.check(12 + WINDOW));
    }

    #[test]
    fn a_jump_past_the_window_forgets_the_old_bits() {
        let mut w = ReplayWindow::default();
        w.accept(1);
        w.accept(1 + 10 * WINDOW);
        assert!(w.check(2 + 9 * WINDOW));
        assert!(!w.check(1 + 10 * WINDOW));
    }
}
