//! fanout-load: a load generator for Fanout. Simulated publishers and subscribers speak the
//! documented signalling protocol over WebSocket and real ICE/DTLS/SRTP over UDP (webrtc-rs's
//! sans-I/O `rtc`, many peer connections per event-loop thread), and every received packet is
//! checked: loss, duplicates, reordering, jitter, one-way latency and join time.

pub mod cli;
pub mod clock;
pub mod media;
pub mod payload;
pub mod run;
pub mod signal;
pub mod stats;
