//! Shared test harness: a fake room around a [`Router`] with a virtual clock, packet sources for
//! each codec, and filters over the collected outputs.

#![allow(dead_code)]

use bytes::Bytes;
use fanout_forward::*;
use std::time::{Duration, Instant};

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;

/// The SSRC a down-track created by [`Room::subscribe`] gets.
pub fn dt_ssrc(dt: u64) -> u32 {
    0x5000_0000 + dt as u32
}

/// A room: the router, a virtual clock and every output collected so far.
pub struct Room {
    pub router: Router,
    pub start: Instant,
    pub now: Instant,
    pub outputs: Vec<Output>,
}

impl Default for Room {
    fn default() -> Self {
        Self::new()
    }
}

impl Room {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            router: Router::new(),
            start: now,
            now,
            outputs: Vec::new(),
        }
    }

    /// Feeds one input and collects what it produced.
    pub fn input(&mut self, input: Input) {
        self.router.handle_input(input);
        while let Some(o) = self.router.poll_output() {
            self.outputs.push(o);
        }
    }

    pub fn command(&mut self, command: Command) {
        let now = self.now;
        self.input(Input::Command { now, command });
    }

    pub fn feedback(&mut self, feedback: Feedback) {
        let now = self.now;
        self.input(Input::Feedback { now, feedback });
    }

    /// Moves the clock forward, delivering every timeout that falls due on the way.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.router.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            let now = self.now;
            self.input(Input::Timeout(now));
        }
        self.now = target;
    }

    /// Takes the outputs collected so far.
    pub fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn add_publication(
        &mut self,
        id: u64,
        publisher: u64,
        kind: MediaKind,
        codec: Codec,
        layers: u8,
        limits: StreamLimits,
    ) {
        self.command(Command::AddPublication {
            id: PublicationId(id),
            publisher: ParticipantId(publisher),
            kind,
            codec,
            layers,
            limits,
        });
    }

    /// A VP8 camera publication without simulcast or limits.
    pub fn add_video(&mut self, id: u64, publisher: u64) {
        self.add_publication(
            id,
            publisher,
            MediaKind::Video,
            Codec::Vp8,
            1,
            StreamLimits::default(),
        );
    }

    /// A VP8 camera publication with `layers` simulcast layers.
    pub fn add_simulcast(&mut self, id: u64, publisher: u64, layers: u8) {
        self.add_publication(
            id,
            publisher,
            MediaKind::Video,
            Codec::Vp8,
            layers,
            StreamLimits::default(),
        );
    }

    pub fn add_audio(&mut self, id: u64, publisher: u64) {
        self.add_publication(
            id,
            publisher,
            MediaKind::Audio,
            Codec::Opus,
            1,
            StreamLimits::default(),
        );
    }

    pub fn subscribe(&mut self, dt: u64, publication: u64, subscriber: u64) {
        self.subscribe_with(dt, publication, subscriber, LayerPreference::High);
    }

    pub fn subscribe_with(
        &mut self,
        dt: u64,
        publication: u64,
        subscriber: u64,
        layer: LayerPreference,
    ) {
        self.command(Command::AddDownTrack {
            id: DownTrackId(dt),
            publication: PublicationId(publication),
            subscriber: ParticipantId(subscriber),
            ssrc: dt_ssrc(dt),
            payload_type: VIDEO_PT + dt as u8,
            layer,
        });
    }

    pub fn set_layer(&mut self, dt: u64, layer: LayerPreference) {
        self.command(Command::SetLayer {
            down_track: DownTrackId(dt),
            layer,
        });
    }

    pub fn rtp(&mut self, publication: u64, layer: u8, packet: RtpPacket) {
        let now = self.now;
        self.input(Input::Rtp {
            now,
            publication: PublicationId(publication),
            layer: Layer(layer),
            packet,
        });
    }

    pub fn rtps(&mut self, publication: u64, layer: u8, packets: Vec<RtpPacket>) {
        for p in packets {
            self.rtp(publication, layer, p);
        }
    }

    pub fn pli(&mut self, dt: u64) {
        self.feedback(Feedback::KeyframeRequest {
            down_track: DownTrackId(dt),
        });
    }

    pub fn nack(&mut self, dt: u64, sequences: Vec<u16>) {
        self.feedback(Feedback::Nack {
            down_track: DownTrackId(dt),
            sequences,
        });
    }

    pub fn info(&self, dt: u64) -> Option<DownTrackInfo> {
        self.router.down_track(DownTrackId(dt))
    }
}

// ------------------------------------------------------------------------------------------------
// Output filters

