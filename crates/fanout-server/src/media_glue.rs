//! Translation between signalling's media vocabulary (`fanout_signal::MediaOut`, stream kinds) and
//! the media workers' (`fanout_rtc::MediaCommand`, `MediaEvent`). No logic lives here.

use fanout_forward::{LayerPreference, MediaKind, ParticipantId, RoomId, StreamLimits};
use fanout_rtc::{Media, MediaCommand, MediaEvent, RoleLimits, StreamRef, VideoConstraints};
use fanout_signal::{Hub, LayerChoice, MediaOut, MediaTarget, PublishLimits, StreamKind};

pub fn kind_to_media(k: StreamKind) -> MediaKind {
    match k {
        StreamKind::Audio => MediaKind::Audio,
        StreamKind::Video => MediaKind::Video,
        StreamKind::SubVideo => MediaKind::SubVideo,
    }
}

pub fn kind_from_media(k: MediaKind) -> StreamKind {
    match k {
        MediaKind::Audio => StreamKind::Audio,
        MediaKind::Video => StreamKind::Video,
        MediaKind::SubVideo => StreamKind::SubVideo,
    }
}

pub fn limits(l: &PublishLimits) -> RoleLimits {
    RoleLimits {
        audio: StreamLimits {
            max_kbps: l.audio_kbps,
            max_width: 0,
            max_height: 0,
        },
        video: StreamLimits {
            max_kbps: l.video_kbps,
            max_width: l.video_width,
            max_height: l.video_height,
        },
        sub_video: StreamLimits {
            max_kbps: l.sub_video_kbps,
            max_width: 0,
            max_height: 0,
        },
    }
}

pub fn ids(t: MediaTarget) -> (ParticipantId, RoomId) {
    (ParticipantId(t.participant), RoomId(t.room))
}

/// Sends one hub command to the worker that owns its room.
pub fn send(media: &Media, out: MediaOut) {
    let (room, cmd) = match out {
        MediaOut::SetSubscriptions { target, streams } => {
            let (participant, room) = ids(target);
            let streams = streams
                .into_iter()
                .map(|s| StreamRef {
                    publisher: ParticipantId(s.publisher),
                    kind: kind_to_media(s.kind),
                    user_id: s.user_id,
                })
                .collect();
            (
                room,
                MediaCommand::SetSubscriptions {
                    participant,
                    room,
                    streams,
                },
            )
        }
        MediaOut::SetLayer {
            target,
            publisher,
            kind,
            layer,
        } => {
            let (participant, room) = ids(target);
            (
                room,
                MediaCommand::SetLayer {
                    participant,
                    publisher: ParticipantId(publisher),
                    kind: kind_to_media(kind),
                    layer: match layer {
                        LayerChoice::High => LayerPreference::High,
                        LayerChoice::Low => LayerPreference::Low,
                    },
                },
            )
        }
        MediaOut::SetConstraints {
            target,
            publisher,
            kind,
            constraints,
        } => {
            let (participant, room) = ids(target);
            (
                room,
                MediaCommand::SetVideoConstraints {
                    participant,
                    publisher: ParticipantId(publisher),
                    kind: kind_to_media(kind),
                    constraints: VideoConstraints {
                        max_width: constraints.max_width,
                        max_height: constraints.max_height,
                        paused: constraints.paused,
                        priority: constraints.priority,
                    },
                },
            )
        }
        MediaOut::StopPublishing { target } => {
            let (participant, room) = ids(target);
            (room, MediaCommand::StopPublishing { participant })
        }
        MediaOut::Reconnect { target } => {
            let (participant, room) = ids(target);
            (room, MediaCommand::Reconnect { participant })
        }
        MediaOut::Remove { target } => {
            let (participant, room) = ids(target);
            (room, MediaCommand::Remove { participant })
        }
    };
    if let Err(e) = media.send(room, cmd) {
        tracing::error!(error = %e, "media command lost");
    }
}

/// Hands one media worker event to the hub.
pub fn event_to_hub(hub: &mut Hub, ev: MediaEvent) {
    match ev {
        MediaEvent::Published { participant, kind } => {
            hub.media_published(participant.0, kind_from_media(kind))
        }
        MediaEvent::Unpublished { participant, kind } => {
            hub.media_unpublished(participant.0, kind_from_media(kind))
        }
        MediaEvent::Offer {
            participant,
            sdp,
            tracks,
        } => hub.media_offer(
            participant.0,
            sdp,
            tracks
                .into_iter()
                .map(|(mid, p, k)| (mid, p.0, kind_from_media(k)))
                .collect(),
        ),
        MediaEvent::LimitExceeded {
            participant,
            kind,
            reason,
        } => hub.media_limit_exceeded(participant.0, kind_from_media(kind), reason),
        MediaEvent::StreamPaused {
            participant,
            publisher,
            kind,
            paused,
        } => hub.media_stream_paused(participant.0, publisher.0, kind_from_media(kind), paused),
        MediaEvent::LayersNeeded {
            participant,
            kind,
            rids,
        } => hub.media_layers_needed(participant.0, kind_from_media(kind), rids),
        MediaEvent::ActiveSpeakers { room, participants } => {
            let ids: Vec<u64> = participants.iter().map(|p| p.0).collect();
            hub.media_active_speakers(room.0, &ids)
        }
        MediaEvent::PeerClosed { participant, side } => {
            tracing::debug!(participant = participant.0, ?side, "peer connection closed");
            hub.media_peer_closed(participant.0);
        }
    }
}
