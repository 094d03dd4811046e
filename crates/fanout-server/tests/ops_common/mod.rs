//! Harness of the operator-surface tests (server REST API, event callbacks, Prometheus metrics):
//! a config with REST-friendly apps, a small HTTP/1.1 client (hyper) for the server's REST API and
//! for Prometheus, admin tokens, URL encoding and bounded polling. Submodules: [`receiver`], a real
//! HTTP receiver of event callbacks that can fail or be slow; [`prom`], a real Prometheus server.
//!
//! Each test binary that uses it declares `mod common; mod ops_common;` (the WebSocket [`Client`]
//! comes from `common`).
#![allow(dead_code)]

pub mod prom;
pub mod receiver;

use crate::common::config::{anchor_app, TestConfig};
// Not every test binary uses every key.
#[allow(unused_imports)]
pub use crate::common::{Client, Server, APP_A, APP_B, KEY_A, KEY_B, WAIT};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// An app whose REST API allows only 5 requests per second.
pub const APP_R: u32 = 1400000004;
pub const KEY_R: &str = "key-of-app-r-rate-limited-0000";
/// App B's admin is not the default `administrator`.
pub const B_ADMIN: &str = "boss";
/// App A's and R's admin (the default `admin_user`).
pub const ADMIN: &str = "administrator";
/// App R's `rest_rate_limit`.
pub const R_RATE: usize = 5;

/// The ops test config: the shared apps A and B of `common` (not C) and app R. `server_extra` is
/// added to `[server]` (its keys replace the defaults) and `app_a_extra` to app A's table (for
/// `callback_url` and friends). App A: a generous REST rate and room quotas. App B: admin user
/// `boss`, a generous REST rate. App R: default role `anchor`, REST rate limit 5.
pub fn config_with(server_extra: &str, app_a_extra: &str) -> String {
    TestConfig {
        server: &format!(
            "reconnect_grace_secs = 5\nauth_timeout_secs = 10\nidle_timeout_secs = 3\n{server_extra}"
        ),
        app_a: &format!(
            "max_rooms = 100\nmax_users_per_room = 50\nrest_rate_limit = 10000\n{app_a_extra}"
        ),
        app_b: &format!("admin_user = \"{B_ADMIN}\"\nrest_rate_limit = 10000"),
        more_apps: &anchor_app(APP_R, KEY_R, &format!("rest_rate_limit = {R_RATE}")),
        ..Default::default()
    }
    .toml()
}

/// The ops test config without extras.
pub fn ops_config() -> String {
    config_with("", "")
}

/// Starts a real server with the ops config.
pub async fn start_ops() -> Server {
    crate::common::start_with(&ops_config()).await
}

/// The secret key of `app` (ops apps, including R).
pub fn key_of(app: u32) -> &'static str {
    match app {
        APP_R => KEY_R,
        _ => crate::common::key_of(app),
    }
}

pub fn admin_of(app: u32) -> &'static str {
    match app {
        APP_B => B_ADMIN,
        _ => ADMIN,
    }
}

/// The app's admin UserSig, issued now for a day (the REST bearer token).
pub fn admin_token(app: u32) -> String {
    fanout_auth::gen_usersig(app, key_of(app), admin_of(app), 86400, crate::common::now())
}

/// A UserSig of `user` in `app` (ops apps, including R).
pub fn user_sig(app: u32, user: &str) -> String {
    fanout_auth::gen_usersig(app, key_of(app), user, 86400, crate::common::now())
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for path segments and query
/// values).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// The body as JSON, or `Null` when it is not JSON.
    pub json: Value,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.text())
    }
}

/// Sends one HTTP/1.1 request on a new connection to `addr` and reads the whole reply, all within
/// WAIT. `headers` are added as given (so tests control `Authorization` exactly).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let body: Bytes = body.into();
    let what = format!("{method} {path}");
    tokio::time::timeout(WAIT, async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{what}: connect to {addr}: {e}"));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap_or_else(|e| panic!("{what}: handshake: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string());
        if !body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .unwrap_or_else(|e| panic!("{what}: request: {e}"));
        let resp = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: no reply: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{what}: reply body: {e}"))
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            json,
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no reply within {WAIT:?}"))
}

