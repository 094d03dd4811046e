//! Router: one per room. Owns the room's publications (which own their down-tracks), the index from
//! down-track to publication, the output queue, the timers and the counters. Everything enters via
//! [`Router::handle_input`] and leaves via [`Router::poll_output`]; time is only what inputs carry.

use crate::allocator::{allocate, Candidate};
use crate::api::{
    Allowed, Command, DownTrackId, Event, Feedback, Input, MediaKind, Output, ParticipantId,
    PauseReason, PublicationId,
};
use crate::down_track::{DownTrack, DownTrackInfo};
use crate::publication::Publication;
use crate::speakers::{SpeakerDetector, SPEAKER_INTERVAL};
use crate::temporal::ALL_TEMPORAL;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Period of the router's housekeeping (layer activity, limits, NACK retries).
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Period of receiver reports and REMB.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Outputs the queue holds without growing (it grows if needed and keeps its size).
const OUTPUT_QUEUE_CAPACITY: usize = 4096;

/// Plain counters of everything the router did or refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// RTP packets received (all, including dropped ones).
    pub rtp_in: u64,
    /// RTP packets sent to down-tracks by forwarding (one per down-track; retransmissions excluded).
    pub rtp_forwarded: u64,
    /// Packets already received (dropped).
    pub dropped_duplicate: u64,
    /// Packets before the sequence window, unbelievable jumps and stale-SSRC packets (dropped).
    pub dropped_out_of_window: u64,
    /// Packets of a layer disabled by a role limit (dropped).
    pub dropped_limit: u64,
    /// Packets of a VP8 temporal layer above what a down-track forwards, not sent to it.
    pub temporal_skipped: u64,
    /// Packets for an unknown publication or layer (dropped).
    pub dropped_unknown: u64,
    /// Sequence numbers subscribers asked for (NACK).
    pub nacks_received: u64,
    /// Sequence numbers resent from the cache.
    pub nacks_served: u64,
    /// Sequence numbers that could not be resent (not cached, or not of the current epoch).
    pub nack_misses: u64,
    /// Sequence numbers requested from publishers (NACK upstream, each try counted).
    pub nacks_sent_up: u64,
    /// Keyframe requests from subscribers.
    pub keyframe_requests_in: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests_up: u64,
    /// Feedback and commands naming an unknown publication or down-track (ignored).
    pub unknown_ids: u64,
    /// Commands refused: an id already in use, or a down-track to the publication's own publisher.
    pub refused_commands: u64,
    /// Publisher source changes (new SSRC or sequence restart on a layer).
    pub source_changes: u64,
    /// Down-tracks starting or switching a layer (each starts a new rewriter epoch).
    pub layer_switches: u64,
    /// `LimitExceeded` events emitted.
    pub limit_events: u64,
    /// Changes of a down-track's bandwidth allocation (a layer limit, a pause or a resume).
    pub allocation_changes: u64,
    /// Down-tracks paused for bandwidth.
    pub bandwidth_pauses: u64,
    /// `LayersNeeded` events emitted (dynacast).
    pub layers_needed_events: u64,
}

/// The output queue, the counters and the earliest throttle deadline, handed to the publications.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: VecDeque<Output>,
    pub(crate) stats: RouterStats,
    wake: Option<Instant>,
}

impl Outbox {
    pub(crate) fn push(&mut self, output: Output) {
        self.queue.push_back(output);
    }

    pub(crate) fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }
}

#[derive(Debug, Clone, Copy)]
struct Timers {
    tick: Instant,
    speakers: Instant,
    report: Instant,
}

/// Advances a periodic deadline, keeping its cadence unless it fell behind.
fn next_deadline(deadline: Instant, interval: Duration, now: Instant) -> Instant {
    let next = deadline + interval;
    if next <= now {
        now + interval
    } else {
        next
    }
}

/// A subscriber's bandwidth, as its transport estimates it.
#[derive(Debug, Clone, Copy)]
struct Budget {
    estimate_bps: u64,
    /// The last `BandwidthWanted` sent.
    wanted_bps: u64,
    /// Has down-tracks in this room (else forgotten at the next allocation).
    seen: bool,
}

/// One room's forwarding core.
#[derive(Debug)]
pub struct Router {
    publications: HashMap<PublicationId, Publication>,
    down_tracks: HashMap<DownTrackId, PublicationId>,
    ob: Outbox,
    speakers: SpeakerDetector,
    active_speakers: Vec<ParticipantId>,
    budgets: HashMap<ParticipantId, Budget>,
    /// Reused by each allocation.
    candidates: Vec<Candidate>,
    timers: Option<Timers>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    pub fn new() -> Self {
        Self {
            publications: HashMap::new(),
            down_tracks: HashMap::new(),
            ob: Outbox {
                queue: VecDeque::with_capacity(OUTPUT_QUEUE_CAPACITY),
                stats: RouterStats::default(),
                wake: None,
            },
            speakers: SpeakerDetector::default(),
            active_speakers: Vec::new(),
            budgets: HashMap::new(),
            candidates: Vec::new(),
            timers: None,
        }
    }

