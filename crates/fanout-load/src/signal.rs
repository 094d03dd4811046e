//! The signalling side of a simulated participant: one WebSocket speaking `docs/protocol.md`
//! (`enter_room`, `publish`, `offer` events answered with `subscribe_answer`, `exit_room`), with
//! the peer connections living on a media thread.

use crate::media::{Cmd, MediaHandle, OfferTrack, Role};
use crate::payload::Kind;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A signalling connection: requests with replies matched by `req`, events queued in between.
pub struct Ws {
    stream: Stream,
    next_req: u64,
    events: VecDeque<Value>,
}

/// Why a participant stopped.
#[derive(Debug)]
pub enum Failure {
    /// The run cannot work at all (server unreachable, credentials rejected): stop everything.
    Fatal(String),
    /// This participant failed.
    Failed(String),
}

impl Ws {
    pub async fn connect(url: &str) -> Result<Ws, String> {
        // TCP_NODELAY, as browsers do: small frames must not wait for the server's delayed ACK.
        let (stream, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Ws {
            stream,
            next_req: 1,
            events: VecDeque::new(),
        })
    }

    async fn read(&mut self) -> Result<Value, String> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str())
                        .map_err(|e| format!("server sent a frame that is not JSON: {e}"))
                }
                Some(Ok(Message::Close(c))) => {
                    return Err(match c {
                        Some(c) => format!("server closed the WebSocket: {} {}", c.code, c.reason),
                        None => "server closed the WebSocket".into(),
                    })
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("WebSocket error: {e}")),
                None => return Err("WebSocket closed".into()),
            }
        }
    }

    /// Sends a request and waits for its reply (queuing events that arrive first).
    pub async fn request(&mut self, op: &str, mut fields: Value) -> Result<Value, String> {
        let req = self.next_req;
        self.next_req += 1;
        if let Some(o) = fields.as_object_mut() {
            o.insert("req".into(), json!(req));
            o.insert("op".into(), json!(op));
        }
        self.stream
            .send(Message::text(fields.to_string()))
            .await
            .map_err(|e| format!("WebSocket send failed: {e}"))?;
        loop {
            let v = self.read().await?;
            if v.get("res").and_then(Value::as_u64) == Some(req) {
                return Ok(v);
            }
            if v.get("event").is_some() {
                self.events.push_back(v);
            }
        }
    }

    /// The next event (queued or read).
    pub async fn event(&mut self) -> Result<Value, String> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            let v = self.read().await?;
            if v.get("event").is_some() {
                return Ok(v);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// One simulated participant.
#[derive(Debug, Clone)]
pub struct Spec {
    pub id: u64,
    pub room: u32,
    pub role: Role,
    pub user: String,
    /// Publisher index (publishers only).
    pub index: Option<u32>,
}

/// What all participant tasks share.
pub struct Shared {
    pub url: String,
    pub app: u32,
    pub key: String,
    pub role_names: [String; 2],
    pub media: Vec<MediaHandle>,
    pub stop: watch::Receiver<bool>,
    pub connected_once: AtomicBool,
    pub entered: [AtomicU64; 2],
    pub fatal: Mutex<Option<String>>,
    pub failures: Mutex<Vec<(String, String)>>,
    pub join_timeout: Duration,
}

impl Shared {
    fn media(&self, id: u64) -> &MediaHandle {
        &self.media[(id % self.media.len() as u64) as usize]
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn reply_error(r: &Value) -> String {
    format!(
        "code {} ({})",
        r["code"],
        r["error"].as_str().unwrap_or("no message")
    )
}

async fn media_call<T>(
    shared: &Shared,
    id: u64,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Cmd,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    shared.media(id).send(make(tx));
    rx.await.map_err(|_| "media thread is gone".to_string())?
}

/// Runs one participant until the run stops; records its failure, if any.
pub async fn participant(shared: Arc<Shared>, spec: Spec) {
    let r = run(&shared, &spec).await;
    shared.media(spec.id).send(Cmd::Remove {
        participant: spec.id,
    });
    match r {
        Ok(()) => {}
        Err(Failure::Fatal(m)) => {
            let mut f = shared.fatal.lock().unwrap();
            if f.is_none() {
                *f = Some(m);
            }
        }
        Err(Failure::Failed(m)) => shared.failures.lock().unwrap().push((spec.user, m)),
    }
}

async fn run(shared: &Shared, spec: &Spec) -> Result<(), Failure> {
    let failed = |m: String| Failure::Failed(m);
    let ws_open = Instant::now();
    let mut ws = match tokio::time::timeout(shared.join_timeout, Ws::connect(&shared.url)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) if !shared.connected_once.load(Ordering::Relaxed) => {
            return Err(Failure::Fatal(format!(
                "cannot open the signalling WebSocket {}: {e}",
                shared.url
            )))
        }
        Ok(Err(e)) => return Err(failed(format!("WebSocket: {e}"))),
        Err(_) => return Err(failed("WebSocket connect timed out".into())),
    };
    shared.connected_once.store(true, Ordering::Relaxed);
    crate::trace!(ws_open, spec.user, "websocket open");
    let sig = fanout_auth::gen_usersig(shared.app, &shared.key, &spec.user, 86400, unix_now());
    let within = |what: &'static str| {
        let t = shared.join_timeout;
        move |_| Failure::Failed(format!("{what}: no reply within {t:?}"))
    };
    let r = tokio::time::timeout(
        shared.join_timeout,
        ws.request(
            "enter_room",
            json!({
                "sdk_app_id": shared.app,
                "user_id": spec.user,
                "user_sig": sig,
                "room_id": spec.room,
                "role_name": shared.role_names[spec.role.index()],
            }),
        ),
    )
    .await
    .map_err(within("enter_room"))?
    .map_err(failed)?;
    if r["ok"] != true {
        let code = r["code"].as_i64().unwrap_or(0);
        let why = format!("enter_room refused: {}", reply_error(&r));
        // Wrong app, bad or forged UserSig: the run's credentials are wrong.
        return Err(if matches!(code, -3317 | -3320 | -100018 | -100006) {
            Failure::Fatal(format!(
                "{why}; check --app and --key (app {}, user {})",
                shared.app, spec.user
            ))
        } else {
            failed(why)
        });
    }
    if r["role_fallback"] == true {
        return Err(Failure::Fatal(format!(
            "the app has no role `{}` (the server fell back to its default role); pass \
             --publisher-role/--subscriber-role",
            shared.role_names[spec.role.index()]
        )));
    }
    shared.entered[spec.role.index()].fetch_add(1, Ordering::Relaxed);
    crate::trace!(ws_open, spec.user, "entered");

    if let Some(index) = spec.index {
        let offer = media_call(shared, spec.id, |reply| Cmd::NewPublisher {
            participant: spec.id,
            role: spec.role,
            user: spec.user.clone(),
            index,
            ws_open,
            reply,
        })
        .await
        .map_err(|e| failed(format!("cannot build the publishing connection: {e}")))?;
        let tracks: Vec<Value> = offer
            .tracks
            .iter()
            .map(|(mid, kind)| json!({"mid": mid, "kind": kind.name()}))
            .collect();
        let r = tokio::time::timeout(
            shared.join_timeout,
            ws.request("publish", json!({"sdp": offer.sdp, "tracks": tracks})),
        )
        .await
        .map_err(within("publish"))?
        .map_err(failed)?;
        if r["ok"] != true {
            let why = format!("publish refused: {}", reply_error(&r));
            return Err(if r["code"].as_i64() == Some(-3343) {
                Failure::Fatal(format!(
                    "{why}; the role `{}` cannot publish",
                    shared.role_names[spec.role.index()]
                ))
            } else {
                failed(why)
            });
        }
        let answer = r["sdp"].as_str().unwrap_or_default().to_string();
        media_call(shared, spec.id, |reply| Cmd::PublisherAnswer {
            participant: spec.id,
            sdp: answer,
            reply,
        })
        .await
        .map_err(|e| failed(format!("cannot apply the publish answer: {e}")))?;
        crate::trace!(ws_open, spec.user, "publish answered");
    }

    // Answer offers until the run stops.
    let mut stop = shared.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let ev = tokio::select! {
            ev = ws.event() => ev.map_err(failed)?,
            _ = stop.changed() => break,
        };
        match ev["event"].as_str() {
            Some("offer") => {
                crate::trace!(ws_open, spec.user, "offer received");
                let sdp = ev["sdp"].as_str().unwrap_or_default().to_string();
                let tracks = ev["tracks"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|t| OfferTrack {
                                mid: t["mid"].as_str().unwrap_or_default().to_string(),
                                user_id: t["user_id"].as_str().unwrap_or_default().to_string(),
                                kind: match t["kind"].as_str() {
                                    Some("audio") => Some(Kind::Audio),
                                    Some("video") => Some(Kind::Video),
                                    _ => None,
                                },
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let answer = media_call(shared, spec.id, |reply| Cmd::SubscriberOffer {
                    participant: spec.id,
                    user: spec.user.clone(),
                    role: spec.role,
                    ws_open,
                    sdp,
                    tracks,
                    reply,
                })
                .await
                .map_err(|e| failed(format!("cannot answer the server's offer: {e}")))?;
                let r = ws
                    .request("subscribe_answer", json!({"sdp": answer}))
                    .await
                    .map_err(failed)?;
                crate::trace!(ws_open, spec.user, "subscribe_answer replied");
                if r["ok"] != true {
                    return Err(failed(format!(
                        "subscribe_answer refused: {}",
                        reply_error(&r)
                    )));
                }
            }
            Some("kicked") => return Err(failed(format!("kicked: {}", ev["reason"]))),
            Some("server_shutdown") => return Err(failed("the server is shutting down".into())),
            _ => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), ws.request("exit_room", json!({}))).await;
    ws.close().await;
    Ok(())
}
