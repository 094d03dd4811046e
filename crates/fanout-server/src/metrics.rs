//! Prometheus metrics at `/metrics`, all registered here and named `fanout_<noun>_<unit>`. Labels are
//! bounded: the application, the media kind, the drop reason, the worker, the signalling op and code.
//! Gauges and the media counters are read at scrape time from the hub and the workers' published
//! totals; signalling counters and the join histogram are updated as requests happen.

use crate::AppState;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::atomic::Ordering;

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    rooms: IntGaugeVec,
    users: IntGaugeVec,
    publishers: IntGaugeVec,
    subscribers: IntGaugeVec,
    packets_received: IntCounterVec,
    bytes_received: IntCounterVec,
    packets_forwarded: IntCounterVec,
    bytes_forwarded: IntCounterVec,
    nacks: IntCounterVec,
    keyframe_requests: IntCounterVec,
    packets_dropped: IntCounterVec,
    twcc_feedback: IntCounterVec,
    /// Subscriber congestion control: feedback read, probes, padding, pacer, allocations.
    congestion: IntCounterVec,
    pacer_delay: CounterVec,
    worker_peers: IntGaugeVec,
    worker_rooms: IntGaugeVec,
    worker_busy: CounterVec,
    worker_send_calls: IntCounterVec,
    worker_send_errors: IntCounterVec,
    worker_dropped: IntCounterVec,
    /// Signalling requests by op and result code (0 = ok).
    pub requests: IntCounterVec,
    /// Seconds from WebSocket open to a successful `enter_room`.
    pub join_seconds: Histogram,
    /// Callback deliveries by result (`ok`, `retry`, `dropped`).
    pub callbacks: IntCounterVec,
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    g
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c =
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    c
}

/// Raises a counter to `total` (totals only grow; the counter mirrors them).
fn mirror(c: &IntCounterVec, labels: &[&str], total: u64) {
    let m = c.with_label_values(labels);
    let current = m.get();
    if total > current {
        m.inc_by(total - current);
    }
}

