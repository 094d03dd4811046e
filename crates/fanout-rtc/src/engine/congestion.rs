//! Congestion control on subscribing connections: every packet sent on a connection that
//! negotiated transport-wide-cc is stamped with a transport sequence number and recorded by the
//! connection's [`SendSideBwe`]; the browser's transport-cc feedback is read in place
//! ([`twcc::parse_body`]) into the estimator; each new estimate goes to the room's router
//! (`Feedback::Bandwidth`), whose allocator shares it across the subscriber's streams, and what the
//! allocator would want (`Output::BandwidthWanted`) decides the estimator's probing. A probe
//! cluster tags every packet sent while it runs and tops it up with padding-only packets on a
//! down-track's RTX stream, at the cluster's rate.

use super::endpoint::{Endpoint, Peer, Role};
use super::rtp::OutHeader;
use super::slab::Key;
use super::subscriber::SendAs;
use super::twcc;
use fanout_forward::bwe::{
    BweConfig, BweStats, Pacer, PacerStats, PacketReport, ProbeCluster, ProbeId, SendSideBwe,
};
use fanout_forward::PayloadPatch;
use fanout_forward::{DownTrackId, Feedback, Input, ParticipantId, RtpPacket};
use std::time::Instant;

/// Padding carried by one probe packet (RFC 3550 padding: at most 255 bytes, the last byte
/// counting them).
pub const PADDING_BYTES: usize = 240;
/// SRTP's authentication tag, counted in the size the estimator records (GCM's; AES-CM's is 10).
const TAG_BYTES: usize = 16;

/// A probe cluster being sent.
#[derive(Debug, Clone, Copy)]
struct Probe {
    cluster: ProbeCluster,
    start: Instant,
    bytes: u64,
    packets: u32,
}

/// A video packet waiting in the pacer (its payload is the publisher's shared buffer).
#[derive(Debug)]
struct Held {
    down_track: DownTrackId,
    packet: RtpPacket,
    retransmission: bool,
    patch: Option<PayloadPatch>,
}

/// One subscribing connection's congestion control.
#[derive(Debug)]
pub(super) struct Congestion {
    /// The transport-wide-cc extension id the subscriber accepted.
    ext_id: u8,
    bwe: SendSideBwe,
    pacer: Pacer<Held>,
    probe: Option<Probe>,
    /// The estimate last given to the router, and when the first feedback arrived. Until the
    /// start probes are over (or [`SETTLE`] has passed since), the router is told
    /// nothing and forwards without limit: the start estimate is a guess, and acting on it
    /// would pause a video at every join.
    reported_bps: u64,
    first_feedback: Option<Instant>,
}

/// How long after the first feedback the estimate is used even if no probe measured the path.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

impl Congestion {
    pub(super) fn new(now: Instant, ext_id: u8) -> Congestion {
        let config = BweConfig::default();
        Congestion {
            ext_id,
            bwe: SendSideBwe::new(now, config),
            pacer: Pacer::new(config.start_bps),
            probe: None,
            reported_bps: 0,
            first_feedback: None,
        }
    }

    /// The transport-wide extension for a packet of `len` bytes (before SRTP) sent now: records
    /// it (with the running probe cluster, if any).
    pub(super) fn stamp(&mut self, now: Instant, len: usize) -> (u8, u16) {
        let size = len + TAG_BYTES;
        let probe = self.probe.as_mut().map(|p| {
            p.bytes += size as u64;
            p.packets += 1;
            p.cluster.id
        });
        (self.ext_id, self.bwe.on_sent(now, size, probe))
    }

    /// A video packet of `len` bytes may go now (else it must be held).
    pub(super) fn may_send(&mut self, now: Instant, len: usize) -> bool {
        self.pacer.try_send(now, len + TAG_BYTES)
    }

    pub(super) fn hold(
        &mut self,
        now: Instant,
        len: usize,
        down_track: DownTrackId,
        packet: &RtpPacket,
        retransmission: bool,
        patch: Option<PayloadPatch>,
    ) {
        let held = Held {
            down_track,
            packet: packet.clone(),
            retransmission,
            patch,
        };
        // An overflow is dropped: the subscriber's NACK asks for it again if it still matters.
        drop(self.pacer.push(now, len + TAG_BYTES, held));
    }

