//! The forwarding core's vocabulary: ids, our own RTP packet type, and the inputs and outputs of a
//! [`Router`](crate::Router). Nothing here depends on a WebRTC stack: the transport (fanout-rtc)
//! converts its packets to and from these types.

use bytes::Bytes;
use std::time::Instant;

/// A room, as the transport numbers it (one router per room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// A participant (one user in one room): owns publications and receives down-tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// One published stream (one media section of a publisher): audio, camera video or screen share,
/// with up to three simulcast layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicationId(pub u64);

/// One publication as sent to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DownTrackId(pub u64);

/// What a publication carries (TRTC's audio, big/small video and sub video).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// Screen share ("sub video" in TRTC).
    SubVideo,
}

/// The codec of a publication; the router parses VP8/VP9/H.264 payloads to find keyframes and
/// resolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
}

impl Codec {
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 90_000,
        }
    }
}

/// A simulcast layer, lowest first. A publication without simulcast has only `Layer(0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Layer(pub u8);

/// Which layer a subscriber wants (TRTC's small and big stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LayerPreference {
    /// The lowest layer.
    Low,
    /// The highest layer the publisher sends and its role allows (the default).
    #[default]
    High,
}

/// Why a down-track forwards nothing for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseReason {
    /// Its subscriber's estimated bandwidth does not fit even its lowest layer.
    Bandwidth,
    /// Its subscriber asked for it (a hidden tile).
    Client,
}

/// What a down-track may forward, as the stream allocator decided from its subscriber's
/// bandwidth estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allowed {
    /// No bandwidth limit (no estimate for its subscriber, everything fits, or audio).
    #[default]
    Any,
    /// Simulcast layers up to this one.
    UpTo(u8),
    Paused(PauseReason),
}

/// Per-stream limits from the publisher's role. Zero means "no limit" for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamLimits {
    pub max_kbps: u32,
    pub max_width: u32,
    pub max_height: u32,
}

/// An RTP packet with its payload held once in a shared buffer. Header extensions the router needs
/// are parsed by the transport into fields; the transport writes the subscriber's own extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    /// RFC 6464 audio level in -dBov (0 loudest, 127 silence), when the publisher sends it.
    pub audio_level: Option<u8>,
    /// The media payload (after the RTP header, extensions and padding are removed).
    pub payload: Bytes,
}

/// RTCP feedback, already mapped by the transport from SSRCs to our ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// A subscriber lost these (down-track) sequence numbers.
    Nack {
        down_track: DownTrackId,
        sequences: Vec<u16>,
    },
    /// A subscriber asks for a keyframe (PLI or FIR).
    KeyframeRequest { down_track: DownTrackId },
    /// A subscriber's receiver report for a down-track.
    ReceiverReport {
        down_track: DownTrackId,
        fraction_lost: u8,
        jitter: u32,
    },
    /// The transport's bandwidth estimate for a subscriber's connection (b/s): the router shares
    /// it across that subscriber's down-tracks.
    Bandwidth {
        subscriber: ParticipantId,
        bitrate_bps: u64,
    },
    /// A publisher's sender report for one layer of a publication (NTP time, 64-bit fixed point).
    SenderReport {
        publication: PublicationId,
        layer: Layer,
        ntp_time: u64,
        rtp_time: u32,
    },
}

/// Control commands from signalling (via the transport). Never sent per packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    AddPublication {
        id: PublicationId,
        publisher: ParticipantId,
        kind: MediaKind,
        codec: Codec,
        /// How many simulcast layers the publisher announced (1 without simulcast).
        layers: u8,
        limits: StreamLimits,
    },
    RemovePublication {
        id: PublicationId,
    },
    AddDownTrack {
        id: DownTrackId,
        publication: PublicationId,
        subscriber: ParticipantId,
        /// The SSRC and payload type this subscriber's connection negotiated for this stream.
        ssrc: u32,
        payload_type: u8,
        layer: LayerPreference,
    },
    RemoveDownTrack {
        id: DownTrackId,
    },
    SetLayer {
        down_track: DownTrackId,
        layer: LayerPreference,
    },
    /// What a subscriber says about one video it receives: the largest size it renders it at
    /// (0: no limit), whether it is paused, and its priority (higher first, default 0).
    SetVideoConstraints {
        down_track: DownTrackId,
        max_width: u32,
        max_height: u32,
        paused: bool,
        priority: u8,
    },
}

