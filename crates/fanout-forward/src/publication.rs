//! Publication: one published stream and everything the router keeps about it: its simulcast layers
//! with their per-layer receive state (source SSRC, sequence window, receive statistics, packet
//! cache, bitrate, keyframe throttle, activity and limit state), and its down-tracks. The packet
//! path ([`Publication::on_rtp`]) lives here: classify, account, then fan out to the down-tracks.

use crate::api::{
    Allowed, Codec, Event, Layer, LayerPreference, LimitReason, MediaKind, Output, ParticipantId,
    PublicationId, RtpPacket, StreamLimits,
};
use crate::bitrate::BitrateMeter;
use crate::codec::{self, PayloadInfo};
use crate::down_track::DownTrack;
use crate::keyframe_throttle::KeyframeThrottle;
use crate::packet_cache::{PacketCache, PACKET_CACHE_SIZE};
use crate::receive_stats::ReceiveStats;
use crate::router::Outbox;
use crate::seq_window::{Arrival, SeqWindow};
use crate::speakers::LevelAccumulator;
use crate::temporal::Verdict;
use std::time::{Duration, Instant};

/// At most this many simulcast layers per publication (`Layer(0)` to `Layer(2)`).
pub const MAX_LAYERS: u8 = 3;
/// A layer without packets for longer than this is inactive (not chosen, and fallen back from).
pub const LAYER_ACTIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Dynacast: a layer no subscriber needs is announced as such only once it has not been needed
/// for this long (a subscriber's tile resized back and forth costs the publisher no restarts).
pub const DYNACAST_HOLD: Duration = Duration::from_secs(3);
/// A layer asked back that has not arrived within this long is not counted on any more (the
/// publisher may not send it: CPU or uplink limits).
pub const DYNACAST_RETURN: Duration = Duration::from_secs(4);
/// A layer above 1.25x its cap for this long is disabled.
pub const BITRATE_LIMIT_GRACE: Duration = Duration::from_secs(5);
/// While a subscriber waits for a keyframe, the request is repeated this often.
pub const KEYFRAME_RETRY: Duration = Duration::from_secs(1);
/// Packets of the previous SSRC arriving this soon after a source change are stale, not a new change.
const STALE_SOURCE: Duration = Duration::from_secs(2);
/// A keyframe packet this many sequence numbers behind the highest is too old to start at.
const MAX_LATE_START: i64 = 64;
/// Header bytes added to the payload length for the bitrate estimate.
const RTP_HEADER_ESTIMATE: usize = 12;

/// Receive state of one simulcast layer.
#[derive(Debug, Clone)]
pub(crate) struct PublicationLayer {
    pub(crate) ssrc: Option<u32>,
    /// The previous SSRC and when it was replaced.
    prev_source: Option<(u32, Instant)>,
    /// Incremented at every source change (SSRC change or sequence restart).
    pub(crate) source_epoch: u64,
    window: SeqWindow,
    pub(crate) stats: ReceiveStats,
    pub(crate) cache: PacketCache,
    bitrate: BitrateMeter,
    /// Per VP8 temporal layer (2 and above together), and when a temporal index was last seen.
    temporal_bitrate: [BitrateMeter; 3],
    temporal_seen: Option<Instant>,
    pub(crate) throttle: KeyframeThrottle,
    last_rx: Option<Instant>,
    pub(crate) active: bool,
    pub(crate) disabled: bool,
    over_limit_since: Option<Instant>,
    /// The resolution announced by the last keyframe.
    pub(crate) resolution: Option<(u32, u32)>,
    /// Dynacast: the publisher was told no one needs this layer (it may stop sending it), and
    /// the layer's rate before that, which the allocator counts on to ask for it back.
    pub(crate) suspended: bool,
    last_rate_bps: u64,
    /// Since when no subscriber has needed it (while still announced as needed).
    unneeded_since: Option<Instant>,
    /// Asked back (needed again while stopped) at this time, and not arrived yet.
    asked_at: Option<Instant>,
}

