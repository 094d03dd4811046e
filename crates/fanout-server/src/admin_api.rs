//! The server REST API (docs/api.md, `/v1/openapi.json`): per-application administration with the
//! app's admin UserSig as bearer token. DismissRoom, RemoveUser, room listing and description, and
//! role parameter sets at runtime. Every failure is a JSON `{"error", "field"?}` with a 4xx status;
//! each app is rate limited.

use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fanout_signal::{RoleConfig, RoomId, UserId};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most users one RemoveUser call may name (as TRTC's API).
pub const MAX_REMOVE_USERS: usize = 10;
/// Largest request body, bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// A JSON error response.
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }
    fn field(status: StatusCode, field: &str, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: Some(field.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(f) => json!({"error": self.error, "field": f}),
            None => json!({"error": self.error}),
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Token buckets per application.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<u32, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token from `app`'s bucket of `rate` per second (burst `rate`).
    pub fn allow(&self, app: u32, rate: u32) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let rate = f64::from(rate);
        let (tokens, last) = buckets.entry(app).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The REST routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/apps/{app}/rooms", get(list_rooms))
        .route("/v1/apps/{app}/rooms/{room}", get(describe::<Numeric>))
        .route("/v1/apps/{app}/str_rooms/{room}", get(describe::<Str>))
        .route(
            "/v1/apps/{app}/rooms/{room}/dismiss",
            post(dismiss::<Numeric>),
        )
        .route(
            "/v1/apps/{app}/str_rooms/{room}/dismiss",
            post(dismiss::<Str>),
        )
        .route(
            "/v1/apps/{app}/rooms/{room}/remove_users",
            post(remove::<Numeric>),
        )
        .route(
            "/v1/apps/{app}/str_rooms/{room}/remove_users",
            post(remove::<Str>),
        )
        .route("/v1/apps/{app}/roles", get(list_roles))
        .route(
            "/v1/apps/{app}/roles/{name}",
            put(put_role).delete(delete_role),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// A request body, or the JSON error for one that is too large or unreadable.
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

fn body_bytes(body: Body) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_BODY} bytes"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("unreadable body: {e}"))
        }
    })
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks the app exists, the bearer token is its admin's UserSig, and the rate limit.
fn authorize(state: &AppState, app: &str, headers: &HeaderMap) -> Result<u32, ApiError> {
    let app: u32 = app
        .parse()
        .map_err(|_| ApiError::field(StatusCode::NOT_FOUND, "sdk_app_id", "no such application"))?;
    let Some(cfg) = state.config.apps.iter().find(|a| a.sdk_app_id == app) else {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "sdk_app_id",
            "no such application",
        ));
    };
    // Counted before authentication, so guessing tokens is throttled too.
    if !state.admin_limiter.allow(app, cfg.rest_rate_limit) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {} requests per second for this app",
                cfg.rest_rate_limit
            ),
        ));
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Authorization: Bearer <UserSig of the app's admin_user> is required",
            )
        })?;
    let now = fanout_signal::Now::system().unix;
    if let Err(e) = fanout_auth::verify_usersig(token, app, &cfg.secret_key, &cfg.admin_user, now) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("admin UserSig rejected: {}", e.code()),
        ));
    }
    Ok(app)
}

fn numeric_room(room: &str) -> Result<RoomId, ApiError> {
    let n: u64 = room.parse().map_err(|_| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "room_id",
            "room_id must be an integer",
        )
    })?;
    RoomId::numeric(n)
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "room_id", e.to_string()))
}

fn string_room(room: &str) -> Result<RoomId, ApiError> {
    RoomId::string(room)
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "str_room_id", e.to_string()))
}

fn not_open() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "the room is not open")
}

async fn list_rooms(
    State(state): State<Arc<AppState>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let app = authorize(&state, &app, &headers)?;
    let rooms = state.with_hub(|h| h.rooms(app));
    let rooms: Vec<Value> = rooms
        .into_iter()
        .map(|r| {
            let mut v = json!({"owner": r.owner, "users": r.users.len()});
            if let Some(o) = v.as_object_mut() {
                match &r.room {
                    RoomId::Num(n) => o.insert("room_id".into(), json!(n)),
                    RoomId::Str(s) => o.insert("str_room_id".into(), json!(s)),
                };
            }
            v
        })
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

/// How a route names its room: `/rooms/{room_id}` or `/str_rooms/{str_room_id}`.
trait RoomKind {
    fn parse(room: &str) -> Result<RoomId, ApiError>;
}

/// `/rooms/{room_id}`.
struct Numeric;
/// `/str_rooms/{str_room_id}`.
struct Str;

impl RoomKind for Numeric {
    fn parse(room: &str) -> Result<RoomId, ApiError> {
        numeric_room(room)
    }
}

impl RoomKind for Str {
    fn parse(room: &str) -> Result<RoomId, ApiError> {
        string_room(room)
    }
}

async fn describe<K: RoomKind>(
    State(state): State<Arc<AppState>>,
    Path((app, room)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let app = authorize(&state, &app, &headers)?;
    let room = K::parse(&room)?;
    state
        .with_hub(|h| h.describe_room(app, &room))
        .map(Json)
        .ok_or_else(not_open)
}

async fn dismiss<K: RoomKind>(
    State(state): State<Arc<AppState>>,
    Path((app, room)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let app = authorize(&state, &app, &headers)?;
    let room = K::parse(&room)?;
    let removed = state
        .with_hub(|h| h.dismiss_room(app, &room))
        .ok_or_else(not_open)?;
    Ok(Json(json!({ "dismissed": true, "users_removed": removed })))
}

/// Parses a JSON body of at most MAX_BODY bytes into an object.
fn json_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_BODY} bytes"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )),
    }
}

