//! `--target janus`: the same simulated participants, signalled through Janus's VideoRoom plugin
//! over the Janus HTTP REST API (`--url http://127.0.0.1:8088/janus`), so Fanout and Janus are
//! measured with the same tool. Only signalling differs: the peer connections, the media and every
//! check live on the media threads exactly as for Fanout.
//!
//! Each participant has its own Janus session (kept alive by its long poll and a keepalive every
//! 20 s). Publishers attach `janus.plugin.videoroom`, create the room (ignoring "already exists"),
//! `join` as publisher with their user as display name and `configure` with the JSEP offer; when
//! the room has other publishers they also subscribe to them (rooms where everyone publishes).
//! Subscribers attach, wait until the room's publishers are listed, `join` as subscriber to all of
//! their feeds, answer the offer Janus sends and `start`.

use crate::media::{Cmd, MediaHandle, OfferTrack};
use crate::payload::Kind;
use crate::signal::{Shared, Spec};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

static TXN: AtomicU64 = AtomicU64::new(1);

fn txn() -> String {
    format!("t{}", TXN.fetch_add(1, Ordering::Relaxed))
}

/// Host:port and path of an http:// URL.
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--target janus needs an http:// --url: {url}"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/janus"),
    };
    let auth = if auth.contains(':') {
        auth.to_string()
    } else {
        format!("{auth}:80")
    };
    Ok((auth, path.trim_end_matches('/').to_string()))
}

