//! Shared harness for the media tests: a real server (signalling + one media worker on a loopback
//! UDP port) and real WebRTC clients built with the `webrtc` crate (the async wrapper of the same
//! sans-I/O `rtc` stack the server uses), talking to it over loopback.
//!
//! - [`Publisher`]: enters a room, offers a publishing connection with an Opus and a VP8 track
//!   (`publish`), and streams RTP packets whose payloads are recognisable (a magic byte, a
//!   publisher tag and a counter); VP8 packets are valid VP8 RTP (payload descriptor, and a real
//!   keyframe header on keyframes). It answers PLI with a keyframe, and records every RTCP packet
//!   the server sends it.
//! - [`Subscriber`]: enters a room and answers the server's `offer` events on a subscribing
//!   connection (with the default interceptors: NACK generator, receiver reports); records every
//!   RTP packet of every received track.
//! - [`LossyRelay`]: a UDP relay between the server and one client that drops a deterministic
//!   fraction of the server's RTP datagrams of one payload type.
#![allow(dead_code)]

use crate::common::{self, Client, Server};
use bytes::Bytes;
use rtc::interceptor::Registry;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState,
};

#[allow(unused_imports)]
pub use common::{assert_code, assert_ok, pmk, sig, APP_A, APP_B, APP_C};

pub const PT_OPUS: u8 = 111;
pub const PT_VP8: u8 = 96;
/// First payload byte of an audio packet (after which: publisher tag, u32 counter).
pub const AUDIO_MAGIC: u8 = 0xAA;
/// First byte after the VP8 frame header of a video packet (then publisher tag, u32 counter).
pub const VIDEO_MAGIC: u8 = 0xBB;
/// Resolution announced by our VP8 keyframes (within every test role's limits).
pub const VP8_WIDTH: u16 = 640;
pub const VP8_HEIGHT: u16 = 360;

/// Rewrites an SDP before a client applies it (e.g. to point at a relay).
pub type SdpRewrite = Box<dyn Fn(&str) -> String + Send + Sync>;

/// The media tests' server config: the shared apps of `common` without app A's quotas, two roles
/// of app A with tiny caps, and a `[media]` section with one worker on a free loopback port.
pub fn media_config() -> String {
    common::config::TestConfig {
        server: "reconnect_grace_secs = 2\nauth_timeout_secs = 5\nidle_timeout_secs = 5",
        media: "bind = \"127.0.0.1\"",
        app_a_roles: r#"
# Caps far below what the test publisher sends (~170 kbit/s of video: 50 frames/s of 412 bytes)
# and its keyframes' resolution.
[apps.roles.tiny_bitrate]
can_publish = true
max_video_kbps = 8

[apps.roles.tiny_resolution]
can_publish = true
max_width = 32
max_height = 24
"#,
        more_apps: &common::config::app_c(),
        ..Default::default()
    }
    .toml()
}

/// Installs a tracing subscriber (once) honouring `RUST_LOG`, writing to the test's output.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Starts a server with [`media_config`].
pub async fn start() -> Server {
    init_logging();
    common::start_with(&media_config()).await
}

/// Connects and enters `room` of `app` as `user` with extra `enter_room` fields; panics on failure.
pub async fn enter(
    server: &Server,
    app: u32,
    user: &str,
    room: u32,
    extra: Value,
) -> (Client, Value) {
    let mut c = Client::connect(server).await;
    let mut fields = common::enter_fields(app, user, room);
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
    let r = c.request("enter_room", fields).await;
    assert_eq!(r["ok"], true, "enter_room of {user} failed: {r}");
    (c, r)
}

// ------------------------------------------------------------------------------------------------
// Codecs

fn fb(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    }
}

pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.into(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

pub fn vp8_codec() -> RTCRtpCodec {
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

/// Opus (111) and VP8 (96) with its RTX (97) only, as a browser restricted to those would offer
/// them.
fn media_engine() -> MediaEngine {
    let mut m = MediaEngine::default();
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: PT_OPUS,
        },
        RtpCodecKind::Audio,
    )
    .expect("register opus");
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8_codec(),
            payload_type: PT_VP8,
        },
        RtpCodecKind::Video,
    )
    .expect("register vp8");
    // RTX for VP8, as every browser offers it: Fanout resends NACKed packets on RTX only.
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: "video/rtx".into(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: format!("apt={PT_VP8}"),
                rtcp_feedback: vec![],
            },
            payload_type: PT_VP8 + 1,
        },
        RtpCodecKind::Video,
    )
    .expect("register rtx");
    m
}