impl PublicationLayer {
    fn new(clock_rate: u32) -> Self {
        Self {
            ssrc: None,
            prev_source: None,
            source_epoch: 0,
            window: SeqWindow::new(),
            stats: ReceiveStats::new(clock_rate),
            cache: PacketCache::new(),
            bitrate: BitrateMeter::default(),
            temporal_bitrate: Default::default(),
            temporal_seen: None,
            throttle: KeyframeThrottle::default(),
            last_rx: None,
            active: false,
            disabled: false,
            over_limit_since: None,
            resolution: None,
            suspended: false,
            last_rate_bps: 0,
            unneeded_since: None,
            asked_at: None,
        }
    }

    /// Forgets the old source's sequence space: a new SSRC (`ssrc` differs from the current one) or
    /// a sequence restart on the same SSRC.
    fn new_source(&mut self, ssrc: u32, now: Instant) {
        if let Some(old) = self.ssrc.filter(|old| *old != ssrc) {
            self.prev_source = Some((old, now));
        }
        self.ssrc = Some(ssrc);
        self.source_epoch += 1;
        self.window.reset();
        self.stats.reset();
        self.cache.clear();
        self.resolution = None;
    }

    pub(crate) fn usable(&self) -> bool {
        self.active && !self.disabled
    }

    /// Usable, or stopped only because dynacast said no one needed it (or asked back and not
    /// arrived yet): a layer the allocator may choose, at the rate it had.
    pub(crate) fn available(&self) -> bool {
        self.usable()
            || ((self.suspended || self.asked_at.is_some())
                && !self.disabled
                && self.last_rate_bps > 0)
    }
}

/// One published stream.
#[derive(Debug)]
pub(crate) struct Publication {
    pub(crate) id: PublicationId,
    pub(crate) publisher: ParticipantId,
    pub(crate) kind: MediaKind,
    pub(crate) codec: Codec,
    pub(crate) limits: StreamLimits,
    pub(crate) layers: Vec<PublicationLayer>,
    pub(crate) down_tracks: Vec<DownTrack>,
    pub(crate) level: LevelAccumulator,
}

/// Whether a keyframe's resolution is above the limits. With both limits set, the comparison allows
/// rotation: the longer side against the larger limit and the shorter side against the smaller one.
/// With one limit set, only that dimension is compared.
pub(crate) fn resolution_exceeds(limits: &StreamLimits, (w, h): (u32, u32)) -> bool {
    match (limits.max_width, limits.max_height) {
        (0, 0) => false,
        (mw, 0) => w > mw,
        (0, mh) => h > mh,
        (mw, mh) => w.max(h) > mw.max(mh) || w.min(h) > mw.min(mh),
    }
}

/// The highest layer a down-track wants among those the allocator may choose (suspended ones
/// included): see [`ceiling_of`].
pub(crate) fn available_ceiling(layers: &[PublicationLayer], dt: &DownTrack) -> Option<Layer> {
    ceiling_of(layers, dt, PublicationLayer::available)
}

/// The highest layer passing `ok` a down-track wants: its preference, and the smallest layer
/// that covers its rendered size (the allocator's limit is applied by [`layer_under_limits`]).
/// `None` when no layer passes.
fn ceiling_of(
    layers: &[PublicationLayer],
    dt: &DownTrack,
    ok: fn(&PublicationLayer) -> bool,
) -> Option<Layer> {
    let mut usable = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| ok(l))
        .map(|(i, _)| i as u8);
    let lowest = usable.clone().next()?;
    let mut top = match dt.preference {
        LayerPreference::Low => lowest,
        LayerPreference::High => usable.next_back().unwrap_or(lowest),
    };
    let (mw, mh) = dt.max_size;
    if mw > 0 || mh > 0 {
        let covers = |(w, h): (u32, u32)| w.max(h) >= mw.max(mh) && w.min(h) >= mw.min(mh);
        if let Some(fit) = layers
            .iter()
            .enumerate()
            .find(|(_, l)| ok(l) && l.resolution.is_some_and(covers))
        {
            top = top.min(fit.0 as u8);
        }
    }
    Some(Layer(top))
}

/// The layer a down-track should forward: the highest usable one up to its ceiling and the
/// allocator's limit (the lowest usable one if none is that low).
fn desired_layer(layers: &[PublicationLayer], dt: &DownTrack) -> Option<Layer> {
    layer_under_limits(layers, dt, PublicationLayer::usable)
}

