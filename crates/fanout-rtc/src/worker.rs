//! A media worker: one dedicated thread that owns one UDP socket, every peer connection of the rooms
//! assigned to it, and those rooms' routers. It demultiplexes datagrams to peers, feeds decrypted
//! RTP/RTCP to the router, and writes the router's outputs back through each subscriber's connection
//! (which encrypts them). Signalling reaches it only through [`MediaCommand`]s on a channel.

use crate::api::{MediaCommand, MediaError, MediaEvent, RoleLimits, Side, SrtpPolicy, StreamRef};
use crate::batch::SendBatch;
use crate::stats::{add_router_stats, kind_index, LocalCounters, WorkerStats};
use crate::{convert, demux, peer, sdp};
use bytes::{Bytes, BytesMut};
use fanout_forward::{
    Codec, Command, DownTrackId, Event as RouterEvent, Feedback, Input, Layer, LayerPreference,
    LimitReason, MediaKind, Output, ParticipantId, PublicationId, RoomId, Router,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

/// `[media]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address the UDP sockets bind to.
    pub bind: IpAddr,
    /// Port of the first worker; worker N uses `udp_port + N`. 0 picks free ports (tests).
    pub udp_port: u16,
    /// Address written into ICE candidates (for servers behind NAT); defaults to `bind`.
    pub public_ip: Option<IpAddr>,
    /// Number of media worker threads.
    pub workers: usize,
}

/// Socket buffer size for media: a worker that stalls for a moment (a join's crypto, CPU contention)
/// must not lose datagrams at the kernel.
pub const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Binds a media UDP socket with large buffers (the kernel may cap them at `net.core.rmem_max`).
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The running media workers.
pub struct Media {
    workers: Vec<WorkerHandle>,
}

struct WorkerHandle {
    tx: Sender<MediaCommand>,
    addr: SocketAddr,
    stats: Arc<WorkerStats>,
}

impl Media {
    /// Binds one UDP socket per worker and starts the worker threads.
    pub fn start(config: &MediaConfig, events: UnboundedSender<MediaEvent>) -> io::Result<Media> {
        let mut workers = Vec::new();
        for n in 0..config.workers.max(1) {
            let port = if config.udp_port == 0 {
                0
            } else {
                config.udp_port.checked_add(n as u16).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "udp_port + workers exceeds 65535",
                    )
                })?
            };
            let socket = bind_udp(SocketAddr::new(config.bind, port))?;
            socket.set_read_timeout(Some(Duration::from_millis(2)))?;
            let local = socket.local_addr()?;
            let candidate = SocketAddr::new(config.public_ip.unwrap_or(local.ip()), local.port());
            let (tx, rx) = mpsc::channel();
            let events = events.clone();
            let stats = Arc::new(WorkerStats::default());
            let worker_stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("fanout-media-{n}"))
                .spawn(move || {
                    Worker::new(socket, local, candidate, rx, events, worker_stats).run()
                })?;
            info!(worker = n, addr = %local, "media worker started");
            workers.push(WorkerHandle {
                tx,
                addr: local,
                stats,
            });
        }
        Ok(Media { workers })
    }

    /// Sends a command to the worker that owns `room`.
    pub fn send(&self, room: RoomId, command: MediaCommand) -> Result<(), MediaError> {
        let n = (room.0 % self.workers.len() as u64) as usize;
        self.workers[n]
            .tx
            .send(command)
            .map_err(|_| MediaError::WorkerGone)
    }

    /// Each worker's published counters, in worker order.
    pub fn stats(&self) -> Vec<Arc<WorkerStats>> {
        self.workers.iter().map(|w| w.stats.clone()).collect()
    }

    /// The UDP addresses the workers are bound to.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|w| w.addr).collect()
    }
}

struct Worker {
    socket: UdpSocket,
    local_addr: SocketAddr,
    candidate_addr: SocketAddr,
    rx: Receiver<MediaCommand>,
    events: UnboundedSender<MediaEvent>,
    participants: HashMap<ParticipantId, Participant>,
    routers: HashMap<RoomId, Router>,
    by_ufrag: HashMap<String, (ParticipantId, Side)>,
    by_addr: HashMap<SocketAddr, (ParticipantId, Side)>,
    next_id: u64,
    /// Peer connections with queued datagrams or events to drain.
    dirty: HashSet<(ParticipantId, Side)>,
    publication_kinds: HashMap<PublicationId, MediaKind>,
    stats: Arc<WorkerStats>,
    counters: LocalCounters,
    /// Counters of routers whose rooms closed.
    retired: fanout_forward::RouterStats,
    /// Datagrams produced this turn of the loop, sent together at its end (or when full).
    out: SendBatch,
    /// When every connection's cached deadline is next recomputed regardless.
    next_deadline_refresh: Instant,
}

struct Participant {
    room: RoomId,
    limits: RoleLimits,
    // Boxed: a peer connection is ~9 KB, and the participants map would otherwise hold two per
    // entry inline (plus the map's spare capacity) whether or not the participant has them.
    publisher: Option<Box<PubPeer>>,
    subscriber: Option<Box<SubPeer>>,
    wanted: Vec<StreamRef>,
    /// Publications kept across a reconnect, waiting for the new publishing connection.
    detached: Option<Detached>,
}

/// A reconnecting publisher's publications (kind -> id, codec) and when they were detached.
struct Detached {
    publications: HashMap<MediaKind, PublicationId>,
    codecs: HashMap<PublicationId, Codec>,
    since: Instant,
}

/// How often every connection's cached deadline is recomputed even if nothing touched it.
const DEADLINE_REFRESH: Duration = Duration::from_secs(1);

/// How long a reconnecting publisher's streams wait for its new publishing connection.
pub const REPUBLISH_WINDOW: Duration = Duration::from_secs(10);

struct PubPeer {
    pc: RTCPeerConnection,
    ufrag: String,
    /// mid -> kind, from the client's `publish` request.
    mid_kinds: Vec<(String, MediaKind)>,
    /// mid -> number of simulcast layers announced in the offer.
    mid_layers: HashMap<String, u8>,
    publications: HashMap<MediaKind, PublicationId>,
    codecs: HashMap<PublicationId, Codec>,
    by_ssrc: HashMap<u32, (PublicationId, Layer, RTCRtpReceiverId)>,
    audio_level_id: Option<u8>,
    stopped: bool,
    /// When `pc` next wants `handle_timeout` (see [`Worker::sweep_timeouts`]).
    deadline: Option<Instant>,
}

struct SubPeer {
    pc: RTCPeerConnection,
    ufrag: String,
    /// When `pc` next wants `handle_timeout` (see [`Worker::sweep_timeouts`]).
    deadline: Option<Instant>,
    downs: Vec<Down>,
    by_ssrc: HashMap<u32, DownTrackId>,
    awaiting_answer: bool,
    /// Down-tracks in the offer that awaits its answer.
    in_flight: Vec<DownTrackId>,
    /// A WHEP session: the client offered, its streams are fixed, it never renegotiates.
    whep: bool,
    renegotiate: bool,
    connected: bool,
}

