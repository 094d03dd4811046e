//! The signalling state machine: applications, rooms, members and connections, with admission and room
//! lifecycle. Sans-I/O: callers pass requests and the time in, then drain `poll_event` for what each
//! connection must be told. The server drives it from one lock; tests drive it directly.

use crate::config::{AppConfig, RoleConfig};
use crate::error::SignalError;
use crate::ids::{RoomId, UserId};
use crate::media::{
    LayerChoice, MediaOut, MediaTarget, PublishLimits, PublishPlan, StreamKind, WantedStream,
};
use crate::protocol::{Constraints, EnterRoom, Event, ExitReason, KickReason, OfferTrack, Request};
use fanout_auth::{AuthError, Privileges};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// Identifies one signalling connection (one WebSocket).
pub type ConnId = u64;

/// The time, passed in: a monotonic instant for timers and Unix seconds for credential expiry.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix: u64,
}

impl Now {
    /// Reads both clocks; only drivers (the server) call this, the hub never does.
    pub fn system() -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Now {
            mono: Instant::now(),
            unix,
        }
    }
}

/// All tenants, rooms and connections of one server.
pub struct Hub {
    apps: HashMap<u32, App>,
    conns: HashMap<ConnId, Conn>,
    grace: Duration,
    /// Dropped members in order of their removal deadline.
    dropped: BTreeMap<(Instant, u64), Seat>,
    dropped_seq: u64,
    events: VecDeque<(ConnId, Event)>,
    media: VecDeque<MediaOut>,
    callbacks: VecDeque<Callback>,
    /// Participant id -> where that member sits.
    participants: HashMap<u64, Seat>,
    /// Set when the server shuts down: no new entries.
    draining: bool,
    next_room: u64,
    /// Room handle (the media workers' room id) -> app and room.
    handles: HashMap<u64, (u32, RoomId)>,
    next_id: u64,
}

/// The outcome of a request: a reply now, or media work the driver must finish before replying.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Now(Value),
    /// Hand the offer to the media worker; reply with its answer `{sdp}`.
    Publish(PublishPlan),
    /// Hand the answer to the media worker; reply `{}` when it is applied.
    SubscribeAnswer {
        target: MediaTarget,
        sdp: String,
    },
    /// Hand the candidate to the media worker; reply `{}`.
    IceCandidate {
        target: MediaTarget,
        publisher: bool,
        candidate: String,
    },
}

struct App {
    config: AppConfig,
    rooms: HashMap<RoomId, Room>,
    /// Which room each user (case-folded UserID) is in.
    users: HashMap<String, RoomId>,
}

struct Room {
    /// The media workers' id for this room.
    handle: u64,
    owner: String,
    members: BTreeMap<String, Member>,
}

struct Member {
    user: UserId,
    role_name: String,
    /// Role parameters as they were when the user entered (or switched role).
    role: RoleConfig,
    privileges: u8,
    conn: Option<ConnId>,
    dropped_at: Option<Instant>,
    /// The media workers' id for this member.
    participant: u64,
    /// Streams this member publishes (reported by the media worker).
    streams: BTreeSet<StreamKind>,
    /// Streams of others this member turned off with `set_subscription`: (user key, kind).
    muted: BTreeSet<(String, StreamKind)>,
    /// The others were told of this member (`user_entered`, or it was listed at their entry):
    /// once its role could publish. Its exit is then announced too, whatever its role by then.
    announced: bool,
}

/// Where a connection's user sits: app, room and case-folded user id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seat {
    app: u32,
    room: RoomId,
    user: String,
}

#[derive(Default)]
struct Conn {
    seat: Option<Seat>,
    /// An HTTP session (WHIP/WHEP) rather than a WebSocket: it ends when its media does.
    headless: bool,
    /// Set once the connection has entered a room successfully.
    authenticated: bool,
}

/// What happened, for the application's event callback (TRTC's event numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackEvent {
    RoomCreated,
    RoomClosed,
    UserEntered,
    UserExited(ExitReason),
    RoleSwitched,
    StreamStarted(StreamKind),
    StreamStopped(StreamKind),
}

impl CallbackEvent {
    /// TRTC's `EventType`: 101..105 room events, 201..206 media events.
    pub fn event_type(self) -> u16 {
        match self {
            CallbackEvent::RoomCreated => 101,
            CallbackEvent::RoomClosed => 102,
            CallbackEvent::UserEntered => 103,
            CallbackEvent::UserExited(_) => 104,
            CallbackEvent::RoleSwitched => 105,
            CallbackEvent::StreamStarted(StreamKind::Video) => 201,
            CallbackEvent::StreamStopped(StreamKind::Video) => 202,
            CallbackEvent::StreamStarted(StreamKind::Audio) => 203,
            CallbackEvent::StreamStopped(StreamKind::Audio) => 204,
            CallbackEvent::StreamStarted(StreamKind::SubVideo) => 205,
            CallbackEvent::StreamStopped(StreamKind::SubVideo) => 206,
        }
    }

    /// TRTC's `EventGroupId`: 1 room events, 2 media events.
    pub fn group(self) -> u8 {
        if self.event_type() < 200 {
            1
        } else {
            2
        }
    }

    /// `Reason` of a 104 (user exited): 1 left, 2 timeout, 3 kicked.
    pub fn reason(self) -> Option<u8> {
        match self {
            CallbackEvent::UserExited(ExitReason::Left) => Some(1),
            CallbackEvent::UserExited(ExitReason::Timeout) => Some(2),
            CallbackEvent::UserExited(ExitReason::Kicked) => Some(3),
            _ => None,
        }
    }
}

/// One event for an application's callback URL; the driver adds the timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub app: u32,
    pub room: RoomId,
    pub event: CallbackEvent,
    pub user_id: Option<String>,
    pub role: Option<String>,
}

/// Counts of one application, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppCounts {
    pub app: u32,
    pub rooms: u64,
    pub users: u64,
    pub publishers: u64,
    pub subscribers: u64,
}

/// A read-only summary of one room (for admin views and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSummary {
    pub app: u32,
    pub room: RoomId,
    pub owner: String,
    pub users: Vec<String>,
}

