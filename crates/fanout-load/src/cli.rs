//! Command-line options.

use clap::Parser;
use std::path::PathBuf;

/// The embedded default config's demo key (public; for trying Fanout out).
pub const DEMO_KEY: &str = "fanout-demo-secret-key-change-me-0123456789abcdef0123456789abcdef";

/// Drives a running Fanout server with simulated publishers and subscribers over the documented
/// signalling protocol and real ICE/DTLS/SRTP, and measures loss, latency and join time.
#[derive(Parser, Debug, Clone)]
#[command(name = "fanout-load", version)]
pub struct Options {
    /// Signalling WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/v1/signal")]
    pub url: String,
    /// SDKAppID UserSigs are minted for.
    #[arg(long, default_value_t = 1_400_000_001)]
    pub app: u32,
    /// The app's secret key (UserSigs are minted with it).
    #[arg(long, default_value = DEMO_KEY)]
    pub key: String,
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: u32,
    /// Publishers per room (each publishes audio and, unless --audio-only, video; each also
    /// receives the room's other publishers).
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Subscribers per room (each receives every publisher of its room).
    #[arg(long, default_value_t = 10)]
    pub subscribers: u32,
    /// Publish audio only.
    #[arg(long)]
    pub audio_only: bool,
    /// Video bitrate per publisher (the top layer with --simulcast), kbit/s.
    #[arg(long, default_value_t = 500)]
    pub video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Video width announced by keyframes (top layer).
    #[arg(long, default_value_t = 640)]
    pub width: u16,
    /// Video height announced by keyframes (top layer).
    #[arg(long, default_value_t = 360)]
    pub height: u16,
    /// Publish video as three simulcast layers (rids q, h, f).
    #[arg(long)]
    pub simulcast: bool,
    /// Subscribers accept the transport-wide sequence number extension and send transport-cc
    /// feedback, as browsers do, so the server runs its bandwidth estimator, pacer and layer
    /// allocator for each of them (Fanout only; Janus estimates no subscriber's bandwidth).
    #[arg(long)]
    pub twcc: bool,
    /// Seconds between periodic keyframes (more are sent on PLI/FIR).
    #[arg(long, default_value_t = 3.0)]
    pub keyframe_interval: f64,
    /// Seconds of measurement once everyone has joined.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Joins per second (publishers first, then subscribers).
    #[arg(long, default_value_t = 50.0)]
    pub join_rate: f64,
    /// Seconds a participant may take to join (enter, negotiate, first media) before it counts as
    /// failed.
    #[arg(long, default_value_t = 20.0)]
    pub join_timeout: f64,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Media threads (each drives its share of the peer connections from one event loop).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Role publishers enter with.
    #[arg(long, default_value = "anchor")]
    pub publisher_role: String,
    /// Role subscribers enter with.
    #[arg(long, default_value = "audience")]
    pub subscriber_role: String,
    /// First room number (rooms are numbered from it); default: random per run.
    #[arg(long)]
    pub room_base: Option<u32>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// The server to drive: `fanout` (its WebSocket signalling) or `janus` (Janus's VideoRoom
    /// plugin over the Janus HTTP API; pass e.g. `--url http://127.0.0.1:8088/janus`).
    #[arg(long, value_enum, default_value_t = Target::Fanout)]
    pub target: Target,
}

/// The server `fanout-load` drives.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Fanout,
    Janus,
}
