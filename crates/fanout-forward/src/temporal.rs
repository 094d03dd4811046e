//! TemporalFilter: which VP8 temporal layers one down-track forwards, and the picture IDs its
//! subscriber sees. Chromium sends each simulcast layer as L1T3: dropping the frames of temporal
//! layer 2 halves the frame rate (and takes about a third of the bits), dropping layer 1 too
//! halves it again, with nothing re-encoded. Going down happens at the next frame; going up only
//! at a frame that says it may be taken (layer sync) or at a keyframe. Skipped frames leave no
//! hole: their sequence numbers close up ([`crate::seq_rewriter::SeqRewriter::skip`]) and the
//! picture IDs after them are renumbered, as they are across a simulcast switch, so that the
//! decoder sees a continuous stream.

use crate::api::PayloadPatch;
use crate::codec::{Vp8Descriptor, Vp8PictureId};
use std::collections::VecDeque;

/// Every temporal layer: no limit.
pub const ALL_TEMPORAL: u8 = 3;
/// Picture ID offset changes remembered for retransmissions.
const HISTORY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward it, with this patch to its copy (if any).
    Forward(Option<PayloadPatch>),
    /// Not forwarded: its temporal layer is above the down-track's.
    Skip,
}

#[derive(Debug, Clone)]
pub(crate) struct TemporalFilter {
    /// The highest temporal layer to forward (the allocator's decision).
    pub(crate) target: u8,
    /// The highest being forwarded now.
    current: u8,
    /// out picture ID = in picture ID - offset (modulo the field's range).
    offset: u16,
    /// The next forwarded picture continues from the last one sent (a new source epoch).
    rebase: bool,
    last_in: Option<u16>,
    last_out: Option<u16>,
    /// The picture being skipped (its packets share an ID).
    skipping: Option<u16>,
    /// (first input sequence number, offset) for each change, for retransmissions.
    history: VecDeque<(i64, u16)>,
}

impl Default for TemporalFilter {
    fn default() -> Self {
        TemporalFilter {
            target: ALL_TEMPORAL,
            current: ALL_TEMPORAL,
            offset: 0,
            rebase: false,
            last_in: None,
            last_out: None,
            skipping: None,
            history: VecDeque::new(),
        }
    }
}

fn patch(pid: Vp8PictureId, value: u16) -> PayloadPatch {
    if pid.wide {
        let v = (value & 0x7fff) | 0x8000;
        PayloadPatch {
            offset: pid.offset,
            len: 2,
            bytes: v.to_be_bytes(),
        }
    } else {
        PayloadPatch {
            offset: pid.offset,
            len: 1,
            bytes: [(value & 0x7f) as u8, 0],
        }
    }
}

impl TemporalFilter {
    /// The highest temporal layer forwarded now.
    pub(crate) fn current(&self) -> u8 {
        self.current
    }

    /// The down-track starts a new source epoch (a simulcast switch): picture IDs go on from the
    /// last one sent.
    pub(crate) fn on_epoch(&mut self) {
        self.rebase = true;
        self.skipping = None;
        self.history.clear();
    }

    fn set_offset(&mut self, from_ext: i64, offset: u16) {
        self.offset = offset;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((from_ext, offset));
    }

    /// Decides a packet (`ext`, its descriptor) of the current epoch. `newest`: it is the newest
    /// packet of its layer (only those may be skipped; an older one has its place in the
    /// numbering). `keyframe`: it starts a keyframe.
    pub(crate) fn on_packet(
        &mut self,
        ext: i64,
        d: &Vp8Descriptor,
        keyframe: bool,
        newest: bool,
    ) -> Verdict {
        if d.frame_start && newest {
            // A keyframe may start any layer; going down needs nothing.
            if keyframe || self.target < self.current {
                self.current = self.target;
            } else if let Some(tid) = d.tid {
                if tid > self.current && tid <= self.target && d.layer_sync {
                    self.current = tid;
                }
            }
        }
        let Some(pid) = d.picture_id else {
            return match d.tid {
                Some(t) if t > self.current && newest => Verdict::Skip,
                _ => Verdict::Forward(None),
            };
        };
        let m = pid.modulus();
        if d.tid.is_some_and(|t| t > self.current) && newest {
            if self.skipping != Some(pid.value) && self.last_in != Some(pid.value) {
                self.skipping = Some(pid.value);
                let offset = (self.offset + 1) % m;
                self.set_offset(ext + 1, offset);
            }
            return Verdict::Skip;
        }
        if newest {
            if self.rebase && self.last_in != Some(pid.value) {
                let next = self.last_out.map_or(pid.value, |o| (o + 1) % m);
                let offset = (pid.value + m - next) % m;
                self.set_offset(ext, offset);
                self.rebase = false;
            }
            self.last_in = Some(pid.value);
        }
        let offset = if newest {
            self.offset
        } else {
            self.offset_at(ext)
        };
        let out = (pid.value + m - offset % m) % m;
        if newest {
            self.last_out = Some(out);
        }
        Verdict::Forward((offset != 0).then(|| patch(pid, out)))
    }