impl Hub {
    /// A hub serving `apps`; a dropped user is removed after `grace`.
    pub fn new(apps: Vec<AppConfig>, grace: Duration) -> Self {
        let apps = apps
            .into_iter()
            .map(|config| {
                (
                    config.sdk_app_id,
                    App {
                        config,
                        rooms: HashMap::new(),
                        users: HashMap::new(),
                    },
                )
            })
            .collect();
        Hub {
            apps,
            conns: HashMap::new(),
            grace,
            dropped: BTreeMap::new(),
            dropped_seq: 0,
            events: VecDeque::new(),
            media: VecDeque::new(),
            callbacks: VecDeque::new(),
            draining: false,
            next_room: 0,
            participants: HashMap::new(),
            handles: HashMap::new(),
            next_id: 0,
        }
    }

    /// The next event for the application's callback URL, in the order they arose.
    pub fn poll_callback(&mut self) -> Option<Callback> {
        self.callbacks.pop_front()
    }

    fn callback(&mut self, app: u32, room: &RoomId, event: CallbackEvent, user: Option<&Member>) {
        self.callbacks.push_back(Callback {
            app,
            room: room.clone(),
            event,
            user_id: user.map(|m| m.user.as_str().to_string()),
            role: user.map(|m| m.role_name.clone()),
        });
    }

    /// The next command for the media workers, in the order they arose.
    pub fn poll_media(&mut self) -> Option<MediaOut> {
        self.media.pop_front()
    }

    /// Registers a new connection before it sends anything.
    pub fn connect(&mut self, conn: ConnId) {
        self.conns.insert(conn, Conn::default());
    }

    /// Registers a connection that is an HTTP media session (WHIP/WHEP): no events reach it, and
    /// it leaves its room when its peer connection closes.
    pub fn connect_headless(&mut self, conn: ConnId) {
        self.conns.insert(
            conn,
            Conn {
                headless: true,
                ..Conn::default()
            },
        );
    }

