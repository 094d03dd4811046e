//! fanout-forward: the zero-copy forwarding core, sans-I/O. One [`Router`] per room takes
//! [`Input`]s (RTP, RTCP feedback, commands, time) and yields [`Output`]s (packets to send per
//! subscriber, feedback to publishers, events). It never touches a socket or a clock, and it does not
//! depend on any WebRTC stack's types.
//!
//! Packets are never copied: a forwarded packet's payload is the publisher's `bytes::Bytes`, shared
//! by every subscriber's output and by the retransmission cache. Forwarding allocates nothing once
//! the output queue is warm.

mod allocator;
pub mod api;
mod bitrate;
pub mod bwe;
pub mod codec;
mod down_track;
mod keyframe_throttle;
mod packet_cache;
mod publication;
mod receive_stats;
mod router;
mod seq_rewriter;
mod seq_window;
mod speakers;
mod temporal;

pub use allocator::{PAUSE_AFTER, UPGRADE_HOLD, UPGRADE_MARGIN};
pub use api::*;
pub use bitrate::BITRATE_WINDOW;
pub use down_track::DownTrackInfo;
pub use keyframe_throttle::KEYFRAME_THROTTLE;
pub use packet_cache::{PACKET_CACHE_MAX_AGE, PACKET_CACHE_SIZE};
pub use publication::{
    BITRATE_LIMIT_GRACE, DYNACAST_HOLD, DYNACAST_RETURN, KEYFRAME_RETRY, LAYER_ACTIVE_TIMEOUT,
    MAX_LAYERS,
};
pub use receive_stats::{NACK_MAX_AGE, NACK_MAX_TRIES, NACK_RETRY_INTERVAL};
pub use router::{Router, RouterStats, REPORT_INTERVAL, TICK_INTERVAL};
pub use seq_window::{MAX_DROPOUT, SEQ_WINDOW};
pub use speakers::{SPEAKER_INTERVAL, SPEAKING_THRESHOLD};
pub use temporal::ALL_TEMPORAL;