/// The highest layer passing `ok` up to the down-track's ceiling (over those layers) and the
/// allocator's limit; the lowest passing `ok` if none is that low.
fn layer_under_limits(
    layers: &[PublicationLayer],
    dt: &DownTrack,
    ok: fn(&PublicationLayer) -> bool,
) -> Option<Layer> {
    let mut top = ceiling_of(layers, dt, ok)?.0;
    if let Allowed::UpTo(l) = dt.allowed {
        top = top.min(l);
    }
    let mut passing = layers
        .iter()
        .enumerate()
        .filter(|(i, l)| ok(l) && *i as u8 <= top)
        .map(|(i, _)| Layer(i as u8));
    passing
        .next_back()
        .or_else(|| layers.iter().position(ok).map(|i| Layer(i as u8)))
}

impl Publication {
    pub(crate) fn new(
        id: PublicationId,
        publisher: ParticipantId,
        kind: MediaKind,
        codec: Codec,
        layers: u8,
        limits: StreamLimits,
    ) -> Self {
        let n = layers.clamp(1, MAX_LAYERS);
        Self {
            id,
            publisher,
            kind,
            codec,
            limits,
            layers: (0..n)
                .map(|_| PublicationLayer::new(codec.clock_rate()))
                .collect(),
            down_tracks: Vec::new(),
            level: LevelAccumulator::default(),
        }
    }

    pub(crate) fn is_video(&self) -> bool {
        self.codec != Codec::Opus
    }

    /// Asks the publisher for a keyframe on layer `li`, through the throttle.
    fn request_keyframe(&mut self, li: usize, now: Instant, ob: &mut Outbox) {
        let Some(l) = self.layers.get_mut(li) else {
            return;
        };
        if l.throttle.request(now) {
            ob.push(Output::KeyframeRequest {
                publisher: self.publisher,
                publication: self.id,
                layer: Layer(li as u8),
            });
            ob.stats.keyframe_requests_up += 1;
        } else if let Some(d) = l.throttle.deadline() {
            ob.wake_at(d);
        }
    }

    /// Recomputes every down-track's target layer; asks for a keyframe on each layer some video
    /// down-track must switch to (except `keyframe_layer`, whose keyframe is being handled now).
    pub(crate) fn retarget(
        &mut self,
        now: Instant,
        keyframe_layer: Option<Layer>,
        ob: &mut Outbox,
    ) {
        let video = self.is_video();
        let mut wanted = 0u8;
        let Self {
            layers,
            down_tracks,
            ..
        } = self;
        for dt in down_tracks.iter_mut() {
            if let Some(c) = dt.current {
                if layers.get(usize::from(c.0)).is_none_or(|l| l.disabled) {
                    dt.current = None;
                }
            }
            if dt.paused() {
                dt.target = None;
                dt.current = None;
                continue;
            }
            dt.target = desired_layer(layers, dt).or(dt.current);
            if let Some(t) = dt.target {
                if video && dt.target != dt.current && Some(t) != keyframe_layer {
                    wanted |= 1 << t.0;
                }
            }
        }
        for li in 0..usize::from(MAX_LAYERS) {
            if wanted & (1 << li) != 0 {
                self.request_keyframe(li, now, ob);
            }
        }
    }

    fn disable_layer(&mut self, li: usize, reason: LimitReason, ob: &mut Outbox) {
        let Some(l) = self.layers.get_mut(li) else {
            return;
        };
        if l.disabled {
            return;
        }
        l.disabled = true;
        ob.stats.limit_events += 1;
        ob.push(Output::Event(Event::LimitExceeded {
            publication: self.id,
            publisher: self.publisher,
            kind: self.kind,
            layer: Layer(li as u8),
            reason,
        }));
    }

    /// Detaches the down-tracks forwarding layer `li` (its source changed: they restart at the new
    /// source's next keyframe, or next packet for audio, with continuous numbering).
    fn detach_layer(&mut self, li: usize) {
        for dt in &mut self.down_tracks {
            if dt.current.is_some_and(|c| usize::from(c.0) == li) {
                dt.current = None;
            }
        }
    }

