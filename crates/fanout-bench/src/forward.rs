//! The forwarding rig: one room's [`Router`] with one publication and N subscribers, each with one
//! down-track of it, fed one publisher's stream packet by packet on a virtual clock (timeouts are
//! delivered when due, as the media worker does).

use bytes::Bytes;
use fanout_forward::{
    Codec, Command, DownTrackId, Input, Layer, LayerPreference, MediaKind, Output, ParticipantId,
    PublicationId, Router, RtpPacket, StreamLimits,
};
use std::time::{Duration, Instant};

/// The publication every rig publishes.
pub const PUBLICATION: PublicationId = PublicationId(1);
/// Its publisher.
pub const PUBLISHER: ParticipantId = ParticipantId(1);
/// The publisher's SSRC.
pub const SOURCE_SSRC: u32 = 0x1234_5678;
/// VP8 packets per video frame (5 x 1,100 bytes at 30 fps is about 1.3 Mbit/s).
pub const PACKETS_PER_FRAME: u32 = 5;

/// The payload type a subscriber negotiated for the stream.
pub fn down_track_pt(media: Media) -> u8 {
    match media {
        Media::Vp8 => 96,
        Media::Opus => 111,
    }
}

/// The SSRC of down-track `i` (0-based), also its index into per-subscriber state.
pub fn down_track_ssrc(i: usize) -> u32 {
    0x5000_0000 + i as u32
}

/// The down-track id of subscriber `i` (0-based); [`down_track_index`] is its inverse.
pub fn down_track_id(i: usize) -> DownTrackId {
    DownTrackId(i as u64 + 1)
}

/// The 0-based index of a down-track made by [`Fanout::new`].
pub fn down_track_index(id: DownTrackId) -> usize {
    (id.0 - 1) as usize
}

/// What the publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// VP8 camera video: 1,100-byte packets, 5 per frame, 30 frames per second.
    Vp8,
    /// Opus audio: one 160-byte packet every 20 ms with an RFC 6464 audio level.
    Opus,
}

impl Media {
    pub const ALL: [Media; 2] = [Media::Vp8, Media::Opus];

    /// Payload bytes per packet (after the RTP header).
    pub fn payload_len(self) -> usize {
        match self {
            Media::Vp8 => 1100,
            Media::Opus => 160,
        }
    }

    /// A short name for bench ids: `vp8_1100B`, `opus_160B`.
    pub fn name(self) -> &'static str {
        match self {
            Media::Vp8 => "vp8_1100B",
            Media::Opus => "opus_160B",
        }
    }

    pub fn codec(self) -> Codec {
        match self {
            Media::Vp8 => Codec::Vp8,
            Media::Opus => Codec::Opus,
        }
    }

    fn kind(self) -> MediaKind {
        match self {
            Media::Vp8 => MediaKind::Video,
            Media::Opus => MediaKind::Audio,
        }
    }

    /// Virtual time between two packets.
    pub fn interval(self) -> Duration {
        match self {
            Media::Vp8 => Duration::from_micros(33_333 / u64::from(PACKETS_PER_FRAME)),
            Media::Opus => Duration::from_millis(20),
        }
    }
}

/// A VP8 payload of `len` bytes: payload descriptor (with a 15-bit PictureID), then for the first
/// packet of a frame the frame tag (and for a keyframe the start code and 1280x720), then filler.
pub fn vp8_payload(len: usize, first: bool, keyframe: bool) -> Bytes {
    let mut p = Vec::with_capacity(len);
    // X=1, S=first, PID=0; I=1; M=1 + PictureID.
    p.extend_from_slice(&[if first { 0x90 } else { 0x80 }, 0x80, 0x80, 0x01]);
    if first {
        let inter = u32::from(!keyframe);
        // Frame tag: P (bit 0), version 0, show_frame, first partition size 600.
        let tag: u32 = inter | (1 << 4) | (600 << 5);
        p.extend_from_slice(&tag.to_le_bytes()[..3]);
        if keyframe {
            p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            p.extend_from_slice(&1280u16.to_le_bytes());
            p.extend_from_slice(&720u16.to_le_bytes());
        }
    }
    let mut x = 0x5au8;
    while p.len() < len {
        x = x.wrapping_mul(31).wrapping_add(7);
        p.push(x);
    }
    p.truncate(len);
    Bytes::from(p)
}

