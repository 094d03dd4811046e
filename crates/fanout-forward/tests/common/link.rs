//! A simulated path for the bandwidth estimator, in virtual time: a sender (audio at 50 packets
//! a second, video frames at 30 a second at the rate the estimate allows, paced, and the probe
//! clusters the estimator asks for), a drop-tail bottleneck (capacity, queue limit, propagation
//! delay, random loss, constant cross traffic, capacity steps), and a receiver that sends
//! transport-wide feedback every 50 ms back over an uncongested return path.

#![allow(dead_code)]

use fanout_forward::bwe::{BweConfig, PacketReport, ProbeId, SendSideBwe};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const TICK: Duration = Duration::from_micros(100);
const AUDIO_BYTES: usize = 120;
const AUDIO_EVERY: Duration = Duration::from_millis(20);
const FRAME_EVERY: Duration = Duration::from_micros(33_333);
const MTU: usize = 1200;
const PROBE_BYTES: usize = 1100;
const PACING_FACTOR: f64 = 2.5;
const FEEDBACK_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Path {
    /// (from, capacity b/s), in time order; the first entry at zero.
    pub capacity: Vec<(Duration, u64)>,
    /// Drop-tail limit: packets that would wait longer than this are dropped.
    pub queue_limit: Duration,
    pub propagation: Duration,
    /// Random loss after the bottleneck (0..1).
    pub loss: f64,
    /// Constant cross traffic into the same queue (b/s).
    pub cross_bps: u64,
}

impl Path {
    pub fn fixed(bps: u64) -> Path {
        Path {
            capacity: vec![(Duration::ZERO, bps)],
            queue_limit: Duration::from_millis(300),
            propagation: Duration::from_millis(25),
            loss: 0.0,
            cross_bps: 0,
        }
    }

    pub fn capacity_at(&self, t: Duration) -> u64 {
        self.capacity
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map_or(0, |(_, c)| *c)
    }
}

#[derive(Debug, Clone, Copy)]
struct Probing {
    id: ProbeId,
    bps: u64,
    start: Instant,
    bytes: u64,
    packets: u32,
    min_bytes: u64,
    min_packets: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
    Probe,
    Cross,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    arrival: Instant,
    seq: u64,
    kind: Kind,
}

/// What happened in one 100 ms window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub at: Duration,
    pub capacity_bps: u64,
    pub estimate_bps: u64,
    /// The estimator's probe-measured ceiling, if any.
    pub ceiling_bps: Option<u64>,
    /// Our bytes put on the path (audio, video, probes), and delivered.
    pub sent_bytes: u64,
    pub delivered_bytes: u64,
    pub audio_sent: u32,
    pub audio_lost: u32,
}

pub struct Sim {
    pub path: Path,
    pub bwe: SendSideBwe,
    /// The most the application would send (b/s): the allocator's desire.
    pub app_max_bps: u64,
    t0: Instant,
    now: Instant,
    rng: u64,
    // Sender.
    next_audio: Instant,
    next_frame: Instant,
    /// Video packets waiting in the pacer (sizes), and probe packets with their send times.
    pacer: VecDeque<usize>,
    probing: Option<Probing>,
    next_paced: Instant,
    next_seq: u64,
    cross_credit: f64,
    // Bottleneck.
    busy_until: Instant,
    in_flight: VecDeque<InFlight>,
    // Receiver: received (seq, arrival µs), and the first sequence not yet reported.
    received: Vec<(u64, i64)>,
    report_from: u64,
    next_feedback: Instant,
    /// Feedback on the return path: (deliver at, reports).
    returning: VecDeque<(Instant, Vec<PacketReport>)>,
    // Measurements.
    pub windows: Vec<Window>,
    current: Window,
    /// Queueing delay (ms) of each of our packets at the bottleneck.
    pub queue_delays_ms: Vec<(Duration, f64)>,
}