// ------------------------------------------------------------------------------------------------
// RTCP observation

/// One inbound RTCP packet as the client's interceptor chain saw it.
#[derive(Debug, Clone)]
pub struct RtcpSeen {
    pub at: Instant,
    pub what: RtcpWhat,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RtcpWhat {
    Pli { media_ssrc: u32 },
    Fir { ssrcs: Vec<u32> },
    Remb { bitrate: f32, ssrcs: Vec<u32> },
    Nack { media_ssrc: u32, seqs: Vec<u16> },
    Other(String),
}

fn describe(p: &dyn rtc::rtcp::Packet) -> RtcpWhat {
    let any = p.as_any();
    if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
        RtcpWhat::Pli {
            media_ssrc: pli.media_ssrc,
        }
    } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
        RtcpWhat::Fir {
            ssrcs: fir.fir.iter().map(|e| e.ssrc).collect(),
        }
    } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
        RtcpWhat::Remb {
            bitrate: remb.bitrate,
            ssrcs: remb.ssrcs.clone(),
        }
    } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
        RtcpWhat::Nack {
            media_ssrc: nack.media_ssrc,
            seqs: nack.nacks.iter().flat_map(|p| p.packet_list()).collect(),
        }
    } else {
        RtcpWhat::Other(format!("{:?}", p.header().packet_type))
    }
}

/// Records every inbound RTCP packet, and marks keyframe requests and REMB for delivery to the
/// application (inbound RTCP otherwise stops at the end of the chain), so they reach
/// `TrackLocal::poll` of the sent track they name.
struct RtcpTap {
    log: Arc<Mutex<Vec<RtcpSeen>>>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let now = Instant::now();
            let mut deliver = false;
            {
                let mut log = self.log.lock().unwrap();
                for p in packets {
                    let what = describe(p.as_ref());
                    deliver |= matches!(
                        what,
                        RtcpWhat::Pli { .. } | RtcpWhat::Fir { .. } | RtcpWhat::Remb { .. }
                    );
                    log.push(RtcpSeen { at: now, what });
                }
            }
            if deliver {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

// ------------------------------------------------------------------------------------------------
// Peer connection event handler

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: Arc<Mutex<Vec<Arc<RecvTrack>>>>,
    track_added: Arc<Notify>,
    name: String,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(client = %self.name, %state, "client peer connection state");
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = track.kind().await;
        let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
        tracing::debug!(client = %self.name, ?kind, ssrc, "client got a track");
        let rt = Arc::new(RecvTrack {
            kind,
            ssrc,
            track: track.clone(),
            packets: Mutex::new(Vec::new()),
            got_packet: Notify::new(),
        });
        self.tracks.lock().unwrap().push(rt.clone());
        self.track_added.notify_waiters();
        tokio::spawn(async move {
            while let Some(ev) = rt.track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        // A retransmission on the RTX stream (RFC 4588), as a browser reads
                        // it: the original sequence number, then the original payload.
                        let rtx_of = RTX_PAYLOAD_TYPES
                            .iter()
                            .find(|(rtx, _)| *rtx == p.header.payload_type)
                            .map(|(_, apt)| *apt);
                        let (seq, payload_type, payload) = match rtx_of {
                            Some(apt) if p.payload.len() >= 2 => (
                                u16::from_be_bytes([p.payload[0], p.payload[1]]),
                                apt,
                                p.payload.slice(2..),
                            ),
                            _ => (
                                p.header.sequence_number,
                                p.header.payload_type,
                                p.payload.clone(),
                            ),
                        };
                        rt.packets.lock().unwrap().push(RecvPacket {
                            at: Instant::now(),
                            seq,
                            timestamp: p.header.timestamp,
                            marker: p.header.marker,
                            payload_type,
                            ssrc: p.header.ssrc,
                            payload,
                        });
                        rt.got_packet.notify_waiters();
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// Fanout's RTX payload types and the payload types they repair (its codec table: VP8, VP9,
/// H.264).
const RTX_PAYLOAD_TYPES: [(u8, u8); 3] = [(97, 96), (99, 98), (103, 102)];

/// One RTP packet a client received.
#[derive(Debug, Clone)]
pub struct RecvPacket {
    pub at: Instant,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    pub ssrc: u32,
    pub payload: Bytes,
}

/// One track a client receives, with every RTP packet in arrival order.
pub struct RecvTrack {
    pub kind: RtpCodecKind,
    pub ssrc: u32,
    pub track: Arc<dyn TrackRemote>,
    pub packets: Mutex<Vec<RecvPacket>>,
    got_packet: Notify,
}

impl RecvTrack {
    pub fn packets(&self) -> Vec<RecvPacket> {
        self.packets.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.packets.lock().unwrap().len()
    }

    /// Waits until at least `n` packets arrived; panics after `within`.
    pub async fn wait_packets(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.got_packet.notified();
            if self.count() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "{:?} track {} got {} packets, wanted {n} within {within:?}",
                    self.kind,
                    self.ssrc,
                    self.count()
                );
            }
        }
    }

    /// Sends a PLI for this track.
    pub async fn send_pli(&self) {
        self.track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: self.ssrc,
            })])
            .await
            .expect("write PLI");
    }
}

