//! The WebSocket protocol's messages: parsing client requests (strictly, with a code for every fault)
//! and shaping replies and server events. See docs/protocol.md.

use crate::error::SignalError;
use crate::ids::RoomId;
use crate::media::{LayerChoice, StreamKind};
use serde::Serialize;
use serde_json::{Map, Value};

/// Largest text frame a client may send, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// A parsed client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    EnterRoom(EnterRoom),
    ExitRoom,
    SwitchRole {
        role_name: String,
        private_map_key: Option<String>,
    },
    Ping,
    /// The publishing connection's offer and what each media section carries.
    Publish {
        sdp: String,
        tracks: Vec<(String, StreamKind)>,
    },
    /// The client's answer to the subscribing connection's offer.
    SubscribeAnswer {
        sdp: String,
    },
    /// Receive (or stop receiving) one stream of another user, optionally choosing its layer and
    /// saying how it is shown.
    SetSubscription {
        user_id: String,
        kind: StreamKind,
        enabled: bool,
        layer: Option<LayerChoice>,
        constraints: Option<Constraints>,
    },
    /// A trickled client ICE candidate for one of the two connections.
    IceCandidate {
        publisher: bool,
        candidate: String,
    },
}

impl Request {
    /// The op's name, for logs and metrics.
    pub fn op(&self) -> &'static str {
        match self {
            Request::EnterRoom(_) => "enter_room",
            Request::ExitRoom => "exit_room",
            Request::SwitchRole { .. } => "switch_role",
            Request::Ping => "ping",
            Request::Publish { .. } => "publish",
            Request::SubscribeAnswer { .. } => "subscribe_answer",
            Request::SetSubscription { .. } => "set_subscription",
            Request::IceCandidate { .. } => "ice_candidate",
        }
    }
}

/// `enter_room` fields, validated for shape (the hub checks them against the app).
#[derive(Debug, Clone, PartialEq)]
pub struct EnterRoom {
    /// As sent; a value outside u32 is an unknown app (reported after the room id is checked).
    pub sdk_app_id: u64,
    pub user_id: String,
    pub user_sig: String,
    pub room: RoomId,
    pub role_name: Option<String>,
    pub private_map_key: Option<String>,
}

/// One incoming text frame: the request id (when it could be read) and the request or why it is bad.
#[derive(Debug)]
pub struct Envelope {
    pub req: Option<i64>,
    pub request: Result<Request, SignalError>,
}

/// Parses one text frame. Never panics; every fault becomes a `SignalError` with its code.
pub fn parse(text: &str) -> Envelope {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Envelope {
                req: None,
                request: Err(SignalError::Malformed(format!("not JSON: {e}"))),
            }
        }
    };
    let Value::Object(obj) = value else {
        return Envelope {
            req: None,
            request: Err(SignalError::Malformed("a request is a JSON object".into())),
        };
    };
    let req = match obj.get("req") {
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        None | Some(Value::Null) => {
            return Envelope {
                req: None,
                request: Err(SignalError::MissingParam("req")),
            }
        }
        Some(_) => {
            return Envelope {
                req: None,
                request: Err(SignalError::Malformed("`req` must be an integer".into())),
            }
        }
    };
    Envelope {
        req,
        request: parse_op(&obj),
    }
}

fn parse_op(obj: &Map<String, Value>) -> Result<Request, SignalError> {
    let op = req_str(obj, "op")?;
    match op {
        "enter_room" => parse_enter_room(obj).map(Request::EnterRoom),
        "exit_room" => Ok(Request::ExitRoom),
        "ping" => Ok(Request::Ping),
        "switch_role" => Ok(Request::SwitchRole {
            role_name: req_str(obj, "role_name")?.to_string(),
            private_map_key: opt_str(obj, "private_map_key")?.map(str::to_string),
        }),
        "publish" => parse_publish(obj),
        "subscribe_answer" => Ok(Request::SubscribeAnswer {
            sdp: req_str(obj, "sdp")?.to_string(),
        }),
        "set_subscription" => parse_set_subscription(obj),
        "ice_candidate" => {
            let publisher = match req_str(obj, "target")? {
                "publisher" => true,
                "subscriber" => false,
                _ => {
                    return Err(SignalError::Malformed(
                        "`target` must be \"publisher\" or \"subscriber\"".into(),
                    ))
                }
            };
            // An empty candidate marks the end of candidates; accept it.
            let candidate = match obj.get("candidate") {
                Some(Value::String(c)) => c.clone(),
                None | Some(Value::Null) => return Err(SignalError::MissingParam("candidate")),
                Some(_) => return Err(type_error("candidate", "a string")),
            };
            Ok(Request::IceCandidate {
                publisher,
                candidate,
            })
        }
        other => Err(SignalError::Malformed(format!(
            "unknown op `{}`",
            truncate(other, 64)
        ))),
    }
}