impl Metrics {
    /// Creates and registers every metric. Names are static, so a failure here is a bug.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let join_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "fanout_join_seconds",
                "Seconds from WebSocket open to a successful enter_room",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .unwrap_or_else(|e| panic!("fanout_join_seconds: {e}"));
        registry
            .register(Box::new(join_seconds.clone()))
            .unwrap_or_else(|e| panic!("fanout_join_seconds: {e}"));
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(pc));
        }
        let m = Metrics {
            rooms: gauge(r, "fanout_rooms", "Open rooms", &["app"]),
            users: gauge(r, "fanout_users", "Users in rooms (including those in their reconnect grace period)", &["app"]),
            publishers: gauge(r, "fanout_publishers", "Users publishing at least one stream", &["app"]),
            subscribers: gauge(r, "fanout_subscribers", "Users receiving at least one stream", &["app"]),
            packets_received: counter(r, "fanout_packets_received_total", "RTP packets received from publishers", &["kind"]),
            bytes_received: counter(r, "fanout_bytes_received_total", "RTP bytes received from publishers (payload + 12-byte header)", &["kind"]),
            packets_forwarded: counter(r, "fanout_packets_forwarded_total", "RTP packets forwarded to subscribers", &["kind"]),
            bytes_forwarded: counter(r, "fanout_bytes_forwarded_total", "RTP bytes forwarded to subscribers (payload + 12-byte header)", &["kind"]),
            nacks: counter(r, "fanout_nacks_total", "NACKed sequence numbers: received from subscribers, served from the cache, sent to publishers", &["direction"]),
            keyframe_requests: counter(r, "fanout_keyframe_requests_total", "PLI/FIR received from subscribers and sent upstream", &["direction"]),
            packets_dropped: counter(r, "fanout_packets_dropped_total", "RTP packets not forwarded, by reason", &["reason"]),
            twcc_feedback: counter(r, "fanout_twcc_feedback_sent_total", "Transport-wide congestion-control feedback packets sent to publishers", &[]),
            congestion: counter(r, "fanout_congestion_events_total", "Subscriber congestion control: transport-cc feedback received and refused, probe clusters, padding bytes, paced packets released and dropped, layer allocation changes, streams paused for bandwidth, packets of VP8 temporal layers not forwarded to a subscriber", &["event"]),
            pacer_delay: {
                let c = CounterVec::new(Opts::new("fanout_pacer_delay_seconds_total", "Total time video packets waited in the subscribers' pacers (divide by fanout_congestion_events_total{event=\"paced\"} for the mean)"), &[])
                    .unwrap_or_else(|e| panic!("pacer delay: {e}"));
                r.register(Box::new(c.clone())).unwrap_or_else(|e| panic!("pacer delay: {e}"));
                c
            },
            worker_peers: gauge(r, "fanout_worker_peers", "Peer connections per media worker", &["worker"]),
            worker_rooms: gauge(r, "fanout_worker_rooms", "Rooms per media worker", &["worker"]),
            worker_send_calls: counter(
                r,
                "fanout_worker_send_calls_total",
                "UDP send system calls (sendmmsg, up to 64 datagrams each) per media worker",
                &["worker"],
            ),
            worker_send_errors: counter(
                r,
                "fanout_worker_send_errors_total",
                "Datagrams the kernel refused to send, per media worker",
                &["worker"],
            ),
            worker_dropped: counter(
                r,
                "fanout_worker_dropped_total",
                "Per media worker: datagrams the transport refused (reason=datagram: unknown sender, failed authentication, malformed) and NACKed packets not resent for lack of RTX (reason=retransmission)",
                &["worker", "reason"],
            ),
            worker_busy: {
                let c = CounterVec::new(
                    Opts::new(
                        "fanout_worker_busy_seconds_total",
                        "Time each media worker spent working rather than waiting (its rate is the worker's load)",
                    ),
                    &["worker"],
                )
                .unwrap_or_else(|e| panic!("fanout_worker_busy_seconds_total: {e}"));
                r.register(Box::new(c.clone()))
                    .unwrap_or_else(|e| panic!("fanout_worker_busy_seconds_total: {e}"));
                c
            },
            requests: counter(r, "fanout_signal_requests_total", "Signalling requests by op and result code (0 = ok)", &["op", "code"]),
            callbacks: counter(r, "fanout_callbacks_total", "Event callback deliveries by result", &["result"]),
            join_seconds,
            registry,
        };
        // Series that exist before anything happens, so dashboards and alerts see zeros, not gaps.
        m.twcc_feedback.with_label_values::<&str>(&[]);
        for result in ["ok", "retry", "dropped"] {
            m.callbacks.with_label_values(&[result]);
        }
        for op in [
            "enter_room",
            "exit_room",
            "switch_role",
            "ping",
            "publish",
            "subscribe_answer",
            "set_subscription",
            "ice_candidate",
        ] {
            m.requests.with_label_values(&[op, "0"]);
        }
        m
    }

    /// Refreshes the scrape-time values and renders the text exposition format.
    pub fn render(&self, state: &AppState) -> String {
        let counts = state.with_hub(|hub| hub.counts());
        for c in counts {
            let app = c.app.to_string();
            self.rooms.with_label_values(&[&app]).set(c.rooms as i64);
            self.users.with_label_values(&[&app]).set(c.users as i64);
            self.publishers
                .with_label_values(&[&app])
                .set(c.publishers as i64);
            self.subscribers
                .with_label_values(&[&app])
                .set(c.subscribers as i64);
        }
        let mut sums = [[0u64; 3]; 4];
        let mut nacks = [0u64; 3];
        let mut keyframes = [0u64; 2];
        let mut dropped = [0u64; 4];
        let mut twcc_feedback = 0u64;
        let mut congestion = [0u64; 9];
        let mut pacer_delay_us = 0u64;
        let mut estimates = [0u64; fanout_rtc::stats::ESTIMATE_BUCKETS.len() + 1];
        let mut estimate_sum = 0u64;
        for (n, w) in state.media.stats().iter().enumerate() {
            for (sum, counters) in
                sums.iter_mut()
                    .zip([&w.packets_in, &w.bytes_in, &w.packets_out, &w.bytes_out])
            {
                for (s, c) in sum.iter_mut().zip(counters.iter()) {
                    *s += c.load(Ordering::Relaxed);
                }
            }
            nacks[0] += w.nacks_received.load(Ordering::Relaxed);
            nacks[1] += w.nacks_served.load(Ordering::Relaxed);
            nacks[2] += w.nacks_sent_up.load(Ordering::Relaxed);
            keyframes[0] += w.keyframe_requests_in.load(Ordering::Relaxed);
            keyframes[1] += w.keyframe_requests_up.load(Ordering::Relaxed);
            dropped[0] += w.dropped_duplicate.load(Ordering::Relaxed);
            dropped[1] += w.dropped_out_of_window.load(Ordering::Relaxed);
            dropped[2] += w.dropped_limit.load(Ordering::Relaxed);
            dropped[3] += w.dropped_unknown.load(Ordering::Relaxed);
            twcc_feedback += w.twcc_feedback_sent.load(Ordering::Relaxed);
            for (sum, a) in congestion.iter_mut().zip([
                &w.twcc_feedback_received,
                &w.twcc_feedback_refused,
                &w.probe_clusters,
                &w.padding_bytes,
                &w.pacer_released,
                &w.pacer_dropped,
                &w.allocation_changes,
                &w.bandwidth_pauses,
                &w.temporal_skipped,
            ]) {
                *sum += a.load(Ordering::Relaxed);
            }
            pacer_delay_us += w.pacer_delay_us.load(Ordering::Relaxed);
            for (sum, a) in estimates.iter_mut().zip(w.estimates.iter()) {
                *sum += a.load(Ordering::Relaxed);
            }
            estimate_sum += w.estimate_sum.load(Ordering::Relaxed);
            let worker = n.to_string();
            self.worker_peers
                .with_label_values(&[&worker])
                .set(w.peers.load(Ordering::Relaxed) as i64);
            self.worker_rooms
                .with_label_values(&[&worker])
                .set(w.rooms.load(Ordering::Relaxed) as i64);
            mirror(
                &self.worker_send_calls,
                &[&worker],
                w.send_calls.load(Ordering::Relaxed),
            );
            mirror(
                &self.worker_send_errors,
                &[&worker],
                w.send_errors.load(Ordering::Relaxed),
            );
            mirror(
                &self.worker_dropped,
                &[&worker, "datagram"],
                w.dropped_datagrams.load(Ordering::Relaxed),
            );
            mirror(
                &self.worker_dropped,
                &[&worker, "retransmission"],
                w.dropped_retransmissions.load(Ordering::Relaxed),
            );
            let busy = self.worker_busy.with_label_values(&[&worker]);
            let total = w.busy_ns.load(Ordering::Relaxed) as f64 / 1e9;
            if total > busy.get() {
                busy.inc_by(total - busy.get());
            }
        }
        for (i, kind) in fanout_rtc::stats::KIND_NAMES.iter().enumerate() {
            mirror(&self.packets_received, &[kind], sums[0][i]);
            mirror(&self.bytes_received, &[kind], sums[1][i]);
            mirror(&self.packets_forwarded, &[kind], sums[2][i]);
            mirror(&self.bytes_forwarded, &[kind], sums[3][i]);
        }
        mirror(&self.nacks, &["received"], nacks[0]);
        mirror(&self.nacks, &["served"], nacks[1]);
        mirror(&self.nacks, &["sent_upstream"], nacks[2]);
        mirror(&self.keyframe_requests, &["received"], keyframes[0]);
        mirror(&self.keyframe_requests, &["sent_upstream"], keyframes[1]);
        mirror(&self.twcc_feedback, &[], twcc_feedback);
        for (event, n) in [
            "feedback_received",
            "feedback_refused",
            "probe_cluster",
            "padding_bytes",
            "paced",
            "pacer_dropped",
            "allocation_change",
            "bandwidth_pause",
            "temporal_skipped",
        ]
        .iter()
        .zip(congestion)
        {
            mirror(&self.congestion, &[event], n);
        }
        let delay = self.pacer_delay.with_label_values(&[] as &[&str]);
        let total = pacer_delay_us as f64 / 1e6;
        if total > delay.get() {
            delay.inc_by(total - delay.get());
        }
        for (reason, n) in ["duplicate", "out_of_window", "limit", "unknown"]
            .iter()
            .zip(dropped)
        {
            mirror(&self.packets_dropped, &[reason], n);
        }
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        let mut text = String::from_utf8(buf).unwrap_or_default();
        estimate_histogram(&mut text, &estimates, estimate_sum);
        text
    }
}

/// The subscriber bandwidth estimate histogram, in the text exposition format: the workers count
/// their observations in fixed buckets (no lock on the media path), so it is written here rather
/// than observed into a `prometheus::Histogram`.
fn estimate_histogram(out: &mut String, counts: &[u64], sum_bps: u64) {
    use std::fmt::Write;
    let name = "fanout_subscriber_bandwidth_estimate_bps";
    let _ = writeln!(
        out,
        "# HELP {name} Bandwidth estimates of subscribing connections, as given to the stream allocator"
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (bound, n) in fanout_rtc::stats::ESTIMATE_BUCKETS.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {sum_bps}");
    let _ = writeln!(out, "{name}_count {cumulative}");
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