/// The parts every client peer connection has.
pub struct Pc {
    pub pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    tracks: Arc<Mutex<Vec<Arc<RecvTrack>>>>,
    track_added: Arc<Notify>,
    rtcp: Arc<Mutex<Vec<RtcpSeen>>>,
}

pub async fn build_pc(name: &str, default_interceptors: bool) -> Pc {
    let mut m = media_engine();
    let mut registry = Registry::new();
    if default_interceptors {
        registry = register_default_interceptors(registry, &mut m).expect("default interceptors");
    }
    let rtcp = Arc::new(Mutex::new(Vec::new()));
    // Application-most, after every interceptor that reads RTCP.
    let registry = registry.with(
        Slot::from(14_000usize),
        RtcpTap {
            log: rtcp.clone(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        },
    );
    let (gtx, grx) = watch::channel(false);
    let (stx, srx) = watch::channel(RTCPeerConnectionState::New);
    let tracks = Arc::new(Mutex::new(Vec::new()));
    let track_added = Arc::new(Notify::new());
    let handler = Arc::new(Handler {
        gathered: gtx,
        state: stx,
        tracks: tracks.clone(),
        track_added: track_added.clone(),
        name: name.to_string(),
    });
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(m)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .expect("client peer connection");
    Pc {
        pc: Arc::new(pc),
        gathered: grx,
        state: srx,
        tracks,
        track_added,
        rtcp,
    }
}

impl Pc {
    pub async fn wait_gathered(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.gathered.wait_for(|g| *g))
            .await
            .expect("ICE gathering completes within 10 s")
            .expect("handler alive");
    }

    pub async fn wait_connected(&mut self, who: &str) {
        let r = tokio::time::timeout(
            Duration::from_secs(15),
            self.state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
                )
            }),
        )
        .await;
        let reached = r.ok().and_then(|x| x.ok()).map(|s| *s);
        match reached {
            Some(s) => assert_eq!(
                s,
                RTCPeerConnectionState::Connected,
                "{who}: connection failed"
            ),
            None => panic!(
                "{who}: not connected within 15 s (state {})",
                *self.state.borrow()
            ),
        }
    }

    fn tracks(&self) -> Vec<Arc<RecvTrack>> {
        self.tracks.lock().unwrap().clone()
    }

    pub async fn wait_track(&self, kind: RtpCodecKind, within: Duration) -> Arc<RecvTrack> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.track_added.notified();
            if let Some(t) = self.tracks().into_iter().find(|t| t.kind == kind) {
                return t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no {kind:?} track within {within:?}");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Payloads

/// What a publisher sent, in order.
#[derive(Debug, Clone)]
pub struct Sent {
    pub kind: RtpCodecKind,
    pub seq: u16,
    pub keyframe: bool,
    pub payload: Bytes,
    pub at: Instant,
}

pub fn audio_payload(tag: u8, counter: u32) -> Bytes {
    let mut v = vec![AUDIO_MAGIC, tag];
    v.extend_from_slice(&counter.to_be_bytes());
    v.extend((0..60u32).map(|i| (counter.wrapping_add(i) & 0xff) as u8));
    Bytes::from(v)
}

/// A one-packet VP8 frame: RFC 7741 payload descriptor (S=1, partition 0), then the frame header
/// (a keyframe's 3-byte tag with P=0, start code 9d 01 2a and 14-bit width/height; an interframe's
/// 3-byte tag with P=1), then our magic, tag and counter, then filler.
pub fn vp8_payload(tag: u8, counter: u32, keyframe: bool) -> Bytes {
    let mut v = vec![0x10];
    if keyframe {
        // Frame tag: P=0 (key), version 0, show_frame 1, first partition size 0.
        v.extend_from_slice(&[0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        v.extend_from_slice(&VP8_WIDTH.to_le_bytes());
        v.extend_from_slice(&VP8_HEIGHT.to_le_bytes());
    } else {
        v.extend_from_slice(&[0x11, 0x00, 0x00]);
    }
    v.push(VIDEO_MAGIC);
    v.push(tag);
    v.extend_from_slice(&counter.to_be_bytes());
    v.extend((0..400u32).map(|i| (counter.wrapping_mul(7).wrapping_add(i) & 0xff) as u8));
    Bytes::from(v)
}

/// The (magic, tag, counter) of a payload made by [`audio_payload`] or [`vp8_payload`].
pub fn parse_payload(p: &[u8]) -> Option<(u8, u8, u32)> {
    if p.first() == Some(&AUDIO_MAGIC) && p.len() >= 6 {
        return Some((
            AUDIO_MAGIC,
            p[1],
            u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
        ));
    }
    if p.first() == Some(&0x10) && p.len() > 4 {
        let off = if p[1] & 0x01 == 0 { 1 + 10 } else { 1 + 3 };
        let q = p.get(off..off + 6)?;
        if q[0] == VIDEO_MAGIC {
            return Some((
                VIDEO_MAGIC,
                q[1],
                u32::from_be_bytes([q[2], q[3], q[4], q[5]]),
            ));
        }
    }
    None
}

pub fn is_vp8_keyframe(p: &[u8]) -> bool {
    p.len() > 7 && p[0] == 0x10 && p[1] & 0x01 == 0 && p[4..7] == [0x9d, 0x01, 0x2a]
}

// ------------------------------------------------------------------------------------------------
// Publisher

/// A publishing client: signalling connection plus publishing peer connection with one Opus and
/// one VP8 track.
pub struct Publisher {
    pub ws: Client,
    pub user: String,
    pc: Pc,
    pub audio: Arc<TrackLocalStaticRTP>,
    pub video: Arc<TrackLocalStaticRTP>,
    pub audio_ssrc: u32,
    pub video_ssrc: u32,
    pub offer_sdp: String,
    pub answer_sdp: String,
    /// Rewrites the publish answer's SDP before it is applied (e.g. to point at a relay).
    pub rewrite_answer: Option<SdpRewrite>,
    /// RTCP delivered to the application through `TrackLocal::poll`, per sent track (kind).
    pub track_rtcp: Arc<Mutex<Vec<(RtpCodecKind, RtcpSeen)>>>,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    keyframe_wanted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    streamer: Option<JoinHandle<()>>,
    pollers: Vec<JoinHandle<()>>,
}

/// The (mid, kind) of each media section of an SDP, in order.
pub fn sdp_mids(sdp: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut kind: Option<String> = None;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("m=") {
            kind = rest.split(' ').next().map(str::to_string);
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if let Some(k) = kind.take() {
                out.push((mid.to_string(), k));
            }
        }
    }
    out
}

/// The media sections of an SDP: (first line `m=...`, all lines of the section).
pub fn sdp_sections(sdp: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in sdp.lines().map(|l| l.trim_end()) {
        if line.starts_with("m=") {
            out.push((line.to_string(), Vec::new()));
        }
        if let Some(last) = out.last_mut() {
            last.1.push(line.to_string());
        }
    }
    out
}

impl Publisher {
    /// Enters and builds the publishing connection (does not publish yet).
    pub async fn enter(
        server: &Server,
        app: u32,
        user: &str,
        room: u32,
        extra: Value,
    ) -> Publisher {
        let (ws, _) = enter(server, app, user, room, extra).await;
        Self::with_client(ws, user).await
    }

    /// Builds the publishing connection for an already-entered client and creates its offer.
    pub async fn with_client(ws: Client, user: &str) -> Publisher {
        let mut pc = build_pc(&format!("{user}/pub"), true).await;
        let audio_ssrc = rand_u32() | 1;
        let video_ssrc = rand_u32() | 1;
        let audio = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("{user}-stream"),
            format!("{user}-audio"),
            format!("{user}-audio"),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(audio_ssrc),
                    ..Default::default()
                },
                codec: opus_codec(),
                ..Default::default()
            }],
        )));
        let video = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("{user}-stream"),
            format!("{user}-video"),
            format!("{user}-video"),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(video_ssrc),
                    ..Default::default()
                },
                codec: vp8_codec(),
                ..Default::default()
            }],
        )));
        pc.pc
            .add_track(audio.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add audio track");
        pc.pc
            .add_track(video.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add video track");
        let offer = pc.pc.create_offer(None).await.expect("create offer");
        pc.pc.set_local_description(offer).await.expect("set offer");
        pc.wait_gathered().await;
        let offer_sdp = pc
            .pc
            .local_description()
            .await
            .expect("local description")
            .sdp;
        Publisher {
            ws,
            user: user.to_string(),
            pc,
            audio,
            video,
            audio_ssrc,
            video_ssrc,
            offer_sdp,
            answer_sdp: String::new(),
            rewrite_answer: None,
            track_rtcp: Arc::new(Mutex::new(Vec::new())),
            sent: Arc::new(Mutex::new(Vec::new())),
            keyframe_wanted: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            streamer: None,
            pollers: Vec::new(),
        }
    }

    /// The `tracks` field of `publish` for our offer.
    pub fn tracks_field(&self) -> Value {
        Value::Array(
            sdp_mids(&self.offer_sdp)
                .into_iter()
                .map(|(mid, kind)| json!({"mid": mid, "kind": kind}))
                .collect(),
        )
    }

    /// Sends `publish` and returns the raw reply.
    pub async fn publish_request(&mut self) -> Value {
        let tracks = self.tracks_field();
        self.ws
            .request("publish", json!({"sdp": self.offer_sdp, "tracks": tracks}))
            .await
    }

    /// Publishes: sends the offer, applies the answer, waits for the connection, starts reading
    /// RTCP on both sent tracks.
    pub async fn publish(&mut self) {
        let r = self.publish_request().await;
        assert_eq!(r["ok"], true, "publish of {} failed: {r}", self.user);
        self.answer_sdp = r["sdp"].as_str().expect("answer sdp").to_string();
        tracing::debug!(target: "media_test", user = %self.user, offer = %self.offer_sdp, answer = %self.answer_sdp, "publish");
        let answer_sdp = match &self.rewrite_answer {
            Some(f) => f(&self.answer_sdp),
            None => self.answer_sdp.clone(),
        };
        let answer = RTCSessionDescription::answer(answer_sdp).expect("answer parses");
        self.pc
            .pc
            .set_remote_description(answer)
            .await
            .expect("apply answer");
        let who = format!("{} publisher", self.user);
        self.pc.wait_connected(&who).await;
        for (kind, track) in [
            (RtpCodecKind::Audio, self.audio.clone()),
            (RtpCodecKind::Video, self.video.clone()),
        ] {
            let log = self.track_rtcp.clone();
            let kf = self.keyframe_wanted.clone();
            self.pollers.push(tokio::spawn(async move {
                while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = track.poll().await {
                    let now = Instant::now();
                    let mut log = log.lock().unwrap();
                    for p in &packets {
                        let what = describe(p.as_ref());
                        if matches!(what, RtcpWhat::Pli { .. } | RtcpWhat::Fir { .. }) {
                            kf.store(true, Ordering::SeqCst);
                        }
                        log.push((kind, RtcpSeen { at: now, what }));
                    }
                }
            }));
        }
    }

    /// Starts streaming: every 20 ms one Opus packet and one single-packet VP8 frame (a keyframe
    /// first and after each PLI/FIR). Payloads carry `tag` and a counter per kind.
    pub fn start_streaming(&mut self, tag: u8) {
        let audio = self.audio.clone();
        let video = self.video.clone();
        let (audio_ssrc, video_ssrc) = (self.audio_ssrc, self.video_ssrc);
        let sent = self.sent.clone();
        let kf = self.keyframe_wanted.clone();
        let stop = self.stop.clone();
        self.streamer = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut aseq, mut vseq) = (rand_u32() as u16, rand_u32() as u16);
            let (mut ats, mut vts) = (rand_u32(), rand_u32());
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let ap = audio_payload(tag, n);
                let pkt = rtp_packet(PT_OPUS, aseq, ats, audio_ssrc, true, ap.clone());
                if audio.write_rtp(pkt).await.is_ok() {
                    sent.lock().unwrap().push(Sent {
                        kind: RtpCodecKind::Audio,
                        seq: aseq,
                        keyframe: false,
                        payload: ap,
                        at: Instant::now(),
                    });
                }
                let key = kf.swap(false, Ordering::SeqCst);
                let vp = vp8_payload(tag, n, key);
                let pkt = rtp_packet(PT_VP8, vseq, vts, video_ssrc, true, vp.clone());
                if video.write_rtp(pkt).await.is_ok() {
                    sent.lock().unwrap().push(Sent {
                        kind: RtpCodecKind::Video,
                        seq: vseq,
                        keyframe: key,
                        payload: vp,
                        at: Instant::now(),
                    });
                }
                aseq = aseq.wrapping_add(1);
                vseq = vseq.wrapping_add(1);
                ats = ats.wrapping_add(960);
                vts = vts.wrapping_add(1800);
                n += 1;
            }
        }));
    }

    /// Stops streaming and waits for the streaming task to end.
    pub async fn stop_streaming(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.streamer.take() {
            let _ = h.await;
        }
    }

    /// The payloads sent of one kind, in order.
    pub fn sent_of(&self, kind: RtpCodecKind) -> Vec<Sent> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.kind == kind)
            .cloned()
            .collect()
    }

    /// Every inbound RTCP packet the publishing connection's interceptor chain saw.
    pub fn rtcp_log(&self) -> Vec<RtcpSeen> {
        self.pc.rtcp.lock().unwrap().clone()
    }

    /// Tracks (RTP) received on the publishing connection (there should be none).
    pub fn received_tracks(&self) -> Vec<Arc<RecvTrack>> {
        self.pc.tracks()
    }

    /// RTCP delivered to the application on the sent tracks (`TrackLocal::poll`).
    pub fn track_rtcp(&self) -> Vec<(RtpCodecKind, RtcpSeen)> {
        self.track_rtcp.lock().unwrap().clone()
    }

    pub async fn close(mut self) {
        self.stop_streaming().await;
        for p in self.pollers.drain(..) {
            p.abort();
        }
        let _ = self.pc.pc.close().await;
    }
}

