//! Rule (docs/api.md): `GET /v1/openapi.json` describes the REST API as served — the same routes and
//! methods, each behind the admin bearer token, every status the server answers with documented,
//! and live replies matching the documented schemas.

mod common;
mod ops_common;

use ops_common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The API's routes as the server implements them (docs/api.md's tables).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/apps/{app}/rooms"),
    ("get", "/v1/apps/{app}/rooms/{room}"),
    ("get", "/v1/apps/{app}/str_rooms/{room}"),
    ("post", "/v1/apps/{app}/rooms/{room}/dismiss"),
    ("post", "/v1/apps/{app}/str_rooms/{room}/dismiss"),
    ("post", "/v1/apps/{app}/rooms/{room}/remove_users"),
    ("post", "/v1/apps/{app}/str_rooms/{room}/remove_users"),
    ("get", "/v1/apps/{app}/roles"),
    ("put", "/v1/apps/{app}/roles/{name}"),
    ("delete", "/v1/apps/{app}/roles/{name}"),
];

async fn openapi(server: &Server) -> Value {
    let r = http(server.running.addr, "GET", "/v1/openapi.json", &[], "").await;
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{:?}",
        r.headers
    );
    assert!(r.json.is_object(), "not JSON: {r}");
    r.json
}

/// Resolves a local `$ref`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.strip_prefix('#').expect("local $ref");
            doc.pointer(ptr)
                .unwrap_or_else(|| panic!("dangling $ref {r}"))
        }
        None => schema,
    }
}

/// Validates `v` against the subset of JSON Schema the document uses; returns the violations.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !ok {
            out.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            out.push(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            out.push(format!("{at}: {n} < minimum {min}"));
        }
    }
    if let Some(o) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or("");
            if !o.contains_key(r) {
                out.push(format!("{at}: required `{r}` missing in {v}"));
            }
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(doc, s, x, &format!("{at}.{k}"), out),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push(format!("{at}: `{k}` is not a documented property"))
                    }
                    Some(s) if s.is_object() => validate(doc, s, x, &format!("{at}.{k}"), out),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"), out);
        }
    }
}

/// The documented schema of `method path`'s reply with `status`.
fn reply_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let s = &doc["paths"][path][method]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(
        s.is_object(),
        "{method} {path}: no documented JSON reply for {status}"
    );
    s
}

#[tokio::test]
async fn document_lists_exactly_the_served_routes() {
    let server = start_ops().await;
    let doc = openapi(&server).await;
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.0"),
        "OpenAPI 3.0: {}",
        doc["openapi"]
    );
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .filter(|m| *m != "parameters")
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
    assert_eq!(
        doc["components"]["securitySchemes"]["usersig"],
        json!({"type": "http", "scheme": "bearer", "description": "UserSig of the app's admin_user"})
    );
    // Every documented operation is served and guarded: without a token it is 401 (not 404/405).
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{app}", &APP_A.to_string())
            .replace("{room}", "1")
            .replace("{name}", "vip");
        let r = api_auth(&server, &method.to_uppercase(), &concrete, None, "").await;
        assert_error(&r, 401, None);
        let op = &doc["paths"][path][method];
        assert_eq!(op["security"], json!([{"usersig": []}]), "{method} {path}");
    }
}