    /// The estimate, once it may be acted on (see `reported_bps`) and if it changed since last
    /// reported.
    fn report(&mut self, now: Instant) -> Option<u64> {
        let first = self.first_feedback?;
        let settled = !self.bwe.is_probing() || now.saturating_duration_since(first) >= SETTLE;
        let estimate = self.bwe.estimate_bps();
        if !settled || estimate == self.reported_bps {
            return None;
        }
        self.reported_bps = estimate;
        Some(estimate)
    }

    /// Padding bytes the running probe still owes at `now`, ending it once it has sent enough.
    fn padding_due(&mut self, now: Instant) -> usize {
        let Some(p) = self.probe.as_mut() else {
            return 0;
        };
        let c = p.cluster;
        let elapsed = now.saturating_duration_since(p.start).as_secs_f64();
        let planned = f64::from(c.min_bytes) * 8.0 / c.bitrate_bps.max(1) as f64;
        let done = p.bytes >= u64::from(c.min_bytes) && p.packets >= c.min_packets;
        // A cluster that could not be sent in time (nowhere to put padding) ends anyway: the
        // estimator's probe controller times it out and probes again later.
        if done || elapsed > (3.0 * planned).max(0.2) {
            self.probe = None;
            return 0;
        }
        // A tick's worth ahead, so that the cluster keeps its rate between ticks.
        let due = (elapsed + super::endpoint::TICK.as_secs_f64()) * c.bitrate_bps as f64 / 8.0;
        let owed = (due - p.bytes as f64).max(0.0) as usize;
        owed.min(u64::from(c.min_bytes).saturating_sub(p.bytes) as usize + PADDING_BYTES)
    }
}

