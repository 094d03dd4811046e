//! The hub's media rules, driven sans-I/O: who is told about which stream, which streams each
//! participant is subscribed to (privileges and set_subscription), and what a role switch or a
//! resume does to the media workers.

use fanout_signal::protocol::{EnterRoom, Event, Request};
use fanout_signal::{
    AppConfig, Hub, MediaOut, Now, Reply, RoleConfig, RoomId, SignalError, StreamKind,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const APP: u32 = 1400000001;
const KEY: &str = "media-rules-key";

fn role(can_publish: bool) -> RoleConfig {
    RoleConfig {
        can_publish,
        max_video_kbps: 1500,
        max_width: 1280,
        max_height: 720,
        max_fps: 30,
        max_audio_kbps: 64,
        max_sub_video_kbps: 1000,
    }
}

fn hub(pmk: bool) -> Hub {
    let mut roles = BTreeMap::new();
    roles.insert("anchor".to_string(), role(true));
    roles.insert("audience".to_string(), role(false));
    Hub::new(
        vec![AppConfig {
            sdk_app_id: APP,
            secret_key: KEY.into(),
            default_role: "anchor".into(),
            private_map_key_required: pmk,
            max_rooms: 10,
            max_users_per_room: 10,
            dev_mode: false,
            admin_user: "administrator".into(),
            rest_rate_limit: 20,
            callback_url: None,
            callback_key: None,
            roles,
        }],
        Duration::from_secs(30),
    )
}

fn now() -> Now {
    Now {
        mono: Instant::now(),
        unix: 1_800_000_000,
    }
}

fn enter(
    hub: &mut Hub,
    conn: u64,
    user: &str,
    privileges: Option<u32>,
) -> Result<Reply, SignalError> {
    let t = now();
    hub.connect(conn);
    let private_map_key = privileges.map(|bits| {
        fanout_auth::gen_private_map_key(
            APP,
            KEY,
            user,
            fanout_auth::Room::Numeric(7),
            bits,
            3600,
            t.unix,
        )
        .unwrap()
    });
    hub.handle(
        conn,
        Request::EnterRoom(EnterRoom {
            sdk_app_id: u64::from(APP),
            user_id: user.into(),
            user_sig: fanout_auth::gen_usersig(APP, KEY, user, 3600, t.unix),
            room: RoomId::Num(7),
            role_name: None,
            private_map_key,
        }),
        t,
    )
}

fn drain(hub: &mut Hub) -> (Vec<(u64, Event)>, Vec<MediaOut>) {
    let mut events = Vec::new();
    while let Some(e) = hub.poll_event() {
        events.push(e);
    }
    let mut media = Vec::new();
    while let Some(m) = hub.poll_media() {
        media.push(m);
    }
    (events, media)
}

/// The participant id the hub gave `conn`'s user (from the publish plan).
fn participant(hub: &mut Hub, conn: u64) -> u64 {
    match hub.handle(
        conn,
        Request::Publish {
            sdp: "v=0".into(),
            tracks: vec![("0".into(), StreamKind::Audio)],
        },
        now(),
    ) {
        Ok(Reply::Publish(plan)) => plan.target.participant,
        other => panic!("publish plan expected, got {other:?}"),
    }
}

/// The streams the last SetSubscriptions for `who` asked for.
fn subscriptions_of(media: &[MediaOut], who: u64) -> Option<Vec<(u64, StreamKind)>> {
    media.iter().rev().find_map(|m| match m {
        MediaOut::SetSubscriptions { target, streams } if target.participant == who => {
            Some(streams.iter().map(|s| (s.publisher, s.kind)).collect())
        }
        _ => None,
    })
}

#[test]
fn a_published_stream_is_announced_and_subscribed_by_the_others() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    let alice = participant(&mut h, 1);
    let bob = participant(&mut h, 2);
    drain(&mut h);
    h.media_published(alice, StreamKind::Video);
    let (events, media) = drain(&mut h);
    assert_eq!(
        events,
        vec![(
            2,
            Event::StreamAdded {
                user_id: "alice".into(),
                kind: StreamKind::Video
            }
        )]
    );
    assert_eq!(
        subscriptions_of(&media, bob),
        Some(vec![(alice, StreamKind::Video)])
    );
    assert_eq!(
        subscriptions_of(&media, alice),
        Some(vec![]),
        "nobody receives their own stream"
    );
}