fn parse_enter_room(obj: &Map<String, Value>) -> Result<EnterRoom, SignalError> {
    let sdk_app_id = match obj.get("sdk_app_id") {
        None | Some(Value::Null) => return Err(SignalError::MissingParam("sdk_app_id")),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(u64::MAX),
        Some(_) => return Err(type_error("sdk_app_id", "an integer")),
    };
    let user_id = req_str(obj, "user_id")?.to_string();
    let user_sig = req_str(obj, "user_sig")?.to_string();
    let room = match (obj.get("room_id"), obj.get("str_room_id")) {
        (None | Some(Value::Null), None | Some(Value::Null)) => {
            return Err(SignalError::MissingParam("room_id"))
        }
        (Some(v), None | Some(Value::Null)) => match v.as_u64() {
            Some(n) => RoomId::numeric(n)?,
            None => {
                return Err(SignalError::BadRoomId(
                    "room_id must be an integer in 1..=4294967294".into(),
                ))
            }
        },
        (None | Some(Value::Null), Some(v)) => match v.as_str() {
            Some(s) => RoomId::string(s)?,
            None => {
                return Err(SignalError::BadRoomId(
                    "str_room_id must be a string".into(),
                ))
            }
        },
        (Some(_), Some(_)) => {
            return Err(SignalError::BadRoomId(
                "give room_id or str_room_id, not both".into(),
            ))
        }
    };
    let role_name = opt_str(obj, "role_name")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let private_map_key = opt_str(obj, "private_map_key")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(EnterRoom {
        sdk_app_id,
        user_id,
        user_sig,
        room,
        role_name,
        private_map_key,
    })
}

/// Most media sections one `publish` may declare (audio, video, sub video).
pub const MAX_PUBLISH_TRACKS: usize = 3;

fn parse_publish(obj: &Map<String, Value>) -> Result<Request, SignalError> {
    let sdp = req_str(obj, "sdp")?.to_string();
    let list = match obj.get("tracks") {
        None | Some(Value::Null) => return Err(SignalError::MissingParam("tracks")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(type_error("tracks", "an array")),
    };
    if list.len() > MAX_PUBLISH_TRACKS {
        return Err(SignalError::Malformed(format!(
            "at most {MAX_PUBLISH_TRACKS} tracks (one audio, one video, one sub_video)"
        )));
    }
    let mut tracks: Vec<(String, StreamKind)> = Vec::with_capacity(list.len());
    for t in list {
        let Value::Object(t) = t else {
            return Err(type_error("tracks[]", "an object {mid, kind}"));
        };
        let mid = req_str(t, "mid")?;
        if mid.len() > 32 {
            return Err(SignalError::Malformed("`mid` longer than 32 bytes".into()));
        }
        let kind = StreamKind::parse(req_str(t, "kind")?).ok_or_else(|| {
            SignalError::Malformed("`kind` must be \"audio\", \"video\" or \"sub_video\"".into())
        })?;
        if tracks.iter().any(|(m, k)| m == mid || *k == kind) {
            return Err(SignalError::Malformed(
                "each mid and each kind may appear once in `tracks`".into(),
            ));
        }
        tracks.push((mid.to_string(), kind));
    }
    Ok(Request::Publish { sdp, tracks })
}

fn parse_set_subscription(obj: &Map<String, Value>) -> Result<Request, SignalError> {
    let user_id = req_str(obj, "user_id")?.to_string();
    let kind = StreamKind::parse(req_str(obj, "kind")?).ok_or_else(|| {
        SignalError::Malformed("`kind` must be \"audio\", \"video\" or \"sub_video\"".into())
    })?;
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => return Err(SignalError::MissingParam("enabled")),
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(type_error("enabled", "a boolean")),
    };
    let layer = match opt_str(obj, "layer")? {
        None => None,
        Some("high") => Some(LayerChoice::High),
        Some("low") => Some(LayerChoice::Low),
        Some(_) => {
            return Err(SignalError::Malformed(
                "`layer` must be \"high\" or \"low\"".into(),
            ))
        }
    };
    let constraints = parse_constraints(obj)?;
    Ok(Request::SetSubscription {
        user_id,
        kind,
        enabled,
        layer,
        constraints,
    })
}