pub fn rtp_packet(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: Bytes,
) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        },
        payload,
    }
}

pub fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}

// ------------------------------------------------------------------------------------------------
// Subscriber

/// A receiving client: signalling connection plus subscribing peer connection (created on the
/// first `offer`).
pub struct Subscriber {
    pub ws: Client,
    pub user: String,
    pc: Pc,
    /// The `tracks` of every offer received, in order.
    pub offers: Vec<Value>,
    /// The SDP of every offer received, in order (before any rewrite).
    pub offer_sdps: Vec<String>,
    /// Rewrites each offer's SDP before it is applied (e.g. to point at a relay).
    pub rewrite_offer: Option<SdpRewrite>,
    answered_once: bool,
}

impl Subscriber {
    pub async fn enter(
        server: &Server,
        app: u32,
        user: &str,
        room: u32,
        extra: Value,
    ) -> Subscriber {
        let (ws, _) = enter(server, app, user, room, extra).await;
        Self::with_client(ws, user).await
    }

    pub async fn with_client(ws: Client, user: &str) -> Subscriber {
        let pc = build_pc(&format!("{user}/sub"), true).await;
        Subscriber {
            ws,
            user: user.to_string(),
            pc,
            offers: Vec::new(),
            offer_sdps: Vec::new(),
            rewrite_offer: None,
            answered_once: false,
        }
    }