/// An Opus payload of `len` bytes (a CELT fullband 20 ms TOC byte, then filler).
pub fn opus_payload(len: usize) -> Bytes {
    let mut p = vec![0xfc];
    let mut x = 0x33u8;
    while p.len() < len {
        x = x.wrapping_mul(17).wrapping_add(3);
        p.push(x);
    }
    Bytes::from(p)
}

/// The publisher's stream: sequence numbers, timestamps and the (shared, never copied) payloads.
#[derive(Debug, Clone)]
pub struct Source {
    media: Media,
    seq: u16,
    ts: u32,
    /// Position in the current frame (video).
    slot: u32,
    /// Whether the first frame (the keyframe) has been sent.
    started: bool,
    keyframe: Bytes,
    first: Bytes,
    continuation: Bytes,
    audio: Bytes,
}

impl Source {
    pub fn new(media: Media) -> Self {
        let len = media.payload_len();
        Self {
            media,
            seq: 40_000,
            ts: 1_000_000,
            slot: 0,
            started: false,
            keyframe: vp8_payload(len, true, true),
            first: vp8_payload(len, true, false),
            continuation: vp8_payload(len, false, false),
            audio: opus_payload(len),
        }
    }

    /// The next packet; the first video frame is a keyframe, every later one an interframe.
    pub fn next_packet(&mut self) -> RtpPacket {
        let (payload, marker, audio_level, pt) = match self.media {
            Media::Vp8 => {
                let payload = match self.slot {
                    0 if !self.started => self.keyframe.clone(),
                    0 => self.first.clone(),
                    _ => self.continuation.clone(),
                };
                (payload, self.slot + 1 == PACKETS_PER_FRAME, None, 96)
            }
            Media::Opus => (self.audio.clone(), false, Some(40), 111),
        };
        let packet = RtpPacket {
            payload_type: pt,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: SOURCE_SSRC,
            marker,
            audio_level,
            payload,
        };
        self.seq = self.seq.wrapping_add(1);
        match self.media {
            Media::Vp8 => {
                self.slot += 1;
                if self.slot == PACKETS_PER_FRAME {
                    self.slot = 0;
                    self.started = true;
                    self.ts = self.ts.wrapping_add(3000);
                }
            }
            Media::Opus => self.ts = self.ts.wrapping_add(960),
        }
        packet
    }
}

/// A router with one publication fanned out to `n` down-tracks, already forwarding to all of them.
pub struct Fanout {
    pub router: Router,
    pub source: Source,
    pub media: Media,
    pub now: Instant,
    n: usize,
    /// RTP packets forwarded so far.
    pub forwarded: u64,
}

impl Fanout {
    /// Builds the room and sends the first packet (a keyframe for video), so every down-track
    /// has started and each later packet is forwarded to all `n`.
    pub fn new(media: Media, n: usize) -> Self {
        let now = Instant::now();
        let mut router = Router::new();
        router.handle_input(Input::Command {
            now,
            command: Command::AddPublication {
                id: PUBLICATION,
                publisher: PUBLISHER,
                kind: media.kind(),
                codec: media.codec(),
                layers: 1,
                limits: StreamLimits::default(),
            },
        });
        for i in 0..n {
            router.handle_input(Input::Command {
                now,
                command: Command::AddDownTrack {
                    id: down_track_id(i),
                    publication: PUBLICATION,
                    subscriber: ParticipantId(100 + i as u64),
                    ssrc: down_track_ssrc(i),
                    payload_type: down_track_pt(media),
                    layer: LayerPreference::High,
                },
            });
        }
        while router.poll_output().is_some() {}
        let mut rig = Self {
            router,
            source: Source::new(media),
            media,
            now,
            n,
            forwarded: 0,
        };
        let started = rig.forward(|_, _| {});
        assert_eq!(started, n, "every down-track starts at the first packet");
        rig
    }

