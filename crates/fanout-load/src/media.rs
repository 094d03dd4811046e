//! Media threads: each owns many simulated peer connections (Fanout's own sans-I/O client
//! connection, `fanout_rtc::engine::client`: controlling ICE, DTLS, SRTP in place) and drives
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
use crate::sdp::{self, Local, PublishSpec, Server};
use crate::stats::{Arrival, Histogram, StreamRx};
use fanout_rtc::engine::client::{ClientConfig, ClientConnection};
use fanout_rtc::engine::codec::{Extension, ExtensionIds};
use fanout_rtc::engine::conn::{Event, Received};
use fanout_rtc::engine::dtls::Identity;
use fanout_rtc::engine::rtcp::{self as rtcp_in, Item};
use fanout_rtc::engine::rtp::Header;
use fanout_rtc::engine::sdp::Description;
use fanout_rtc::engine::srtp::Profile;
use fanout_rtc::engine::twcc::Recorder;
use mio::{Events, Interest, Poll, Token, Waker};
use rtc::rtcp;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub use crate::sdp::{PT_OPUS, PT_VP8};
const WAKER: Token = Token(usize::MAX);
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// How often peer connections' timers are checked.
const SWEEP: Duration = Duration::from_millis(5);
/// How often a publisher sends a sender report per stream (browsers: about once a second).
const SR_INTERVAL: Duration = Duration::from_secs(1);
/// Room for the SRTP tag after a packet in a send buffer.
const SEND_BUF: usize = 1500 + 64;
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
    /// Subscribers accept transport-wide sequence numbers and send transport-cc feedback.
    pub twcc: bool,
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
    /// Transport-cc feedback packets subscribers sent.
    pub transport_feedbacks: AtomicU64,
    /// Datagrams our connections refused (not from the server, failed authentication, before
    /// the keys): a sign of a confused server or a broken handshake.
    pub refused: AtomicU64,
    /// The server's media addresses (host candidates of its SDPs).
    pub server_addrs: std::sync::Mutex<std::collections::HashSet<SocketAddr>>,
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
    /// Per role: padding-only packets (the server's bandwidth probes), not in `packets_in`.
    pub padding: [u64; 2],
    /// Per role: RTX packets (retransmissions and probes), checked and not in `packets_in`.
    pub retransmissions: [u64; 2],
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
            .spawn(move || match Identity::generate() {
                Ok(identity) => Thread::new(poll, rx, config, live, identity).run(),
                Err(e) => eprintln!("fanout-load: cannot make a certificate: {e}"),
            })?;
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
// Small helpers

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

/// Writes an RTP header with one-byte header extensions (RFC 8285) at the start of `buf`;
/// returns its length.
fn write_header(
    buf: &mut [u8],
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    exts: &[(u8, &[u8])],
) -> usize {
    buf[0] = 0x80 | if exts.is_empty() { 0 } else { 0x10 };
    buf[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if exts.is_empty() {
        return 12;
    }
    let mut at = 16;
    for (id, value) in exts {
        let n = value.len().clamp(1, 16);
        buf[at] = (id << 4) | (n as u8 - 1);
        buf[at + 1..at + 1 + n].copy_from_slice(&value[..n]);
        at += 1 + n;
    }
    while (at - 16) % 4 != 0 {
        buf[at] = 0;
        at += 1;
    }
    let words = ((at - 16) / 4) as u16;
    buf[12..14].copy_from_slice(&[0xBE, 0xDE]);
    buf[14..16].copy_from_slice(&words.to_be_bytes());
    at
}

/// NTP time (RFC 3550 §4) of the wall clock, for sender reports.
fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
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
    octets: u32,
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
    audio: Option<TxStream>,
    video: Vec<TxStream>,
    /// The video section's mid and the answer's mid and rid extension ids, when simulcast.
    sim: Option<(u8, u8, String)>,
    next_audio: Instant,
    next_frame: Instant,
    next_sr: Instant,
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
    rr_ssrc: u32,
    next_rr: Instant,
    /// With `--twcc`: the negotiated extension and the arrivals to report.
    twcc: Option<Twcc>,
    /// RTX payload types of the latest offer: their payload starts with the original sequence
    /// number.
    rtx_pts: Vec<u8>,
}

