//! The browser side served by the HTTP listener: the demo page and the JavaScript SDK (embedded in
//! the binary), and the development-only UserSig endpoint.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("../web/index.html");
const FANOUT_JS: &str = include_str!("../web/fanout.js");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}
pub async fn fanout_js() -> Response {
    asset("text/javascript; charset=utf-8", FANOUT_JS)
}
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}
pub async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevUserSigRequest {
    sdk_app_id: u32,
    user_id: String,
}

/// `POST /v1/dev/usersig` {sdk_app_id, user_id} -> {user_sig}: only for apps with `dev_mode = true`.
pub async fn dev_usersig(
    State(state): State<Arc<AppState>>,
    body: Result<Json<DevUserSigRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.body_text()})),
            )
                .into_response()
        }
    };
    let Some(app) = state
        .config
        .apps
        .iter()
        .find(|a| a.sdk_app_id == req.sdk_app_id && a.dev_mode)
    else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no dev_mode application with this sdk_app_id"})),
        )
            .into_response();
    };
    if let Err(e) = fanout_signal::UserId::parse(&req.user_id) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string(), "field": "user_id"})),
        )
            .into_response();
    }
    let now = fanout_signal::Now::system().unix;
    let sig = fanout_auth::gen_usersig(app.sdk_app_id, &app.secret_key, &req.user_id, 86400, now);
    Json(json!({"user_sig": sig})).into_response()
}
