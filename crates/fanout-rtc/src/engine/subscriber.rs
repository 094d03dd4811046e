//! Subscribing connections: the streams a participant receives, the offers that carry them (or,
//! for WHEP, the answer to the player's offer), the router's packets sealed into each
//! subscriber's datagrams, and the feedback subscribers send (PLI, FIR, NACK, receiver reports).

use super::congestion::Congestion;
use super::conn::Remote;
use super::dtls::DtlsRole;
use super::endpoint::{Endpoint, Peer, Role};
use super::negotiate::{answer_receive, read_subscribe_answer, subscribe_offer, Local, Outgoing};
use super::rtcp::{self, Item};
use super::rtp::OutHeader;
use super::sdp::{Description, MediaType};
use super::slab::Key;
use super::srtp::Profile;
use super::txqueue::SLOT_BYTES;
use crate::api::{MediaError, MediaEvent, StreamRef, VideoConstraints};
use crate::stats::kind_index;
use bytes::Bytes;
use fanout_forward::PayloadPatch;
use fanout_forward::{
    Codec, Command, DownTrackId, Feedback, Input, LayerPreference, MediaKind, ParticipantId,
    PublicationId, RoomId, RtpPacket,
};
use rtc::rtcp as rtcp_types;
use std::collections::HashMap;
use std::time::Instant;

/// One stream a subscriber receives.
struct Down {
    id: DownTrackId,
    publisher: ParticipantId,
    kind: MediaKind,
    publication: PublicationId,
    ssrc: u32,
    payload_type: u8,
    layer: LayerPreference,
    /// The subscriber's constraints, once it sent some (kept across re-adds to the router).
    constraints: Option<VideoConstraints>,
    /// Index of its section in [`SubState::sections`].
    section: usize,
    /// Where NACKed packets are resent, once the subscriber accepted RTX.
    rtx: Option<Rtx>,
    /// Part of an answered description: its section exists on both sides.
    negotiated: bool,
    in_router: bool,
}

impl Down {
    /// Probe padding may go on its RTX stream: a video down-track in the router with one.
    fn carries_padding(&self) -> bool {
        self.kind != MediaKind::Audio && self.in_router && self.rtx.is_some()
    }
}

/// A down-track's RTX stream (RFC 4588): its own SSRC, payload type and sequence numbers.
#[derive(Debug, Clone, Copy)]
struct Rtx {
    ssrc: u32,
    payload_type: u8,
    sequence: u16,
}

/// Where the subscriber connection's negotiation stands.
enum Negotiation {
    /// Nothing in flight.
    Stable,
    /// An offer awaits its answer; `again` when the streams changed meanwhile.
    Offered {
        offered: Vec<Outgoing>,
        in_flight: Vec<DownTrackId>,
        again: bool,
    },
    /// WHEP: the player offered once; the streams are fixed for the session's life.
    Whep,
}

/// One media section of the subscriber's description. Sections are never removed (mids are
/// not reused); a section whose stream ended is inactive, and once an answer has confirmed
/// that, a new stream of its media type may take it over.
struct Section {
    out: Outgoing,
    /// The last answered description had this section inactive.
    free: bool,
}

pub(super) struct SubState {
    local: Local,
    /// Bandwidth estimation, once the subscriber accepted transport-wide-cc.
    pub(super) congestion: Option<Box<Congestion>>,
    sections: Vec<Section>,
    /// Indexed by the low 16 bits of the down-track id.
    downs: Vec<Option<Down>>,
    by_ssrc: HashMap<u32, DownTrackId>,
    negotiation: Negotiation,
    connected: bool,
}

impl SubState {
    fn new(local: Local, negotiation: Negotiation) -> SubState {
        SubState {
            local,
            congestion: None,
            sections: Vec::new(),
            downs: Vec::new(),
            by_ssrc: HashMap::new(),
            negotiation,
            connected: false,
        }
    }

    /// A video down-track with an RTX stream exists: probe padding has somewhere to go.
    pub(super) fn can_pad(&self) -> bool {
        self.downs.iter().flatten().any(Down::carries_padding)
    }

