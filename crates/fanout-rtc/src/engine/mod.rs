//! Fanout's own sans-I/O WebRTC transport, composed from webrtc-rs's protocol crates (issue 9).
//! Datagrams, time and buffers go in; datagrams, events and a timeout come out. Nothing here reads
//! the clock or touches a socket.
//!
//! The server's media path runs on it (`crate::driver`); each piece has its own tests:
//! - [`srtp`]: SRTP/SRTCP in place (AES-128-GCM, AES-CM-HMAC-SHA1-80), no allocation per packet.
//! - [`replay`]: the replay window both use.
//! - [`client`]: the client's side (controlling ICE, DTLS, SRTP), for `fanout-load` and tests.
//! - [`conn`]: one connection: RFC 7983 demux, ICE then DTLS then SRTP, as a state enum.
//! - [`dtls`]: DTLS-SRTP on rtc-dtls's endpoint: certificate, fingerprint check, SRTP keys.
//! - [`ice`]: ICE-lite: answering and verifying Binding requests, nomination, consent.
//! - [`sdp`]: the SDP model: a remote description read once into typed, validated sections.
//! - [`negotiate`]: offer/answer on that model (publisher answers, subscriber offers).
//! - [`codec`]: the one codec table and header-extension table.
//! - [`rtp`]: RTP headers and extensions read and written in place.
//! - [`rtcp`]: compound RTCP walked in place; outgoing RTCP from `rtc-rtcp`'s types.
//! - [`twcc`]: transport-wide congestion-control feedback: arrivals recorded, feedback written
//!   (to publishers) and parsed.
//! - `congestion`: subscribing connections' bandwidth estimation: transport-wide sequence
//!   numbers on every packet sent, the browser's feedback into the estimator, probes.
//! - [`endpoint`]: a worker's connections in a [`slab`], the demux, the routers and the glue
//!   (publishing connections in `publisher`, subscribing ones in `subscriber`); datagrams
//!   out through [`txqueue`].

pub mod client;
pub mod codec;
mod congestion;
pub mod conn;
pub mod dtls;
pub mod endpoint;
pub mod ice;
pub mod negotiate;
mod publisher;
pub mod replay;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod slab;
pub mod srtp;
mod subscriber;
pub mod twcc;
pub mod txqueue;
