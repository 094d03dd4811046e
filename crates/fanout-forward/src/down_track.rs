//! DownTrack: one publication as sent to one subscriber. Owns the subscriber-facing identity (SSRC,
//! payload type), the layer preference, the layer currently forwarded and the one it should switch
//! to at the next keyframe, the [`SeqRewriter`] and the counters its sender reports need.

use crate::api::PayloadPatch;
use crate::api::{
    Allowed, DownTrackId, Layer, LayerPreference, Output, ParticipantId, PublicationId, RtpPacket,
};
use crate::seq_rewriter::SeqRewriter;
use crate::temporal::TemporalFilter;
use std::time::Instant;

/// A read-only view of a down-track, for the transport and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownTrackInfo {
    pub id: DownTrackId,
    pub publication: PublicationId,
    pub subscriber: ParticipantId,
    pub ssrc: u32,
    pub payload_type: u8,
    pub preference: LayerPreference,
    /// The layer being forwarded (`None` before the first keyframe, or after its layer was disabled).
    pub current_layer: Option<Layer>,
    /// The layer it will switch to at that layer's next keyframe (equal to `current_layer` when
    /// settled).
    pub target_layer: Option<Layer>,
    /// RTP packets sent on this down-track (forwards and retransmissions).
    pub packets_sent: u32,
    /// Payload octets sent on this down-track.
    pub octets_sent: u32,
    /// (fraction lost, jitter) from the subscriber's last receiver report for it.
    pub receiver_report: Option<(u8, u32)>,
    /// What the stream allocator lets it forward.
    pub allowed: Allowed,
    /// The highest VP8 temporal layer the allocator lets it forward, and the one forwarded now
    /// ([`crate::ALL_TEMPORAL`]: all).
    pub temporal_target: u8,
    pub temporal_current: u8,
    /// The subscriber's constraints: largest rendered size (0: none), paused, priority.
    pub max_size: (u32, u32),
    pub client_paused: bool,
    pub priority: u8,
}

#[derive(Debug, Clone)]
pub(crate) struct DownTrack {
    pub(crate) id: DownTrackId,
    pub(crate) subscriber: ParticipantId,
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    pub(crate) preference: LayerPreference,
    pub(crate) current: Option<Layer>,
    pub(crate) target: Option<Layer>,
    /// The source epoch of the current layer when this down-track switched to it.
    pub(crate) source_epoch: u64,
    pub(crate) rewriter: SeqRewriter,
    /// VP8 temporal layers forwarded, and the picture IDs as renumbered.
    pub(crate) temporal: TemporalFilter,
    pub(crate) packets_sent: u32,
    pub(crate) octets_sent: u32,
    /// The subscriber's last receiver report (fraction lost, jitter).
    pub(crate) last_receiver_report: Option<(u8, u32)>,
    /// The stream allocator's decision, and since when a higher one has fitted.
    pub(crate) allowed: Allowed,
    pub(crate) upgrade_since: Option<Instant>,
    pub(crate) short_since: Option<Instant>,
    /// The subscriber's constraints (`SetVideoConstraints`).
    pub(crate) max_size: (u32, u32),
    pub(crate) client_paused: bool,
    pub(crate) priority: u8,
}

/// SplitMix64: spreads a down-track's id and SSRC into its initial sequence number and timestamp
/// (RFC 3550 wants them unpredictable; deterministic keeps tests reproducible).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl DownTrack {
    pub(crate) fn new(
        id: DownTrackId,
        subscriber: ParticipantId,
        ssrc: u32,
        payload_type: u8,
        preference: LayerPreference,
    ) -> Self {
        let r = mix(id.0 ^ (u64::from(ssrc) << 32));
        Self {
            id,
            subscriber,
            ssrc,
            payload_type,
            preference,
            current: None,
            target: None,
            source_epoch: 0,
            rewriter: SeqRewriter::new(r as u16, (r >> 32) as u32),
            temporal: TemporalFilter::default(),
            packets_sent: 0,
            octets_sent: 0,
            last_receiver_report: None,
            allowed: Allowed::Any,
            upgrade_since: None,
            short_since: None,
            max_size: (0, 0),
            client_paused: false,
            priority: 0,
        }
    }

    /// Forwards nothing for now (the allocator or the subscriber paused it).
    pub(crate) fn paused(&self) -> bool {
        self.client_paused || matches!(self.allowed, Allowed::Paused(_))
    }

    /// The packet as this subscriber receives it: our SSRC, payload type, sequence number and
    /// timestamp; the same payload buffer (a reference count, not a copy).
    pub(crate) fn output(
        &mut self,
        src: &RtpPacket,
        sequence: u16,
        timestamp: u32,
        retransmission: bool,
        patch: Option<PayloadPatch>,
    ) -> Output {
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(src.payload.len() as u32);
        Output::Rtp {
            subscriber: self.subscriber,
            down_track: self.id,
            packet: RtpPacket {
                payload_type: self.payload_type,
                sequence,
                timestamp,
                ssrc: self.ssrc,
                marker: src.marker,
                audio_level: src.audio_level,
                payload: src.payload.clone(),
            },
            retransmission,
            patch,
        }
    }

    pub(crate) fn info(&self, publication: PublicationId) -> DownTrackInfo {
        DownTrackInfo {
            id: self.id,
            publication,
            subscriber: self.subscriber,
            ssrc: self.ssrc,
            payload_type: self.payload_type,
            preference: self.preference,
            current_layer: self.current,
            target_layer: self.target,
            packets_sent: self.packets_sent,
            octets_sent: self.octets_sent,
            receiver_report: self.last_receiver_report,
            allowed: self.allowed,
            temporal_target: self.temporal.target,
            temporal_current: self.temporal.current(),
            max_size: self.max_size,
            client_paused: self.client_paused,
            priority: self.priority,
        }
    }
}
