//! Media threads: each owns many simulated peer connections (webrtc-rs's sans-I/O `rtc`) and drives
//! them from one `mio` event loop, as the server's media worker does. Every peer connection has its
//! own UDP socket, because the server tells its peers apart by their address (STUN requests by
//! USERNAME, everything else by source address); a thread waits on all of its sockets at once.
//!
//! Publishers send Opus-sized audio every 20 ms and VP8 frames at the configured rate and bitrate
//! (optionally three simulcast layers), with a keyframe every few seconds and on PLI/FIR.
//! Subscribers check every packet they decrypt and keep per-stream loss, duplicate, reordering,
//! jitter and latency counts.
//!
//! Signalling (on the tokio runtime) reaches a thread through [`Cmd`]s; replies come back on
//! oneshot channels.

use crate::clock::{mono_ns, thread_cpu_ns, thread_wait_ns};
use crate::payload::{self, FrameSpec, Kind, Stamp};
use crate::recv::Batch;
use crate::stats::{Arrival, Histogram, StreamRx};
use bytes::Bytes;
use mio::{Events, Interest, Poll, Token, Waker};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const PT_OPUS: u8 = 111;
pub const PT_VP8: u8 = 96;
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const WAKER: Token = Token(usize::MAX);
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// How often peer connections' timers are checked.
const SWEEP: Duration = Duration::from_millis(5);
/// How often a connected peer's next timeout is recomputed.
const TIMEOUT_REFRESH: Duration = Duration::from_millis(10);
/// How often local counters are published to [`Live`].
const FLUSH: Duration = Duration::from_millis(100);

/// Participant role: which row of the summary its numbers go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Publisher,
    Subscriber,
}

impl Role {
    pub fn index(self) -> usize {
        match self {
            Role::Publisher => 0,
            Role::Subscriber => 1,
        }
    }
}

/// What every media thread needs to know about the run.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address the peers' UDP sockets bind to (the local address towards the server).
    pub local_ip: IpAddr,
    pub audio_only: bool,
    pub video_kbps: u32,
    pub fps: u32,
    pub width: u16,
    pub height: u16,
    pub simulcast: bool,
    pub keyframe_interval: Duration,
    /// Publishers' UserIDs (lowercase) -> publisher index (the index payloads carry).
    pub publishers: HashMap<String, u32>,
}

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub packets_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Sequence numbers skipped and not (yet) filled, over every received stream.
    pub gaps: AtomicI64,
    pub bad: AtomicU64,
    pub pubs_connected: AtomicU64,
    pub first_media: [AtomicU64; 2],
    pub pc_failed: AtomicU64,
    pub send_errors: AtomicU64,
    /// CPU time of all media threads, nanoseconds.
    pub media_cpu_ns: AtomicU64,
    /// Time media threads were runnable but waited for a CPU, nanoseconds.
    pub media_wait_ns: AtomicU64,
    pub receiver_reports: AtomicU64,
    /// Retransmitted ClientHellos kept from rtc (see [`repeated_client_hello`]).
    pub hello_repeats: AtomicU64,
    /// The server's media addresses (host candidates of its SDPs).
    pub server_addrs: std::sync::Mutex<std::collections::HashSet<SocketAddr>>,
}

/// Whether `d` is a DTLS ClientHello (with a cookie: handshake message_seq >= 1) that was
/// received before, i.e. the server retransmitting its flight 3 because our flight 4 was lost.
///
/// Works around rtc-dtls 0.21.1 as DTLS server: a retransmitted ClientHello arriving while it
/// waits for flight 5 cancels its retransmission timer without resending flight 4 (RFC 6347
/// 4.2.4 wants it resent), and the server's next ClientHello does the same, so the handshake
/// never completes. The server's retransmission arrives before ours is due (both wait 1 s, and
/// ours started later), so one lost flight 4 (e.g. the server's socket buffer overflowing) would
/// strand the connection for good. Not passing repeats on lets our timer resend flight 4, as a
/// browser's DTLS stack would. The HelloVerifyRequest exchange (message_seq 0) is stateless and
/// needs the repeats, so those pass.
pub fn repeated_client_hello(seen: &mut Vec<u16>, d: &[u8]) -> bool {
    // Record header: type 22 (handshake), version, epoch (0), sequence number, length; then the
    // handshake header: msg_type 1 (ClientHello), length (3), message_seq (2).
    if d.len() < 19 || d[0] != 22 || d[3] != 0 || d[4] != 0 || d[13] != 1 {
        return false;
    }
    let message_seq = u16::from_be_bytes([d[17], d[18]]);
    if message_seq == 0 {
        return false;
    }
    if seen.contains(&message_seq) {
        return true;
    }
    seen.push(message_seq);
    false
}

/// The UDP host candidates of an SDP.
pub fn sdp_candidates(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
                return None;
            }
            Some(SocketAddr::new(f[4].parse().ok()?, f[5].parse().ok()?))
        })
        .collect()
}

/// A media section the server's offer carries.
#[derive(Debug, Clone)]
pub struct OfferTrack {
    pub mid: String,
    pub user_id: String,
    pub kind: Option<Kind>,
}

/// The publishing connection's offer.
#[derive(Debug, Clone)]
pub struct PubOffer {
    pub sdp: String,
    /// (mid, kind) of each media section.
    pub tracks: Vec<(String, Kind)>,
}