    /// Where padding goes: the first video down-track's RTX stream (its SSRC, payload type and
    /// next sequence number).
    pub(super) fn padding_stream(&mut self) -> Option<(u32, u8, u16)> {
        let rtx = self
            .downs
            .iter_mut()
            .flatten()
            .find(|d| d.carries_padding())?
            .rtx
            .as_mut()?;
        rtx.sequence = rtx.sequence.wrapping_add(1);
        Some((rtx.ssrc, rtx.payload_type, rtx.sequence))
    }

    fn down_mut(&mut self, id: DownTrackId) -> Option<&mut Down> {
        let (_, _, slot) = super::slab::Key::unpack(id.0);
        self.downs
            .get_mut(usize::from(slot))?
            .as_mut()
            .filter(|d| d.id == id)
    }
}

fn media_of(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Audio => MediaType::Audio,
        MediaKind::Video | MediaKind::SubVideo => MediaType::Video,
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::SubVideo => "sub_video",
    }
}

/// The outgoing section of a stream: grouped by the publisher's UserID (so a browser syncs its
/// audio and video) and carrying the publication's codec.
fn outgoing(
    mid: String,
    w: &StreamRef,
    codec: Codec,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) -> Outgoing {
    Outgoing {
        mid,
        media: media_of(w.kind),
        codec,
        ssrc,
        rtx_ssrc,
        stream_id: w.user_id.clone(),
        track_id: format!("{}-{}", w.user_id, kind_name(w.kind)),
        cname: w.user_id.clone(),
        active: true,
    }
}

/// How a forwarded packet goes out: as a retransmission (on the RTX stream), and with which
/// change to the subscriber's copy of its payload.
#[derive(Debug, Clone, Copy)]
pub(super) struct SendAs {
    pub retransmission: bool,
    pub patch: Option<PayloadPatch>,
}

impl Endpoint {
    /// The streams that exist now among those `id` wants: (stream, publication, codec).
    fn available(&self, id: ParticipantId) -> Vec<(StreamRef, PublicationId, Codec)> {
        let Some(p) = self.participants.get(&id) else {
            return Vec::new();
        };
        p.wanted
            .iter()
            .filter(|w| w.publisher != id)
            .filter_map(|w| {
                let (publication, codec) = *self
                    .participants
                    .get(&w.publisher)?
                    .publications
                    .get(&w.kind)?;
                Some((w.clone(), publication, codec))
            })
            .collect()
    }

    /// Sets the streams a participant should receive now.
    pub fn set_subscriptions(
        &mut self,
        now: Instant,
        id: ParticipantId,
        room: RoomId,
        streams: Vec<StreamRef>,
    ) {
        self.participant_entry(id, room).wanted = streams;
        self.sync_subscriptions(now, id);
    }

    fn new_subscriber(&mut self, now: Instant, id: ParticipantId, room: RoomId) -> Option<Key> {
        let mut local = self.new_local();
        // Offered so that the subscriber's browser sends transport-wide feedback, which the
        // connection's estimator reads (engine/congestion.rs).
        local.extensions.transport_cc = true;
        let state = SubState::new(local.clone(), Negotiation::Stable);
        let key = self
            .add_peer(
                now,
                &local,
                (None, DtlsRole::Client, vec![Profile::AeadAes128Gcm]),
                (id, room),
                Role::Subscriber(Box::new(state)),
            )
            .map_err(|e| tracing::warn!(error = %e, "cannot create a subscribing connection"))
            .ok()?;
        self.participants.get_mut(&id)?.subscriber = Some(key);
        Some(key)
    }

