//! Rule (docs/api.md, "Authentication and limits"): every REST call carries
//! `Authorization: Bearer <UserSig of the app's admin_user>`; a missing, malformed, expired, forged or
//! other user's token is 401 with a JSON error; one app's admin never touches another app; an
//! unknown app is 404; each app may make `rest_rate_limit` requests per second, more get 429.

mod common;
mod ops_common;

use common::now;
use ops_common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Every route of the API, for app `app` (numeric room 1, string room "s 1", role "vip").
fn routes(app: u32) -> Vec<(&'static str, String, String)> {
    let p = format!("/v1/apps/{app}");
    let remove = json!({"user_ids": ["alice"]}).to_string();
    let role = json!({"can_publish": true}).to_string();
    vec![
        ("GET", format!("{p}/rooms"), String::new()),
        ("GET", format!("{p}/rooms/1"), String::new()),
        (
            "GET",
            format!("{p}/str_rooms/{}", enc("s 1")),
            String::new(),
        ),
        ("POST", format!("{p}/rooms/1/dismiss"), String::new()),
        (
            "POST",
            format!("{p}/str_rooms/{}/dismiss", enc("s 1")),
            String::new(),
        ),
        ("POST", format!("{p}/rooms/1/remove_users"), remove.clone()),
        (
            "POST",
            format!("{p}/str_rooms/{}/remove_users", enc("s 1")),
            remove,
        ),
        ("GET", format!("{p}/roles"), String::new()),
        ("PUT", format!("{p}/roles/vip"), role),
        ("DELETE", format!("{p}/roles/anchor"), String::new()),
    ]
}

#[tokio::test]
async fn bad_credentials_are_401_json_on_every_route() {
    let server = start_ops().await;
    let good = admin_token(APP_A);
    let expired = fanout_auth::gen_usersig(APP_A, KEY_A, ADMIN, 60, now() - 3600);
    let not_admin = fanout_auth::gen_usersig(APP_A, KEY_A, "alice", 86400, now());
    let other_apps_admin = admin_token(APP_B);
    // Signed with app B's key but claiming app A and its admin.
    let wrong_key = fanout_auth::gen_usersig(APP_A, KEY_B, ADMIN, 86400, now());
    // App A's admin token with one character of the signature changed.
    let tampered = {
        let raw = fanout_auth::codec::decode_token(&good).expect("decodes");
        let text = String::from_utf8(raw).expect("utf8");
        let i = text.find("\"TLS.sig\": \"").expect("has TLS.sig") + 12;
        let mut bytes = text.into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        fanout_auth::codec::encode_token(&bytes)
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("empty header", Some(String::new())),
        ("wrong scheme", Some(format!("Basic {good}"))),
        ("token without scheme", Some(good.clone())),
        ("empty bearer", Some("Bearer ".into())),
        ("garbage bearer", Some("Bearer not-a-usersig!!".into())),
        ("expired", Some(format!("Bearer {expired}"))),
        (
            "a non-admin user's token",
            Some(format!("Bearer {not_admin}")),
        ),
        (
            "another app's admin",
            Some(format!("Bearer {other_apps_admin}")),
        ),
        (
            "signed with another key",
            Some(format!("Bearer {wrong_key}")),
        ),
        ("forged signature", Some(format!("Bearer {tampered}"))),
    ];
    for (method, path, body) in routes(APP_A) {
        for (what, auth) in &cases {
            let r = api_auth(&server, method, &path, auth.as_deref(), body.clone()).await;
            assert_eq!(r.status, 401, "{what}: {method} {path}: {r}");
            assert_error(&r, 401, None);
        }
    }
    // The good token works (sanity check of the harness).
    let r = api_token(
        &server,
        "GET",
        &format!("/v1/apps/{APP_A}/rooms"),
        &good,
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json, json!({"rooms": []}));
}

