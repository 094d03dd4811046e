//! Codec payload inspection: is this RTP payload the start of a keyframe, and which resolution does
//! the keyframe announce? Covers VP8 (RFC 7741 payload descriptor, then the keyframe header's 14-bit
//! width/height), H.264 (RFC 6184 single NAL, STAP-A and FU-A; SPS parsed with exp-Golomb codes,
//! emulation prevention and cropping) and VP9 (payload descriptor: B=1 and P=0 on a keyframe's first
//! packet; resolution from the scalability structure, else from the uncompressed frame header).
//!
//! Everything works on borrowed bytes, never allocates and never panics: malformed input gives
//! "not a keyframe" or "no resolution".

use crate::api::Codec;

/// What the router learns from one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PayloadInfo {
    /// The packet starts (or, for H.264, carries the parameter sets or IDR slice of) a keyframe: a
    /// subscriber can start decoding here.
    pub keyframe: bool,
    /// Width and height announced by the keyframe, when the payload carries them.
    pub resolution: Option<(u32, u32)>,
}

/// Inspects one RTP payload of `codec`. Audio payloads are never keyframes.
pub fn inspect(codec: Codec, payload: &[u8]) -> PayloadInfo {
    match codec {
        Codec::Opus => PayloadInfo::default(),
        Codec::Vp8 => vp8(payload),
        Codec::Vp9 => vp9(payload),
        Codec::H264 => h264(payload),
    }
}

// ---------------------------------------------------------------------------------------------
// VP8

fn vp8(p: &[u8]) -> PayloadInfo {
    vp8_inner(p).unwrap_or_default()
}

fn vp8_inner(p: &[u8]) -> Option<PayloadInfo> {
    let b0 = *p.first()?;
    let extended = b0 & 0x80 != 0;
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    let mut i = 1usize;
    if extended {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            let pic = *p.get(i)?;
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    if !start || partition != 0 {
        return Some(PayloadInfo::default());
    }
    let h = p.get(i..)?;
    // Frame tag: bit 0 of the first byte is the inverse keyframe flag; a keyframe's tag is followed
    // by the start code 9d 01 2a and 2+2 bytes of scale|width, scale|height (little endian).
    if h.len() < 10 || h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return Some(PayloadInfo::default());
    }
    let w = u32::from(u16::from_le_bytes([h[6], h[7]]) & 0x3fff);
    let hh = u32::from(u16::from_le_bytes([h[8], h[9]]) & 0x3fff);
    Some(PayloadInfo {
        keyframe: true,
        resolution: (w > 0 && hh > 0).then_some((w, hh)),
    })
}

/// A VP8 picture ID as carried: its value, whether it is the 15-bit form (else 7 bits), and its
/// byte offset in the payload (so that a forwarder can rewrite it in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8PictureId {
    pub value: u16,
    pub wide: bool,
    pub offset: u8,
}

impl Vp8PictureId {
    /// The values the field can hold: 2^15 or 2^7.
    pub fn modulus(&self) -> u16 {
        if self.wide {
            1 << 15
        } else {
            1 << 7
        }
    }
}

/// The temporal-scalability fields of a VP8 payload descriptor (RFC 7741 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    pub picture_id: Option<Vp8PictureId>,
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer index (0-3), when the T bit is set.
    pub tid: Option<u8>,
    /// Layer sync (Y): this frame depends only on the base layer, so a receiver may start taking
    /// its temporal layer here.
    pub layer_sync: bool,
    /// The first packet of a frame (S bit and partition 0).
    pub frame_start: bool,
}

