//! The sans-I/O core of a media worker: every connection of its rooms in one slab, the one demux
//! on receive (STUN by USERNAME, everything else by the ICE-validated address), the rooms'
//! routers, and the glue between them. Datagrams, commands and time go in; datagrams (in
//! [`TxQueue`]), [`MediaEvent`]s and a timeout come out. The driver (`crate::driver`) owns the
//! socket and the channel.
//!
//! Publishing connections are in [`super::publisher`], subscribing ones in
//! [`super::subscriber`]; both are `impl Endpoint` blocks over the state defined here.

use super::codec::ExtensionPolicy;
use super::conn::{ConnConfig, Connection, Event, Received, Remote};
use super::dtls::DtlsRole;
use super::dtls::Identity;
use super::negotiate::Local;
use super::publisher::PubState;
use super::sdp::IceCredentials;
use super::slab::{Key, Slab};
use super::srtp::Profile;
use super::subscriber::SubState;
use super::txqueue::TxQueue;
use crate::api::{MediaError, MediaEvent, RoleLimits, Side, StreamRef};
use crate::stats::{add_router_stats, LocalCounters};
use bytes::{Bytes, BytesMut};
use fanout_forward::{
    Codec, Input, MediaKind, Output, ParticipantId, PublicationId, RoomId, Router, RouterStats,
};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a reconnecting publisher's streams wait for its new publishing connection.
pub const REPUBLISH_WINDOW: Duration = Duration::from_secs(10);

/// How often [`Endpoint::handle_timeout`] wants to run at the least (routers' timers, consent).
pub const TICK: Duration = Duration::from_millis(5);

/// Size of the buffers received payloads are carved from: one allocation per ~200 video or
/// ~2,000 audio packets instead of one (or two, counting `Bytes`'s shared header) per packet.
const ARENA_BYTES: usize = 256 * 1024;

/// One connection and what it is for.
pub(super) struct Peer {
    pub participant: ParticipantId,
    pub room: RoomId,
    pub conn: Connection,
    pub role: Role,
}

pub(super) enum Role {
    Publisher(Box<PubState>),
    Subscriber(Box<SubState>),
}

/// A participant's connections and publications. Publications belong to the participant, not to
/// its connection, so they survive a reconnect.
pub(super) struct Participant {
    pub room: RoomId,
    pub limits: RoleLimits,
    pub publisher: Option<Key>,
    pub subscriber: Option<Key>,
    pub wanted: Vec<StreamRef>,
    pub publications: HashMap<MediaKind, (PublicationId, Codec)>,
    /// Set while the participant reconnects: its publications wait this long for a new
    /// publishing connection.
    pub detached_since: Option<Instant>,
}

pub struct Endpoint {
    pub(super) identity: Identity,
    pub(super) candidates: Vec<SocketAddr>,
    pub(super) extensions: ExtensionPolicy,
    pub(super) peers: Slab<Peer>,
    pub(super) by_ufrag: HashMap<String, Key>,
    pub(super) by_addr: HashMap<SocketAddr, Key>,
    pub(super) participants: HashMap<ParticipantId, Participant>,
    pub(super) routers: HashMap<RoomId, Router>,
    pub(super) events: VecDeque<MediaEvent>,
    pub(super) tx: TxQueue,
    pub(super) counters: LocalCounters,
    /// The earliest transport-cc feedback due on a publishing connection.
    pub(super) twcc_due: Option<Instant>,
    /// Subscribing connections with congestion control (their estimators have timers).
    pub(super) congested: Vec<Key>,
    /// Received payloads are copied here once and shared from here (see [`Endpoint::share`]).
    arena: BytesMut,
    retired: RouterStats,
    next_id: u64,
}

