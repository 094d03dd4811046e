//! KeyframeThrottle: merges keyframe requests (PLI/FIR) for one publication layer so the publisher
//! gets at most one per [`KEYFRAME_THROTTLE`]. A request inside the window is remembered and sent
//! when the window ends, unless a keyframe arrived in the meantime.

use std::time::{Duration, Instant};

/// Minimum time between two keyframe requests sent upstream for one publication layer.
pub const KEYFRAME_THROTTLE: Duration = Duration::from_millis(500);

/// Throttle state of one publication layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyframeThrottle {
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    fn window_over(&self, now: Instant) -> bool {
        match self.last_sent {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= KEYFRAME_THROTTLE,
        }
    }

    /// A request: returns true if it must be sent upstream now; otherwise it is remembered.
    pub(crate) fn request(&mut self, now: Instant) -> bool {
        if self.window_over(now) {
            self.last_sent = Some(now);
            self.pending = false;
            true
        } else {
            self.pending = true;
            false
        }
    }

    /// Like [`request`](Self::request) but only if nothing was sent for `interval` (used to repeat a
    /// request while subscribers keep waiting for a keyframe); never remembers.
    pub(crate) fn request_if_quiet(&mut self, now: Instant, interval: Duration) -> bool {
        let quiet = match self.last_sent {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= interval,
        };
        quiet && self.request(now)
    }

    /// A keyframe arrived: a remembered request is no longer needed.
    pub(crate) fn on_keyframe(&mut self) {
        self.pending = false;
    }

    /// Whether a remembered request is due now (and marks it sent).
    pub(crate) fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.window_over(now) {
            self.pending = false;
            self.last_sent = Some(now);
            true
        } else {
            false
        }
    }

    /// When a remembered request becomes due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        self.last_sent.map(|t| t + KEYFRAME_THROTTLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_defers() {
        let t0 = Instant::now();
        let mut t = KeyframeThrottle::default();
        assert!(t.request(t0));
        assert!(!t.request(t0 + Duration::from_millis(100)));
        assert_eq!(t.deadline(), Some(t0 + KEYFRAME_THROTTLE));
        assert!(!t.poll(t0 + Duration::from_millis(499)));
        assert!(t.poll(t0 + Duration::from_millis(500)));
        assert!(!t.poll(t0 + Duration::from_millis(1500)));
    }

    #[test]
    fn keyframe_cancels_pending() {
        let t0 = Instant::now();
        let mut t = KeyframeThrottle::default();
        assert!(t.request(t0));
        assert!(!t.request(t0 + Duration::from_millis(100)));
        t.on_keyframe();
        assert_eq!(t.deadline(), None);
        assert!(!t.poll(t0 + Duration::from_secs(1)));
    }
}