#[test]
fn a_stream_without_the_receive_bit_is_never_offered() {
    let mut h = hub(true);
    enter(&mut h, 1, "alice", Some(255)).unwrap();
    // bob may enter and receive audio (8) but not video (32).
    enter(&mut h, 2, "bob", Some(2 | 8)).unwrap();
    let alice = participant(&mut h, 1);
    drain(&mut h);
    h.media_published(alice, StreamKind::Audio);
    h.media_published(alice, StreamKind::Video);
    let (events, media) = drain(&mut h);
    let bob_events: Vec<_> = events
        .iter()
        .filter(|(c, _)| *c == 2)
        .map(|(_, e)| e.clone())
        .collect();
    assert_eq!(
        bob_events,
        vec![Event::StreamAdded {
            user_id: "alice".into(),
            kind: StreamKind::Audio
        }]
    );
    // bob's participant id is the other target of the room's subscription sets.
    let bob = media
        .iter()
        .find_map(|m| match m {
            MediaOut::SetSubscriptions { target, .. } if target.participant != alice => {
                Some(target.participant)
            }
            _ => None,
        })
        .expect("bob has a subscription set");
    assert_eq!(
        subscriptions_of(&media, bob),
        Some(vec![(alice, StreamKind::Audio)])
    );
}

#[test]
fn publishing_needs_the_role_and_the_send_bits() {
    let mut h = hub(true);
    // Bits: enter + create + send audio only.
    enter(&mut h, 1, "alice", Some(1 | 2 | 4)).unwrap();
    let video = h.handle(
        1,
        Request::Publish {
            sdp: "v=0".into(),
            tracks: vec![("1".into(), StreamKind::Video)],
        },
        now(),
    );
    assert_eq!(video.unwrap_err().code(), -3343);
    let audio = h.handle(
        1,
        Request::Publish {
            sdp: "v=0".into(),
            tracks: vec![("0".into(), StreamKind::Audio)],
        },
        now(),
    );
    assert!(matches!(audio, Ok(Reply::Publish(_))));

    let mut h = hub(false);
    enter(&mut h, 1, "carol", None).unwrap();
    h.handle(
        1,
        Request::SwitchRole {
            role_name: "audience".into(),
            private_map_key: None,
        },
        now(),
    )
    .unwrap();
    let denied = h.handle(
        1,
        Request::Publish {
            sdp: "v=0".into(),
            tracks: vec![("0".into(), StreamKind::Audio)],
        },
        now(),
    );
    assert_eq!(denied.unwrap_err().code(), -3343);
}

#[test]
fn switching_to_audience_stops_the_streams_everywhere() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    let alice = participant(&mut h, 1);
    let bob = participant(&mut h, 2);
    h.media_published(alice, StreamKind::Audio);
    drain(&mut h);
    h.handle(
        1,
        Request::SwitchRole {
            role_name: "audience".into(),
            private_map_key: None,
        },
        now(),
    )
    .unwrap();
    let (events, media) = drain(&mut h);
    assert!(events.contains(&(
        2,
        Event::StreamRemoved {
            user_id: "alice".into(),
            kind: StreamKind::Audio
        }
    )));
    assert!(media
        .iter()
        .any(|m| matches!(m, MediaOut::StopPublishing { target } if target.participant == alice)));
    assert_eq!(subscriptions_of(&media, bob), Some(vec![]));
}