#[tokio::test]
async fn admin_user_is_per_app() {
    // App B's admin_user is "boss": an "administrator" token of B (right key) is not an admin's.
    let server = start_ops().await;
    let administrator_of_b = fanout_auth::gen_usersig(APP_B, KEY_B, ADMIN, 86400, now());
    let r = api_token(
        &server,
        "GET",
        &format!("/v1/apps/{APP_B}/rooms"),
        &administrator_of_b,
        "",
    )
    .await;
    assert_error(&r, 401, None);
    let r = api_token(
        &server,
        "GET",
        &format!("/v1/apps/{APP_B}/rooms"),
        &admin_token(APP_B),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    // A "boss" token of app A is not A's admin either.
    let boss_of_a = fanout_auth::gen_usersig(APP_A, KEY_A, B_ADMIN, 86400, now());
    let r = api_token(
        &server,
        "GET",
        &format!("/v1/apps/{APP_A}/rooms"),
        &boss_of_a,
        "",
    )
    .await;
    assert_error(&r, 401, None);
}

#[tokio::test]
async fn app_a_admin_never_touches_app_b() {
    let server = start_ops().await;
    // App B has a numeric room 1 with two users, a string room, and its roles.
    let (mut b1, _) = enter_num(&server, APP_B, "bea", 1, None).await;
    let (mut b2, _) = enter_num(&server, APP_B, "ben", 1, None).await;
    let (mut b3, _) = enter_str(&server, APP_B, "bo", "s 1", None).await;
    // App B's default role cannot publish, so ben's entry is announced to no one.
    let roles_before = get_ok(&server, APP_B, "/roles").await;

    let a_token = admin_token(APP_A);
    for (method, path, body) in routes(APP_B) {
        let r = api_token(&server, method, &path, &a_token, body).await;
        assert_error(&r, 401, None);
    }
    // Nothing changed in B: rooms, users and roles are as before, and nobody was kicked.
    let rooms = get_ok(&server, APP_B, "/rooms").await;
    assert_eq!(
        rooms,
        json!({"rooms": [{"room_id": 1, "owner": "bea", "users": 2},
                         {"str_room_id": "s 1", "owner": "bo", "users": 1}]}),
    );
    assert_eq!(get_ok(&server, APP_B, "/roles").await, roles_before);
    for c in [&mut b1, &mut b2, &mut b3] {
        c.no_event_within(Duration::from_millis(200)).await;
        c.assert_alive().await;
    }
    // And app A's own view does not show B's rooms.
    assert_eq!(get_ok(&server, APP_A, "/rooms").await, json!({"rooms": []}));
}

#[tokio::test]
async fn unknown_app_is_404_json() {
    let server = start_ops().await;
    let unknown: u32 = 1400000099;
    let token = fanout_auth::gen_usersig(unknown, "whatever", ADMIN, 86400, now());
    for app in ["1400000099", "0", "abc", "-1", "99999999999"] {
        for rest in ["/rooms", "/rooms/1", "/roles"] {
            let path = format!("/v1/apps/{app}{rest}");
            let r = api_token(&server, "GET", &path, &token, "").await;
            assert_error(&r, 404, None);
            // Even with a valid token of a real app.
            let r = api_token(&server, "GET", &path, &admin_token(APP_A), "").await;
            assert_error(&r, 404, None);
        }
    }
    let r = api_token(
        &server,
        "POST",
        &format!("/v1/apps/{unknown}/rooms/1/dismiss"),
        &token,
        "",
    )
    .await;
    assert_error(&r, 404, None);
}

/// Sends `n` GETs of `path` with `token` at once; returns the statuses (429s checked to be JSON)
/// and how long the burst took.
async fn burst(server: &Server, path: &str, token: &str, n: usize) -> (Vec<u16>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (addr, auth) = (server.running.addr, format!("Bearer {token}"));
            let path = path.to_owned();
            tokio::spawn(
                async move { http(addr, "GET", &path, &[("authorization", &auth)], "").await },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.expect("request task");
        match r.status {
            200 => {}
            429 => assert_error(&r, 429, None),
            _ => panic!("unexpected {r}"),
        }
        statuses.push(r.status);
    }
    (statuses, started.elapsed())
}

/// App R allows 5 requests a second (burst 5): of a burst of 10, 5 pass and the others get 429
/// (JSON); other apps are not affected; after a second it works again.
#[tokio::test]
async fn rate_limit_per_app() {
    let server = start_ops().await;
    let list = format!("/v1/apps/{APP_R}/rooms");
    let token = admin_token(APP_R);
    let (statuses, elapsed) = burst(&server, &list, &token, R_RATE + 5).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    // Tokens come back at R_RATE per second: at most that many more could have passed meanwhile.
    let refill = (elapsed.as_secs_f64() * R_RATE as f64).ceil() as usize;
    assert!(
        ok >= R_RATE && ok <= R_RATE + refill,
        "{ok} of {} allowed within {elapsed:?}: {statuses:?}",
        statuses.len()
    );
    assert!(
        statuses.contains(&429),
        "requests over the limit get 429 ({elapsed:?}): {statuses:?}"
    );

    // App A has its own bucket (and a high limit): a burst right now all passes.
    let (statuses, _) = burst(
        &server,
        &format!("/v1/apps/{APP_A}/rooms"),
        &admin_token(APP_A),
        10,
    )
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "app A: {statuses:?}");

    // After a second the full burst is available again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..R_RATE {
        let r = api_token(&server, "GET", &list, &token, "").await;
        assert_eq!(r.status, 200, "request {i} after the pause: {r}");
    }
    // And the limit holds again afterwards.
    let (statuses, _) = burst(&server, &list, &token, R_RATE).await;
    assert!(statuses.contains(&429), "{statuses:?}");
}
