//! Rule: a user's role is the app's default role without `role_name`, the default role with
//! `role_fallback: true` for an unknown one, else the named role; its parameters come back as
//! `limits`. `switch_role` changes it (others get `role_changed`); an unknown role is `-3340` and
//! changes nothing.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

fn anchor_limits() -> Value {
    json!({
        "can_publish": true, "max_video_kbps": 1500, "max_width": 1280, "max_height": 720,
        "max_fps": 30, "max_audio_kbps": 64, "max_sub_video_kbps": 1500,
    })
}

fn anchor_sd_limits() -> Value {
    json!({
        "can_publish": true, "max_video_kbps": 600, "max_width": 640, "max_height": 360,
        "max_fps": 15, "max_audio_kbps": 64, "max_sub_video_kbps": 1500,
    })
}

fn audience_limits() -> Value {
    json!({
        "can_publish": false, "max_video_kbps": 1500, "max_width": 1280, "max_height": 720,
        "max_fps": 30, "max_audio_kbps": 64, "max_sub_video_kbps": 1500,
    })
}

async fn enter_as(
    server: &Server,
    app: u32,
    user: &str,
    room: u32,
    role: Option<&str>,
) -> (Client, Value) {
    let mut c = Client::connect(server).await;
    let mut fields = enter_fields(app, user, room);
    if let Some(role) = role {
        fields["role_name"] = json!(role);
    }
    let r = c.request("enter_room", fields).await;
    assert_ok(&r);
    (c, r)
}

#[tokio::test]
async fn default_role_without_role_name() {
    let server = start().await;
    let (_a, r) = enter_as(&server, APP_A, "alice", 1, None).await;
    assert_eq!(r["role_name"], "anchor");
    assert_eq!(r["role_fallback"], false);
    assert_eq!(r["limits"], anchor_limits());

    // App B's default role is audience.
    let (_b, r) = enter_as(&server, APP_B, "bob", 1, None).await;
    assert_eq!(r["role_name"], "audience");
    assert_eq!(r["role_fallback"], false);
    assert_eq!(r["limits"], audience_limits());
}

#[tokio::test]
async fn unknown_role_name_falls_back_to_the_default_role() {
    let server = start().await;
    let (mut a, _) = enter_as(&server, APP_A, "alice", 1, None).await;
    let (_b, r) = enter_as(&server, APP_A, "bob", 1, Some("director")).await;
    assert_eq!(r["role_name"], "anchor");
    assert_eq!(r["role_fallback"], true);
    assert_eq!(r["limits"], anchor_limits());
    // The others see the role in effect.
    assert_eq!(
        a.event("user_entered").await,
        json!({"event": "user_entered", "user_id": "bob", "role_name": "anchor"})
    );

    // Role names are exact: `Anchor_SD` is not `anchor_sd`.
    let (_c, r) = enter_as(&server, APP_A, "carol", 1, Some("Anchor_SD")).await;
    assert_eq!(r["role_name"], "anchor");
    assert_eq!(r["role_fallback"], true);
}

#[tokio::test]
async fn explicit_role_gives_its_limits() {
    let server = start().await;
    let (_a, r) = enter_as(&server, APP_A, "alice", 1, Some("anchor_sd")).await;
    assert_eq!(r["role_name"], "anchor_sd");
    assert_eq!(r["role_fallback"], false);
    assert_eq!(r["limits"], anchor_sd_limits());

    let (_b, r) = enter_as(&server, APP_A, "bob", 1, Some("audience")).await;
    assert_eq!(r["role_name"], "audience");
    assert_eq!(r["role_fallback"], false);
    assert_eq!(r["limits"], audience_limits());
}

#[tokio::test]
async fn switch_role_to_an_unknown_role_fails_and_changes_nothing() {
    let server = start().await;
    let (mut a, _) = enter_as(&server, APP_A, "alice", 1, Some("anchor_sd")).await;
    let (mut b, _) = enter_as(&server, APP_A, "bob", 1, None).await;
    a.event("user_entered").await;

    assert_code(
        &b.request("switch_role", json!({"role_name": "nope"})).await,
        -3340,
    );
    assert_code(
        &b.request("switch_role", json!({"role_name": "Audience"}))
            .await,
        -3340,
    );
    a.no_event_within(QUIET).await;

    // A later entrant still sees bob as anchor.
    let (mut c, r) = enter_as(&server, APP_A, "carol", 1, None).await;
    let bob = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_id"] == "bob")
        .cloned();
    assert_eq!(
        bob,
        Some(json!({"user_id": "bob", "role_name": "anchor", "streams": []}))
    );
    a.event("user_entered").await;
    b.event("user_entered").await;

    // A later successful switch shows the state.
    let r = b
        .request("switch_role", json!({"role_name": "audience"}))
        .await;
    assert_ok(&r);
    assert_eq!(r["role_name"], "audience");
    assert_eq!(r["limits"], audience_limits());
    let expected = json!({"event": "role_changed", "user_id": "bob", "role_name": "audience"});
    assert_eq!(a.event("role_changed").await, expected);
    assert_eq!(c.event("role_changed").await, expected);
    a.no_event_within(QUIET).await;
}

#[tokio::test]
async fn switch_role_replies_and_tells_the_others() {
    let server = start().await;
    let (mut a, _) = enter_as(&server, APP_A, "alice", 1, None).await;
    let (mut b, _) = enter_as(&server, APP_A, "bob", 1, Some("audience")).await;
    // An audience is not announced...
    a.no_event_within(QUIET).await;

    let r = b
        .request("switch_role", json!({"role_name": "anchor_sd"}))
        .await;
    assert_eq!(
        r,
        json!({
            "res": 2, "ok": true, "role_name": "anchor_sd",
            "limits": anchor_sd_limits(), "privileges": 255,
        })
    );
    // ...until it can publish: then the others hear of it as entering.
    assert_eq!(
        a.event("user_entered").await,
        json!({"event": "user_entered", "user_id": "bob", "role_name": "anchor_sd"})
    );
    b.no_event_within(QUIET).await;
    // A publishing user's later switches are role_changed, even to a role that cannot publish.
    assert_ok(
        &b.request("switch_role", json!({"role_name": "audience"}))
            .await,
    );
    assert_eq!(
        a.event("role_changed").await,
        json!({"event": "role_changed", "user_id": "bob", "role_name": "audience"})
    );
    // Once announced, always followed: its exit as an audience is announced too.
    assert_ok(&b.request("exit_room", json!({})).await);
    assert_eq!(
        a.event("user_exited").await,
        json!({"event": "user_exited", "user_id": "bob", "reason": "left"})
    );
}

#[tokio::test]
async fn later_entrants_see_the_switched_role() {
    let server = start().await;
    let (mut a, _) = enter_as(&server, APP_A, "alice", 1, None).await;
    assert_ok(
        &a.request("switch_role", json!({"role_name": "anchor_sd"}))
            .await,
    );
    let (_b, r) = enter_as(&server, APP_A, "bob", 1, None).await;
    assert_eq!(
        r["users"],
        json!([{"user_id": "alice", "role_name": "anchor_sd", "streams": []}])
    );
}
