//! Counters a media worker publishes for metrics: plain atomics, written by the worker about once a
//! second from its local totals (never per packet), read by the metrics endpoint.

use fanout_forward::{MediaKind, RouterStats};
use std::sync::atomic::{AtomicU64, Ordering};

/// Index of a kind in the per-kind arrays.
pub fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
        MediaKind::SubVideo => 2,
    }
}

/// Names of the kinds, in `kind_index` order.
pub const KIND_NAMES: [&str; 3] = ["audio", "video", "sub_video"];

/// One worker's published totals.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub packets_in: [AtomicU64; 3],
    pub bytes_in: [AtomicU64; 3],
    pub packets_out: [AtomicU64; 3],
    pub bytes_out: [AtomicU64; 3],
    pub nacks_received: AtomicU64,
    pub nacks_served: AtomicU64,
    pub nacks_sent_up: AtomicU64,
    pub keyframe_requests_in: AtomicU64,
    pub keyframe_requests_up: AtomicU64,
    pub dropped_duplicate: AtomicU64,
    pub dropped_out_of_window: AtomicU64,
    pub dropped_limit: AtomicU64,
    pub dropped_unknown: AtomicU64,
    pub peers: AtomicU64,
    pub rooms: AtomicU64,
    /// Nanoseconds spent working (not waiting for datagrams) since start.
    pub busy_ns: AtomicU64,
    /// `sendmmsg` (or `sendto`) calls made.
    pub send_calls: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Datagrams the transport refused (unknown sender, failed authentication, malformed).
    pub dropped_datagrams: AtomicU64,
    /// NACKed packets not resent because the subscriber negotiated no RTX.
    pub dropped_retransmissions: AtomicU64,
    /// Transport-cc feedback packets sent to publishers.
    pub twcc_feedback_sent: AtomicU64,
    /// Subscriber congestion control (see [`LocalCounters`]).
    pub twcc_feedback_received: AtomicU64,
    pub twcc_feedback_refused: AtomicU64,
    pub probe_clusters: AtomicU64,
    pub padding_bytes: AtomicU64,
    pub pacer_released: AtomicU64,
    pub pacer_delay_us: AtomicU64,
    pub pacer_dropped: AtomicU64,
    /// Estimates given to the routers, by [`ESTIMATE_BUCKETS`] (the last: above them), and
    /// their sum (b/s).
    pub estimates: [AtomicU64; ESTIMATE_BUCKETS.len() + 1],
    pub estimate_sum: AtomicU64,
    /// The routers' bandwidth allocation changes and pauses for bandwidth.
    pub allocation_changes: AtomicU64,
    pub bandwidth_pauses: AtomicU64,
    /// Packets of a VP8 temporal layer above a down-track's, not forwarded.
    pub temporal_skipped: AtomicU64,
}

/// Upper bounds (b/s) of the subscriber bandwidth estimate histogram.
pub const ESTIMATE_BUCKETS: [u64; 10] = [
    100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000,
    5_000_000,
];

/// The worker's own running totals (single-threaded, published with `publish`).
#[derive(Debug, Default, Clone)]
pub struct LocalCounters {
    pub packets_in: [u64; 3],
    pub bytes_in: [u64; 3],
    pub packets_out: [u64; 3],
    pub bytes_out: [u64; 3],
    pub busy_ns: u64,
    pub send_calls: u64,
    pub send_errors: u64,
    /// Datagrams the transport refused (unknown sender, failed authentication, malformed).
    pub dropped_datagrams: u64,
    /// NACKed packets not resent because the subscriber negotiated no RTX.
    pub dropped_retransmissions: u64,
    /// Transport-cc feedback packets sent to publishers.
    pub twcc_feedback_sent: u64,
    /// Transport-cc feedback packets received from subscribers, and refused as malformed.
    pub twcc_feedback_received: u64,
    pub twcc_feedback_refused: u64,
    /// Probe clusters started on subscribing connections, and padding bytes sent for them.
    pub probe_clusters: u64,
    pub padding_bytes: u64,
    /// Video packets the subscribers' pacers held and released (and their total wait), and
    /// dropped for waiting too long or overflowing.
    pub pacer_released: u64,
    pub pacer_delay_us: u64,
    pub pacer_dropped: u64,
    /// Estimates given to the routers, by [`ESTIMATE_BUCKETS`], and their sum (b/s).
    pub estimates: [u64; ESTIMATE_BUCKETS.len() + 1],
    pub estimate_sum: u64,
}

