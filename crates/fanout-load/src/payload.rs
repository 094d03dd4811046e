//! The payloads simulated publishers send and subscribers check.
//!
//! Every RTP payload carries a 20-byte *stamp*: a magic byte (audio or video), the simulcast layer,
//! the publisher's index, a per-stream sequence number (0, 1, 2, ... for each publisher, kind and
//! layer), the send time (CLOCK_MONOTONIC nanoseconds) and the payload's own length. The rest of
//! the payload is a filler whose every byte is a function of its position and the sequence number,
//! so a subscriber detects truncation and corruption of any byte.
//!
//! - Audio (Opus-sized): `stamp | filler`, 100..=160 bytes.
//! - Video (VP8, RFC 7741): `descriptor | [frame header] | stamp | filler`, at most
//!   [`MAX_PAYLOAD`] bytes. The descriptor is 4 bytes (X=1, S on the frame's first packet,
//!   partition 0, I=1 with a 15-bit PictureID). The frame's first packet carries the VP8 frame
//!   header: a keyframe's 3-byte frame tag (P=0, version 0, show_frame) with the start code
//!   `9d 01 2a` and 14-bit width and height, or an interframe's 3-byte tag (P=1).

/// First stamp byte of an audio payload.
pub const AUDIO_MAGIC: u8 = 0xAA;
/// First stamp byte of a video payload.
pub const VIDEO_MAGIC: u8 = 0xBB;
/// Bytes of the stamp.
pub const STAMP_LEN: usize = 20;
/// Largest RTP payload a video packet gets.
pub const MAX_PAYLOAD: usize = 1200;
/// VP8 payload descriptor length used here.
pub const VP8_DESC_LEN: usize = 4;
/// VP8 keyframe header: frame tag (3) + start code (3) + width and height (4).
pub const VP8_KEY_HEADER_LEN: usize = 10;
/// VP8 interframe header: the frame tag.
pub const VP8_INTER_HEADER_LEN: usize = 3;

/// Media kind of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// What a payload's stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub kind: Kind,
    pub layer: u8,
    pub publisher: u32,
    pub seq: u32,
    pub send_ns: u64,
}

/// A checked payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub stamp: Stamp,
    /// Video: the packet starts a frame (S=1, partition 0).
    pub frame_start: bool,
    /// Video: the packet starts a keyframe (frame start with P=0 and the start code).
    pub keyframe: bool,
}

/// Why a payload failed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    TooShort,
    Magic,
    Length,
    Filler,
    Vp8Header,
}

#[inline]
fn filler_byte(seq: u32, i: usize) -> u8 {
    (i as u8) ^ (seq as u8) ^ 0x5A
}

fn push_stamp(v: &mut Vec<u8>, s: &Stamp, total_len: usize) {
    v.push(match s.kind {
        Kind::Audio => AUDIO_MAGIC,
        Kind::Video => VIDEO_MAGIC,
    });
    v.push(s.layer);
    v.extend_from_slice(&s.publisher.to_be_bytes());
    v.extend_from_slice(&s.seq.to_be_bytes());
    v.extend_from_slice(&s.send_ns.to_be_bytes());
    v.extend_from_slice(&(total_len as u16).to_be_bytes());
}

fn fill(v: &mut Vec<u8>, seq: u32, total_len: usize) {
    let start = v.len();
    v.extend((start..total_len).map(|i| filler_byte(seq, i)));
}

/// An audio payload of `len` bytes (at least [`STAMP_LEN`]).
pub fn audio(stamp: &Stamp, len: usize) -> Vec<u8> {
    let len = len.max(STAMP_LEN);
    let mut v = Vec::with_capacity(len);
    push_stamp(&mut v, stamp, len);
    fill(&mut v, stamp.seq, len);
    v
}

/// How one VP8 frame is cut into packets.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec {
    /// Bytes of VP8 data in the frame (headers, stamps and filler; not the descriptors).
    pub size: usize,
    pub keyframe: bool,
    pub width: u16,
    pub height: u16,
    pub picture_id: u16,
}

/// The sizes of the VP8 data in each packet of a frame (each packet's payload is its size plus the
/// descriptor, at most [`MAX_PAYLOAD`]); every packet holds at least a stamp (and the first one the
/// frame header).
pub fn frame_chunks(f: &FrameSpec) -> Vec<usize> {
    let header = if f.keyframe {
        VP8_KEY_HEADER_LEN
    } else {
        VP8_INTER_HEADER_LEN
    };
    let per = MAX_PAYLOAD - VP8_DESC_LEN;
    let size = f.size.max(header + STAMP_LEN);
    let n = size.div_ceil(per).max(1);
    let mut chunks = vec![size / n; n];
    for c in chunks.iter_mut().take(size % n) {
        *c += 1;
    }
    chunks[0] = chunks[0].max(header + STAMP_LEN);
    for c in chunks.iter_mut().skip(1) {
        *c = (*c).max(STAMP_LEN);
    }
    chunks
}