#[test]
fn set_subscription_turns_one_stream_off_and_on() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    let alice = participant(&mut h, 1);
    let bob = participant(&mut h, 2);
    h.media_published(alice, StreamKind::Audio);
    h.media_published(alice, StreamKind::Video);
    drain(&mut h);
    let off = Request::SetSubscription {
        user_id: "ALICE".into(),
        kind: StreamKind::Video,
        enabled: false,
        layer: None,
        constraints: None,
    };
    h.handle(2, off, now()).unwrap();
    let (_, media) = drain(&mut h);
    assert_eq!(
        subscriptions_of(&media, bob),
        Some(vec![(alice, StreamKind::Audio)])
    );
    let on = Request::SetSubscription {
        user_id: "alice".into(),
        kind: StreamKind::Video,
        enabled: true,
        layer: Some(fanout_signal::LayerChoice::Low),
        constraints: None,
    };
    h.handle(2, on, now()).unwrap();
    let (_, media) = drain(&mut h);
    assert_eq!(
        subscriptions_of(&media, bob),
        Some(vec![(alice, StreamKind::Audio), (alice, StreamKind::Video)])
    );
    assert!(media.iter().any(|m| matches!(m, MediaOut::SetLayer { publisher, layer: fanout_signal::LayerChoice::Low, .. } if *publisher == alice)));
    let unknown = Request::SetSubscription {
        user_id: "nobody".into(),
        kind: StreamKind::Video,
        enabled: true,
        layer: None,
        constraints: None,
    };
    assert_eq!(h.handle(2, unknown, now()).unwrap_err().code(), -3319);
}

#[test]
fn constraints_reach_the_media_worker_for_the_named_stream() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    let alice = participant(&mut h, 1);
    let bob = participant(&mut h, 2);
    h.media_published(alice, StreamKind::Video);
    drain(&mut h);
    let c = fanout_signal::Constraints {
        max_width: 320,
        max_height: 180,
        paused: false,
        priority: 3,
    };
    let req = Request::SetSubscription {
        user_id: "alice".into(),
        kind: StreamKind::Video,
        enabled: true,
        layer: None,
        constraints: Some(c),
    };
    h.handle(2, req, now()).unwrap();
    let (_, media) = drain(&mut h);
    let sent: Vec<_> = media
        .iter()
        .filter_map(|m| match m {
            MediaOut::SetConstraints {
                target,
                publisher,
                kind,
                constraints,
            } => Some((target.participant, *publisher, *kind, *constraints)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![(bob, alice, StreamKind::Video, c)]);
    // Without constraint fields nothing is sent about them.
    let req = Request::SetSubscription {
        user_id: "alice".into(),
        kind: StreamKind::Video,
        enabled: true,
        layer: None,
        constraints: None,
    };
    h.handle(2, req, now()).unwrap();
    let (_, media) = drain(&mut h);
    assert!(!media
        .iter()
        .any(|m| matches!(m, MediaOut::SetConstraints { .. })));
}

#[test]
fn a_stream_paused_for_bandwidth_is_announced_to_its_subscriber_only() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    enter(&mut h, 3, "carol", None).unwrap();
    let alice = participant(&mut h, 1);
    let bob = participant(&mut h, 2);
    h.media_published(alice, StreamKind::Video);
    drain(&mut h);
    h.media_stream_paused(bob, alice, StreamKind::Video, true);
    h.media_stream_paused(bob, alice, StreamKind::Video, false);
    // Unknown participants are ignored.
    h.media_stream_paused(9999, alice, StreamKind::Video, true);
    h.media_stream_paused(bob, 9999, StreamKind::Video, true);
    let (events, _) = drain(&mut h);
    assert_eq!(
        events,
        vec![
            (
                2,
                Event::StreamPaused {
                    user_id: "alice".into(),
                    kind: StreamKind::Video,
                    reason: "bandwidth",
                }
            ),
            (
                2,
                Event::StreamResumed {
                    user_id: "alice".into(),
                    kind: StreamKind::Video,
                }
            ),
        ]
    );
    assert_eq!(
        Event::StreamPaused {
            user_id: "alice".into(),
            kind: StreamKind::Video,
            reason: "bandwidth",
        }
        .to_json(),
        r#"{"event":"stream_paused","user_id":"alice","kind":"video","reason":"bandwidth"}"#
    );
}

#[test]
fn the_layers_a_publisher_should_send_are_told_to_it_alone() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    let alice = participant(&mut h, 1);
    h.media_published(alice, StreamKind::Video);
    drain(&mut h);
    h.media_layers_needed(alice, StreamKind::Video, vec!["q".into()]);
    h.media_layers_needed(9999, StreamKind::Video, vec!["q".into()]);
    let (events, _) = drain(&mut h);
    let needed = Event::LayersNeeded {
        kind: StreamKind::Video,
        rids: vec!["q".into()],
    };
    assert_eq!(events, vec![(1, needed.clone())]);
    assert_eq!(
        needed.to_json(),
        r#"{"event":"layers_needed","kind":"video","rids":["q"]}"#
    );
}

