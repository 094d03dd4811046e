//! A real HTTP/1.1 receiver of event callbacks on loopback, written on raw TCP so it can be told
//! to fail (answer 500) or to be slow, plus checks of the callbacks' envelope and signature.

use super::*;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The `callback_key` of app A in [`callback_config`].
pub const CB_KEY: &str = "callback-key-of-app-a-5f2e9c";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status the receiver answered with.
    pub status: u16,
    pub at: Instant,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("callback body is not JSON ({e}): {:?}", self.body))
    }
}

/// How the receiver answers.
#[derive(Default)]
pub struct Behaviour {
    /// Answer the next N requests with 500.
    pub fail_next: usize,
    /// Sleep this long before answering each request.
    pub delay: Duration,
}

/// A real HTTP receiver on loopback.
pub struct Receiver {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    rx: mpsc::UnboundedReceiver<Recorded>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        Self::on(listener)
    }

    /// A receiver on a port that was free a moment ago (for "the receiver comes back").
    pub async fn start_at(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("rebind receiver port");
        Self::on(listener)
    }

    pub fn on(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().expect("addr");
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let b = behaviour.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, b.clone(), tx.clone()));
            }
        });
        Receiver {
            addr,
            behaviour,
            rx,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/cb?tenant=a", self.addr)
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    /// The next request, within `within`.
    pub async fn next(&mut self, within: Duration) -> Recorded {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no callback within {within:?}"))
            .expect("receiver alive")
    }

    /// The next `n` requests answered with 2xx (failed attempts are skipped but kept in `failed`).
    pub async fn delivered(
        &mut self,
        n: usize,
        within: Duration,
        failed: &mut Vec<Recorded>,
    ) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(r)) => r,
                _ => panic!(
                    "only {} of {n} callbacks delivered within {within:?}: {:?}",
                    out.len(),
                    out.iter().map(summary).collect::<Vec<_>>()
                ),
            };
            if (200..300).contains(&r.status) {
                out.push(r);
            } else {
                failed.push(r);
            }
        }
        out
    }

    /// Asserts no request arrives within `d`.
    pub async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(r)) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!("unexpected callback {}", summary(&r));
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length body), answers per the behaviour, records it.
async fn serve(
    mut stream: TcpStream,
    b: Arc<Mutex<Behaviour>>,
    tx: mpsc::UnboundedSender<Recorded>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let path = request_line.next().unwrap_or("").to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let at = Instant::now();
    let (status, delay) = {
        let mut b = b.lock().unwrap();
        let status = if b.fail_next > 0 {
            b.fail_next -= 1;
            500
        } else {
            200
        };
        (status, b.delay)
    };
    // Record before answering: the server sends the next event as soon as it has the answer, and
    // recording after it could let the next request's task record first.
    let _ = tx.send(Recorded {
        method,
        path,
        headers,
        body,
        status,
        at,
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let text = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let reply =
        format!("HTTP/1.1 {status} {text}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// "EventType UserId Role Reason" of one callback, for readable comparisons.
pub fn summary(r: &Recorded) -> String {
    let v = r.json();
    let info = &v["EventInfo"];
    let mut s = format!("{}", v["EventType"]);
    for k in ["UserId", "Role", "Reason"] {
        if let Some(x) = info.get(k) {
            s.push(' ');
            s.push_str(&x.to_string().replace('"', ""));
        }
    }
    s
}

pub fn expected_sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(CB_KEY.as_bytes()).expect("hmac key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Checks one delivered callback's request and envelope: POST to the configured path, the headers,
/// the signature, the shape, the room id and the timestamps (between `t0` and now).
#[track_caller]
pub fn check_envelope(r: &Recorded, room: &Value, t0_ms: u64) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/cb?tenant=a");
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        r.headers.get("sdkappid"),
        Some(&APP_A.to_string()),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.headers.get("sign"),
        Some(&expected_sign(&r.body)),
        "Sign must be base64(HMAC-SHA256(callback_key, raw body)): {:?}",
        r.headers
    );
    assert!(r.headers.contains_key("host"), "{:?}", r.headers);
    let v = r.json();
    let obj = v.as_object().expect("object");
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["CallbackTs", "EventGroupId", "EventInfo", "EventType"],
        "{v}"
    );
    let ty = v["EventType"].as_u64().expect("EventType is a number");
    assert_eq!(v["EventGroupId"].as_u64(), Some(ty / 100), "{v}");
    let info = &v["EventInfo"];
    assert_eq!(&info["RoomId"], room, "{v}");
    let now = now_ms();
    let ms = info["EventMsTs"].as_u64().expect("EventMsTs");
    assert!(
        ms + 1000 >= t0_ms && ms <= now,
        "EventMsTs {ms} not in [{t0_ms}, {now}]: {v}"
    );
    assert_eq!(info["EventTs"].as_u64(), Some(ms / 1000), "{v}");
    let cb = v["CallbackTs"].as_u64().expect("CallbackTs");
    assert!(
        cb >= ms && cb <= now,
        "CallbackTs {cb} vs EventMsTs {ms}, now {now}: {v}"
    );
}

/// The ops config with app A's callbacks going to `url` (signed with [`CB_KEY`]) and retried every
/// second.
pub fn callback_config(server_extra: &str, url: &str) -> String {
    config_with(
        &format!("callback_retry_secs = 1\n{server_extra}"),
        &format!("callback_url = \"{url}\"\ncallback_key = \"{CB_KEY}\""),
    )
}

/// Starts a server with [`callback_config`].
pub async fn start_cb(server_extra: &str, url: &str) -> Server {
    crate::common::start_with(&callback_config(server_extra, url)).await
}
