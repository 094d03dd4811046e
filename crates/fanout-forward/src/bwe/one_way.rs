//! QueueDelay: how much of a packet's one-way delay is queueing. The sender's and receiver's
//! clocks are unrelated, so a one-way delay (arrival minus send time) is only meaningful against
//! its own minimum: the minimum over the last ten seconds is the empty path, and the excess is
//! the queue the packet waited in.

/// One minimum per bucket; the floor is the minimum of the last [`BUCKETS`].
const BUCKET_US: i64 = 1_000_000;
const BUCKETS: usize = 10;

#[derive(Debug)]
pub(crate) struct QueueDelay {
    mins: [i64; BUCKETS],
    current: usize,
    bucket_start: Option<i64>,
}

impl Default for QueueDelay {
    fn default() -> Self {
        QueueDelay {
            mins: [i64::MAX; BUCKETS],
            current: 0,
            bucket_start: None,
        }
    }
}

impl QueueDelay {
    /// Takes a packet's times (µs); returns its queueing delay in ms.
    pub fn push(&mut self, send_us: i64, arrival_us: i64) -> f64 {
        let owd = arrival_us.saturating_sub(send_us);
        let start = *self.bucket_start.get_or_insert(arrival_us);
        let steps = (arrival_us - start) / BUCKET_US;
        if steps > 0 {
            for _ in 0..steps.min(BUCKETS as i64) {
                self.current = (self.current + 1) % BUCKETS;
                self.mins[self.current] = i64::MAX;
            }
            self.bucket_start = Some(start + steps * BUCKET_US);
        } else if steps < 0 {
            // The receiver's clock went back: start over.
            *self = QueueDelay::default();
            self.bucket_start = Some(arrival_us);
        }
        self.mins[self.current] = self.mins[self.current].min(owd);
        let floor = self.mins.iter().copied().min().unwrap_or(owd);
        owd.saturating_sub(floor) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_over_the_recent_minimum_is_the_queue() {
        let mut q = QueueDelay::default();
        // Clocks 7 s apart; the empty path takes 30 ms.
        let offset = 7_000_000;
        assert_eq!(q.push(0, offset + 30_000), 0.0);
        assert_eq!(q.push(100_000, offset + 180_000), 50.0);
        // Eleven seconds on, the old minimum has aged out: a longer route is the new floor.
        let t = 11_000_000;
        assert_eq!(q.push(t, offset + t + 45_000), 0.0);
        assert_eq!(q.push(t + 10_000, offset + t + 10_000 + 60_000), 15.0);
    }
}