    /// The patch a retransmission of packet `ext` (of the current epoch) gets.
    pub(crate) fn retransmission_patch(&self, ext: i64, d: &Vp8Descriptor) -> Option<PayloadPatch> {
        let pid = d.picture_id?;
        let m = pid.modulus();
        let offset = self.offset_at(ext);
        (offset != 0).then(|| patch(pid, (pid.value + m - offset % m) % m))
    }

    fn offset_at(&self, ext: i64) -> u16 {
        self.history
            .iter()
            .rev()
            .find(|(from, _)| *from <= ext)
            .map_or(
                // Older than every change kept: the offset before the first of them.
                if self.history.is_empty() {
                    self.offset
                } else {
                    0
                },
                |(_, o)| *o,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pid: u16, tid: u8, sync: bool, start: bool) -> Vp8Descriptor {
        Vp8Descriptor {
            picture_id: Some(Vp8PictureId {
                value: pid,
                wide: true,
                offset: 2,
            }),
            tl0_pic_idx: Some(0),
            tid: Some(tid),
            layer_sync: sync,
            frame_start: start,
        }
    }

    /// L1T3's pattern: 0 2 1 2 0 2 1 2 ...
    fn tid_of(frame: u16) -> u8 {
        [0, 2, 1, 2][usize::from(frame % 4)]
    }

    fn out_pid(v: Verdict, input: u16) -> Option<u16> {
        match v {
            Verdict::Skip => None,
            Verdict::Forward(None) => Some(input),
            Verdict::Forward(Some(p)) => Some(u16::from_be_bytes(p.bytes) & 0x7fff),
        }
    }

    #[test]
    fn dropping_layer_two_halves_the_frames_and_keeps_picture_ids_continuous() {
        let mut f = TemporalFilter {
            target: 1,
            ..TemporalFilter::default()
        };
        let mut out = Vec::new();
        for frame in 0..12u16 {
            // Two packets per frame.
            for k in 0..2 {
                let ext = i64::from(frame) * 2 + k;
                let v = f.on_packet(
                    ext,
                    &d(100 + frame, tid_of(frame), false, k == 0),
                    frame == 0,
                    true,
                );
                if k == 0 {
                    out.push(out_pid(v, 100 + frame));
                }
            }
        }
        let sent: Vec<u16> = out.iter().flatten().copied().collect();
        assert_eq!(sent, vec![100, 101, 102, 103, 104, 105], "{out:?}");
        assert_eq!(f.current(), 1);
    }

    #[test]
    fn going_up_waits_for_a_layer_sync_frame() {
        let mut f = TemporalFilter {
            target: 0,
            ..TemporalFilter::default()
        };
        assert!(matches!(
            f.on_packet(0, &d(0, 0, false, true), true, true),
            Verdict::Forward(_)
        ));
        assert_eq!(
            f.on_packet(1, &d(1, 2, false, true), false, true),
            Verdict::Skip
        );
        f.target = ALL_TEMPORAL;
        // A layer-2 frame without sync still cannot be taken.
        assert_eq!(
            f.on_packet(2, &d(2, 2, false, true), false, true),
            Verdict::Skip
        );
        // A layer-1 sync frame lifts it to 1, a layer-2 sync frame to 2.
        assert!(matches!(
            f.on_packet(3, &d(3, 1, true, true), false, true),
            Verdict::Forward(_)
        ));
        assert_eq!(f.current(), 1);
        assert!(matches!(
            f.on_packet(4, &d(4, 2, true, true), false, true),
            Verdict::Forward(_)
        ));
        assert_eq!(f.current(), 2);
    }

    #[test]
    fn an_epoch_continues_the_picture_ids_and_retransmissions_keep_theirs() {
        let mut f = TemporalFilter::default();
        for i in 0..3u16 {
            assert_eq!(
                out_pid(
                    f.on_packet(i64::from(i), &d(500 + i, 0, false, true), i == 0, true),
                    500 + i
                ),
                Some(500 + i)
            );
        }
        f.on_epoch();
        // The new layer's encoder numbers from 20000.
        let v = f.on_packet(1000, &d(20_000, 0, false, true), true, true);
        assert_eq!(out_pid(v, 20_000), Some(503));
        // Then skip one frame of layer 2 and send the next.
        f.target = 1;
        assert_eq!(
            f.on_packet(1001, &d(20_001, 2, false, true), false, true),
            Verdict::Skip
        );
        let v = f.on_packet(1002, &d(20_002, 1, false, true), false, true);
        assert_eq!(out_pid(v, 20_002), Some(504));
        // A retransmission of the packet of 20000 gets the ID it was sent with.
        let p = f
            .retransmission_patch(1000, &d(20_000, 0, false, true))
            .unwrap();
        assert_eq!(u16::from_be_bytes(p.bytes) & 0x7fff, 503);
    }

    #[test]
    fn picture_ids_wrap_in_their_field() {
        let mut f = TemporalFilter {
            target: 0,
            ..TemporalFilter::default()
        };
        let mut sent = Vec::new();
        for i in 0..6u16 {
            let pid = (0x7ffd + i) % 0x8000;
            let tid = if i % 2 == 1 { 2 } else { 0 };
            if let Some(o) = out_pid(
                f.on_packet(i64::from(i), &d(pid, tid, false, true), i == 0, true),
                pid,
            ) {
                sent.push(o);
            }
        }
        assert_eq!(sent, vec![0x7ffd, 0x7ffe, 0x7fff]);
    }
}