/// A subscriber's transport-wide feedback: what a browser's receiver does for the server's
/// estimator.
struct Twcc {
    ids: ExtensionIds,
    recorder: Recorder,
    /// An SSRC received, named as the feedback's media source.
    media_ssrc: u32,
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
    /// A receiver report of every SSRC received, when one is due.
    fn receiver_report(&mut self, now: Instant) -> Option<rtcp::receiver_report::ReceiverReport> {
        if now < self.next_rr || self.rtp.is_empty() {
            return None;
        }
        self.next_rr = now + RR_INTERVAL;
        Some(rtcp::receiver_report::ReceiverReport {
            ssrc: self.rr_ssrc,
            reports: self.rtp.iter_mut().take(31).map(RtpRx::report).collect(),
            profile_extensions: bytes::Bytes::new(),
        })
    }

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

/// The peer's connection: none until the server's description is known.
enum Link {
    /// Our offer is out (publishers); the answer has not come.
    Offered,
    Up(Box<ClientConnection>),
}

struct Peer {
    /// "<UserID>/pub" or "<UserID>/sub" (for traces).
    who: String,
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    /// Our ICE credentials and candidate, as our SDP says them.
    sdp: Local,
    link: Link,
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
}

/// Thread-local counters per role.
#[derive(Default)]
struct Agg {
    latency_us: [Histogram; 2],
    join_us: [Histogram; 2],
    bad: [u64; 2],
    misrouted: [u64; 2],
    packets_in: [u64; 2],
    padding: [u64; 2],
    retransmissions: [u64; 2],
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
    /// One certificate for every connection of the thread (the server checks each against the
    /// fingerprint its SDP carried; generating one per connection would dominate join time).
    identity: Identity,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    /// participant -> (publishing peer, subscribing peer).
    by_participant: HashMap<u64, (Option<usize>, Option<usize>)>,
    publishers: Vec<usize>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    agg: Agg,
    sending: bool,
    /// Reused for every packet a publisher sends and every report.
    send_buf: Vec<u8>,
    /// Sent streams of publishers that were removed.
    retired_tx: Vec<TxReport>,
    retired_rx: Vec<RxReport>,
    retired_ports: Vec<u16>,
    cpu_flushed: u64,
    wait_flushed: u64,
    next_ufrag: u64,
}

impl Thread {
    fn new(
        poll: Poll,
        rx: Receiver<Cmd>,
        config: Arc<MediaConfig>,
        live: Arc<Live>,
        identity: Identity,
    ) -> Self {
        Thread {
            poll,
            rx,
            config,
            live,
            identity,
            peers: Vec::new(),
            free: Vec::new(),
            by_participant: HashMap::new(),
            publishers: Vec::new(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            agg: Agg::default(),
            sending: true,
            send_buf: vec![0; SEND_BUF],
            retired_tx: Vec::new(),
            retired_rx: Vec::new(),
            retired_ports: Vec::new(),
            cpu_flushed: 0,
            wait_flushed: thread_wait_ns(),
            next_ufrag: mono_ns(),
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
        let mut control = false;
        loop {
            let got = batch.recv(fd, |buf, from| {
                let now = Instant::now();
                let recv_ns = mono_ns();
                if !peer.connected {
                    crate::trace!(
                        peer.ws_open,
                        peer.who,
                        "recv {} bytes, first byte {}",
                        buf.len(),
                        buf.first().copied().unwrap_or(0)
                    );
                }
                let Link::Up(conn) = &mut peer.link else {
                    live.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                match conn.handle_datagram(now, from, buf) {
                    Ok(Received::Rtp { len }) => on_rtp(peer, &buf[..len], now, recv_ns, agg),
                    Ok(Received::Rtcp { len }) => on_rtcp(peer, &buf[..len]),
                    Ok(Received::Control) => {
                        control = true;
                        // While connecting, every reply (STUN, DTLS) goes out at once and every
                        // state change is seen before the next datagram.
                        drain(peer, agg, live);
                    }
                    Err(e) => {
                        live.refused.fetch_add(1, Ordering::Relaxed);
                        crate::trace!(peer.ws_open, peer.who, "datagram refused: {e}");
                    }
                }
            });
            match got {
                Ok(n) if n == crate::recv::BATCH => {}
                _ => break,
            }
        }
        if control {
            self.mark(i);
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
            let Link::Up(conn) = &mut peer.link else {
                continue;
            };
            if peer.next_timeout.is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
                peer.next_timeout = None;
                self.mark(i);
            }
            let Some(peer) = self.peers[i].as_mut() else {
                continue;
            };
            let Link::Up(conn) = &mut peer.link else {
                continue;
            };
            if !conn.is_connected() {
                continue;
            }
            match &mut peer.side {
                Side::Sub(rx) => {
                    if let Some(rr) = rx.receiver_report(now) {
                        if send_rtcp(conn, &peer.socket, &[&rr], &mut self.send_buf) {
                            self.live.receiver_reports.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(t) = rx.twcc.as_mut() {
                        if t.recorder.due().is_some_and(|due| due <= now) {
                            let sent = send_feedback(
                                conn,
                                &peer.socket,
                                t,
                                rx.rr_ssrc,
                                now,
                                &mut self.send_buf,
                            );
                            self.live
                                .transport_feedbacks
                                .fetch_add(sent, Ordering::Relaxed);
                        }
                    }
                }
                Side::Pub(tx) => {
                    if tx.started && now >= tx.next_sr {
                        tx.next_sr = now + SR_INTERVAL;
                        let ntp_time = ntp_now();
                        for s in tx.audio.iter().chain(tx.video.iter()).filter(|s| s.seq > 0) {
                            let sr = rtcp::sender_report::SenderReport {
                                ssrc: s.ssrc,
                                ntp_time,
                                rtp_time: s.rtp_ts,
                                packet_count: s.seq,
                                octet_count: s.octets,
                                reports: Vec::new(),
                                profile_extensions: bytes::Bytes::new(),
                            };
                            send_rtcp(conn, &peer.socket, &[&sr], &mut self.send_buf);
                        }
                    }
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
            let Link::Up(conn) = &mut peer.link else {
                continue;
            };
            if !tx.started {
                continue;
            }
            let mut out = Out {
                conn,
                socket: &peer.socket,
                buf: &mut self.send_buf,
                agg: &mut self.agg,
            };
            // Audio every 20 ms (a stall longer than 200 ms skips ahead rather than bursting).
            if now.saturating_duration_since(tx.next_audio) > Duration::from_millis(200) {
                tx.next_audio = now;
            }
            while tx.next_audio <= now {
                if let Some(s) = tx.audio.as_mut() {
                    let len = tx.rng.range(100, 160) as usize;
                    let stamp = Stamp {
                        kind: Kind::Audio,
                        layer: 0,
                        publisher: tx.index,
                        seq: s.seq,
                        send_ns: mono_ns(),
                    };
                    let payload = payload::audio(&stamp, len);
                    out.rtp(PT_OPUS, s, false, &payload, &[]);
                    s.rtp_ts = s.rtp_ts.wrapping_add(960);
                    s.seq += 1;
                }
                tx.next_audio += AUDIO_INTERVAL;
            }
            let frame_interval = Duration::from_secs_f64(1.0 / f64::from(config.fps.max(1)));
            if now.saturating_duration_since(tx.next_frame) > Duration::from_millis(200) {
                tx.next_frame = now;
            }
            while tx.next_frame <= now {
                for layer in 0..tx.video.len() {
                    send_frame(&mut out, tx, layer, &config, now);
                }
                tx.next_frame += frame_interval;
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

    /// Fresh ICE credentials and our candidate.
    fn local(&mut self, candidate: SocketAddr) -> Local {
        self.next_ufrag = self.next_ufrag.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut r = Rng::new(self.next_ufrag);
        Local {
            ufrag: format!("{:08x}", r.next() as u32),
            pwd: format!("{:016x}{:016x}", r.next(), r.next()),
            fingerprint: self.identity.fingerprint(),
            candidate,
        }
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
        let mut rng = Rng::new(mono_ns() ^ (u64::from(index) << 32) ^ participant);
        let mut stream = |kind: Kind, layer: u8, rid: &str, kbps: u32, w: u16, h: u16| TxStream {
            kind,
            layer,
            rid: rid.to_string(),
            ssrc: rng.next() as u32 | 1,
            seq: 0,
            rtp_seq: rng.next() as u16,
            rtp_ts: rng.next() as u32,
            octets: 0,
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
        let local_sdp = self.local(local);
        let encodings: Vec<(String, u32)> = video.iter().map(|s| (s.rid.clone(), s.ssrc)).collect();
        let offer = sdp::publish_offer(
            &local_sdp,
            &PublishSpec {
                user,
                audio_ssrc: audio.ssrc,
                video: &encodings,
            },
        );
        let tracks = Description::parse(&offer)
            .map(|d| sdp::mids(&d))
            .map_err(|e| format!("our own offer does not parse: {e}"))?;
        let now = Instant::now();
        let phase = Duration::from_micros(rng.range(0, 20_000));
        let tx = PubTx {
            index,
            audio: Some(audio),
            video,
            sim: None,
            next_audio: now + phase,
            next_frame: now + phase,
            next_sr: now + SR_INTERVAL,
            started: false,
            rng,
        };
        let peer = Peer {
            who: format!("{user}/pub"),
            socket,
            local,
            sdp: local_sdp,
            link: Link::Offered,
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
        };
        let i = self.add_peer(peer).map_err(|e| e.to_string())?;
        self.by_participant.entry(participant).or_default().0 = Some(i);
        self.publishers.push(i);
        Ok(PubOffer { sdp: offer, tracks })
    }

    fn note_server(&self, server: &Server) {
        if let Ok(mut a) = self.live.server_addrs.lock() {
            a.extend(server.candidates.iter().copied());
        }
    }

    /// A connection to the server its description names.
    /// `we_offered`: the offerer controls ICE unless the other side is lite (RFC 8445 §6.1.1).
    fn connect(
        &self,
        local: &Local,
        server: &Server,
        we_offered: bool,
    ) -> Result<Box<ClientConnection>, String> {
        let conn = ClientConnection::new(
            Instant::now(),
            ClientConfig {
                local_ufrag: local.ufrag.clone(),
                local_pwd: local.pwd.clone(),
                remote_ufrag: server.ufrag.clone(),
                remote_pwd: server.pwd.clone(),
                remote_fingerprint: server.fingerprint,
                remote: server.candidate,
                dtls_role: server.dtls_role,
                profiles: vec![Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80],
                tie_breaker: mono_ns(),
                controlling: we_offered || server.ice_lite,
            },
            &self.identity,
        )
        .map_err(|e| e.to_string())?;
        Ok(Box::new(conn))
    }

    fn publisher_answer(&mut self, participant: u64, answer: String) -> Result<(), String> {
        let i = self
            .by_participant
            .get(&participant)
            .and_then(|p| p.0)
            .ok_or("no publishing connection")?;
        let d = Description::parse(&answer).map_err(|e| format!("the answer: {e}"))?;
        let server = sdp::read_server(&answer, &d, self.config.local_ip)?;
        self.note_server(&server);
        let peer = self.peers[i].as_ref().ok_or("no publishing connection")?;
        let conn = self.connect(&peer.sdp, &server, true)?;
        let peer = self.peers[i].as_mut().ok_or("no publishing connection")?;
        // Simulcast: the packets must carry mid and rid header extensions (negotiated ids).
        if let Side::Pub(tx) = &mut peer.side {
            if tx.video.len() > 1 {
                let video = d
                    .sections
                    .iter()
                    .find(|s| s.mid == "1" && !s.rejected)
                    .ok_or("the answer rejected the video section")?;
                use fanout_rtc::engine::codec::Extension;
                match (
                    video.extmap_id(Extension::Mid),
                    video.extmap_id(Extension::Rid),
                ) {
                    (Some(m), Some(r)) => tx.sim = Some((m, r, video.mid.clone())),
                    _ => {
                        return Err("the answer did not accept the mid and rid header \
                                    extensions simulcast needs"
                            .into())
                    }
                }
            }
        }
        peer.link = Link::Up(conn);
        peer.ice_state = "checking".into();
        self.mark(i);
        Ok(())
    }

    fn subscriber_offer(
        &mut self,
        participant: u64,
        user: String,
        role: Role,
        ws_open: Instant,
        offer: String,
        tracks: Vec<OfferTrack>,
    ) -> Result<String, String> {
        let d = Description::parse(&offer).map_err(|e| format!("the offer: {e}"))?;
        let server = sdp::read_server(&offer, &d, self.config.local_ip)?;
        self.note_server(&server);
        let existing = self.by_participant.get(&participant).and_then(|p| p.1);
        let i = match existing {
            Some(i) => i,
            None => {
                let (socket, local) = self.bind()?;
                let local_sdp = self.local(local);
                let conn = self.connect(&local_sdp, &server, false)?;
                let peer = Peer {
                    who: format!("{user}/sub"),
                    socket,
                    local,
                    sdp: local_sdp,
                    link: Link::Up(conn),
                    participant,
                    role,
                    ws_open,
                    side: Side::Sub(Box::new(SubRx {
                        mids: HashMap::new(),
                        owners: Vec::new(),
                        streams: Vec::new(),
                        last: 0,
                        rtp: Vec::new(),
                        rr_ssrc: mono_ns() as u32 | 1,
                        next_rr: Instant::now() + Duration::from_micros(mono_ns() % 1_000_000),
                        twcc: None,
                        rtx_pts: Vec::new(),
                    })),
                    next_timeout: None,
                    connected: false,
                    got_media: false,
                    failed: false,
                    ice_state: "checking".into(),
                    state: "new".into(),
                    offers: 0,
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
            // Who each SSRC belongs to, from the offer's a=ssrc lines.
            rx.owners.clear();
            for s in &d.sections {
                if let (Some(ssrc), _) = s.media_ssrcs() {
                    if let Some(&(publisher, kind)) = rx.mids.get(&s.mid) {
                        rx.owners.push((ssrc, publisher, kind));
                    }
                }
            }
            rx.rtx_pts = d
                .sections
                .iter()
                .flat_map(|s| s.payloads.iter())
                .filter(|p| p.rtx_of().is_some())
                .map(|p| p.pt)
                .collect();
            // BUNDLE: one id for the connection, from the first section that offers it.
            let offered = d
                .sections
                .iter()
                .filter(|s| !s.rejected)
                .find_map(|s| s.extmap_id(Extension::TransportCc));
            match offered.filter(|_| self.config.twcc) {
                Some(id) => {
                    let t = rx.twcc.get_or_insert_with(|| Twcc {
                        ids: ExtensionIds::default(),
                        recorder: Recorder::new(Instant::now()),
                        media_ssrc: 0,
                    });
                    t.ids.transport_cc = Some(id);
                }
                None => rx.twcc = None,
            }
        }
        let answer = sdp::subscribe_answer(&peer.sdp, &d, self.config.twcc);
        self.mark(i);
        Ok(answer)
    }

    fn remove(&mut self, participant: u64) {
        let Some((a, b)) = self.by_participant.remove(&participant) else {
            return;
        };
        for i in [a, b].into_iter().flatten() {
            if let Some(mut peer) = self.peers[i].take() {
                close(&mut peer);
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
            padding: self.agg.padding,
            retransmissions: self.agg.retransmissions,
            ports,
            peers,
            cpu_ns: thread_cpu_ns(),
            pc_failed: self.agg.pc_failed,
        }
    }

    fn close_all(&mut self) {
        for peer in self.peers.iter_mut().flatten() {
            close(peer);
        }
        self.flush_live();
    }
}

/// Sends close_notify.
fn close(peer: &mut Peer) {
    if let Link::Up(conn) = &mut peer.link {
        conn.close(Instant::now());
        while let Some(t) = conn.poll_transmit() {
            let _ = peer.socket.send_to(&t.data, t.to);
        }
    }
}

fn collect(peer: &Peer, tx: &mut Vec<TxReport>, rx: &mut Vec<RxReport>) {
    match &peer.side {
        Side::Pub(p) => {
            for s in p.audio.iter().chain(p.video.iter()) {
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

/// A publisher's way out: its connection, socket and the thread's send buffer.
struct Out<'a> {
    conn: &'a mut ClientConnection,
    socket: &'a mio::net::UdpSocket,
    buf: &'a mut Vec<u8>,
    agg: &'a mut Agg,
}

impl Out<'_> {
    /// Writes, seals and sends one RTP packet of stream `s`.
    fn rtp(
        &mut self,
        pt: u8,
        s: &mut TxStream,
        marker: bool,
        payload: &[u8],
        exts: &[(u8, &[u8])],
    ) {
        let h = write_header(self.buf, pt, marker, s.rtp_seq, s.rtp_ts, s.ssrc, exts);
        s.rtp_seq = s.rtp_seq.wrapping_add(1);
        s.octets = s.octets.wrapping_add(payload.len() as u32);
        let len = h + payload.len();
        if len + 16 > self.buf.len() {
            self.agg.send_errors += 1;
            return;
        }
        self.buf[h..len].copy_from_slice(payload);
        let sent = self
            .conn
            .protect_rtp(self.buf, len)
            .ok()
            .and_then(|n| self.socket.send_to(&self.buf[..n], self.conn.remote()).ok());
        match sent {
            Some(_) => self.agg.packets_out += 1,
            None => self.agg.send_errors += 1,
        }
    }
}

/// Marshals, seals and sends one compound RTCP packet; whether it went out.
fn send_rtcp(
    conn: &mut ClientConnection,
    socket: &mio::net::UdpSocket,
    packets: &[&dyn rtcp::Packet],
    buf: &mut [u8],
) -> bool {
    let Some(n) = rtcp_in::write(packets, &mut buf[..SEND_BUF - 64]) else {
        return false;
    };
    match conn.protect_rtcp(buf, n) {
        Ok(m) => socket.send_to(&buf[..m], conn.remote()).is_ok(),
        Err(_) => false,
    }
}

/// Sends every pending transport-cc feedback of a subscriber; returns how many went out.
fn send_feedback(
    conn: &mut ClientConnection,
    socket: &mio::net::UdpSocket,
    t: &mut Twcc,
    sender_ssrc: u32,
    now: Instant,
    buf: &mut [u8],
) -> u64 {
    let mut sent = 0;
    while let Some(n) =
        t.recorder
            .build_feedback(now, sender_ssrc, t.media_ssrc, &mut buf[..SEND_BUF - 64])
    {
        match conn.protect_rtcp(buf, n) {
            Ok(m) if socket.send_to(&buf[..m], conn.remote()).is_ok() => sent += 1,
            _ => {}
        }
    }
    sent
}

/// Sends one frame of video layer `layer`.
fn send_frame(out: &mut Out<'_>, tx: &mut PubTx, layer: usize, cfg: &MediaConfig, now: Instant) {
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
    let rid = s.rid.clone();
    for (k, chunk) in chunks.into_iter().enumerate() {
        let stamp = Stamp {
            kind: Kind::Video,
            layer: s.layer,
            publisher: tx.index,
            seq: s.seq,
            send_ns: mono_ns(),
        };
        let p = payload::vp8_packet(&spec, k, chunk, &stamp);
        match &tx.sim {
            Some((mid_id, rid_id, mid)) => out.rtp(
                PT_VP8,
                s,
                k == last,
                &p,
                &[(*mid_id, mid.as_bytes()), (*rid_id, rid.as_bytes())],
            ),
            None => out.rtp(PT_VP8, s, k == last, &p, &[]),
        }
        s.seq += 1;
    }
    s.picture_id = (s.picture_id + 1) & 0x7fff;
    s.rtp_ts = s.rtp_ts.wrapping_add((90_000.0 / fps) as u32);
}

/// Sends what the connection has queued and handles its events.
fn drain(peer: &mut Peer, agg: &mut Agg, live: &Live) {
    loop {
        let Link::Up(conn) = &mut peer.link else {
            return;
        };
        while let Some(t) = conn.poll_transmit() {
            if !peer.connected {
                crate::trace!(
                    peer.ws_open,
                    peer.who,
                    "send {} bytes, first byte {}",
                    t.data.len(),
                    t.data.first().copied().unwrap_or(0)
                );
            }
            if peer.socket.send_to(&t.data, t.to).is_err() {
                agg.send_errors += 1;
            }
        }
        peer.next_timeout = conn.poll_timeout();
        let Some(ev) = conn.poll_event() else {
            return;
        };
        on_event(peer, ev, agg, live);
    }
}

fn on_event(peer: &mut Peer, ev: Event, agg: &mut Agg, live: &Live) {
    let what = if matches!(peer.side, Side::Pub(_)) {
        "publishing"
    } else {
        "subscribing"
    };
    match ev {
        Event::Selected(addr) => {
            peer.ice_state = "connected".into();
            crate::trace!(peer.ws_open, peer.who, "ICE connected to {addr}");
        }
        Event::Connected { profile } => {
            peer.state = "connected".into();
            crate::trace!(peer.ws_open, peer.who, "{what} connection up ({profile:?})");
            if !peer.connected {
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
        }
        Event::Closed { reason } => {
            crate::trace!(peer.ws_open, peer.who, "{what} connection closed: {reason}");
            if !peer.failed && !reason.contains("locally") {
                peer.failed = true;
                peer.state = "failed".into();
                peer.ice_state = if reason.contains("ICE") {
                    "failed".into()
                } else {
                    peer.ice_state.clone()
                };
                agg.pc_failed += 1;
                live.pc_failed.fetch_add(1, Ordering::Relaxed);
            } else {
                peer.state = "closed".into();
            }
            if let Side::Pub(tx) = &mut peer.side {
                tx.started = false;
            }
        }
    }
}

/// One decrypted RTP packet at a subscriber: checked, counted, timed.
#[inline]
fn on_rtp(peer: &mut Peer, packet: &[u8], now: Instant, recv_ns: u64, agg: &mut Agg) {
    let Side::Sub(rx) = &mut peer.side else {
        return;
    };
    let r = peer.role.index();
    let Ok(h) = Header::parse(packet) else {
        agg.bad[r] += 1;
        return;
    };
    if let Some(t) = rx.twcc.as_mut() {
        if let Some(seq) = h.extensions(packet, &t.ids).transport_seq {
            t.recorder.record(seq, now);
            t.media_ssrc = h.ssrc;
        }
    }
    let mut payload = &packet[h.payload_start..h.payload_end];
    if payload.is_empty() && packet[0] & 0x20 != 0 {
        agg.padding[r] += 1;
        return;
    }
    let rtx = rx.rtx_pts.contains(&h.payload_type);
    if rtx {
        // The original sequence number, then the original payload (RFC 4588).
        let Some(original) = payload.get(2..) else {
            agg.bad[r] += 1;
            return;
        };
        payload = original;
        agg.retransmissions[r] += 1;
    } else {
        agg.packets_in[r] += 1;
    }
    agg.bytes_in += payload.len() as u64;
    let parsed = match payload::parse(payload) {
        Ok(p) => p,
        Err(_) => {
            agg.bad[r] += 1;
            return;
        }
    };
    let st = parsed.stamp;
    let clock = match st.kind {
        Kind::Audio => 48_000,
        Kind::Video => 90_000,
    };
    if !rtx {
        rx.rtp(h.ssrc, h.sequence, clock)
            .on_packet(h.sequence, h.timestamp, recv_ns);
    }
    if let Some(o) = rx.owners.iter().find(|o| o.0 == h.ssrc) {
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

/// One decrypted RTCP packet at a publisher: keyframe requests.
fn on_rtcp(peer: &mut Peer, packet: &[u8]) {
    let Side::Pub(tx) = &mut peer.side else {
        return;
    };
    for item in rtcp_in::items(packet) {
        let ssrc = match item {
            Ok(Item::Pli { media_ssrc }) | Ok(Item::Fir { media_ssrc }) => media_ssrc,
            Ok(_) => continue,
            Err(_) => break,
        };
        for s in tx.video.iter_mut().filter(|s| s.ssrc == ssrc) {
            s.keyframe_wanted = true;
            s.keyframe_requests += 1;
        }
    }
}
