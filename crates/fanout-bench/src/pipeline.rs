//! `rtc`'s whole per-packet send path, through real connected peer connections, built in memory.
//!
//! This module owns the [`Pipeline`] rig: N pairs of `rtc` peer connections, each pair connected
//! by handing datagrams across by hand (no sockets) on a simulated clock until ICE, DTLS and SRTP
//! are up. Our side of each pair is a subscribing connection as the `rtc`-based media worker built
//! it before Fanout's own engine replaced it (the baseline the engine is measured against;
//! `fanout_rtc::peer::build` with ICE-lite, [`SrtpPolicy::GcmOnly`] and the DTLS client role, one
//! sendonly track, our offer with `a=setup:active` and the host candidate); the remote side is a
//! plain `rtc` peer connection with default codecs that answers it, as a browser would.
//!
//! [`Pipeline::send`] is the worker's hot path per subscriber (`handle_output` for `Output::Rtp`):
//! `RTCRtpSender::write_rtp` then `RTCPeerConnection::poll_write` until it is empty. Compared with
//! [`crate::srtp::Protector`] (bare `srtp::context::Context`), the difference is what `rtc`'s
//! pipeline adds around the encryption: its handlers, the interceptor chain and their queues.
//! [`RoutePipeline`] puts the router in front, as the `route_rtc_pipeline` bench variant times.
//!
//! Timers are not run once the pairs are connected: the timed path is the packet path only, and
//! with no remote to answer, ICE consent checks would eventually fail the connection.

use crate::forward::{down_track_index, down_track_ssrc, Fanout, Media};
use bytes::BytesMut;
use fanout_forward::RtpPacket;
use fanout_rtc::{peer, SrtpPolicy};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Our (the server's) made-up address: one UDP port for every subscriber, as a media worker has.
pub const SERVER_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000);

/// The made-up address of remote peer `i`.
pub fn remote_addr(i: usize) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 50_000 + i as u16)
}

/// Simulated time allowed for all pairs to connect before [`Pipeline::connect`] gives up.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);

/// A datagram tagged as arriving from `from` at `to`.
fn datagram(now: Instant, from: SocketAddr, to: SocketAddr, message: BytesMut) -> TaggedBytesMut {
    TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: to,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message,
    }
}

/// The ICE host candidate at `addr`, built as the server builds its own.
fn host_candidate(addr: SocketAddr) -> RTCIceCandidateInit {
    fanout_rtc::peer::host_candidate(addr).expect("a host candidate for a literal address")
}

