//! Rule (docs/api.md, "Roles"): the admin lists, creates or replaces (PUT) and deletes role
//! parameter sets at runtime. A change applies to users who enter (or switch role) afterwards; users
//! already in rooms keep the parameters they entered with. The default role cannot be deleted
//! (409); a bad name or bad parameters are 400 naming the field.

mod common;
mod ops_common;

use ops_common::*;
use serde_json::{json, Value};

fn limits(can_publish: bool, video: u32, w: u32, h: u32, fps: u32) -> Value {
    json!({"can_publish": can_publish, "max_video_kbps": video, "max_width": w, "max_height": h,
           "max_fps": fps, "max_audio_kbps": 64, "max_sub_video_kbps": 1500})
}

#[tokio::test]
async fn list_roles() {
    let server = start_ops().await;
    assert_eq!(
        get_ok(&server, APP_A, "/roles").await,
        json!({
            "default_role": "anchor",
            "roles": {
                "anchor": anchor_limits(),
                "anchor_sd": limits(true, 600, 640, 360, 15),
                "audience": audience_limits(),
            }
        })
    );
    assert_eq!(
        get_ok(&server, APP_B, "/roles").await,
        json!({"default_role": "audience",
               "roles": {"audience": audience_limits(), "anchor": anchor_limits()}})
    );
}

