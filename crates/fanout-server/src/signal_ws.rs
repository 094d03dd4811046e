//! One task per signalling WebSocket: reads JSON text frames, hands requests to the hub, writes
//! replies and queued events, pings the client and closes connections that go silent, never
//! authenticate, send oversized frames or cannot keep up with their events.

use crate::media_glue;
use crate::AppState;
use crate::ConnHandle;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use fanout_rtc::{MediaCommand, MediaError, Side};
use fanout_signal::protocol::{self, MAX_FRAME_BYTES};
use fanout_signal::{ConnId, Now, Reply, SignalError};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info_span, Instrument};

/// Close code for a frame over the size limit (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for policy reasons (authentication timeout, slow consumer).
pub const CLOSE_POLICY: u16 = 1008;

/// Read and write buffer of one signalling WebSocket (messages above it still pass, in steps).
pub const WS_BUFFER_BYTES: usize = 4096;

/// `GET /v1/signal`: upgrades to a WebSocket.
pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> Response {
    // Let frames somewhat over our limit through so we can answer with a close reason; far larger ones
    // are cut off by the WebSocket layer itself.
    ws.max_message_size(MAX_FRAME_BYTES * 4)
        .max_frame_size(MAX_FRAME_BYTES * 4)
        // Signalling messages are small and rare: the 128 KiB default read and write buffers per
        // connection were the largest share of a subscriber's memory.
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
            run(socket, state, conn).instrument(info_span!("ws", conn))
        })
}

async fn run(socket: WebSocket, state: Arc<AppState>, conn: ConnId) {
    let (tx, mut rx) = mpsc::channel::<String>(crate::EVENT_QUEUE);
    let kill = Arc::new(Notify::new());
    {
        let mut core = state.lock();
        core.hub.connect(conn);
        core.outs.insert(
            conn,
            ConnHandle {
                tx,
                kill: kill.clone(),
            },
        );
    }
    let cfg = &state.config.server;
    let idle_timeout = Duration::from_secs(cfg.idle_timeout_secs);
    let auth_deadline = Instant::now() + Duration::from_secs(cfg.auth_timeout_secs);
    let mut ping = tokio::time::interval(Duration::from_secs(cfg.ping_interval_secs));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut authenticated = false;
    let mut last_seen = Instant::now();
    let opened = Instant::now();
    let (mut sink, mut stream) = socket.split();
    debug!("connected");

    let close_reason: Option<(u16, &str)> = loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break None };
                last_seen = Instant::now();
                let reply = match msg {
                    Message::Text(text) => {
                        if text.len() > MAX_FRAME_BYTES {
                            break Some((CLOSE_TOO_BIG, "frame larger than 65536 bytes"));
                        }
                        let reply = handle_text(&state, conn, text.as_str()).await;
                        if !authenticated && state.with_hub(|h| h.is_authenticated(conn)) {
                            authenticated = true;
                            state.metrics.join_seconds.observe(opened.elapsed().as_secs_f64());
                        }
                        reply
                    }
                    Message::Binary(_) => protocol::reply_err(
                        None,
                        &SignalError::Malformed("binary frames are not supported; send JSON text".into()),
                    ),
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if sink.send(Message::Text(reply.into())).await.is_err() {
                    break None;
                }
            }
            Some(event) = rx.recv() => {
                if sink.send(Message::Text(event.into())).await.is_err() {
                    break None;
                }
            }
            _ = kill.notified() => break Some((CLOSE_POLICY, "too slow to receive events")),
            _ = sleep_until(auth_deadline), if !authenticated => {
                break Some((CLOSE_POLICY, "authentication timeout: enter a room within the time limit"));
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= idle_timeout {
                    debug!("silent for too long; dropping");
                    break None;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
        }
    };
    if let Some((code, reason)) = close_reason {
        debug!(code, reason, "closing");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    } else {
        // Answer the client's close frame (RFC 6455 5.5.1) or end a dropped socket cleanly.
        let _ = sink.close().await;
    }
    state.with_hub(|hub| hub.disconnect(conn, Now::system()));
    state.lock().outs.remove(&conn);
    debug!("disconnected");
}

/// How long a media worker may take to answer a negotiation.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses and handles one text frame; returns the reply text.
async fn handle_text(state: &AppState, conn: ConnId, text: &str) -> String {
    let envelope = protocol::parse(text);
    let op = envelope.request.as_ref().map_or("invalid", |r| r.op());
    let result = match envelope
        .request
        .and_then(|request| state.with_hub(|hub| hub.handle(conn, request, Now::system())))
    {
        Ok(reply) => complete(state, reply).await,
        Err(e) => Err(e),
    };
    let code = result
        .as_ref()
        .map_or_else(|e| e.code().to_string(), |_| "0".to_string());
    state.metrics.requests.with_label_values(&[op, &code]).inc();
    match result {
        Ok(body) => protocol::reply_ok(envelope.req, body),
        Err(e) => {
            debug!(code = e.code(), error = %e, "request failed");
            protocol::reply_err(envelope.req, &e)
        }
    }
}

/// Finishes a hub reply: media work (negotiations) is handed to the room's worker and awaited.
pub async fn complete(state: &AppState, reply: Reply) -> Result<serde_json::Value, SignalError> {
    match reply {
        Reply::Now(v) => Ok(v),
        Reply::Publish(plan) => {
            let (tx, rx) = oneshot::channel();
            let (participant, room) = media_glue::ids(plan.target);
            let cmd = MediaCommand::Publish {
                participant,
                room,
                offer: plan.sdp,
                tracks: plan
                    .tracks
                    .into_iter()
                    .map(|(mid, k)| (mid, media_glue::kind_to_media(k)))
                    .collect(),
                limits: media_glue::limits(&plan.limits),
                srtp: if plan.http_session {
                    fanout_rtc::SrtpPolicy::GcmOrCm
                } else {
                    fanout_rtc::SrtpPolicy::GcmOnly
                },
                reply: tx,
            };
            media_call(state, room, cmd, rx)
                .await
                .map(|sdp| json!({ "sdp": sdp }))
        }
        Reply::SubscribeAnswer { target, sdp } => {
            let (tx, rx) = oneshot::channel();
            let (participant, room) = media_glue::ids(target);
            let cmd = MediaCommand::SubscribeAnswer {
                participant,
                sdp,
                reply: tx,
            };
            media_call(state, room, cmd, rx).await.map(|()| json!({}))
        }
        Reply::IceCandidate {
            target,
            publisher,
            candidate,
        } => {
            let (participant, room) = media_glue::ids(target);
            let side = if publisher {
                Side::Publisher
            } else {
                Side::Subscriber
            };
            state
                .media
                .send(
                    room,
                    MediaCommand::AddCandidate {
                        participant,
                        side,
                        candidate,
                    },
                )
                .map(|()| json!({}))
                .map_err(media_error)
        }
    }
}

/// Sends a command to a media worker and waits (bounded) for its answer.
pub async fn media_call<T>(
    state: &AppState,
    room: fanout_forward::RoomId,
    cmd: MediaCommand,
    rx: oneshot::Receiver<Result<T, MediaError>>,
) -> Result<T, SignalError> {
    state.media.send(room, cmd).map_err(media_error)?;
    match tokio::time::timeout(MEDIA_TIMEOUT, rx).await {
        Ok(Ok(r)) => r.map_err(media_error),
        Ok(Err(_)) | Err(_) => Err(media_error(MediaError::WorkerGone)),
    }
}

/// Media failures are the client's malformed SDP or a negotiation it cannot complete.
fn media_error(e: MediaError) -> SignalError {
    SignalError::Malformed(e.to_string())
}