    /// The packet path.
    pub(crate) fn on_rtp(
        &mut self,
        layer: Layer,
        packet: RtpPacket,
        now: Instant,
        ob: &mut Outbox,
    ) {
        let li = usize::from(layer.0);
        let video = self.is_video();
        let Some(l) = self.layers.get_mut(li) else {
            ob.stats.dropped_unknown += 1;
            return;
        };
        let mut retarget = false;
        let mut source_changed = false;

        // Source changes: a new SSRC, or (below) a sequence restart.
        if l.ssrc.is_some_and(|s| s != packet.ssrc) {
            let stale = l.prev_source.is_some_and(|(old, at)| {
                old == packet.ssrc && now.saturating_duration_since(at) < STALE_SOURCE
            });
            if stale {
                ob.stats.dropped_out_of_window += 1;
                return;
            }
            l.new_source(packet.ssrc, now);
            ob.stats.source_changes += 1;
            source_changed = true;
        }
        l.ssrc = Some(packet.ssrc);
        let mut arrival = l.window.insert(packet.sequence);
        if arrival == Arrival::Restart {
            l.new_source(packet.ssrc, now);
            ob.stats.source_changes += 1;
            source_changed = true;
            arrival = l.window.insert(packet.sequence);
        }
        let (ext, advanced) = match arrival {
            Arrival::New {
                ext,
                prev_highest,
                gap,
            } => {
                if gap > 0 && video {
                    if let Some(prev) = prev_highest {
                        l.stats.on_gap(prev, ext, PACKET_CACHE_SIZE as i64, now);
                    }
                }
                (ext, true)
            }
            Arrival::Late { ext } => {
                l.stats.on_recovered(ext);
                (ext, false)
            }
            Arrival::Duplicate => {
                ob.stats.dropped_duplicate += 1;
                return;
            }
            Arrival::OutOfWindow | Arrival::Restart => {
                ob.stats.dropped_out_of_window += 1;
                return;
            }
        };
        let source_epoch = l.source_epoch;
        if source_changed {
            self.detach_layer(li);
            retarget = true;
        }
        let Some(l) = self.layers.get_mut(li) else {
            return;
        };

        l.stats.on_packet(ext, packet.timestamp, now, advanced);
        if advanced && l.stats.has_missing() {
            let sequences = l.stats.take_due(now, PACKET_CACHE_SIZE as i64);
            if !sequences.is_empty() {
                ob.stats.nacks_sent_up += sequences.len() as u64;
                ob.push(Output::Nack {
                    publisher: self.publisher,
                    publication: self.id,
                    layer,
                    sequences,
                });
            }
        }
        l.bitrate
            .add(now, packet.payload.len() + RTP_HEADER_ESTIMATE);
        l.last_rx = Some(now);
        if !l.active {
            l.active = true;
            retarget = true;
        }
        if self.kind == MediaKind::Audio {
            if let Some(level) = packet.audio_level {
                self.level.add(level);
            }
        }

        let info = if video {
            codec::inspect(self.codec, &packet.payload)
        } else {
            PayloadInfo::default()
        };
        // VP8's temporal layers: what each costs, and what each down-track may skip.
        let vp8 = (self.codec == Codec::Vp8)
            .then(|| codec::vp8_descriptor(&packet.payload))
            .flatten();
        if let Some(tid) = vp8.and_then(|d| d.tid) {
            let t = usize::from(tid.min(2));
            l.temporal_bitrate[t].add(now, packet.payload.len() + RTP_HEADER_ESTIMATE);
            l.temporal_seen = Some(now);
        }
        if info.keyframe {
            l.throttle.on_keyframe();
            if let Some(res) = info.resolution {
                l.resolution = Some(res);
                if !l.disabled && resolution_exceeds(&self.limits, res) {
                    let limits = self.limits;
                    self.disable_layer(
                        li,
                        LimitReason::Resolution {
                            width: res.0,
                            height: res.1,
                            max_width: limits.max_width,
                            max_height: limits.max_height,
                        },
                        ob,
                    );
                    retarget = true;
                }
            }
        }
        if retarget {
            self.retarget(now, info.keyframe.then_some(layer), ob);
        }

        let clock_rate = self.codec.clock_rate();
        let Self {
            layers,
            down_tracks,
            ..
        } = self;
        let Some(l) = layers.get_mut(li) else {
            return;
        };
        if l.disabled {
            ob.stats.dropped_limit += 1;
            return;
        }
        let highest = l.stats.highest_ext();
        // A down-track may start (or switch) at this packet if it is a keyframe (any packet for
        // audio) that is new or only slightly late (a retransmitted keyframe start), not an old one.
        let startable = (info.keyframe || !video) && highest - ext < MAX_LATE_START;
        for dt in down_tracks.iter_mut() {
            if dt.current != Some(layer) || dt.source_epoch != source_epoch {
                let can_start = startable && dt.target == Some(layer);
                if !can_start {
                    continue;
                }
                dt.current = Some(layer);
                dt.source_epoch = source_epoch;
                dt.rewriter
                    .start_epoch(ext, packet.timestamp, now, clock_rate);
                dt.temporal.on_epoch();
                ob.stats.layer_switches += 1;
            }
            let mut patch = None;
            if let Some(d) = &vp8 {
                match dt.temporal.on_packet(ext, d, info.keyframe, ext == highest) {
                    Verdict::Skip if dt.rewriter.skip(ext) => {
                        ob.stats.temporal_skipped += 1;
                        continue;
                    }
                    Verdict::Skip => {}
                    Verdict::Forward(p) => patch = p,
                }
            }
            if let Some((seq, ts)) = dt.rewriter.rewrite(ext, packet.timestamp, now) {
                let out = dt.output(&packet, seq, ts, false, patch);
                ob.push(out);
                ob.stats.rtp_forwarded += 1;
            }
        }
        l.cache.insert(ext, highest, packet, now);
    }

