//! WHIP (RFC 9725) and WHEP: `POST /v1/whip/{sdk_app_id}/{room}` with a UserSig as bearer token and
//! an SDP offer enters the room as the token's user and publishes; `POST /v1/whep/...` enters and
//! plays the room's streams (one audio, one video, negotiated once). The `Location` returned is the
//! session, and `DELETE` on it leaves. A session is an HTTP "headless" connection of the hub: it has
//! the same roles, limits and privileges as a WebSocket user, and others see it like any member. It
//! also leaves when its peer connection fails.

use crate::signal_ws::complete;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, MethodRouter};
use axum::Router;
use fanout_signal::protocol::{EnterRoom, Request};
use fanout_signal::{ConnId, Now, RoomId, SignalError, StreamKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Largest SDP offer accepted, bytes.
pub const MAX_SDP: usize = 64 * 1024;

/// Live WHIP sessions: id -> hub connection.
#[derive(Default)]
pub struct Sessions {
    pub(crate) map: Mutex<HashMap<String, ConnId>>,
}

#[derive(Deserialize)]
pub struct WhipQuery {
    /// Role name to enter with (the app's default when absent).
    role: Option<String>,
    /// PrivateMapKey, for apps that require one.
    private_map_key: Option<String>,
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/whip/{app}/{room}", session_route(Kind::Whip, false))
        .route("/v1/whip/{app}/str/{room}", session_route(Kind::Whip, true))
        .route("/v1/whip/sessions/{id}", delete(end_session))
        .route("/v1/whep/{app}/{room}", session_route(Kind::Whep, false))
        .route("/v1/whep/{app}/str/{room}", session_route(Kind::Whep, true))
        .route("/v1/whep/sessions/{id}", delete(end_session))
}

/// A plain-text HTTP error (WHIP/WHEP clients show the body to people).
pub struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

fn problem(status: StatusCode, text: impl Into<String>) -> Problem {
    Problem(status, text.into())
}

/// Maps a signalling error to the HTTP status a WHIP client understands.
fn status_of(e: &SignalError) -> StatusCode {
    match e.code() {
        -3320 | -100018 => StatusCode::UNAUTHORIZED,
        -100006 | -3343 => StatusCode::FORBIDDEN,
        -3317 => StatusCode::NOT_FOUND,
        -3345 => StatusCode::SERVICE_UNAVAILABLE,
        -3342 => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The (unverified) identifier a UserSig names; verification happens in `enter_room`.
fn token_identifier(token: &str) -> Option<String> {
    let json = fanout_auth::codec::decode_token(token).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    v.get("TLS.identifier")?.as_str().map(str::to_string)
}

/// The media sections of an offer as (mid, kind): audio, then the first video as camera video and a
/// second video as sub video (screen share).
pub fn tracks_of(sdp: &str) -> Vec<(String, StreamKind)> {
    let mut out = Vec::new();
    let mut kind: Option<&str> = None;
    let mut videos = 0;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split(' ').next();
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            let k = match kind {
                Some("audio") if !out.iter().any(|(_, k)| *k == StreamKind::Audio) => {
                    Some(StreamKind::Audio)
                }
                Some("video") => {
                    videos += 1;
                    match videos {
                        1 => Some(StreamKind::Video),
                        2 => Some(StreamKind::SubVideo),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(k) = k {
                out.push((mid.to_string(), k));
            }
        }
    }
    out
}

/// Which HTTP media protocol a request speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// WHIP: the client publishes.
    Whip,
    /// WHEP: the client plays the room's streams.
    Whep,
}

fn numeric_room(room: &str) -> Result<RoomId, Problem> {
    room.parse::<u64>()
        .ok()
        .and_then(|n| RoomId::numeric(n).ok())
        .ok_or_else(|| {
            problem(
                StatusCode::BAD_REQUEST,
                "room must be an integer in 1..=4294967294",
            )
        })
}

fn string_room(room: &str) -> Result<RoomId, Problem> {
    RoomId::string(room).map_err(|e| problem(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The POST route of one protocol and room kind (numeric ids, or string ids under `/str/`).
fn session_route(kind: Kind, string_ids: bool) -> MethodRouter<Arc<AppState>> {
    post(
        move |State(state): State<Arc<AppState>>,
              Path((app, room)): Path<(String, String)>,
              Query(q): Query<WhipQuery>,
              headers: HeaderMap,
              body: axum::body::Bytes| async move {
            let room = if string_ids {
                string_room(&room)
            } else {
                numeric_room(&room)
            };
            match room {
                Ok(room) => session(&state, kind, &app, room, q, &headers, &body).await,
                Err(p) => p.into_response(),
            }
        },
    )
}

/// One WHIP or WHEP session: checks the request, enters the room as the token's user on a headless
/// connection, negotiates, and answers 201 with the SDP and the session's Location.
async fn session(
    state: &Arc<AppState>,
    kind: Kind,
    app: &str,
    room: RoomId,
    q: WhipQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Ok(sdk_app_id) = app.parse::<u64>() else {
        return problem(StatusCode::NOT_FOUND, "no such application").into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be application/sdp",
        )
        .into_response();
    }
    if body.len() > MAX_SDP {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "offer larger than 64 KiB").into_response();
    }
    let Ok(offer) = std::str::from_utf8(body) else {
        return problem(StatusCode::BAD_REQUEST, "the offer is not UTF-8").into_response();
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
        })
    else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "Authorization: Bearer <UserSig> is required",
        )
        .into_response();
    };
    let Some(user_id) = token_identifier(token) else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not a UserSig",
        )
        .into_response();
    };
    let tracks = tracks_of(offer);
    if tracks.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "the offer has no audio or video section",
        )
        .into_response();
    }

    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let enter = Request::EnterRoom(EnterRoom {
        sdk_app_id,
        user_id: user_id.clone(),
        user_sig: token.to_string(),
        room: room.clone(),
        role_name: q.role.filter(|r| !r.is_empty()),
        private_map_key: q.private_map_key.filter(|k| !k.is_empty()),
    });
    let entered = state.with_hub(|h| {
        h.connect_headless(conn);
        h.handle(conn, enter, Now::system())
    });
    if let Err(e) = entered {
        state.with_hub(|h| h.disconnect(conn, Now::system()));
        return problem(status_of(&e), format!("{} ({})", e, e.code())).into_response();
    }
    let negotiated = match kind {
        Kind::Whip => publish_offer(state, conn, offer, tracks).await,
        Kind::Whep => play_offer(state, conn, offer).await,
    };
    let answer = match negotiated {
        Ok(answer) => answer,
        Err(response) => {
            leave(state, conn);
            return response.into_response();
        }
    };
    let id = format!("{:016x}{:016x}", rand_u64(), conn);
    state
        .whip
        .map
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), conn);
    let prefix = match kind {
        Kind::Whip => "whip",
        Kind::Whep => "whep",
    };
    tracing::info!(user = %user_id, room = %room, session = %id, protocol = prefix, "HTTP media session started");
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, format!("/v1/{prefix}/sessions/{id}")),
        ],
        answer,
    )
        .into_response()
}