/// The sendonly track for down-track `i`: the codec and SSRC the router rewrites packets to.
fn track(media: Media, i: usize) -> MediaStreamTrack {
    let (kind, codec) = match media {
        Media::Vp8 => (
            RtpCodecKind::Video,
            RTCRtpCodec {
                mime_type: "video/VP8".into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
        ),
        Media::Opus => (
            RtpCodecKind::Audio,
            RTCRtpCodec {
                mime_type: "audio/opus".into(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
        ),
    };
    let name = format!("publisher-{}", media.name());
    MediaStreamTrack::new(
        name.clone(),
        name.clone(),
        name,
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(down_track_ssrc(i)),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

/// The remote side: a plain `rtc` peer connection (default codecs, no interceptors, full ICE).
fn remote_peer(now: Instant) -> Result<RTCPeerConnection, String> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(|e| e.to_string())?;
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .build(now)
        .map_err(|e| e.to_string())
}

/// Whether a connection reached (`Some(true)`) or lost (`Some(false)`) "connected" among `pc`'s
/// pending events; `None` if neither happened.
fn drain_events(pc: &mut RTCPeerConnection) -> Option<bool> {
    let mut seen = None;
    while let Some(ev) = pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = ev {
            match state {
                RTCPeerConnectionState::Connected => seen = Some(true),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    seen = Some(false)
                }
                _ => {}
            }
        }
    }
    seen
}

/// One subscriber: our connection, the remote one it is connected to, and our track's sender.
pub struct Pair {
    /// Our side, built like the worker's subscribing connection.
    pub server: RTCPeerConnection,
    /// The remote side (the "browser").
    pub remote: RTCPeerConnection,
    /// The sender of our one sendonly track.
    pub sender: RTCRtpSenderId,
    /// The remote's made-up address.
    pub addr: SocketAddr,
    server_connected: bool,
    remote_connected: bool,
}

impl Pair {
    /// Builds subscriber `i`'s pair and negotiates it (offer, answer), not yet connected.
    fn negotiate(media: Media, i: usize, now: Instant) -> Result<Self, String> {
        let err = |e: rtc::shared::error::Error| e.to_string();
        let (ufrag, pwd) = peer::ice_credentials();
        let mut server =
            peer::build(now, &ufrag, &pwd, SrtpPolicy::GcmOnly).map_err(|e| e.to_string())?;
        server
            .add_local_candidate(host_candidate(SERVER_ADDR))
            .map_err(err)?;
        let sender = server.add_track(track(media, i)).map_err(err)?;
        let offer = server.create_offer(None).map_err(err)?;
        server
            .set_local_description(now, offer.clone())
            .map_err(err)?;
        // What the worker sends the client: our offer, taking the DTLS client role.
        // As the rtc-based worker sent its offers: `setup:active`, so we are the DTLS client.
        let sent = offer.sdp.replace("a=setup:actpass", "a=setup:active");

        let addr = remote_addr(i);
        let mut remote = remote_peer(now)?;
        remote
            .add_local_candidate(host_candidate(addr))
            .map_err(err)?;
        remote
            .set_remote_description(now, RTCSessionDescription::offer(sent).map_err(err)?)
            .map_err(err)?;
        let answer = remote.create_answer(None).map_err(err)?;
        if !answer.sdp.contains("a=setup:passive") {
            return Err("the remote must answer `passive`, leaving us the DTLS client role".into());
        }
        remote
            .set_local_description(now, answer.clone())
            .map_err(err)?;
        server
            .set_remote_description(now, RTCSessionDescription::answer(answer.sdp).map_err(err)?)
            .map_err(err)?;
        Ok(Self {
            server,
            remote,
            sender,
            addr,
            server_connected: false,
            remote_connected: false,
        })
    }

    fn connected(&self) -> bool {
        self.server_connected && self.remote_connected
    }

    /// Hands every queued datagram to the other side, until neither has any; reads and events are
    /// drained on the way. Returns how many datagrams moved.
    fn shuttle(&mut self, now: Instant) -> Result<usize, String> {
        let mut moved = 0;
        loop {
            let mut any = false;
            while let Some(d) = self.server.poll_write() {
                any = true;
                if d.transport.peer_addr == self.addr {
                    moved += 1;
                    // A refused datagram is the protocol's business (retransmission), not ours.
                    let _ =
                        self.remote
                            .handle_read(datagram(now, SERVER_ADDR, self.addr, d.message));
                }
            }
            while let Some(d) = self.remote.poll_write() {
                any = true;
                if d.transport.peer_addr == SERVER_ADDR {
                    moved += 1;
                    let _ =
                        self.server
                            .handle_read(datagram(now, self.addr, SERVER_ADDR, d.message));
                }
            }
            for (pc, flag) in [
                (&mut self.server, &mut self.server_connected),
                (&mut self.remote, &mut self.remote_connected),
            ] {
                match drain_events(pc) {
                    Some(true) => *flag = true,
                    Some(false) => return Err("a connection failed while connecting".into()),
                    None => {}
                }
                while pc.poll_read().is_some() {
                    any = true;
                }
            }
            if !any {
                return Ok(moved);
            }
        }
    }

    /// The earlier of the two sides' next deadlines.
    fn deadline(&mut self) -> Option<Instant> {
        match (self.server.poll_timeout(), self.remote.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let _ = self.server.handle_timeout(now);
        let _ = self.remote.handle_timeout(now);
    }
}

/// N connected pairs and the simulated clock they run on.
pub struct Pipeline {
    pub pairs: Vec<Pair>,
    /// The simulated clock: where connecting left it, then one media interval per packet.
    pub now: Instant,
    media: Media,
    /// Datagrams and bytes [`Pipeline::send`] took from our side so far.
    pub datagrams: u64,
    pub bytes_out: u64,
}

impl Pipeline {
    /// Builds `n` pairs for `media` and connects them all on one simulated clock starting at
    /// `start`: datagrams are moved by hand, and the clock jumps to the next deadline whenever
    /// nothing is left to move. Fails if a pair fails or [`CONNECT_LIMIT`] of simulated time passes.
    pub fn connect(media: Media, n: usize, start: Instant) -> Result<Self, String> {
        let mut now = start;
        let mut pairs = (0..n)
            .map(|i| Pair::negotiate(media, i, now))
            .collect::<Result<Vec<_>, _>>()?;
        loop {
            for pair in &mut pairs {
                pair.shuttle(now)?;
            }
            if pairs.iter().all(Pair::connected) {
                break;
            }
            if now.duration_since(start) > CONNECT_LIMIT {
                let up = pairs.iter().filter(|p| p.connected()).count();
                return Err(format!("only {up} of {n} pairs connected"));
            }
            let next = pairs.iter_mut().filter_map(Pair::deadline).min();
            // At least a millisecond on: a deadline already due must not stall the clock.
            now = next
                .unwrap_or(now + Duration::from_millis(10))
                .max(now + Duration::from_millis(1));
            for pair in &mut pairs {
                pair.handle_timeout(now);
            }
        }
        Ok(Self {
            pairs,
            now,
            media,
            datagrams: 0,
            bytes_out: 0,
        })
    }

    /// How many subscribers there are.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The worker's per-subscriber hot path for one forwarded packet: `write_rtp` on subscriber
    /// `i`'s sender (the packet converted by `fanout_rtc::convert::rtp_out`), then every datagram
    /// `poll_write` has, each handed to `sink`. Returns how many datagrams there were.
    pub fn send_with(
        &mut self,
        i: usize,
        packet: &RtpPacket,
        mut sink: impl FnMut(BytesMut),
    ) -> usize {
        let now = self.now;
        let pair = &mut self.pairs[i];
        pair.server
            .rtp_sender(pair.sender)
            .expect("the pair's track has a sender")
            .write_rtp(now, fanout_rtc::convert::rtp_out(packet))
            .expect("write_rtp accepts a packet with the track's SSRC and payload type");
        let mut count = 0;
        while let Some(d) = pair.server.poll_write() {
            count += 1;
            self.bytes_out += d.message.len() as u64;
            sink(d.message);
        }
        self.datagrams += count as u64;
        count
    }

    /// [`Pipeline::send_with`], dropping the datagrams (counted in `datagrams` and `bytes_out`).
    pub fn send(&mut self, i: usize, packet: &RtpPacket) -> usize {
        self.send_with(i, packet, drop)
    }

    /// Moves the clock on by one packet interval.
    pub fn tick(&mut self) {
        self.now += self.media.interval();
    }

    /// Gives `datagram` (one of ours) to subscriber `i`'s remote side and returns the RTP packets
    /// it decrypted from it.
    pub fn deliver(&mut self, i: usize, datagram_bytes: BytesMut) -> Vec<rtc::rtp::Packet> {
        let now = self.now;
        let pair = &mut self.pairs[i];
        let _ = pair
            .remote
            .handle_read(datagram(now, SERVER_ADDR, pair.addr, datagram_bytes));
        let mut got = Vec::new();
        while let Some(m) = pair.remote.poll_read() {
            if let RTCMessage::RtpPacket(_, p) = m.message {
                got.push(p);
            }
        }
        // The remote's own output (receiver reports and such) is not ours to look at.
        while pair.remote.poll_write().is_some() {}
        while pair.remote.poll_event().is_some() {}
        got
    }
}

/// The router in front of the pipeline: one incoming packet routed to N down-tracks, each written
/// through its subscriber's connection, as the media worker does it.
pub struct RoutePipeline {
    pub fanout: Fanout,
    pub pipeline: Pipeline,
}

impl RoutePipeline {
    /// A [`Fanout`] to `n` down-tracks and `n` connected pairs (connected on a simulated clock
    /// starting now).
    pub fn new(media: Media, n: usize) -> Result<Self, String> {
        let fanout = Fanout::new(media, n);
        let pipeline = Pipeline::connect(media, n, Instant::now())?;
        Ok(Self { fanout, pipeline })
    }

    /// Routes the publisher's next packet and sends each output through its subscriber's
    /// connection, handing the datagrams to `sink` with the subscriber's index. Returns how many
    /// packets were forwarded.
    pub fn forward_with(&mut self, mut sink: impl FnMut(usize, BytesMut)) -> usize {
        let Self { fanout, pipeline } = self;
        let n = fanout.forward(|dt, p| {
            let i = down_track_index(dt);
            pipeline.send_with(i, p, |d| sink(i, d));
        });
        pipeline.tick();
        n
    }

    /// [`RoutePipeline::forward_with`], dropping the datagrams.
    pub fn forward(&mut self) -> usize {
        self.forward_with(|_, d| drop(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AEAD_AES_128_GCM's authentication tag.
    const GCM_TAG: usize = 16;
    /// An RTP header without CSRCs or extensions (`rtp_out` writes none).
    const RTP_HEADER: usize = 12;

    #[test]
    fn each_packet_is_one_gcm_datagram_per_subscriber_that_the_remote_decrypts() {
        for media in Media::ALL {
            let n = 3;
            let mut rig = RoutePipeline::new(media, n).expect("pairs connect");
            // Two seconds of media, every datagram checked and delivered.
            let packets = (2_000 / media.interval().as_millis().max(1)) as usize;
            for _ in 0..packets {
                let RoutePipeline { fanout, pipeline } = &mut rig;
                let mut per_subscriber = vec![0usize; n];
                let forwarded = fanout.forward(|dt, p| {
                    let i = down_track_index(dt);
                    let mut datagrams = Vec::new();
                    pipeline.send_with(i, p, |d| datagrams.push(d));
                    assert_eq!(datagrams.len(), 1, "{media:?}: one datagram per packet");
                    per_subscriber[i] += 1;
                    let d = datagrams.remove(0);
                    assert_eq!(d.len(), RTP_HEADER + p.payload.len() + GCM_TAG);
                    assert_eq!(d.len(), RTP_HEADER + media.payload_len() + GCM_TAG);
                    assert_ne!(
                        &d[RTP_HEADER..RTP_HEADER + p.payload.len()],
                        &p.payload[..],
                        "the payload is encrypted"
                    );
                    // Another subscriber's remote has other keys and must not decrypt it.
                    let other = (i + 1) % n;
                    assert!(pipeline.deliver(other, d.clone()).is_empty());
                    let back = pipeline.deliver(i, d);
                    assert_eq!(back.len(), 1, "{media:?}: the remote decrypts the datagram");
                    assert_eq!(back[0].header.ssrc, down_track_ssrc(i));
                    assert_eq!(back[0].header.sequence_number, p.sequence);
                    assert_eq!(back[0].header.timestamp, p.timestamp);
                    assert_eq!(back[0].header.payload_type, p.payload_type);
                    assert_eq!(back[0].payload, p.payload);
                });
                pipeline.tick();
                assert_eq!(forwarded, n);
                assert_eq!(per_subscriber, vec![1; n]);
            }
            assert_eq!(rig.pipeline.datagrams, (packets * n) as u64);
        }
    }

    #[test]
    fn the_timed_path_keeps_working_without_timers() {
        // The bench runs for hours of simulated time without timers: a minute of it must not
        // stop the pipeline (the last packet still goes out and decrypts).
        let mut rig = RoutePipeline::new(Media::Vp8, 2).expect("pairs connect");
        let packets = (60_000 / Media::Vp8.interval().as_millis()) as usize;
        for _ in 0..packets {
            assert_eq!(rig.forward(), 2);
        }
        assert_eq!(rig.pipeline.datagrams, 2 * packets as u64);
        let mut last = Vec::new();
        rig.forward_with(|i, d| last.push((i, d)));
        assert_eq!(last.len(), 2);
        for (i, d) in last {
            assert_eq!(rig.pipeline.deliver(i, d).len(), 1);
        }
    }

    #[test]
    fn a_hundred_pairs_connect() {
        let p = Pipeline::connect(Media::Vp8, 100, Instant::now()).expect("100 pairs connect");
        assert_eq!(p.len(), 100);
        assert!(p.pairs.iter().all(Pair::connected));
    }
}