    /// Periodic work (every router tick): layer activity, expired cache entries, bitrate limits, NACK
    /// retries, repeated
    /// keyframe requests for subscribers still waiting.
    pub(crate) fn on_tick(&mut self, now: Instant, ob: &mut Outbox) {
        let mut changed = false;
        let cap_bps = u64::from(self.limits.max_kbps) * 1000;
        for li in 0..self.layers.len() {
            let publisher = self.publisher;
            let id = self.id;
            let Some(l) = self.layers.get_mut(li) else {
                continue;
            };
            // A layer that went quiet (paused simulcast layer, muted track) still lets go of
            // payloads it can no longer serve.
            l.cache.expire(now);
            if l.active
                && l.last_rx
                    .is_none_or(|t| now.saturating_duration_since(t) > LAYER_ACTIVE_TIMEOUT)
            {
                l.active = false;
                changed = true;
            }
            if l.stats.has_missing() {
                let sequences = l.stats.take_due(now, PACKET_CACHE_SIZE as i64);
                if !sequences.is_empty() {
                    ob.stats.nacks_sent_up += sequences.len() as u64;
                    ob.push(Output::Nack {
                        publisher,
                        publication: id,
                        layer: Layer(li as u8),
                        sequences,
                    });
                }
            }
            if cap_bps > 0 && !l.disabled {
                let rate = l.bitrate.rate_bps(now);
                if rate * 4 > cap_bps * 5 {
                    let since = *l.over_limit_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= BITRATE_LIMIT_GRACE {
                        let reason = LimitReason::Bitrate {
                            measured_kbps: u32::try_from(rate / 1000).unwrap_or(u32::MAX),
                            max_kbps: self.limits.max_kbps,
                        };
                        self.disable_layer(li, reason, ob);
                        changed = true;
                    }
                } else {
                    l.over_limit_since = None;
                }
            }
        }
        if changed {
            self.retarget(now, None, ob);
        }
        if self.is_video() {
            let mut waiting = 0u8;
            for dt in &self.down_tracks {
                if let Some(t) = dt.target {
                    if dt.current != Some(t) {
                        waiting |= 1 << t.0;
                    }
                }
            }
            for li in 0..self.layers.len() {
                if waiting & (1 << li) == 0 {
                    continue;
                }
                let Some(l) = self.layers.get_mut(li) else {
                    continue;
                };
                if l.throttle.request_if_quiet(now, KEYFRAME_RETRY) {
                    ob.stats.keyframe_requests_up += 1;
                    ob.push(Output::KeyframeRequest {
                        publisher: self.publisher,
                        publication: self.id,
                        layer: Layer(li as u8),
                    });
                }
            }
        }
    }

    /// Sends remembered keyframe requests whose throttle window ended; reports the next deadline.
    pub(crate) fn poll_throttles(&mut self, now: Instant, ob: &mut Outbox) {
        for (li, l) in self.layers.iter_mut().enumerate() {
            if l.throttle.poll(now) {
                ob.stats.keyframe_requests_up += 1;
                ob.push(Output::KeyframeRequest {
                    publisher: self.publisher,
                    publication: self.id,
                    layer: Layer(li as u8),
                });
            }
            if let Some(d) = l.throttle.deadline() {
                ob.wake_at(d);
            }
        }
    }

