//! Publishing connections: the answer to a publisher's offer, its RTP in (streams recognised by
//! SSRC, mid and rid; RTX unwrapped), its sender reports, the feedback the router sends it
//! (PLI, NACK, receiver reports, REMB) and the transport-wide congestion-control feedback the
//! connection sends it (arrivals recorded per packet, feedback every [`twcc::FEEDBACK_INTERVAL`]).

use super::codec::ExtensionIds;
use super::conn::Remote;
use super::endpoint::{Endpoint, Peer, Role};
use super::negotiate::{answer_publish, Incoming, Local, Wanted};
use super::rtcp::{self, Item};
use super::rtp::Header;
use super::sdp::{Description, MediaType};
use super::slab::Key;
use super::srtp::Profile;
use super::twcc;
use crate::api::{MediaError, MediaEvent, RoleLimits, SrtpPolicy};
use crate::stats::kind_index;
use bytes::Bytes;
use fanout_forward::{
    Command, Feedback, Input, Layer, MediaKind, ParticipantId, PublicationId, RoomId, RtpPacket,
};
use rtc::rtcp as rtcp_types;
use std::collections::HashMap;
use std::time::Instant;

/// One received RTP stream (an SSRC): which publication and layer it feeds.
#[derive(Debug, Clone, Copy)]
struct Stream {
    publication: PublicationId,
    kind: MediaKind,
    layer: Layer,
    /// For an RTX stream: the media SSRC it repairs and that stream's payload type.
    repairs: Option<(u32, u8)>,
}

/// A publishing connection's negotiated state.
pub(super) struct PubState {
    local: Local,
    sections: Vec<(Incoming, MediaKind)>,
    extensions: ExtensionIds,
    streams: HashMap<u32, Stream>,
    /// (publication, layer) -> media SSRC, for the feedback the router sends up.
    layers: Vec<(PublicationId, Layer, u32)>,
    stopped: bool,
    /// Arrivals of the packets numbered with the transport-wide sequence extension.
    twcc: twcc::Recorder,
    /// The SSRC of the last such packet: the feedback's media source (libwebrtc ignores transport
    /// feedback about an SSRC it does not send).
    twcc_ssrc: u32,
}

/// Simulcast rids, lowest first by convention: `q`/`l`/`low` = 0, `h`/`m`/`mid` = 1, `f`/`high` = 2;
/// otherwise the rid's position in the offer.
fn layer_of_rid(rid: &[u8], rids: &[String]) -> u8 {
    let named = match rid.to_ascii_lowercase().as_slice() {
        b"q" | b"l" | b"low" | b"0" => Some(0),
        b"h" | b"m" | b"mid" | b"medium" | b"1" => Some(1),
        b"f" | b"hi" | b"high" | b"full" | b"2" => Some(2),
        _ => None,
    };
    let layers = rids.len().max(1) as u8;
    named
        .or_else(|| {
            rids.iter()
                .position(|r| r.as_bytes() == rid)
                .map(|i| i as u8)
        })
        .unwrap_or(0)
        .min(layers - 1)
}

/// The rids (of an offer's `rids`) whose layers are set in `layers` (bit i: `Layer(i)`).
fn rids_of_layers(layers: u8, rids: &[String]) -> Vec<String> {
    rids.iter()
        .filter(|r| layers & (1 << layer_of_rid(r.as_bytes(), rids)) != 0)
        .cloned()
        .collect()
}

impl Endpoint {
    /// Dynacast: tells `publisher` which rids of its `kind` stream some subscriber needs (bit
    /// `i` of `layers` for `Layer(i)`), as the rids its offer named.
    pub(super) fn layers_needed(&mut self, publisher: ParticipantId, kind: MediaKind, layers: u8) {
        let Some(key) = self.participants.get(&publisher).and_then(|p| p.publisher) else {
            return;
        };
        let Some(Peer {
            role: Role::Publisher(pb),
            ..
        }) = self.peers.get(key)
        else {
            return;
        };
        let Some((incoming, _)) = pb
            .sections
            .iter()
            .find(|(i, k)| *k == kind && !i.rids.is_empty())
        else {
            return;
        };
        let rids = rids_of_layers(layers, &incoming.rids);
        self.events.push_back(MediaEvent::LayersNeeded {
            participant: publisher,
            kind,
            rids,
        });
    }