    /// A participant's peer connection failed or closed. HTTP sessions (WHIP/WHEP) leave their room
    /// then; WebSocket users keep their place (their client renegotiates or reconnects).
    pub fn media_peer_closed(&mut self, participant: u64) {
        let Some(seat) = self.participants.get(&participant).cloned() else {
            return;
        };
        let conn = self
            .apps
            .get(&seat.app)
            .and_then(|a| a.rooms.get(&seat.room))
            .and_then(|r| r.members.get(&seat.user))
            .and_then(|m| m.conn);
        let Some(conn) = conn else { return };
        if self.conns.get(&conn).is_some_and(|c| c.headless) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.seat = None;
            }
            self.remove_member(seat.app, &seat.room, &seat.user, ExitReason::Timeout);
            self.conns.remove(&conn);
        }
    }

    /// Whether the connection has ever entered a room (clients that never do are closed by the driver).
    pub fn is_authenticated(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.authenticated)
    }

    /// The next event for some connection, in the order they arose.
    pub fn poll_event(&mut self) -> Option<(ConnId, Event)> {
        self.events.pop_front()
    }

    /// When `tick` next has work to do, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dropped.keys().next().map(|(t, _)| *t)
    }

    /// Handles one request from `conn`; the `Ok` value is the reply body.
    pub fn handle(
        &mut self,
        conn: ConnId,
        request: Request,
        now: Now,
    ) -> Result<Reply, SignalError> {
        if !self.conns.contains_key(&conn) {
            self.connect(conn);
        }
        match request {
            Request::Ping => Ok(Reply::Now(json!({}))),
            Request::EnterRoom(enter) => self.enter_room(conn, enter, now).map(Reply::Now),
            Request::ExitRoom => self.exit_room(conn).map(Reply::Now),
            Request::SwitchRole {
                role_name,
                private_map_key,
            } => self
                .switch_role(conn, &role_name, private_map_key.as_deref(), now)
                .map(Reply::Now),
            Request::Publish { sdp, tracks } => self.publish(conn, sdp, tracks),
            Request::SubscribeAnswer { sdp } => {
                let (target, _) = self.target_of(conn)?;
                Ok(Reply::SubscribeAnswer { target, sdp })
            }
            Request::IceCandidate {
                publisher,
                candidate,
            } => {
                let (target, _) = self.target_of(conn)?;
                Ok(Reply::IceCandidate {
                    target,
                    publisher,
                    candidate,
                })
            }
            Request::SetSubscription {
                user_id,
                kind,
                enabled,
                layer,
                constraints,
            } => self
                .set_subscription(conn, &user_id, kind, enabled, layer, constraints)
                .map(Reply::Now),
        }
    }

    fn enter_room(
        &mut self,
        conn: ConnId,
        enter: EnterRoom,
        now: Now,
    ) -> Result<Value, SignalError> {
        if self.conns.get(&conn).is_some_and(|c| c.seat.is_some()) {
            return Err(SignalError::AlreadyInRoom);
        }
        if self.draining {
            return Err(SignalError::QuotaExceeded(
                "the server is shutting down and admits no one".into(),
            ));
        }
        let app = self
            .apps
            .get(&u32::try_from(enter.sdk_app_id).unwrap_or(0))
            .ok_or_else(|| SignalError::UnknownApp(enter.sdk_app_id.to_string()))?;
        let cfg = &app.config;
        let user = UserId::parse(&enter.user_id)?;
        fanout_auth::verify_usersig(
            &enter.user_sig,
            cfg.sdk_app_id,
            &cfg.secret_key,
            user.as_str(),
            now.unix,
        )
        .map_err(usersig_error)?;

        let (role_name, role_fallback) = match enter.role_name {
            Some(name) if cfg.roles.contains_key(&name) => (name, false),
            Some(_) => (cfg.default_role.clone(), true),
            None => (cfg.default_role.clone(), false),
        };
        let Some(role) = cfg.roles.get(&role_name).cloned() else {
            return Err(SignalError::RoleNotFound(role_name));
        };
        let room_exists = app.rooms.contains_key(&enter.room);

        let privileges = if cfg.private_map_key_required {
            let token = enter.private_map_key.as_deref().ok_or_else(|| {
                SignalError::PrivateMapKey("this application requires private_map_key".into())
            })?;
            let bits = check_private_map_key(cfg, token, &user, &enter.room, now)?;
            if !Privileges(bits).contains(Privileges::ENTER_ROOM) {
                return Err(SignalError::PrivateMapKey(
                    "the key does not grant entering the room (bit 2)".into(),
                ));
            }
            if !room_exists && !Privileges(bits).contains(Privileges::CREATE_ROOM) {
                return Err(SignalError::PrivateMapKey(
                    "the room does not exist and the key does not grant creating it (bit 1)".into(),
                ));
            }
            bits
        } else {
            Privileges::ALL.bits()
        };

        let previous = app.users.get(user.key()).cloned();
        let rejoining_same_room = previous.as_ref() == Some(&enter.room);
        match app.rooms.get(&enter.room) {
            None if app.rooms.len() >= cfg.max_rooms as usize => {
                return Err(SignalError::QuotaExceeded(format!(
                    "the application already has {} rooms open",
                    cfg.max_rooms
                )))
            }
            Some(room)
                if !rejoining_same_room
                    && room.members.len() >= cfg.max_users_per_room as usize =>
            {
                return Err(SignalError::QuotaExceeded(format!(
                    "the room is full ({} users)",
                    cfg.max_users_per_room
                )))
            }
            _ => {}
        }

        // Admitted. Leave any other room first; take over any other connection of this user.
        let app_id = cfg.sdk_app_id;
        if let Some(old_room) = previous.filter(|r| *r != enter.room) {
            if let Some(old_conn) =
                self.remove_member(app_id, &old_room, user.key(), ExitReason::Left)
            {
                self.kick_conn(old_conn, KickReason::EnteredElsewhere);
            }
        }
        let seat = Seat {
            app: app_id,
            room: enter.room.clone(),
            user: user.key().to_string(),
        };
        let room_is_new = self
            .apps
            .get(&app_id)
            .is_some_and(|a| !a.rooms.contains_key(&enter.room));
        // Room handles count up one per room (the server spreads rooms over media workers by
        // handle); participant ids have their own counter.
        let new_handle = self.next_room + 1;
        if room_is_new {
            self.next_room = new_handle;
            self.handles
                .insert(new_handle, (app_id, enter.room.clone()));
        }
        self.next_id += 1;
        let new_participant = self.next_id;
        let Some(app) = self.apps.get_mut(&app_id) else {
            return Err(SignalError::UnknownApp(app_id.to_string()));
        };
        let room = app.rooms.entry(enter.room.clone()).or_insert_with(|| {
            info!(app = app_id, room = %enter.room, owner = %user, "room created");
            Room {
                handle: new_handle,
                owner: user.as_str().to_string(),
                members: BTreeMap::new(),
            }
        });
        let room_handle = room.handle;
        // (participant, streams that stop) when the member's client comes back on new connections.
        let mut media_reset: Option<(u64, Vec<StreamKind>)> = None;
        let mut entered_new = false;
        let mut notify: Vec<(ConnId, Event)> = Vec::new();
        let mut kicked = None;
        match room.members.get_mut(user.key()) {
            Some(member) => {
                // Resume (dropped within the grace period) or take over (live elsewhere): silent to
                // others unless the role changed.
                if let Some(old) = member.conn.filter(|c| *c != conn) {
                    kicked = Some(old);
                }
                let role_changed = member.role_name != role_name;
                let was_announced = member.announced;
                member.announced |= role.can_publish;
                // The client starts new connections. Its streams continue (the worker keeps their
                // publications for the new publishing connection) if the role and key still allow
                // them; otherwise they stop.
                let keeps = role.can_publish
                    && member
                        .streams
                        .iter()
                        .all(|k| privileges & k.send_bit() != 0);
                let stopped = if keeps {
                    Vec::new()
                } else {
                    std::mem::take(&mut member.streams).into_iter().collect()
                };
                media_reset = Some((member.participant, stopped));
                member.muted.clear();
                member.user = user.clone();
                member.role_name = role_name.clone();
                member.role = role.clone();
                member.privileges = privileges;
                member.conn = Some(conn);
                member.dropped_at = None;
                if role_changed {
                    if let Some(ev) =
                        role_event(was_announced, role.can_publish, user.as_str(), &role_name)
                    {
                        notify.extend(others(room, user.key()).map(|c| (c, ev.clone())));
                    }
                }
                debug!(app = app_id, room = %enter.room, user = %user, "user resumed");
            }
            None => {
                // Only users who can publish are announced (TRTC's live mode: an audience's
                // comings and goings are not events, or a room of N viewers would cost N² of
                // them).
                if role.can_publish {
                    let ev = Event::UserEntered {
                        user_id: user.as_str().to_string(),
                        role_name: role_name.clone(),
                    };
                    notify.extend(others(room, user.key()).map(|c| (c, ev.clone())));
                }
                room.members.insert(
                    user.key().to_string(),
                    Member {
                        user: user.clone(),
                        role_name: role_name.clone(),
                        role: role.clone(),
                        privileges,
                        conn: Some(conn),
                        dropped_at: None,
                        participant: new_participant,
                        streams: BTreeSet::new(),
                        muted: BTreeSet::new(),
                        announced: role.can_publish,
                    },
                );
                info!(app = app_id, room = %enter.room, user = %user, role = %role_name, "user entered");
                entered_new = true;
            }
        }
        let users: Vec<Value> = room
            .members
            .values()
            .filter(|m| m.user.key() != user.key() && m.announced)
            .map(|m| json!({"user_id": m.user.as_str(), "role_name": m.role_name, "streams": m.streams.iter().map(|k| k.as_str()).collect::<Vec<_>>()}))
            .collect();
        let reply = json!({
            "room": {
                "room_id": match &enter.room { RoomId::Num(n) => Some(*n), RoomId::Str(_) => None },
                "str_room_id": match &enter.room { RoomId::Str(s) => Some(s.as_str()), RoomId::Num(_) => None },
                "owner": room.owner,
            },
            "role_name": role_name,
            "role_fallback": role_fallback,
            "limits": role,
            "privileges": privileges,
            "users": users,
        });
        let participant = room
            .members
            .get(user.key())
            .map_or(new_participant, |m| m.participant);
        app.users.insert(user.key().to_string(), enter.room.clone());
        self.events.extend(notify);
        self.participants.insert(participant, seat.clone());
        if room_is_new {
            self.callbacks.push_back(Callback {
                app: app_id,
                room: enter.room.clone(),
                event: CallbackEvent::RoomCreated,
                user_id: Some(user.as_str().to_string()),
                role: Some(role_name.clone()),
            });
        }
        if entered_new {
            self.callbacks.push_back(Callback {
                app: app_id,
                room: enter.room.clone(),
                event: CallbackEvent::UserEntered,
                user_id: Some(user.as_str().to_string()),
                role: Some(role_name.clone()),
            });
        }
        if let Some((old, streams)) = media_reset {
            let target = MediaTarget {
                participant: old,
                room: room_handle,
            };
            self.media.push_back(if streams.is_empty() {
                MediaOut::Reconnect { target }
            } else {
                MediaOut::Remove { target }
            });
            for kind in streams {
                self.notify_room(
                    &seat,
                    |_| true,
                    Event::StreamRemoved {
                        user_id: user.as_str().to_string(),
                        kind,
                    },
                );
            }
        }
        if entered_new {
            // A new member publishes nothing yet: only its own set changes. (Resubscribing the
            // whole room on every entry cost N commands per join, N² as a live room fills.)
            self.resubscribe_member(app_id, &enter.room, user.key());
        } else {
            self.resubscribe(app_id, &enter.room);
        }
        if let Some(old) = kicked {
            self.kick_conn(old, KickReason::EnteredElsewhere);
        }
        let c = self.conns.entry(conn).or_default();
        c.seat = Some(seat);
        c.authenticated = true;
        Ok(strip_nulls(reply))
    }

    fn exit_room(&mut self, conn: ConnId) -> Result<Value, SignalError> {
        let seat = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.seat.take())
            .ok_or(SignalError::NotInRoom)?;
        self.remove_member(seat.app, &seat.room, &seat.user, ExitReason::Left);
        Ok(json!({}))
    }

    fn switch_role(
        &mut self,
        conn: ConnId,
        role_name: &str,
        private_map_key: Option<&str>,
        now: Now,
    ) -> Result<Value, SignalError> {
        let seat = self
            .conns
            .get(&conn)
            .and_then(|c| c.seat.clone())
            .ok_or(SignalError::NotInRoom)?;
        let app = self
            .apps
            .get_mut(&seat.app)
            .ok_or_else(|| SignalError::UnknownApp(seat.app.to_string()))?;
        let role = app
            .config
            .roles
            .get(role_name)
            .cloned()
            .ok_or_else(|| SignalError::RoleNotFound(role_name.to_string()))?;
        let room = app
            .rooms
            .get_mut(&seat.room)
            .ok_or(SignalError::NotInRoom)?;
        let member = room.members.get(&seat.user).ok_or(SignalError::NotInRoom)?;
        let new_privileges = match private_map_key {
            Some(token) if !token.is_empty() => Some(check_private_map_key(
                &app.config,
                token,
                &member.user,
                &seat.room,
                now,
            )?),
            _ => None,
        };
        let Some(member) = room.members.get_mut(&seat.user) else {
            return Err(SignalError::NotInRoom);
        };
        if let Some(bits) = new_privileges {
            member.privileges = bits;
        }
        let was_announced = member.announced;
        member.announced |= role.can_publish;
        member.role_name = role_name.to_string();
        member.role = role.clone();
        let privileges = member.privileges;
        // Streams the new role or key no longer allows stop at every subscriber.
        let stop_all = !role.can_publish
            || member
                .streams
                .iter()
                .any(|k| privileges & k.send_bit() == 0);
        let stopped: Vec<StreamKind> = if stop_all {
            std::mem::take(&mut member.streams).into_iter().collect()
        } else {
            Vec::new()
        };
        let user_id = member.user.as_str().to_string();
        let target = MediaTarget {
            participant: member.participant,
            room: room.handle,
        };
        let ev = role_event(was_announced, role.can_publish, &user_id, role_name);
        info!(app = seat.app, room = %seat.room, user = %user_id, role = role_name, "role switched");
        let mut notify: Vec<_> = match ev {
            Some(ev) => others(room, &seat.user).map(|c| (c, ev.clone())).collect(),
            None => Vec::new(),
        };
        for kind in &stopped {
            let ev = Event::StreamRemoved {
                user_id: user_id.clone(),
                kind: *kind,
            };
            notify.extend(others(room, &seat.user).map(|c| (c, ev.clone())));
        }
        self.events.extend(notify);
        if stop_all {
            self.media.push_back(MediaOut::StopPublishing { target });
        }
        self.callbacks.push_back(Callback {
            app: seat.app,
            room: seat.room.clone(),
            event: CallbackEvent::RoleSwitched,
            user_id: Some(user_id.clone()),
            role: Some(role_name.to_string()),
        });
        for kind in stopped {
            self.callbacks.push_back(Callback {
                app: seat.app,
                room: seat.room.clone(),
                event: CallbackEvent::StreamStopped(kind),
                user_id: Some(user_id.clone()),
                role: Some(role_name.to_string()),
            });
        }
        self.resubscribe(seat.app, &seat.room);
        Ok(json!({"role_name": role_name, "limits": role, "privileges": privileges}))
    }

    /// The connection went away without `exit_room`: its user stays for the grace period.
    pub fn disconnect(&mut self, conn: ConnId, now: Now) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(seat) = c.seat else { return };
        let Some(member) = self
            .apps
            .get_mut(&seat.app)
            .and_then(|a| a.rooms.get_mut(&seat.room))
            .and_then(|r| r.members.get_mut(&seat.user))
        else {
            return;
        };
        if member.conn != Some(conn) {
            return;
        }
        member.conn = None;
        member.dropped_at = Some(now.mono);
        info!(app = seat.app, room = %seat.room, user = %member.user, "user dropped; waiting for reconnect");
        self.dropped_seq += 1;
        self.dropped
            .insert((now.mono + self.grace, self.dropped_seq), seat);
    }

    /// Removes users whose grace period has run out.
    pub fn tick(&mut self, now: Now) {
        while let Some(entry) = self.dropped.first_entry() {
            let (deadline, _) = *entry.key();
            if deadline > now.mono {
                break;
            }
            let seat = entry.remove();
            let still_dropped = self
                .apps
                .get(&seat.app)
                .and_then(|a| a.rooms.get(&seat.room))
                .and_then(|r| r.members.get(&seat.user))
                .and_then(|m| m.dropped_at)
                .is_some_and(|t| t + self.grace <= now.mono);
            if still_dropped {
                info!(app = seat.app, room = %seat.room, user = %seat.user, "dropped user timed out");
                self.remove_member(seat.app, &seat.room, &seat.user, ExitReason::Timeout);
            }
        }
    }

    /// Removes a member, tells the others, closes the room when it empties. Returns the member's
    /// connection, if it had a live one.
    fn remove_member(
        &mut self,
        app_id: u32,
        room_id: &RoomId,
        user_key: &str,
        reason: ExitReason,
    ) -> Option<ConnId> {
        let app = self.apps.get_mut(&app_id)?;
        let room = app.rooms.get_mut(room_id)?;
        let member = room.members.remove(user_key)?;
        if app.users.get(user_key) == Some(room_id) {
            app.users.remove(user_key);
        }
        let mut notify: Vec<(ConnId, Event)> = Vec::new();
        for kind in &member.streams {
            let ev = Event::StreamRemoved {
                user_id: member.user.as_str().to_string(),
                kind: *kind,
            };
            notify.extend(others(room, user_key).map(|c| (c, ev.clone())));
        }
        if member.announced {
            let ev = Event::UserExited {
                user_id: member.user.as_str().to_string(),
                reason,
            };
            notify.extend(others(room, user_key).map(|c| (c, ev.clone())));
        }
        self.media.push_back(MediaOut::Remove {
            target: MediaTarget {
                participant: member.participant,
                room: room.handle,
            },
        });
        self.participants.remove(&member.participant);
        info!(app = app_id, room = %room_id, user = %member.user, ?reason, "user exited");
        let handle = room.handle;
        let closed = room.members.is_empty();
        if closed {
            app.rooms.remove(room_id);
            self.handles.remove(&handle);
            info!(app = app_id, room = %room_id, "room closed");
        }
        for kind in &member.streams {
            self.callback(
                app_id,
                room_id,
                CallbackEvent::StreamStopped(*kind),
                Some(&member),
            );
        }
        self.callback(
            app_id,
            room_id,
            CallbackEvent::UserExited(reason),
            Some(&member),
        );
        if closed {
            self.callback(app_id, room_id, CallbackEvent::RoomClosed, None);
        }
        self.events.extend(notify);
        self.resubscribe(app_id, room_id);
        member.conn
    }

    /// Tells a connection it lost its seat; the connection itself stays open.
    fn kick_conn(&mut self, conn: ConnId, reason: KickReason) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.seat = None;
        }
        self.events.push_back((conn, Event::Kicked { reason }));
    }

    /// The room, seat key and member on `conn`.
    fn seated(&self, conn: ConnId) -> Result<(&Room, &str, &Member), SignalError> {
        let seat = self
            .conns
            .get(&conn)
            .and_then(|c| c.seat.as_ref())
            .ok_or(SignalError::NotInRoom)?;
        let room = self
            .apps
            .get(&seat.app)
            .and_then(|a| a.rooms.get(&seat.room))
            .ok_or(SignalError::NotInRoom)?;
        let member = room.members.get(&seat.user).ok_or(SignalError::NotInRoom)?;
        Ok((room, &seat.user, member))
    }

    /// The media ids and role of the member on `conn`.
    fn target_of(&self, conn: ConnId) -> Result<(MediaTarget, &Member), SignalError> {
        let (room, _, member) = self.seated(conn)?;
        Ok((
            MediaTarget {
                participant: member.participant,
                room: room.handle,
            },
            member,
        ))
    }

    fn publish(
        &mut self,
        conn: ConnId,
        sdp: String,
        tracks: Vec<(String, StreamKind)>,
    ) -> Result<Reply, SignalError> {
        let (target, member) = self.target_of(conn)?;
        if !member.role.can_publish {
            return Err(SignalError::PrivilegeDenied(format!(
                "role `{}` cannot publish",
                member.role_name
            )));
        }
        if let Some((_, kind)) = tracks
            .iter()
            .find(|(_, k)| member.privileges & k.send_bit() == 0)
        {
            return Err(SignalError::PrivilegeDenied(format!(
                "the PrivateMapKey does not allow sending {} (bit {})",
                kind.as_str(),
                kind.send_bit()
            )));
        }
        let r = &member.role;
        let http_session = self.conns.get(&conn).is_some_and(|c| c.headless);
        Ok(Reply::Publish(PublishPlan {
            http_session,
            target,
            sdp,
            tracks,
            limits: PublishLimits {
                audio_kbps: r.max_audio_kbps,
                video_kbps: r.max_video_kbps,
                video_width: r.max_width,
                video_height: r.max_height,
                sub_video_kbps: r.max_sub_video_kbps,
            },
        }))
    }

    fn set_subscription(
        &mut self,
        conn: ConnId,
        user_id: &str,
        kind: StreamKind,
        enabled: bool,
        layer: Option<LayerChoice>,
        constraints: Option<Constraints>,
    ) -> Result<Value, SignalError> {
        let seat = self
            .conns
            .get(&conn)
            .and_then(|c| c.seat.clone())
            .ok_or(SignalError::NotInRoom)?;
        let other = UserId::parse(user_id)?;
        let room = self
            .apps
            .get_mut(&seat.app)
            .and_then(|a| a.rooms.get_mut(&seat.room))
            .ok_or(SignalError::NotInRoom)?;
        let handle = room.handle;
        let publisher = room
            .members
            .get(other.key())
            .map(|m| m.participant)
            .ok_or_else(|| SignalError::BadUserId(format!("`{user_id}` is not in this room")))?;
        let member = room
            .members
            .get_mut(&seat.user)
            .ok_or(SignalError::NotInRoom)?;
        if enabled {
            member.muted.remove(&(other.key().to_string(), kind));
        } else {
            member.muted.insert((other.key().to_string(), kind));
        }
        let target = MediaTarget {
            participant: member.participant,
            room: handle,
        };
        if let Some(layer) = layer {
            self.media.push_back(MediaOut::SetLayer {
                target,
                publisher,
                kind,
                layer,
            });
        }
        if let Some(constraints) = constraints {
            self.media.push_back(MediaOut::SetConstraints {
                target,
                publisher,
                kind,
                constraints,
            });
        }
        self.resubscribe(seat.app, &seat.room);
        Ok(json!({}))
    }

    /// Sends every member of a room its current set of streams to receive (the workers ignore
    /// sets that did not change).
    fn resubscribe(&mut self, app_id: u32, room_id: &RoomId) {
        let Some(room) = self.apps.get(&app_id).and_then(|a| a.rooms.get(room_id)) else {
            return;
        };
        // HTTP sessions (WHIP/WHEP) negotiate once over HTTP; only WebSocket users are re-offered.
        let headless = |m: &Member| {
            m.conn
                .and_then(|c| self.conns.get(&c))
                .is_some_and(|c| c.headless)
        };
        let sets: Vec<MediaOut> = room
            .members
            .iter()
            .filter(|(_, m)| !headless(m))
            .map(|(key, m)| MediaOut::SetSubscriptions {
                target: MediaTarget {
                    participant: m.participant,
                    room: room.handle,
                },
                streams: wanted_streams(room, key, m),
            })
            .collect();
        self.media.extend(sets);
    }

    /// Sends one member its current set of streams (see [`Self::resubscribe`]).
    fn resubscribe_member(&mut self, app_id: u32, room_id: &RoomId, user_key: &str) {
        let Some(room) = self.apps.get(&app_id).and_then(|a| a.rooms.get(room_id)) else {
            return;
        };
        let Some(m) = room.members.get(user_key) else {
            return;
        };
        let headless = m
            .conn
            .and_then(|c| self.conns.get(&c))
            .is_some_and(|c| c.headless);
        if headless {
            return;
        }
        let out = MediaOut::SetSubscriptions {
            target: MediaTarget {
                participant: m.participant,
                room: room.handle,
            },
            streams: wanted_streams(room, user_key, m),
        };
        self.media.push_back(out);
    }

    /// The streams the member on `conn` should receive now, with its media ids (for WHEP, which
    /// negotiates them once).
    pub fn wanted_now(
        &self,
        conn: ConnId,
    ) -> Result<(MediaTarget, Vec<WantedStream>), SignalError> {
        let (room, key, member) = self.seated(conn)?;
        Ok((
            MediaTarget {
                participant: member.participant,
                room: room.handle,
            },
            wanted_streams(room, key, member),
        ))
    }

    /// Queues `event` for every connected member of the seat's room except the seat's user who
    /// passes `filter`.
    fn notify_room(&mut self, seat: &Seat, filter: impl Fn(&Member) -> bool, event: Event) {
        let Some(room) = self
            .apps
            .get(&seat.app)
            .and_then(|a| a.rooms.get(&seat.room))
        else {
            return;
        };
        let conns: Vec<ConnId> = room
            .members
            .iter()
            .filter(|(k, m)| **k != seat.user && filter(m))
            .filter_map(|(_, m)| m.conn)
            .collect();
        self.events
            .extend(conns.into_iter().map(|c| (c, event.clone())));
    }

    fn member_of(&mut self, participant: u64) -> Option<(Seat, &mut Member)> {
        let seat = self.participants.get(&participant)?.clone();
        let member = self
            .apps
            .get_mut(&seat.app)?
            .rooms
            .get_mut(&seat.room)?
            .members
            .get_mut(&seat.user)?;
        (member.participant == participant).then_some((seat, member))
    }

    /// The media worker reports that `participant` now publishes `kind`.
    pub fn media_published(&mut self, participant: u64, kind: StreamKind) {
        let Some((seat, member)) = self.member_of(participant) else {
            return;
        };
        if !member.streams.insert(kind) {
            return;
        }
        let user_id = member.user.as_str().to_string();
        let role = member.role_name.clone();
        info!(app = seat.app, room = %seat.room, user = %user_id, kind = kind.as_str(), "stream added");
        self.callbacks.push_back(Callback {
            app: seat.app,
            room: seat.room.clone(),
            event: CallbackEvent::StreamStarted(kind),
            user_id: Some(user_id.clone()),
            role: Some(role),
        });
        self.notify_room(
            &seat,
            |m| m.privileges & kind.recv_bit() != 0,
            Event::StreamAdded { user_id, kind },
        );
        self.resubscribe(seat.app, &seat.room);
    }

    /// The media worker reports that `participant` stopped publishing `kind`.
    pub fn media_unpublished(&mut self, participant: u64, kind: StreamKind) {
        let Some((seat, member)) = self.member_of(participant) else {
            return;
        };
        if !member.streams.remove(&kind) {
            return;
        }
        let user_id = member.user.as_str().to_string();
        let role = member.role_name.clone();
        self.callbacks.push_back(Callback {
            app: seat.app,
            room: seat.room.clone(),
            event: CallbackEvent::StreamStopped(kind),
            user_id: Some(user_id.clone()),
            role: Some(role),
        });
        self.notify_room(
            &seat,
            |m| m.privileges & kind.recv_bit() != 0,
            Event::StreamRemoved { user_id, kind },
        );
        self.resubscribe(seat.app, &seat.room);
    }

    /// The media worker made a new offer for `participant`'s subscribing connection.
    pub fn media_offer(
        &mut self,
        participant: u64,
        sdp: String,
        tracks: Vec<(String, u64, StreamKind)>,
    ) {
        let Some((seat, member)) = self.member_of(participant) else {
            return;
        };
        let Some(conn) = member.conn else { return };
        let Some(room) = self
            .apps
            .get(&seat.app)
            .and_then(|a| a.rooms.get(&seat.room))
        else {
            return;
        };
        let tracks = tracks
            .into_iter()
            .filter_map(|(mid, publisher, kind)| {
                room.members
                    .values()
                    .find(|m| m.participant == publisher)
                    .map(|m| OfferTrack {
                        mid,
                        user_id: m.user.as_str().to_string(),
                        kind,
                    })
            })
            .collect();
        self.events.push_back((conn, Event::Offer { sdp, tracks }));
    }

    /// A stream of `participant` broke its role's limits.
    pub fn media_limit_exceeded(&mut self, participant: u64, kind: StreamKind, reason: String) {
        let Some((_, member)) = self.member_of(participant) else {
            return;
        };
        if let Some(conn) = member.conn {
            self.events
                .push_back((conn, Event::LimitExceeded { kind, reason }));
        }
    }

    /// Dynacast: the rids of `participant`'s simulcast `kind` stream some subscriber needs.
    pub fn media_layers_needed(&mut self, participant: u64, kind: StreamKind, rids: Vec<String>) {
        let Some((_, member)) = self.member_of(participant) else {
            return;
        };
        if let Some(conn) = member.conn {
            tracing::debug!(participant, ?kind, ?rids, "layers needed");
            self.events
                .push_back((conn, Event::LayersNeeded { kind, rids }));
        }
    }

    /// A stream `subscriber` receives from `publisher` was paused for bandwidth (`paused`) or
    /// resumed.
    pub fn media_stream_paused(
        &mut self,
        subscriber: u64,
        publisher: u64,
        kind: StreamKind,
        paused: bool,
    ) {
        let Some((seat, member)) = self.member_of(subscriber) else {
            return;
        };
        let Some(conn) = member.conn else {
            return;
        };
        let Some(room) = self
            .apps
            .get(&seat.app)
            .and_then(|a| a.rooms.get(&seat.room))
        else {
            return;
        };
        let Some(user_id) = room
            .members
            .values()
            .find(|m| m.participant == publisher)
            .map(|m| m.user.as_str().to_string())
        else {
            return;
        };
        tracing::debug!(subscriber, publisher = %user_id, paused, "stream paused or resumed for bandwidth");
        let event = if paused {
            Event::StreamPaused {
                user_id,
                kind,
                reason: "bandwidth",
            }
        } else {
            Event::StreamResumed { user_id, kind }
        };
        self.events.push_back((conn, event));
    }

    /// The loudest participants of a room (by media handle), loudest first.
    pub fn media_active_speakers(&mut self, room_handle: u64, participants: &[u64]) {
        let Some((app, room_id)) = self.handles.get(&room_handle).cloned() else {
            return;
        };
        let Some(room) = self.apps.get(&app).and_then(|a| a.rooms.get(&room_id)) else {
            return;
        };
        let user_ids: Vec<String> = participants
            .iter()
            .filter_map(|p| room.members.values().find(|m| m.participant == *p))
            .map(|m| m.user.as_str().to_string())
            .collect();
        let conns: Vec<ConnId> = room.members.values().filter_map(|m| m.conn).collect();
        let ev = Event::ActiveSpeakers { user_ids };
        self.events
            .extend(conns.into_iter().map(|c| (c, ev.clone())));
    }

    /// Stops admitting users and tells every connection the server goes away in `grace_secs`.
    pub fn begin_shutdown(&mut self, grace_secs: u64) {
        self.draining = true;
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        self.events.extend(
            conns
                .into_iter()
                .map(|c| (c, Event::ServerShutdown { grace_secs })),
        );
    }

    /// Users still in rooms (connected or in their grace period).
    pub fn user_count(&self) -> usize {
        self.apps
            .values()
            .flat_map(|a| a.rooms.values())
            .map(|r| r.members.len())
            .sum()
    }

    // ------------------------------------------------------------ administration (REST API)

    /// Whether `app` is served here.
    pub fn has_app(&self, app: u32) -> bool {
        self.apps.contains_key(&app)
    }

    /// The application's current settings (roles as changed at runtime).
    pub fn app_config(&self, app: u32) -> Option<&AppConfig> {
        self.apps.get(&app).map(|a| &a.config)
    }

    /// DismissRoom: every user gets `kicked` (reason 2) and the room closes. Returns how many users
    /// were removed, or `None` when the room is not open.
    pub fn dismiss_room(&mut self, app: u32, room: &RoomId) -> Option<usize> {
        let users: Vec<String> = self
            .apps
            .get(&app)?
            .rooms
            .get(room)?
            .members
            .keys()
            .cloned()
            .collect();
        info!(app, room = %room, users = users.len(), "room dismissed by the admin");
        for user in &users {
            self.kick_member(app, room, user, KickReason::RoomDismissed);
        }
        Some(users.len())
    }

    /// RemoveUser: the named users get `kicked` (reason 1) and leave the room; the others see
    /// `user_exited` with reason `kicked`. Returns the users that were in the room, or `None` when
    /// the room is not open.
    pub fn remove_users(
        &mut self,
        app: u32,
        room: &RoomId,
        users: &[UserId],
    ) -> Option<Vec<String>> {
        let present: Vec<String> = {
            let r = self.apps.get(&app)?.rooms.get(room)?;
            users
                .iter()
                .filter(|u| r.members.contains_key(u.key()))
                .map(|u| u.key().to_string())
                .collect()
        };
        let mut removed = Vec::new();
        for key in present {
            if let Some(name) = self.kick_member(app, room, &key, KickReason::RemovedByAdmin) {
                removed.push(name);
            }
        }
        Some(removed)
    }

    /// Removes one member as the admin asked; returns its display name.
    fn kick_member(
        &mut self,
        app: u32,
        room: &RoomId,
        user_key: &str,
        reason: KickReason,
    ) -> Option<String> {
        let name = self
            .apps
            .get(&app)?
            .rooms
            .get(room)?
            .members
            .get(user_key)?
            .user
            .as_str()
            .to_string();
        if let Some(conn) = self.remove_member(app, room, user_key, ExitReason::Kicked) {
            self.kick_conn(conn, reason);
        }
        Some(name)
    }

    /// Creates or replaces a role; applies to users who enter (or switch role) after the change.
    pub fn set_role(&mut self, app: u32, name: &str, role: RoleConfig) -> bool {
        match self.apps.get_mut(&app) {
            Some(a) => {
                a.config.roles.insert(name.to_string(), role);
                true
            }
            None => false,
        }
    }

    /// Deletes a role (not the default one). Users already in rooms keep its parameters.
    pub fn delete_role(&mut self, app: u32, name: &str) -> Result<bool, &'static str> {
        let a = self.apps.get_mut(&app).ok_or("unknown application")?;
        if a.config.default_role == name {
            return Err("the default role cannot be deleted");
        }
        Ok(a.config.roles.remove(name).is_some())
    }

    /// A room's users with their roles, streams and whether they are connected.
    pub fn describe_room(&self, app: u32, room: &RoomId) -> Option<Value> {
        let r = self.apps.get(&app)?.rooms.get(room)?;
        let users: Vec<Value> = r
            .members
            .values()
            .map(|m| {
                json!({
                    "user_id": m.user.as_str(),
                    "role_name": m.role_name,
                    "limits": m.role,
                    "privileges": m.privileges,
                    "streams": m.streams.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "connected": m.conn.is_some(),
                })
            })
            .collect();
        let mut out = json!({"owner": r.owner, "users": users});
        if let Some(obj) = out.as_object_mut() {
            match room {
                RoomId::Num(n) => obj.insert("room_id".into(), json!(n)),
                RoomId::Str(s) => obj.insert("str_room_id".into(), json!(s)),
            };
        }
        Some(out)
    }

    /// The media workers' handle of a room, if it is open.
    pub fn room_handle(&self, app: u32, room: &RoomId) -> Option<u64> {
        self.apps.get(&app)?.rooms.get(room).map(|r| r.handle)
    }

    /// Per-application counts for metrics: rooms, users, publishers (users with at least one stream)
    /// and subscribers (users who may receive at least one stream of someone else).
    pub fn counts(&self) -> Vec<AppCounts> {
        let mut out: Vec<AppCounts> = self
            .apps
            .iter()
            .map(|(id, a)| {
                let mut c = AppCounts {
                    app: *id,
                    rooms: a.rooms.len() as u64,
                    ..AppCounts::default()
                };
                for room in a.rooms.values() {
                    c.users += room.members.len() as u64;
                    c.publishers += room
                        .members
                        .values()
                        .filter(|m| !m.streams.is_empty())
                        .count() as u64;
                    c.subscribers += room
                        .members
                        .iter()
                        .filter(|(k, m)| {
                            room.members.iter().any(|(pk, p)| {
                                pk != *k
                                    && p.streams
                                        .iter()
                                        .any(|kind| m.privileges & kind.recv_bit() != 0)
                            })
                        })
                        .count() as u64;
                }
                c
            })
            .collect();
        out.sort_by_key(|c| c.app);
        out
    }

    /// Rooms open in one application.
    pub fn rooms(&self, app: u32) -> Vec<RoomSummary> {
        let Some(a) = self.apps.get(&app) else {
            return Vec::new();
        };
        let mut out: Vec<_> = a
            .rooms
            .iter()
            .map(|(id, r)| RoomSummary {
                app,
                room: id.clone(),
                owner: r.owner.clone(),
                users: r
                    .members
                    .values()
                    .map(|m| m.user.as_str().to_string())
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }
}

/// What member `m` (key `key`) of `room` may and wants to receive: others' streams it has the
/// receive privilege for and has not turned off.
fn wanted_streams(room: &Room, key: &str, m: &Member) -> Vec<WantedStream> {
    room.members
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .flat_map(|(k, p)| {
            p.streams
                .iter()
                .filter(|kind| m.privileges & kind.recv_bit() != 0)
                .filter(|kind| !m.muted.contains(&(k.clone(), **kind)))
                .map(|kind| WantedStream {
                    publisher: p.participant,
                    kind: *kind,
                    user_id: p.user.as_str().to_string(),
                })
        })
        .collect()
}

/// What others hear of a role switch: a user who now can publish and could not before is
/// announced as entering; one who could keeps being followed by `role_changed`; an audience that
/// stays audience is silent.
fn role_event(
    was_announced: bool,
    announced: bool,
    user_id: &str,
    role_name: &str,
) -> Option<Event> {
    match (was_announced, announced) {
        (false, false) => None,
        (false, true) => Some(Event::UserEntered {
            user_id: user_id.to_string(),
            role_name: role_name.to_string(),
        }),
        (true, _) => Some(Event::RoleChanged {
            user_id: user_id.to_string(),
            role_name: role_name.to_string(),
        }),
    }
}

/// Live connections of everyone in `room` except `user_key`.
fn others<'a>(room: &'a Room, user_key: &'a str) -> impl Iterator<Item = ConnId> + 'a {
    room.members
        .iter()
        .filter(move |(k, _)| k.as_str() != user_key)
        .filter_map(|(_, m)| m.conn)
}

fn usersig_error(e: AuthError) -> SignalError {
    match e {
        AuthError::Malformed(detail) => SignalError::MalformedUserSig(detail),
        other => SignalError::UserSigRejected(other.code().to_string()),
    }
}

/// Verifies a PrivateMapKey for this user, app and room; returns its privilege bits.
fn check_private_map_key(
    cfg: &AppConfig,
    token: &str,
    user: &UserId,
    room: &RoomId,
    now: Now,
) -> Result<u8, SignalError> {
    let info = fanout_auth::verify_private_map_key(
        token,
        cfg.sdk_app_id,
        &cfg.secret_key,
        user.as_str(),
        room.as_auth_room(),
        now.unix,
    )
    .map_err(|e| SignalError::PrivateMapKey(e.code().to_string()))?;
    Ok(info.privileges().bits())
}

/// Drops `null` members of the reply's `room` object (a room has either `room_id` or `str_room_id`).
fn strip_nulls(mut v: Value) -> Value {
    if let Some(room) = v.get_mut("room").and_then(Value::as_object_mut) {
        room.retain(|_, val| !val.is_null());
    }
    v
}