    /// Receiver reports for the layers that received packets since the last ones.
    pub(crate) fn on_report(&mut self, ob: &mut Outbox) {
        for (li, l) in self.layers.iter_mut().enumerate() {
            if let Some(r) = l.stats.report() {
                ob.push(Output::ReceiverReport {
                    publisher: self.publisher,
                    publication: self.id,
                    layer: Layer(li as u8),
                    fraction_lost: r.fraction_lost,
                    total_lost: r.total_lost,
                    highest_sequence: r.highest_sequence,
                    jitter: r.jitter,
                });
            }
        }
    }

    /// The measured rate of each layer (b/s), 0 for a layer not usable now.
    pub(crate) fn layer_rates(&mut self, now: Instant) -> [u64; 3] {
        let mut rates = [0; 3];
        for (i, l) in self.layers.iter_mut().enumerate().take(3) {
            if l.usable() {
                // A usable layer has sent: never 0, so that it is not taken for unusable.
                rates[i] = l.bitrate.rate_bps(now).max(1);
                if !l.suspended {
                    l.last_rate_bps = rates[i];
                }
            } else if l.available() {
                // Suspended by dynacast: what it cost when it was sent.
                rates[i] = l.last_rate_bps;
            }
        }
        rates
    }

    /// What forwarding layer `layer` up to each temporal layer costs (b/s, cumulative: [T0,
    /// T0+T1, all]); zeros when the layer carries no temporal indices (lately).
    pub(crate) fn temporal_rates(&mut self, now: Instant, layer: u8) -> [u64; 3] {
        let Some(l) = self.layers.get_mut(usize::from(layer)) else {
            return [0; 3];
        };
        let recent = l
            .temporal_seen
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_ACTIVE_TIMEOUT);
        if !recent {
            return [0; 3];
        }
        let mut out = [0u64; 3];
        let mut sum = 0;
        for (t, m) in l.temporal_bitrate.iter_mut().enumerate() {
            sum += m.rate_bps(now);
            out[t] = sum.max(1);
        }
        out
    }

    /// Dynacast: the layers some down-track would forward if every layer were sent (the
    /// lowest always), announced when that changes; a layer stops being announced only after
    /// [`DYNACAST_HOLD`] without being needed. Single-layer streams are never announced.
    pub(crate) fn update_layers_needed(&mut self, now: Instant, ob: &mut Outbox) {
        if !self.is_video() || self.layers.len() < 2 {
            return;
        }
        let mut needed = 1u8;
        for dt in self.down_tracks.iter().filter(|d| !d.paused()) {
            if let Some(l) = layer_under_limits(&self.layers, dt, PublicationLayer::available) {
                needed |= 1 << l.0;
            }
        }
        let mut changed = false;
        for (i, l) in self.layers.iter_mut().enumerate() {
            let want = needed & (1 << i) != 0;
            if l.asked_at
                .is_some_and(|t| l.active || now.saturating_duration_since(t) >= DYNACAST_RETURN)
            {
                l.asked_at = None;
            }
            if want {
                l.unneeded_since = None;
                if l.suspended {
                    l.suspended = false;
                    if !l.active {
                        l.asked_at = Some(now);
                    }
                    changed = true;
                }
            } else if !l.suspended {
                let since = *l.unneeded_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= DYNACAST_HOLD {
                    l.suspended = true;
                    l.unneeded_since = None;
                    changed = true;
                }
            }
        }
        if changed {
            let layers = self
                .layers
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.suspended)
                .fold(0u8, |m, (i, _)| m | 1 << i);
            ob.stats.layers_needed_events += 1;
            ob.push(Output::Event(Event::LayersNeeded {
                publication: self.id,
                publisher: self.publisher,
                kind: self.kind,
                layers,
            }));
        }
    }

    pub(crate) fn set_constraints(
        &mut self,
        idx: usize,
        max_size: (u32, u32),
        paused: bool,
        priority: u8,
        now: Instant,
        ob: &mut Outbox,
    ) {
        if let Some(dt) = self.down_tracks.get_mut(idx) {
            dt.max_size = max_size;
            dt.client_paused = paused;
            dt.priority = priority;
            self.retarget(now, None, ob);
        }
    }

    pub(crate) fn add_down_track(&mut self, dt: DownTrack, now: Instant, ob: &mut Outbox) {
        self.down_tracks.push(dt);
        self.retarget(now, None, ob);
    }

    pub(crate) fn remove_down_track(&mut self, idx: usize) {
        if idx < self.down_tracks.len() {
            self.down_tracks.swap_remove(idx);
        }
    }

    pub(crate) fn set_layer(
        &mut self,
        idx: usize,
        preference: LayerPreference,
        now: Instant,
        ob: &mut Outbox,
    ) {
        if let Some(dt) = self.down_tracks.get_mut(idx) {
            dt.preference = preference;
            self.retarget(now, None, ob);
        }
    }

    /// A subscriber asks for a keyframe: ask the publisher for the layer it is (about to be) on.
    pub(crate) fn on_keyframe_request(&mut self, idx: usize, now: Instant, ob: &mut Outbox) {
        if !self.is_video() {
            return;
        }
        let Some(layer) = self
            .down_tracks
            .get(idx)
            .and_then(|dt| dt.target.or(dt.current))
        else {
            return;
        };
        self.request_keyframe(usize::from(layer.0), now, ob);
    }

    /// A subscriber lost these sequence numbers: resend the ones still cached, rewritten exactly as
    /// they were the first time.
    pub(crate) fn on_nack(&mut self, idx: usize, sequences: &[u16], now: Instant, ob: &mut Outbox) {
        let codec = self.codec;
        let Self {
            layers,
            down_tracks,
            ..
        } = self;
        let Some(dt) = down_tracks.get_mut(idx) else {
            return;
        };
        for &seq in sequences {
            ob.stats.nacks_received += 1;
            let found = dt.current.and_then(|c| {
                let l = layers.get(usize::from(c.0))?;
                if l.source_epoch != dt.source_epoch {
                    return None;
                }
                let ext = dt.rewriter.unmap(seq)?;
                let p = l.cache.get(ext, now)?;
                let (s, ts) = dt.rewriter.map(ext, p.timestamp)?;
                Some((p, s, ts, ext))
            });
            match found {
                Some((p, s, ts, ext)) => {
                    let patch = (codec == Codec::Vp8)
                        .then(|| codec::vp8_descriptor(&p.payload))
                        .flatten()
                        .and_then(|d| dt.temporal.retransmission_patch(ext, &d));
                    let out = dt.output(p, s, ts, true, patch);
                    ob.push(out);
                    ob.stats.nacks_served += 1;
                }
                None => ob.stats.nack_misses += 1,
            }
        }
    }

    /// The publisher's sender report for one layer, rebuilt for each down-track forwarding it.
    pub(crate) fn on_sender_report(
        &mut self,
        layer: Layer,
        ntp_time: u64,
        rtp_time: u32,
        ob: &mut Outbox,
    ) -> bool {
        let Some(l) = self.layers.get(usize::from(layer.0)) else {
            return false;
        };
        for dt in &self.down_tracks {
            if dt.current != Some(layer) || dt.source_epoch != l.source_epoch {
                continue;
            }
            if let Some(offset) = dt.rewriter.ts_offset() {
                ob.push(Output::SenderReport {
                    subscriber: dt.subscriber,
                    down_track: dt.id,
                    ssrc: dt.ssrc,
                    ntp_time,
                    rtp_time: rtp_time.wrapping_add(offset),
                    packet_count: dt.packets_sent,
                    octet_count: dt.octets_sent,
                });
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_resolution_is_allowed() {
        let l = StreamLimits {
            max_kbps: 0,
            max_width: 1280,
            max_height: 720,
        };
        assert!(!resolution_exceeds(&l, (1280, 720)));
        assert!(!resolution_exceeds(&l, (720, 1280)));
        assert!(resolution_exceeds(&l, (1920, 1080)));
        assert!(resolution_exceeds(&l, (800, 800)));
        let only_h = StreamLimits {
            max_height: 360,
            ..l
        };
        let only_h = StreamLimits {
            max_width: 0,
            ..only_h
        };
        assert!(resolution_exceeds(&only_h, (640, 480)));
        assert!(!resolution_exceeds(&only_h, (4000, 360)));
    }
}