    /// Answers a publishing connection's offer (its first or a renegotiation). `tracks` maps
    /// mids to kinds; sections not listed are rejected.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &mut self,
        now: Instant,
        id: ParticipantId,
        room: RoomId,
        offer: &str,
        tracks: &[(String, MediaKind)],
        limits: RoleLimits,
        srtp: SrtpPolicy,
    ) -> Result<String, MediaError> {
        let offer = Description::parse(offer).map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let wanted: Vec<Wanted> = tracks
            .iter()
            .map(|(mid, kind)| {
                let cap = limits.for_kind(*kind).max_kbps;
                Wanted {
                    mid: mid.clone(),
                    max_kbps: (cap > 0).then_some(cap),
                }
            })
            .collect();
        let existing = self.participant_entry(id, room).publisher;
        let existing = existing.filter(|k| self.peers.get(*k).is_some());
        let mut local = match existing.and_then(|k| self.peers.get_mut(k)) {
            Some(Peer {
                role: Role::Publisher(pb),
                ..
            }) => {
                pb.local.version += 1;
                pb.local.clone()
            }
            _ => self.new_local(),
        };
        // Publishing connections negotiate transport-wide-cc: they answer it with feedback.
        local.extensions.transport_cc = true;
        let answer = answer_publish(&offer, &local, &wanted)
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let sections: Vec<(Incoming, MediaKind)> = answer
            .accepted
            .iter()
            .filter_map(|inc| {
                let kind = tracks.iter().find(|(m, _)| *m == inc.mid)?.1;
                let fits = (kind == MediaKind::Audio) == (inc.media == MediaType::Audio);
                fits.then(|| (inc.clone(), kind))
            })
            .collect();
        match existing {
            Some(key) => {
                let Some(peer) = self.peers.get_mut(key) else {
                    return Err(MediaError::NoPeer);
                };
                if peer.conn.ice().remote_ufrag() != Some(answer.remote_ice.ufrag.as_str()) {
                    return Err(MediaError::Negotiation(
                        "an ICE restart is not supported: reconnect instead".into(),
                    ));
                }
                if let Role::Publisher(pb) = &mut peer.role {
                    pb.sections = sections;
                    pb.extensions = answer.extensions;
                    pb.stopped = false;
                    // Streams of sections that went away are forgotten below with their kinds.
                }
            }
            None => {
                let profiles = match srtp {
                    SrtpPolicy::GcmOnly => vec![Profile::AeadAes128Gcm],
                    SrtpPolicy::GcmOrCm => {
                        vec![Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80]
                    }
                };
                let remote = Remote {
                    ufrag: answer.remote_ice.ufrag.clone(),
                    fingerprint: answer.remote_fingerprint,
                };
                let state = PubState {
                    local: local.clone(),
                    sections,
                    extensions: answer.extensions,
                    streams: HashMap::new(),
                    layers: Vec::new(),
                    stopped: false,
                    twcc: twcc::Recorder::new(now),
                    twcc_ssrc: 0,
                };
                let key = self.add_peer(
                    now,
                    &local,
                    (Some(remote), answer.dtls_role, profiles),
                    (id, room),
                    Role::Publisher(Box::new(state)),
                )?;
                let p = self.participant_entry(id, room);
                p.publisher = Some(key);
                p.detached_since = None;
            }
        }
        let p = self.participant_entry(id, room);
        p.limits = limits;
        // Kinds the client no longer declares stop being forwarded.
        let gone: Vec<(MediaKind, PublicationId)> = p
            .publications
            .iter()
            .filter(|(k, _)| !tracks.iter().any(|(_, tk)| tk == *k))
            .map(|(k, (publication, _))| (*k, *publication))
            .collect();
        for (k, _) in &gone {
            p.publications.remove(k);
        }
        if let Some(Peer {
            role: Role::Publisher(pb),
            ..
        }) = p.publisher.and_then(|k| self.peers.get_mut(k))
        {
            pb.streams
                .retain(|_, s| !gone.iter().any(|(_, g)| *g == s.publication));
            pb.layers
                .retain(|(publ, _, _)| !gone.iter().any(|(_, g)| g == publ));
        }
        for (kind, publication) in gone {
            self.remove_publication(now, room, publication);
            self.events.push_back(MediaEvent::Unpublished {
                participant: id,
                kind,
            });
        }
        Ok(answer.sdp)
    }

    /// Stops forwarding everything the participant publishes (role switched to audience).
    pub fn stop_publishing(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let room = p.room;
        let gone: Vec<(MediaKind, PublicationId)> =
            p.publications.drain().map(|(k, (i, _))| (k, i)).collect();
        if let Some(Peer {
            role: Role::Publisher(pb),
            ..
        }) = p.publisher.and_then(|k| self.peers.get_mut(k))
        {
            pb.stopped = true;
            pb.streams.clear();
            pb.layers.clear();
        }
        for (kind, publication) in gone {
            self.remove_publication(now, room, publication);
            self.events.push_back(MediaEvent::Unpublished {
                participant: id,
                kind,
            });
        }
    }

    /// A decrypted RTP packet from a publisher.
    pub(super) fn publisher_rtp(&mut self, now: Instant, key: Key, packet: &[u8]) {
        let Ok(h) = Header::parse(packet) else {
            self.counters.dropped_datagrams += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let room = peer.room;
        let Role::Publisher(pb) = &mut peer.role else {
            return;
        };
        let ids = pb.extensions;
        let ext = h.extensions(packet, &ids);
        // Every numbered packet counts for the sender's estimator (RTX and padding probes too), so
        // it is recorded before any reason to drop it.
        if let Some(seq) = ext.transport_seq {
            pb.twcc.record(seq, now);
            pb.twcc_ssrc = h.ssrc;
            if let Some(due) = pb.twcc.due() {
                self.twcc_due = Some(self.twcc_due.map_or(due, |d| d.min(due)));
            }
        }
        if pb.stopped {
            return;
        }
        let stream = match pb.streams.get(&h.ssrc) {
            Some(s) => *s,
            None => match self.open_stream(now, key, &h, packet) {
                Some(s) => s,
                None => {
                    self.counters.dropped_datagrams += 1;
                    return;
                }
            },
        };
        let audio_level = ext.audio_level.map(|(_, level)| level);
        let payload = &packet[h.payload_start..h.payload_end];
        let (ssrc, sequence, payload_type, payload) = match stream.repairs {
            // RTX (RFC 4588): the original sequence number, then the original payload.
            Some((media_ssrc, media_pt)) => {
                if payload.len() < 2 {
                    return;
                }
                let osn = u16::from_be_bytes([payload[0], payload[1]]);
                (media_ssrc, osn, media_pt, &payload[2..])
            }
            None => (h.ssrc, h.sequence, h.payload_type, payload),
        };
        let i = kind_index(stream.kind);
        self.counters.packets_in[i] += 1;
        self.counters.bytes_in[i] += packet.len() as u64;
        let payload = self.share(payload);
        let packet = RtpPacket {
            payload_type,
            sequence,
            timestamp: h.timestamp,
            ssrc,
            marker: h.marker,
            audio_level,
            payload,
        };
        self.router_input(
            room,
            Input::Rtp {
                now,
                publication: stream.publication,
                layer: stream.layer,
                packet,
            },
        );
    }

    /// The first packet of an SSRC: finds its section (by mid, else by signalled SSRC, else by
    /// payload type), its layer (by rid) and whether it is RTX; creates the publication on the
    /// first stream of a kind.
    fn open_stream(&mut self, now: Instant, key: Key, h: &Header, packet: &[u8]) -> Option<Stream> {
        let peer = self.peers.get_mut(key)?;
        let (id, room) = (peer.participant, peer.room);
        let Role::Publisher(pb) = &mut peer.role else {
            return None;
        };
        let ext = h.extensions(packet, &pb.extensions);
        let section = match ext.mid {
            Some(mid) => pb.sections.iter().find(|(s, _)| s.mid.as_bytes() == mid),
            None => pb
                .sections
                .iter()
                .find(|(s, _)| s.ssrc == Some(h.ssrc) || s.rtx_ssrc == Some(h.ssrc))
                .or_else(|| {
                    pb.sections
                        .iter()
                        .find(|(s, _)| s.pt == h.payload_type || s.rtx_pt == Some(h.payload_type))
                }),
        }?;
        let (incoming, kind) = (section.0.clone(), section.1);
        let is_rtx = incoming.rtx_pt == Some(h.payload_type);
        if !is_rtx && incoming.pt != h.payload_type {
            return None;
        }
        let rid = if is_rtx { ext.repaired_rid } else { ext.rid };
        let layer = match (rid, incoming.rids.is_empty()) {
            (Some(r), false) => Layer(layer_of_rid(r, &incoming.rids)),
            (None, false) => return None, // a simulcast layer we cannot place yet
            (_, true) => Layer(0),
        };
        let codec = incoming.codec;
        let layers = incoming.rids.len().max(1) as u8;
        let limits = self.participants.get(&id)?.limits;
        let existing = self.participants.get(&id)?.publications.get(&kind).copied();
        let repairs = if is_rtx {
            // RTX repairs the media stream of its layer (learned from that stream's packets),
            // or the one its FID group names; before either is known it is dropped.
            let (publication, _) = existing?;
            let Role::Publisher(pb) = &self.peers.get(key)?.role else {
                return None;
            };
            let media = pb
                .layers
                .iter()
                .find(|(p, l, _)| *p == publication && *l == layer)
                .map(|(_, _, ssrc)| *ssrc)
                .or(incoming.ssrc.filter(|_| incoming.rtx_ssrc == Some(h.ssrc)))?;
            Some((media, incoming.pt))
        } else {
            None
        };
        let (publication, is_new) = match existing {
            Some((p, _)) => (p, false),
            None => {
                let p = PublicationId(self.new_id());
                self.participants
                    .get_mut(&id)?
                    .publications
                    .insert(kind, (p, codec));
                (p, true)
            }
        };
        let stream = Stream {
            publication,
            kind,
            layer,
            repairs,
        };
        if let Some(Peer {
            role: Role::Publisher(pb),
            ..
        }) = self.peers.get_mut(key)
        {
            pb.streams.insert(h.ssrc, stream);
            if !is_rtx {
                pb.layers
                    .retain(|(p, l, _)| !(*p == publication && *l == layer));
                pb.layers.push((publication, layer, h.ssrc));
            }
        }
        tracing::info!(
            participant = id.0,
            ?kind,
            ssrc = h.ssrc,
            ?layer,
            ?codec,
            rtx = is_rtx,
            "publisher stream open"
        );
        if is_new {
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
            self.events.push_back(MediaEvent::Published {
                participant: id,
                kind,
            });
            let waiting: Vec<ParticipantId> = self
                .participants
                .iter()
                .filter(|(_, s)| {
                    s.room == room && s.wanted.iter().any(|w| w.publisher == id && w.kind == kind)
                })
                .map(|(sid, _)| *sid)
                .collect();
            for sid in waiting {
                self.sync_subscriptions(now, sid);
            }
        }
        Some(stream)
    }

    /// A decrypted RTCP compound from a publisher: its sender reports reach the router.
    pub(super) fn publisher_rtcp(&mut self, now: Instant, key: Key, packet: &[u8]) {
        let Some(peer) = self.peers.get(key) else {
            return;
        };
        let room = peer.room;
        let Role::Publisher(pb) = &peer.role else {
            return;
        };
        // At most a few reports per compound: collected on the stack.
        let mut reports: [Option<Feedback>; 4] = [None, None, None, None];
        let mut n = 0;
        for item in rtcp::items(packet) {
            let Ok(Item::SenderReport {
                ssrc,
                ntp_time,
                rtp_time,
                ..
            }) = item
            else {
                continue;
            };
            if let (Some(s), true) = (pb.streams.get(&ssrc), n < reports.len()) {
                if s.repairs.is_none() {
                    reports[n] = Some(Feedback::SenderReport {
                        publication: s.publication,
                        layer: s.layer,
                        ntp_time,
                        rtp_time,
                    });
                    n += 1;
                }
            }
        }
        for feedback in reports.into_iter().flatten() {
            self.router_input(room, Input::Feedback { now, feedback });
        }
    }

    /// The publishing connection and media SSRC of one layer of a publication.
    fn publisher_layer(
        &mut self,
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
    ) -> Option<(Key, u32)> {
        let key = self.participants.get(&publisher)?.publisher?;
        let Role::Publisher(pb) = &self.peers.get(key)?.role else {
            return None;
        };
        let ssrc = pb
            .layers
            .iter()
            .find(|(p, l, _)| *p == publication && *l == layer)?
            .2;
        Some((key, ssrc))
    }

    pub(super) fn send_pli(
        &mut self,
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
    ) {
        let Some((key, media_ssrc)) = self.publisher_layer(publisher, publication, layer) else {
            return;
        };
        let pli = rtcp_types::payload_feedbacks::picture_loss_indication::PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        self.send_rtcp(key, &[&pli]);
    }

    pub(super) fn send_nack(
        &mut self,
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
        sequences: &[u16],
    ) {
        let Some((key, media_ssrc)) = self.publisher_layer(publisher, publication, layer) else {
            return;
        };
        let nack = rtcp_types::transport_feedbacks::transport_layer_nack::TransportLayerNack {
            sender_ssrc: 0,
            media_ssrc,
            nacks: rtcp_types::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers(sequences),
        };
        self.send_rtcp(key, &[&nack]);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_receiver_report(
        &mut self,
        publisher: ParticipantId,
        publication: PublicationId,
        layer: Layer,
        fraction_lost: u8,
        total_lost: u32,
        highest_sequence: u32,
        jitter: u32,
    ) {
        let Some((key, ssrc)) = self.publisher_layer(publisher, publication, layer) else {
            return;
        };
        let rr = rtcp_types::receiver_report::ReceiverReport {
            ssrc: 0,
            reports: vec![rtcp_types::reception_report::ReceptionReport {
                ssrc,
                fraction_lost,
                total_lost,
                last_sequence_number: highest_sequence,
                jitter,
                last_sender_report: 0,
                delay: 0,
            }],
            profile_extensions: Bytes::new(),
        };
        self.send_rtcp(key, &[&rr]);
    }

    pub(super) fn send_remb(&mut self, publisher: ParticipantId, bitrate_bps: u64) {
        let Some(key) = self.participants.get(&publisher).and_then(|p| p.publisher) else {
            return;
        };
        let Some(Peer {
            role: Role::Publisher(pb),
            ..
        }) = self.peers.get(key)
        else {
            return;
        };
        let ssrcs: Vec<u32> = pb.layers.iter().map(|(_, _, s)| *s).collect();
        if ssrcs.is_empty() {
            return;
        }
        let remb = rtcp_types::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 0,
            bitrate: bitrate_bps as f32,
            ssrcs,
        };
        self.send_rtcp(key, &[&remb]);
    }

    /// Sends the transport-cc feedback of every publishing connection whose feedback is due, and
    /// notes when the next one is. Nothing is allocated: the feedback is written into the
    /// connection's slots and sealed there.
    pub(super) fn send_twcc_feedback(&mut self, now: Instant) {
        if self.twcc_due.is_none_or(|t| t > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        let Endpoint {
            peers,
            tx,
            counters,
            ..
        } = self;
        for (_, peer) in peers.iter_mut() {
            let Role::Publisher(pb) = &mut peer.role else {
                continue;
            };
            if pb.twcc.due().is_some_and(|t| t <= now) {
                let to = peer.conn.remote().filter(|_| peer.conn.is_connected());
                loop {
                    let slot = tx.next_slot();
                    let Some(n) = pb.twcc.build_feedback(
                        now,
                        0,
                        pb.twcc_ssrc,
                        &mut slot[..twcc::MAX_FEEDBACK_BYTES],
                    ) else {
                        break;
                    };
                    let Some(to) = to else {
                        continue;
                    };
                    if let Ok(len) = peer.conn.protect_rtcp(&mut slot[..], n) {
                        tx.commit(to, len);
                        counters.twcc_feedback_sent += 1;
                    }
                }
            }
            if let Some(t) = pb.twcc.due() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        self.twcc_due = next;
    }

    /// Marshals `packets` into a slot, seals it and queues it to the connection's peer.
    pub(super) fn send_rtcp(&mut self, key: Key, packets: &[&dyn rtcp_types::Packet]) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Some(to) = peer.conn.remote() else {
            return;
        };
        if !peer.conn.is_connected() {
            return;
        }
        let slot = self.tx.next_slot();
        let Some(n) = rtcp::write(packets, &mut slot[..1200]) else {
            return;
        };
        if let Ok(len) = peer.conn.protect_rtcp(&mut slot[..], n) {
            self.tx.commit(to, len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn needed_layers_are_told_as_the_rids_the_offer_named() {
        let three = names(&["q", "h", "f"]);
        assert_eq!(rids_of_layers(0b001, &three), names(&["q"]));
        assert_eq!(rids_of_layers(0b101, &three), names(&["q", "f"]));
        assert_eq!(rids_of_layers(0b111, &three), three);
        // Two layers: `f` is the second.
        let two = names(&["q", "f"]);
        assert_eq!(rids_of_layers(0b010, &two), names(&["f"]));
        assert_eq!(rids_of_layers(0b100, &two), Vec::<String>::new());
        // Names we do not know go by their position in the offer.
        let other = names(&["a", "b", "c"]);
        assert_eq!(rids_of_layers(0b011, &other), names(&["a", "b"]));
    }
}