pub enum Cmd {
    NewPublisher {
        participant: u64,
        role: Role,
        user: String,
        index: u32,
        ws_open: Instant,
        reply: oneshot::Sender<Result<PubOffer, String>>,
    },
    PublisherAnswer {
        participant: u64,
        sdp: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    SubscriberOffer {
        participant: u64,
        user: String,
        role: Role,
        ws_open: Instant,
        sdp: String,
        tracks: Vec<OfferTrack>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Remove {
        participant: u64,
    },
    StopSending,
    Report {
        reply: oneshot::Sender<ThreadReport>,
    },
    Shutdown,
}

/// One received stream, at the end of the run.
#[derive(Debug, Clone)]
pub struct RxReport {
    pub participant: u64,
    pub role: Role,
    pub stream: StreamRx,
}

/// One sent stream, at the end of the run.
#[derive(Debug, Clone)]
pub struct TxReport {
    pub participant: u64,
    pub publisher: u32,
    pub kind: Kind,
    pub layer: u8,
    /// Packets sent (sequence numbers 0..sent).
    pub sent: u32,
    pub keyframes: u64,
    pub keyframe_requests: u64,
}

/// The state of one peer connection at the end of the run.
#[derive(Debug, Clone)]
pub struct PeerReport {
    pub participant: u64,
    /// The publishing (true) or subscribing (false) connection.
    pub publishing: bool,
    pub ice_state: String,
    pub state: String,
    /// Offers applied (subscribing connections).
    pub offers: u32,
    pub got_media: bool,
}

/// Everything a media thread measured.
#[derive(Debug, Clone, Default)]
pub struct ThreadReport {
    pub rx: Vec<RxReport>,
    pub tx: Vec<TxReport>,
    /// Per role: one-way latency (µs) of every new packet.
    pub latency_us: [Histogram; 2],
    /// Per role: WebSocket open to first media packet (subscribers) or to the publishing
    /// connection being up (publishers), µs.
    pub join_us: [Histogram; 2],
    /// Per role: payloads that failed the check.
    pub bad: [u64; 2],
    /// Per role: packets whose payload names another publisher or kind than the offer said.
    pub misrouted: [u64; 2],
    pub packets_in: [u64; 2],
    /// Local UDP ports of the thread's sockets (to read kernel drop counters).
    pub ports: Vec<u16>,
    pub peers: Vec<PeerReport>,
    pub cpu_ns: u64,
    pub pc_failed: u64,
}

/// A running media thread.
pub struct MediaHandle {
    tx: Sender<Cmd>,
    waker: Arc<Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MediaHandle {
    pub fn spawn(n: usize, config: Arc<MediaConfig>, live: Arc<Live>) -> io::Result<MediaHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("load-media-{n}"))
            .spawn(move || Thread::new(poll, rx, config, live).run())?;
        Ok(MediaHandle {
            tx,
            waker,
            thread: Some(thread),
        })
    }

    pub fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Stops the thread (closing its peer connections) and waits for it.
    pub fn shutdown(&mut self) {
        self.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ------------------------------------------------------------------------------------------------
// Peer connections

fn fb(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.into(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.into(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            fb("goog-remb", ""),
            fb("ccm", "fir"),
            fb("nack", ""),
            fb("nack", "pli"),
        ],
    }
}

fn build_pc(publisher: bool, simulcast: bool) -> Result<RTCPeerConnection, String> {
    let err = |e: rtc::shared::error::Error| e.to_string();
    let mut m = MediaEngine::default();
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: PT_OPUS,
        },
        RtpCodecKind::Audio,
    )
    .map_err(err)?;
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8_codec(),
            payload_type: PT_VP8,
        },
        RtpCodecKind::Video,
    )
    .map_err(err)?;
    // Subscribers run no interceptor at all: rtc's receiver-report interceptor costs about a
    // third of the receive path, so subscribers send their own receiver reports
    // ([`RtpRx`]). Publishers get sender reports (the server relays them) and NACK responses.
    let mut registry = Registry::new();
    if publisher {
        registry = configure_rtcp_reports(registry);
        // Retransmits on NACK as a browser does (nothing is lost on loopback, so it stays idle).
        registry = configure_nack(registry, &mut m);
        if simulcast {
            for uri in [MID_URI, RID_URI] {
                m.register_header_extension(
                    RTCRtpHeaderExtensionCapability { uri: uri.into() },
                    RtpCodecKind::Video,
                    None,
                )
                .map_err(err)?;
            }
        }
        // Keyframe requests must reach us: mark inbound RTCP for the application.
        registry = registry.with(
            rtc::interceptor::Slot::from(14_000usize),
            fanout_rtc::peer::DeliverRtcp::default(),
        );
    }
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(
            SettingEngineBuilder::new()
                // Connectivity checks every 50 ms as browsers pace them (rtc's default is 200 ms,
                // which would add up to 400 ms to every join), for up to 2 s.
                .with_ice_connection_attempts(Some(Duration::from_millis(50)), Some(40))
                // rtc counts only STUN as a sign of life (not media): like the server, allow 15 s
                // without a keepalive answer before "disconnected" and 30 s before "failed".
                .with_ice_timeouts(
                    Some(Duration::from_secs(15)),
                    Some(Duration::from_secs(30)),
                    Some(Duration::from_secs(2)),
                )
                .build(),
        )
        .with_media_engine(m)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(err)
}

/// The host candidate of our socket, as the server builds its own.
fn host_candidate(
    addr: SocketAddr,
) -> Result<rtc::peer_connection::transport::RTCIceCandidateInit, String> {
    fanout_rtc::peer::host_candidate(addr).map_err(|e| e.to_string())
}

/// (mid, kind) of each media section of an SDP.
pub fn sdp_mids(sdp: &str) -> Vec<(String, Kind)> {
    let mut out = Vec::new();
    let mut kind: Option<Kind> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            kind = match rest.split(' ').next() {
                Some("audio") => Some(Kind::Audio),
                Some("video") => Some(Kind::Video),
                _ => None,
            };
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if let Some(k) = kind.take() {
                out.push((mid.to_string(), k));
            }
        }
    }
    out
}

/// Small fast PRNG (xorshift64*).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ------------------------------------------------------------------------------------------------
// Publishing state

struct TxStream {
    kind: Kind,
    layer: u8,
    rid: String,
    ssrc: u32,
    /// Payload sequence number: packets sent so far.
    seq: u32,
    rtp_seq: u16,
    rtp_ts: u32,
    kbps: u32,
    width: u16,
    height: u16,
    keyframe_wanted: bool,
    last_keyframe: Option<Instant>,
    keyframes: u64,
    keyframe_requests: u64,
    picture_id: u16,
}