struct Down {
    id: DownTrackId,
    publisher: ParticipantId,
    kind: MediaKind,
    publication: PublicationId,
    sender: RTCRtpSenderId,
    ssrc: u32,
    payload_type: u8,
    layer: LayerPreference,
    in_router: bool,
    /// Part of an offer the client has answered (its media section exists on both sides).
    negotiated: bool,
}

impl Worker {
    fn new(
        socket: UdpSocket,
        local_addr: SocketAddr,
        candidate_addr: SocketAddr,
        rx: Receiver<MediaCommand>,
        events: UnboundedSender<MediaEvent>,
        stats: Arc<WorkerStats>,
    ) -> Self {
        Worker {
            socket,
            local_addr,
            candidate_addr,
            rx,
            events,
            participants: HashMap::new(),
            routers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            next_id: 1,
            dirty: HashSet::new(),
            publication_kinds: HashMap::new(),
            stats,
            counters: LocalCounters::default(),
            retired: fanout_forward::RouterStats::default(),
            out: SendBatch::new(),
            next_deadline_refresh: Instant::now(),
        }
    }

    fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        let mut next_sweep = Instant::now();
        let mut next_stats = Instant::now();
        loop {
            let start = Instant::now();
            // Commands first: they are rare and must not wait behind media.
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => self.handle_command(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        info!("media worker stopping: signalling is gone");
                        return;
                    }
                }
            }
            let waited_from = Instant::now();
            let received = self.socket.recv_from(&mut buf);
            let waited = waited_from.elapsed();
            match received {
                Ok((n, from)) => self.handle_datagram(&buf[..n], from),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => debug!(error = %e, "udp receive error"),
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep_timeouts(now);
                next_sweep = now + Duration::from_millis(5);
            }
            self.flush();
            self.send_queued();
            let busy = start.elapsed().saturating_sub(waited);
            self.counters.busy_ns += busy.as_nanos() as u64;
            if now >= next_stats {
                self.publish_stats();
                next_stats = now + Duration::from_secs(1);
            }
        }
    }

    fn publish_stats(&mut self) {
        let mut total = self.retired.clone();
        for r in self.routers.values() {
            add_router_stats(&mut total, r.stats());
        }
        let peers = self
            .participants
            .values()
            .map(|p| u64::from(p.publisher.is_some()) + u64::from(p.subscriber.is_some()))
            .sum();
        self.stats
            .publish(&self.counters, &total, peers, self.routers.len() as u64);
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ---------------------------------------------------------------- datagrams and timers

    fn handle_datagram(&mut self, data: &[u8], from: SocketAddr) {
        let key = if demux::is_stun_request(data) {
            match demux::stun_local_ufrag(data).and_then(|u| self.by_ufrag.get(u)) {
                Some(key) => {
                    self.by_addr.insert(from, *key);
                    *key
                }
                None => {
                    tracing::trace!(%from, ufrag = ?demux::stun_local_ufrag(data), "STUN for no known peer");
                    return;
                }
            }
        } else {
            match self.by_addr.get(&from) {
                Some(key) => *key,
                None => {
                    tracing::trace!(%from, len = data.len(), "datagram from an unknown address");
                    return;
                }
            }
        };
        let now = Instant::now();
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local_addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Some(pc) = self.pc_mut(key) {
            if let Err(e) = pc.handle_read(msg) {
                debug!(error = %e, "peer connection rejected a datagram");
            }
            self.dirty.insert(key);
        }
    }

    /// Gives `handle_timeout` to every connection whose deadline has passed, and the routers theirs.
    ///
    /// Asking a connection for its deadline walks its whole handler pipeline, so each connection's
    /// deadline is cached: recomputed after every full drain (reads, timeouts and commands are the only
    /// things that move it; writing media does not, with our interceptor set) and, as a safety net,
    /// for every connection once a second.
    fn sweep_timeouts(&mut self, now: Instant) {
        let refresh = now >= self.next_deadline_refresh;
        if refresh {
            self.next_deadline_refresh = now + DEADLINE_REFRESH;
        }
        let mut due = Vec::new();
        for (id, p) in self.participants.iter_mut() {
            let conns = [
                p.publisher
                    .as_mut()
                    .map(|x| (&mut x.pc, &mut x.deadline, Side::Publisher)),
                p.subscriber
                    .as_mut()
                    .map(|x| (&mut x.pc, &mut x.deadline, Side::Subscriber)),
            ];
            for (pc, deadline, side) in conns.into_iter().flatten() {
                if refresh || deadline.is_some_and(|t| t <= now) {
                    *deadline = pc.poll_timeout();
                    if deadline.is_some_and(|t| t <= now) {
                        due.push((*id, side));
                    }
                }
            }
        }
        for key in due {
            if let Some(pc) = self.pc_mut(key) {
                let _ = pc.handle_timeout(now);
                self.dirty.insert(key);
            }
        }
        self.expire_detached(now);
        let rooms: Vec<RoomId> = self
            .routers
            .iter()
            .filter(|(_, r)| r.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for room in rooms {
            self.router_input(room, Input::Timeout(now));
        }
    }

    fn pc_mut(&mut self, key: (ParticipantId, Side)) -> Option<&mut RTCPeerConnection> {
        pc_in(&mut self.participants, key)
    }

    /// Drains every peer connection that has work: datagrams out, events, decrypted messages in.
    fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let keys: Vec<_> = self.dirty.drain().collect();
            for key in keys {
                self.drain_peer(key);
            }
        }
    }

    /// Sends the datagrams queued this turn.
    fn send_queued(&mut self) {
        let done = self.out.flush(&self.socket);
        count_flush(&mut self.counters, done);
    }

    fn drain_peer(&mut self, key: (ParticipantId, Side)) {
        // Until the connection has nothing left: polling events or reads can queue new datagrams
        // (the DTLS ClientHello is queued when ICE picks its pair), which must go out now, not at the
        // next datagram or timer.
        loop {
            let mut events = Vec::new();
            let mut messages = Vec::new();
            let sent;
            {
                let Some(pc) = pc_in(&mut self.participants, key) else {
                    return;
                };
                sent = queue_writes(pc, &mut self.out, &self.socket, &mut self.counters);
                while let Some(ev) = pc.poll_event() {
                    events.push(ev);
                }
                while let Some(msg) = pc.poll_read() {
                    messages.push(msg.message);
                }
            }
            if sent == 0 && events.is_empty() && messages.is_empty() {
                if let Some((pc, deadline)) = conn_in(&mut self.participants, key) {
                    *deadline = pc.poll_timeout();
                }
                return;
            }
            for ev in events {
                self.handle_pc_event(key, ev);
            }
            for msg in messages {
                self.handle_pc_message(key, msg);
            }
        }
    }

    // ---------------------------------------------------------------- peer connection output

    fn handle_pc_event(&mut self, (id, side): (ParticipantId, Side), ev: RTCPeerConnectionEvent) {
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                debug!(participant = id.0, ?side, %state, "peer connection state");
                match state {
                    RTCPeerConnectionState::Connected if side == Side::Subscriber => {
                        self.subscriber_connected(id);
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        let _ = self.events.send(MediaEvent::PeerClosed {
                            participant: id,
                            side,
                        });
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if side == Side::Publisher =>
            {
                self.publisher_track_open(id, init.receiver_id, init.ssrc, init.rid.as_deref());
            }
            _ => {}
        }
    }

    fn handle_pc_message(&mut self, (id, side): (ParticipantId, Side), msg: RTCMessage) {
        let now = Instant::now();
        match (side, msg) {
            (Side::Publisher, RTCMessage::RtpPacket(_, packet)) => {
                let Some(p) = self.participants.get(&id) else {
                    return;
                };
                let Some(pb) = p.publisher.as_ref() else {
                    return;
                };
                if pb.stopped {
                    return;
                }
                let Some(&(publication, layer, _)) = pb.by_ssrc.get(&packet.header.ssrc) else {
                    return;
                };
                let packet = convert::rtp_in(packet, pb.audio_level_id);
                let room = p.room;
                if let Some(kind) = self.publication_kinds.get(&publication) {
                    let i = kind_index(*kind);
                    self.counters.packets_in[i] += 1;
                    self.counters.bytes_in[i] += packet.payload.len() as u64 + 12;
                }
                self.router_input(
                    room,
                    Input::Rtp {
                        now,
                        publication,
                        layer,
                        packet,
                    },
                );
            }
            (Side::Publisher, RTCMessage::RtcpPacket(_, packets)) => {
                let Some(p) = self.participants.get(&id) else {
                    return;
                };
                let Some(pb) = p.publisher.as_ref() else {
                    return;
                };
                let room = p.room;
                let mut inputs = Vec::new();
                for pkt in &packets {
                    if let Some(sr) = pkt
                        .as_any()
                        .downcast_ref::<rtcp::sender_report::SenderReport>()
                    {
                        if let Some(&(publication, layer, _)) = pb.by_ssrc.get(&sr.ssrc) {
                            inputs.push(Feedback::SenderReport {
                                publication,
                                layer,
                                ntp_time: sr.ntp_time,
                                rtp_time: sr.rtp_time,
                            });
                        }
                    }
                }
                for feedback in inputs {
                    self.router_input(room, Input::Feedback { now, feedback });
                }
            }
            (Side::Subscriber, RTCMessage::RtcpPacket(_, packets)) => {
                let Some(p) = self.participants.get(&id) else {
                    return;
                };
                let Some(sb) = p.subscriber.as_ref() else {
                    return;
                };
                let room = p.room;
                let mut inputs = Vec::new();
                for pkt in &packets {
                    let any = pkt.as_any();
                    if let Some(pli) = any.downcast_ref::<rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>() {
                        if let Some(&down_track) = sb.by_ssrc.get(&pli.media_ssrc) {
                            inputs.push(Feedback::KeyframeRequest { down_track });
                        }
                    } else if let Some(fir) = any.downcast_ref::<rtcp::payload_feedbacks::full_intra_request::FullIntraRequest>() {
                        for entry in &fir.fir {
                            if let Some(&down_track) = sb.by_ssrc.get(&entry.ssrc) {
                                inputs.push(Feedback::KeyframeRequest { down_track });
                            }
                        }
                    } else if let Some(nack) = any.downcast_ref::<rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack>() {
                        if let Some(&down_track) = sb.by_ssrc.get(&nack.media_ssrc) {
                            let sequences = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
                            inputs.push(Feedback::Nack { down_track, sequences });
                        }
                    } else if let Some(rr) = any.downcast_ref::<rtcp::receiver_report::ReceiverReport>() {
                        for r in &rr.reports {
                            if let Some(&down_track) = sb.by_ssrc.get(&r.ssrc) {
                                inputs.push(Feedback::ReceiverReport {
                                    down_track,
                                    fraction_lost: r.fraction_lost,
                                    jitter: r.jitter,
                                });
                            }
                        }
                    }
                }
                for feedback in inputs {
                    self.router_input(room, Input::Feedback { now, feedback });
                }
            }
            _ => {}
        }
    }

    /// A publisher's track (one simulcast layer) opened: create the publication on its first layer.
    fn publisher_track_open(
        &mut self,
        id: ParticipantId,
        receiver: RTCRtpReceiverId,
        ssrc: u32,
        rid: Option<&str>,
    ) {
        let new_pub_id = PublicationId(self.new_id());
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let room = p.room;
        let limits = p.limits;
        let Some(pb) = p.publisher.as_mut() else {
            return;
        };
        let mid = peer::mid_of_receiver(&mut pb.pc, receiver);
        let Some(kind) = mid
            .as_ref()
            .and_then(|m| pb.mid_kinds.iter().find(|(mm, _)| mm == m))
            .map(|(_, k)| *k)
        else {
            debug!(
                participant = id.0,
                ?mid,
                "track on a media section the client did not declare"
            );
            return;
        };
        let layers = mid
            .as_ref()
            .and_then(|m| pb.mid_layers.get(m))
            .copied()
            .unwrap_or(1);
        let layer = Layer(rid.map_or(0, |r| layer_of_rid(r, layers)));
        let codec = pb
            .pc
            .rtp_receiver(receiver)
            .and_then(|mut r| {
                r.get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find_map(|c| codec_of_mime(&c.rtp_codec.mime_type))
            })
            .unwrap_or(if kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            });
        if pb.audio_level_id.is_none() && kind == MediaKind::Audio {
            pb.audio_level_id = pb.pc.rtp_receiver(receiver).and_then(|mut r| {
                r.get_parameters()
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == peer::AUDIO_LEVEL_URI)
                    .map(|e| e.id as u8)
            });
        }
        let (publication, is_new) = match pb.publications.get(&kind) {
            Some(p) => (*p, false),
            None => {
                pb.publications.insert(kind, new_pub_id);
                (new_pub_id, true)
            }
        };
        pb.by_ssrc.insert(ssrc, (publication, layer, receiver));
        pb.codecs.insert(publication, codec);
        info!(
            participant = id.0,
            ?kind,
            ssrc,
            ?layer,
            ?codec,
            "publisher track open"
        );
        if is_new {
            self.publication_kinds.insert(publication, kind);
            let now = Instant::now();
            self.router_input(
                room,
                Input::Command {
                    now,
                    command: Command::AddPublication {
                        id: publication,
                        publisher: id,
                        kind,
                        codec,
                        layers,
                        limits: limits.for_kind(kind),
                    },
                },
            );
            let _ = self.events.send(MediaEvent::Published {
                participant: id,
                kind,
            });
            // Subscribers that already want this stream get it now.
            let waiting: Vec<ParticipantId> = self
                .participants
                .iter()
                .filter(|(_, s)| {
                    s.room == room && s.wanted.iter().any(|w| w.publisher == id && w.kind == kind)
                })
                .map(|(sid, _)| *sid)
                .collect();
            for sid in waiting {
                self.sync_subscriptions(sid);
            }
        }
    }

    /// The subscribing connection is up (DTLS done): its pending down-tracks join the router now, so
    /// nothing is forwarded into a connection that cannot encrypt yet and video starts at a keyframe.
    fn subscriber_connected(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let room = p.room;
        let Some(sb) = p.subscriber.as_mut() else {
            return;
        };
        sb.connected = true;
        // Down-tracks from answered offers start now; any still being negotiated follow their answer.
        let adds = pending_down_tracks(id, sb);
        let now = Instant::now();
        for command in adds {
            self.router_input(room, Input::Command { now, command });
        }
    }

    // ---------------------------------------------------------------- the router

    fn remove_publication(&mut self, room: RoomId, publication: PublicationId, now: Instant) {
        self.publication_kinds.remove(&publication);
        self.router_input(
            room,
            Input::Command {
                now,
                command: Command::RemovePublication { id: publication },
            },
        );
    }

    fn router_input(&mut self, room: RoomId, input: Input) {
        let router = self.routers.entry(room).or_default();
        router.handle_input(input);
        let now = Instant::now();
        while let Some(out) = self.routers.get_mut(&room).and_then(Router::poll_output) {
            self.handle_output(room, out, now);
        }
    }

    fn handle_output(&mut self, room: RoomId, out: Output, now: Instant) {
        match out {
            Output::Rtp {
                subscriber,
                down_track,
                packet,
            } => {
                let Some((pc, down)) =
                    down_track_of(&mut self.participants, subscriber, down_track)
                else {
                    return;
                };
                let i = kind_index(down.kind);
                if let Some(mut sender) = pc.rtp_sender(down.sender) {
                    match sender.write_rtp(now, convert::rtp_out(&packet)) {
                        Ok(()) => {
                            self.counters.packets_out[i] += 1;
                            self.counters.bytes_out[i] += packet.payload.len() as u64 + 12;
                        }
                        Err(e) => debug!(error = %e, "write_rtp refused"),
                    }
                }
                // The hot path: writing media only queues datagrams (no events, nothing to read),
                // so take them straight into the batch instead of a full drain of the connection.
                queue_writes(pc, &mut self.out, &self.socket, &mut self.counters);
            }
            Output::KeyframeRequest {
                publisher,
                publication,
                layer,
            } => {
                self.rtcp_to_publisher(publisher, publication, layer, |media_ssrc| {
                    vec![Box::new(
                        rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        },
                    )]
                });
            }
            Output::Nack {
                publisher,
                publication,
                layer,
                sequences,
            } => {
                self.rtcp_to_publisher(publisher, publication, layer, |media_ssrc| {
                    vec![Box::new(rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack {
                        sender_ssrc: 0,
                        media_ssrc,
                        nacks: rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers(&sequences),
                    })]
                });
            }
            Output::ReceiverReport {
                publisher,
                publication,
                layer,
                fraction_lost,
                total_lost,
                highest_sequence,
                jitter,
            } => {
                self.rtcp_to_publisher(publisher, publication, layer, |ssrc| {
                    vec![Box::new(rtcp::receiver_report::ReceiverReport {
                        ssrc: 0,
                        reports: vec![rtcp::reception_report::ReceptionReport {
                            ssrc,
                            fraction_lost,
                            total_lost,
                            last_sequence_number: highest_sequence,
                            jitter,
                            last_sender_report: 0,
                            delay: 0,
                        }],
                        profile_extensions: Bytes::new(),
                    })]
                });
            }
            Output::Remb {
                publisher,
                bitrate_bps,
            } => {
                let Some(pb) = self
                    .participants
                    .get_mut(&publisher)
                    .and_then(|p| p.publisher.as_mut())
                else {
                    return;
                };
                let ssrcs: Vec<u32> = pb.by_ssrc.keys().copied().collect();
                let Some(&(_, _, receiver)) = pb.by_ssrc.values().next() else {
                    return;
                };
                if let Some(mut r) = pb.pc.rtp_receiver(receiver) {
                    let remb = rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate {
                        sender_ssrc: 0,
                        bitrate: bitrate_bps as f32,
                        ssrcs,
                    };
                    let _ = r.write_rtcp(now, vec![Box::new(remb)]);
                }
                self.dirty.insert((publisher, Side::Publisher));
            }
            Output::SenderReport {
                subscriber,
                down_track,
                ssrc,
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
            } => {
                let Some((pc, down)) =
                    down_track_of(&mut self.participants, subscriber, down_track)
                else {
                    return;
                };
                if let Some(mut s) = pc.rtp_sender(down.sender) {
                    let sr = rtcp::sender_report::SenderReport {
                        ssrc,
                        ntp_time,
                        rtp_time,
                        packet_count,
                        octet_count,
                        reports: vec![],
                        profile_extensions: Bytes::new(),
                    };
                    let _ = s.write_rtcp(now, vec![Box::new(sr)]);
                }
                self.dirty.insert((subscriber, Side::Subscriber));
            }
            Output::Event(RouterEvent::LimitExceeded {
                publisher,
                kind,
                layer,
                reason,
                ..
            }) => {
                let reason = match reason {
                    LimitReason::Bitrate { measured_kbps, max_kbps } => format!(
                        "bitrate {measured_kbps} kbps above the role's {max_kbps} kbps (layer {})",
                        layer.0
                    ),
                    LimitReason::Resolution { width, height, max_width, max_height } => format!(
                        "resolution {width}x{height} above the role's {max_width}x{max_height} (layer {})",
                        layer.0
                    ),
                };
                let _ = self.events.send(MediaEvent::LimitExceeded {
                    participant: publisher,
                    kind,
                    reason,
                });
            }
            Output::Event(RouterEvent::ActiveSpeakers { participants }) => {
                let _ = self
                    .events
                    .send(MediaEvent::ActiveSpeakers { room, participants });
            }
        }
    }

    fn rtcp_to_publisher(
        &mut self,
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
        make: impl FnOnce(u32) -> Vec<Box<dyn rtcp::Packet>>,
    ) {
        let now = Instant::now();
        let Some(pb) = self
            .participants
            .get_mut(&publisher)
            .and_then(|p| p.publisher.as_mut())
        else {
            return;
        };
        let Some((&ssrc, &(_, _, receiver))) = pb
            .by_ssrc
            .iter()
            .find(|(_, (p, l, _))| *p == publication && *l == layer)
        else {
            return;
        };
        if let Some(mut r) = pb.pc.rtp_receiver(receiver) {
            let _ = r.write_rtcp(now, make(ssrc));
        }
        self.dirty.insert((publisher, Side::Publisher));
    }

    // ---------------------------------------------------------------- commands

    fn handle_command(&mut self, cmd: MediaCommand) {
        match cmd {
            MediaCommand::Publish {
                participant,
                room,
                offer,
                tracks,
                limits,
                srtp,
                reply,
            } => {
                let r = self.publish(participant, room, offer, tracks, limits, srtp);
                let _ = reply.send(r);
            }
            MediaCommand::StopPublishing { participant } => self.stop_publishing(participant),
            MediaCommand::SetSubscriptions {
                participant,
                room,
                streams,
            } => {
                self.participant_entry(participant, room).wanted = streams;
                self.sync_subscriptions(participant);
            }
            MediaCommand::SubscribeAnswer {
                participant,
                sdp,
                reply,
            } => {
                let r = self.subscribe_answer(participant, sdp);
                let _ = reply.send(r);
            }
            MediaCommand::AddCandidate {
                participant,
                side,
                candidate,
            } => {
                if let Some(pc) = self.pc_mut((participant, side)) {
                    let init = RTCIceCandidateInit {
                        candidate,
                        sdp_mid: None,
                        sdp_mline_index: Some(0),
                        username_fragment: None,
                        url: None,
                    };
                    if let Err(e) = pc.add_remote_candidate(init) {
                        debug!(error = %e, "remote candidate ignored");
                    }
                    self.dirty.insert((participant, side));
                }
            }
            MediaCommand::SetLayer {
                participant,
                publisher,
                kind,
                layer,
            } => {
                let Some(p) = self.participants.get_mut(&participant) else {
                    return;
                };
                let room = p.room;
                let Some(sb) = p.subscriber.as_mut() else {
                    return;
                };
                let Some(d) = sb
                    .downs
                    .iter_mut()
                    .find(|d| d.publisher == publisher && d.kind == kind)
                else {
                    return;
                };
                d.layer = layer;
                let (down_track, in_router) = (d.id, d.in_router);
                if in_router {
                    self.router_input(
                        room,
                        Input::Command {
                            now: Instant::now(),
                            command: Command::SetLayer { down_track, layer },
                        },
                    );
                }
            }
            MediaCommand::WhepSubscribe {
                participant,
                room,
                offer,
                streams,
                reply,
            } => {
                let r = self.whep(participant, room, offer, streams);
                let _ = reply.send(r);
            }
            MediaCommand::Reconnect { participant } => self.reconnect(participant),
            MediaCommand::Remove { participant } => self.remove_participant(participant),
        }
    }

    fn participant_entry(&mut self, id: ParticipantId, room: RoomId) -> &mut Participant {
        self.participants.entry(id).or_insert_with(|| Participant {
            room,
            limits: RoleLimits::default(),
            publisher: None,
            subscriber: None,
            wanted: Vec::new(),
            detached: None,
        })
    }

    fn host_candidate(&self) -> Result<RTCIceCandidateInit, MediaError> {
        peer::host_candidate(self.candidate_addr)
    }

    fn publish(
        &mut self,
        id: ParticipantId,
        room: RoomId,
        offer: String,
        tracks: Vec<(String, MediaKind)>,
        limits: RoleLimits,
        srtp: SrtpPolicy,
    ) -> Result<String, MediaError> {
        let now = Instant::now();
        let bundled = sdp::ensure_bundle(&offer).map_err(|e| MediaError::BadSdp(e.into()))?;
        let added_bundle = bundled.is_some();
        let offer = bundled.unwrap_or(offer);
        let offer_text = offer.clone();
        let desc = RTCSessionDescription::offer(offer.clone())
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let candidate = self.host_candidate()?;
        let mid_layers = simulcast_layers(&offer);
        let p = self.participant_entry(id, room);
        p.limits = limits;
        let mut created = None;
        if p.publisher.is_none() {
            let (ufrag, pwd) = peer::ice_credentials();
            let mut pc = peer::build(now, &ufrag, &pwd, srtp)?;
            pc.add_local_candidate(candidate)
                .map_err(|e| MediaError::Negotiation(e.to_string()))?;
            created = Some(ufrag.clone());
            // A reconnecting publisher continues its publications (same ids: the router re-bases
            // them on the new SSRCs, so subscribers see continuous numbering).
            let (publications, codecs) = p
                .detached
                .take()
                .map(|d| (d.publications, d.codecs))
                .unwrap_or_default();
            p.publisher = Some(Box::new(PubPeer {
                pc,
                ufrag,
                mid_kinds: Vec::new(),
                mid_layers: HashMap::new(),
                publications,
                codecs,
                by_ssrc: HashMap::new(),
                audio_level_id: None,
                stopped: false,
                deadline: Some(Instant::now()),
            }));
        }
        let Some(pb) = p.publisher.as_mut() else {
            return Err(MediaError::NoPeer);
        };
        pb.mid_kinds = tracks.clone();
        pb.mid_layers = mid_layers;
        pb.stopped = false;
        let negotiated = (|| -> Result<String, MediaError> {
            pb.pc
                .set_remote_description(now, desc)
                .map_err(|e| MediaError::BadSdp(e.to_string()))?;
            let answer = pb
                .pc
                .create_answer(None)
                .map_err(|e| MediaError::Negotiation(e.to_string()))?;
            pb.pc
                .set_local_description(now, answer.clone())
                .map_err(|e| MediaError::Negotiation(e.to_string()))?;
            Ok(answer.sdp)
        })();
        let answer = match negotiated {
            Ok(a) => a,
            Err(e) => {
                if created.is_some() {
                    p.publisher = None;
                }
                return Err(e);
            }
        };
        let caps: Vec<(String, u32)> = tracks
            .iter()
            .map(|(mid, kind)| (mid.clone(), limits.for_kind(*kind).max_kbps))
            .filter(|(_, k)| *k > 0)
            .collect();
        // Media sections the client no longer declares stop being forwarded.
        let gone: Vec<(MediaKind, PublicationId)> = pb
            .publications
            .iter()
            .filter(|(k, _)| !tracks.iter().any(|(_, tk)| tk == *k))
            .map(|(k, p)| (*k, *p))
            .collect();
        for (k, _) in &gone {
            pb.publications.remove(k);
        }
        pb.by_ssrc
            .retain(|_, (p, _, _)| !gone.iter().any(|(_, g)| g == p));
        if let Some(ufrag) = created {
            self.by_ufrag.insert(ufrag, (id, Side::Publisher));
        }
        for (kind, publication) in gone {
            self.remove_publication(room, publication, now);
            let _ = self.events.send(MediaEvent::Unpublished {
                participant: id,
                kind,
            });
        }
        self.dirty.insert((id, Side::Publisher));
        let answer = sdp::candidates_on_bundle_tag(&sdp::mirror_inactive(
            &offer_text,
            &sdp::with_bandwidth(&answer, &caps),
        ));
        Ok(if added_bundle {
            sdp::without_bundle_group(&answer)
        } else {
            answer
        })
    }

    fn stop_publishing(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let room = p.room;
        let Some(pb) = p.publisher.as_mut() else {
            return;
        };
        pb.stopped = true;
        let gone: Vec<(MediaKind, PublicationId)> = pb.publications.drain().collect();
        pb.by_ssrc.clear();
        let now = Instant::now();
        for (kind, publication) in gone {
            self.remove_publication(room, publication, now);
            let _ = self.events.send(MediaEvent::Unpublished {
                participant: id,
                kind,
            });
        }
    }

    /// A publisher's publication of `kind` and its codec, also while the publisher reconnects.
    fn publication_of(
        &self,
        publisher: ParticipantId,
        kind: MediaKind,
    ) -> Option<(PublicationId, Option<Codec>)> {
        let p = self.participants.get(&publisher)?;
        let (publications, codecs) = match (&p.publisher, &p.detached) {
            (Some(pb), _) => (&pb.publications, &pb.codecs),
            (None, Some(d)) => (&d.publications, &d.codecs),
            (None, None) => return None,
        };
        let publication = *publications.get(&kind)?;
        Some((publication, codecs.get(&publication).copied()))
    }

    /// Brings a subscriber's connection in line with its wanted streams; renegotiates on change.
    fn sync_subscriptions(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let room = p.room;
        // Streams that exist now: (publisher, kind) -> (publication, codec).
        let mut available = Vec::new();
        for w in &p.wanted {
            if w.publisher == id {
                continue;
            }
            if let Some((publication, codec)) = self.publication_of(w.publisher, w.kind) {
                available.push((w.clone(), publication, codec));
            }
        }
        let needs_pc = !available.is_empty();
        let now = Instant::now();
        let candidate = match self.host_candidate() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "no host candidate");
                return;
            }
        };
        let mut new_ids: Vec<u64> = (0..available.len()).map(|_| self.new_id()).collect();
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.subscriber.is_none() {
            if !needs_pc {
                return;
            }
            let (ufrag, pwd) = peer::ice_credentials();
            let mut pc = match peer::build(now, &ufrag, &pwd, SrtpPolicy::GcmOnly) {
                Ok(pc) => pc,
                Err(e) => {
                    warn!(error = %e, "cannot build subscribing connection");
                    return;
                }
            };
            if let Err(e) = pc.add_local_candidate(candidate) {
                warn!(error = %e, "cannot add local candidate");
                return;
            }
            self.by_ufrag.insert(ufrag.clone(), (id, Side::Subscriber));
            p.subscriber = Some(Box::new(SubPeer {
                pc,
                ufrag,
                deadline: Some(Instant::now()),
                downs: Vec::new(),
                by_ssrc: HashMap::new(),
                awaiting_answer: false,
                in_flight: Vec::new(),
                whep: false,
                renegotiate: false,
                connected: false,
            }));
        }
        let Some(sb) = p.subscriber.as_mut() else {
            return;
        };
        if sb.whep {
            return; // negotiated once, by the client
        }
        let mut changed = false;
        let mut removed = Vec::new();
        sb.downs.retain(|d| {
            let keep = available.iter().any(|(w, publ, _)| {
                w.publisher == d.publisher && w.kind == d.kind && *publ == d.publication
            });
            if !keep {
                removed.push((d.id, d.sender, d.ssrc, d.in_router));
            }
            keep
        });
        for (down_id, sender, ssrc, in_router) in &removed {
            let _ = sb.pc.remove_track(*sender);
            sb.by_ssrc.remove(ssrc);
            changed = true;
            let _ = (down_id, in_router);
        }
        for (w, publication, codec) in available {
            if sb
                .downs
                .iter()
                .any(|d| d.publisher == w.publisher && d.kind == w.kind)
            {
                continue;
            }
            let codec = codec.unwrap_or(if w.kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            });
            let ssrc = rand::random::<u32>() | 1;
            let pt = codec_params(codec).1;
            let track = track_for(&w, codec, ssrc);
            let sender = match sb.pc.add_track(track) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot add a track to the subscribing connection");
                    continue;
                }
            };
            let down_id = DownTrackId(new_ids.pop().unwrap_or_default());
            sb.by_ssrc.insert(ssrc, down_id);
            sb.downs.push(Down {
                id: down_id,
                publisher: w.publisher,
                kind: w.kind,
                publication,
                sender,
                ssrc,
                payload_type: pt,
                layer: LayerPreference::High,
                in_router: false,
                negotiated: false,
            });
            changed = true;
        }
        let removed_ids: Vec<(DownTrackId, bool)> =
            removed.iter().map(|(d, _, _, r)| (*d, *r)).collect();
        for (down_track, in_router) in removed_ids {
            if in_router {
                self.router_input(
                    room,
                    Input::Command {
                        now,
                        command: Command::RemoveDownTrack { id: down_track },
                    },
                );
            }
        }
        if changed {
            self.offer(id);
        }
    }

    /// Creates and sends a new offer on the subscribing connection (or defers it while one is open).
    fn offer(&mut self, id: ParticipantId) {
        let now = Instant::now();
        let Some(sb) = self
            .participants
            .get_mut(&id)
            .and_then(|p| p.subscriber.as_mut())
        else {
            return;
        };
        if sb.awaiting_answer {
            sb.renegotiate = true;
            return;
        }
        let offer = match sb.pc.create_offer(None) {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "cannot create an offer");
                return;
            }
        };
        if let Err(e) = sb.pc.set_local_description(now, offer.clone()) {
            warn!(error = %e, "cannot set the offer");
            return;
        }
        sb.awaiting_answer = true;
        sb.in_flight = sb.downs.iter().map(|d| d.id).collect();
        sb.renegotiate = false;
        let mut tracks = Vec::new();
        for d in &sb.downs {
            if let Some(mid) = peer::mid_of_sender(&mut sb.pc, d.sender) {
                tracks.push((mid, d.publisher, d.kind));
            }
        }
        let _ = self.events.send(MediaEvent::Offer {
            participant: id,
            sdp: sdp::candidates_on_bundle_tag(&sdp::prefer_dtls_client(&offer.sdp)),
            tracks,
        });
        self.dirty.insert((id, Side::Subscriber));
    }

    /// WHEP: answers the client's receive-only offer with up to one audio and one video stream.
    fn whep(
        &mut self,
        id: ParticipantId,
        room: RoomId,
        offer: String,
        streams: Vec<StreamRef>,
    ) -> Result<String, MediaError> {
        let now = Instant::now();
        if self
            .participants
            .get(&id)
            .is_some_and(|p| p.subscriber.is_some())
        {
            return Err(MediaError::Negotiation(
                "this participant already has a subscribing connection".into(),
            ));
        }
        let bundled = sdp::ensure_bundle(&offer).map_err(|e| MediaError::BadSdp(e.into()))?;
        let added_bundle = bundled.is_some();
        let offer = bundled.unwrap_or(offer);
        let desc =
            RTCSessionDescription::offer(offer).map_err(|e| MediaError::BadSdp(e.to_string()))?;
        // One audio and one video (camera preferred over screen share) among the streams that exist.
        let mut chosen: Vec<(StreamRef, PublicationId, Option<Codec>)> = Vec::new();
        for want in [MediaKind::Audio, MediaKind::Video, MediaKind::SubVideo] {
            let is_video = want != MediaKind::Audio;
            if is_video && chosen.iter().any(|(w, _, _)| w.kind != MediaKind::Audio) {
                continue;
            }
            for w in streams
                .iter()
                .filter(|w| w.kind == want && w.publisher != id)
            {
                if let Some((publication, codec)) = self.publication_of(w.publisher, w.kind) {
                    chosen.push((w.clone(), publication, codec));
                    break;
                }
            }
        }
        if chosen.is_empty() {
            return Err(MediaError::Negotiation(
                "the room has no stream to play yet".into(),
            ));
        }
        let candidate = self.host_candidate()?;
        let (ufrag, pwd) = peer::ice_credentials();
        let mut pc = peer::build(now, &ufrag, &pwd, SrtpPolicy::GcmOrCm)?;
        let neg = |e: rtc::shared::error::Error| MediaError::Negotiation(e.to_string());
        pc.set_remote_description(now, desc)
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        pc.add_local_candidate(candidate).map_err(neg)?;
        let mut downs = Vec::new();
        for (w, publication, codec) in chosen {
            let codec = codec.unwrap_or(if w.kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            });
            let ssrc = rand::random::<u32>() | 1;
            let sender = pc.add_track(track_for(&w, codec, ssrc)).map_err(neg)?;
            downs.push((w, publication, codec, ssrc, sender));
        }
        let answer = pc.create_answer(None).map_err(neg)?;
        pc.set_local_description(now, answer.clone()).map_err(neg)?;
        let mut sb = SubPeer {
            pc,
            ufrag: ufrag.clone(),
            deadline: Some(now),
            downs: Vec::new(),
            by_ssrc: HashMap::new(),
            awaiting_answer: false,
            in_flight: Vec::new(),
            whep: true,
            renegotiate: false,
            connected: false,
        };
        for (w, publication, codec, ssrc, sender) in downs {
            let (mime, default_pt, ..) = codec_params(codec);
            let payload_type =
                negotiated_payload_type(&mut sb.pc, sender, mime).unwrap_or(default_pt);
            let down_id = DownTrackId(self.new_id());
            sb.by_ssrc.insert(ssrc, down_id);
            sb.downs.push(Down {
                id: down_id,
                publisher: w.publisher,
                kind: w.kind,
                publication,
                sender,
                ssrc,
                payload_type,
                layer: LayerPreference::High,
                in_router: false,
                negotiated: true,
            });
        }
        self.participant_entry(id, room).subscriber = Some(Box::new(sb));
        self.by_ufrag.insert(ufrag, (id, Side::Subscriber));
        self.dirty.insert((id, Side::Subscriber));
        Ok(if added_bundle {
            sdp::without_bundle_group(&answer.sdp)
        } else {
            answer.sdp
        })
    }

    fn subscribe_answer(&mut self, id: ParticipantId, sdp: String) -> Result<(), MediaError> {
        let now = Instant::now();
        let p = self.participants.get_mut(&id).ok_or(MediaError::NoPeer)?;
        let room = p.room;
        let sb = p.subscriber.as_mut().ok_or(MediaError::NoPeer)?;
        if !sb.awaiting_answer {
            return Err(MediaError::Negotiation(
                "no offer is waiting for an answer".into(),
            ));
        }
        let desc =
            RTCSessionDescription::answer(sdp).map_err(|e| MediaError::BadSdp(e.to_string()))?;
        sb.pc
            .set_remote_description(now, desc)
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        sb.awaiting_answer = false;
        let answered = std::mem::take(&mut sb.in_flight);
        for d in sb.downs.iter_mut().filter(|d| answered.contains(&d.id)) {
            d.negotiated = true;
        }
        // Before the connection is up, down-tracks wait (subscriber_connected adds them).
        let adds = if sb.connected {
            pending_down_tracks(id, sb)
        } else {
            Vec::new()
        };
        let again = sb.renegotiate;
        self.dirty.insert((id, Side::Subscriber));
        for command in adds {
            self.router_input(room, Input::Command { now, command });
        }
        if again {
            self.offer(id);
        }
        Ok(())
    }

    /// Closes a participant's connections for its client's new ones, keeping its publications.
    fn reconnect(&mut self, id: ParticipantId) {
        let now = Instant::now();
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let room = p.room;
        let mut remove_downs = Vec::new();
        if let Some(mut pb) = p.publisher.take() {
            self.by_ufrag.remove(&pb.ufrag);
            let _ = pb.pc.close();
            // close() queues a DTLS close_notify: send it (a browser then closes at once).
            queue_writes(&mut pb.pc, &mut self.out, &self.socket, &mut self.counters);
            p.detached = Some(Detached {
                publications: pb.publications,
                codecs: pb.codecs,
                since: now,
            });
        }
        if let Some(mut sb) = p.subscriber.take() {
            self.by_ufrag.remove(&sb.ufrag);
            let _ = sb.pc.close();
            // close() queues a DTLS close_notify: send it (a browser then closes at once).
            queue_writes(&mut sb.pc, &mut self.out, &self.socket, &mut self.counters);
            remove_downs.extend(sb.downs.iter().filter(|d| d.in_router).map(|d| d.id));
        }
        self.by_addr.retain(|_, (pid, _)| *pid != id);
        self.dirty.retain(|(pid, _)| *pid != id);
        for down in remove_downs {
            self.router_input(
                room,
                Input::Command {
                    now,
                    command: Command::RemoveDownTrack { id: down },
                },
            );
        }
        info!(
            participant = id.0,
            "participant reconnecting; publications kept"
        );
    }

    /// Ends publications whose publisher did not come back within the republish window.
    fn expire_detached(&mut self, now: Instant) {
        let expired: Vec<(ParticipantId, RoomId, Detached)> = self
            .participants
            .iter_mut()
            .filter(|(_, p)| {
                p.detached
                    .as_ref()
                    .is_some_and(|d| now.duration_since(d.since) > REPUBLISH_WINDOW)
            })
            .filter_map(|(id, p)| p.detached.take().map(|d| (*id, p.room, d)))
            .collect();
        for (id, room, d) in expired {
            for (kind, publication) in d.publications {
                self.remove_publication(room, publication, now);
                let _ = self.events.send(MediaEvent::Unpublished {
                    participant: id,
                    kind,
                });
            }
        }
    }

    fn remove_participant(&mut self, id: ParticipantId) {
        let Some(mut p) = self.participants.remove(&id) else {
            return;
        };
        let room = p.room;
        let now = Instant::now();
        if let Some(d) = p.detached.take() {
            for (_, publication) in d.publications {
                self.remove_publication(room, publication, now);
            }
        }
        if let Some(mut pb) = p.publisher.take() {
            self.by_ufrag.remove(&pb.ufrag);
            let _ = pb.pc.close();
            // close() queues a DTLS close_notify: send it (a browser then closes at once).
            queue_writes(&mut pb.pc, &mut self.out, &self.socket, &mut self.counters);
            for (_, publication) in pb.publications.drain() {
                self.remove_publication(room, publication, now);
            }
        }
        if let Some(mut sb) = p.subscriber.take() {
            self.by_ufrag.remove(&sb.ufrag);
            let _ = sb.pc.close();
            // close() queues a DTLS close_notify: send it (a browser then closes at once).
            queue_writes(&mut sb.pc, &mut self.out, &self.socket, &mut self.counters);
            for d in sb.downs.drain(..) {
                if d.in_router {
                    self.router_input(
                        room,
                        Input::Command {
                            now,
                            command: Command::RemoveDownTrack { id: d.id },
                        },
                    );
                }
            }
        }
        self.by_addr.retain(|_, (pid, _)| *pid != id);
        self.dirty.retain(|(pid, _)| *pid != id);
        // Others that received this participant's streams drop them.
        let others: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, o)| {
                o.room == room
                    && o.subscriber
                        .as_ref()
                        .is_some_and(|s| s.downs.iter().any(|d| d.publisher == id))
            })
            .map(|(oid, _)| *oid)
            .collect();
        for other in others {
            self.sync_subscriptions(other);
        }
        if !self.participants.values().any(|o| o.room == room) {
            if let Some(router) = self.routers.remove(&room) {
                add_router_stats(&mut self.retired, router.stats());
            }
        }
        info!(participant = id.0, "participant's connections closed");
    }
}

