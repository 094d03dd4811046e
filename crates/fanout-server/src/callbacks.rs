//! Event callbacks to each application's `callback_url`, in TRTC's shape, signed with the app's
//! `callback_key`. Delivery never slows media or signalling: the hub's events go into a bounded queue
//! per app (full = dropped, counted and logged); one task per app posts them in order, each attempt
//! bounded by 5 s, retrying every `callback_retry_secs` for up to a minute.

use base64::Engine;
use bytes::Bytes;
use fanout_signal::{AppConfig, Callback, RoomId};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use prometheus::IntCounterVec;
use serde_json::json;
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Events waiting per application before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Bound of one delivery attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an event is retried before it is dropped.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The per-app queues.
pub struct Callbacks {
    queues: HashMap<u32, mpsc::Sender<(Callback, u64)>>,
    results: IntCounterVec,
}

struct Target {
    app: u32,
    host: String,
    authority: String,
    path: String,
    key: String,
}

/// `http://host[:port][/path]` -> (connect address, Host header, path).
fn parse_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let connect = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Some((connect, authority.to_string(), path.to_string()))
}

impl Callbacks {
    /// Starts one delivery task per app that has a callback URL.
    pub fn start(apps: &[AppConfig], retry: Duration, results: IntCounterVec) -> Self {
        let mut queues = HashMap::new();
        for app in apps {
            let (Some(url), Some(key)) = (&app.callback_url, &app.callback_key) else {
                continue;
            };
            let Some((host, authority, path)) = parse_url(url) else {
                warn!(
                    app = app.sdk_app_id,
                    url, "callback_url is not a valid http:// URL"
                );
                continue;
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            let target = Target {
                app: app.sdk_app_id,
                host,
                authority,
                path,
                key: key.clone(),
            };
            tokio::spawn(deliver_loop(target, rx, retry, results.clone()));
            queues.insert(app.sdk_app_id, tx);
        }
        Callbacks { queues, results }
    }

    /// Queues one event (never waits).
    pub fn enqueue(&self, cb: Callback) {
        let Some(tx) = self.queues.get(&cb.app) else {
            return;
        };
        let (app, event) = (cb.app, cb.event.event_type());
        if tx.try_send((cb, unix_ms(SystemTime::now()))).is_err() {
            self.results.with_label_values(&["dropped"]).inc();
            warn!(app, event, "callback queue full; event dropped");
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The JSON body, in TRTC's shape: `EventTs`/`EventMsTs` say when the event happened,
/// `CallbackTs` when this attempt is sent.
pub fn body_of(cb: &Callback, event_ms: u64, callback_ms: u64) -> Bytes {
    let ms = event_ms;
    let room = match &cb.room {
        RoomId::Num(n) => json!(n),
        RoomId::Str(s) => json!(s),
    };
    let mut info = json!({
        "RoomId": room,
        "EventTs": ms / 1000,
        "EventMsTs": ms,
    });
    if let Some(obj) = info.as_object_mut() {
        if let Some(u) = &cb.user_id {
            obj.insert("UserId".into(), json!(u));
        }
        if let Some(r) = &cb.role {
            obj.insert("Role".into(), json!(r));
        }
        if let Some(reason) = cb.event.reason() {
            obj.insert("Reason".into(), json!(reason));
        }
    }
    let body = json!({
        "EventGroupId": cb.event.group(),
        "EventType": cb.event.event_type(),
        "CallbackTs": callback_ms,
        "EventInfo": info,
    });
    Bytes::from(body.to_string())
}

/// base64(HMAC-SHA256(key, body)), the `Sign` header.
pub fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn deliver_loop(
    target: Target,
    mut rx: mpsc::Receiver<(Callback, u64)>,
    retry: Duration,
    results: IntCounterVec,
) {
    while let Some((cb, event_ms)) = rx.recv().await {
        let first = Instant::now();
        loop {
            // Each attempt is stamped (CallbackTs) and signed when it is sent, as TRTC does.
            let body = body_of(&cb, event_ms, unix_ms(SystemTime::now()));
            match tokio::time::timeout(ATTEMPT_TIMEOUT, post(&target, body)).await {
                Ok(Ok(())) => {
                    results.with_label_values(&["ok"]).inc();
                    break;
                }
                Ok(Err(e)) => debug!(app = target.app, error = %e, "callback attempt failed"),
                Err(_) => debug!(app = target.app, "callback attempt timed out"),
            }
            if first.elapsed() + retry > GIVE_UP_AFTER {
                results.with_label_values(&["dropped"]).inc();
                warn!(
                    app = target.app,
                    "callback not delivered within a minute; dropped"
                );
                break;
            }
            results.with_label_values(&["retry"]).inc();
            tokio::time::sleep(retry).await;
        }
    }
}

async fn post(target: &Target, body: Bytes) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(&target.host)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("Sign", sign(&target.key, &body))
        .header("SdkAppId", target.app.to_string())
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    // Drain the body so the connection ends cleanly.
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("receiver answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:9000/cb?x=1"),
            Some((
                "127.0.0.1:9000".into(),
                "127.0.0.1:9000".into(),
                "/cb?x=1".into()
            ))
        );
        assert_eq!(
            parse_url("http://example.test"),
            Some(("example.test:80".into(), "example.test".into(), "/".into()))
        );
        assert_eq!(parse_url("https://x/"), None);
        assert_eq!(parse_url("http:///x"), None);
    }

    #[test]
    fn sign_is_hmac_sha256_base64() {
        // RFC 4231 test case 2.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sign("Jefe", b"what do ya want for nothing?"), expected);
        assert_eq!(expected, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    }
}