impl Sim {
    pub fn new(path: Path, app_max_bps: u64) -> Sim {
        let t0 = Instant::now();
        let mut bwe = SendSideBwe::new(t0, BweConfig::default());
        bwe.set_desired(app_max_bps);
        Sim {
            path,
            bwe,
            app_max_bps,
            t0,
            now: t0,
            rng: 0x9E37_79B9_7F4A_7C15,
            next_audio: t0,
            next_frame: t0,
            pacer: VecDeque::new(),
            probing: None,
            next_paced: t0,
            next_seq: 0,
            cross_credit: 0.0,
            busy_until: t0,
            in_flight: VecDeque::new(),
            received: Vec::new(),
            report_from: 0,
            next_feedback: t0 + FEEDBACK_EVERY,
            returning: VecDeque::new(),
            windows: Vec::new(),
            current: Window::default(),
            queue_delays_ms: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn random(&mut self) -> f64 {
        // xorshift64*: deterministic across runs.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Runs until `until` (time since the start).
    pub fn run_until(&mut self, until: Duration) {
        while self.elapsed() < until {
            self.step();
        }
    }

    fn step(&mut self) {
        let now = self.now;
        // Deliveries.
        while let Some(p) = self.in_flight.front().copied() {
            if p.arrival > now {
                break;
            }
            self.in_flight.pop_front();
            if p.kind == Kind::Cross {
                continue;
            }
            // The receiver's clock is offset from the sender's by an arbitrary amount.
            let arrival_us = (p.arrival - self.t0).as_micros() as i64 + 123_456_789;
            self.received.push((p.seq, arrival_us));
        }
        // The receiver's feedback: everything from the first unreported sequence number up to
        // the highest received, the missing ones as lost.
        if now >= self.next_feedback {
            self.next_feedback = now + FEEDBACK_EVERY;
            if let Some(highest) = self.received.iter().map(|(s, _)| *s).max() {
                if highest >= self.report_from {
                    let got: HashMap<u64, i64> = self.received.drain(..).collect();
                    let mut reports = Vec::new();
                    for seq in self.report_from..=highest {
                        let arrival_us = got.get(&seq).copied();
                        reports.push(PacketReport {
                            sequence: seq as u16,
                            arrival_us,
                        });
                    }
                    self.report_from = highest + 1;
                    self.returning
                        .push_back((now + self.path.propagation, reports));
                }
            }
        }
        while self.returning.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, reports)) = self.returning.pop_front() {
                self.bwe.on_feedback(now, reports);
            }
        }
        if self.bwe.poll_timeout().is_some_and(|t| t <= now) {
            self.bwe.handle_timeout(now);
        }
        let estimate = self.bwe.estimate_bps();
        // Audio: never queued behind video.
        if now >= self.next_audio {
            self.next_audio += AUDIO_EVERY;
            self.send(AUDIO_BYTES, Kind::Audio);
        }
        // Video: a frame of the allowed rate into the pacer.
        if now >= self.next_frame {
            self.next_frame += FRAME_EVERY;
            let rate = estimate.min(self.app_max_bps).saturating_sub(50_000);
            let mut bytes = (rate as f64 / 30.0 / 8.0) as usize;
            while bytes > 0 {
                let n = bytes.min(MTU);
                self.pacer.push_back(n);
                bytes -= n;
            }
        }
        // Probes: while a cluster runs, every packet sent carries its id, and padding tops the
        // cluster up to its rate.
        if self.probing.is_none() {
            if let Some(c) = self.bwe.poll_probe(now) {
                self.probing = Some(Probing {
                    id: c.id,
                    bps: c.bitrate_bps,
                    start: now,
                    bytes: 0,
                    packets: 0,
                    min_bytes: u64::from(c.min_bytes),
                    min_packets: c.min_packets,
                });
            }
        }
        if let Some(p) = self.probing {
            let due = (now - p.start + TICK).as_secs_f64() * p.bps as f64 / 8.0;
            if (p.bytes as f64) + (PROBE_BYTES as f64) <= due {
                self.send(PROBE_BYTES, Kind::Probe);
            }
            if let Some(p) = self.probing {
                if p.bytes >= p.min_bytes && p.packets >= p.min_packets {
                    self.probing = None;
                }
            }
        }
        let pacing_bps = (estimate as f64 * PACING_FACTOR).max(100_000.0);
        while now >= self.next_paced {
            let Some(size) = self.pacer.pop_front() else {
                self.next_paced = now;
                break;
            };
            self.send(size, Kind::Video);
            self.next_paced += Duration::from_secs_f64(size as f64 * 8.0 / pacing_bps);
        }
        // Cross traffic.
        if self.path.cross_bps > 0 {
            self.cross_credit += self.path.cross_bps as f64 * TICK.as_secs_f64() / 8.0;
            while self.cross_credit >= MTU as f64 {
                self.cross_credit -= MTU as f64;
                self.enqueue(MTU, Kind::Cross, u64::MAX);
            }
        }
        // Windows.
        let elapsed = self.elapsed();
        if elapsed.as_millis() / 100 != (elapsed + TICK).as_millis() / 100 {
            self.current.at = elapsed;
            self.current.capacity_bps = self.path.capacity_at(elapsed);
            self.current.estimate_bps = self.bwe.estimate_bps();
            self.current.ceiling_bps = self.bwe.stats().probe_ceiling_bps;
            self.windows.push(self.current);
            self.current = Window::default();
        }
        self.now += TICK;
    }

