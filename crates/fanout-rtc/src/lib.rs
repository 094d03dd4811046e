//! fanout-rtc: the WebRTC transport. Media workers, each a dedicated thread owning one UDP socket and
//! every peer connection on it (ICE-lite, DTLS-SRTP via webrtc-rs's sans-I/O `rtc`), demultiplex
//! datagrams to peers, hand decrypted RTP/RTCP to the room's `fanout_forward::Router`, and encrypt
//! its outputs per subscriber.
//!
//! - [`api`]: commands from signalling, events back.
//! - [`batch`]: outgoing datagrams sent many per system call (`sendmmsg`).
//! - [`engine`]: the sans-I/O transport replacing `rtc` on the media path (in progress).
//! - [`demux`]: STUN USERNAME / remote address demultiplexing.
//! - [`sdp`]: bandwidth lines and mids in SDP text.
//! - [`peer`]: building `rtc` peer connections (codecs, ICE-lite, SRTP profiles).
//! - [`convert`]: `rtc`'s RTP/RTCP types to and from the forwarding core's.
//! - [`stats`]: counters the workers publish for metrics.
//! - [`worker`]: the worker thread's loop.

pub mod api;
pub mod batch;
pub mod convert;
pub mod demux;
pub mod engine;
pub mod peer;
pub mod sdp;
pub mod stats;
pub mod worker;

pub use api::{MediaCommand, MediaError, MediaEvent, RoleLimits, Side, SrtpPolicy, StreamRef};
pub use worker::{Media, MediaConfig};