/// Parses the payload descriptor of a VP8 payload; `None` when it is truncated.
pub fn vp8_descriptor(p: &[u8]) -> Option<Vp8Descriptor> {
    let b0 = *p.first()?;
    let mut d = Vp8Descriptor {
        picture_id: None,
        tl0_pic_idx: None,
        tid: None,
        layer_sync: false,
        frame_start: b0 & 0x10 != 0 && b0 & 0x07 == 0,
    };
    if b0 & 0x80 == 0 {
        return Some(d);
    }
    let x = *p.get(1)?;
    let mut i = 2usize;
    if x & 0x80 != 0 {
        let m = *p.get(i)?;
        let (value, wide) = if m & 0x80 != 0 {
            let lo = *p.get(i + 1)?;
            (u16::from_be_bytes([m & 0x7f, lo]), true)
        } else {
            (u16::from(m), false)
        };
        d.picture_id = Some(Vp8PictureId {
            value,
            wide,
            offset: i as u8,
        });
        i += if wide { 2 } else { 1 };
    }
    if x & 0x40 != 0 {
        d.tl0_pic_idx = Some(*p.get(i)?);
        i += 1;
    }
    if x & 0x30 != 0 {
        let t = *p.get(i)?;
        if x & 0x20 != 0 {
            d.tid = Some(t >> 6);
            d.layer_sync = t & 0x20 != 0;
        }
    }
    Some(d)
}

// ---------------------------------------------------------------------------------------------
// H.264

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

fn h264(p: &[u8]) -> PayloadInfo {
    let Some(&hdr) = p.first() else {
        return PayloadInfo::default();
    };
    let mut info = PayloadInfo::default();
    match hdr & 0x1f {
        t @ 1..=23 => {
            info.keyframe = t == NAL_SPS || (t == NAL_IDR && first_slice(p.get(1..)));
            if t == NAL_SPS {
                info.resolution = p.get(1..).and_then(parse_h264_sps);
            }
        }
        NAL_STAP_A => {
            let mut i = 1usize;
            while let Some(size) = p.get(i..i + 2) {
                let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                i += 2;
                let Some(nal) = p.get(i..i + size) else {
                    break;
                };
                i += size;
                let Some(&nh) = nal.first() else {
                    continue;
                };
                let t = nh & 0x1f;
                if t == NAL_SPS || (t == NAL_IDR && first_slice(nal.get(1..))) {
                    info.keyframe = true;
                }
                if t == NAL_SPS && info.resolution.is_none() {
                    info.resolution = parse_h264_sps(&nal[1..]);
                }
            }
        }
        NAL_FU_A => {
            if let Some(&fu) = p.get(1) {
                let t = fu & 0x1f;
                info.keyframe =
                    fu & 0x80 != 0 && (t == NAL_SPS || (t == NAL_IDR && first_slice(p.get(2..))));
            }
        }
        _ => {}
    }
    info
}

/// Whether an IDR slice is the first of its picture (`first_mb_in_slice == 0`), so a subscriber
/// starting here gets the whole picture.
fn first_slice(slice: Option<&[u8]>) -> bool {
    slice.is_some_and(|s| BitReader::new(s, true).ue() == Some(0))
}

