//! fanout-bench: shared setup for Fanout's criterion benchmarks (issue 4). It owns the rigs the
//! benches in `benches/` time, so that each bench file is only the measurement loop and the rigs
//! themselves are unit-tested (a bench that times the wrong thing is worse than none):
//!
//! - [`forward`]: a [`fanout_forward::Router`] with one publication fanned out to N down-tracks,
//!   fed a realistic VP8 (1,100-byte) or Opus (160-byte) stream on a virtual clock.
//! - [`srtp`]: per-down-track SRTP protection with `rtc`'s own SRTP contexts (AES-128-GCM or
//!   AES-CM-HMAC-SHA1-80), the work the transport does for each forwarded packet.
//! - [`pipeline`]: N pairs of `rtc` peer connections connected in memory (our side built like the
//!   server's subscribing connections), for timing `rtc`'s whole per-packet send path
//!   (`write_rtp` + `poll_write`) rather than its bare SRTP context.
//! - [`floor`]: the physical floor: hand-built SRTP (AES-128-GCM sealed in place in a reused buffer)
//!   sent with `sendto` or `sendmmsg` from one UDP socket to N bound loopback receivers.
//! - [`signal`]: a signalling [`fanout_signal::Hub`] with one application and pre-minted UserSigs.
//!
//! The `bench-report` binary turns criterion's saved estimates into a per-packet table with ratios;
//! `tests/no_alloc.rs` proves with a counting allocator that forwarding a packet allocates nothing.
//! How to run them and one run's figures: `benches/README.md` at the repository root.
//!
//! Every socket here is bound to 127.0.0.1 and every send goes to a receiver this process bound:
//! the benches never send off the machine.

pub mod floor;
pub mod forward;
pub mod pipeline;
pub mod signal;
pub mod srtp;

/// The cases every fan-out bench runs: one packet to 1, 10 and 100 down-tracks.
pub const FANOUTS: [usize; 3] = [1, 10, 100];
