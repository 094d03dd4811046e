//! Shared harness for the integration tests: starts a real server on a loopback port with three
//! applications, and drives real WebSocket clients against it. The config all harnesses share is
//! in [`config`].
#![allow(dead_code)]

use fanout_server::config::Config;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod config;

// Not every test binary uses every app.
#[allow(unused_imports)]
pub use config::{key_of, APP_A, APP_B, APP_C, KEY_A, KEY_B, KEY_C};

/// The test config: the shared apps A, B and C, app A with at most 3 rooms of 3 users, and short
/// timers so lifecycle tests run in seconds.
pub fn test_config() -> String {
    config::TestConfig {
        server: "reconnect_grace_secs = 2\nauth_timeout_secs = 2\nidle_timeout_secs = 2",
        app_a: "max_rooms = 3\nmax_users_per_room = 3",
        more_apps: &config::app_c(),
        ..Default::default()
    }
    .toml()
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

/// A valid UserSig for `user` in `app`, issued now for a day.
pub fn sig(app: u32, user: &str) -> String {
    fanout_auth::gen_usersig(app, key_of(app), user, 86400, now())
}

/// The `enter_room` fields for a numeric room with a valid UserSig (tests add or change fields).
pub fn enter_fields(app: u32, user: &str, room: u32) -> Value {
    json!({"sdk_app_id": app, "user_id": user, "user_sig": sig(app, user), "room_id": room})
}

/// A PrivateMapKey for `user` in `room` of `app` (signed with the app's key), issued now for a day.
pub fn pmk(app: u32, user: &str, room: fanout_auth::Room<'_>, bits: u32) -> String {
    fanout_auth::gen_private_map_key(app, key_of(app), user, room, bits, 86400, now())
        .expect("PrivateMapKey inputs are valid")
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the background reader saw on the socket (pings and pongs are not reported).
#[derive(Debug)]
enum Frame {
    Text(String),
    Binary,
    /// A close frame: its code and reason, if it had any.
    Close(Option<(u16, String)>),
    /// The socket ended without a close frame (EOF or an error).
    Gone(String),
}

/// A real WebSocket client speaking the signalling protocol.
///
/// A background task reads the socket all the time, so the client answers the server's WebSocket
/// pings like a real one (the test config's idle timeout is 2 s) while the test waits elsewhere;
/// frames are queued for the test to take. [`Client::go_silent`] stops that reading.
pub struct Client {
    sink: SplitSink<Ws, Message>,
    frames: mpsc::UnboundedReceiver<Frame>,
    stop_reading: Option<oneshot::Sender<()>>,
    reader: JoinHandle<()>,
    next_req: i64,
    /// Events received while waiting for replies, in arrival order.
    pub events: Vec<Value>,
}

pub const WAIT: Duration = Duration::from_secs(5);

async fn read_loop(
    mut stream: SplitStream<Ws>,
    tx: mpsc::UnboundedSender<Frame>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => {
                // Silent: never read again (so never answer a ping), but keep the TCP connection
                // open (this task owns half of it) until the client is dropped, which aborts it.
                std::future::pending::<()>().await;
            }
            msg = stream.next() => {
                let frame = match msg {
                    Some(Ok(Message::Text(t))) => Frame::Text(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(_))) => Frame::Binary,
                    Some(Ok(Message::Close(f))) => {
                        Frame::Close(f.map(|f| (u16::from(f.code), f.reason.to_string())))
                    }
                    Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
                    Some(Err(e)) => Frame::Gone(e.to_string()),
                    None => Frame::Gone("end of stream".into()),
                };
                let last = matches!(frame, Frame::Close(_) | Frame::Gone(_));
                if tx.send(frame).is_err() || last {
                    return;
                }
            }
        }
    }
}

