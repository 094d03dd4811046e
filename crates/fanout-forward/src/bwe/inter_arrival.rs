//! InterArrival: groups received packets into send-time groups (a video frame's packets, sent
//! within 5 ms, form one group; so does a burst the network delivered back to back) and yields the
//! delay variation between consecutive groups: how much longer the second took to arrive than to
//! be sent. A growing variation means a queue is building on the path.

/// Packets sent within this span of a group's first belong to it.
const GROUP_US: i64 = 5_000;
/// Packets arriving within this span of the group's last, earlier than their send spacing says
/// (the network released a queue), join the group too, up to `MAX_BURST_US` long.
const BURST_US: i64 = 5_000;
const MAX_BURST_US: i64 = 100_000;
/// An arrival gap this long (the path stalled, or the receiver's clock jumped) restarts grouping.
const RESET_US: i64 = 3_000_000;

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send: i64,
    last_send: i64,
    first_arrival: i64,
    last_arrival: i64,
}

/// The delay variation between two consecutive groups, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupDelta {
    pub send_delta_ms: f64,
    pub arrival_delta_ms: f64,
    /// When the later group's last packet arrived (receiver's clock, ms).
    pub arrival_ms: f64,
}

#[derive(Debug, Default)]
pub(crate) struct InterArrival {
    current: Option<Group>,
    previous: Option<Group>,
}

impl InterArrival {
    /// Takes one received packet (in arrival order; times in µs: `send_us` on the sender's clock,
    /// `arrival_us` on the receiver's). Returns the delta when this packet closes a group.
    pub fn push(&mut self, send_us: i64, arrival_us: i64) -> Option<GroupDelta> {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group::new(send_us, arrival_us));
            return None;
        };
        if send_us < cur.first_send {
            // Sent before the current group began: reordered on the path; it says nothing new.
            return None;
        }
        if arrival_us - cur.last_arrival > RESET_US || arrival_us < cur.last_arrival {
            *self = InterArrival::default();
            self.current = Some(Group::new(send_us, arrival_us));
            return None;
        }
        if cur.contains(send_us, arrival_us) {
            cur.last_send = cur.last_send.max(send_us);
            cur.last_arrival = arrival_us;
            return None;
        }
        let done = *cur;
        let delta = self.previous.map(|prev| GroupDelta {
            send_delta_ms: (done.last_send - prev.last_send) as f64 / 1000.0,
            arrival_delta_ms: (done.last_arrival - prev.last_arrival) as f64 / 1000.0,
            arrival_ms: done.last_arrival as f64 / 1000.0,
        });
        self.previous = Some(done);
        self.current = Some(Group::new(send_us, arrival_us));
        delta
    }
}

impl Group {
    fn new(send_us: i64, arrival_us: i64) -> Group {
        Group {
            first_send: send_us,
            last_send: send_us,
            first_arrival: arrival_us,
            last_arrival: arrival_us,
        }
    }

    fn contains(&self, send_us: i64, arrival_us: i64) -> bool {
        if send_us - self.first_send <= GROUP_US {
            return true;
        }
        let arrival_delta = arrival_us - self.last_arrival;
        let propagation_delta = arrival_delta - (send_us - self.last_send);
        arrival_delta <= BURST_US
            && propagation_delta < 0
            && arrival_us - self.first_arrival < MAX_BURST_US
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_groups_and_their_spacing_the_delta() {
        let mut ia = InterArrival::default();
        let mut deltas = Vec::new();
        // Three packets per frame, 1 ms apart, a frame every 33 ms; the path adds 2 ms per frame.
        for frame in 0..4i64 {
            for p in 0..3i64 {
                let send = frame * 33_000 + p * 1_000;
                let arrival = 50_000 + send + frame * 2_000;
                deltas.extend(ia.push(send, arrival));
            }
        }
        // Groups close when the next frame's first packet arrives: frames 0-1 and 1-2 give deltas.
        assert_eq!(deltas.len(), 2);
        for d in deltas {
            assert!((d.send_delta_ms - 33.0).abs() < 1e-9);
            assert!((d.arrival_delta_ms - 35.0).abs() < 1e-9);
        }
    }

    #[test]
    fn a_released_queue_burst_joins_the_group() {
        let mut ia = InterArrival::default();
        // Sent 10 ms apart but delivered 1 ms apart: one burst, so no delta.
        for i in 0..5i64 {
            assert_eq!(ia.push(i * 10_000, 200_000 + i * 1_000), None);
        }
    }

    #[test]
    fn a_long_stall_restarts_grouping() {
        let mut ia = InterArrival::default();
        ia.push(0, 0);
        ia.push(20_000, 20_000);
        assert_eq!(
            ia.push(40_000, 5_000_000),
            None,
            "stall: reset, not a 5 s delta"
        );
        assert_eq!(ia.push(60_000, 5_020_000), None);
        assert!(ia.push(80_000, 5_040_000).is_some());
    }
}