    /// Applies one `offer` event and answers it with `subscribe_answer`.
    pub async fn answer(&mut self, offer: &Value) {
        let sdp = offer["sdp"].as_str().expect("offer has sdp");
        let sdp = match &self.rewrite_offer {
            Some(f) => f(sdp),
            None => sdp.to_string(),
        };
        self.offers.push(offer["tracks"].clone());
        self.offer_sdps
            .push(offer["sdp"].as_str().unwrap_or_default().to_string());
        let desc = RTCSessionDescription::offer(sdp).expect("offer parses");
        self.pc
            .pc
            .set_remote_description(desc)
            .await
            .expect("apply offer");
        let answer = self.pc.pc.create_answer(None).await.expect("create answer");
        self.pc
            .pc
            .set_local_description(answer)
            .await
            .expect("set answer");
        if !self.answered_once {
            self.pc.wait_gathered().await;
            self.answered_once = true;
        }
        let sdp = self
            .pc
            .pc
            .local_description()
            .await
            .expect("local description")
            .sdp;
        tracing::debug!(target: "media_test", user = %self.user, offer = %offer["sdp"], answer = %sdp, "subscribe");
        let r = self
            .ws
            .request("subscribe_answer", json!({"sdp": sdp}))
            .await;
        assert_eq!(
            r["ok"], true,
            "subscribe_answer of {} failed: {r}",
            self.user
        );
    }

