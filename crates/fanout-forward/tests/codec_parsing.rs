//! Codec parsing: keyframe detection and resolutions from hand-built VP8, H.264 and VP9 payloads,
//! real H.264 SPS bytes, an SPS encoder round-trip over random fields, and garbage that must not
//! panic.

mod common;

use common::*;
use fanout_forward::codec::{inspect, parse_h264_sps, PayloadInfo};
use fanout_forward::Codec;
use proptest::prelude::*;

fn key(w: u32, h: u32) -> PayloadInfo {
    PayloadInfo {
        keyframe: true,
        resolution: Some((w, h)),
    }
}

const NOT_KEY: PayloadInfo = PayloadInfo {
    keyframe: false,
    resolution: None,
};

// ---------------------------------------------------------------------------------------------
// VP8

fn vp8_with_descriptor(descriptor: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut p = descriptor.to_vec();
    p.extend_from_slice(&vp8_keyframe(w, h)[4..]);
    p
}

#[test]
fn vp8_keyframe_resolution_with_every_descriptor_shape() {
    // Minimal descriptor: S=1, PID=0.
    assert_eq!(
        inspect(Codec::Vp8, &vp8_with_descriptor(&[0x10], 640, 360)),
        key(640, 360)
    );
    // X, I with a 7-bit PictureID.
    assert_eq!(
        inspect(
            Codec::Vp8,
            &vp8_with_descriptor(&[0x90, 0x80, 0x05], 1280, 720)
        ),
        key(1280, 720)
    );
    // X, I with a 15-bit PictureID (the harness's default).
    assert_eq!(
        inspect(Codec::Vp8, &vp8_keyframe(1920, 1080)),
        key(1920, 1080)
    );
    // X with I, L, T and K: PictureID (15 bit), TL0PICIDX, TID/Y/KEYIDX.
    assert_eq!(
        inspect(
            Codec::Vp8,
            &vp8_with_descriptor(&[0x90, 0xf0, 0x81, 0x23, 0x07, 0x20], 320, 180)
        ),
        key(320, 180)
    );
}

#[test]
fn vp8_scale_bits_are_masked() {
    let mut p = vp8_keyframe(640, 360);
    // Horizontal and vertical scale live in the top two bits of each 16-bit field.
    p[11] |= 0xc0;
    p[13] |= 0x40;
    assert_eq!(inspect(Codec::Vp8, &p), key(640, 360));
}

#[test]
fn vp8_non_keyframes() {
    assert_eq!(inspect(Codec::Vp8, &vp8_delta()), NOT_KEY);
    assert_eq!(inspect(Codec::Vp8, &vp8_continuation()), NOT_KEY);
    // A keyframe header in a packet that does not start partition 0.
    let mut p = vp8_keyframe(640, 360);
    p[0] |= 0x01;
    assert_eq!(inspect(Codec::Vp8, &p), NOT_KEY);
    // S=0.
    let mut p = vp8_keyframe(640, 360);
    p[0] &= !0x10;
    assert_eq!(inspect(Codec::Vp8, &p), NOT_KEY);
    // Wrong start code.
    let mut p = vp8_keyframe(640, 360);
    p[7] = 0x00;
    assert_eq!(inspect(Codec::Vp8, &p), NOT_KEY);
}

// ---------------------------------------------------------------------------------------------
// H.264

/// Constrained Baseline, level 3.1, 1280x720 (80x45 macroblocks, no cropping), as a WebRTC encoder
/// emits it: profile 66, constraint_set0+1, POC type 2, one reference frame, no VUI.
const SPS_720P: [u8; 10] = SPS_1280X720;
/// Constrained Baseline, level 3.0, 640x360: 40x23 macroblocks (368 lines) cropped by 4 (x2) lines.
const SPS_360P: [u8; 10] = [0x67, 0x42, 0xc0, 0x1e, 0x8c, 0x68, 0x0a, 0x02, 0xff, 0x95];
/// High, level 4.0, 1920x1080 as x264 writes it: 120x68 macroblocks cropped to 1080 lines, with a
/// VUI (timing info) that contains emulation prevention bytes.
const SPS_1080P_X264: [u8; 26] = [
    0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00,
    0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
];

#[test]
fn h264_sps_resolutions() {
    assert_eq!(parse_h264_sps(&SPS_720P[1..]), Some((1280, 720)));
    assert_eq!(parse_h264_sps(&SPS_360P[1..]), Some((640, 360)));
    assert_eq!(parse_h264_sps(&SPS_1080P_X264[1..]), Some((1920, 1080)));
}