impl LocalCounters {
    /// Counts one estimate given to a router.
    pub fn observe_estimate(&mut self, bps: u64) {
        let i = ESTIMATE_BUCKETS
            .iter()
            .position(|b| bps <= *b)
            .unwrap_or(ESTIMATE_BUCKETS.len());
        self.estimates[i] += 1;
        self.estimate_sum = self.estimate_sum.saturating_add(bps);
    }
}

impl WorkerStats {
    /// Stores totals: the worker's own counters plus the routers' (current and retired).
    pub fn publish(&self, local: &LocalCounters, routers: &RouterStats, peers: u64, rooms: u64) {
        for i in 0..3 {
            self.packets_in[i].store(local.packets_in[i], Ordering::Relaxed);
            self.bytes_in[i].store(local.bytes_in[i], Ordering::Relaxed);
            self.packets_out[i].store(local.packets_out[i], Ordering::Relaxed);
            self.bytes_out[i].store(local.bytes_out[i], Ordering::Relaxed);
        }
        self.nacks_received
            .store(routers.nacks_received, Ordering::Relaxed);
        self.nacks_served
            .store(routers.nacks_served, Ordering::Relaxed);
        self.nacks_sent_up
            .store(routers.nacks_sent_up, Ordering::Relaxed);
        self.keyframe_requests_in
            .store(routers.keyframe_requests_in, Ordering::Relaxed);
        self.keyframe_requests_up
            .store(routers.keyframe_requests_up, Ordering::Relaxed);
        self.dropped_duplicate
            .store(routers.dropped_duplicate, Ordering::Relaxed);
        self.dropped_out_of_window
            .store(routers.dropped_out_of_window, Ordering::Relaxed);
        self.dropped_limit
            .store(routers.dropped_limit, Ordering::Relaxed);
        self.dropped_unknown
            .store(routers.dropped_unknown, Ordering::Relaxed);
        self.peers.store(peers, Ordering::Relaxed);
        self.rooms.store(rooms, Ordering::Relaxed);
        self.busy_ns.store(local.busy_ns, Ordering::Relaxed);
        self.send_calls.store(local.send_calls, Ordering::Relaxed);
        self.send_errors.store(local.send_errors, Ordering::Relaxed);
        self.dropped_datagrams
            .store(local.dropped_datagrams, Ordering::Relaxed);
        self.dropped_retransmissions
            .store(local.dropped_retransmissions, Ordering::Relaxed);
        self.twcc_feedback_sent
            .store(local.twcc_feedback_sent, Ordering::Relaxed);
        for (a, v) in [
            (&self.twcc_feedback_received, local.twcc_feedback_received),
            (&self.twcc_feedback_refused, local.twcc_feedback_refused),
            (&self.probe_clusters, local.probe_clusters),
            (&self.padding_bytes, local.padding_bytes),
            (&self.pacer_released, local.pacer_released),
            (&self.pacer_delay_us, local.pacer_delay_us),
            (&self.pacer_dropped, local.pacer_dropped),
            (&self.estimate_sum, local.estimate_sum),
            (&self.allocation_changes, routers.allocation_changes),
            (&self.bandwidth_pauses, routers.bandwidth_pauses),
            (&self.temporal_skipped, routers.temporal_skipped),
        ] {
            a.store(v, Ordering::Relaxed);
        }
        for (a, v) in self.estimates.iter().zip(local.estimates) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

/// Adds `b`'s counters into `a` (for retiring a closed room's router).
pub fn add_router_stats(a: &mut RouterStats, b: &RouterStats) {
    a.rtp_in += b.rtp_in;
    a.rtp_forwarded += b.rtp_forwarded;
    a.dropped_duplicate += b.dropped_duplicate;
    a.dropped_out_of_window += b.dropped_out_of_window;
    a.dropped_limit += b.dropped_limit;
    a.dropped_unknown += b.dropped_unknown;
    a.nacks_received += b.nacks_received;
    a.nacks_served += b.nacks_served;
    a.nack_misses += b.nack_misses;
    a.nacks_sent_up += b.nacks_sent_up;
    a.keyframe_requests_in += b.keyframe_requests_in;
    a.keyframe_requests_up += b.keyframe_requests_up;
    a.unknown_ids += b.unknown_ids;
    a.refused_commands += b.refused_commands;
    a.source_changes += b.source_changes;
    a.layer_switches += b.layer_switches;
    a.limit_events += b.limit_events;
    a.allocation_changes += b.allocation_changes;
    a.bandwidth_pauses += b.bandwidth_pauses;
    a.temporal_skipped += b.temporal_skipped;
}
