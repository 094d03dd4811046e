//! Shared harness for the integration tests: starts a real server on a loopback port with two
//! applications, and drives real WebSocket clients against it.
#![allow(dead_code)]

use fanout_server::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP_A: u32 = 1400000001;
pub const KEY_A: &str = "key-of-app-a-0123456789abcdef";
pub const APP_B: u32 = 1400000002;
pub const KEY_B: &str = "key-of-app-b-fedcba9876543210";
/// App C requires PrivateMapKeys.
pub const APP_C: u32 = 1400000003;
pub const KEY_C: &str = "key-of-app-c-pmk-required";

/// The test config: three apps, short timers so lifecycle tests run in seconds.
pub fn test_config() -> String {
    format!(
        r#"
[server]
http = "127.0.0.1:0"
reconnect_grace_secs = 2
auth_timeout_secs = 2
ping_interval_secs = 1
idle_timeout_secs = 2

[[apps]]
sdk_app_id = {APP_A}
secret_key = "{KEY_A}"
default_role = "anchor"
max_rooms = 3
max_users_per_room = 3

[apps.roles.anchor]
can_publish = true
max_video_kbps = 1500
max_width = 1280
max_height = 720
max_fps = 30

[apps.roles.anchor_sd]
can_publish = true
max_video_kbps = 600
max_width = 640
max_height = 360
max_fps = 15

[apps.roles.audience]
can_publish = false

[[apps]]
sdk_app_id = {APP_B}
secret_key = "{KEY_B}"
default_role = "audience"

[apps.roles.audience]
can_publish = false

[apps.roles.anchor]
can_publish = true

[[apps]]
sdk_app_id = {APP_C}
secret_key = "{KEY_C}"
default_role = "anchor"
private_map_key_required = true

[apps.roles.anchor]
can_publish = true
"#
    )
}

pub struct Server {
    pub running: fanout_server::Running,
    pub url: String,
}

/// Starts a real server on a free loopback port.
pub async fn start() -> Server {
    start_with(&test_config()).await
}

pub async fn start_with(toml: &str) -> Server {
    let config = Config::from_toml(toml).expect("test config");
    let running = fanout_server::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("server starts");
    let url = format!("ws://{}/v1/signal", running.addr);
    Server { running, url }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn key_of(app: u32) -> &'static str {
    match app {
        APP_A => KEY_A,
        APP_B => KEY_B,
        APP_C => KEY_C,
        _ => "unknown-app-key",
    }
}

/// A valid UserSig for `user` in `app`, issued now for a day.
pub fn sig(app: u32, user: &str) -> String {
    fanout_auth::gen_usersig(app, key_of(app), user, 86400, now())
}

/// A real WebSocket client speaking the signalling protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_req: i64,
    /// Events received while waiting for replies, in arrival order.
    pub events: Vec<Value>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl Client {
    pub async fn connect(server: &Server) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(&server.url)
            .await
            .expect("websocket connects");
        Client {
            ws,
            next_req: 0,
            events: Vec::new(),
        }
    }

    /// Sends a raw frame.
    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// Sends `op` with `fields` and returns the reply with the matching `res` (events seen meanwhile
    /// are kept in `events`).
    pub async fn request(&mut self, op: &str, fields: Value) -> Value {
        self.next_req += 1;
        let req = self.next_req;
        let mut obj = fields.as_object().cloned().unwrap_or_default();
        obj.insert("req".into(), json!(req));
        obj.insert("op".into(), json!(op));
        self.send_raw(Message::text(Value::Object(obj).to_string()))
            .await;
        self.reply_for(Some(req)).await
    }

    /// Waits for the reply whose `res` equals `req` (`None` = `null`).
    pub async fn reply_for(&mut self, req: Option<i64>) -> Value {
        let want = req.map_or(Value::Null, Value::from);
        loop {
            let v = self.next_json().await.expect("a reply before the socket closed");
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            if v.get("res") == Some(&want) {
                return v;
            }
            panic!("unexpected frame {v}");
        }
    }

    /// The next JSON text frame, or `None` when the socket closed. Panics after WAIT.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait time");
            match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server sends JSON"))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits for the next close frame; returns its code and reason.
    pub async fn wait_close(&mut self) -> Option<(u16, String)> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close within the wait time");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => return Some((f.code.into(), f.reason.to_string())),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits for the next event named `name` (taking earlier queued ones first).
    pub async fn event(&mut self, name: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i);
        }
        loop {
            let v = self
                .next_json()
                .await
                .unwrap_or_else(|| panic!("socket closed while waiting for {name}"));
            if v["event"] == name {
                return v;
            }
            self.events.push(v);
        }
    }

    /// Asserts that no event arrives within `d`.
    pub async fn no_event_within(&mut self, d: Duration) {
        assert!(self.events.is_empty(), "unexpected events {:?}", self.events);
        if let Ok(msg) = tokio::time::timeout(d, self.ws.next()).await {
            match msg {
                Some(Ok(Message::Text(t))) => panic!("unexpected frame {t}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    Box::pin(self.no_event_within(d / 2)).await
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// `enter_room` with a valid UserSig for a numeric room; returns the reply.
    pub async fn enter(&mut self, app: u32, user: &str, room: u32) -> Value {
        self.request(
            "enter_room",
            json!({"sdk_app_id": app, "user_id": user, "user_sig": sig(app, user), "room_id": room}),
        )
        .await
    }

    /// Connects and enters; panics unless it succeeds.
    pub async fn entered(server: &Server, app: u32, user: &str, room: u32) -> Client {
        let mut c = Client::connect(server).await;
        let r = c.enter(app, user, room).await;
        assert_eq!(r["ok"], true, "enter failed: {r}");
        c
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Drops the TCP connection without a close handshake (a crash or network loss).
    pub fn vanish(self) {
        drop(self);
    }
}

/// Asserts the reply failed with `code`.
#[track_caller]
pub fn assert_code(reply: &Value, code: i64) {
    assert_eq!(reply["ok"], false, "expected failure {code}, got {reply}");
    assert_eq!(reply["code"], code, "wrong code in {reply}");
}