struct PubTx {
    index: u32,
    audio: Option<(RTCRtpSenderId, TxStream)>,
    video_sender: Option<RTCRtpSenderId>,
    video: Vec<TxStream>,
    /// (mid extension id, rid extension id, the video section's mid) when simulcast.
    sim_ext: Option<(u8, u8, Bytes)>,
    next_audio: Instant,
    next_frame: Instant,
    started: bool,
    rng: Rng,
}

// ------------------------------------------------------------------------------------------------
// Receiving state

/// RTP-level reception statistics of one SSRC, for the receiver reports a subscriber sends
/// (RFC 3550 A.1, A.3, A.8).
struct RtpRx {
    ssrc: u32,
    clock: u32,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    jitter: f64,
    last_transit: Option<u32>,
}

impl RtpRx {
    fn new(ssrc: u32, seq: u16, clock: u32) -> Self {
        RtpRx {
            ssrc,
            clock,
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            last_transit: None,
        }
    }

    #[inline]
    fn on_packet(&mut self, seq: u16, rtp_ts: u32, recv_ns: u64) {
        let delta = seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        }
        self.received = self.received.wrapping_add(1);
        let arrival = (u128::from(recv_ns) * u128::from(self.clock) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    fn report(&mut self) -> rtcp::reception_report::ReceptionReport {
        let ext_max = self.cycles.wrapping_add(u32::from(self.max_seq));
        let expected = ext_max
            .wrapping_sub(u32::from(self.base_seq))
            .wrapping_add(1);
        let lost = expected.saturating_sub(self.received).min(0x7f_ffff);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        rtcp::reception_report::ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            total_lost: lost,
            last_sequence_number: ext_max,
            jitter: self.jitter as u32,
            last_sender_report: 0,
            delay: 0,
        }
    }
}

/// How often a subscriber sends a receiver report (browsers: about once a second).
const RR_INTERVAL: Duration = Duration::from_secs(1);

struct SubRx {
    /// mid -> (publisher index, kind), from the latest offer.
    mids: HashMap<String, (Option<u32>, Option<Kind>)>,
    /// SSRC -> (publisher index, kind) the offer announced for it.
    owners: Vec<(u32, Option<u32>, Option<Kind>)>,
    streams: Vec<StreamRx>,
    last: usize,
    rtp: Vec<RtpRx>,
    /// A receiver of the connection (receiver reports are written through it).
    receiver: Option<RTCRtpReceiverId>,
    rr_ssrc: u32,
    next_rr: Instant,
}

impl SubRx {
    #[inline]
    fn rtp(&mut self, ssrc: u32, seq: u16, clock: u32) -> &mut RtpRx {
        match self.rtp.iter().position(|r| r.ssrc == ssrc) {
            Some(i) => &mut self.rtp[i],
            None => {
                self.rtp.push(RtpRx::new(ssrc, seq, clock));
                self.rtp.last_mut().expect("just pushed")
            }
        }
    }

    /// A receiver report of every SSRC received, when one is due.
    fn receiver_report(
        &mut self,
        now: Instant,
    ) -> Option<(RTCRtpReceiverId, rtcp::receiver_report::ReceiverReport)> {
        if now < self.next_rr || self.rtp.is_empty() {
            return None;
        }
        self.next_rr = now + RR_INTERVAL;
        let receiver = self.receiver?;
        Some((
            receiver,
            rtcp::receiver_report::ReceiverReport {
                ssrc: self.rr_ssrc,
                reports: self.rtp.iter_mut().take(31).map(RtpRx::report).collect(),
                profile_extensions: Bytes::new(),
            },
        ))
    }

    #[inline]
    fn stream(&mut self, publisher: u32, kind: Kind, layer: u8) -> &mut StreamRx {
        if let Some(s) = self.streams.get(self.last) {
            if s.publisher == publisher && s.kind == kind && s.layer == layer {
                return &mut self.streams[self.last];
            }
        }
        let i = match self
            .streams
            .iter()
            .position(|s| s.publisher == publisher && s.kind == kind && s.layer == layer)
        {
            Some(i) => i,
            None => {
                self.streams.push(StreamRx::new(publisher, kind, layer));
                self.streams.len() - 1
            }
        };
        self.last = i;
        &mut self.streams[i]
    }
}

enum Side {
    Pub(Box<PubTx>),
    Sub(Box<SubRx>),
}

struct Peer {
    /// "<UserID>/pub" or "<UserID>/sub" (for traces).
    who: String,
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    pc: RTCPeerConnection,
    participant: u64,
    role: Role,
    ws_open: Instant,
    side: Side,
    next_timeout: Option<Instant>,
    connected: bool,
    got_media: bool,
    failed: bool,
    ice_state: String,
    state: String,
    offers: u32,
    /// DTLS handshake message sequence numbers of the ClientHellos received.
    hellos: Vec<u16>,
    /// When a connected peer's timeout is next recomputed (poll_timeout walks every layer; once
    /// connected, its timers are coarse: RTCP reports, ICE keepalives).
    timeout_refresh: Instant,
}

/// Thread-local counters per role.
#[derive(Default)]
struct Agg {
    latency_us: [Histogram; 2],
    join_us: [Histogram; 2],
    bad: [u64; 2],
    misrouted: [u64; 2],
    packets_in: [u64; 2],
    bytes_in: u64,
    packets_out: u64,
    gaps: i64,
    send_errors: u64,
    pc_failed: u64,
    first_media: [u64; 2],
    flushed_first: [u64; 2],
    /// Published to [`Live`] already.
    flushed: (u64, u64, u64, i64, u64, u64),
}

// ------------------------------------------------------------------------------------------------
// The thread

struct Thread {
    poll: Poll,
    rx: Receiver<Cmd>,
    config: Arc<MediaConfig>,
    live: Arc<Live>,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    /// participant -> (publishing peer, subscribing peer).
    by_participant: HashMap<u64, (Option<usize>, Option<usize>)>,
    publishers: Vec<usize>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    agg: Agg,
    sending: bool,
    /// Sent streams of publishers that were removed.
    retired_tx: Vec<TxReport>,
    retired_rx: Vec<RxReport>,
    retired_ports: Vec<u16>,
    cpu_flushed: u64,
    wait_flushed: u64,
}