#[test]
fn h264_single_nal_sps_is_a_keyframe_with_resolution() {
    assert_eq!(inspect(Codec::H264, &SPS_720P), key(1280, 720));
    assert_eq!(inspect(Codec::H264, &SPS_1080P_X264), key(1920, 1080));
}

#[test]
fn h264_stap_a_with_parameter_sets() {
    assert_eq!(inspect(Codec::H264, &h264_stap_a(&SPS_360P)), key(640, 360));
    // SPS, PPS and a small IDR slice in one aggregate.
    let mut p = h264_stap_a(&SPS_720P);
    let idr = [0x65, 0x88, 0x84, 0x00];
    p.extend_from_slice(&(idr.len() as u16).to_be_bytes());
    p.extend_from_slice(&idr);
    assert_eq!(inspect(Codec::H264, &p), key(1280, 720));
    // An aggregate of non-IDR slices only.
    let mut p = vec![0x78];
    for _ in 0..2 {
        p.extend_from_slice(&[0x00, 0x03, 0x41, 0x9a, 0x00]);
    }
    assert_eq!(inspect(Codec::H264, &p), NOT_KEY);
}

#[test]
fn h264_fu_a_and_slices() {
    let start = h264_idr_fu_a_start();
    assert_eq!(
        inspect(Codec::H264, &start),
        PayloadInfo {
            keyframe: true,
            resolution: None
        }
    );
    // Middle fragment of the IDR.
    assert_eq!(inspect(Codec::H264, &[0x7c, 0x05, 0x12, 0x34]), NOT_KEY);
    // Start of a non-IDR slice.
    assert_eq!(inspect(Codec::H264, &[0x7c, 0x81, 0x9a, 0x00]), NOT_KEY);
    // A single-NAL IDR slice that is the picture's first (first_mb_in_slice = 0)...
    assert!(inspect(Codec::H264, &[0x65, 0x88, 0x84]).keyframe);
    // ... and a later slice of it (first_mb_in_slice = 40): not a place to start.
    assert!(!inspect(Codec::H264, &[0x65, 0x05, 0x24]).keyframe);
    assert_eq!(inspect(Codec::H264, &h264_delta()), NOT_KEY);
    assert_eq!(inspect(Codec::H264, &PPS), NOT_KEY);
}

// ---------------------------------------------------------------------------------------------
// VP9

#[test]
fn vp9_keyframe_with_scalability_structure() {
    assert_eq!(
        inspect(Codec::Vp9, &vp9_keyframe(1280, 720)),
        key(1280, 720)
    );
    // Three spatial layers: the last (largest) is the resolution.
    let mut p = vec![0x8a, 0x80, 0x42, 0x50]; // I B V; N_S=2, Y=1, G=0
    for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
        p.extend_from_slice(&w.to_be_bytes());
        p.extend_from_slice(&h.to_be_bytes());
    }
    p.extend_from_slice(&[0x00; 8]);
    assert_eq!(inspect(Codec::Vp9, &p), key(1280, 720));
}

#[test]
fn vp9_keyframe_resolution_from_the_frame_header() {
    // No scalability structure: the uncompressed header of a profile 0 keyframe, 640x360:
    // frame_marker 2, profile 0, show_existing 0, frame_type 0 (key), show 1, error_res 0,
    // sync code 49 83 42, color_space 1 (BT.601), color_range 0, width-1 639, height-1 359.
    let mut bits = String::from("10");
    bits += "00"; // profile low/high
    bits += "0"; // show_existing_frame
    bits += "0"; // frame_type
    bits += "1"; // show_frame
    bits += "0"; // error_resilient_mode
    bits += "010010011000001101000010"; // sync code
    bits += "001"; // color_space
    bits += "0"; // color_range
    bits += &format!("{:016b}{:016b}", 639, 359);
    let pad = (8 - bits.len() % 8) % 8;
    bits.extend(std::iter::repeat_n('0', pad));
    let header: Vec<u8> = bits
        .as_bytes()
        .chunks(8)
        .map(|c| c.iter().fold(0u8, |a, b| (a << 1) | (b - b'0')))
        .collect();
    let mut p = vec![0x88, 0x80, 0x42]; // I, B (no V)
    p.extend_from_slice(&header);
    assert_eq!(inspect(Codec::Vp9, &p), key(640, 360));
    // Non-flexible mode with layer indices (SID 0) and TL0PICIDX in front.
    let mut p = vec![0xa8, 0x80, 0x42, 0x00, 0x11];
    p.extend_from_slice(&header);
    assert_eq!(inspect(Codec::Vp9, &p), key(640, 360));
}

