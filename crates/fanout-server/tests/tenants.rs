//! Rule: applications (SDKAppIDs) are isolated tenants: rooms, users and credentials of one app
//! never mix with another's; an app not in the config is `-3317`.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn same_room_number_in_two_apps_is_two_rooms() {
    let server = start().await;
    let mut a = Client::connect(&server).await;
    let r = a.enter(APP_A, "alice", 1).await;
    assert_ok(&r);
    assert_eq!(r["users"], json!([]));

    let mut b = Client::connect(&server).await;
    let r = b.enter(APP_B, "bob", 1).await;
    assert_ok(&r);
    assert_eq!(
        r["room"],
        json!({"room_id": 1, "owner": "bob"}),
        "B's room 1 is new"
    );
    assert_eq!(r["users"], json!([]), "B's room 1 lists A's user: {r}");
    a.no_event_within(QUIET).await;

    // Leaving is not seen across apps either.
    assert_ok(&b.request("exit_room", json!({})).await);
    a.no_event_within(QUIET).await;
}

#[tokio::test]
async fn same_user_id_in_two_apps_is_two_users() {
    let server = start().await;
    let mut in_a = Client::entered(&server, APP_A, "carol", 1).await;
    let mut in_b = Client::entered(&server, APP_B, "carol", 1).await;
    // No takeover across apps: the first connection is not kicked and is still in its room.
    in_a.no_event_within(QUIET).await;
    assert_ok(&in_a.request("exit_room", json!({})).await);
    assert_ok(&in_b.request("exit_room", json!({})).await);
}

#[tokio::test]
async fn credential_of_app_a_never_opens_app_b() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let mut fields = enter_fields(APP_B, "alice", 1);
    fields["user_sig"] = json!(sig(APP_A, "alice"));
    assert_code(&c.request("enter_room", fields).await, -100018);

    // Nor app C (which would also want a PrivateMapKey; the UserSig is checked first).
    let mut fields = enter_fields(APP_C, "alice", 1);
    fields["user_sig"] = json!(sig(APP_A, "alice"));
    assert_code(&c.request("enter_room", fields).await, -100018);

    // The same connection with app B's own credential gets in.
    assert_ok(&c.enter(APP_B, "alice", 1).await);
}

#[tokio::test]
async fn unknown_sdk_app_id_is_rejected() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    // A well-formed UserSig for an app the server does not serve.
    let app = 1400000099;
    let fields = json!({
        "sdk_app_id": app,
        "user_id": "alice",
        "user_sig": fanout_auth::gen_usersig(app, "whatever", "alice", 86400, now()),
        "room_id": 1,
    });
    assert_code(&c.request("enter_room", fields).await, -3317);

    for app in [json!(0), json!(4294967296u64), json!(-1)] {
        let mut fields = enter_fields(APP_A, "alice", 1);
        fields["sdk_app_id"] = app;
        assert_code(&c.request("enter_room", fields).await, -3317);
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn two_apps_side_by_side_work_concurrently() {
    let server = start().await;

    /// `announced`: whether the app's default role can publish (users who cannot are not
    /// announced to others, nor listed at entry).
    async fn run_app(server: &Server, app: u32, default_role: &str, announced: bool) {
        let p = format!("u{app}");
        let (first, second) = (format!("{p}first"), format!("{p}second"));
        let mut one = Client::connect(server).await;
        let r = one.enter(app, &first, 7).await;
        assert_ok(&r);
        assert_eq!(r["room"]["owner"], first.as_str());
        assert_eq!(
            r["role_name"], default_role,
            "each app applies its own default role"
        );
        let mut two = Client::connect(server).await;
        let r = two.enter(app, &second, 7).await;
        assert_ok(&r);
        assert_eq!(r["room"]["owner"], first.as_str());
        if announced {
            assert_eq!(
                r["users"],
                json!([{"user_id": first, "role_name": default_role, "streams": []}])
            );
            assert_eq!(
                one.event("user_entered").await,
                json!({"event": "user_entered", "user_id": second, "role_name": default_role})
            );
        } else {
            assert_eq!(r["users"], json!([]));
        }
        assert_ok(&two.request("exit_room", json!({})).await);
        if announced {
            assert_eq!(
                one.event("user_exited").await,
                json!({"event": "user_exited", "user_id": second, "reason": "left"})
            );
        }
        // Only this app's events arrived.
        one.no_event_within(Duration::from_millis(200)).await;
        two.no_event_within(Duration::from_millis(200)).await;
    }

    tokio::join!(
        run_app(&server, APP_A, "anchor", true),
        run_app(&server, APP_B, "audience", false)
    );
}
