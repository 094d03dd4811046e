//! What signalling says to the media workers and what they answer: commands in, events out. Ids are
//! the forwarding core's; signalling assigns them.

use fanout_forward::{LayerPreference, MediaKind, ParticipantId, RoomId, StreamLimits};
use tokio::sync::oneshot;

/// Failures of a media operation, reported to the client as the request's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("bad SDP: {0}")]
    BadSdp(String),
    #[error("WebRTC negotiation failed: {0}")]
    Negotiation(String),
    #[error("no such peer connection")]
    NoPeer,
    #[error("the media worker is gone")]
    WorkerGone,
}

/// The role's caps, per kind of stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleLimits {
    pub audio: StreamLimits,
    pub video: StreamLimits,
    pub sub_video: StreamLimits,
}

impl RoleLimits {
    pub fn for_kind(&self, kind: MediaKind) -> StreamLimits {
        match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
            MediaKind::SubVideo => self.sub_video,
        }
    }
}

/// Which SRTP protection profiles a connection may use. As DTLS client (our role on every
/// connection) we list them in this order and the peer, as server, picks among them by its own
/// preference; Chromium prefers AES-CM whenever it is offered, so browsers get AES-GCM only when it is
/// the only choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// AEAD_AES_128_GCM only: WebRTC stacks that speak our WebSocket protocol (every current browser
    /// and webrtc-rs support it).
    #[default]
    GcmOnly,
    /// AEAD_AES_128_GCM, then AES_CM_128_HMAC_SHA1_80: WHIP/WHEP clients such as GStreamer, some of
    /// which lack GCM.
    GcmOrCm,
}

/// Which of a participant's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client's publishing connection (client offers).
    Publisher,
    /// The client's subscribing connection (server offers).
    Subscriber,
}

/// One stream a subscriber should receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRef {
    pub publisher: ParticipantId,
    pub kind: MediaKind,
    /// The publisher's UserID, for the client's track list.
    pub user_id: String,
}

/// Commands from signalling to the worker that owns the room.
#[derive(Debug)]
pub enum MediaCommand {
    /// The publishing connection's offer (first or renegotiation). `tracks` maps mids to kinds; media
    /// sections not listed are rejected. Replies with the answer SDP.
    Publish {
        participant: ParticipantId,
        room: RoomId,
        offer: String,
        tracks: Vec<(String, MediaKind)>,
        limits: RoleLimits,
        srtp: SrtpPolicy,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    /// Stop forwarding everything this participant publishes (role switched to audience).
    StopPublishing { participant: ParticipantId },
    /// The full set of streams this participant should receive now.
    SetSubscriptions {
        participant: ParticipantId,
        room: RoomId,
        streams: Vec<StreamRef>,
    },
    /// The client's answer to the subscribing connection's latest offer.
    SubscribeAnswer {
        participant: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// A trickled client candidate.
    AddCandidate {
        participant: ParticipantId,
        side: Side,
        candidate: String,
    },
    /// Choose the simulcast layer (TRTC big/small stream) of one received stream.
    SetLayer {
        participant: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
        layer: LayerPreference,
    },
    /// How the participant shows one received stream: largest rendered size (0: no limit),
    /// paused, priority when bandwidth is short.
    SetVideoConstraints {
        participant: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
        constraints: VideoConstraints,
    },
    /// WHEP: the client's offer for a receive-only connection carrying `streams` (at most one audio
    /// and one video; fixed for the session's life). Replies with the answer SDP.
    WhepSubscribe {
        participant: ParticipantId,
        room: RoomId,
        offer: String,
        streams: Vec<StreamRef>,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    /// The participant's client came back on new connections (resume within the grace period, or a
    /// takeover): close both old peer connections but keep its publications, so its next `Publish`
    /// continues them and subscribers see continuous sequence numbers. Publications not published
    /// again within [`crate::engine::endpoint::REPUBLISH_WINDOW`] end.
    Reconnect { participant: ParticipantId },
    /// Tear down both connections of a participant.
    Remove { participant: ParticipantId },
}

/// A subscriber's constraints on one received stream (`set_subscription`'s optional fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoConstraints {
    pub max_width: u32,
    pub max_height: u32,
    pub paused: bool,
    pub priority: u8,
}

/// Events from a worker to signalling.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A publisher's stream started (its first track opened).
    Published {
        participant: ParticipantId,
        kind: MediaKind,
    },
    /// A publisher's stream stopped (renegotiated away, limits or role).
    Unpublished {
        participant: ParticipantId,
        kind: MediaKind,
    },
    /// A new offer for the participant's subscribing connection; `tracks` lists every stream it
    /// carries after this offer: (mid, publisher, kind).
    Offer {
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<(String, ParticipantId, MediaKind)>,
    },
    /// A stream broke its role's limits and is no longer forwarded at some layer.
    LimitExceeded {
        participant: ParticipantId,
        kind: MediaKind,
        reason: String,
    },
    /// A stream `participant` receives from `publisher` was paused (`paused`) because its
    /// subscribing connection's estimated bandwidth fits not even its lowest layer, or resumed.
    StreamPaused {
        participant: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
        paused: bool,
    },
    /// Dynacast: of `participant`'s simulcast `kind` stream, only these rids (as its offer named
    /// them) are needed by some subscriber now; it may stop sending the others.
    LayersNeeded {
        participant: ParticipantId,
        kind: MediaKind,
        rids: Vec<String>,
    },
    /// The loudest participants of a room, loudest first.
    ActiveSpeakers {
        room: RoomId,
        participants: Vec<ParticipantId>,
    },
    /// A participant's connection failed or closed on the transport side.
    PeerClosed {
        participant: ParticipantId,
        side: Side,
    },
}