    fn send(&mut self, size: usize, kind: Kind) {
        let probe = self.probing.as_mut().map(|p| {
            p.bytes += size as u64;
            p.packets += 1;
            p.id
        });
        let wire = self.bwe.on_sent(self.now, size, probe);
        let seq = self.next_seq;
        self.next_seq += 1;
        assert_eq!(
            wire, seq as u16,
            "the estimator numbers packets in sending order"
        );
        self.current.sent_bytes += size as u64;
        if kind == Kind::Audio {
            self.current.audio_sent += 1;
        }
        self.enqueue(size, kind, seq);
    }

    fn enqueue(&mut self, size: usize, kind: Kind, seq: u64) {
        let now = self.now;
        let capacity = self.path.capacity_at(self.elapsed()).max(1);
        let start = self.busy_until.max(now);
        let waited = start - now;
        if waited > self.path.queue_limit {
            if kind == Kind::Audio {
                self.current.audio_lost += 1;
            }
            return;
        }
        let depart = start + Duration::from_secs_f64(size as f64 * 8.0 / capacity as f64);
        self.busy_until = depart;
        if kind != Kind::Cross {
            self.queue_delays_ms
                .push((self.elapsed(), waited.as_secs_f64() * 1000.0));
        }
        if self.path.loss > 0.0 && self.random() < self.path.loss {
            if kind == Kind::Audio {
                self.current.audio_lost += 1;
            }
            return;
        }
        if kind != Kind::Cross {
            self.current.delivered_bytes += size as u64;
        }
        self.in_flight.push_back(InFlight {
            arrival: depart + self.path.propagation,
            seq,
            kind,
        });
    }

    // ------------------------------------------------------------------ measurements

    /// Our sending rate (b/s) over the `span` ending at `at`.
    pub fn send_rate(&self, at: Duration, span: Duration) -> f64 {
        let bytes: u64 = self
            .windows
            .iter()
            .filter(|w| w.at <= at && w.at + span > at)
            .map(|w| w.sent_bytes)
            .sum();
        bytes as f64 * 8.0 / span.as_secs_f64()
    }

    /// Delivered over capacity between two times.
    pub fn utilisation(&self, from: Duration, to: Duration) -> f64 {
        let ws: Vec<&Window> = self
            .windows
            .iter()
            .filter(|w| w.at >= from && w.at < to)
            .collect();
        let delivered: u64 = ws.iter().map(|w| w.delivered_bytes).sum();
        let capacity: f64 = ws
            .iter()
            .map(|w| (w.capacity_bps.saturating_sub(self.path.cross_bps)) as f64 * 0.1 / 8.0)
            .sum();
        delivered as f64 / capacity
    }

    /// The p-quantile of our packets' queueing delay between two times (ms).
    pub fn queue_delay_quantile(&self, from: Duration, to: Duration, p: f64) -> f64 {
        let mut d: Vec<f64> = self
            .queue_delays_ms
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, d)| *d)
            .collect();
        d.sort_by(|a, b| a.total_cmp(b));
        d.get(((d.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    }

    pub fn audio_loss(&self, from: Duration, to: Duration) -> f64 {
        let (sent, lost) = self
            .windows
            .iter()
            .filter(|w| w.at >= from && w.at < to)
            .fold((0u32, 0u32), |(s, l), w| {
                (s + w.audio_sent, l + w.audio_lost)
            });
        f64::from(lost) / f64::from(sent.max(1))
    }

    /// The first time at or after `from` when the estimate reached `bps`.
    pub fn estimate_reached(&self, from: Duration, bps: u64) -> Option<Duration> {
        self.windows
            .iter()
            .find(|w| w.at >= from && w.estimate_bps >= bps)
            .map(|w| w.at - from)
    }

    pub fn mean_estimate(&self, from: Duration, to: Duration) -> f64 {
        let ws: Vec<u64> = self
            .windows
            .iter()
            .filter(|w| w.at >= from && w.at < to)
            .map(|w| w.estimate_bps)
            .collect();
        ws.iter().sum::<u64>() as f64 / ws.len().max(1) as f64
    }

    /// A line per second: time, capacity, estimate, send rate, probe ceiling (for failing tests'
    /// messages).
    pub fn trace(&self) -> String {
        self.trace_every(Duration::from_secs(1))
    }

    /// [`Self::trace`] at another spacing (a multiple of 100 ms).
    pub fn trace_every(&self, every: Duration) -> String {
        let every_ms = every.as_millis().max(100);
        self.windows
            .iter()
            .filter(|w| w.at.as_millis() % every_ms < 100)
            .map(|w| {
                format!(
                    "{:>5.1}s cap {:>5} est {:>5} send {:>5} kb/s{}\n",
                    w.at.as_secs_f64(),
                    w.capacity_bps / 1000,
                    w.estimate_bps / 1000,
                    self.send_rate(w.at, Duration::from_millis(500)) as u64 / 1000,
                    w.ceiling_bps
                        .map_or(String::new(), |c| format!(" ceiling {}", c / 1000))
                )
            })
            .collect()
    }
}
