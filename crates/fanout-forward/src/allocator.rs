//! The stream allocator: shares one subscriber's bandwidth estimate across the streams it
//! receives. Audio first, never paused. Then video by rank (the client's priority, then screen
//! share, then active speakers, then the rest): every video its lowest layer first, then, in rank
//! order, the highest layer its ceiling (preference and rendered size) allows that still fits.
//! A video whose lowest layer does not fit is paused (and the client told), not sent frozen.
//!
//! Hysteresis: a move down (or a pause) happens at once; a move up (or a resume) only once the
//! budget has covered the higher layer with a [`UPGRADE_MARGIN`] for [`UPGRADE_HOLD`] without a
//! break. The allocator is pure: the router gathers one subscriber's candidates, calls
//! [`allocate`], and applies what comes back.

use crate::api::{Allowed, DownTrackId, ParticipantId, PauseReason, PublicationId};
use crate::temporal::ALL_TEMPORAL;
use std::time::{Duration, Instant};

/// How long a higher allocation must have fitted before it is taken.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(2);
/// A higher allocation must fit with this headroom.
pub const UPGRADE_MARGIN: f64 = 1.1;
/// A video is paused only once its lowest layer has not fitted for this long: a pause is a
/// blank tile, and one overuse cut (a keyframe's burst) must not cause it.
pub const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Orders allocations: paused below every layer, `Any` above them.
fn level(a: Allowed) -> i16 {
    match a {
        Allowed::Paused(_) => -1,
        Allowed::UpTo(l) => i16::from(l),
        Allowed::Any => i16::MAX,
    }
}

/// Orders allocations with their temporal layer (which only the lowest layer is limited to).
fn rank_of(a: Allowed, temporal: u8) -> (i16, u8) {
    let l = level(a);
    (l, if l < 0 { 0 } else { temporal })
}

/// One down-track of the subscriber being allocated.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub subscriber: ParticipantId,
    pub down_track: DownTrackId,
    /// Where the router finds it again: its publication, and its index there.
    pub slot: (PublicationId, usize),
    pub audio: bool,
    /// Higher first: (client priority, screen share, speaking).
    pub rank: (u8, bool, bool),
    /// Measured rate of each layer (b/s); 0: the layer is not usable now.
    pub rates: [u64; 3],
    /// The highest layer the subscriber wants (preference, rendered size).
    pub ceiling: u8,
    pub client_paused: bool,
    pub current: Allowed,
    /// What its lowest layer costs up to each VP8 temporal layer (cumulative; zeros: no temporal
    /// layers), the temporal layer it forwards now ([`ALL_TEMPORAL`]: all) and the one decided.
    pub temporal_rates: [u64; 3],
    pub current_temporal: u8,
    pub next_temporal: u8,
    pub upgrade_since: Option<Instant>,
    /// Since when its lowest layer has not fitted (not paused yet).
    pub short_since: Option<Instant>,
    /// The allocation decided, and its timers.
    pub next: Allowed,
    pub next_upgrade_since: Option<Instant>,
    pub next_short_since: Option<Instant>,
}

impl Candidate {
    fn lowest(&self) -> Option<u8> {
        (0..=self.ceiling.min(2)).find(|&l| self.rates[usize::from(l)] > 0)
    }

    fn highest(&self) -> Option<u8> {
        (0..=self.ceiling.min(2))
            .rev()
            .find(|&l| self.rates[usize::from(l)] > 0)
    }
}

