//! fanout-rtc: the WebRTC transport. A sans-I/O engine ([`engine`]: ICE-lite, DTLS-SRTP, SDP,
//! RTP/RTCP, and the worker's [`engine::endpoint::Endpoint`] that glues connections to the rooms'
//! `fanout_forward::Router`s) and a thin driver ([`driver`]: one thread per worker, one UDP socket,
//! `recvmmsg`/`sendmmsg`, the channel to signalling).
//!
//! - [`api`]: commands from signalling, events back.
//! - [`engine`]: the transport itself; it never reads the clock or touches a socket.
//! - [`driver`]: the worker threads around it.
//! - [`batch`] and [`recv`]: datagrams sent and received many per system call.
//! - [`demux`]: STUN USERNAME / remote address demultiplexing.
//! - [`stats`]: counters the workers publish for metrics.
//! - [`peer`] and [`convert`]: webrtc-rs `rtc` peer connections and packet conversions, for the
//!   load generator's simulated clients and the benchmark's `rtc` baseline only (never on the
//!   server's media path).

pub mod api;
pub mod batch;
pub mod convert;
pub mod demux;
pub mod driver;
pub mod engine;
pub mod peer;
pub mod recv;
pub mod stats;

pub use api::{
    MediaCommand, MediaError, MediaEvent, RoleLimits, Side, SrtpPolicy, StreamRef, VideoConstraints,
};
pub use driver::{Media, MediaConfig};