    /// How many down-tracks the publication has.
    pub fn fanout(&self) -> usize {
        self.n
    }

    /// Feeds the publisher's next packet (after any timeout now due) and hands every RTP output to
    /// `sink` with its down-track; other outputs (reports, REMB) are dropped. Returns how many RTP
    /// packets were forwarded. The virtual clock then advances by one packet interval.
    pub fn forward(&mut self, sink: impl FnMut(DownTrackId, &RtpPacket)) -> usize {
        self.deliver_due_timeouts();
        self.forward_packet(sink)
    }

    /// Gives the router its timeout if one is due (as the media worker does before reading the
    /// socket); its outputs stay queued for the next [`Fanout::forward_packet`].
    pub fn deliver_due_timeouts(&mut self) -> bool {
        let due = self.router.poll_timeout().is_some_and(|t| t <= self.now);
        if due {
            self.router.handle_input(Input::Timeout(self.now));
        }
        due
    }

    /// [`Fanout::forward`] without the timeouts: only the packet path.
    pub fn forward_packet(&mut self, mut sink: impl FnMut(DownTrackId, &RtpPacket)) -> usize {
        let packet = self.source.next_packet();
        self.router.handle_input(Input::Rtp {
            now: self.now,
            publication: PUBLICATION,
            layer: Layer(0),
            packet,
        });
        let mut count = 0;
        while let Some(out) = self.router.poll_output() {
            if let Output::Rtp {
                down_track, packet, ..
            } = &out
            {
                sink(*down_track, packet);
                count += 1;
            }
        }
        self.now += self.media.interval();
        self.forwarded += count as u64;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_packet_reaches_every_down_track_with_rewritten_headers() {
        for media in Media::ALL {
            for n in [1, 10, 100] {
                let mut rig = Fanout::new(media, n);
                // Two seconds of media: timeouts (ticks, reports) fire on the way.
                let packets = (2_000 / rig.media.interval().as_millis().max(1)) as usize;
                let mut last_seq = vec![None::<u16>; n];
                for _ in 0..packets {
                    let got = rig.forward(|dt, p| {
                        let i = down_track_index(dt);
                        assert_eq!(p.ssrc, down_track_ssrc(i));
                        assert_eq!(p.payload_type, down_track_pt(media));
                        assert_eq!(p.payload.len(), media.payload_len());
                        if let Some(prev) = last_seq[i] {
                            assert_eq!(p.sequence, prev.wrapping_add(1));
                        }
                        last_seq[i] = Some(p.sequence);
                    });
                    assert_eq!(got, n, "{media:?} to {n}");
                }
                assert!(rig.router.stats().rtp_forwarded >= (packets * n) as u64);
            }
        }
    }

    #[test]
    fn payloads_are_shared_not_copied() {
        let mut rig = Fanout::new(Media::Vp8, 3);
        let mut ptrs = Vec::new();
        rig.forward(|_, p| ptrs.push(p.payload.as_ptr()));
        assert_eq!(ptrs.len(), 3);
        assert!(ptrs.iter().all(|p| *p == ptrs[0]));
    }

    #[test]
    fn the_first_video_packet_is_a_keyframe_and_later_ones_are_not() {
        let mut s = Source::new(Media::Vp8);
        let first = s.next_packet();
        let info = fanout_forward::codec::inspect(Codec::Vp8, &first.payload);
        assert!(info.keyframe);
        assert_eq!(info.resolution, Some((1280, 720)));
        for _ in 0..PACKETS_PER_FRAME * 3 {
            let p = s.next_packet();
            assert!(!fanout_forward::codec::inspect(Codec::Vp8, &p.payload).keyframe);
        }
    }
}