/// AddDownTrack commands for the subscriber's down-tracks not yet in the router (marking them).
fn pending_down_tracks(id: ParticipantId, sb: &mut SubPeer) -> Vec<Command> {
    sb.downs
        .iter_mut()
        .filter(|d| d.negotiated && !d.in_router)
        .map(|d| {
            d.in_router = true;
            Command::AddDownTrack {
                id: d.id,
                publication: d.publication,
                subscriber: id,
                ssrc: d.ssrc,
                payload_type: d.payload_type,
                layer: d.layer,
            }
        })
        .collect()
}

/// The media track a subscriber receives for one stream: grouped by the publisher's UserID (so a
/// browser syncs its audio and video) and carrying the publication's codec.
fn track_for(w: &StreamRef, codec: Codec, ssrc: u32) -> MediaStreamTrack {
    let (mime, _, clock, channels, fmtp) = codec_params(codec);
    MediaStreamTrack::new(
        w.user_id.clone(),
        format!("{}-{}", w.user_id, kind_name(w.kind)),
        format!("{}-{}", w.user_id, kind_name(w.kind)),
        if w.kind == MediaKind::Audio {
            RtpCodecKind::Audio
        } else {
            RtpCodecKind::Video
        },
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime.to_string(),
                clock_rate: clock,
                channels,
                sdp_fmtp_line: fmtp.to_string(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )
}

/// The payload type the remote side uses for `mime` on this sender (clients number codecs their way).
fn negotiated_payload_type(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    mime: &str,
) -> Option<u8> {
    let mut s = pc.rtp_sender(sender)?;
    s.get_parameters()
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
}

/// A subscriber's connection and one of its down-tracks.
fn down_track_of(
    participants: &mut HashMap<ParticipantId, Participant>,
    subscriber: ParticipantId,
    down_track: DownTrackId,
) -> Option<(&mut RTCPeerConnection, &Down)> {
    let sb = participants.get_mut(&subscriber)?.subscriber.as_mut()?;
    let down = sb.downs.iter().find(|d| d.id == down_track)?;
    Some((&mut sb.pc, down))
}

/// Moves every datagram `pc` has queued into the send batch (sending the batch whenever it fills);
/// returns how many.
fn queue_writes(
    pc: &mut RTCPeerConnection,
    out: &mut SendBatch,
    socket: &UdpSocket,
    counters: &mut LocalCounters,
) -> usize {
    let mut n = 0;
    while let Some(d) = pc.poll_write() {
        n += 1;
        if out.push(d.message, d.transport.peer_addr) {
            count_flush(counters, out.flush(socket));
        }
    }
    n
}

fn count_flush(counters: &mut LocalCounters, done: crate::batch::Flushed) {
    counters.send_calls += done.calls as u64;
    counters.send_errors += done.failed as u64;
}

/// A connection and its cached deadline.
fn conn_in(
    participants: &mut HashMap<ParticipantId, Participant>,
    (id, side): (ParticipantId, Side),
) -> Option<(&mut RTCPeerConnection, &mut Option<Instant>)> {
    let p = participants.get_mut(&id)?;
    match side {
        Side::Publisher => p.publisher.as_mut().map(|x| (&mut x.pc, &mut x.deadline)),
        Side::Subscriber => p.subscriber.as_mut().map(|x| (&mut x.pc, &mut x.deadline)),
    }
}

fn pc_in(
    participants: &mut HashMap<ParticipantId, Participant>,
    key: (ParticipantId, Side),
) -> Option<&mut RTCPeerConnection> {
    conn_in(participants, key).map(|(pc, _)| pc)
}

fn codec_params(codec: Codec) -> (&'static str, u8, u32, u16, &'static str) {
    use rtc::peer_connection::configuration::media_engine::*;
    match codec {
        Codec::Opus => (
            MIME_TYPE_OPUS,
            peer::PT_OPUS,
            48000,
            2,
            "minptime=10;useinbandfec=1",
        ),
        Codec::Vp8 => (MIME_TYPE_VP8, peer::PT_VP8, 90000, 0, ""),
        Codec::Vp9 => (MIME_TYPE_VP9, peer::PT_VP9, 90000, 0, "profile-id=0"),
        Codec::H264 => (
            MIME_TYPE_H264,
            peer::PT_H264,
            90000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        ),
    }
}

fn codec_of_mime(mime: &str) -> Option<Codec> {
    let m = mime.to_ascii_lowercase();
    match m.as_str() {
        "audio/opus" => Some(Codec::Opus),
        "video/vp8" => Some(Codec::Vp8),
        "video/vp9" => Some(Codec::Vp9),
        "video/h264" => Some(Codec::H264),
        _ => None,
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::SubVideo => "sub_video",
    }
}

/// Simulcast rids, lowest first by convention: `q`/`l`/`low` = 0, `h`/`m`/`mid` = 1, `f`/`high` = 2.
fn layer_of_rid(rid: &str, layers: u8) -> u8 {
    let l = match rid.to_ascii_lowercase().as_str() {
        "q" | "l" | "low" | "0" => 0,
        "h" | "m" | "mid" | "medium" | "1" => 1,
        "f" | "hi" | "high" | "full" | "2" => 2,
        _ => 0,
    };
    l.min(layers.saturating_sub(1))
}

/// mid -> number of `a=rid:... send` lines in the offer's media section (1 without simulcast).
fn simulcast_layers(offer: &str) -> HashMap<String, u8> {
    let mut out = HashMap::new();
    let mut mid: Option<String> = None;
    let mut count = 0u8;
    for line in offer.lines().map(|l| l.trim_end()) {
        if line.starts_with("m=") {
            if let Some(m) = mid.take() {
                out.insert(m, count.max(1));
            }
            count = 0;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_string());
        } else if line.starts_with("a=rid:") && line.contains(" send") {
            count = count.saturating_add(1).min(3);
        }
    }
    if let Some(m) = mid {
        out.insert(m, count.max(1));
    }
    out
}

/// The mid of the transceiver that `matches`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rids_map_to_layers() {
        assert_eq!(layer_of_rid("q", 3), 0);
        assert_eq!(layer_of_rid("h", 3), 1);
        assert_eq!(layer_of_rid("f", 3), 2);
        assert_eq!(layer_of_rid("f", 2), 1);
        assert_eq!(layer_of_rid("weird", 3), 0);
    }

    #[test]
    fn counts_simulcast_layers_per_mid() {
        let offer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\n";
        let l = simulcast_layers(offer);
        assert_eq!(l.get("0"), Some(&1));
        assert_eq!(l.get("1"), Some(&3));
    }
}