impl Thread {
    fn new(poll: Poll, rx: Receiver<Cmd>, config: Arc<MediaConfig>, live: Arc<Live>) -> Self {
        Thread {
            poll,
            rx,
            config,
            live,
            peers: Vec::new(),
            free: Vec::new(),
            by_participant: HashMap::new(),
            publishers: Vec::new(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            agg: Agg::default(),
            sending: true,
            retired_tx: Vec::new(),
            retired_rx: Vec::new(),
            retired_ports: Vec::new(),
            cpu_flushed: 0,
            wait_flushed: thread_wait_ns(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut batch = Batch::default();
        let mut next_sweep = Instant::now();
        let mut next_flush = Instant::now();
        loop {
            let now = Instant::now();
            let mut wake = next_sweep.min(next_flush);
            if self.sending {
                for &i in &self.publishers {
                    if let Some(Peer {
                        side: Side::Pub(tx),
                        ..
                    }) = self.peers[i].as_ref()
                    {
                        if tx.started {
                            wake = wake.min(tx.next_audio).min(tx.next_frame);
                        }
                    }
                }
            }
            let timeout = wake.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("fanout-load: media poll failed: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    continue;
                }
                self.read_socket(t.0, &mut batch);
            }
            // Commands.
            loop {
                match self.rx.try_recv() {
                    Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => {
                        self.close_all();
                        return;
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            if self.sending {
                self.send_media(now);
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP;
            }
            self.flush_dirty();
            if now >= next_flush {
                self.flush_live();
                next_flush = now + FLUSH;
            }
        }
    }

    fn mark(&mut self, i: usize) {
        if !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push(i);
        }
    }

    fn flush_live(&mut self) {
        let a = &mut self.agg;
        let now = (
            a.packets_in[0] + a.packets_in[1],
            a.packets_out,
            a.bytes_in,
            a.gaps,
            a.bad[0] + a.bad[1],
            a.send_errors,
        );
        let l = &self.live;
        l.packets_in
            .fetch_add(now.0 - a.flushed.0, Ordering::Relaxed);
        l.packets_out
            .fetch_add(now.1 - a.flushed.1, Ordering::Relaxed);
        l.bytes_in.fetch_add(now.2 - a.flushed.2, Ordering::Relaxed);
        l.gaps.fetch_add(now.3 - a.flushed.3, Ordering::Relaxed);
        l.bad.fetch_add(now.4 - a.flushed.4, Ordering::Relaxed);
        l.send_errors
            .fetch_add(now.5 - a.flushed.5, Ordering::Relaxed);
        a.flushed = now;
        for r in 0..2 {
            l.first_media[r].fetch_add(a.first_media[r] - a.flushed_first[r], Ordering::Relaxed);
        }
        a.flushed_first = a.first_media;
        let cpu = thread_cpu_ns();
        l.media_cpu_ns
            .fetch_add(cpu - self.cpu_flushed, Ordering::Relaxed);
        self.cpu_flushed = cpu;
        let wait = thread_wait_ns();
        l.media_wait_ns
            .fetch_add(wait.saturating_sub(self.wait_flushed), Ordering::Relaxed);
        self.wait_flushed = wait;
    }

    // -------------------------------------------------------------------------------- I/O

    fn read_socket(&mut self, i: usize, batch: &mut Batch) {
        let Some(peer) = self.peers.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let fd = peer.socket.as_raw_fd();
        let agg = &mut self.agg;
        let live = &self.live;
        loop {
            let got = batch.recv(fd, |message, from| {
                let now = Instant::now();
                let recv_ns = mono_ns();
                if !peer.connected {
                    crate::trace!(
                        peer.ws_open,
                        peer.who,
                        "recv {} bytes, first byte {}",
                        message.len(),
                        message.first().copied().unwrap_or(0)
                    );
                }
                if !peer.connected && repeated_client_hello(&mut peer.hellos, &message) {
                    // See `repeated_client_hello`: let our own retransmission timer answer.
                    live.hello_repeats.fetch_add(1, Ordering::Relaxed);
                    crate::trace!(peer.ws_open, peer.who, "repeated ClientHello not passed on");
                    return;
                }
                let r = peer.pc.handle_read(TaggedBytesMut {
                    now,
                    transport: TransportContext {
                        local_addr: peer.local,
                        peer_addr: from,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message,
                });
                if !peer.connected {
                    if let Err(e) = r {
                        crate::trace!(peer.ws_open, peer.who, "datagram refused: {e}");
                    }
                    // While connecting, every reply (STUN, DTLS) goes out at once and every
                    // state change is seen before the next datagram.
                    drain(peer, agg, live);
                } else {
                    while let Some(m) = peer.pc.poll_read() {
                        on_message(peer, m.message, recv_ns, agg);
                    }
                }
            });
            match got {
                Ok(n) if n == crate::recv::BATCH => drain(peer, agg, live),
                _ => break,
            }
        }
        if !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push(i);
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(i) = self.dirty.pop() {
            self.is_dirty[i] = false;
            if let Some(peer) = self.peers.get_mut(i).and_then(Option::as_mut) {
                drain(peer, &mut self.agg, &self.live);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            let Some(peer) = self.peers[i].as_mut() else {
                continue;
            };
            if peer.next_timeout.is_some_and(|t| t <= now) {
                let _ = peer.pc.handle_timeout(now);
                peer.next_timeout = None;
                self.mark(i);
            }
            let Some(peer) = self.peers[i].as_mut() else {
                continue;
            };
            if let Side::Sub(rx) = &mut peer.side {
                if let Some((receiver, rr)) = rx.receiver_report(now) {
                    if let Some(mut r) = peer.pc.rtp_receiver(receiver) {
                        if r.write_rtcp(now, vec![Box::new(rr)]).is_ok() {
                            self.live.receiver_reports.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    self.mark(i);
                }
            }
        }
    }

    // -------------------------------------------------------------------------------- sending

    fn send_media(&mut self, now: Instant) {
        let config = self.config.clone();
        for k in 0..self.publishers.len() {
            let i = self.publishers[k];
            let Some(peer) = self.peers[i].as_mut() else {
                continue;
            };
            let Side::Pub(tx) = &mut peer.side else {
                continue;
            };
            if !tx.started {
                continue;
            }
            let mut sent = false;
            // Audio every 20 ms (a stall longer than 200 ms skips ahead rather than bursting).
            if now.saturating_duration_since(tx.next_audio) > Duration::from_millis(200) {
                tx.next_audio = now;
            }
            while tx.next_audio <= now {
                if let Some((sender, s)) = tx.audio.as_mut() {
                    let len = tx.rng.range(100, 160) as usize;
                    let stamp = Stamp {
                        kind: Kind::Audio,
                        layer: 0,
                        publisher: tx.index,
                        seq: s.seq,
                        send_ns: mono_ns(),
                    };
                    let payload = payload::audio(&stamp, len);
                    let pkt = rtp_packet(PT_OPUS, s, false, payload, None);
                    s.rtp_ts = s.rtp_ts.wrapping_add(960);
                    s.seq += 1;
                    write_rtp(&mut peer.pc, *sender, pkt, now, &mut self.agg);
                    sent = true;
                }
                tx.next_audio += AUDIO_INTERVAL;
            }
            let frame_interval = Duration::from_secs_f64(1.0 / f64::from(config.fps.max(1)));
            if now.saturating_duration_since(tx.next_frame) > Duration::from_millis(200) {
                tx.next_frame = now;
            }
            while tx.next_frame <= now {
                if let Some(sender) = tx.video_sender {
                    for layer in 0..tx.video.len() {
                        send_frame(&mut peer.pc, sender, tx, layer, &config, now, &mut self.agg);
                    }
                    sent = true;
                }
                tx.next_frame += frame_interval;
            }
            if sent {
                self.mark(i);
            }
        }
    }

    // -------------------------------------------------------------------------------- commands

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::NewPublisher {
                participant,
                role,
                user,
                index,
                ws_open,
                reply,
            } => {
                let r = self.new_publisher(participant, role, &user, index, ws_open);
                let _ = reply.send(r);
            }
            Cmd::PublisherAnswer {
                participant,
                sdp,
                reply,
            } => {
                let r = self.publisher_answer(participant, sdp);
                let _ = reply.send(r);
            }
            Cmd::SubscriberOffer {
                participant,
                user,
                role,
                ws_open,
                sdp,
                tracks,
                reply,
            } => {
                let r = self.subscriber_offer(participant, user, role, ws_open, sdp, tracks);
                let _ = reply.send(r);
            }
            Cmd::Remove { participant } => self.remove(participant),
            Cmd::StopSending => self.sending = false,
            Cmd::Report { reply } => {
                let _ = reply.send(self.report());
            }
            Cmd::Shutdown => {}
        }
    }

    fn add_peer(&mut self, mut peer: Peer) -> io::Result<usize> {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.peers.push(None);
                self.is_dirty.push(false);
                self.peers.len() - 1
            }
        };
        self.poll
            .registry()
            .register(&mut peer.socket, Token(i), Interest::READABLE)?;
        self.peers[i] = Some(peer);
        self.mark(i);
        Ok(i)
    }

    fn bind(&self) -> Result<(mio::net::UdpSocket, SocketAddr), String> {
        let socket = mio::net::UdpSocket::bind(SocketAddr::new(self.config.local_ip, 0))
            .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        Ok((socket, local))
    }

    fn new_publisher(
        &mut self,
        participant: u64,
        role: Role,
        user: &str,
        index: u32,
        ws_open: Instant,
    ) -> Result<PubOffer, String> {
        let cfg = self.config.clone();
        let (socket, local) = self.bind()?;
        let mut pc = build_pc(true, cfg.simulcast)?;
        let mut rng = Rng::new(mono_ns() ^ (u64::from(index) << 32) ^ participant);
        let mut stream = |kind: Kind, layer: u8, rid: &str, kbps: u32, w: u16, h: u16| TxStream {
            kind,
            layer,
            rid: rid.to_string(),
            ssrc: rng.next() as u32 | 1,
            seq: 0,
            rtp_seq: rng.next() as u16,
            rtp_ts: rng.next() as u32,
            kbps,
            width: w,
            height: h,
            keyframe_wanted: true,
            last_keyframe: None,
            keyframes: 0,
            keyframe_requests: 0,
            picture_id: rng.next() as u16 & 0x7fff,
        };
        let audio = stream(Kind::Audio, 0, "", 0, 0, 0);
        let video: Vec<TxStream> = if cfg.audio_only {
            Vec::new()
        } else if cfg.simulcast {
            // Lowest first: quarter, half and full resolution, about 1/16, 1/4 and all of the rate.
            vec![
                stream(
                    Kind::Video,
                    0,
                    "q",
                    (cfg.video_kbps / 8).max(30),
                    cfg.width / 4,
                    cfg.height / 4,
                ),
                stream(
                    Kind::Video,
                    1,
                    "h",
                    (cfg.video_kbps / 3).max(60),
                    cfg.width / 2,
                    cfg.height / 2,
                ),
                stream(Kind::Video, 2, "f", cfg.video_kbps, cfg.width, cfg.height),
            ]
        } else {
            vec![stream(
                Kind::Video,
                0,
                "",
                cfg.video_kbps,
                cfg.width,
                cfg.height,
            )]
        };
        let err = |e: rtc::shared::error::Error| e.to_string();
        let audio_sender = pc
            .add_track(MediaStreamTrack::new(
                user.to_string(),
                format!("{user}-audio"),
                format!("{user}-audio"),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(audio.ssrc),
                        ..Default::default()
                    },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            ))
            .map_err(err)?;
        let video_sender = if video.is_empty() {
            None
        } else {
            let encodings = video
                .iter()
                .map(|s| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: s.rid.clone(),
                        ssrc: Some(s.ssrc),
                        ..Default::default()
                    },
                    codec: vp8_codec(),
                    ..Default::default()
                })
                .collect();
            Some(
                pc.add_track(MediaStreamTrack::new(
                    user.to_string(),
                    format!("{user}-video"),
                    format!("{user}-video"),
                    RtpCodecKind::Video,
                    encodings,
                ))
                .map_err(err)?,
            )
        };
        pc.add_local_candidate(host_candidate(local)?)
            .map_err(err)?;
        let offer = pc.create_offer(None).map_err(err)?;
        pc.set_local_description(Instant::now(), offer.clone())
            .map_err(err)?;
        let now = Instant::now();
        let phase = Duration::from_micros(rng.range(0, 20_000));
        let tx = PubTx {
            index,
            audio: Some((audio_sender, audio)),
            video_sender,
            video,
            sim_ext: None,
            next_audio: now + phase,
            next_frame: now + phase,
            started: false,
            rng,
        };
        let tracks = sdp_mids(&offer.sdp);
        let peer = Peer {
            who: format!("{user}/pub"),
            socket,
            local,
            pc,
            participant,
            role,
            ws_open,
            side: Side::Pub(Box::new(tx)),
            next_timeout: None,
            connected: false,
            got_media: false,
            failed: false,
            ice_state: "new".into(),
            state: "new".into(),
            offers: 0,
            timeout_refresh: Instant::now(),
            hellos: Vec::new(),
        };
        let i = self.add_peer(peer).map_err(|e| e.to_string())?;
        self.by_participant.entry(participant).or_default().0 = Some(i);
        self.publishers.push(i);
        Ok(PubOffer {
            sdp: offer.sdp,
            tracks,
        })
    }

    fn note_server(&self, sdp: &str) {
        if let Ok(mut a) = self.live.server_addrs.lock() {
            a.extend(sdp_candidates(sdp));
        }
    }

    fn publisher_answer(&mut self, participant: u64, sdp: String) -> Result<(), String> {
        let i = self
            .by_participant
            .get(&participant)
            .and_then(|p| p.0)
            .ok_or("no publishing connection")?;
        self.note_server(&sdp);
        let peer = self.peers[i].as_mut().ok_or("no publishing connection")?;
        let desc = RTCSessionDescription::answer(sdp).map_err(|e| e.to_string())?;
        peer.pc
            .set_remote_description(Instant::now(), desc)
            .map_err(|e| e.to_string())?;
        // Simulcast: the packets must carry mid and rid header extensions (negotiated ids).
        if let Side::Pub(tx) = &mut peer.side {
            if tx.video.len() > 1 {
                if let Some(sender) = tx.video_sender {
                    let mid = fanout_rtc::peer::mid_of_sender(&mut peer.pc, sender);
                    let exts = peer.pc.rtp_sender(sender).map(|mut s| {
                        s.get_parameters()
                            .rtp_parameters
                            .header_extensions
                            .iter()
                            .map(|e| (e.uri.clone(), e.id as u8))
                            .collect::<Vec<_>>()
                    });
                    let find = |uri: &str| {
                        exts.as_ref()
                            .and_then(|v| v.iter().find(|(u, _)| u == uri).map(|(_, id)| *id))
                    };
                    match (find(MID_URI), find(RID_URI), mid) {
                        (Some(m), Some(r), Some(mid)) => {
                            tx.sim_ext = Some((m, r, Bytes::from(mid.into_bytes())))
                        }
                        _ => {
                            return Err(
                                "the answer did not accept the mid and rid header extensions \
                                 simulcast needs"
                                    .into(),
                            )
                        }
                    }
                }
            }
        }
        self.mark(i);
        Ok(())
    }

    fn subscriber_offer(
        &mut self,
        participant: u64,
        user: String,
        role: Role,
        ws_open: Instant,
        sdp: String,
        tracks: Vec<OfferTrack>,
    ) -> Result<String, String> {
        let existing = self.by_participant.get(&participant).and_then(|p| p.1);
        let i = match existing {
            Some(i) => i,
            None => {
                let (socket, local) = self.bind()?;
                let mut pc = build_pc(false, false)?;
                pc.add_local_candidate(host_candidate(local)?)
                    .map_err(|e| e.to_string())?;
                let peer = Peer {
                    who: format!("{user}/sub"),
                    socket,
                    local,
                    pc,
                    participant,
                    role,
                    ws_open,
                    side: Side::Sub(Box::new(SubRx {
                        mids: HashMap::new(),
                        owners: Vec::new(),
                        streams: Vec::new(),
                        last: 0,
                        rtp: Vec::new(),
                        receiver: None,
                        rr_ssrc: mono_ns() as u32 | 1,
                        next_rr: Instant::now() + Duration::from_micros(mono_ns() % 1_000_000),
                    })),
                    next_timeout: None,
                    connected: false,
                    got_media: false,
                    failed: false,
                    ice_state: "new".into(),
                    state: "new".into(),
                    offers: 0,
                    timeout_refresh: Instant::now(),
                    hellos: Vec::new(),
                };
                let i = self.add_peer(peer).map_err(|e| e.to_string())?;
                self.by_participant.entry(participant).or_default().1 = Some(i);
                i
            }
        };
        let publishers = &self.config.publishers;
        let peer = self.peers[i].as_mut().ok_or("no subscribing connection")?;
        peer.offers += 1;
        if let Side::Sub(rx) = &mut peer.side {
            rx.mids = tracks
                .iter()
                .map(|t| {
                    (
                        t.mid.clone(),
                        (
                            publishers.get(&t.user_id.to_ascii_lowercase()).copied(),
                            t.kind,
                        ),
                    )
                })
                .collect();
        }
        let now = Instant::now();
        let err = |e: rtc::shared::error::Error| e.to_string();
        if let Ok(mut a) = self.live.server_addrs.lock() {
            a.extend(sdp_candidates(&sdp));
        }
        let desc = RTCSessionDescription::offer(sdp).map_err(err)?;
        peer.pc.set_remote_description(now, desc).map_err(err)?;
        let answer = peer.pc.create_answer(None).map_err(err)?;
        peer.pc
            .set_local_description(now, answer.clone())
            .map_err(err)?;
        self.mark(i);
        Ok(answer.sdp)
    }

    fn remove(&mut self, participant: u64) {
        let Some((a, b)) = self.by_participant.remove(&participant) else {
            return;
        };
        for i in [a, b].into_iter().flatten() {
            if let Some(mut peer) = self.peers[i].take() {
                let _ = peer.pc.close();
                while let Some(out) = peer.pc.poll_write() {
                    let _ = peer.socket.send_to(&out.message, out.transport.peer_addr);
                }
                let _ = self.poll.registry().deregister(&mut peer.socket);
                self.retired_ports.push(peer.local.port());
                collect(&peer, &mut self.retired_tx, &mut self.retired_rx);
                self.free.push(i);
                self.publishers.retain(|&p| p != i);
            }
        }
    }

    fn report(&mut self) -> ThreadReport {
        self.flush_live();
        let mut tx = self.retired_tx.clone();
        let mut rx = self.retired_rx.clone();
        let mut ports = self.retired_ports.clone();
        let mut peers = Vec::new();
        for peer in self.peers.iter().flatten() {
            collect(peer, &mut tx, &mut rx);
            ports.push(peer.local.port());
            peers.push(PeerReport {
                participant: peer.participant,
                publishing: matches!(peer.side, Side::Pub(_)),
                ice_state: peer.ice_state.clone(),
                state: peer.state.clone(),
                offers: peer.offers,
                got_media: peer.got_media,
            });
        }
        ThreadReport {
            rx,
            tx,
            latency_us: self.agg.latency_us.clone(),
            join_us: self.agg.join_us.clone(),
            bad: self.agg.bad,
            misrouted: self.agg.misrouted,
            packets_in: self.agg.packets_in,
            ports,
            peers,
            cpu_ns: thread_cpu_ns(),
            pc_failed: self.agg.pc_failed,
        }
    }

    fn close_all(&mut self) {
        for peer in self.peers.iter_mut().flatten() {
            let _ = peer.pc.close();
            while let Some(out) = peer.pc.poll_write() {
                let _ = peer.socket.send_to(&out.message, out.transport.peer_addr);
            }
        }
        self.flush_live();
    }
}

fn collect(peer: &Peer, tx: &mut Vec<TxReport>, rx: &mut Vec<RxReport>) {
    match &peer.side {
        Side::Pub(p) => {
            for s in p.audio.iter().map(|(_, s)| s).chain(p.video.iter()) {
                tx.push(TxReport {
                    participant: peer.participant,
                    publisher: p.index,
                    kind: s.kind,
                    layer: s.layer,
                    sent: s.seq,
                    keyframes: s.keyframes,
                    keyframe_requests: s.keyframe_requests,
                });
            }
        }
        Side::Sub(s) => {
            for st in &s.streams {
                rx.push(RxReport {
                    participant: peer.participant,
                    role: peer.role,
                    stream: st.clone(),
                });
            }
        }
    }
}

fn rtp_packet(
    pt: u8,
    s: &mut TxStream,
    marker: bool,
    payload: Vec<u8>,
    sim_ext: Option<&(u8, u8, Bytes)>,
) -> rtc::rtp::Packet {
    let mut header = rtc::rtp::header::Header {
        version: 2,
        marker,
        payload_type: pt,
        sequence_number: s.rtp_seq,
        timestamp: s.rtp_ts,
        ssrc: s.ssrc,
        ..Default::default()
    };
    if let Some((mid_id, rid_id, mid)) = sim_ext {
        header.extension = true;
        header.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
        let _ = header.set_extension(*mid_id, mid.clone());
        let _ = header.set_extension(*rid_id, Bytes::from(s.rid.clone().into_bytes()));
    }
    s.rtp_seq = s.rtp_seq.wrapping_add(1);
    rtc::rtp::Packet {
        header,
        payload: Bytes::from(payload),
    }
}

fn write_rtp(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    pkt: rtc::rtp::Packet,
    now: Instant,
    agg: &mut Agg,
) {
    let ok = pc
        .rtp_sender(sender)
        .map(|mut s| s.write_rtp(now, pkt).is_ok())
        .unwrap_or(false);
    if ok {
        agg.packets_out += 1;
    } else {
        agg.send_errors += 1;
    }
}

/// Sends one frame of video layer `layer`.
fn send_frame(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    tx: &mut PubTx,
    layer: usize,
    cfg: &MediaConfig,
    now: Instant,
    agg: &mut Agg,
) {
    let fps = f64::from(cfg.fps.max(1));
    let s = &mut tx.video[layer];
    let periodic = s
        .last_keyframe
        .is_none_or(|t| now.saturating_duration_since(t) >= cfg.keyframe_interval);
    let keyframe = s.keyframe_wanted || periodic;
    // Frame sizes: the layer's bitrate over a GOP, a keyframe ~5x an average frame, interframes
    // sharing the rest with +-25% variation.
    let avg = f64::from(s.kbps) * 1000.0 / 8.0 / fps;
    let gop = (fps * cfg.keyframe_interval.as_secs_f64()).max(2.0);
    let size = if keyframe {
        avg * 5.0_f64.min(gop)
    } else {
        let rest = (avg * gop - avg * 5.0_f64.min(gop)).max(avg * 0.2) / (gop - 1.0);
        rest * (0.75 + 0.5 * tx.rng.unit())
    };
    let spec = FrameSpec {
        size: (size as usize).max(60),
        keyframe,
        width: s.width.max(16),
        height: s.height.max(16),
        picture_id: s.picture_id,
    };
    if keyframe {
        s.keyframe_wanted = false;
        s.last_keyframe = Some(now);
        s.keyframes += 1;
    }
    let chunks = payload::frame_chunks(&spec);
    let last = chunks.len() - 1;
    for (k, chunk) in chunks.into_iter().enumerate() {
        let stamp = Stamp {
            kind: Kind::Video,
            layer: s.layer,
            publisher: tx.index,
            seq: s.seq,
            send_ns: mono_ns(),
        };
        let p = payload::vp8_packet(&spec, k, chunk, &stamp);
        let pkt = rtp_packet(PT_VP8, s, k == last, p, tx.sim_ext.as_ref());
        s.seq += 1;
        write_rtp(pc, sender, pkt, now, agg);
    }
    s.picture_id = (s.picture_id + 1) & 0x7fff;
    s.rtp_ts = s.rtp_ts.wrapping_add((90_000.0 / fps) as u32);
}

/// Sends what the peer connection has queued and handles its events and messages.
fn drain(peer: &mut Peer, agg: &mut Agg, live: &Live) {
    loop {
        let mut any = false;
        while let Some(out) = peer.pc.poll_write() {
            any = true;
            if !peer.connected {
                crate::trace!(
                    peer.ws_open,
                    peer.who,
                    "send {} bytes, first byte {}",
                    out.message.len(),
                    out.message[0]
                );
            }
            if peer
                .socket
                .send_to(&out.message, out.transport.peer_addr)
                .is_err()
            {
                agg.send_errors += 1;
            }
        }
        while let Some(ev) = peer.pc.poll_event() {
            any = true;
            on_event(peer, ev, agg, live);
        }
        let recv_ns = mono_ns();
        while let Some(m) = peer.pc.poll_read() {
            any = true;
            on_message(peer, m.message, recv_ns, agg);
        }
        if !any {
            break;
        }
    }
    let now = Instant::now();
    if !peer.connected || peer.next_timeout.is_none() || now >= peer.timeout_refresh {
        peer.next_timeout = peer.pc.poll_timeout();
        peer.timeout_refresh = now + TIMEOUT_REFRESH;
    }
}

fn on_event(peer: &mut Peer, ev: RTCPeerConnectionEvent, agg: &mut Agg, live: &Live) {
    match ev {
        RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
            peer.state = state.to_string();
            crate::trace!(
                peer.ws_open,
                peer.who,
                "{} connection {state}",
                if matches!(peer.side, Side::Pub(_)) {
                    "publishing"
                } else {
                    "subscribing"
                }
            );
            match state {
                RTCPeerConnectionState::Connected if !peer.connected => {
                    peer.connected = true;
                    if let Side::Pub(tx) = &mut peer.side {
                        tx.started = true;
                        let now = Instant::now();
                        tx.next_audio = tx.next_audio.max(now);
                        tx.next_frame = tx.next_frame.max(now);
                        live.pubs_connected.fetch_add(1, Ordering::Relaxed);
                        let r = peer.role.index();
                        agg.join_us[r].record(peer.ws_open.elapsed().as_micros() as u64);
                    }
                }
                RTCPeerConnectionState::Failed if !peer.failed => {
                    peer.failed = true;
                    agg.pc_failed += 1;
                    live.pc_failed.fetch_add(1, Ordering::Relaxed);
                    if let Side::Pub(tx) = &mut peer.side {
                        tx.started = false;
                    }
                }
                _ => {}
            }
        }
        RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
            peer.ice_state = state.to_string();
            crate::trace!(peer.ws_open, peer.who, "ICE {state}");
        }
        RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
            if let Side::Sub(rx) = &mut peer.side {
                rx.receiver.get_or_insert(init.receiver_id);
                let owner = fanout_rtc::peer::mid_of_receiver(&mut peer.pc, init.receiver_id)
                    .and_then(|mid| rx.mids.get(&mid).copied());
                if let Some((publisher, kind)) = owner {
                    rx.owners.retain(|o| o.0 != init.ssrc);
                    rx.owners.push((init.ssrc, publisher, kind));
                }
            }
        }
        _ => {}
    }
}