impl Client {
    pub async fn connect(server: &Server) -> Client {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&server.url))
            .await
            .expect("websocket connects in time")
            .expect("websocket connects");
        let (sink, stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let reader = tokio::spawn(read_loop(stream, tx, stop_rx));
        Client {
            sink,
            frames,
            stop_reading: Some(stop_tx),
            reader,
            next_req: 0,
            events: Vec::new(),
        }
    }

    /// Sends a raw frame.
    pub async fn send_raw(&mut self, msg: Message) {
        self.sink.send(msg).await.expect("send");
    }

    /// Sends a raw text frame and returns the reply with `res: null`.
    pub async fn send_text_expect_null_res(&mut self, text: &str) -> Value {
        self.send_raw(Message::text(text.to_owned())).await;
        self.reply_for(None).await
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

    /// Sends `{"op":"ping"}` and asserts the reply is `ok` (the connection is alive and usable).
    pub async fn assert_alive(&mut self) {
        let r = self.request("ping", json!({})).await;
        assert_eq!(r["ok"], true, "ping failed: {r}");
    }

    /// Waits for the reply whose `res` equals `req` (`None` = `null`).
    pub async fn reply_for(&mut self, req: Option<i64>) -> Value {
        let want = req.map_or(Value::Null, Value::from);
        loop {
            let v = self
                .next_json()
                .await
                .expect("a reply before the socket closed");
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

    async fn next_frame(&mut self, within: Duration, what: &str) -> Option<Frame> {
        tokio::time::timeout(within, self.frames.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} within {within:?}"))
    }

    /// The next JSON text frame, or `None` when the socket closed. Panics after WAIT.
    pub async fn next_json(&mut self) -> Option<Value> {
        self.next_json_within(WAIT).await
    }

    /// The next JSON text frame, or `None` when the socket closed. Panics after `within`.
    pub async fn next_json_within(&mut self, within: Duration) -> Option<Value> {
        loop {
            match self.next_frame(within, "a frame").await {
                Some(Frame::Text(t)) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Some(Frame::Binary) => continue,
                Some(Frame::Close(_) | Frame::Gone(_)) | None => return None,
            }
        }
    }

    /// Waits (up to WAIT) for the socket to close; returns the close frame's code and reason, or
    /// `None` when it ended without one. Text frames meanwhile are kept in `events` if events.
    pub async fn wait_close(&mut self) -> Option<(u16, String)> {
        self.wait_close_within(WAIT).await
    }

    /// Like [`Client::wait_close`] with a bound of `within`.
    pub async fn wait_close_within(&mut self, within: Duration) -> Option<(u16, String)> {
        loop {
            match self.next_frame(within, "the socket to close").await {
                Some(Frame::Close(f)) => return f,
                Some(Frame::Gone(_)) | None => return None,
                Some(Frame::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    if v.get("event").is_some() {
                        self.events.push(v);
                    }
                }
                Some(Frame::Binary) => continue,
            }
        }
    }

    /// Waits (up to WAIT) for the next event named `name` (taking earlier queued ones first).
    pub async fn event(&mut self, name: &str) -> Value {
        self.event_within(name, WAIT).await
    }

    /// Waits up to `within` for the next event named `name` (taking earlier queued ones first);
    /// other events seen meanwhile are kept in `events`.
    pub async fn event_within(&mut self, name: &str, within: Duration) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = match tokio::time::timeout(left, self.frames.recv()).await {
                Err(_) => panic!(
                    "no `{name}` event within {within:?} (other events: {:?})",
                    self.events
                ),
                Ok(Some(Frame::Text(t))) => {
                    serde_json::from_str::<Value>(&t).expect("server sends JSON")
                }
                Ok(Some(Frame::Binary)) => continue,
                Ok(other) => panic!("socket ended while waiting for `{name}`: {other:?}"),
            };
            if v["event"] == name {
                return v;
            }
            self.events.push(v);
        }
    }

    /// Asserts that no frame at all (event, reply or close) arrives within `d`, and that no event
    /// is queued from before.
    pub async fn no_event_within(&mut self, d: Duration) {
        assert!(
            self.events.is_empty(),
            "unexpected events {:?}",
            self.events
        );
        if let Ok(frame) = tokio::time::timeout(d, self.frames.recv()).await {
            panic!("unexpected {frame:?} (expected nothing within {d:?})");
        }
    }

    /// `enter_room` with a valid UserSig for a numeric room; returns the reply.
    pub async fn enter(&mut self, app: u32, user: &str, room: u32) -> Value {
        self.request("enter_room", enter_fields(app, user, room))
            .await
    }

    /// Connects and enters; panics unless it succeeds.
    pub async fn entered(server: &Server, app: u32, user: &str, room: u32) -> Client {
        let mut c = Client::connect(server).await;
        let r = c.enter(app, user, room).await;
        assert_eq!(r["ok"], true, "enter failed: {r}");
        c
    }

    /// Stops reading the socket for good, so the client no longer answers WebSocket pings, while
    /// keeping the TCP connection open: a peer that hangs without closing.
    pub fn go_silent(&mut self) {
        if let Some(stop) = self.stop_reading.take() {
            let _ = stop.send(());
        }
    }

    /// Closes with a WebSocket close handshake: sends a close frame and waits (bounded) for the
    /// server's close frame or the end of the connection. Returns the server's close frame, if any.
    pub async fn close(mut self) -> Option<(u16, String)> {
        let _ = self.sink.close().await;
        match tokio::time::timeout(WAIT, async {
            loop {
                match self.frames.recv().await {
                    Some(Frame::Close(f)) => return f,
                    Some(Frame::Gone(_)) | None => return None,
                    Some(_) => continue,
                }
            }
        })
        .await
        {
            Ok(f) => f,
            Err(_) => panic!("the server did not end the connection after our close frame"),
        }
    }

    /// Drops the TCP connection without a close handshake (a crash or network loss).
    pub fn vanish(self) {
        drop(self);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The reader holds the other half of the socket; aborting it drops the TCP connection.
        self.reader.abort();
    }
}

/// Asserts the reply failed with `code`.
#[track_caller]
pub fn assert_code(reply: &Value, code: i64) {
    assert_eq!(reply["ok"], false, "expected failure {code}, got {reply}");
    assert_eq!(reply["code"], code, "wrong code in {reply}");
}

/// Asserts the reply succeeded.
#[track_caller]
pub fn assert_ok(reply: &Value) {
    assert_eq!(reply["ok"], true, "expected success, got {reply}");
}

/// The `user_id`s of a reply's `users` list, sorted.
pub fn user_ids(reply: &Value) -> Vec<String> {
    let mut ids: Vec<String> = reply["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users list in {reply}"))
        .iter()
        .map(|u| {
            u["user_id"]
                .as_str()
                .expect("user_id is a string")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// Sends one raw HTTP/1.1 request (the connection closes after it) and returns (status, headers text, body).
pub async fn http(addr: std::net::SocketAddr, request: String) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}
