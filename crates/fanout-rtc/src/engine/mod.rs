//! Fanout's own sans-I/O WebRTC transport, composed from webrtc-rs's protocol crates (issue 9).
//! Datagrams, time and buffers go in; datagrams, events and a timeout come out. Nothing here reads
//! the clock or touches a socket.
//!
//! Built so far, each with tests; the worker still runs on `rtc::RTCPeerConnection` until the
//! engine carries every behaviour the suites test (see `docs/architecture.md`):
//! - [`srtp`]: SRTP/SRTCP in place (AES-128-GCM, AES-CM-HMAC-SHA1-80), no allocation per packet.
//! - [`replay`]: the replay window both use.
//! - [`conn`]: one connection: RFC 7983 demux, ICE then DTLS then SRTP, as a state enum.
//! - [`dtls`]: DTLS-SRTP on rtc-dtls's endpoint: certificate, fingerprint check, SRTP keys.
//! - [`ice`]: ICE-lite: answering and verifying Binding requests, nomination, consent.

pub mod conn;
pub mod dtls;
pub mod ice;
pub mod replay;
pub mod srtp;