async fn remove<K: RoomKind>(
    State(state): State<Arc<AppState>>,
    Path((app, room)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let app = authorize(&state, &app, &headers)?;
    let body = body_bytes(body)?;
    let room = K::parse(&room)?;
    let body = json_body(&body)?;
    if let Some(k) = body.keys().find(|k| k.as_str() != "user_ids") {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            k,
            format!("unknown field `{k}`"),
        ));
    }
    let list = match body.get("user_ids") {
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "user_ids",
                "user_ids must be an array of strings",
            ))
        }
        None => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "user_ids",
                "user_ids is required",
            ))
        }
    };
    if list.is_empty() || list.len() > MAX_REMOVE_USERS {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "user_ids",
            format!("give 1 to {MAX_REMOVE_USERS} user ids"),
        ));
    }
    let mut users = Vec::with_capacity(list.len());
    for u in list {
        let s = u.as_str().ok_or_else(|| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "user_ids",
                "user_ids must be an array of strings",
            )
        })?;
        users
            .push(UserId::parse(s).map_err(|e| {
                ApiError::field(StatusCode::BAD_REQUEST, "user_ids", e.to_string())
            })?);
    }
    let removed = state
        .with_hub(|h| h.remove_users(app, &room, &users))
        .ok_or_else(not_open)?;
    Ok(Json(json!({ "removed": removed })))
}

async fn list_roles(
    State(state): State<Arc<AppState>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let app = authorize(&state, &app, &headers)?;
    state
        .with_hub(|h| {
            h.app_config(app)
                .map(|c| json!({"default_role": c.default_role, "roles": c.roles}))
        })
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such application"))
}

fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn put_role(
    State(state): State<Arc<AppState>>,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let app = authorize(&state, &app, &headers)?;
    if !valid_role_name(&name) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "name",
            "a role name is 1..=32 letters, digits, `_` or `-`",
        ));
    }
    let role = role_from_json(&json_body(&body_bytes(body)?)?)?;
    let stored = role.clone();
    state.with_hub(|h| h.set_role(app, &name, role));
    Ok(Json(json!({"role_name": name, "limits": stored})))
}

/// The numeric role parameters and their defaults (as in docs/config.md).
const ROLE_NUMBERS: [(&str, u32); 6] = [
    ("max_video_kbps", 1500),
    ("max_width", 1280),
    ("max_height", 720),
    ("max_fps", 30),
    ("max_audio_kbps", 64),
    ("max_sub_video_kbps", 1500),
];

/// Validates a role body field by field, naming the first bad one.
fn role_from_json(obj: &serde_json::Map<String, Value>) -> Result<RoleConfig, ApiError> {
    if let Some(k) = obj
        .keys()
        .find(|k| *k != "can_publish" && !ROLE_NUMBERS.iter().any(|(n, _)| n == k))
    {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            k,
            format!("unknown field `{k}`"),
        ));
    }
    let can_publish = match obj.get("can_publish") {
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "can_publish",
                "must be a boolean",
            ))
        }
        None => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "can_publish",
                "is required",
            ))
        }
    };
    let mut numbers = [0u32; 6];
    for (slot, (field, default)) in numbers.iter_mut().zip(ROLE_NUMBERS) {
        *slot = match obj.get(field) {
            None => default,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        field,
                        "must be a whole number from 1 to 4294967295",
                    )
                })?,
        };
    }
    let [max_video_kbps, max_width, max_height, max_fps, max_audio_kbps, max_sub_video_kbps] =
        numbers;
    Ok(RoleConfig {
        can_publish,
        max_video_kbps,
        max_width,
        max_height,
        max_fps,
        max_audio_kbps,
        max_sub_video_kbps,
    })
}

async fn delete_role(
    State(state): State<Arc<AppState>>,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let app = authorize(&state, &app, &headers)?;
    match state.with_hub(|h| h.delete_role(app, &name)) {
        Ok(true) => Ok(Json(json!({"deleted": name}))),
        Ok(false) => Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "name",
            "no such role",
        )),
        Err(e) => Err(ApiError::field(StatusCode::CONFLICT, "name", e)),
    }
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