impl Endpoint {
    /// An endpoint whose connections use `identity` and announce `candidates` (its sockets'
    /// public addresses).
    pub fn new(identity: Identity, candidates: Vec<SocketAddr>) -> Endpoint {
        Endpoint {
            identity,
            candidates,
            extensions: ExtensionPolicy::default(),
            peers: Slab::default(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            participants: HashMap::new(),
            routers: HashMap::new(),
            events: VecDeque::new(),
            tx: TxQueue::default(),
            counters: LocalCounters::default(),
            twcc_due: None,
            congested: Vec::new(),
            arena: BytesMut::with_capacity(ARENA_BYTES),
            retired: RouterStats::default(),
            next_id: 1,
        }
    }

    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A received payload as a shared buffer for the router, its NACK cache and every
    /// subscriber: copied once into the current arena and split off it.
    pub(super) fn share(&mut self, payload: &[u8]) -> Bytes {
        if self.arena.capacity() - self.arena.len() < payload.len() {
            self.arena = BytesMut::with_capacity(ARENA_BYTES.max(payload.len()));
        }
        self.arena.extend_from_slice(payload);
        self.arena.split().freeze()
    }

    /// Fresh ICE credentials and description parameters for a new connection.
    pub(super) fn new_local(&mut self) -> Local {
        use rand::distr::{Alphanumeric, SampleString};
        let mut rng = rand::rng();
        Local {
            ice: IceCredentials {
                ufrag: Alphanumeric.sample_string(&mut rng, 16),
                pwd: Alphanumeric.sample_string(&mut rng, 32),
            },
            fingerprint: self.identity.fingerprint(),
            candidates: self.candidates.clone(),
            session_id: rand::random::<u64>() >> 2,
            version: 1,
            extensions: self.extensions,
        }
    }

    pub(super) fn participant_entry(
        &mut self,
        id: ParticipantId,
        room: RoomId,
    ) -> &mut Participant {
        self.participants.entry(id).or_insert_with(|| Participant {
            room,
            limits: RoleLimits::default(),
            publisher: None,
            subscriber: None,
            wanted: Vec::new(),
            publications: HashMap::new(),
            detached_since: None,
        })
    }

    /// Creates a connection for `local`'s credentials and registers it under its ufrag.
    pub(super) fn add_peer(
        &mut self,
        now: Instant,
        local: &Local,
        (remote, dtls_role, profiles): (Option<Remote>, DtlsRole, Vec<Profile>),
        (participant, room): (ParticipantId, RoomId),
        role: Role,
    ) -> Result<Key, MediaError> {
        let conn = Connection::new(
            now,
            ConnConfig {
                local_ufrag: local.ice.ufrag.clone(),
                local_pwd: local.ice.pwd.clone(),
                remote,
                dtls_role,
                profiles,
            },
            &self.identity,
        )
        .map_err(|e| MediaError::Negotiation(e.to_string()))?;
        let key = self.peers.insert(Peer {
            participant,
            room,
            conn,
            role,
        });
        self.by_ufrag.insert(local.ice.ufrag.clone(), key);
        Ok(key)
    }

    /// Closes and forgets a connection: close_notify goes out, its addresses and ufrag are
    /// unregistered.
    pub(super) fn drop_peer(&mut self, now: Instant, key: Key) -> Option<Peer> {
        let mut peer = self.peers.remove(key)?;
        peer.conn.close(now);
        while let Some(t) = peer.conn.poll_transmit() {
            self.tx.push(t.to, &t.data);
        }
        let ufrag = peer.conn.ice().local_ufrag().to_string();
        self.by_ufrag.remove(&ufrag);
        self.by_addr.retain(|_, k| *k != key);
        Some(peer)
    }

    // ------------------------------------------------------------------ datagrams

    /// Handles one datagram, in place in `buf`. Errors concern the datagram alone; they are
    /// counted, never logged per packet.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        let stun = crate::demux::is_stun_request(buf);
        let key = if stun {
            match crate::demux::stun_local_ufrag(buf).and_then(|u| self.by_ufrag.get(u)) {
                Some(k) => *k,
                None => {
                    self.counters.dropped_datagrams += 1;
                    return;
                }
            }
        } else {
            match self.by_addr.get(&from) {
                Some(k) => *k,
                None => {
                    self.counters.dropped_datagrams += 1;
                    return;
                }
            }
        };
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let received = peer.conn.handle_datagram(now, from, buf);
        // Only a check validates an address, so media datagrams cost the one lookup above.
        if stun && peer.conn.ice().is_validated(from) {
            self.by_addr.insert(from, key);
        }
        match received {
            Ok(Received::Rtp { len }) => self.on_rtp(now, key, &buf[..len]),
            Ok(Received::Rtcp { len }) => self.on_rtcp(now, key, &buf[..len]),
            Ok(Received::Control) => {}
            Err(_) => self.counters.dropped_datagrams += 1,
        }
        self.drain_conn(now, key);
    }