/// A REST call with an explicit `Authorization` header value (`None`: no header).
pub async fn api_auth(
    server: &Server,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: impl Into<Bytes>,
) -> Reply {
    let mut headers = Vec::new();
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    http(server.running.addr, method, path, &headers, body).await
}

/// A REST call with `token` as bearer.
pub async fn api_token(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: impl Into<Bytes>,
) -> Reply {
    let auth = format!("Bearer {token}");
    api_auth(server, method, path, Some(&auth), body).await
}

/// A REST call to `/v1/apps/{app}{rest}` as that app's admin.
pub async fn api(server: &Server, method: &str, app: u32, rest: &str, body: Value) -> Reply {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let path = format!("/v1/apps/{app}{rest}");
    api_token(server, method, &path, &admin_token(app), body).await
}

/// GET `/v1/apps/{app}{rest}` as the admin; asserts 200 and returns the JSON.
pub async fn get_ok(server: &Server, app: u32, rest: &str) -> Value {
    let r = api(server, "GET", app, rest, Value::Null).await;
    assert_eq!(r.status, 200, "GET /v1/apps/{app}{rest}: {r}");
    r.json
}

/// Asserts a JSON error reply: `status`, a JSON object with a non-empty `error` string, and
/// `field` equal to `field` when given.
#[track_caller]
pub fn assert_error(r: &Reply, status: u16, field: Option<&str>) {
    assert_eq!(r.status, status, "expected {status}, got {r}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "error replies are JSON; content-type {ct:?} in {r}"
    );
    let obj = r
        .json
        .as_object()
        .unwrap_or_else(|| panic!("error body is not a JSON object: {r}"));
    let error = obj
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no `error` string in {r}"));
    assert!(!error.is_empty(), "empty `error` in {r}");
    if let Some(field) = field {
        assert_eq!(
            obj.get("field"),
            Some(&json!(field)),
            "the error should name the field `{field}`: {r}"
        );
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within` with `what` and
/// the last value seen by `last`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                if tokio::time::Instant::now() >= deadline {
                    panic!("{what} not seen within {within:?}; last: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects a WebSocket client and enters `app`'s numeric room `room` (optionally with a role);
/// panics unless it succeeds; returns the client and the reply.
pub async fn enter_num(
    server: &Server,
    app: u32,
    user: &str,
    room: u32,
    role: Option<&str>,
) -> (Client, Value) {
    let mut fields = json!({"sdk_app_id": app, "user_id": user, "user_sig": user_sig(app, user),
                            "room_id": room});
    if let Some(role) = role {
        fields["role_name"] = json!(role);
    }
    let mut c = Client::connect(server).await;
    let r = c.request("enter_room", fields).await;
    assert_eq!(r["ok"], true, "{user} enters {app}/{room}: {r}");
    (c, r)
}

/// Like [`enter_num`] for a string room.
pub async fn enter_str(
    server: &Server,
    app: u32,
    user: &str,
    room: &str,
    role: Option<&str>,
) -> (Client, Value) {
    let mut fields = json!({"sdk_app_id": app, "user_id": user, "user_sig": user_sig(app, user),
                            "str_room_id": room});
    if let Some(role) = role {
        fields["role_name"] = json!(role);
    }
    let mut c = Client::connect(server).await;
    let r = c.request("enter_room", fields).await;
    assert_eq!(r["ok"], true, "{user} enters {app}/{room:?}: {r}");
    (c, r)
}

/// The users of a describe reply, by user id.
pub fn users_by_id(describe: &Value) -> std::collections::BTreeMap<String, Value> {
    describe["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {describe}"))
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().expect("user_id").to_owned(),
                u.clone(),
            )
        })
        .collect()
}

/// Sorted strings of a JSON array.
pub fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect();
    out.sort();
    out
}

/// The default limits of the config's roles.
pub fn anchor_limits() -> Value {
    json!({"can_publish": true, "max_video_kbps": 1500, "max_width": 1280, "max_height": 720,
           "max_fps": 30, "max_audio_kbps": 64, "max_sub_video_kbps": 1500})
}

pub fn audience_limits() -> Value {
    json!({"can_publish": false, "max_video_kbps": 1500, "max_width": 1280, "max_height": 720,
           "max_fps": 30, "max_audio_kbps": 64, "max_sub_video_kbps": 1500})
}