/// The RTP packets sent on down-track `dt`, in order.
pub fn rtp_of(outputs: &[Output], dt: u64) -> Vec<RtpPacket> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Rtp {
                down_track, packet, ..
            } if down_track.0 == dt => Some(packet.clone()),
            _ => None,
        })
        .collect()
}

/// All RTP outputs as (down-track, packet).
pub fn all_rtp(outputs: &[Output]) -> Vec<(u64, RtpPacket)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Rtp {
                down_track, packet, ..
            } => Some((down_track.0, packet.clone())),
            _ => None,
        })
        .collect()
}

/// Keyframe requests as (publication, layer).
pub fn keyframe_requests(outputs: &[Output]) -> Vec<(u64, u8)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::KeyframeRequest {
                publication, layer, ..
            } => Some((publication.0, layer.0)),
            _ => None,
        })
        .collect()
}

/// Upstream NACKs as (publication, layer, sequences).
pub fn nacks(outputs: &[Output]) -> Vec<(u64, u8, Vec<u16>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Nack {
                publication,
                layer,
                sequences,
                ..
            } => Some((publication.0, layer.0, sequences.clone())),
            _ => None,
        })
        .collect()
}

pub fn events(outputs: &[Output]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Receiver reports as (publication, layer, fraction_lost, total_lost, highest_sequence, jitter).
pub fn receiver_reports(outputs: &[Output]) -> Vec<(u64, u8, u8, u32, u32, u32)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ReceiverReport {
                publication,
                layer,
                fraction_lost,
                total_lost,
                highest_sequence,
                jitter,
                ..
            } => Some((
                publication.0,
                layer.0,
                *fraction_lost,
                *total_lost,
                *highest_sequence,
                *jitter,
            )),
            _ => None,
        })
        .collect()
}

/// REMBs as (publisher, bitrate_bps).
pub fn rembs(outputs: &[Output]) -> Vec<(u64, u64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Remb {
                publisher,
                bitrate_bps,
            } => Some((publisher.0, *bitrate_bps)),
            _ => None,
        })
        .collect()
}