    /// Brings a subscriber's connection in line with its wanted streams; offers on change.
    pub(super) fn sync_subscriptions(&mut self, now: Instant, id: ParticipantId) {
        let available = self.available(id);
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let room = p.room;
        let key = match p.subscriber.filter(|k| self.peers.get(*k).is_some()) {
            Some(k) => k,
            None if available.is_empty() => return,
            None => match self.new_subscriber(now, id, room) {
                Some(k) => k,
                None => return,
            },
        };
        let Some(Peer {
            role: Role::Subscriber(sb),
            ..
        }) = self.peers.get_mut(key)
        else {
            return;
        };
        if matches!(sb.negotiation, Negotiation::Whep) {
            return;
        }
        let mut changed = false;
        let mut removed = Vec::new();
        for slot in sb.downs.iter_mut() {
            let keep = slot.as_ref().is_some_and(|d| {
                available.iter().any(|(w, publ, _)| {
                    w.publisher == d.publisher && w.kind == d.kind && *publ == d.publication
                })
            });
            if !keep {
                if let Some(d) = slot.take() {
                    sb.by_ssrc.remove(&d.ssrc);
                    if let Some(s) = sb.sections.get_mut(d.section) {
                        s.out.active = false;
                    }
                    if d.in_router {
                        removed.push(d.id);
                    }
                    changed = true;
                }
            }
        }
        for (w, publication, codec) in &available {
            let present = sb
                .downs
                .iter()
                .flatten()
                .any(|d| d.publisher == w.publisher && d.kind == w.kind);
            if present {
                continue;
            }
            let Some(slot) = sb
                .downs
                .iter()
                .position(Option::is_none)
                .or_else(|| (sb.downs.len() < usize::from(u16::MAX)).then_some(sb.downs.len()))
            else {
                continue;
            };
            if slot == sb.downs.len() {
                sb.downs.push(None);
            }
            let ssrc = rand::random::<u32>() | 1;
            let rtx_ssrc = (w.kind != MediaKind::Audio).then(|| rand::random::<u32>() | 1);
            let media = media_of(w.kind);
            let section = match sb
                .sections
                .iter()
                .position(|s| s.free && !s.out.active && s.out.media == media)
            {
                Some(i) => {
                    let mid = sb.sections[i].out.mid.clone();
                    sb.sections[i] = Section {
                        out: outgoing(mid, w, *codec, ssrc, rtx_ssrc),
                        free: false,
                    };
                    i
                }
                None => {
                    let mid = sb.sections.len().to_string();
                    sb.sections.push(Section {
                        out: outgoing(mid, w, *codec, ssrc, rtx_ssrc),
                        free: false,
                    });
                    sb.sections.len() - 1
                }
            };
            let down_id = DownTrackId(key.pack(slot as u16));
            sb.by_ssrc.insert(ssrc, down_id);
            sb.downs[slot] = Some(Down {
                id: down_id,
                publisher: w.publisher,
                kind: w.kind,
                publication: *publication,
                ssrc,
                payload_type: super::codec::spec(*codec).pt,
                layer: LayerPreference::High,
                constraints: None,
                section,
                rtx: None,
                negotiated: false,
                in_router: false,
            });
            changed = true;
        }
        for id in removed {
            self.router_input(
                room,
                Input::Command {
                    now,
                    command: Command::RemoveDownTrack { id },
                },
            );
        }
        if changed {
            self.offer(key);
        }
    }