/// Everything that goes into a router. Time is always passed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Rtp {
        now: Instant,
        publication: PublicationId,
        layer: Layer,
        packet: RtpPacket,
    },
    Feedback {
        now: Instant,
        feedback: Feedback,
    },
    Command {
        now: Instant,
        command: Command,
    },
    Timeout(Instant),
}

/// Why a stream stopped being forwarded at a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitReason {
    /// Measured bitrate stayed above 1.25x the cap for 5 s.
    Bitrate { measured_kbps: u32, max_kbps: u32 },
    /// A keyframe showed a resolution above the role's.
    Resolution {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
}

/// Notable things the router wants signalling to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LimitExceeded {
        publication: PublicationId,
        publisher: ParticipantId,
        kind: MediaKind,
        layer: Layer,
        reason: LimitReason,
    },
    /// The loudest participants of the room, loudest first (emitted at most twice a second, on change).
    ActiveSpeakers { participants: Vec<ParticipantId> },
    /// A down-track stopped forwarding for lack of bandwidth (client pauses are not announced).
    StreamPaused {
        subscriber: ParticipantId,
        down_track: DownTrackId,
        publication: PublicationId,
        reason: PauseReason,
    },
    /// A down-track paused for bandwidth forwards again.
    StreamResumed {
        subscriber: ParticipantId,
        down_track: DownTrackId,
        publication: PublicationId,
    },
    /// Dynacast: the simulcast layers of a publication some subscriber needs now (bit `i` for
    /// `Layer(i)`; the lowest is always set). The publisher may stop encoding the others; a layer
    /// needed again is announced at once, one no longer needed only after
    /// [`crate::DYNACAST_HOLD`].
    LayersNeeded {
        publication: PublicationId,
        publisher: ParticipantId,
        kind: MediaKind,
        layers: u8,
    },
}

/// A change to one subscriber's copy of a payload: `len` (1 or 2) bytes at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadPatch {
    pub offset: u8,
    pub len: u8,
    pub bytes: [u8; 2],
}

impl PayloadPatch {
    /// Writes the patch into `payload` (the subscriber's copy); a payload too short for it (it
    /// was made from this payload, so it never is) is left as it is.
    pub fn apply(&self, payload: &mut [u8]) {
        let (at, n) = (usize::from(self.offset), usize::from(self.len.min(2)));
        if let Some(dst) = payload.get_mut(at..at + n) {
            dst.copy_from_slice(&self.bytes[..n]);
        }
    }
}

/// Everything that comes out of a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this (rewritten) packet on a subscriber's connection; the payload is the publisher's buffer.
    Rtp {
        subscriber: ParticipantId,
        down_track: DownTrackId,
        packet: RtpPacket,
        /// A resend answering the subscriber's NACK: the same sequence number as a packet already
        /// sent, so the transport sends it on the down-track's RTX stream (RFC 4588), never as a
        /// second packet under the same SSRC and sequence number.
        retransmission: bool,
        /// Bytes of the payload to overwrite in the subscriber's copy (a VP8 picture ID kept
        /// continuous across skipped frames and layer switches); the shared payload is untouched.
        patch: Option<PayloadPatch>,
    },
    /// Ask the publisher for a keyframe on one layer (PLI).
    KeyframeRequest {
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
    },
    /// Ask the publisher to retransmit these sequence numbers of one layer.
    Nack {
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
        sequences: Vec<u16>,
    },
    /// Receiver report for one layer of a publication, from what the server received.
    ReceiverReport {
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
        fraction_lost: u8,
        total_lost: u32,
        highest_sequence: u32,
        jitter: u32,
    },
    /// The bitrate the publisher may use on its publishing connection (REMB), never above its caps.
    Remb {
        publisher: ParticipantId,
        bitrate_bps: u64,
    },
    /// A sender report for a down-track, rebuilt from the publisher's in the down-track's time base.
    SenderReport {
        subscriber: ParticipantId,
        down_track: DownTrackId,
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
    },
    /// What a subscriber would receive with no bandwidth limit (b/s), when it changed: its
    /// transport probes for more while this is above the estimate.
    BandwidthWanted {
        subscriber: ParticipantId,
        bitrate_bps: u64,
    },
    Event(Event),
}