/// Reads bits MSB first; for H.264 it drops emulation prevention bytes (00 00 03 -> 00 00).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    cur: u8,
    bits_left: u8,
    zeros: u8,
    emulation_prevention: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], emulation_prevention: bool) -> Self {
        Self {
            data,
            pos: 0,
            cur: 0,
            bits_left: 0,
            zeros: 0,
            emulation_prevention,
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        let mut b = *self.data.get(self.pos)?;
        self.pos += 1;
        if self.emulation_prevention {
            if self.zeros >= 2 && b == 0x03 {
                self.zeros = 0;
                b = *self.data.get(self.pos)?;
                self.pos += 1;
            }
            if b == 0 {
                self.zeros = self.zeros.saturating_add(1);
            } else {
                self.zeros = 0;
            }
        }
        Some(b)
    }

    fn bit(&mut self) -> Option<u32> {
        if self.bits_left == 0 {
            self.cur = self.next_byte()?;
            self.bits_left = 8;
        }
        self.bits_left -= 1;
        Some(u32::from((self.cur >> self.bits_left) & 1))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n.min(32) {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    /// Unsigned exp-Golomb code (values up to 2^32 - 2).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = u64::from(self.bits(zeros)?);
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    /// Signed exp-Golomb code.
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Width and height (after cropping) from an H.264 sequence parameter set, given the RBSP bytes that
/// follow the one-byte NAL header (emulation prevention bytes still in place).
pub fn parse_h264_sps(sps: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(sps, true);
    let profile_idc = r.bits(8)?;
    let _constraints = r.bits(8)?;
    let _level_idc = r.bits(8)?;
    let _sps_id = r.ue()?;
    let mut chroma_format_idc = 1u32;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        let _bit_depth_luma = r.ue()?;
        let _bit_depth_chroma = r.ue()?;
        let _qpprime_y_zero_transform_bypass = r.flag()?;
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let _log2_max_frame_num_minus4 = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_poc_lsb_minus4 = r.ue()?;
        }
        1 => {
            let _delta_pic_order_always_zero = r.flag()?;
            let _offset_for_non_ref_pic = r.se()?;
            let _offset_for_top_to_bottom_field = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                let _offset_for_ref_frame = r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_in_frame_num_allowed = r.flag()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field = r.flag()?;
    }
    let _direct_8x8_inference = r.flag()?;
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        crop_l = u64::from(r.ue()?);
        crop_r = u64::from(r.ue()?);
        crop_t = u64::from(r.ue()?);
        crop_b = u64::from(r.ue()?);
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = if chroma_array_type == 0 {
        (1, field_factor)
    } else {
        let sub_width_c = if chroma_format_idc == 3 { 1 } else { 2 };
        let sub_height_c = if chroma_format_idc == 1 { 2 } else { 1 };
        (sub_width_c, sub_height_c * field_factor)
    };
    let width = (width_mbs * 16).checked_sub((crop_l + crop_r).checked_mul(crop_unit_x)?)?;
    let height = (field_factor * height_map_units * 16)
        .checked_sub((crop_t + crop_b).checked_mul(crop_unit_y)?)?;
    let width = u32::try_from(width).ok().filter(|w| *w > 0)?;
    let height = u32::try_from(height).ok().filter(|h| *h > 0)?;
    Some((width, height))
}

// ---------------------------------------------------------------------------------------------
// VP9

fn vp9(p: &[u8]) -> PayloadInfo {
    vp9_inner(p).unwrap_or_default()
}

fn vp9_inner(p: &[u8]) -> Option<PayloadInfo> {
    let b0 = *p.first()?;
    let has_picture_id = b0 & 0x80 != 0;
    let inter_predicted = b0 & 0x40 != 0;
    let has_layer_indices = b0 & 0x20 != 0;
    let flexible = b0 & 0x10 != 0;
    let begins_frame = b0 & 0x08 != 0;
    let has_ss = b0 & 0x02 != 0;
    let mut i = 1usize;
    if has_picture_id {
        let pic = *p.get(i)?;
        i += if pic & 0x80 != 0 { 2 } else { 1 };
    }
    let mut spatial_id = 0u8;
    if has_layer_indices {
        let l = *p.get(i)?;
        spatial_id = (l >> 1) & 0x07;
        i += 1;
        if !flexible {
            i += 1; // TL0PICIDX
        }
    }
    if flexible && inter_predicted {
        // Up to three reference indices, each with a "next" bit.
        for _ in 0..3 {
            let b = *p.get(i)?;
            i += 1;
            if b & 0x01 == 0 {
                break;
            }
        }
    }
    let keyframe = begins_frame && !inter_predicted && spatial_id == 0;
    let mut resolution = None;
    if has_ss {
        let ss = *p.get(i)?;
        i += 1;
        let spatial_layers = usize::from(ss >> 5) + 1;
        let has_sizes = ss & 0x10 != 0;
        let has_groups = ss & 0x08 != 0;
        if has_sizes {
            for _ in 0..spatial_layers {
                let s = p.get(i..i + 4)?;
                i += 4;
                let w = u32::from(u16::from_be_bytes([s[0], s[1]]));
                let h = u32::from(u16::from_be_bytes([s[2], s[3]]));
                if w > 0 && h > 0 {
                    // The last (largest) spatial layer is the full resolution.
                    resolution = Some((w, h));
                }
            }
        }
        if has_groups {
            let n = *p.get(i)?;
            i += 1;
            for _ in 0..n {
                let g = *p.get(i)?;
                i += 1 + usize::from((g >> 2) & 0x03);
            }
        }
    }
    if keyframe && resolution.is_none() {
        resolution = p.get(i..).and_then(vp9_frame_size);
    }
    Some(PayloadInfo {
        keyframe,
        resolution,
    })
}

/// Frame size from a VP9 keyframe's uncompressed header.
fn vp9_frame_size(frame: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(frame, false);
    if r.bits(2)? != 2 {
        return None; // frame_marker
    }
    let low = r.bit()?;
    let high = r.bit()?;
    let profile = (high << 1) | low;
    if profile == 3 {
        let _reserved = r.bit()?;
    }
    if r.flag()? {
        return None; // show_existing_frame
    }
    if r.bit()? != 0 {
        return None; // frame_type: not a keyframe
    }
    let _show_frame = r.bit()?;
    let _error_resilient = r.bit()?;
    if r.bits(24)? != 0x49_83_42 {
        return None; // frame_sync_code
    }
    if profile >= 2 {
        let _ten_or_twelve_bit = r.bit()?;
    }
    let color_space = r.bits(3)?;
    if color_space != 7 {
        let _color_range = r.bit()?;
        if profile == 1 || profile == 3 {
            let _subsampling_x = r.bit()?;
            let _subsampling_y = r.bit()?;
            let _reserved = r.bit()?;
        }
    } else if profile == 1 || profile == 3 {
        let _reserved = r.bit()?;
    }
    let w = r.bits(16)? + 1;
    let h = r.bits(16)? + 1;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, false);
        let v: Vec<u32> = (0..5).filter_map(|_| r.ue()).collect();
        assert_eq!(v, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn emulation_prevention_is_skipped() {
        let data = [0x00, 0x00, 0x03, 0x01, 0xff];
        let mut r = BitReader::new(&data, true);
        assert_eq!(r.bits(24), Some(0x00_00_01));
        assert_eq!(r.bits(8), Some(0xff));
        assert_eq!(r.bits(1), None);
    }

    #[test]
    fn ue_rejects_overlong_codes() {
        let data = [0u8; 8];
        assert_eq!(BitReader::new(&data, false).ue(), None);
    }

    #[test]
    fn vp8_descriptor_with_every_field() {
        // X; I L T K; M=1 picture id 0x1234; TL0PICIDX 7; TID 2, Y, KEYIDX 5.
        let p = [0x90, 0xf0, 0x80 | 0x12, 0x34, 7, 0b1010_0101, 0xaa];
        let d = vp8_descriptor(&p).unwrap();
        assert!(d.frame_start);
        assert_eq!(
            d.picture_id,
            Some(Vp8PictureId {
                value: 0x1234,
                wide: true,
                offset: 2
            })
        );
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.tid, Some(2));
        assert!(d.layer_sync);
        // 7-bit picture id, no TL0PICIDX, T without Y, not a frame start.
        let d = vp8_descriptor(&[0x81, 0xa0, 0x05, 0b0100_0000]).unwrap();
        assert!(!d.frame_start);
        assert_eq!(
            d.picture_id.map(|p| (p.value, p.wide, p.offset)),
            Some((5, false, 2))
        );
        assert_eq!((d.tid, d.layer_sync, d.tl0_pic_idx), (Some(1), false, None));
        // K alone: no temporal index.
        assert_eq!(vp8_descriptor(&[0x80, 0x10, 0x00]).unwrap().tid, None);
        // No extension at all.
        let d = vp8_descriptor(&[0x10, 0x00]).unwrap();
        assert_eq!((d.picture_id, d.tid), (None, None));
    }

    #[test]
    fn truncated_vp8_descriptors_are_none() {
        let full = [0x90, 0xf0, 0x80 | 0x12, 0x34, 7, 0b1010_0101];
        for n in 0..full.len() {
            assert_eq!(vp8_descriptor(&full[..n]), None, "{n} bytes");
        }
        assert!(vp8_descriptor(&full).is_some());
    }

    #[test]
    fn truncated_sps_is_none() {
        let sps = [0x42, 0xc0, 0x1f, 0xda, 0x01];
        assert_eq!(parse_h264_sps(&sps), None);
        assert_eq!(parse_h264_sps(&[]), None);
    }
}