/// Allocates `budget_bps` over one subscriber's candidates (reordered in place by rank). Returns
/// the rate the subscriber would take with no limit: what probing should look for.
pub(crate) fn allocate(now: Instant, budget_bps: u64, group: &mut [Candidate]) -> u64 {
    group.sort_unstable_by(|a, b| b.audio.cmp(&a.audio).then(b.rank.cmp(&a.rank)));
    let mut left = budget_bps as f64;
    let mut desired = 0u64;
    for c in group.iter_mut() {
        c.next = Allowed::Any;
        c.next_temporal = ALL_TEMPORAL;
        c.next_upgrade_since = None;
        c.next_short_since = None;
        if c.audio {
            left -= c.rates[0] as f64;
            desired += c.rates[0];
        }
    }
    // Every video its lowest layer, in rank order.
    for c in group.iter_mut().filter(|c| !c.audio) {
        if c.client_paused {
            c.next = Allowed::Paused(PauseReason::Client);
            continue;
        }
        let (Some(low), Some(high)) = (c.lowest(), c.highest()) else {
            // Nothing usable to forward: nothing to limit.
            continue;
        };
        desired += c.rates[usize::from(high)];
        let need = c.rates[usize::from(low)] as f64;
        let margin =
            if rank_of(Allowed::UpTo(low), ALL_TEMPORAL) > rank_of(c.current, c.current_temporal) {
                UPGRADE_MARGIN
            } else {
                1.0
            };
        // Short of the whole lowest layer: the most of its temporal layers that fits (a lower
        // frame rate rather than a blank tile).
        let reduced = (0..2u8).rev().find(|&t| {
            let rate = c.temporal_rates[usize::from(t)] as f64;
            let up = rank_of(Allowed::UpTo(low), t) > rank_of(c.current, c.current_temporal);
            rate > 0.0 && rate * if up { UPGRADE_MARGIN } else { 1.0 } <= left
        });
        if need * margin <= left {
            left -= need;
            c.next = Allowed::UpTo(low);
        } else if let Some(t) = reduced {
            left -= c.temporal_rates[usize::from(t)] as f64;
            c.next = Allowed::UpTo(low);
            c.next_temporal = t;
        } else if level(c.current) >= 0 {
            // Short, but not for long yet: its lowest layer, until it has been so for a while.
            let since = c.short_since.unwrap_or(now);
            if now.saturating_duration_since(since) >= PAUSE_AFTER {
                c.next = Allowed::Paused(PauseReason::Bandwidth);
            } else {
                left -= need;
                c.next = Allowed::UpTo(low);
                c.next_short_since = Some(since);
            }
        } else {
            c.next = Allowed::Paused(PauseReason::Bandwidth);
        }
    }
    // Then each, in rank order, the highest layer that fits.
    for c in group.iter_mut().filter(|c| !c.audio) {
        let Allowed::UpTo(low) = c.next else {
            continue;
        };
        if c.next_temporal < ALL_TEMPORAL {
            // Not even the whole lowest layer fits.
            continue;
        }
        let Some(high) = c.highest() else {
            continue;
        };
        let base = c.rates[usize::from(low)] as f64;
        for l in (low + 1..=high).rev() {
            let rate = c.rates[usize::from(l)];
            if rate == 0 {
                continue;
            }
            let up = i16::from(l) > level(c.current);
            let margin = if up { UPGRADE_MARGIN } else { 1.0 };
            if rate as f64 * margin - base <= left {
                left -= rate as f64 - base;
                c.next = Allowed::UpTo(l);
                break;
            }
        }
        if c.next == Allowed::UpTo(high) && c.current == Allowed::Any {
            // Unlimited before and the best still fits: nothing changes.
            c.next = Allowed::Any;
        }
    }
    // Hysteresis: up only after holding.
    for c in group.iter_mut().filter(|c| !c.audio) {
        if rank_of(c.next, c.next_temporal) > rank_of(c.current, c.current_temporal)
            && !matches!(c.current, Allowed::Paused(PauseReason::Client))
        {
            let since = c.upgrade_since.unwrap_or(now);
            if now.saturating_duration_since(since) >= UPGRADE_HOLD {
                c.next_upgrade_since = None;
            } else {
                c.next_upgrade_since = Some(since);
                c.next = c.current;
                c.next_temporal = c.current_temporal;
            }
        }
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(id: u64, rank: (u8, bool, bool), rates: [u64; 3]) -> Candidate {
        Candidate {
            subscriber: ParticipantId(1),
            down_track: DownTrackId(id),
            slot: (PublicationId(0), 0),
            audio: false,
            rank,
            rates,
            ceiling: 2,
            client_paused: false,
            current: Allowed::Any,
            temporal_rates: [0; 3],
            current_temporal: ALL_TEMPORAL,
            next_temporal: ALL_TEMPORAL,
            upgrade_since: None,
            short_since: None,
            next: Allowed::Any,
            next_upgrade_since: None,
            next_short_since: None,
        }
    }

    fn audio(id: u64) -> Candidate {
        Candidate {
            audio: true,
            rates: [40_000, 0, 0],
            ..video(id, (0, false, false), [0; 3])
        }
    }

    fn apply(group: &mut [Candidate]) {
        for c in group.iter_mut() {
            c.current = c.next;
            c.current_temporal = c.next_temporal;
            c.upgrade_since = c.next_upgrade_since;
            c.short_since = c.next_short_since;
        }
    }

    fn of(group: &[Candidate], id: u64) -> Allowed {
        group
            .iter()
            .find(|c| c.down_track == DownTrackId(id))
            .map(|c| c.next)
            .unwrap_or_default()
    }

    const SIMULCAST: [u64; 3] = [150_000, 500_000, 1_500_000];

    #[test]
    fn audio_first_then_video_by_rank() {
        let t0 = Instant::now();
        let mut g = vec![
            video(1, (0, false, false), SIMULCAST),
            audio(2),
            video(3, (0, true, false), SIMULCAST),
            video(4, (0, false, true), SIMULCAST),
        ];
        // 40k audio, 3x150k lows = 490k; 1.1M left over: the screen share gets its top layer
        // (1.35M more does not fit, 350k does: the mid), the speaker the next mid.
        let desired = allocate(t0, 1_300_000, &mut g);
        assert_eq!(desired, 40_000 + 3 * 1_500_000);
        assert_eq!(of(&g, 2), Allowed::Any);
        assert_eq!(of(&g, 3), Allowed::UpTo(1));
        assert_eq!(of(&g, 4), Allowed::UpTo(1));
        assert_eq!(of(&g, 1), Allowed::UpTo(0));
    }

    #[test]
    fn a_lowest_layer_that_does_not_fit_is_paused_and_resumes_after_holding() {
        let t0 = Instant::now();
        let mut g = vec![audio(1), video(2, (0, false, false), SIMULCAST)];
        allocate(t0, 150_000, &mut g);
        assert_eq!(of(&g, 2), Allowed::UpTo(0), "short, but only just");
        apply(&mut g);
        allocate(t0 + Duration::from_millis(500), 150_000, &mut g);
        assert_eq!(of(&g, 2), Allowed::UpTo(0));
        apply(&mut g);
        allocate(t0 + PAUSE_AFTER, 150_000, &mut g);
        assert_eq!(of(&g, 2), Allowed::Paused(PauseReason::Bandwidth));
        assert_eq!(of(&g, 1), Allowed::Any, "audio never paused");
        apply(&mut g);
        // Enough again: not at once...
        let t1 = t0 + Duration::from_secs(1);
        allocate(t1, 250_000, &mut g);
        assert_eq!(of(&g, 2), Allowed::Paused(PauseReason::Bandwidth));
        apply(&mut g);
        allocate(t1 + Duration::from_millis(1500), 250_000, &mut g);
        assert_eq!(of(&g, 2), Allowed::Paused(PauseReason::Bandwidth));
        apply(&mut g);
        // ...but once it has held for two seconds.
        allocate(t1 + UPGRADE_HOLD, 250_000, &mut g);
        assert_eq!(of(&g, 2), Allowed::UpTo(0));
    }

    #[test]
    fn down_at_once_up_only_after_a_break_free_hold() {
        let t0 = Instant::now();
        let mut g = vec![video(1, (0, false, false), SIMULCAST)];
        allocate(t0, 2_000_000, &mut g);
        assert_eq!(of(&g, 1), Allowed::Any, "everything fits: no limit");
        apply(&mut g);
        allocate(t0, 600_000, &mut g);
        assert_eq!(of(&g, 1), Allowed::UpTo(1), "down at once");
        apply(&mut g);
        let t1 = t0 + Duration::from_secs(1);
        allocate(t1, 2_000_000, &mut g);
        assert_eq!(of(&g, 1), Allowed::UpTo(1));
        apply(&mut g);
        // A dip restarts the hold.
        allocate(t1 + Duration::from_secs(1), 1_000_000, &mut g);
        apply(&mut g);
        allocate(t1 + UPGRADE_HOLD, 2_000_000, &mut g);
        assert_eq!(of(&g, 1), Allowed::UpTo(1), "hold restarted by the dip");
        apply(&mut g);
        allocate(t1 + UPGRADE_HOLD * 2, 2_000_000, &mut g);
        assert_eq!(of(&g, 1), Allowed::UpTo(2));
    }

    #[test]
    fn the_ceiling_and_client_pause_are_respected() {
        let t0 = Instant::now();
        let mut small = video(1, (0, false, false), SIMULCAST);
        small.ceiling = 0;
        let mut paused = video(2, (0, false, false), SIMULCAST);
        paused.client_paused = true;
        let mut g = vec![small, paused];
        let desired = allocate(t0, 10_000_000, &mut g);
        assert_eq!(
            desired, 150_000,
            "a paused stream wants nothing, a small tile its low layer"
        );
        assert_eq!(of(&g, 1), Allowed::Any);
        assert_eq!(of(&g, 2), Allowed::Paused(PauseReason::Client));
    }

    #[test]
    fn a_lower_frame_rate_of_the_lowest_layer_before_a_pause() {
        let t0 = Instant::now();
        let mut v = video(2, (0, false, false), SIMULCAST);
        // 180p: 50k at 7.5 fps, 90k at 15, 150k at 30.
        v.temporal_rates = [50_000, 90_000, 150_000];
        let mut g = vec![audio(1), v];
        allocate(t0, 170_000, &mut g);
        assert_eq!(
            (of(&g, 2), g[1].next_temporal),
            (Allowed::UpTo(0), 1),
            "15 fps at once"
        );
        apply(&mut g);
        allocate(t0, 100_000, &mut g);
        assert_eq!(
            (of(&g, 2), g[1].next_temporal),
            (Allowed::UpTo(0), 0),
            "7.5 fps"
        );
        apply(&mut g);
        allocate(t0, 60_000, &mut g);
        assert_eq!(
            of(&g, 2),
            Allowed::UpTo(0),
            "short of 7.5 fps: not paused at once"
        );
        apply(&mut g);
        allocate(t0 + PAUSE_AFTER, 60_000, &mut g);
        assert_eq!(of(&g, 2), Allowed::Paused(PauseReason::Bandwidth));
        apply(&mut g);
        // Back up one step at a time, each after holding, each with the margin.
        let t1 = t0 + Duration::from_secs(2);
        allocate(t1, 40_000 + 96_000, &mut g);
        apply(&mut g);
        allocate(t1 + UPGRADE_HOLD, 40_000 + 96_000, &mut g);
        assert_eq!(
            (of(&g, 2), g[1].next_temporal),
            (Allowed::UpTo(0), 0),
            "90k needs 99k"
        );
        apply(&mut g);
        allocate(t1 + UPGRADE_HOLD, 40_000 + 200_000, &mut g);
        assert_eq!(g[1].next_temporal, 0, "not before holding");
        apply(&mut g);
        allocate(t1 + UPGRADE_HOLD * 2, 40_000 + 200_000, &mut g);
        assert_eq!(g[1].next_temporal, ALL_TEMPORAL);
        assert_eq!(of(&g, 2), Allowed::UpTo(0));
    }
}