    /// Answers offers until one whose `tracks` satisfy `done`; returns those tracks.
    pub async fn negotiate_until(
        &mut self,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "{}: no satisfying offer within {within:?}; offers so far: {:?}",
                self.user,
                self.offers
            );
            let offer = self.ws.event_within("offer", left).await;
            self.answer(&offer).await;
            let tracks = offer["tracks"].as_array().cloned().unwrap_or_default();
            if done(&tracks) {
                return tracks;
            }
        }
    }

    /// Answers offers until the tracks include `kinds` from `publisher`.
    pub async fn subscribe_to(
        &mut self,
        publisher: &str,
        kinds: &[&str],
        within: Duration,
    ) -> Vec<Value> {
        let publisher = publisher.to_string();
        let kinds: Vec<String> = kinds.iter().map(|s| s.to_string()).collect();
        self.negotiate_until(within, move |tracks| {
            kinds.iter().all(|k| {
                tracks
                    .iter()
                    .any(|t| t["user_id"] == publisher.as_str() && t["kind"] == k.as_str())
            })
        })
        .await
    }

    pub async fn wait_connected(&mut self) {
        let who = format!("{} subscriber", self.user);
        self.pc.wait_connected(&who).await;
    }

    pub async fn wait_track(&self, kind: RtpCodecKind, within: Duration) -> Arc<RecvTrack> {
        self.pc.wait_track(kind, within).await
    }

    pub fn tracks(&self) -> Vec<Arc<RecvTrack>> {
        self.pc.tracks()
    }

    /// Every inbound RTCP packet the subscribing connection saw (e.g. sender reports).
    pub fn rtcp_log(&self) -> Vec<RtcpSeen> {
        self.pc.rtcp.lock().unwrap().clone()
    }

    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.pc.state.borrow()
    }

    pub async fn close(self) {
        let _ = self.pc.pc.close().await;
    }
}

