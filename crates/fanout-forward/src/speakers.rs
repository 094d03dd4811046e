//! Active speakers from RFC 6464 audio levels: each audio publication accumulates the levels of its
//! packets ([`LevelAccumulator`], on the packet path, no allocation); every interval the
//! [`SpeakerDetector`] turns them into a smoothed level per participant and reports the participants
//! above the speaking threshold, loudest first, when that list changes.

use crate::api::ParticipantId;
use std::collections::HashMap;
use std::time::Duration;

/// How often the speaker list is evaluated (and at most how often it is emitted).
pub const SPEAKER_INTERVAL: Duration = Duration::from_millis(500);
/// A smoothed level (in -dBov, lower is louder) below this counts as speaking.
pub const SPEAKING_THRESHOLD: f32 = 60.0;
/// Weight of the newest interval in the smoothed level.
const SMOOTHING: f32 = 0.6;
/// The level of silence (and of an interval without packets, e.g. DTX).
const SILENCE: f32 = 127.0;

/// Sum and count of the audio levels of one publication during the current interval.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LevelAccumulator {
    sum: u32,
    count: u32,
}

impl LevelAccumulator {
    pub(crate) fn add(&mut self, level: u8) {
        self.sum = self.sum.saturating_add(u32::from(level.min(127)));
        self.count = self.count.saturating_add(1);
    }

    /// The average level of the interval (silence without packets), starting a new interval.
    pub(crate) fn take(&mut self) -> f32 {
        let avg = if self.count == 0 {
            SILENCE
        } else {
            self.sum as f32 / self.count as f32
        };
        *self = Self::default();
        avg
    }
}

/// Smoothed level per participant and the last list reported.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpeakerDetector {
    smoothed: HashMap<ParticipantId, f32>,
    last: Vec<ParticipantId>,
}

impl SpeakerDetector {
    /// Takes one interval's average level per participant (a participant may appear several times,
    /// once per audio publication: the loudest counts). Participants not listed are forgotten.
    /// Returns the new speaker list if it differs from the last one.
    pub(crate) fn update(
        &mut self,
        samples: impl IntoIterator<Item = (ParticipantId, f32)>,
    ) -> Option<Vec<ParticipantId>> {
        let mut interval: HashMap<ParticipantId, f32> = HashMap::new();
        for (p, level) in samples {
            let e = interval.entry(p).or_insert(SILENCE);
            *e = e.min(level);
        }
        self.smoothed.retain(|p, _| interval.contains_key(p));
        for (p, level) in interval {
            self.smoothed
                .entry(p)
                .and_modify(|s| *s = SMOOTHING * level + (1.0 - SMOOTHING) * *s)
                .or_insert(level);
        }
        let mut speaking: Vec<(ParticipantId, f32)> = self
            .smoothed
            .iter()
            .filter(|(_, l)| **l < SPEAKING_THRESHOLD)
            .map(|(p, l)| (*p, *l))
            .collect();
        speaking.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let list: Vec<ParticipantId> = speaking.into_iter().map(|(p, _)| p).collect();
        if list == self.last {
            return None;
        }
        self.last = list.clone();
        Some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudest_first_and_on_change_only() {
        let mut d = SpeakerDetector::default();
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        assert_eq!(d.update([(a, 30.0), (b, 50.0)]), Some(vec![a, b]));
        assert_eq!(d.update([(a, 30.0), (b, 50.0)]), None);
        // b gets louder than a.
        assert_eq!(d.update([(a, 40.0), (b, 10.0)]), Some(vec![b, a]));
        assert_eq!(d.update([(a, 127.0), (b, 10.0)]), Some(vec![b]));
        assert_eq!(d.update([]), Some(vec![]));
    }
}