    /// Feeds one input. Never panics; unknown ids are ignored and counted.
    pub fn handle_input(&mut self, input: Input) {
        match input {
            Input::Rtp {
                now,
                publication,
                layer,
                packet,
            } => {
                self.start_clock(now);
                self.ob.stats.rtp_in += 1;
                match self.publications.get_mut(&publication) {
                    Some(p) => p.on_rtp(layer, packet, now, &mut self.ob),
                    None => self.ob.stats.dropped_unknown += 1,
                }
            }
            Input::Feedback { now, feedback } => {
                self.start_clock(now);
                self.on_feedback(now, feedback);
            }
            Input::Command { now, command } => {
                self.start_clock(now);
                self.on_command(now, command);
            }
            Input::Timeout(now) => {
                self.start_clock(now);
                self.on_timeout(now);
            }
        }
    }

    /// The next output, in the order produced.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.ob.queue.pop_front()
    }

    /// When the router next needs an [`Input::Timeout`] (`None` before the first input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers?;
        let mut at = t.tick.min(t.speakers).min(t.report);
        if let Some(w) = self.ob.wake {
            at = at.min(w);
        }
        Some(at)
    }

    pub fn stats(&self) -> &RouterStats {
        &self.ob.stats
    }

    /// A view of one down-track, if it exists.
    pub fn down_track(&self, id: DownTrackId) -> Option<DownTrackInfo> {
        let pid = self.down_tracks.get(&id)?;
        let p = self.publications.get(pid)?;
        p.down_tracks
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.info(*pid))
    }

    fn start_clock(&mut self, now: Instant) {
        if self.timers.is_none() {
            self.timers = Some(Timers {
                tick: now + TICK_INTERVAL,
                speakers: now + SPEAKER_INTERVAL,
                report: now + REPORT_INTERVAL,
            });
        }
    }

    /// The publication and the index of a down-track in it.
    fn locate(&mut self, id: DownTrackId) -> Option<(&mut Publication, usize)> {
        let pid = self.down_tracks.get(&id)?;
        let p = self.publications.get_mut(pid)?;
        let idx = p.down_tracks.iter().position(|d| d.id == id)?;
        Some((p, idx))
    }

    fn on_feedback(&mut self, now: Instant, feedback: Feedback) {
        match feedback {
            Feedback::Nack {
                down_track,
                sequences,
            } => {
                self.with_down_track(down_track, |p, idx, ob| p.on_nack(idx, &sequences, now, ob));
            }
            Feedback::KeyframeRequest { down_track } => {
                self.ob.stats.keyframe_requests_in += 1;
                self.with_down_track(down_track, |p, idx, ob| p.on_keyframe_request(idx, now, ob));
            }
            Feedback::ReceiverReport {
                down_track,
                fraction_lost,
                jitter,
            } => {
                self.with_down_track(down_track, |p, idx, _| {
                    if let Some(dt) = p.down_tracks.get_mut(idx) {
                        dt.last_receiver_report = Some((fraction_lost, jitter));
                    }
                });
            }
            Feedback::Bandwidth {
                subscriber,
                bitrate_bps,
            } => {
                self.budgets
                    .entry(subscriber)
                    .and_modify(|b| b.estimate_bps = bitrate_bps)
                    .or_insert(Budget {
                        estimate_bps: bitrate_bps,
                        wanted_bps: 0,
                        seen: true,
                    });
            }
            Feedback::SenderReport {
                publication,
                layer,
                ntp_time,
                rtp_time,
            } => {
                let known = match self.publications.get_mut(&publication) {
                    Some(p) => p.on_sender_report(layer, ntp_time, rtp_time, &mut self.ob),
                    None => false,
                };
                if !known {
                    self.ob.stats.unknown_ids += 1;
                }
            }
        }
    }

    /// Runs `f` on a down-track's publication and index, counting an unknown id otherwise.
    fn with_down_track(
        &mut self,
        id: DownTrackId,
        f: impl FnOnce(&mut Publication, usize, &mut Outbox),
    ) {
        let found = self
            .down_tracks
            .get(&id)
            .and_then(|pid| self.publications.get_mut(pid))
            .and_then(|p| {
                let idx = p.down_tracks.iter().position(|d| d.id == id)?;
                Some((p, idx))
            });
        match found {
            Some((p, idx)) => f(p, idx, &mut self.ob),
            None => self.ob.stats.unknown_ids += 1,
        }
    }

    fn on_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::AddPublication {
                id,
                publisher,
                kind,
                codec,
                layers,
                limits,
            } => {
                if self.publications.contains_key(&id) {
                    self.ob.stats.refused_commands += 1;
                    return;
                }
                self.publications.insert(
                    id,
                    Publication::new(id, publisher, kind, codec, layers, limits),
                );
            }
            Command::RemovePublication { id } => {
                let Some(p) = self.publications.remove(&id) else {
                    self.ob.stats.unknown_ids += 1;
                    return;
                };
                for dt in &p.down_tracks {
                    self.down_tracks.remove(&dt.id);
                }
                self.ob.queue.retain(|o| match o {
                    Output::Rtp { down_track, .. } | Output::SenderReport { down_track, .. } => {
                        !p.down_tracks.iter().any(|d| d.id == *down_track)
                    }
                    Output::KeyframeRequest { publication, .. }
                    | Output::Nack { publication, .. }
                    | Output::ReceiverReport { publication, .. } => *publication != id,
                    _ => true,
                });
            }
            Command::AddDownTrack {
                id,
                publication,
                subscriber,
                ssrc,
                payload_type,
                layer,
            } => {
                if self.down_tracks.contains_key(&id) {
                    self.ob.stats.refused_commands += 1;
                    return;
                }
                let Some(p) = self.publications.get_mut(&publication) else {
                    self.ob.stats.unknown_ids += 1;
                    return;
                };
                if p.publisher == subscriber {
                    // Publishers never receive their own streams.
                    self.ob.stats.refused_commands += 1;
                    return;
                }
                let dt = DownTrack::new(id, subscriber, ssrc, payload_type, layer);
                p.add_down_track(dt, now, &mut self.ob);
                self.down_tracks.insert(id, publication);
            }
            Command::RemoveDownTrack { id } => {
                let found = self.locate(id).map(|(p, idx)| p.remove_down_track(idx));
                if found.is_none() {
                    self.ob.stats.unknown_ids += 1;
                    return;
                }
                self.down_tracks.remove(&id);
                self.ob.queue.retain(|o| match o {
                    Output::Rtp { down_track, .. } | Output::SenderReport { down_track, .. } => {
                        *down_track != id
                    }
                    _ => true,
                });
            }
            Command::SetLayer { down_track, layer } => {
                self.with_down_track(down_track, |p, idx, ob| p.set_layer(idx, layer, now, ob));
            }
            Command::SetVideoConstraints {
                down_track,
                max_width,
                max_height,
                paused,
                priority,
            } => {
                self.with_down_track(down_track, |p, idx, ob| {
                    p.set_constraints(idx, (max_width, max_height), paused, priority, now, ob)
                });
            }
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        let Some(mut t) = self.timers else {
            return;
        };
        if now >= t.tick {
            for p in self.publications.values_mut() {
                p.on_tick(now, &mut self.ob);
            }
            self.allocate(now);
            for p in self.publications.values_mut() {
                p.update_layers_needed(now, &mut self.ob);
            }
            t.tick = next_deadline(t.tick, TICK_INTERVAL, now);
        }
        if now >= t.speakers {
            self.update_speakers();
            t.speakers = next_deadline(t.speakers, SPEAKER_INTERVAL, now);
        }
        if now >= t.report {
            for p in self.publications.values_mut() {
                p.on_report(&mut self.ob);
            }
            self.send_remb();
            t.report = next_deadline(t.report, REPORT_INTERVAL, now);
        }
        self.timers = Some(t);
        self.ob.wake = None;
        for p in self.publications.values_mut() {
            p.poll_throttles(now, &mut self.ob);
        }
    }

    fn update_speakers(&mut self) {
        let samples: Vec<(ParticipantId, f32)> = self
            .publications
            .values_mut()
            .filter(|p| p.kind == MediaKind::Audio)
            .map(|p| (p.publisher, p.level.take()))
            .collect();
        if let Some(participants) = self.speakers.update(samples) {
            self.active_speakers.clone_from(&participants);
            self.ob
                .push(Output::Event(Event::ActiveSpeakers { participants }));
        }
    }

    /// Shares each subscriber's bandwidth estimate across its down-tracks (see `allocator`), and
    /// applies the decisions: layer limits, pauses and resumes (announced), and what each
    /// subscriber would want with no limit.
    fn allocate(&mut self, now: Instant) {
        if self.budgets.is_empty() {
            return;
        }
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        for b in self.budgets.values_mut() {
            b.seen = false;
        }
        for p in self.publications.values_mut() {
            let audio = p.kind == MediaKind::Audio;
            let screen = p.kind == MediaKind::SubVideo;
            let speaking = self.active_speakers.contains(&p.publisher);
            let rates = p.layer_rates(now);
            // What the lowest layer costs per temporal layer (where a video's allocation may
            // end up when short).
            let temporal_rates = match rates.iter().position(|&r| r > 0) {
                Some(low) if !audio => p.temporal_rates(now, low as u8),
                _ => [0; 3],
            };
            for (idx, dt) in p.down_tracks.iter().enumerate() {
                let Some(b) = self.budgets.get_mut(&dt.subscriber) else {
                    continue;
                };
                b.seen = true;
                let ceiling = if audio {
                    0
                } else {
                    crate::publication::available_ceiling(&p.layers, dt).map_or(0, |l| l.0)
                };
                candidates.push(Candidate {
                    subscriber: dt.subscriber,
                    down_track: dt.id,
                    slot: (p.id, idx),
                    audio,
                    rank: (dt.priority, screen, speaking),
                    rates: if audio { [rates[0], 0, 0] } else { rates },
                    ceiling,
                    client_paused: dt.client_paused,
                    current: dt.allowed,
                    temporal_rates,
                    current_temporal: dt.temporal.target,
                    next_temporal: ALL_TEMPORAL,
                    upgrade_since: dt.upgrade_since,
                    short_since: dt.short_since,
                    next: Allowed::Any,
                    next_upgrade_since: None,
                    next_short_since: None,
                });
            }
        }
        self.budgets.retain(|_, b| b.seen);
        candidates.sort_unstable_by_key(|c| c.subscriber);
        for group in candidates.chunk_by_mut(|a, b| a.subscriber == b.subscriber) {
            let subscriber = group[0].subscriber;
            let Some(b) = self.budgets.get_mut(&subscriber) else {
                continue;
            };
            let wanted = allocate(now, b.estimate_bps, group);
            if wanted.abs_diff(b.wanted_bps) * 20 > b.wanted_bps {
                b.wanted_bps = wanted;
                self.ob.push(Output::BandwidthWanted {
                    subscriber,
                    bitrate_bps: wanted,
                });
            }
        }
        let mut changed: Vec<PublicationId> = Vec::new();
        for c in &candidates {
            let Some(p) = self.publications.get_mut(&c.slot.0) else {
                continue;
            };
            let Some(dt) = p
                .down_tracks
                .get_mut(c.slot.1)
                .filter(|d| d.id == c.down_track)
            else {
                continue;
            };
            dt.upgrade_since = c.next_upgrade_since;
            dt.short_since = c.next_short_since;
            if dt.temporal.target != c.next_temporal {
                dt.temporal.target = c.next_temporal;
                self.ob.stats.allocation_changes += 1;
            }
            if dt.allowed == c.next {
                continue;
            }
            let was = matches!(dt.allowed, Allowed::Paused(PauseReason::Bandwidth));
            let is = matches!(c.next, Allowed::Paused(PauseReason::Bandwidth));
            dt.allowed = c.next;
            self.ob.stats.allocation_changes += 1;
            if is && !was {
                self.ob.stats.bandwidth_pauses += 1;
                self.ob.push(Output::Event(Event::StreamPaused {
                    subscriber: c.subscriber,
                    down_track: c.down_track,
                    publication: c.slot.0,
                    reason: PauseReason::Bandwidth,
                }));
            } else if was && !is {
                self.ob.push(Output::Event(Event::StreamResumed {
                    subscriber: c.subscriber,
                    down_track: c.down_track,
                    publication: c.slot.0,
                }));
            }
            if !changed.contains(&c.slot.0) {
                changed.push(c.slot.0);
            }
        }
        for id in changed {
            if let Some(p) = self.publications.get_mut(&id) {
                p.retarget(now, None, &mut self.ob);
            }
        }
        self.candidates = candidates;
    }

    /// REMB per publisher: the sum of its publications' caps. A publisher with an uncapped
    /// publication gets none (there is nothing to cap it to).
    fn send_remb(&mut self) {
        let mut per: Vec<(ParticipantId, u64, bool)> = Vec::new();
        for p in self.publications.values() {
            let cap = u64::from(p.limits.max_kbps) * 1000;
            match per.iter_mut().find(|e| e.0 == p.publisher) {
                Some(e) => {
                    e.1 += cap;
                    e.2 |= cap == 0;
                }
                None => per.push((p.publisher, cap, cap == 0)),
            }
        }
        per.sort_by_key(|e| e.0);
        for (publisher, bitrate_bps, uncapped) in per {
            if !uncapped {
                self.ob.push(Output::Remb {
                    publisher,
                    bitrate_bps,
                });
            }
        }
    }
}