// ------------------------------------------------------------------------------------------------
// Checks

/// Checks that `received` (payloads in arrival order) is exactly a contiguous run of `sent`,
/// ending at the last sent packet. Returns the index in `sent` where it starts.
pub fn assert_contiguous_suffix(who: &str, sent: &[Sent], received: &[RecvPacket]) -> usize {
    assert!(!received.is_empty(), "{who}: received nothing");
    let first = &received[0].payload;
    let start = sent
        .iter()
        .position(|s| s.payload == first)
        .unwrap_or_else(|| {
            panic!(
                "{who}: first received payload {:?} was never sent",
                parse_payload(first)
            )
        });
    let expected = &sent[start..];
    for (i, (s, r)) in expected.iter().zip(received.iter()).enumerate() {
        assert!(
            s.payload == r.payload,
            "{who}: packet {i} of the run differs: sent {:?} (len {}), received {:?} (len {})",
            parse_payload(&s.payload),
            s.payload.len(),
            parse_payload(&r.payload),
            r.payload.len()
        );
    }
    assert_eq!(
        received.len(),
        expected.len(),
        "{who}: received {} packets, but {} were sent from the first received one (first missing: {:?})",
        received.len(),
        expected.len(),
        expected.get(received.len()).map(|s| parse_payload(&s.payload))
    );
    start
}

/// Checks that sequence numbers go up by exactly one from packet to packet, with no gap.
pub fn assert_seq_contiguous(who: &str, received: &[RecvPacket]) {
    for w in received.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{who}: sequence numbers jump from {} to {}",
            w[0].seq,
            w[1].seq
        );
    }
}

/// The packets in sequence-number order (unwrapped relative to the first arrival), one per
/// sequence number; also how many arrived out of order and how many were duplicates. Panics if two
/// copies of one sequence number carry different payloads.
pub fn in_seq_order(who: &str, received: &[RecvPacket]) -> (Vec<RecvPacket>, usize, usize) {
    let Some(first) = received.first().map(|p| p.seq) else {
        return (Vec::new(), 0, 0);
    };
    let mut by_seq: std::collections::BTreeMap<i32, RecvPacket> = std::collections::BTreeMap::new();
    let mut dups = 0;
    for p in received {
        let ext = i32::from(p.seq.wrapping_sub(first) as i16);
        match by_seq.get(&ext) {
            Some(q) => {
                assert_eq!(
                    q.payload, p.payload,
                    "{who}: two different payloads with seq {}",
                    p.seq
                );
                dups += 1;
            }
            None => {
                by_seq.insert(ext, p.clone());
            }
        }
    }
    let late = received
        .windows(2)
        .filter(|w| (w[1].seq.wrapping_sub(w[0].seq) as i16) < 0)
        .count();
    (by_seq.into_values().collect(), late, dups)
}