    /// Sends a new offer on the subscribing connection, or marks one due once the open one is
    /// answered.
    fn offer(&mut self, key: Key) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let participant = peer.participant;
        let Role::Subscriber(sb) = &mut peer.role else {
            return;
        };
        match &mut sb.negotiation {
            Negotiation::Offered { again, .. } => {
                *again = true;
                return;
            }
            Negotiation::Whep => return,
            Negotiation::Stable => {}
        }
        sb.local.version += 1;
        let offered: Vec<Outgoing> = sb.sections.iter().map(|s| s.out.clone()).collect();
        let sdp = subscribe_offer(&sb.local, &offered);
        let in_flight: Vec<DownTrackId> = sb.downs.iter().flatten().map(|d| d.id).collect();
        let tracks = sb
            .downs
            .iter()
            .flatten()
            .filter_map(|d| {
                let mid = sb.sections.get(d.section)?.out.mid.clone();
                Some((mid, d.publisher, d.kind))
            })
            .collect();
        sb.negotiation = Negotiation::Offered {
            offered,
            in_flight,
            again: false,
        };
        self.events.push_back(MediaEvent::Offer {
            participant,
            sdp,
            tracks,
        });
    }

    /// The client's answer to the subscribing connection's open offer.
    pub fn subscribe_answer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        sdp: &str,
    ) -> Result<(), MediaError> {
        let key = self
            .participants
            .get(&id)
            .and_then(|p| p.subscriber)
            .ok_or(MediaError::NoPeer)?;
        let peer = self.peers.get_mut(key).ok_or(MediaError::NoPeer)?;
        let room = peer.room;
        let Role::Subscriber(sb) = &mut peer.role else {
            return Err(MediaError::NoPeer);
        };
        let Negotiation::Offered { offered, .. } = &sb.negotiation else {
            return Err(MediaError::Negotiation(
                "no offer is waiting for an answer".into(),
            ));
        };
        let answer = Description::parse(sdp).map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let read = read_subscribe_answer(offered, &answer)
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        peer.conn
            .set_remote(
                now,
                Remote {
                    ufrag: read.remote_ice.ufrag.clone(),
                    fingerprint: read.remote_fingerprint,
                },
            )
            .map_err(|e| MediaError::Negotiation(e.to_string()))?;
        let Role::Subscriber(sb) = &mut peer.role else {
            return Err(MediaError::NoPeer);
        };
        let Negotiation::Offered {
            offered,
            in_flight,
            again,
        } = std::mem::replace(&mut sb.negotiation, Negotiation::Stable)
        else {
            return Err(MediaError::NoPeer);
        };
        let mut congestion_started = false;
        if let (None, Some(id)) = (&sb.congestion, read.extensions.transport_cc) {
            sb.congestion = Some(Box::new(Congestion::new(now, id)));
            congestion_started = true;
        }
        for (i, (o, (accepted, _, rtx))) in offered.iter().zip(&read.tracks).enumerate() {
            if let Some(s) = sb.sections.get_mut(i) {
                s.free = !o.active && !s.out.active;
            }
            if !accepted {
                continue;
            }
            let rtx = match (rtx, o.rtx_ssrc, super::codec::spec(o.codec).rtx_pt) {
                (true, Some(ssrc), Some(payload_type)) => Some(Rtx {
                    ssrc,
                    payload_type,
                    sequence: rand::random(),
                }),
                _ => None,
            };
            for d in sb.downs.iter_mut().flatten() {
                if d.section == i && in_flight.contains(&d.id) {
                    d.negotiated = true;
                    d.rtx = rtx;
                }
            }
        }
        let adds = if sb.connected {
            pending_down_tracks(id, sb)
        } else {
            Vec::new()
        };
        for command in adds {
            self.router_input(room, Input::Command { now, command });
        }
        if congestion_started {
            self.congested.push(key);
        }
        self.drain_conn(now, key);
        if again {
            self.offer(key);
        }
        Ok(())
    }

    /// The subscribing connection finished DTLS: its negotiated down-tracks join the router
    /// now, so nothing is forwarded before it can be sealed and video starts at a keyframe.
    pub(super) fn subscriber_connected(&mut self, now: Instant, key: Key) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let (id, room) = (peer.participant, peer.room);
        let Role::Subscriber(sb) = &mut peer.role else {
            return;
        };
        sb.connected = true;
        let adds = pending_down_tracks(id, sb);
        for command in adds {
            self.router_input(room, Input::Command { now, command });
        }
    }

    /// Closes a subscribing connection; its down-tracks leave the router.
    pub(super) fn drop_subscriber(&mut self, now: Instant, key: Key) {
        let Some(peer) = self.drop_peer(now, key) else {
            return;
        };
        let Role::Subscriber(sb) = peer.role else {
            return;
        };
        for d in sb.downs.into_iter().flatten().filter(|d| d.in_router) {
            self.router_input(
                peer.room,
                Input::Command {
                    now,
                    command: Command::RemoveDownTrack { id: d.id },
                },
            );
        }
    }

    /// `participant`'s subscribing connection: its room and its state.
    pub(super) fn sub_state(
        &mut self,
        participant: ParticipantId,
    ) -> Option<(RoomId, &mut SubState)> {
        let key = self.participants.get(&participant)?.subscriber?;
        let peer = self.peers.get_mut(key)?;
        match &mut peer.role {
            Role::Subscriber(sb) => Some((peer.room, &mut **sb)),
            Role::Publisher(_) => None,
        }
    }

    /// The received stream `kind` of `publisher` on `id`'s subscribing connection, and its room.
    fn received_down(
        &mut self,
        id: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
    ) -> Option<(RoomId, &mut Down)> {
        let (room, sb) = self.sub_state(id)?;
        let d = sb
            .downs
            .iter_mut()
            .flatten()
            .find(|d| d.publisher == publisher && d.kind == kind)?;
        Some((room, d))
    }

    /// Chooses the simulcast layer (TRTC big/small stream) of one received stream.
    pub fn set_layer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
        layer: LayerPreference,
    ) {
        let Some((room, d)) = self.received_down(id, publisher, kind) else {
            return;
        };
        d.layer = layer;
        if d.in_router {
            let down_track = d.id;
            self.router_input(
                room,
                Input::Command {
                    now,
                    command: Command::SetLayer { down_track, layer },
                },
            );
        }
    }

    /// How the subscriber shows one received stream (kept for the down-track's next add to the
    /// router, and applied now if it is there).
    pub fn set_video_constraints(
        &mut self,
        now: Instant,
        id: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
        constraints: VideoConstraints,
    ) {
        let Some((room, d)) = self.received_down(id, publisher, kind) else {
            return;
        };
        d.constraints = Some(constraints);
        if d.in_router {
            let command = constraints_command(d.id, constraints);
            self.router_input(room, Input::Command { now, command });
        }
    }

    /// The router paused (or resumed) one of `subscriber`'s down-tracks for bandwidth: tell
    /// signalling which stream that is.
    pub(super) fn stream_paused(
        &mut self,
        subscriber: ParticipantId,
        down_track: DownTrackId,
        paused: bool,
    ) {
        let Some((publisher, kind)) = self
            .sub_state(subscriber)
            .and_then(|(_, sb)| sb.down_mut(down_track))
            .map(|d| (d.publisher, d.kind))
        else {
            return;
        };
        self.events.push_back(MediaEvent::StreamPaused {
            participant: subscriber,
            publisher,
            kind,
            paused,
        });
    }

    /// WHEP: answers a player's receive-only offer with up to one audio and one video stream
    /// (camera preferred over screen share) among `streams`.
    pub fn whep_subscribe(
        &mut self,
        now: Instant,
        id: ParticipantId,
        room: RoomId,
        offer: &str,
        streams: Vec<StreamRef>,
    ) -> Result<String, MediaError> {
        if self
            .participants
            .get(&id)
            .is_some_and(|p| p.subscriber.is_some())
        {
            return Err(MediaError::Negotiation(
                "this participant already has a subscribing connection".into(),
            ));
        }
        let offer = Description::parse(offer).map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let mut chosen: Vec<(StreamRef, PublicationId, Codec)> = Vec::new();
        for want in [MediaKind::Audio, MediaKind::Video, MediaKind::SubVideo] {
            if want != MediaKind::Audio && chosen.iter().any(|(w, _, _)| w.kind != MediaKind::Audio)
            {
                continue;
            }
            let found = streams
                .iter()
                .filter(|w| w.kind == want && w.publisher != id)
                .find_map(|w| {
                    let (p, c) = *self
                        .participants
                        .get(&w.publisher)?
                        .publications
                        .get(&w.kind)?;
                    Some((w.clone(), p, c))
                });
            chosen.extend(found);
        }
        if chosen.is_empty() {
            return Err(MediaError::Negotiation(
                "the room has no stream to play yet".into(),
            ));
        }
        let local = self.new_local();
        let tracks: Vec<Outgoing> = chosen
            .iter()
            .enumerate()
            .map(|(i, (w, _, codec))| {
                let rtx = (w.kind != MediaKind::Audio).then(|| rand::random::<u32>() | 1);
                outgoing(i.to_string(), w, *codec, rand::random::<u32>() | 1, rtx)
            })
            .collect();
        let (sdp, placed, settled) = answer_receive(&offer, &local, &tracks)
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        if placed.is_empty() {
            return Err(MediaError::Negotiation(
                "the offer accepts none of the streams' codecs".into(),
            ));
        }
        self.participant_entry(id, room);
        let remote = Remote {
            ufrag: settled.remote_ice.ufrag.clone(),
            fingerprint: settled.remote_fingerprint,
        };
        let key = self.add_peer(
            now,
            &local,
            (
                Some(remote),
                settled.dtls_role,
                vec![Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80],
            ),
            (id, room),
            Role::Subscriber(Box::new(SubState::new(local.clone(), Negotiation::Whep))),
        )?;
        if let Some(Peer {
            role: Role::Subscriber(sb),
            ..
        }) = self.peers.get_mut(key)
        {
            for (slot, p) in placed.iter().enumerate() {
                let t = &tracks[p.track];
                let (w, publication, _) = &chosen[p.track];
                let down_id = DownTrackId(key.pack(slot as u16));
                sb.by_ssrc.insert(t.ssrc, down_id);
                sb.sections.push(Section {
                    out: t.clone(),
                    free: false,
                });
                sb.downs.push(Some(Down {
                    id: down_id,
                    publisher: w.publisher,
                    kind: w.kind,
                    publication: *publication,
                    ssrc: t.ssrc,
                    payload_type: p.pt,
                    layer: LayerPreference::High,
                    constraints: None,
                    section: slot,
                    rtx: match (p.rtx_pt, t.rtx_ssrc) {
                        (Some(payload_type), Some(ssrc)) => Some(Rtx {
                            ssrc,
                            payload_type,
                            sequence: rand::random(),
                        }),
                        _ => None,
                    },
                    negotiated: true,
                    in_router: false,
                }));
            }
        }
        if let Some(p) = self.participants.get_mut(&id) {
            p.subscriber = Some(key);
        }
        Ok(sdp)
    }

    // ------------------------------------------------------------------ the hot path

    /// Seals one forwarded packet into the subscriber's next datagram: the rewritten header,
    /// the payload copied once, SRTP in place. No allocation, no hash lookup: the down-track id
    /// carries the connection's slab index. On a congestion-controlled connection video goes
    /// through the connection's pacer (a reference-counted copy waits there when it must).
    pub(super) fn send_rtp(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        down_track: DownTrackId,
        packet: &RtpPacket,
        retransmission: bool,
        patch: Option<PayloadPatch>,
    ) {
        self.seal_rtp(
            now,
            subscriber,
            down_track,
            packet,
            SendAs {
                retransmission,
                patch,
            },
            false,
        );
    }

    /// [`Self::send_rtp`]; `paced`: the pacer released it (it does not ask again).
    pub(super) fn seal_rtp(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        down_track: DownTrackId,
        packet: &RtpPacket,
        how: SendAs,
        paced: bool,
    ) {
        let SendAs {
            retransmission,
            patch,
        } = how;
        let Some((_, peer)) = self.peers.get_packed_mut(down_track.0) else {
            return;
        };
        if peer.participant != subscriber || !peer.conn.is_connected() {
            return;
        }
        let Some(to) = peer.conn.remote() else {
            return;
        };
        let Role::Subscriber(sb) = &mut peer.role else {
            return;
        };
        let Some(down) = sb.down_mut(down_track) else {
            return;
        };
        let kind = down.kind;
        // A resend goes out on the RTX stream with the original sequence number in front of the
        // payload: never a second packet under the same SSRC and sequence number.
        let (header, osn) = if retransmission {
            let Some(rtx) = down.rtx.as_mut() else {
                self.counters.dropped_retransmissions += 1;
                return;
            };
            rtx.sequence = rtx.sequence.wrapping_add(1);
            let header = OutHeader {
                marker: packet.marker,
                payload_type: rtx.payload_type,
                sequence: rtx.sequence,
                timestamp: packet.timestamp,
                ssrc: rtx.ssrc,
                transport_seq: None,
            };
            (header, Some(packet.sequence.to_be_bytes()))
        } else {
            let header = OutHeader {
                marker: packet.marker,
                payload_type: packet.payload_type,
                sequence: packet.sequence,
                timestamp: packet.timestamp,
                ssrc: packet.ssrc,
                transport_seq: None,
            };
            (header, None)
        };
        let mut header = header;
        if sb.congestion.is_some() {
            header.transport_seq = Some((0, 0));
        }
        let mut at = header.size();
        let len = at + osn.map_or(0, |o| o.len()) + packet.payload.len();
        if len + 32 > SLOT_BYTES {
            return;
        }
        if let Some(cc) = sb.congestion.as_mut() {
            if !paced && kind != MediaKind::Audio && !cc.may_send(now, len) {
                cc.hold(now, len, down_track, packet, retransmission, patch);
                return;
            }
            header.transport_seq = Some(cc.stamp(now, len));
        }
        let slot = self.tx.next_slot();
        header.write(&mut slot[..]);
        if let Some(osn) = osn {
            slot[at..at + 2].copy_from_slice(&osn);
            at += 2;
        }
        slot[at..len].copy_from_slice(&packet.payload);
        if let Some(p) = patch {
            p.apply(&mut slot[at..len]);
        }
        match peer.conn.protect_rtp(&mut slot[..], len) {
            Ok(n) => {
                self.tx.commit(to, n);
                let i = kind_index(kind);
                self.counters.packets_out[i] += 1;
                self.counters.bytes_out[i] += n as u64;
            }
            Err(_) => self.counters.dropped_datagrams += 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_sender_report(
        &mut self,
        subscriber: ParticipantId,
        down_track: DownTrackId,
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
    ) {
        let Some((key, peer)) = self.peers.get_packed_mut(down_track.0) else {
            return;
        };
        if peer.participant != subscriber {
            return;
        }
        let sr = rtcp_types::sender_report::SenderReport {
            ssrc,
            ntp_time,
            rtp_time,
            packet_count,
            octet_count,
            reports: vec![],
            profile_extensions: Bytes::new(),
        };
        self.send_rtcp(key, &[&sr]);
    }

    /// A decrypted RTCP compound from a subscriber: keyframe requests, NACKs and receiver
    /// reports for its down-tracks reach the router.
    pub(super) fn subscriber_rtcp(&mut self, now: Instant, key: Key, packet: &[u8]) {
        let Some(room) = self.peers.get(key).map(|p| p.room) else {
            return;
        };
        let down_of = |this: &Endpoint, ssrc: u32| -> Option<DownTrackId> {
            match &this.peers.get(key)?.role {
                Role::Subscriber(sb) => sb.by_ssrc.get(&ssrc).copied(),
                Role::Publisher(_) => None,
            }
        };
        let mut nack: Option<(DownTrackId, Vec<u16>)> = None;
        for item in rtcp::items(packet) {
            let Ok(item) = item else {
                break;
            };
            let feedback = match item {
                Item::Pli { media_ssrc } | Item::Fir { media_ssrc } => down_of(self, media_ssrc)
                    .map(|down_track| Feedback::KeyframeRequest { down_track }),
                Item::Report(block) => {
                    down_of(self, block.ssrc).map(|down_track| Feedback::ReceiverReport {
                        down_track,
                        fraction_lost: block.fraction_lost,
                        jitter: block.jitter,
                    })
                }
                Item::TransportCc { body, .. } => {
                    self.subscriber_twcc(now, key, body);
                    continue;
                }
                Item::Nack {
                    media_ssrc,
                    pid,
                    blp,
                } => {
                    let Some(down_track) = down_of(self, media_ssrc) else {
                        continue;
                    };
                    let entry = match &mut nack {
                        Some((d, seqs)) if *d == down_track => seqs,
                        _ => {
                            if let Some((down_track, sequences)) = nack.take() {
                                let feedback = Feedback::Nack {
                                    down_track,
                                    sequences,
                                };
                                self.router_input(room, Input::Feedback { now, feedback });
                            }
                            &mut nack.insert((down_track, Vec::with_capacity(17))).1
                        }
                    };
                    entry.push(pid);
                    for bit in 0..16u16 {
                        if blp & (1 << bit) != 0 {
                            entry.push(pid.wrapping_add(bit + 1));
                        }
                    }
                    continue;
                }
                _ => None,
            };
            if let Some(feedback) = feedback {
                self.router_input(room, Input::Feedback { now, feedback });
            }
        }
        if let Some((down_track, sequences)) = nack {
            let feedback = Feedback::Nack {
                down_track,
                sequences,
            };
            self.router_input(room, Input::Feedback { now, feedback });
        }
    }
}

fn constraints_command(down_track: DownTrackId, c: VideoConstraints) -> Command {
    Command::SetVideoConstraints {
        down_track,
        max_width: c.max_width,
        max_height: c.max_height,
        paused: c.paused,
        priority: c.priority,
    }
}

/// AddDownTrack commands (and the constraints already set) for the subscriber's negotiated
/// down-tracks not yet in the router.
fn pending_down_tracks(id: ParticipantId, sb: &mut SubState) -> Vec<Command> {
    let mut out = Vec::new();
    for d in sb
        .downs
        .iter_mut()
        .flatten()
        .filter(|d| d.negotiated && !d.in_router)
    {
        d.in_router = true;
        out.push(Command::AddDownTrack {
            id: d.id,
            publication: d.publication,
            subscriber: id,
            ssrc: d.ssrc,
            payload_type: d.payload_type,
            layer: d.layer,
        });
        if let Some(c) = d.constraints {
            out.push(constraints_command(d.id, c));
        }
    }
    out
}