/// Packet `index` of a frame whose VP8 data chunk is `chunk` bytes.
pub fn vp8_packet(f: &FrameSpec, index: usize, chunk: usize, stamp: &Stamp) -> Vec<u8> {
    let total = VP8_DESC_LEN + chunk;
    let mut v = Vec::with_capacity(total);
    let start = index == 0;
    v.push(0x80 | if start { 0x10 } else { 0 }); // X, S, partition 0
    v.push(0x80); // I: PictureID present
    v.push(0x80 | ((f.picture_id >> 8) as u8 & 0x7f)); // M: 15-bit PictureID
    v.push(f.picture_id as u8);
    if start {
        if f.keyframe {
            // Frame tag: P=0 (key), version 0, show_frame=1, first partition size 0.
            v.extend_from_slice(&[0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
            v.extend_from_slice(&(f.width & 0x3fff).to_le_bytes());
            v.extend_from_slice(&(f.height & 0x3fff).to_le_bytes());
        } else {
            v.extend_from_slice(&[0x11, 0x00, 0x00]);
        }
    }
    push_stamp(&mut v, stamp, total);
    fill(&mut v, stamp.seq, total);
    v
}

fn read_stamp(p: &[u8], at: usize, kind: Kind) -> Result<Stamp, Bad> {
    let s = p.get(at..at + STAMP_LEN).ok_or(Bad::TooShort)?;
    let want = match kind {
        Kind::Audio => AUDIO_MAGIC,
        Kind::Video => VIDEO_MAGIC,
    };
    if s[0] != want {
        return Err(Bad::Magic);
    }
    let len = u16::from_be_bytes([s[18], s[19]]) as usize;
    if len != p.len() {
        return Err(Bad::Length);
    }
    let stamp = Stamp {
        kind,
        layer: s[1],
        publisher: u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
        seq: u32::from_be_bytes([s[6], s[7], s[8], s[9]]),
        send_ns: u64::from_be_bytes([s[10], s[11], s[12], s[13], s[14], s[15], s[16], s[17]]),
    };
    let from = at + STAMP_LEN;
    let seq = stamp.seq;
    // Branch-free so it vectorizes: OR of every byte's difference from the expected filler.
    let diff = p[from..]
        .iter()
        .enumerate()
        .fold(0u8, |acc, (j, b)| acc | (*b ^ filler_byte(seq, from + j)));
    if diff != 0 {
        return Err(Bad::Filler);
    }
    Ok(stamp)
}

/// Checks a payload made by [`audio`] or [`vp8_packet`] and returns its stamp.
pub fn parse(p: &[u8]) -> Result<Parsed, Bad> {
    let first = *p.first().ok_or(Bad::TooShort)?;
    if first == AUDIO_MAGIC {
        return Ok(Parsed {
            stamp: read_stamp(p, 0, Kind::Audio)?,
            frame_start: false,
            keyframe: false,
        });
    }
    // VP8 descriptor.
    let mut i = 1usize;
    if first & 0x80 != 0 {
        let x = *p.get(i).ok_or(Bad::TooShort)?;
        i += 1;
        if x & 0x80 != 0 {
            let pic = *p.get(i).ok_or(Bad::TooShort)?;
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    let frame_start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut keyframe = false;
    if frame_start {
        let h = p.get(i..).ok_or(Bad::TooShort)?;
        if h.len() < VP8_INTER_HEADER_LEN {
            return Err(Bad::TooShort);
        }
        if h[0] & 0x01 == 0 {
            if h.len() < VP8_KEY_HEADER_LEN || h[3..6] != [0x9d, 0x01, 0x2a] {
                return Err(Bad::Vp8Header);
            }
            keyframe = true;
            i += VP8_KEY_HEADER_LEN;
        } else {
            i += VP8_INTER_HEADER_LEN;
        }
    }
    Ok(Parsed {
        stamp: read_stamp(p, i, Kind::Video)?,
        frame_start,
        keyframe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(kind: Kind, seq: u32) -> Stamp {
        Stamp {
            kind,
            layer: 2,
            publisher: 7,
            seq,
            send_ns: 123_456_789,
        }
    }

    #[test]
    fn audio_round_trips_and_detects_damage() {
        let s = stamp(Kind::Audio, 42);
        let mut p = audio(&s, 130);
        assert_eq!(p.len(), 130);
        let got = parse(&p).unwrap();
        assert_eq!(got.stamp, s);
        p[100] ^= 1;
        assert_eq!(parse(&p), Err(Bad::Filler));
        p[100] ^= 1;
        assert_eq!(parse(&p[..129]), Err(Bad::Length));
    }

    #[test]
    fn vp8_frames_are_valid_and_round_trip() {
        for (size, key) in [
            (30_000usize, true),
            (2_000, false),
            (10, false),
            (1196, true),
        ] {
            let f = FrameSpec {
                size,
                keyframe: key,
                width: 640,
                height: 360,
                picture_id: 0x1234,
            };
            let chunks = frame_chunks(&f);
            for (i, c) in chunks.iter().enumerate() {
                let s = stamp(Kind::Video, 1000 + i as u32);
                let p = vp8_packet(&f, i, *c, &s);
                assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
                let got = parse(&p).unwrap();
                assert_eq!(got.stamp, s);
                assert_eq!(got.frame_start, i == 0);
                assert_eq!(got.keyframe, key && i == 0);
                if key && i == 0 {
                    // S bit, frame tag P=0, start code, width and height as a decoder reads them.
                    assert_eq!(p[0] & 0x10, 0x10);
                    assert_eq!(p[4] & 1, 0);
                    assert_eq!(&p[7..10], &[0x9d, 0x01, 0x2a]);
                    assert_eq!(u16::from_le_bytes([p[10], p[11]]), 640);
                    assert_eq!(u16::from_le_bytes([p[12], p[13]]), 360);
                }
            }
            let total: usize = chunks.iter().sum();
            assert!(total >= size);
        }
    }
}