#[inline]
fn on_message(peer: &mut Peer, msg: RTCMessage, recv_ns: u64, agg: &mut Agg) {
    match (&mut peer.side, msg) {
        (Side::Sub(rx), RTCMessage::RtpPacket(_, pkt)) => {
            let r = peer.role.index();
            agg.packets_in[r] += 1;
            agg.bytes_in += pkt.payload.len() as u64;
            let parsed = match payload::parse(&pkt.payload) {
                Ok(p) => p,
                Err(_) => {
                    agg.bad[r] += 1;
                    return;
                }
            };
            let st = parsed.stamp;
            let ssrc = pkt.header.ssrc;
            let clock = match st.kind {
                Kind::Audio => 48_000,
                Kind::Video => 90_000,
            };
            rx.rtp(ssrc, pkt.header.sequence_number, clock).on_packet(
                pkt.header.sequence_number,
                pkt.header.timestamp,
                recv_ns,
            );
            if let Some(o) = rx.owners.iter().find(|o| o.0 == ssrc) {
                if o.1.is_some_and(|p| p != st.publisher) || o.2.is_some_and(|k| k != st.kind) {
                    agg.misrouted[r] += 1;
                }
            }
            let s = rx.stream(st.publisher, st.kind, st.layer);
            let first = s.unique == 0;
            match s.arrive(st.seq, &mut agg.gaps) {
                Arrival::Duplicate => {}
                _ => {
                    s.transit(st.send_ns, recv_ns);
                    agg.latency_us[r].record(recv_ns.saturating_sub(st.send_ns) / 1000);
                }
            }
            if first && st.kind == Kind::Video {
                s.first_keyframe = Some(parsed.keyframe);
            }
            if !peer.got_media {
                peer.got_media = true;
                crate::trace!(
                    peer.ws_open,
                    peer.who,
                    "first media packet ({})",
                    st.kind.name()
                );
                agg.first_media[r] += 1;
                if peer.role == Role::Subscriber {
                    agg.join_us[r].record(peer.ws_open.elapsed().as_micros() as u64);
                }
            }
        }
        (Side::Pub(tx), RTCMessage::RtcpPacket(_, packets)) => {
            for p in &packets {
                let any = p.as_any();
                let mut want = |ssrc: u32| {
                    for s in tx.video.iter_mut().filter(|s| s.ssrc == ssrc) {
                        s.keyframe_wanted = true;
                        s.keyframe_requests += 1;
                    }
                };
                if let Some(pli) = any.downcast_ref::<rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>() {
                    want(pli.media_ssrc);
                } else if let Some(fir) = any.downcast_ref::<rtcp::payload_feedbacks::full_intra_request::FullIntraRequest>() {
                    for e in &fir.fir {
                        want(e.ssrc);
                    }
                }
            }
        }
        _ => {}
    }
}
