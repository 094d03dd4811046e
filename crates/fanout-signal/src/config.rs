//! Per-application settings (tenants) and role parameter sets, as read from the server's TOML config.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One application (SDKAppID): an isolated tenant with its own key, roles and quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The SDKAppID.
    pub sdk_app_id: u32,
    /// Secret key used for UserSig and PrivateMapKey (TLS-Sig-API v2).
    pub secret_key: String,
    /// Role given to users who enter without a role name or with an unknown one.
    pub default_role: String,
    /// When true, `enter_room` needs a PrivateMapKey for the user, app and room.
    #[serde(default)]
    pub private_map_key_required: bool,
    /// Most rooms open at once in this application.
    #[serde(default = "default_max_rooms")]
    pub max_rooms: u32,
    /// Most users in one room.
    #[serde(default = "default_max_users_per_room")]
    pub max_users_per_room: u32,
    /// The identity whose UserSig authorizes the server REST API for this app.
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// Server REST API requests allowed per second for this app (TRTC's default is 20).
    #[serde(default = "default_rest_rate")]
    pub rest_rate_limit: u32,
    /// Where event callbacks (rooms, users, streams) are POSTed; none when absent. http:// URLs.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Key of the callbacks' `Sign` header: base64(HMAC-SHA256(callback_key, body)).
    #[serde(default)]
    pub callback_key: Option<String>,
    /// Development only: exposes `POST /v1/dev/usersig`, which mints UserSigs for this app for
    /// anyone who asks. The embedded demo config sets it; production configs must not.
    #[serde(default)]
    pub dev_mode: bool,
    /// Named role parameter sets.
    pub roles: BTreeMap<String, RoleConfig>,
}

fn default_admin_user() -> String {
    "administrator".to_string()
}
fn default_rest_rate() -> u32 {
    20
}
fn default_max_rooms() -> u32 {
    10_000
}
fn default_max_users_per_room() -> u32 {
    10_000
}

/// A role parameter set: what a user entering with this role name may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Whether users of this role may publish streams at all.
    pub can_publish: bool,
    /// Cap per camera video stream, kbit/s.
    #[serde(default = "default_video_kbps")]
    pub max_video_kbps: u32,
    /// Largest camera video width, pixels.
    #[serde(default = "default_width")]
    pub max_width: u32,
    /// Largest camera video height, pixels.
    #[serde(default = "default_height")]
    pub max_height: u32,
    /// Highest camera video frame rate.
    #[serde(default = "default_fps")]
    pub max_fps: u32,
    /// Cap per audio stream, kbit/s.
    #[serde(default = "default_audio_kbps")]
    pub max_audio_kbps: u32,
    /// Cap per screen-share (sub video) stream, kbit/s.
    #[serde(default = "default_sub_video_kbps")]
    pub max_sub_video_kbps: u32,
}

fn default_video_kbps() -> u32 {
    1500
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    30
}
fn default_audio_kbps() -> u32 {
    64
}
fn default_sub_video_kbps() -> u32 {
    1500
}

impl AppConfig {
    /// Checks what serde cannot: returns the dotted path of the first bad key and why.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if self.sdk_app_id == 0 {
            return Err(format!("{path}.sdk_app_id: must not be 0"));
        }
        if self.secret_key.is_empty() {
            return Err(format!("{path}.secret_key: must not be empty"));
        }
        if self.roles.is_empty() {
            return Err(format!("{path}.roles: at least one role is needed"));
        }
        if !self.roles.contains_key(&self.default_role) {
            return Err(format!(
                "{path}.default_role: `{}` is not one of the app's roles",
                self.default_role
            ));
        }
        if crate::UserId::parse(&self.admin_user).is_err() {
            return Err(format!("{path}.admin_user: not a valid UserID"));
        }
        if let Some(url) = &self.callback_url {
            if !url.starts_with("http://") {
                return Err(format!(
                    "{path}.callback_url: must be an http:// URL (terminate TLS in a local proxy)"
                ));
            }
            if self.callback_key.as_deref().unwrap_or("").is_empty() {
                return Err(format!("{path}.callback_key: required with callback_url"));
            }
        }
        if self.rest_rate_limit == 0 {
            return Err(format!("{path}.rest_rate_limit: must be at least 1"));
        }
        if self.max_rooms == 0 {
            return Err(format!("{path}.max_rooms: must be at least 1"));
        }
        if self.max_users_per_room == 0 {
            return Err(format!("{path}.max_users_per_room: must be at least 1"));
        }
        for (name, role) in &self.roles {
            if name.is_empty()
                || name.len() > 32
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "{path}.roles.{name}: a role name is 1..=32 letters, digits, `_` or `-`"
                ));
            }
            role.validate(&format!("{path}.roles.{name}"))?;
        }
        Ok(())
    }
}

impl RoleConfig {
    fn validate(&self, path: &str) -> Result<(), String> {
        for (key, value) in [
            ("max_video_kbps", self.max_video_kbps),
            ("max_width", self.max_width),
            ("max_height", self.max_height),
            ("max_fps", self.max_fps),
            ("max_audio_kbps", self.max_audio_kbps),
            ("max_sub_video_kbps", self.max_sub_video_kbps),
        ] {
            if value == 0 {
                return Err(format!("{path}.{key}: must be at least 1"));
            }
        }
        Ok(())
    }
}