    fn on_rtp(&mut self, now: Instant, key: Key, packet: &[u8]) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        match &peer.role {
            Role::Publisher(_) => self.publisher_rtp(now, key, packet),
            // Subscribers send no media.
            Role::Subscriber(_) => self.counters.dropped_datagrams += 1,
        }
    }

    fn on_rtcp(&mut self, now: Instant, key: Key, packet: &[u8]) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        match &peer.role {
            Role::Publisher(_) => self.publisher_rtcp(now, key, packet),
            Role::Subscriber(_) => self.subscriber_rtcp(now, key, packet),
        }
    }

    /// Moves a connection's control datagrams into the queue and acts on its events.
    pub(super) fn drain_conn(&mut self, now: Instant, key: Key) {
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            while let Some(t) = peer.conn.poll_transmit() {
                self.tx.push(t.to, &t.data);
            }
            let Some(event) = peer.conn.poll_event() else {
                return;
            };
            let (participant, side) = (peer.participant, side_of(&peer.role));
            match event {
                Event::Selected(addr) => {
                    self.by_addr.insert(addr, key);
                }
                Event::Connected { .. } => {
                    if side == Side::Subscriber {
                        self.subscriber_connected(now, key);
                    }
                }
                Event::Closed { reason } => {
                    tracing::debug!(participant = participant.0, ?side, %reason, "connection closed");
                    self.events
                        .push_back(MediaEvent::PeerClosed { participant, side });
                }
            }
        }
    }

    // ------------------------------------------------------------------ time

    /// Drives every connection's and router's timers, sends the transport-cc feedback due and
    /// expires detached publications.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Key> = self
            .peers
            .iter_mut()
            .filter_map(|(k, p)| p.conn.poll_timeout().is_some_and(|t| t <= now).then_some(k))
            .collect();
        for key in due {
            if let Some(peer) = self.peers.get_mut(key) {
                peer.conn.handle_timeout(now);
            }
            self.drain_conn(now, key);
        }
        let rooms: Vec<RoomId> = self
            .routers
            .iter()
            .filter(|(_, r)| r.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for room in rooms {
            self.router_input(room, Input::Timeout(now));
        }
        self.drive_congestion(now);
        self.send_twcc_feedback(now);
        self.expire_detached(now);
    }

    /// When [`Self::handle_timeout`] should next run: within a [`TICK`], sooner when a
    /// transport-cc feedback is due.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let tick = now + TICK;
        self.twcc_due.map_or(tick, |t| t.clamp(now, tick))
    }

    // ------------------------------------------------------------------ the router

    pub(super) fn router_input(&mut self, room: RoomId, input: Input) {
        let router = self.routers.entry(room).or_default();
        let now = match &input {
            Input::Rtp { now, .. } | Input::Feedback { now, .. } | Input::Command { now, .. } => {
                *now
            }
            Input::Timeout(now) => *now,
        };
        router.handle_input(input);
        while let Some(out) = self.routers.get_mut(&room).and_then(Router::poll_output) {
            self.handle_output(room, now, out);
        }
    }

    fn handle_output(&mut self, room: RoomId, now: Instant, out: Output) {
        match out {
            Output::Rtp {
                subscriber,
                down_track,
                packet,
                retransmission,
                patch,
            } => self.send_rtp(now, subscriber, down_track, &packet, retransmission, patch),
            Output::SenderReport {
                subscriber,
                down_track,
                ssrc,
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
            } => self.send_sender_report(
                subscriber,
                down_track,
                ssrc,
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
            ),
            Output::KeyframeRequest {
                publisher,
                publication,
                layer,
            } => self.send_pli(publisher, publication, layer),
            Output::Nack {
                publisher,
                publication,
                layer,
                sequences,
            } => self.send_nack(publisher, publication, layer, &sequences),
            Output::ReceiverReport {
                publisher,
                publication,
                layer,
                fraction_lost,
                total_lost,
                highest_sequence,
                jitter,
            } => self.send_receiver_report(
                publisher,
                publication,
                layer,
                fraction_lost,
                total_lost,
                highest_sequence,
                jitter,
            ),
            Output::Remb {
                publisher,
                bitrate_bps,
            } => self.send_remb(publisher, bitrate_bps),
            Output::BandwidthWanted {
                subscriber,
                bitrate_bps,
            } => self.bandwidth_wanted(subscriber, bitrate_bps),
            Output::Event(event) => self.router_event(room, event),
        }
    }

    fn router_event(&mut self, room: RoomId, event: fanout_forward::Event) {
        use fanout_forward::{Event as RouterEvent, LimitReason};
        match event {
            RouterEvent::LimitExceeded {
                publisher,
                kind,
                layer,
                reason,
                ..
            } => {
                let reason = match reason {
                    LimitReason::Bitrate {
                        measured_kbps,
                        max_kbps,
                    } => format!(
                        "bitrate {measured_kbps} kbps above the role's {max_kbps} kbps (layer {})",
                        layer.0
                    ),
                    LimitReason::Resolution {
                        width,
                        height,
                        max_width,
                        max_height,
                    } => format!(
                        "resolution {width}x{height} above the role's {max_width}x{max_height} (layer {})",
                        layer.0
                    ),
                };
                self.events.push_back(MediaEvent::LimitExceeded {
                    participant: publisher,
                    kind,
                    reason,
                });
            }
            RouterEvent::ActiveSpeakers { participants } => {
                self.events
                    .push_back(MediaEvent::ActiveSpeakers { room, participants });
            }
            RouterEvent::StreamPaused {
                subscriber,
                down_track,
                ..
            } => self.stream_paused(subscriber, down_track, true),
            RouterEvent::StreamResumed {
                subscriber,
                down_track,
                ..
            } => self.stream_paused(subscriber, down_track, false),
            RouterEvent::LayersNeeded {
                publisher,
                kind,
                layers,
                ..
            } => self.layers_needed(publisher, kind, layers),
        }
    }

    pub(super) fn remove_publication(&mut self, now: Instant, room: RoomId, id: PublicationId) {
        self.router_input(
            room,
            Input::Command {
                now,
                command: fanout_forward::Command::RemovePublication { id },
            },
        );
    }

    // ------------------------------------------------------------------ lifecycle

    /// The participant's client came back on new connections: both old ones close, its
    /// publications wait [`REPUBLISH_WINDOW`] for its next publish.
    pub fn reconnect(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let (publisher, subscriber) = (p.publisher.take(), p.subscriber.take());
        p.detached_since = Some(now);
        if let Some(key) = publisher {
            self.drop_peer(now, key);
        }
        if let Some(key) = subscriber {
            self.drop_subscriber(now, key);
        }
        tracing::info!(
            participant = id.0,
            "participant reconnecting; publications kept"
        );
    }

    fn expire_detached(&mut self, now: Instant) {
        let expired: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                p.publisher.is_none()
                    && p.detached_since
                        .is_some_and(|t| now.duration_since(t) > REPUBLISH_WINDOW)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(p) = self.participants.get_mut(&id) else {
                continue;
            };
            p.detached_since = None;
            let room = p.room;
            let gone: Vec<(MediaKind, PublicationId)> =
                p.publications.drain().map(|(k, (id, _))| (k, id)).collect();
            for (kind, publication) in gone {
                self.remove_publication(now, room, publication);
                self.events.push_back(MediaEvent::Unpublished {
                    participant: id,
                    kind,
                });
            }
        }
    }

    /// Tears down both connections of a participant and everything it published.
    pub fn remove(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.remove(&id) else {
            return;
        };
        let room = p.room;
        if let Some(key) = p.publisher {
            self.drop_peer(now, key);
        }
        for (_, (publication, _)) in p.publications {
            self.remove_publication(now, room, publication);
        }
        if let Some(key) = p.subscriber {
            self.drop_subscriber(now, key);
        }
        // Others that received this participant's streams drop them.
        let others: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, o)| o.room == room && o.wanted.iter().any(|w| w.publisher == id))
            .map(|(oid, _)| *oid)
            .collect();
        for other in others {
            self.sync_subscriptions(now, other);
        }
        if !self.participants.values().any(|o| o.room == room) {
            if let Some(router) = self.routers.remove(&room) {
                add_router_stats(&mut self.retired, router.stats());
            }
        }
        tracing::info!(participant = id.0, "participant's connections closed");
    }

    // ------------------------------------------------------------------ output

    /// The datagrams to send; the driver sends them and calls [`TxQueue::clear`].
    pub fn transmits(&mut self) -> &mut TxQueue {
        &mut self.tx
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// The worker's own counters.
    pub fn counters(&mut self) -> &mut LocalCounters {
        &mut self.counters
    }

    /// Every router's counters, those of closed rooms included.
    pub fn router_stats(&self) -> RouterStats {
        let mut total = self.retired.clone();
        for r in self.routers.values() {
            add_router_stats(&mut total, r.stats());
        }
        total
    }

    /// Open connections.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn room_count(&self) -> usize {
        self.routers.len()
    }

    /// Whether `participant`'s connection on `side` has finished DTLS.
    pub fn is_connected(&self, participant: ParticipantId, side: Side) -> bool {
        let Some(p) = self.participants.get(&participant) else {
            return false;
        };
        let key = match side {
            Side::Publisher => p.publisher,
            Side::Subscriber => p.subscriber,
        };
        key.and_then(|k| self.peers.get(k))
            .is_some_and(|peer| peer.conn.is_connected())
    }
}

pub(super) fn side_of(role: &Role) -> Side {
    match role {
        Role::Publisher(_) => Side::Publisher,
        Role::Subscriber(_) => Side::Subscriber,
    }
}