/// `max_width`, `max_height`, `paused`, `priority`: `None` when none is given (the fields absent
/// then take their defaults).
fn parse_constraints(obj: &Map<String, Value>) -> Result<Option<Constraints>, SignalError> {
    let fields = ["max_width", "max_height", "paused", "priority"];
    if !fields
        .iter()
        .any(|f| obj.get(*f).is_some_and(|v| !v.is_null()))
    {
        return Ok(None);
    }
    let side = |field: &'static str| -> Result<u32, SignalError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => match v.as_u64() {
                Some(n) if n <= MAX_RENDER_SIDE => Ok(n as u32),
                _ => Err(type_error(
                    field,
                    &format!("an integer from 0 to {MAX_RENDER_SIDE}"),
                )),
            },
        }
    };
    let paused = match obj.get("paused") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(type_error("paused", "a boolean")),
    };
    let priority = match obj.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 255 => n as u8,
            _ => return Err(type_error("priority", "an integer from 0 to 255")),
        },
    };
    Ok(Some(Constraints {
        max_width: side("max_width")?,
        max_height: side("max_height")?,
        paused,
        priority,
    }))
}

fn type_error(field: &str, what: &str) -> SignalError {
    SignalError::Malformed(format!("`{field}` must be {what}"))
}

/// A required, non-empty string field.
fn req_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, SignalError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(SignalError::MissingParam(field)),
        Some(Value::String(s)) if s.is_empty() => Err(SignalError::MissingParam(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(type_error(field, "a string")),
    }
}

/// An optional string field (absent or null is `None`).
fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, SignalError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(type_error(field, "a string")),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A successful reply: `{"res": req, "ok": true, ...body}`.
pub fn reply_ok(req: Option<i64>, body: Value) -> String {
    let mut obj = match body {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    obj.insert("res".into(), req.map_or(Value::Null, Value::from));
    obj.insert("ok".into(), Value::Bool(true));
    Value::Object(obj).to_string()
}

/// A failed reply: `{"res": req, "ok": false, "code": n, "error": text}`.
pub fn reply_err(req: Option<i64>, err: &SignalError) -> String {
    serde_json::json!({
        "res": req,
        "ok": false,
        "code": err.code(),
        "error": err.to_string(),
    })
    .to_string()
}

/// Why a user left a room, as `user_exited` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitReason {
    Left,
    Timeout,
    Kicked,
}

/// How a subscriber shows one received stream (`set_subscription`'s optional fields): the largest
/// size it renders it at (0: no limit), whether it is paused (negotiated but not sent), and its
/// priority when bandwidth is short (higher first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Constraints {
    pub max_width: u32,
    pub max_height: u32,
    pub paused: bool,
    pub priority: u8,
}

/// Largest `max_width`/`max_height` accepted (8K).
pub const MAX_RENDER_SIDE: u64 = 7680;

/// Why a connection was removed from its room, as `kicked` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Removed by the application's admin.
    RemovedByAdmin = 1,
    /// The room was dismissed.
    RoomDismissed = 2,
    /// The same UserID entered from another connection.
    EnteredElsewhere = 3,
}

impl Serialize for KickReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

/// An event the server pushes to one connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    UserEntered {
        user_id: String,
        role_name: String,
    },
    UserExited {
        user_id: String,
        reason: ExitReason,
    },
    RoleChanged {
        user_id: String,
        role_name: String,
    },
    Kicked {
        reason: KickReason,
    },
    StreamAdded {
        user_id: String,
        kind: StreamKind,
    },
    StreamRemoved {
        user_id: String,
        kind: StreamKind,
    },
    /// A new offer for the subscribing connection; `tracks` is every stream it carries after it.
    Offer {
        sdp: String,
        tracks: Vec<OfferTrack>,
    },
    LimitExceeded {
        kind: StreamKind,
        reason: String,
    },
    ActiveSpeakers {
        user_ids: Vec<String>,
    },
    /// A stream this connection receives is no longer sent: the estimated bandwidth does not fit
    /// even its lowest layer (`reason` is `"bandwidth"`).
    StreamPaused {
        user_id: String,
        kind: StreamKind,
        reason: &'static str,
    },
    /// A stream paused for bandwidth is sent again.
    StreamResumed {
        user_id: String,
        kind: StreamKind,
    },
    /// Dynacast, to a publisher: of its simulcast `kind` stream, only the layers named by these
    /// rids are needed by some subscriber now (the lowest always is); it may stop encoding the
    /// others until a later `layers_needed` names them again.
    LayersNeeded {
        kind: StreamKind,
        rids: Vec<String>,
    },
    /// The server is shutting down: no new entries; users should move within `grace_secs`.
    ServerShutdown {
        grace_secs: u64,
    },
}