/// WHIP: publishes the offer's tracks like a WebSocket `publish`.
async fn publish_offer(
    state: &Arc<AppState>,
    conn: ConnId,
    offer: &str,
    tracks: Vec<(String, StreamKind)>,
) -> Result<String, Problem> {
    let request = Request::Publish {
        sdp: offer.to_string(),
        tracks,
    };
    let published = match state.with_hub(|h| h.handle(conn, request, Now::system())) {
        Ok(reply) => complete(state, reply).await,
        Err(e) => Err(e),
    };
    published
        .map(|v| {
            v.get("sdp")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_string()
        })
        .map_err(|e| problem(status_of(&e), format!("{} ({})", e, e.code())))
}

/// WHEP: answers the client's receive-only offer with the room's streams this user may receive.
async fn play_offer(state: &Arc<AppState>, conn: ConnId, offer: &str) -> Result<String, Problem> {
    let (target, streams) = state
        .with_hub(|h| h.wanted_now(conn))
        .map_err(|e| problem(status_of(&e), format!("{} ({})", e, e.code())))?;
    if streams.is_empty() {
        return Err(problem(
            StatusCode::CONFLICT,
            "the room has no stream this user may receive yet",
        ));
    }
    let (participant, room) = crate::media_glue::ids(target);
    let streams = streams
        .into_iter()
        .map(|s| fanout_rtc::StreamRef {
            publisher: fanout_forward::ParticipantId(s.publisher),
            kind: crate::media_glue::kind_to_media(s.kind),
            user_id: s.user_id,
        })
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let cmd = fanout_rtc::MediaCommand::WhepSubscribe {
        participant,
        room,
        offer: offer.to_string(),
        streams,
        reply: tx,
    };
    crate::signal_ws::media_call(state, room, cmd, rx)
        .await
        .map_err(|e| problem(StatusCode::BAD_REQUEST, format!("{} ({})", e, e.code())))
}

fn leave(state: &AppState, conn: ConnId) {
    state.with_hub(|h| {
        let _ = h.handle(conn, Request::ExitRoom, Now::system());
        h.disconnect(conn, Now::system());
    });
}

async fn end_session(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let conn = state
        .whip
        .map
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    match conn {
        Some(conn) => {
            leave(&state, conn);
            StatusCode::OK.into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "no such session").into_response(),
    }
}

/// A random session id part (the Location is the session's capability).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_from_an_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\nm=application 9 x\r\na=mid:d\r\n";
        assert_eq!(
            tracks_of(sdp),
            vec![
                ("a0".to_string(), StreamKind::Audio),
                ("v0".to_string(), StreamKind::Video),
                ("v1".to_string(), StreamKind::SubVideo)
            ]
        );
        assert!(tracks_of("v=0\r\n").is_empty());
    }

    #[test]
    fn identifiers_from_tokens() {
        let token = fanout_auth::gen_usersig(1, "k", "alice", 60, 1_700_000_000);
        assert_eq!(token_identifier(&token).as_deref(), Some("alice"));
        assert_eq!(token_identifier("garbage"), None);
    }
}