// ------------------------------------------------------------------------------------------------
// Relay

/// A UDP relay for one client, on two dedicated OS threads (so its timestamps do not depend on how
/// busy the test's async runtime is): the client talks to `client_addr`, the relay talks to the
/// server from its own socket. Datagrams from the server that are RTP of `drop_pt` are dropped with
/// probability `drop_percent`% (xorshift PRNG with a fixed seed); everything else is forwarded.
/// SRTCP keeps the first RTCP header in the clear, so the relay also logs the type of every RTCP
/// datagram in both directions.
pub struct LossyRelay {
    pub client_addr: SocketAddr,
    pub dropped: Arc<AtomicU64>,
    pub forwarded_rtp: Arc<AtomicU64>,
    /// Sequence numbers (from the clear RTP header) of the dropped datagrams.
    pub dropped_seqs: Arc<Mutex<Vec<u16>>>,
    /// Client -> server SRTCP datagrams whose first packet is a generic NACK (PT 205, FMT 1).
    pub nacks_up: Arc<AtomicU64>,
    /// Server -> client SRTCP datagrams: (arrival at the relay, packet type, FMT) of the first
    /// packet of each.
    pub rtcp_down: Arc<Mutex<Vec<(Instant, u8, u8)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// RTCP packet type and FMT of a datagram's first packet, if it is RTCP (RFC 5761 demux).
fn rtcp_type(d: &[u8]) -> Option<(u8, u8)> {
    (d.len() >= 8 && (128..192).contains(&d[0]) && (192..=223).contains(&d[1]))
        .then(|| (d[1], d[0] & 0x1f))
}

impl LossyRelay {
    /// A relay that forwards everything (a wire tap).
    pub async fn passthrough(server: SocketAddr) -> LossyRelay {
        Self::start(server, 0, 0, 1).await
    }

    pub async fn start(
        server: SocketAddr,
        drop_pt: u8,
        drop_percent: u64,
        seed: u64,
    ) -> LossyRelay {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("relay socket a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("relay socket b");
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let client_addr = a.local_addr().unwrap();
        let mut relay = LossyRelay {
            client_addr,
            dropped: Arc::new(AtomicU64::new(0)),
            forwarded_rtp: Arc::new(AtomicU64::new(0)),
            dropped_seqs: Arc::new(Mutex::new(Vec::new())),
            nacks_up: Arc::new(AtomicU64::new(0)),
            rtcp_down: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        // Client -> server.
        let up = {
            let (stop, client, nu) = (relay.stop.clone(), client.clone(), relay.nacks_up.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = a.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap() = Some(from);
                    if rtcp_type(&buf[..n]) == Some((205, 1)) {
                        nu.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = b.send_to(&buf[..n], server);
                }
            })
        };
        // Server -> client.
        let down = {
            let stop = relay.stop.clone();
            let (d, f, ds, rd) = (
                relay.dropped.clone(),
                relay.forwarded_rtp.clone(),
                relay.dropped_seqs.clone(),
                relay.rtcp_down.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = seed.max(1);
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = b2.recv_from(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    let Some(to) = *client.lock().unwrap() else {
                        continue;
                    };
                    let data = &buf[..n];
                    if let Some((pt, fmt)) = rtcp_type(data) {
                        rd.lock().unwrap().push((at, pt, fmt));
                    } else if n >= 12 && (128..192).contains(&data[0]) && data[1] & 0x7f == drop_pt
                    {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if rng % 100 < drop_percent {
                            d.fetch_add(1, Ordering::Relaxed);
                            ds.lock()
                                .unwrap()
                                .push(u16::from_be_bytes([data[2], data[3]]));
                            continue;
                        }
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = a2.send_to(data, to);
                }
            })
        };
        relay.threads = vec![up, down];
        relay
    }

    /// Rewrites the server's host candidate(s) `server` in an SDP to this relay's client address.
    pub fn rewrite(server: SocketAddr, relay: SocketAddr, sdp: &str) -> String {
        let from = format!("{} {} typ", server.ip(), server.port());
        let to = format!("{} {} typ", relay.ip(), relay.port());
        sdp.replace(&from, &to)
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The media worker's UDP address (there is one worker in [`media_config`]).
pub fn media_addr(server: &Server) -> SocketAddr {
    server.running.state.media.addrs()[0]
}
