//! The signalling rig: a [`Hub`] serving one application, a room with some members already in it,
//! and a user who enters and leaves with a real UserSig (verified on every entry).

use fanout_signal::protocol::EnterRoom;
use fanout_signal::{AppConfig, ConnId, Hub, Now, Reply, Request, RoleConfig, RoomId};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The bench application's SDKAppID.
pub const APP: u32 = 1_400_000_001;
/// Its secret key (a fixed test key).
pub const KEY: &str = "b3f1c2d4e5a60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// When the bench's UserSigs were issued (unix seconds); they are valid for 180 days.
pub const ISSUED: u64 = 1_760_000_000;
pub const EXPIRE: u64 = 180 * 86_400;
/// The room everyone enters.
pub const ROOM: u64 = 4242;
/// The connection of the user who enters and leaves.
pub const CHURN_CONN: ConnId = 1_000_000;

fn role() -> RoleConfig {
    RoleConfig {
        can_publish: true,
        max_video_kbps: 1500,
        max_width: 1280,
        max_height: 720,
        max_fps: 30,
        max_audio_kbps: 64,
        max_sub_video_kbps: 1500,
    }
}

/// The bench application: one role, default quotas, UserSig admission (no PrivateMapKey).
pub fn app_config() -> AppConfig {
    AppConfig {
        sdk_app_id: APP,
        secret_key: KEY.to_string(),
        default_role: "anchor".to_string(),
        private_map_key_required: false,
        max_rooms: 10_000,
        max_users_per_room: 10_000,
        admin_user: "administrator".to_string(),
        rest_rate_limit: 20,
        callback_url: None,
        callback_key: None,
        dev_mode: false,
        roles: BTreeMap::from([("anchor".to_string(), role())]),
    }
}

/// The time every request is handled at: a little after the tokens were issued.
pub fn now() -> Now {
    Now {
        mono: Instant::now(),
        unix: ISSUED + 60,
    }
}

/// A UserSig for `user` from the bench application.
pub fn usersig(user: &str) -> String {
    fanout_auth::gen_usersig(APP, KEY, user, EXPIRE, ISSUED)
}

/// An `enter_room` request for `user` into [`ROOM`].
pub fn enter_request(user: &str) -> EnterRoom {
    EnterRoom {
        sdk_app_id: u64::from(APP),
        user_id: user.to_string(),
        user_sig: usersig(user),
        room: RoomId::numeric(ROOM).expect("valid room id"),
        role_name: Some("anchor".to_string()),
        private_map_key: None,
    }
}

/// A hub with `present` members in [`ROOM`] (connections `1..=present`) and the churning user's
/// request ready.
pub struct SignalRig {
    pub hub: Hub,
    pub now: Now,
    pub enter: EnterRoom,
    /// Events, callbacks and media commands drained so far.
    pub drained: u64,
}

impl SignalRig {
    pub fn new(present: usize) -> Self {
        let mut hub = Hub::new(vec![app_config()], Duration::from_secs(30));
        let now = now();
        for i in 0..present {
            let conn = i as ConnId + 1;
            hub.connect(conn);
            let reply = hub.handle(
                conn,
                Request::EnterRoom(enter_request(&format!("member{i}"))),
                now,
            );
            assert!(matches!(reply, Ok(Reply::Now(_))), "member {i}: {reply:?}");
        }
        hub.connect(CHURN_CONN);
        let mut rig = Self {
            hub,
            now,
            enter: enter_request("churner"),
            drained: 0,
        };
        rig.drain();
        rig
    }

    /// Empties the hub's queues of events, callbacks and media commands, as the server does after
    /// each request.
    pub fn drain(&mut self) {
        while self.hub.poll_event().is_some() {
            self.drained += 1;
        }
        while self.hub.poll_callback().is_some() {
            self.drained += 1;
        }
        while self.hub.poll_media().is_some() {
            self.drained += 1;
        }
    }

    /// One `enter_room` (with `enter`, UserSig verified) and one `exit_room` by the churning user.
    pub fn enter_exit(&mut self, enter: EnterRoom) {
        let entered = self
            .hub
            .handle(CHURN_CONN, Request::EnterRoom(enter), self.now);
        assert!(matches!(entered, Ok(Reply::Now(_))), "{entered:?}");
        self.drain();
        let left = self.hub.handle(CHURN_CONN, Request::ExitRoom, self.now);
        assert!(matches!(left, Ok(Reply::Now(_))), "{left:?}");
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_and_exit_repeat_and_notify_the_members() {
        for present in [0, 10] {
            let mut rig = SignalRig::new(present);
            assert_eq!(rig.hub.user_count(), present);
            let before = rig.drained;
            for _ in 0..5 {
                rig.enter_exit(rig.enter.clone());
                assert_eq!(rig.hub.user_count(), present);
            }
            // Entered and left events for each member, callbacks for the app.
            assert!(rig.drained - before >= 5 * 2 * present as u64);
        }
    }

    #[test]
    fn a_bad_usersig_is_refused() {
        let mut rig = SignalRig::new(0);
        let mut bad = rig.enter.clone();
        bad.user_sig = fanout_auth::gen_usersig(APP, "another key", "churner", EXPIRE, ISSUED);
        let reply = rig.hub.handle(CHURN_CONN, Request::EnterRoom(bad), rig.now);
        assert!(reply.is_err());
    }

    #[test]
    fn the_bench_tokens_verify() {
        let token = usersig("churner");
        let info = fanout_auth::verify_usersig(&token, APP, KEY, "churner", ISSUED + 60).unwrap();
        assert_eq!(info.identifier, "churner");
    }
}
