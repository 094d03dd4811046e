//! The server's configuration file (TOML): one `Config` with documented defaults and `validate()`.
//! docs/config.md describes every key; a test keeps the two in step.

use fanout_signal::AppConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// The embedded default configuration (`fanout serve` without `--config`).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub media: MediaSection,
    pub apps: Vec<AppConfig>,
}

/// `[media]`: the UDP side. Worker N listens on `udp_port + N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// Address the media UDP sockets bind to.
    #[serde(default = "default_media_bind")]
    pub bind: std::net::IpAddr,
    /// UDP port of the first media worker (0 picks free ports).
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// Address put in ICE candidates, for a server behind NAT (default: `bind`).
    #[serde(default)]
    pub public_ip: Option<std::net::IpAddr>,
    /// Number of media worker threads (default: the number of cores).
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_media_bind() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}
fn default_udp_port() -> u16 {
    50000
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            bind: default_media_bind(),
            udp_port: default_udp_port(),
            public_ip: None,
            workers: default_workers(),
        }
    }
}

/// `[server]`: the HTTP listener and connection lifecycle timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP listener (signalling WebSocket at /v1/signal).
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// How long a user whose connection dropped stays in its room.
    #[serde(default = "default_grace")]
    pub reconnect_grace_secs: u64,
    /// A connection that has not entered a room within this time is closed.
    #[serde(default = "default_auth_timeout")]
    pub auth_timeout_secs: u64,
    /// How often the server pings each WebSocket.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_secs: u64,
    /// A WebSocket silent for this long (no frame, no pong) counts as dropped.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// On SIGTERM, how long to wait for users to leave before exiting.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// A failed event callback is retried this often, for up to a minute.
    #[serde(default = "default_callback_retry")]
    pub callback_retry_secs: u64,
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_grace() -> u64 {
    30
}
fn default_auth_timeout() -> u64 {
    10
}
fn default_ping_interval() -> u64 {
    5
}
fn default_idle_timeout() -> u64 {
    10
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_callback_retry() -> u64 {
    10
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: default_http(),
            reconnect_grace_secs: default_grace(),
            auth_timeout_secs: default_auth_timeout(),
            ping_interval_secs: default_ping_interval(),
            idle_timeout_secs: default_idle_timeout(),
            callback_retry_secs: default_callback_retry(),
            shutdown_grace_secs: default_shutdown_grace(),
        }
    }
}

impl Config {
    /// Parses and validates TOML text. Errors name the bad key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The embedded default.
    pub fn embedded_default() -> Self {
        // The embedded file is checked by a unit test; fall back loudly if it were ever broken.
        Self::from_toml(DEFAULT_TOML).unwrap_or_else(|e| panic!("embedded default config: {e}"))
    }

    /// Checks values serde cannot; the message starts with the dotted key.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        if s.ping_interval_secs == 0 {
            return Err("server.ping_interval_secs: must be at least 1".into());
        }
        if s.idle_timeout_secs <= s.ping_interval_secs {
            return Err("server.idle_timeout_secs: must be longer than ping_interval_secs".into());
        }
        if s.callback_retry_secs == 0 || s.callback_retry_secs > 60 {
            return Err("server.callback_retry_secs: must be in 1..=60".into());
        }
        if s.auth_timeout_secs == 0 {
            return Err("server.auth_timeout_secs: must be at least 1".into());
        }
        if self.media.workers == 0 || self.media.workers > 256 {
            return Err("media.workers: must be in 1..=256".into());
        }
        if self.media.udp_port != 0 && usize::from(self.media.udp_port) + self.media.workers > 65536
        {
            return Err("media.udp_port: udp_port + workers exceeds 65535".into());
        }
        if self.media.bind.is_unspecified() && self.media.public_ip.is_none() {
            return Err("media.public_ip: needed when media.bind is a wildcard address".into());
        }
        if self.apps.is_empty() {
            return Err("apps: at least one [[apps]] table is needed".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            app.validate(&format!("apps[{i}]"))?;
            if !seen.insert(app.sdk_app_id) {
                return Err(format!(
                    "apps[{i}].sdk_app_id: {} appears twice",
                    app.sdk_app_id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::from_toml(DEFAULT_TOML).unwrap();
        assert_eq!(c.server.http.to_string(), "127.0.0.1:8080");
        let app = &c.apps[0];
        assert_eq!(app.default_role, "anchor");
        let anchor = &app.roles["anchor"];
        assert!(anchor.can_publish);
        assert_eq!(
            (
                anchor.max_video_kbps,
                anchor.max_width,
                anchor.max_height,
                anchor.max_fps
            ),
            (1500, 1280, 720, 30)
        );
        let sd = &app.roles["anchor_sd"];
        assert_eq!(
            (sd.max_video_kbps, sd.max_width, sd.max_height, sd.max_fps),
            (600, 640, 360, 15)
        );
        assert!(!app.roles["audience"].can_publish);
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = DEFAULT_TOML.replace("reconnect_grace_secs = 30", "reconect_grace_secs = 30");
        let err = Config::from_toml(&text).unwrap_err();
        assert!(err.contains("reconect_grace_secs"), "{err}");
        let text = DEFAULT_TOML.replace("max_fps = 15", "max_fps = 15\nmax_fpz = 3");
        let err = Config::from_toml(&text).unwrap_err();
        assert!(err.contains("max_fpz"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = DEFAULT_TOML.replace("default_role = \"anchor\"", "default_role = \"nobody\"");
        let err = Config::from_toml(&text).unwrap_err();
        assert!(err.starts_with("apps[0].default_role"), "{err}");
        let twice = format!(
            "{DEFAULT_TOML}\n{}",
            &DEFAULT_TOML[DEFAULT_TOML.find("[[apps]]").unwrap()..]
        );
        let err = Config::from_toml(&twice).unwrap_err();
        assert!(err.contains("appears twice"), "{err}");
        let text = DEFAULT_TOML.replace("max_rooms = 1000", "max_rooms = -1");
        assert!(Config::from_toml(&text).unwrap_err().contains("max_rooms"));
    }
}
