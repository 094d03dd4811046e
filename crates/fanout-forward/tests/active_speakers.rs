//! Active speakers from RFC 6464 audio levels: smoothed per participant, loudest first, only those
//! above the speaking threshold, emitted at most twice a second and only when the list changes.

mod common;

use common::*;
use fanout_forward::*;
use std::time::{Duration, Instant};

struct Speakers {
    room: Room,
    sources: Vec<(u64, Source)>,
}

impl Speakers {
    /// Participants 1..=n each publishing audio (publication id = participant id).
    fn new(n: u64) -> Self {
        let mut room = Room::new();
        let mut sources = Vec::new();
        for p in 1..=n {
            room.add_audio(p, p);
            sources.push((p, Source::audio(p as u32)));
        }
        Self { room, sources }
    }

    /// 20 ms of audio at these levels (None: the participant sends nothing, e.g. DTX).
    fn tick(&mut self, levels: &[Option<u8>]) {
        for ((publication, src), level) in self.sources.iter_mut().zip(levels) {
            if let Some(l) = level {
                let p = src.audio_packet(Some(*l));
                let now = self.room.now;
                self.room.input(Input::Rtp {
                    now,
                    publication: PublicationId(*publication),
                    layer: Layer(0),
                    packet: p,
                });
            }
        }
        self.room.advance(Duration::from_millis(20));
    }

    fn run(&mut self, levels: &[Option<u8>], dur: Duration) {
        for _ in 0..dur.as_millis() / 20 {
            self.tick(levels);
        }
    }

    /// The speaker events collected since the last call, stamped with the current time (callers
    /// that need times drain after every 20 ms tick).
    fn lists(&mut self) -> Vec<(Instant, Vec<u64>)> {
        events(&self.room.take())
            .into_iter()
            .filter_map(|e| match e {
                Event::ActiveSpeakers { participants } => {
                    Some((self.room.now, participants.iter().map(|p| p.0).collect()))
                }
                _ => None,
            })
            .collect()
    }
}

fn last_list(lists: &[(Instant, Vec<u64>)]) -> Option<Vec<u64>> {
    lists.last().map(|l| l.1.clone())
}

#[test]
fn loud_participant_becomes_active_speaker() {
    let mut s = Speakers::new(3);
    s.run(&[Some(20), Some(110), Some(127)], Duration::from_secs(2));
    assert_eq!(last_list(&s.lists()), Some(vec![1]));
}

#[test]
fn loudest_first() {
    let mut s = Speakers::new(3);
    s.run(&[Some(45), Some(15), Some(30)], Duration::from_secs(2));
    assert_eq!(last_list(&s.lists()), Some(vec![2, 3, 1]));
}

#[test]
fn below_threshold_is_not_speaking() {
    let mut s = Speakers::new(2);
    s.run(&[Some(75), Some(90)], Duration::from_secs(3));
    assert!(s.lists().is_empty(), "no one ever spoke");
}

#[test]
fn list_changes_when_speakers_stop_and_start() {
    let mut s = Speakers::new(2);
    s.run(&[Some(20), Some(127)], Duration::from_secs(2));
    assert_eq!(last_list(&s.lists()), Some(vec![1]));
    // 1 stops sending (DTX), 2 starts talking.
    s.run(&[None, Some(25)], Duration::from_secs(2));
    assert_eq!(last_list(&s.lists()), Some(vec![2]));
    // Silence everywhere: an empty list once.
    s.run(&[Some(127), Some(127)], Duration::from_secs(2));
    assert_eq!(last_list(&s.lists()), Some(vec![]));
    s.run(&[Some(127), Some(127)], Duration::from_secs(2));
    assert!(s.lists().is_empty(), "unchanged: nothing emitted");
}

#[test]
fn emitted_at_most_twice_a_second_and_only_on_change() {
    let mut s = Speakers::new(2);
    let mut times = Vec::new();
    // Alternate who is louder every 100 ms: the list would change constantly.
    for i in 0..100 {
        let levels = if (i / 5) % 2 == 0 {
            [Some(10), Some(40)]
        } else {
            [Some(40), Some(10)]
        };
        s.tick(&levels);
        for (t, _) in s.lists() {
            times.push(t);
        }
    }
    assert!(!times.is_empty());
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= SPEAKER_INTERVAL - Duration::from_millis(20));
    }
    assert!(times.len() <= 4 + 1);
}

#[test]
fn removed_publication_leaves_the_list() {
    let mut s = Speakers::new(2);
    s.run(&[Some(20), Some(30)], Duration::from_secs(2));
    assert_eq!(last_list(&s.lists()), Some(vec![1, 2]));
    s.room.command(Command::RemovePublication {
        id: PublicationId(1),
    });
    s.run(&[None, Some(30)], Duration::from_secs(1));
    assert_eq!(last_list(&s.lists()), Some(vec![2]));
}

#[test]
fn video_publications_do_not_count() {
    let mut room = Room::new();
    room.add_video(1, 1);
    let mut src = Source::video(1);
    for _ in 0..100 {
        let mut p = src.delta(1);
        p[0].audio_level = Some(0);
        room.rtps(1, 0, p);
        room.advance(Duration::from_millis(20));
    }
    assert!(events(&room.take()).is_empty());
}