#[test]
fn vp9_non_keyframes() {
    assert_eq!(inspect(Codec::Vp9, &vp9_delta()), NOT_KEY);
    // Not the beginning of a frame (B=0).
    let mut p = vp9_keyframe(640, 360);
    p[0] &= !0x08;
    assert!(!inspect(Codec::Vp9, &p).keyframe);
    // Spatial layer 1 of a keyframe: not where a subscriber starts.
    assert!(!inspect(Codec::Vp9, &[0xa8, 0x80, 0x42, 0x02, 0x11, 0x00]).keyframe);
    // Flexible mode inter frame with two reference indices.
    assert_eq!(
        inspect(Codec::Vp9, &[0xd8, 0x80, 0x42, 0x03, 0x04, 0x00]),
        NOT_KEY
    );
}

#[test]
fn opus_is_never_a_keyframe() {
    assert_eq!(inspect(Codec::Opus, &vp8_keyframe(640, 360)), NOT_KEY);
}

#[test]
fn every_truncation_is_safe() {
    let payloads: Vec<(Codec, Vec<u8>)> = vec![
        (Codec::Vp8, vp8_keyframe(640, 360)),
        (Codec::H264, h264_stap_a(&SPS_1080P_X264)),
        (Codec::H264, SPS_360P.to_vec()),
        (Codec::H264, h264_idr_fu_a_start()),
        (Codec::Vp9, vp9_keyframe(640, 360)),
    ];
    for (codec, p) in payloads {
        for n in 0..=p.len() {
            let info = inspect(codec, &p[..n]);
            if let Some((w, h)) = info.resolution {
                assert!(w > 0 && h > 0);
            }
        }
    }
    for n in 0..SPS_1080P_X264.len() {
        let _ = parse_h264_sps(&SPS_1080P_X264[1..n.max(1)]);
    }
}

// ---------------------------------------------------------------------------------------------
// SPS encoder round-trip

#[derive(Default)]
struct BitWriter {
    bits: Vec<u8>,
}