/// Asserts that sequence numbers increase by exactly one each.
pub fn assert_contiguous(packets: &[RtpPacket]) {
    for w in packets.windows(2) {
        assert_eq!(
            w[1].sequence,
            w[0].sequence.wrapping_add(1),
            "sequence jumps from {} to {}",
            w[0].sequence,
            w[1].sequence
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Payloads

/// VP8 payload descriptor (S=1, PID=0, with a 15-bit PictureID) + a keyframe header of `w`x`h`.
pub fn vp8_keyframe(w: u16, h: u16) -> Vec<u8> {
    let mut p = vec![0x90, 0x80, 0x81, 0x23]; // X=1 S=1; I=1; M=1 PictureID 0x0123
                                              // Frame tag: keyframe (bit 0 = 0), version 0, show_frame, first partition size 100.
    let tag: u32 = (1 << 4) | (100 << 5);
    p.extend_from_slice(&tag.to_le_bytes()[..3]);
    p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
    p.extend_from_slice(&(w & 0x3fff).to_le_bytes());
    p.extend_from_slice(&(h & 0x3fff).to_le_bytes());
    p.extend_from_slice(&[0xab; 40]);
    p
}

/// VP8 first packet of an interframe.
pub fn vp8_delta() -> Vec<u8> {
    let mut p = vec![0x10]; // S=1, PID=0
    let tag: u32 = 1 | (1 << 4) | (50 << 5);
    p.extend_from_slice(&tag.to_le_bytes()[..3]);
    p.extend_from_slice(&[0xcd; 40]);
    p
}

/// VP8 continuation packet (S=0).
pub fn vp8_continuation() -> Vec<u8> {
    let mut p = vec![0x00];
    p.extend_from_slice(&[0xef; 40]);
    p
}

pub const SPS_1280X720: [u8; 10] = [0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x68, 0x05, 0x00, 0x5b, 0x90];
pub const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

/// H.264 STAP-A with SPS and PPS (how libwebrtc starts a keyframe).
pub fn h264_stap_a(sps: &[u8]) -> Vec<u8> {
    let mut p = vec![0x78]; // F=0 NRI=3 type 24
    for nal in [sps, &PPS[..]] {
        p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        p.extend_from_slice(nal);
    }
    p
}

/// H.264 FU-A first fragment of an IDR slice (first_mb_in_slice = 0).
pub fn h264_idr_fu_a_start() -> Vec<u8> {
    let mut p = vec![0x7c, 0x85, 0x88]; // FU indicator type 28, FU header S=1 type 5, ue(0)...
    p.extend_from_slice(&[0x11; 40]);
    p
}

/// H.264 single NAL non-IDR slice.
pub fn h264_delta() -> Vec<u8> {
    let mut p = vec![0x41, 0x9a];
    p.extend_from_slice(&[0x22; 40]);
    p
}

/// VP9 descriptor of a keyframe's first packet (I=1, B=1, V=1) with a scalability structure of one
/// spatial layer of `w`x`h`.
pub fn vp9_keyframe(w: u16, h: u16) -> Vec<u8> {
    let mut p = vec![0x8a, 0x80, 0x42]; // I B V; M=1 PictureID 0x0042
    p.push(0x18); // N_S=0 (one layer), Y=1, G=1
    p.extend_from_slice(&w.to_be_bytes());
    p.extend_from_slice(&h.to_be_bytes());
    p.push(0x01); // N_G = 1
    p.push(0x04); // TID=0 U=0 R=1
    p.push(0x01); // P_DIFF 1
    p.extend_from_slice(&[0x82, 0x49, 0x83, 0x42, 0x00]);
    p.extend_from_slice(&[0x33; 40]);
    p
}

/// VP9 first packet of an inter frame (P=1, B=1).
pub fn vp9_delta() -> Vec<u8> {
    let mut p = vec![0xc8, 0x80, 0x43];
    p.extend_from_slice(&[0x44; 40]);
    p
}

// ------------------------------------------------------------------------------------------------
// Sources

/// A publisher's RTP stream for one layer: SSRC, sequence number, timestamp.
#[derive(Debug, Clone)]
pub struct Source {
    pub codec: Codec,
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    /// Timestamp increment per frame (3000 = 30 fps video, 960 = 20 ms Opus).
    pub ts_step: u32,
    pub width: u16,
    pub height: u16,
}

impl Source {
    pub fn video(ssrc: u32) -> Self {
        Self {
            codec: Codec::Vp8,
            ssrc,
            seq: (ssrc as u16).wrapping_mul(7),
            ts: ssrc.wrapping_mul(13),
            ts_step: 3000,
            width: 1280,
            height: 720,
        }
    }

    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub fn with_size(mut self, width: u16, height: u16) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    pub fn audio(ssrc: u32) -> Self {
        Self {
            codec: Codec::Opus,
            ssrc,
            seq: (ssrc as u16).wrapping_mul(3),
            ts: ssrc.wrapping_mul(11),
            ts_step: 960,
            width: 0,
            height: 0,
        }
    }

    /// One packet with the current timestamp; the sequence number advances.
    pub fn packet(&mut self, payload: impl Into<Bytes>, marker: bool) -> RtpPacket {
        let p = RtpPacket {
            payload_type: if self.codec == Codec::Opus { 111 } else { 96 },
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
            marker,
            audio_level: None,
            payload: payload.into(),
        };
        self.seq = self.seq.wrapping_add(1);
        p
    }

    fn frame(&mut self, first: Vec<u8>, packets: usize) -> Vec<RtpPacket> {
        let n = packets.max(1);
        let mut out = Vec::with_capacity(n);
        out.push(self.packet(first, n == 1));
        for i in 1..n {
            let cont = match self.codec {
                Codec::H264 => vec![0x7c, 0x05, 0x00, 0x00],
                Codec::Vp9 => vec![0x80, 0x80, 0x42, 0x00],
                _ => vp8_continuation(),
            };
            out.push(self.packet(cont, i == n - 1));
        }
        self.ts = self.ts.wrapping_add(self.ts_step);
        out
    }

    /// A keyframe of `packets` packets (the timestamp advances afterwards).
    pub fn keyframe(&mut self, packets: usize) -> Vec<RtpPacket> {
        let first = match self.codec {
            Codec::H264 => h264_stap_a(&SPS_1280X720),
            Codec::Vp9 => vp9_keyframe(self.width, self.height),
            _ => vp8_keyframe(self.width, self.height),
        };
        self.frame(first, packets)
    }

    /// An interframe of `packets` packets.
    pub fn delta(&mut self, packets: usize) -> Vec<RtpPacket> {
        let first = match self.codec {
            Codec::H264 => h264_delta(),
            Codec::Vp9 => vp9_delta(),
            _ => vp8_delta(),
        };
        self.frame(first, packets)
    }

    /// One 20 ms Opus packet with an audio level.
    pub fn audio_packet(&mut self, level: Option<u8>) -> RtpPacket {
        let mut p = self.packet(vec![0xfc; 60], false);
        p.audio_level = level;
        self.ts = self.ts.wrapping_add(self.ts_step);
        p
    }
}