/// One HTTP/1.1 request (a connection each, `Connection: close`), the reply body as JSON.
async fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to Janus at {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("HTTP send: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("HTTP read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "malformed HTTP reply".to_string())?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP {status} for {method} {path}: {body}"));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).map_err(|e| format!("Janus reply is not JSON ({e}): {body}"))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A Janus session: requests over HTTP, events from a long poll.
struct Session {
    addr: String,
    path: String,
    id: u64,
    events: mpsc::UnboundedReceiver<Value>,
    queued: Vec<Value>,
    poller: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn create(url: &str) -> Result<Session, String> {
        let (addr, path) = split_url(url)?;
        let r = http(
            &addr,
            "POST",
            &path,
            Some(&json!({"janus": "create", "transaction": txn()})),
        )
        .await?;
        let id = r["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("Janus create failed: {r}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (a, p) = (addr.clone(), format!("{path}/{id}"));
        let poller = tokio::spawn(async move {
            let mut last_keepalive = Instant::now();
            loop {
                match http(&a, "GET", &format!("{p}?maxev=10"), None).await {
                    Ok(Value::Array(v)) => {
                        for e in v {
                            if tx.send(e).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(e) => {
                        if e["janus"] != "keepalive" && tx.send(e).is_err() {
                            return;
                        }
                    }
                    Err(_) => {
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                if last_keepalive.elapsed() > Duration::from_secs(20) {
                    last_keepalive = Instant::now();
                    let _ = http(
                        &a,
                        "POST",
                        &p,
                        Some(&json!({"janus": "keepalive", "transaction": txn()})),
                    )
                    .await;
                }
            }
        });
        Ok(Session {
            addr,
            path,
            id,
            events: rx,
            queued: Vec::new(),
            poller,
        })
    }

    async fn attach(&self) -> Result<u64, String> {
        let r = http(
            &self.addr,
            "POST",
            &format!("{}/{}", self.path, self.id),
            Some(&json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": txn()})),
        )
        .await?;
        r["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("Janus attach failed: {r}"))
    }

    /// Sends a plugin message; returns the transaction and Janus's immediate reply.
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<(String, Value), String> {
        let t = txn();
        let mut m = json!({"janus": "message", "body": body, "transaction": t});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let r = http(
            &self.addr,
            "POST",
            &format!("{}/{}/{}", self.path, self.id, handle),
            Some(&m),
        )
        .await?;
        if r["janus"] == "error" {
            return Err(format!("Janus error: {}", r["error"]));
        }
        Ok((t, r))
    }

    /// A synchronous plugin request: its `plugindata.data`.
    async fn sync(&self, handle: u64, body: Value) -> Result<Value, String> {
        let (_, r) = self.message(handle, body, None).await?;
        Ok(r["plugindata"]["data"].clone())
    }

    /// An asynchronous plugin request: the event answering it.
    async fn call(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let (t, r) = self.message(handle, body, jsep).await?;
        if r["janus"] == "success" {
            return Ok(r);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self
                .queued
                .iter()
                .position(|e| e["transaction"] == t.as_str())
            {
                return Ok(self.queued.remove(i));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(e)) => self.queued.push(e),
                Ok(None) => return Err("Janus event poll ended".into()),
                Err(_) => return Err(format!("no Janus event within {timeout:?}")),
            }
        }
    }

    async fn destroy(self) {
        let _ = http(
            &self.addr,
            "POST",
            &format!("{}/{}", self.path, self.id),
            Some(&json!({"janus": "destroy", "transaction": txn()})),
        )
        .await;
        self.poller.abort();
    }
}

fn plugin_error(e: &Value) -> Option<String> {
    let d = &e["plugindata"]["data"];
    if d["error_code"].is_number() {
        return Some(format!("{} ({})", d["error_code"], d["error"]));
    }
    if e["janus"] == "error" {
        return Some(e["error"].to_string());
    }
    None
}

async fn media_call<T>(
    m: &MediaHandle,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Cmd,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    m.send(make(tx));
    rx.await.map_err(|_| "media thread is gone".to_string())?
}

/// Runs one participant against Janus until the run stops; records its failure, if any.
pub async fn participant(shared: Arc<Shared>, spec: Spec, publishers_per_room: u32) {
    let media = &shared.media[(spec.id % shared.media.len() as u64) as usize];
    let mut session = None;
    let r = run(&shared, &spec, publishers_per_room, &mut session).await;
    media.send(Cmd::Remove {
        participant: spec.id,
    });
    if let Some(s) = session {
        s.destroy().await;
    }
    if let Err(m) = r {
        if !shared.connected_once.load(Ordering::Relaxed) {
            let mut f = shared.fatal.lock().unwrap();
            if f.is_none() {
                *f = Some(m);
            }
        } else {
            shared.failures.lock().unwrap().push((spec.user.clone(), m));
        }
    }
}

async fn run(
    shared: &Shared,
    spec: &Spec,
    publishers_per_room: u32,
    slot: &mut Option<Session>,
) -> Result<(), String> {
    let media = &shared.media[(spec.id % shared.media.len() as u64) as usize];
    let to = shared.join_timeout;
    let ws_open = Instant::now();
    let s = tokio::time::timeout(to, Session::create(&shared.url))
        .await
        .map_err(|_| "Janus create timed out".to_string())?
        .map_err(|e| format!("cannot create a Janus session at {}: {e}", shared.url))?;
    shared.connected_once.store(true, Ordering::Relaxed);
    let s = slot.insert(s);
    crate::trace!(ws_open, spec.user, "janus session {}", s.id);
    let room = u64::from(spec.room);
    let mut others = publishers_per_room as usize;

    if let Some(index) = spec.index {
        let h = s.attach().await?;
        let d = s
            .sync(
                h,
                json!({"request": "create", "room": room, "publishers": 1000, "bitrate": 0,
                       "audiocodec": "opus", "videocodec": "vp8", "notify_joining": false}),
            )
            .await?;
        if d["videoroom"] != "created" && d["error_code"] != 427 {
            return Err(format!("cannot create room {room}: {d}"));
        }
        shared.entered[0].fetch_add(1, Ordering::Relaxed);
        let e = s
            .call(
                h,
                json!({"request": "join", "ptype": "publisher", "room": room, "display": spec.user}),
                None,
                to,
            )
            .await?;
        if let Some(err) = plugin_error(&e) {
            return Err(format!("publisher join refused: {err}"));
        }
        let offer = media_call(media, |reply| Cmd::NewPublisher {
            participant: spec.id,
            role: spec.role,
            user: spec.user.clone(),
            index,
            ws_open,
            reply,
        })
        .await
        .map_err(|e| format!("cannot build the publishing connection: {e}"))?;
        let e = s
            .call(
                h,
                json!({"request": "configure", "audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": offer.sdp, "trickle": false})),
                to,
            )
            .await?;
        if let Some(err) = plugin_error(&e) {
            return Err(format!("configure refused: {err}"));
        }
        let answer = e["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("configure brought no JSEP answer: {e}"))?
            .to_string();
        media_call(media, |reply| Cmd::PublisherAnswer {
            participant: spec.id,
            sdp: answer,
            reply,
        })
        .await
        .map_err(|e| format!("cannot apply the publish answer: {e}"))?;
        crate::trace!(ws_open, spec.user, "published");
        others -= 1;
    } else {
        shared.entered[1].fetch_add(1, Ordering::Relaxed);
    }

    if others > 0 {
        // Subscribe to the room's (other) publishers once they are all listed.
        let h = s.attach().await?;
        let deadline = Instant::now() + to;
        let feeds = loop {
            let d = s
                .sync(h, json!({"request": "listparticipants", "room": room}))
                .await?;
            let feeds: Vec<(u64, String)> = d["participants"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|p| p["publisher"] == true && p["display"] != spec.user.as_str())
                        .filter_map(|p| {
                            Some((p["id"].as_u64()?, p["display"].as_str()?.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if feeds.len() >= others {
                break feeds;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "room {room} lists {} of {others} publishers",
                    feeds.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let streams: Vec<Value> = feeds.iter().map(|(f, _)| json!({"feed": f})).collect();
        let e = s
            .call(
                h,
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
                None,
                to,
            )
            .await?;
        if let Some(err) = plugin_error(&e) {
            return Err(format!("subscriber join refused: {err}"));
        }
        let sdp = e["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("subscriber join brought no JSEP offer: {e}"))?
            .to_string();
        let tracks = offer_tracks(&e, &feeds);
        crate::trace!(ws_open, spec.user, "offer received");
        let answer = media_call(media, |reply| Cmd::SubscriberOffer {
            participant: spec.id,
            user: spec.user.clone(),
            role: spec.role,
            ws_open,
            sdp,
            tracks,
            reply,
        })
        .await
        .map_err(|e| format!("cannot answer Janus's offer: {e}"))?;
        let e = s
            .call(
                h,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
                to,
            )
            .await?;
        if let Some(err) = plugin_error(&e) {
            return Err(format!("start refused: {err}"));
        }
        crate::trace!(ws_open, spec.user, "started");
    }

    // Stay until the run stops (the session's long poll keeps it alive); fail on hangup.
    let mut stop = shared.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            e = s.events.recv() => match e {
                Some(e) if e["janus"] == "hangup" => {
                    return Err(format!("Janus hung up: {}", e["reason"]));
                }
                Some(_) => {}
                None => return Err("Janus event poll ended".into()),
            },
            _ = stop.changed() => break,
        }
    }
    Ok(())
}

/// The media sections of a subscriber offer: mid, publisher (by display name) and kind.
fn offer_tracks(e: &Value, feeds: &[(u64, String)]) -> Vec<OfferTrack> {
    e["plugindata"]["data"]["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|st| {
                    let feed = st["feed_id"].as_u64();
                    let user = st["feed_display"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| {
                            feeds
                                .iter()
                                .find(|(f, _)| Some(*f) == feed)
                                .map(|(_, d)| d.clone())
                        })
                        .unwrap_or_default();
                    OfferTrack {
                        mid: st["mid"].as_str().unwrap_or_default().to_string(),
                        user_id: user,
                        kind: match st["type"].as_str() {
                            Some("audio") => Some(Kind::Audio),
                            Some("video") => Some(Kind::Video),
                            _ => None,
                        },
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8088/janus").unwrap(),
            ("127.0.0.1:8088".into(), "/janus".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/janus".into())
        );
        assert!(split_url("ws://x").is_err());
        assert_eq!(dechunk("5\r\nhello\r\n0\r\n\r\n"), "hello");
    }
}