#[tokio::test]
async fn every_status_the_server_answers_is_documented() {
    let server = start_ops().await;
    let doc = openapi(&server).await;
    let mut missing = Vec::new();
    for (method, path) in ROUTES {
        let responses = &doc["paths"][path][method]["responses"];
        let mut statuses = vec![200, 401, 404, 429];
        if path.contains("{room}") || (path.contains("{name}") && *method == "put") {
            statuses.push(400);
        }
        if *method == "delete" {
            statuses.push(409);
        }
        // Operations with a body answer 413 for one over 16 KiB (see ops_rest_bad_input).
        if doc["paths"][path][method].get("requestBody").is_some() {
            statuses.push(413);
        }
        for s in statuses {
            let r = &responses[s.to_string()];
            if r.is_null() {
                missing.push(format!("{method} {path}: {s}"));
            } else if s != 200 {
                let schema = reply_schema(&doc, method, path, s);
                assert_eq!(
                    resolve(&doc, schema),
                    &doc["components"]["schemas"]["Error"],
                    "{method} {path} {s}"
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "statuses the server answers with but the document does not list:\n{}",
        missing.join("\n")
    );
}

#[tokio::test]
async fn live_replies_match_the_documented_schemas() {
    let server = start_ops().await;
    let doc = openapi(&server).await;
    let (_a, _) = enter_num(&server, APP_A, "alice", 1, None).await;
    let (_b, _) = enter_num(&server, APP_A, "bob", 1, Some("audience")).await;
    let (_c, _) = enter_str(&server, APP_A, "carol", "s 1", None).await;
    let (_d, _) = enter_str(&server, APP_A, "dave", "s 2", None).await;
    let s1 = enc("s 1");
    let s2 = enc("s 2");
    let mut violations = Vec::new();
    let calls: Vec<(&str, &str, String, Value, u16)> = vec![
        (
            "get",
            "/v1/apps/{app}/rooms",
            "/rooms".into(),
            Value::Null,
            200,
        ),
        (
            "get",
            "/v1/apps/{app}/rooms/{room}",
            "/rooms/1".into(),
            Value::Null,
            200,
        ),
        (
            "get",
            "/v1/apps/{app}/str_rooms/{room}",
            format!("/str_rooms/{s1}"),
            Value::Null,
            200,
        ),
        (
            "get",
            "/v1/apps/{app}/roles",
            "/roles".into(),
            Value::Null,
            200,
        ),
        (
            "put",
            "/v1/apps/{app}/roles/{name}",
            "/roles/vip".into(),
            json!({"can_publish": true, "max_fps": 20}),
            200,
        ),
        (
            "delete",
            "/v1/apps/{app}/roles/{name}",
            "/roles/vip".into(),
            Value::Null,
            200,
        ),
        (
            "post",
            "/v1/apps/{app}/rooms/{room}/remove_users",
            "/rooms/1/remove_users".into(),
            json!({"user_ids": ["bob"]}),
            200,
        ),
        (
            "post",
            "/v1/apps/{app}/str_rooms/{room}/remove_users",
            format!("/str_rooms/{s2}/remove_users"),
            json!({"user_ids": ["dave", "nobody"]}),
            200,
        ),
        (
            "post",
            "/v1/apps/{app}/rooms/{room}/dismiss",
            "/rooms/1/dismiss".into(),
            Value::Null,
            200,
        ),
        (
            "post",
            "/v1/apps/{app}/str_rooms/{room}/dismiss",
            format!("/str_rooms/{s1}/dismiss"),
            Value::Null,
            200,
        ),
        // Errors.
        (
            "get",
            "/v1/apps/{app}/rooms/{room}",
            "/rooms/0".into(),
            Value::Null,
            400,
        ),
        (
            "get",
            "/v1/apps/{app}/rooms/{room}",
            "/rooms/9".into(),
            Value::Null,
            404,
        ),
        (
            "delete",
            "/v1/apps/{app}/roles/{name}",
            "/roles/anchor".into(),
            Value::Null,
            409,
        ),
        (
            "put",
            "/v1/apps/{app}/roles/{name}",
            "/roles/vip".into(),
            json!({"can_publish": true, "max_fps": 0}),
            400,
        ),
    ];
    for (method, path, rest, body, status) in calls {
        // The request bodies we send are valid per the document too.
        if !body.is_null() {
            let schema =
                &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
            if status == 200 {
                let mut v = Vec::new();
                validate(&doc, schema, &body, "request", &mut v);
                assert!(
                    v.is_empty(),
                    "{method} {rest}: our request is invalid: {v:?}"
                );
            }
        }
        let r = api(&server, &method.to_uppercase(), APP_A, &rest, body).await;
        assert_eq!(r.status, status, "{method} {rest}: {r}");
        let schema = reply_schema(&doc, method, path, status);
        validate(
            &doc,
            schema,
            &r.json,
            &format!("{method} {rest} -> {status}"),
            &mut violations,
        );
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