impl Endpoint {
    /// A transport-cc feedback from subscriber connection `key`.
    pub(super) fn subscriber_twcc(&mut self, now: Instant, key: Key, body: &[u8]) {
        let Ok(feedback) = twcc::parse_body(body) else {
            self.counters.twcc_feedback_refused += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let (participant, room) = (peer.participant, peer.room);
        let Role::Subscriber(sb) = &mut peer.role else {
            return;
        };
        let Some(cc) = sb.congestion.as_mut() else {
            return;
        };
        self.counters.twcc_feedback_received += 1;
        cc.bwe.on_feedback(
            now,
            feedback.packets().map(|p| PacketReport {
                sequence: p.sequence,
                arrival_us: p.arrival_us,
            }),
        );
        cc.pacer.set_estimate(cc.bwe.estimate_bps());
        cc.first_feedback.get_or_insert(now);
        if let Some(estimate) = cc.report(now) {
            let st = cc.bwe.stats();
            tracing::debug!(
                participant = participant.0,
                estimate,
                delay_based = st.delay_based_bps,
                loss_limit = ?st.loss_limit_bps,
                acked = ?st.acked_bps,
                usage = ?st.usage,
                loss = st.loss_fraction,
                inherent = st.inherent_loss,
                queue_ms = st.queue_delay_ms,
                probes = st.probe_results,
                "subscriber bandwidth estimate"
            );
            self.counters.observe_estimate(estimate);
            let feedback = Feedback::Bandwidth {
                subscriber: participant,
                bitrate_bps: estimate,
            };
            self.router_input(room, Input::Feedback { now, feedback });
        }
    }

    /// The allocator would send `bps` to `subscriber` with no limit.
    pub(super) fn bandwidth_wanted(&mut self, subscriber: ParticipantId, bps: u64) {
        if let Some(cc) = self
            .sub_state(subscriber)
            .and_then(|(_, sb)| sb.congestion.as_mut())
        {
            tracing::debug!(participant = subscriber.0, bps, "bandwidth wanted");
            cc.bwe.set_desired(bps);
        }
    }

    /// Every congestion-controlled subscriber's timers: the estimator's (feedback timeout,
    /// probes due) and the running probe's padding.
    pub(super) fn drive_congestion(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.congested.len() {
            let key = self.congested[i];
            let Some(Peer {
                role: Role::Subscriber(sb),
                conn,
                participant,
                room,
                ..
            }) = self.peers.get_mut(key)
            else {
                self.congested.swap_remove(i);
                continue;
            };
            i += 1;
            let (participant, room) = (*participant, *room);
            let connected = conn.is_connected();
            let can_pad = sb.can_pad();
            let Some(cc) = sb.congestion.as_mut() else {
                continue;
            };
            if cc.bwe.poll_timeout().is_some_and(|t| t <= now) {
                cc.bwe.handle_timeout(now);
                cc.pacer.set_estimate(cc.bwe.estimate_bps());
            }
            // A probe goes only where padding can fill it: a cluster of the few packets of an
            // audio-only connection measures nothing, and the start probes would be spent on it.
            if connected && cc.first_feedback.is_some() && cc.probe.is_none() && can_pad {
                if let Some(cluster) = cc.bwe.poll_probe(now) {
                    cc.probe = Some(Probe {
                        cluster,
                        start: now,
                        bytes: 0,
                        packets: 0,
                    });
                    self.counters.probe_clusters += 1;
                    tracing::debug!(
                        participant = participant.0,
                        bps = cluster.bitrate_bps,
                        bytes = cluster.min_bytes,
                        "probe cluster"
                    );
                }
            }
            let mut owed = if connected { cc.padding_due(now) } else { 0 };
            let report = cc.report(now);
            while owed > 0 {
                if !self.send_padding(now, key) {
                    break;
                }
                owed = owed.saturating_sub(PADDING_BYTES);
            }
            self.release_paced(now, key, participant);
            if let Some(estimate) = report {
                tracing::debug!(
                    participant = participant.0,
                    estimate,
                    "subscriber bandwidth estimate (timer)"
                );
                self.counters.observe_estimate(estimate);
                let feedback = Feedback::Bandwidth {
                    subscriber: participant,
                    bitrate_bps: estimate,
                };
                self.router_input(room, Input::Feedback { now, feedback });
            }
        }
    }

    /// Sends what connection `key`'s pacer lets go now.
    fn release_paced(&mut self, now: Instant, key: Key, participant: ParticipantId) {
        loop {
            let Some(Peer {
                role: Role::Subscriber(sb),
                ..
            }) = self.peers.get_mut(key)
            else {
                return;
            };
            let Some(cc) = sb.congestion.as_mut() else {
                return;
            };
            let mut dropped = 0u64;
            let next = cc.pacer.poll(now, |_| dropped += 1);
            self.counters.pacer_dropped += dropped;
            let Some((held, waited)) = next else {
                return;
            };
            self.counters.pacer_released += 1;
            self.counters.pacer_delay_us += waited.as_micros() as u64;
            self.seal_rtp(
                now,
                participant,
                held.down_track,
                &held.packet,
                SendAs {
                    retransmission: held.retransmission,
                    patch: held.patch,
                },
                true,
            );
        }
    }

    /// One padding-only packet on the first video down-track's RTX stream of connection `key`.
    /// False when there is none to send it on.
    fn send_padding(&mut self, now: Instant, key: Key) -> bool {
        let Some(peer) = self.peers.get_mut(key) else {
            return false;
        };
        let Some(to) = peer.conn.remote() else {
            return false;
        };
        let Role::Subscriber(sb) = &mut peer.role else {
            return false;
        };
        let Some((ssrc, payload_type, sequence)) = sb.padding_stream() else {
            return false;
        };
        let Some(cc) = sb.congestion.as_mut() else {
            return false;
        };
        let mut header = OutHeader {
            marker: false,
            payload_type,
            sequence,
            timestamp: 0,
            ssrc,
            // Sized with the extension; numbered below, once the size is known.
            transport_seq: Some((0, 0)),
        };
        let len = header.size() + PADDING_BYTES;
        header.transport_seq = Some(cc.stamp(now, len));
        let slot = self.tx.next_slot();
        let at = header.write(&mut slot[..]);
        slot[0] |= 0x20;
        slot[at..len].fill(0);
        slot[len - 1] = PADDING_BYTES as u8;
        match peer.conn.protect_rtp(&mut slot[..], len) {
            Ok(n) => {
                self.tx.commit(to, n);
                self.counters.padding_bytes += n as u64;
                true
            }
            Err(_) => {
                self.counters.dropped_datagrams += 1;
                false
            }
        }
    }

    /// What the estimator and the pacer of `participant`'s subscribing connection know, if it
    /// has them, and the probe cluster running on it.
    pub fn bandwidth(
        &self,
        participant: ParticipantId,
    ) -> Option<(BweStats, PacerStats, Option<ProbeId>)> {
        let key = self.participants.get(&participant)?.subscriber?;
        match &self.peers.get(key)?.role {
            Role::Subscriber(sb) => {
                let cc = sb.congestion.as_ref()?;
                Some((
                    cc.bwe.stats(),
                    cc.pacer.stats(),
                    cc.probe.map(|p| p.cluster.id),
                ))
            }
            Role::Publisher(_) => None,
        }
    }
}