impl BitWriter {
    fn u(&mut self, n: u32, v: u64) {
        for i in (0..n).rev() {
            self.bits.push(((v >> i) & 1) as u8);
        }
    }
    fn ue(&mut self, v: u64) {
        let v = v + 1;
        let n = 64 - v.leading_zeros();
        self.u(n - 1, 0);
        self.u(n, v);
    }
    fn se(&mut self, v: i64) {
        self.ue(if v > 0 {
            (2 * v - 1) as u64
        } else {
            (-2 * v) as u64
        });
    }
    /// RBSP trailing bits, then emulation prevention.
    fn finish(mut self) -> Vec<u8> {
        self.bits.push(1);
        let pad = (8 - self.bits.len() % 8) % 8;
        self.bits.extend(std::iter::repeat_n(0, pad));
        let raw: Vec<u8> = self
            .bits
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |a, b| (a << 1) | b))
            .collect();
        let mut out = Vec::new();
        let mut zeros = 0;
        for b in raw {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Sps {
    profile_idc: u8,
    chroma_format_idc: u64,
    separate_colour_plane: bool,
    /// Per scaling list: None (absent), Some(true) full list, Some(false) terminated at once.
    scaling: Option<Vec<Option<bool>>>,
    poc_type: u64,
    poc_cycle: Vec<i64>,
    width_mbs: u64,
    height_map_units: u64,
    frame_mbs_only: bool,
    crop: [u64; 4],
}

impl Sps {
    fn high(&self) -> bool {
        matches!(self.profile_idc, 100 | 110 | 122 | 244)
    }

    fn crop_units(&self) -> (u64, u64) {
        let field = if self.frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if self.separate_colour_plane {
            0
        } else {
            self.chroma_format_idc
        };
        if chroma_array_type == 0 {
            (1, field)
        } else {
            let sw = if self.chroma_format_idc == 3 { 1 } else { 2 };
            let sh = if self.chroma_format_idc == 1 { 2 } else { 1 };
            (sw, sh * field)
        }
    }

    fn size(&self) -> (u64, u64) {
        let field = if self.frame_mbs_only { 1 } else { 2 };
        (self.width_mbs * 16, field * self.height_map_units * 16)
    }

    fn expected(&self) -> (u32, u32) {
        let (cx, cy) = self.crop_units();
        let (w, h) = self.size();
        let [l, r, t, b] = self.crop;
        ((w - (l + r) * cx) as u32, (h - (t + b) * cy) as u32)
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.u(8, u64::from(self.profile_idc));
        w.u(8, 0);
        w.u(8, 40);
        w.ue(0);
        if self.high() {
            w.ue(self.chroma_format_idc);
            if self.chroma_format_idc == 3 {
                w.u(1, u64::from(self.separate_colour_plane));
            }
            w.ue(0);
            w.ue(0);
            w.u(1, 0);
            match &self.scaling {
                None => w.u(1, 0),
                Some(lists) => {
                    w.u(1, 1);
                    for (i, l) in lists.iter().enumerate() {
                        match l {
                            None => w.u(1, 0),
                            Some(full) => {
                                w.u(1, 1);
                                if *full {
                                    for _ in 0..if i < 6 { 16 } else { 64 } {
                                        w.se(1);
                                    }
                                } else {
                                    w.se(-8);
                                }
                            }
                        }
                    }
                }
            }
        }
        w.ue(4);
        w.ue(self.poc_type);
        match self.poc_type {
            0 => w.ue(6),
            1 => {
                w.u(1, 0);
                w.se(-3);
                w.se(2);
                w.ue(self.poc_cycle.len() as u64);
                for c in &self.poc_cycle {
                    w.se(*c);
                }
            }
            _ => {}
        }
        w.ue(3);
        w.u(1, 0);
        w.ue(self.width_mbs - 1);
        w.ue(self.height_map_units - 1);
        w.u(1, u64::from(self.frame_mbs_only));
        if !self.frame_mbs_only {
            w.u(1, 1);
        }
        w.u(1, 1);
        if self.crop == [0; 4] {
            w.u(1, 0);
        } else {
            w.u(1, 1);
            for c in self.crop {
                w.ue(c);
            }
        }
        w.u(1, 0); // no VUI
        w.finish()
    }
}

fn sps_strategy() -> impl Strategy<Value = Sps> {
    (
        prop::sample::select(vec![66u8, 77, 88, 100, 110, 122, 244]),
        0u64..=3,
        any::<bool>(),
        prop::option::of(prop::collection::vec(prop::option::of(any::<bool>()), 12)),
        0u64..=2,
        prop::collection::vec(-100i64..100, 0..5),
        1u64..=240,
        1u64..=135,
        any::<bool>(),
        prop::array::uniform4(0u64..=8),
    )
        .prop_map(
            |(profile, chroma, separate, scaling, poc_type, poc_cycle, wmb, hmu, fmo, crop)| {
                let mut s = Sps {
                    profile_idc: profile,
                    chroma_format_idc: 1,
                    separate_colour_plane: false,
                    scaling: None,
                    poc_type,
                    poc_cycle,
                    width_mbs: wmb,
                    height_map_units: hmu,
                    frame_mbs_only: fmo,
                    crop,
                };
                if s.high() {
                    s.chroma_format_idc = chroma;
                    s.separate_colour_plane = chroma == 3 && separate;
                    s.scaling = scaling.map(|mut l| {
                        l.truncate(if chroma == 3 { 12 } else { 8 });
                        l
                    });
                }
                // Keep the cropped picture non-empty.
                let (cx, cy) = s.crop_units();
                let (w, h) = s.size();
                if (s.crop[0] + s.crop[1]) * cx >= w {
                    s.crop[0] = 0;
                    s.crop[1] = 0;
                }
                if (s.crop[2] + s.crop[3]) * cy >= h {
                    s.crop[2] = 0;
                    s.crop[3] = 0;
                }
                s
            },
        )
}

proptest! {
    #[test]
    fn sps_round_trip(sps in sps_strategy()) {
        let bytes = sps.encode();
        prop_assert_eq!(parse_h264_sps(&bytes), Some(sps.expected()));
        let mut nal = vec![0x67];
        nal.extend_from_slice(&bytes);
        prop_assert_eq!(inspect(Codec::H264, &nal).resolution, Some(sps.expected()));
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        for codec in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Opus] {
            let info = inspect(codec, &bytes);
            if let Some((w, h)) = info.resolution {
                prop_assert!(w > 0 && h > 0);
            }
        }
        let _ = parse_h264_sps(&bytes);
    }

    #[test]
    fn sps_prefixes_never_panic(sps in sps_strategy(), cut in 0usize..64) {
        let bytes = sps.encode();
        let n = cut.min(bytes.len());
        let _ = parse_h264_sps(&bytes[..n]);
    }
}