/// One media section of a subscribing-connection offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferTrack {
    pub mid: String,
    pub user_id: String,
    pub kind: StreamKind,
}

impl Event {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> i32 {
        match parse(text).request {
            Err(e) => e.code(),
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn set_subscription_constraints() {
        let base =
            r#"{"req":1,"op":"set_subscription","user_id":"a","kind":"video","enabled":true"#;
        let parsed = |extra: &str| parse(&format!("{base}{extra}}}")).request;
        match parsed("") {
            Ok(Request::SetSubscription { constraints, .. }) => assert_eq!(constraints, None),
            other => panic!("{other:?}"),
        }
        match parsed(r#","max_width":320,"max_height":180,"priority":2"#) {
            Ok(Request::SetSubscription { constraints, .. }) => assert_eq!(
                constraints,
                Some(Constraints {
                    max_width: 320,
                    max_height: 180,
                    paused: false,
                    priority: 2
                })
            ),
            other => panic!("{other:?}"),
        }
        match parsed(r#","paused":true"#) {
            Ok(Request::SetSubscription { constraints, .. }) => {
                assert_eq!(constraints.map(|c| c.paused), Some(true))
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            r#","max_width":7681"#,
            r#","max_width":-1"#,
            r#","max_height":1.5"#,
            r#","max_height":"180""#,
            r#","max_width":18446744073709551616"#,
            r#","paused":"yes""#,
            r#","priority":256"#,
            r#","priority":-3"#,
        ] {
            let err = parsed(bad).expect_err(bad);
            assert_eq!(err.code(), -3344, "{bad}");
        }
        let err = parsed(r#","priority":256"#).unwrap_err();
        assert!(err.to_string().contains("priority"), "{err}");
    }

    #[test]
    fn malformed_frames() {
        assert_eq!(code("not json"), -3344);
        assert_eq!(code("[1,2]"), -3344);
        assert_eq!(code(r#"{"op":"ping"}"#), -3316);
        assert_eq!(code(r#"{"req":"1","op":"ping"}"#), -3344);
        assert_eq!(code(r#"{"req":1.5,"op":"ping"}"#), -3344);
        assert_eq!(code(r#"{"req":1}"#), -3316);
        assert_eq!(code(r#"{"req":1,"op":7}"#), -3344);
        assert_eq!(code(r#"{"req":1,"op":"fly"}"#), -3344);
        assert_eq!(parse(r#"{"req":7,"op":"fly"}"#).req, Some(7));
    }

    #[test]
    fn enter_room_fields() {
        let ok = r#"{"req":1,"op":"enter_room","sdk_app_id":1,"user_id":"a","user_sig":"s","room_id":5}"#;
        assert!(parse(ok).request.is_ok());
        assert_eq!(
            code(r#"{"req":1,"op":"enter_room","user_id":"a","user_sig":"s","room_id":5}"#),
            -3316
        );
        assert_eq!(
            code(
                r#"{"req":1,"op":"enter_room","sdk_app_id":"1","user_id":"a","user_sig":"s","room_id":5}"#
            ),
            -3344
        );
        assert_eq!(
            code(
                r#"{"req":1,"op":"enter_room","sdk_app_id":1,"user_id":"","user_sig":"s","room_id":5}"#
            ),
            -3316
        );
        assert_eq!(
            code(r#"{"req":1,"op":"enter_room","sdk_app_id":1,"user_id":"a","user_sig":"s"}"#),
            -3316
        );
        assert_eq!(
            code(
                r#"{"req":1,"op":"enter_room","sdk_app_id":1,"user_id":"a","user_sig":"s","room_id":0}"#
            ),
            -3318
        );
        assert_eq!(
            code(
                r#"{"req":1,"op":"enter_room","sdk_app_id":1,"user_id":"a","user_sig":"s","room_id":-3}"#
            ),
            -3318
        );
        assert_eq!(
            code(
                r#"{"req":1,"op":"enter_room","sdk_app_id":1,"user_id":"a","user_sig":"s","room_id":5,"str_room_id":"x"}"#
            ),
            -3318
        );
        assert_eq!(
            code(
                r#"{"req":1,"op":"enter_room","sdk_app_id":1,"user_id":"a","user_sig":"s","room_id":5,"role_name":3}"#
            ),
            -3344
        );
    }
}
