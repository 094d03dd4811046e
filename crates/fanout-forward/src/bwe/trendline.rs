//! Trendline: the delay-based overuse detector. The accumulated inter-group delay variation is
//! smoothed, and a least-squares line through the last [`WINDOW`] points gives the trend (ms of
//! extra delay per ms): positive while a queue grows. The trend, scaled, is compared with an
//! adaptive threshold that follows it slowly, so that the detector reacts to a queue building up
//! but gets used to the noise of a path (and, competing with loss-based flows, does not starve).

use super::inter_arrival::GroupDelta;

/// Points in the regression.
const WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const THRESHOLD_GAIN: f64 = 4.0;
/// The trend is scaled by the number of deltas seen, up to this many.
const MAX_DELTAS: u32 = 60;
const INITIAL_THRESHOLD_MS: f64 = 12.5;
const MIN_THRESHOLD_MS: f64 = 6.0;
const MAX_THRESHOLD_MS: f64 = 600.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// A trend this far above the threshold is a spike: the threshold does not follow it.
const MAX_ADAPT_OFFSET_MS: f64 = 15.0;
/// Over the threshold for this long (and two deltas in a row) is overuse.
const OVERUSE_TIME_MS: f64 = 10.0;

/// What the path's delay says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Usage {
    #[default]
    Normal,
    /// A queue is building: send less.
    Overusing,
    /// A queue is draining: hold the rate until it has.
    Underusing,
}

#[derive(Debug)]
pub(crate) struct Trendline {
    points: [(f64, f64); WINDOW],
    len: usize,
    head: usize,
    first_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    deltas: u32,
    trend: f64,
    previous_trend: f64,
    threshold_ms: f64,
    last_threshold_update_ms: Option<f64>,
    /// Time over the threshold so far (negative: not over it).
    overusing_ms: f64,
    overuse_count: u32,
    usage: Usage,
}

impl Default for Trendline {
    fn default() -> Self {
        Trendline {
            points: [(0.0, 0.0); WINDOW],
            len: 0,
            head: 0,
            first_arrival_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            deltas: 0,
            trend: 0.0,
            previous_trend: 0.0,
            threshold_ms: INITIAL_THRESHOLD_MS,
            last_threshold_update_ms: None,
            overusing_ms: -1.0,
            overuse_count: 0,
            usage: Usage::Normal,
        }
    }
}

impl Trendline {
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The scaled trend the detector last compared with its threshold, and the threshold (ms).
    pub fn signal(&self) -> (f64, f64) {
        (
            f64::from(self.deltas.min(MAX_DELTAS)) * self.trend * THRESHOLD_GAIN,
            self.threshold_ms,
        )
    }

    pub fn update(&mut self, d: GroupDelta) -> Usage {
        let variation = d.arrival_delta_ms - d.send_delta_ms;
        self.deltas = self.deltas.saturating_add(1);
        self.accumulated_ms += variation;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let first = *self.first_arrival_ms.get_or_insert(d.arrival_ms);
        self.points[self.head] = (d.arrival_ms - first, self.smoothed_ms);
        self.head = (self.head + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        if self.len == WINDOW {
            if let Some(slope) = self.slope() {
                self.trend = slope;
            }
        }
        self.detect(d.send_delta_ms, d.arrival_ms);
        self.usage
    }

    fn slope(&self) -> Option<f64> {
        let n = self.len as f64;
        let pts = &self.points[..self.len];
        let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (num, den) = pts.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
            (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
        });
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, send_delta_ms: f64, now_ms: f64) {
        if self.deltas < 2 {
            return;
        }
        let (modified, threshold) = self.signal();
        if modified > threshold {
            if self.overusing_ms < 0.0 {
                // First time over: assume it has been so for half the spacing.
                self.overusing_ms = send_delta_ms / 2.0;
            } else {
                self.overusing_ms += send_delta_ms;
            }
            self.overuse_count += 1;
            if self.overusing_ms > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && self.trend >= self.previous_trend
            {
                self.overusing_ms = 0.0;
                self.overuse_count = 0;
                self.usage = Usage::Overusing;
            }
        } else if modified < -threshold {
            self.overusing_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Underusing;
        } else {
            self.overusing_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.previous_trend = self.trend;
        self.adapt_threshold(modified, now_ms);
    }

    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_update_ms.get_or_insert(now_ms);
        self.last_threshold_update_ms = Some(now_ms);
        if modified.abs() > self.threshold_ms + MAX_ADAPT_OFFSET_MS {
            return;
        }
        let k = if modified.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt;
        self.threshold_ms = self.threshold_ms.clamp(MIN_THRESHOLD_MS, MAX_THRESHOLD_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(extra_ms_per_group: f64, groups: usize) -> Vec<Usage> {
        let mut t = Trendline::default();
        (0..groups)
            .map(|i| {
                t.update(GroupDelta {
                    send_delta_ms: 20.0,
                    arrival_delta_ms: 20.0 + extra_ms_per_group,
                    arrival_ms: 1000.0 + i as f64 * (20.0 + extra_ms_per_group),
                })
            })
            .collect()
    }

    #[test]
    fn a_steady_path_is_normal() {
        assert!(run(0.0, 200).iter().all(|u| *u == Usage::Normal));
    }

    #[test]
    fn a_growing_queue_is_overuse_within_a_window() {
        // 2 ms more per 20 ms group: a link 10% too slow.
        let usage = run(2.0, 40);
        let first = usage.iter().position(|u| *u == Usage::Overusing);
        assert!(matches!(first, Some(i) if i < 25), "{usage:?}");
    }

    #[test]
    fn a_draining_queue_is_underuse() {
        let usage = run(-2.0, 40);
        assert!(usage.contains(&Usage::Underusing), "{usage:?}");
        assert!(!usage.contains(&Usage::Overusing));
    }
}