#[tokio::test]
async fn put_creates_a_role_that_new_entrants_get() {
    let server = start_ops().await;
    // Before: "vip" is unknown, so a user asking for it falls back to the default role.
    let (_early, r) = enter_num(&server, APP_A, "early", 1, Some("vip")).await;
    assert_eq!(r["role_fallback"], true, "{r}");
    assert_eq!(r["role_name"], "anchor", "{r}");

    let r = api(
        &server,
        "PUT",
        APP_A,
        "/roles/vip",
        json!({"can_publish": true, "max_video_kbps": 900, "max_fps": 24}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let vip = limits(true, 900, 1280, 720, 24);
    assert_eq!(r.json, json!({"role_name": "vip", "limits": vip}));
    let roles = get_ok(&server, APP_A, "/roles").await;
    assert_eq!(roles["roles"]["vip"], vip, "{roles}");
    // Another app does not get it.
    let roles_b = get_ok(&server, APP_B, "/roles").await;
    assert!(roles_b["roles"].get("vip").is_none(), "{roles_b}");

    let (_v, r) = enter_num(&server, APP_A, "val", 1, Some("vip")).await;
    assert_eq!(r["role_fallback"], false, "{r}");
    assert_eq!(r["role_name"], "vip", "{r}");
    assert_eq!(r["limits"], vip, "{r}");
    // The early user keeps its fallback role.
    let d = get_ok(&server, APP_A, "/rooms/1").await;
    assert_eq!(users_by_id(&d)["early"]["role_name"], "anchor", "{d}");
    assert_eq!(users_by_id(&d)["val"]["limits"], vip, "{d}");
    // In app B, "vip" is still unknown.
    let (_b, r) = enter_num(&server, APP_B, "bert", 1, Some("vip")).await;
    assert_eq!(r["role_fallback"], true, "{r}");
}

#[tokio::test]
async fn users_in_rooms_keep_the_parameters_they_entered_with() {
    let server = start_ops().await;
    let r = api(
        &server,
        "PUT",
        APP_A,
        "/roles/vip",
        json!({"can_publish": true, "max_video_kbps": 900}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let old = limits(true, 900, 1280, 720, 30);
    let (_erin, r) = enter_num(&server, APP_A, "erin", 9, Some("vip")).await;
    assert_eq!(r["limits"], old);
    let (mut sam, _) = enter_num(&server, APP_A, "sam", 9, Some("audience")).await;

    // Replace vip: lower video, no publishing.
    let r = api(
        &server,
        "PUT",
        APP_A,
        "/roles/vip",
        json!({"can_publish": false, "max_video_kbps": 300, "max_width": 320, "max_height": 240}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let new = limits(false, 300, 320, 240, 30);
    assert_eq!(r.json["limits"], new, "{r}");

    let d = get_ok(&server, APP_A, "/rooms/9").await;
    assert_eq!(
        users_by_id(&d)["erin"]["limits"],
        old,
        "erin keeps what she entered with: {d}"
    );
    assert_eq!(users_by_id(&d)["erin"]["role_name"], "vip");
    // A new entrant gets the new parameters; so does a user switching to the role now.
    let (_frank, r) = enter_num(&server, APP_A, "frank", 9, Some("vip")).await;
    assert_eq!(r["limits"], new, "{r}");
    let r = sam
        .request("switch_role", json!({"role_name": "vip"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["limits"], new, "{r}");
    let d = get_ok(&server, APP_A, "/rooms/9").await;
    let users = users_by_id(&d);
    assert_eq!(users["erin"]["limits"], old, "{d}");
    assert_eq!(users["frank"]["limits"], new, "{d}");
    assert_eq!(users["sam"]["limits"], new, "{d}");

    // Changing the default role's parameters works the same way.
    let r = api(
        &server,
        "PUT",
        APP_A,
        "/roles/anchor",
        json!({"can_publish": true, "max_fps": 10}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let (_g, r) = enter_num(&server, APP_A, "gina", 9, None).await;
    assert_eq!(r["role_name"], "anchor");
    assert_eq!(r["limits"], limits(true, 1500, 1280, 720, 10), "{r}");
}

#[tokio::test]
async fn delete_role() {
    let server = start_ops().await;
    let (_s, _) = enter_num(&server, APP_A, "sd", 3, Some("anchor_sd")).await;
    let r = api(&server, "DELETE", APP_A, "/roles/anchor_sd", Value::Null).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json, json!({"deleted": "anchor_sd"}));
    let roles = get_ok(&server, APP_A, "/roles").await;
    assert_eq!(
        roles["roles"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["anchor", "audience"],
        "{roles}"
    );
    // New entrants asking for it fall back; the user already in the room keeps it.
    let (mut late, r) = enter_num(&server, APP_A, "late", 3, Some("anchor_sd")).await;
    assert_eq!(r["role_fallback"], true, "{r}");
    assert_eq!(r["role_name"], "anchor", "{r}");
    let r = late
        .request("switch_role", json!({"role_name": "anchor_sd"}))
        .await;
    assert_eq!(r["code"], -3340, "{r}");
    let d = get_ok(&server, APP_A, "/rooms/3").await;
    assert_eq!(users_by_id(&d)["sd"]["role_name"], "anchor_sd", "{d}");
    assert_eq!(
        users_by_id(&d)["sd"]["limits"],
        limits(true, 600, 640, 360, 15),
        "{d}"
    );

    // Deleting it again: no such role.
    let r = api(&server, "DELETE", APP_A, "/roles/anchor_sd", Value::Null).await;
    assert_error(&r, 404, Some("name"));
    // The default role cannot be deleted.
    let r = api(&server, "DELETE", APP_A, "/roles/anchor", Value::Null).await;
    assert_error(&r, 409, Some("name"));
    let r = api(&server, "DELETE", APP_B, "/roles/audience", Value::Null).await;
    assert_error(&r, 409, Some("name"));
    let roles = get_ok(&server, APP_A, "/roles").await;
    assert_eq!(roles["default_role"], "anchor");
    assert!(roles["roles"].get("anchor").is_some(), "{roles}");
}

/// PUT with a bad name or a zero limit: 400 naming the field, and nothing changes.
#[tokio::test]
async fn put_bad_input_names_the_field() {
    let server = start_ops().await;
    let before = get_ok(&server, APP_A, "/roles").await;
    let cases: Vec<(String, Value, &str)> = vec![
        // Zero values.
        (
            "vip".into(),
            json!({"can_publish": true, "max_video_kbps": 0}),
            "max_video_kbps",
        ),
        (
            "vip".into(),
            json!({"can_publish": true, "max_width": 0}),
            "max_width",
        ),
        (
            "vip".into(),
            json!({"can_publish": true, "max_height": 0}),
            "max_height",
        ),
        (
            "vip".into(),
            json!({"can_publish": true, "max_fps": 0}),
            "max_fps",
        ),
        (
            "vip".into(),
            json!({"can_publish": true, "max_audio_kbps": 0}),
            "max_audio_kbps",
        ),
        (
            "vip".into(),
            json!({"can_publish": true, "max_sub_video_kbps": 0}),
            "max_sub_video_kbps",
        ),
        (
            "anchor".into(),
            json!({"can_publish": true, "max_fps": 0}),
            "max_fps",
        ),
        // Bad names (URL-encoded in the path).
        (enc("bad name"), json!({"can_publish": true}), "name"),
        (enc("vip!"), json!({"can_publish": true}), "name"),
        ("x".repeat(33), json!({"can_publish": true}), "name"),
        (enc("rôle"), json!({"can_publish": true}), "name"),
    ];
    for (name, body, field) in cases {
        let r = api(
            &server,
            "PUT",
            APP_A,
            &format!("/roles/{name}"),
            body.clone(),
        )
        .await;
        assert_error(&r, 400, Some(field));
    }
    // 32 characters is a valid name.
    let name32 = "a".repeat(32);
    let r = api(
        &server,
        "PUT",
        APP_A,
        &format!("/roles/{name32}"),
        json!({"can_publish": false}),
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    let r = api(
        &server,
        "DELETE",
        APP_A,
        &format!("/roles/{name32}"),
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        get_ok(&server, APP_A, "/roles").await,
        before,
        "bad PUTs changed nothing"
    );
}

/// Unknown, missing or mistyped parameters: 400 naming the field (the server's serde error must be
/// mapped to the field it is about).
#[tokio::test]
async fn put_missing_or_mistyped_parameter_names_the_field() {
    let server = start_ops().await;
    let before = get_ok(&server, APP_A, "/roles").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"can_publish": true, "max_fpz": 3}), "max_fpz"),
        (json!({}), "can_publish"),
        (json!({"max_fps": 10}), "can_publish"),
        (json!({"can_publish": "yes"}), "can_publish"),
        (json!({"can_publish": 1}), "can_publish"),
        (json!({"can_publish": true, "max_fps": "30"}), "max_fps"),
        (json!({"can_publish": true, "max_fps": -1}), "max_fps"),
        (json!({"can_publish": true, "max_fps": 2.5}), "max_fps"),
        (
            json!({"can_publish": true, "max_video_kbps": 4294967296u64}),
            "max_video_kbps",
        ),
        (json!({"can_publish": true, "max_width": null}), "max_width"),
    ];
    let mut failures = Vec::new();
    for (body, field) in cases {
        let r = api(&server, "PUT", APP_A, "/roles/vip", body.clone()).await;
        // Always a JSON 400 ...
        assert_error(&r, 400, None);
        // ... that names the field (collected, so one run shows every case).
        if r.json.get("field") != Some(&json!(field)) {
            failures.push(format!("{body} -> {r} (want field {field:?})"));
        }
    }
    assert_eq!(
        get_ok(&server, APP_A, "/roles").await,
        before,
        "bad PUTs changed nothing"
    );
    assert!(
        failures.is_empty(),
        "errors without the field:\n{}",
        failures.join("\n")
    );
}
