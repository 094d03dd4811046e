//! The signalling side of the media path: stream kinds as the protocol names them, and the commands
//! the hub asks the media workers to carry out. Signalling decides who may send and receive what;
//! the workers only execute (control flows one way, as commands).

use serde::Serialize;

/// A kind of published stream (TRTC's audio, camera video and sub video / screen share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Audio,
    Video,
    SubVideo,
}

impl StreamKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audio" => Some(StreamKind::Audio),
            "video" => Some(StreamKind::Video),
            "sub_video" => Some(StreamKind::SubVideo),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Audio => "audio",
            StreamKind::Video => "video",
            StreamKind::SubVideo => "sub_video",
        }
    }

    /// PrivateMapKey bit needed to publish this kind.
    pub fn send_bit(self) -> u8 {
        match self {
            StreamKind::Audio => 4,
            StreamKind::Video => 16,
            StreamKind::SubVideo => 64,
        }
    }

    /// PrivateMapKey bit needed to receive this kind.
    pub fn recv_bit(self) -> u8 {
        match self {
            StreamKind::Audio => 8,
            StreamKind::Video => 32,
            StreamKind::SubVideo => 128,
        }
    }
}

/// The simulcast layer a subscriber asks for (TRTC's big and small stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerChoice {
    High,
    Low,
}

/// A participant (one user in one room, stable across reconnects within the grace period) and its
/// room, as the media workers number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaTarget {
    pub participant: u64,
    pub room: u64,
}

/// Per-kind caps from the publisher's role, kbit/s and pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimits {
    pub audio_kbps: u32,
    pub video_kbps: u32,
    pub video_width: u32,
    pub video_height: u32,
    pub sub_video_kbps: u32,
}

/// One stream a participant should receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedStream {
    pub publisher: u64,
    pub kind: StreamKind,
    pub user_id: String,
}

/// What the hub asks the media workers to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOut {
    /// The full set of streams `target` should receive now.
    SetSubscriptions {
        target: MediaTarget,
        streams: Vec<WantedStream>,
    },
    /// Choose a layer of one received stream.
    SetLayer {
        target: MediaTarget,
        publisher: u64,
        kind: StreamKind,
        layer: LayerChoice,
    },
    /// How `target` shows one received stream (rendered size, pause, priority).
    SetConstraints {
        target: MediaTarget,
        publisher: u64,
        kind: StreamKind,
        constraints: crate::protocol::Constraints,
    },
    /// Stop forwarding everything `target` publishes.
    StopPublishing { target: MediaTarget },
    /// `target`'s client came back on new connections: close the old ones, keep its publications
    /// for its next publish (continuous numbering for subscribers).
    Reconnect { target: MediaTarget },
    /// Tear down both of `target`'s connections.
    Remove { target: MediaTarget },
}

/// A validated `publish` request, for the server to hand to the media worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPlan {
    pub target: MediaTarget,
    pub sdp: String,
    pub tracks: Vec<(String, StreamKind)>,
    pub limits: PublishLimits,
    /// Published over HTTP (WHIP) rather than the WebSocket protocol.
    pub http_session: bool,
}