#[test]
fn leaving_removes_the_media_and_tells_the_others_what_stopped() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    let alice = participant(&mut h, 1);
    h.media_published(alice, StreamKind::Video);
    drain(&mut h);
    h.handle(1, Request::ExitRoom, now()).unwrap();
    let (events, media) = drain(&mut h);
    let to_bob: Vec<_> = events
        .into_iter()
        .filter(|(c, _)| *c == 2)
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        to_bob,
        vec![
            Event::StreamRemoved {
                user_id: "alice".into(),
                kind: StreamKind::Video
            },
            Event::UserExited {
                user_id: "alice".into(),
                reason: fanout_signal::ExitReason::Left
            },
        ]
    );
    assert!(media
        .iter()
        .any(|m| matches!(m, MediaOut::Remove { target } if target.participant == alice)));
}

#[test]
fn offers_name_the_publishers_by_user_id() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    enter(&mut h, 2, "bob", None).unwrap();
    let alice = participant(&mut h, 1);
    let bob = participant(&mut h, 2);
    drain(&mut h);
    h.media_offer(
        bob,
        "v=0 offer".into(),
        vec![("0".into(), alice, StreamKind::Audio)],
    );
    let (events, _) = drain(&mut h);
    assert_eq!(events.len(), 1);
    let (conn, Event::Offer { sdp, tracks }) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*conn, 2);
    assert_eq!(sdp, "v=0 offer");
    assert_eq!(tracks[0].user_id, "alice");
    assert_eq!(tracks[0].mid, "0");
}

#[test]
fn room_handles_count_up_by_one_so_rooms_spread_over_workers() {
    let mut h = hub(false);
    let mut handles = Vec::new();
    for (conn, (user, room)) in [("alice", 7u32), ("bob", 8), ("carol", 9)]
        .into_iter()
        .enumerate()
    {
        let t = now();
        h.connect(conn as u64);
        h.handle(
            conn as u64,
            Request::EnterRoom(EnterRoom {
                sdk_app_id: u64::from(APP),
                user_id: user.into(),
                user_sig: fanout_auth::gen_usersig(APP, KEY, user, 3600, t.unix),
                room: RoomId::Num(room),
                role_name: None,
                private_map_key: None,
            }),
            t,
        )
        .unwrap();
        let (_, media) = drain(&mut h);
        let handle = media
            .iter()
            .find_map(|m| match m {
                MediaOut::SetSubscriptions { target, .. } => Some(target.room),
                _ => None,
            })
            .expect("a subscription set names the room");
        handles.push(handle);
    }
    assert_eq!(
        handles,
        vec![handles[0], handles[0] + 1, handles[0] + 2],
        "{handles:?}"
    );
}

#[test]
fn an_entry_resubscribes_the_newcomer_only() {
    let mut h = hub(false);
    enter(&mut h, 1, "alice", None).unwrap();
    let alice = participant(&mut h, 1);
    h.media_published(alice, StreamKind::Video);
    for (conn, user) in [(2, "bob"), (3, "carol"), (4, "dave")] {
        enter(&mut h, conn, user, None).unwrap();
    }
    drain(&mut h);
    // A fifth member: the others' sets do not change, so only the newcomer's is sent (a room of
    // N would otherwise cost N commands per join).
    enter(&mut h, 5, "erin", None).unwrap();
    let (_, media) = drain(&mut h);
    let sets: Vec<_> = media
        .iter()
        .filter_map(|m| match m {
            MediaOut::SetSubscriptions { target, streams } => Some((target.participant, streams)),
            _ => None,
        })
        .collect();
    assert_eq!(sets.len(), 1, "{media:?}");
    assert_ne!(sets[0].0, alice);
    assert_eq!(
        sets[0]
            .1
            .iter()
            .map(|s| (s.publisher, s.kind))
            .collect::<Vec<_>>(),
        vec![(alice, StreamKind::Video)]
    );
}
