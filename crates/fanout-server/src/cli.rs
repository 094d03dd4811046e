//! The `fanout` command line: `serve` (the default), `sig gen|pmk|verify`, `config check`.

use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Fanout: a real-time SFU with TRTC-compatible rooms and credentials.
#[derive(Debug, Parser)]
#[command(name = "fanout", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `fanout [--config FILE]` is the same as `fanout serve [--config FILE]`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Generate and verify UserSigs and PrivateMapKeys (TLS-Sig-API v2).
    #[command(subcommand)]
    Sig(SigCommand),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Configuration file (TOML). Without it, the embedded default config is used: one demo app,
    /// HTTP on 127.0.0.1:8080.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SigCommand {
    /// Print a UserSig.
    Gen {
        #[command(flatten)]
        who: Who,
        /// Validity in seconds from --time.
        #[arg(long, default_value_t = 180 * 86400)]
        expire: u64,
        /// Issue time, Unix seconds (default: now).
        #[arg(long)]
        time: Option<u64>,
    },
    /// Print a PrivateMapKey (room ticket).
    Pmk {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        room: RoomArg,
        /// Privilege bits: 1 create room, 2 enter room, 4 send audio, 8 receive audio, 16 send video,
        /// 32 receive video, 64 send sub video, 128 receive sub video (255 = all).
        #[arg(long)]
        privileges: u32,
        /// Validity in seconds from --time.
        #[arg(long, default_value_t = 180 * 86400)]
        expire: u64,
        /// Issue time, Unix seconds (default: now).
        #[arg(long)]
        time: Option<u64>,
    },
    /// Verify a UserSig, or a PrivateMapKey when --room or --str-room is given. Prints one JSON line;
    /// exits 0 when valid, 1 when not.
    Verify {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        room: OptRoomArg,
        /// Verify as of this Unix time (default: now).
        #[arg(long)]
        now: Option<u64>,
        /// The token.
        token: String,
    },
}

#[derive(Debug, Args)]
pub struct Who {
    /// SDKAppID.
    #[arg(long)]
    pub app: u32,
    /// The application's secret key.
    #[arg(long)]
    pub key: String,
    /// UserID.
    #[arg(long)]
    pub user: String,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RoomArg {
    /// Numeric room id.
    #[arg(long)]
    pub room: Option<u32>,
    /// String room id.
    #[arg(long)]
    pub str_room: Option<String>,
}

#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct OptRoomArg {
    /// Numeric room id (verifies a PrivateMapKey).
    #[arg(long)]
    pub room: Option<u32>,
    /// String room id (verifies a PrivateMapKey).
    #[arg(long)]
    pub str_room: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a config file; prints the first problem and exits 1 when there is one.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn room_of<'a>(room: Option<u32>, str_room: &'a Option<String>) -> Option<fanout_auth::Room<'a>> {
    match (room, str_room) {
        (Some(n), _) => Some(fanout_auth::Room::Numeric(n)),
        (None, Some(s)) => Some(fanout_auth::Room::Str(s)),
        (None, None) => None,
    }
}

/// Runs a `sig` subcommand; returns the text to print and the exit code.
pub fn run_sig(cmd: &SigCommand) -> (String, i32) {
    match cmd {
        SigCommand::Gen { who, expire, time } => (
            fanout_auth::gen_usersig(
                who.app,
                &who.key,
                &who.user,
                *expire,
                time.unwrap_or_else(unix_now),
            ),
            0,
        ),
        SigCommand::Pmk {
            who,
            room,
            privileges,
            expire,
            time,
        } => {
            let Some(r) = room_of(room.room, &room.str_room) else {
                return ("give --room or --str-room".into(), 2);
            };
            match fanout_auth::gen_private_map_key(
                who.app,
                &who.key,
                &who.user,
                r,
                *privileges,
                *expire,
                time.unwrap_or_else(unix_now),
            ) {
                Ok(token) => (token, 0),
                Err(e) => (format!("cannot generate: {e}"), 2),
            }
        }
        SigCommand::Verify {
            who,
            room,
            now,
            token,
        } => {
            let now = now.unwrap_or_else(unix_now);
            let result: Result<Value, fanout_auth::AuthError> =
                match room_of(room.room, &room.str_room) {
                    None => fanout_auth::verify_usersig(token, who.app, &who.key, &who.user, now)
                        .map(|i| {
                            json!({
                                "ok": true,
                                "kind": "UserSig",
                                "identifier": i.identifier,
                                "sdk_app_id": i.sdk_app_id,
                                "time": i.time,
                                "expire": i.expire,
                                "expires_at": i.expires_at,
                            })
                        }),
                    Some(r) => fanout_auth::verify_private_map_key(
                        token, who.app, &who.key, &who.user, r, now,
                    )
                    .map(|i| {
                        json!({
                            "ok": true,
                            "kind": "PrivateMapKey",
                            "identifier": i.usersig.identifier,
                            "sdk_app_id": i.usersig.sdk_app_id,
                            "time": i.usersig.time,
                            "expire": i.usersig.expire,
                            "expires_at": i.usersig.expires_at,
                            "room_id": i.room_id,
                            "str_room_id": i.str_room_id,
                            "privilege_map": i.privilege_map,
                            "privileges": privilege_names(i.privilege_map),
                        })
                    }),
                };
            match result {
                Ok(v) => (v.to_string(), 0),
                Err(e) => (
                    json!({"ok": false, "error": e.code(), "detail": e.to_string()}).to_string(),
                    1,
                ),
            }
        }
    }
}

/// The privilege bits by name, for humans reading `sig verify`.
fn privilege_names(bits: u32) -> Value {
    const NAMES: [(&str, u32); 8] = [
        ("create_room", 1),
        ("enter_room", 2),
        ("send_audio", 4),
        ("recv_audio", 8),
        ("send_video", 16),
        ("recv_video", 32),
        ("send_sub_video", 64),
        ("recv_sub_video", 128),
    ];
    let mut m = serde_json::Map::new();
    for (name, bit) in NAMES {
        m.insert(name.into(), Value::Bool(bits & bit != 0));
    }
    Value::Object(m)
}

/// Runs `config check`; returns the text to print and the exit code.
pub fn run_config_check(file: &std::path::Path) -> (String, i32) {
    match Config::load(file) {
        Ok(c) => (
            format!(
                "{}: ok ({} app(s), HTTP on {})",
                file.display(),
                c.apps.len(),
                c.server.http
            ),
            0,
        ),
        Err(e) => (e, 1),
    }
}
