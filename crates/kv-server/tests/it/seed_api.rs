//! The seed's core: SET / GET / HEAD / DELETE with TTLs, lazy expiry and the seed's curl
//! examples, byte for byte.

use crate::common::{Server, TestDatabase};
use serde_json::json;

#[test]
fn seed_curl_examples_work() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let created = server.send(
        "POST",
        "/user:101/",
        &[("Content-Type", "application/json")],
        Some(r#"{"value": {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}}"#),
    );
    let body = created.expect(201);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["action"], "created");
    assert_eq!(body["key"], "user:101");
    assert_eq!(body["expires_at"], json!(null));
    assert!(body["version"].as_i64().is_some_and(|v| v > 0));
    assert_eq!(created.header("content-type"), Some("application/json"));

    let got = server.get("/user:101/");
    let body = got.expect(200);
    assert_eq!(
        body["value"],
        json!({"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]})
    );
    assert_eq!(body["key"], "user:101");
    assert_eq!(body["ttl_remaining"], -1);
    assert_eq!(body["ttl_remaining_ms"], -1);
    assert_eq!(body["expires_at"], json!(null));
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}\"", body["version"]).as_str())
    );

    let otp = server
        .post("/otp:555/", r#"{"value": 849201, "ttl": 60}"#)
        .expect(201);
    let expires_at = otp["expires_at"].as_str().expect("expires_at");
    assert!(
        expires_at.ends_with('Z') && expires_at.len() == 24,
        "{expires_at}"
    );
    let got = server.get("/otp:555/").expect(200);
    assert_eq!(got["value"], 849201);
    assert_eq!(got["ttl_remaining"], 60);
    let ms = got["ttl_remaining_ms"].as_i64().expect("ms");
    assert!((55_000..=60_000).contains(&ms), "{ms}");
    assert_eq!(got["expires_at"], expires_at);
}

#[test]
fn put_and_post_update_and_any_json_value_round_trips() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let first = server.put("/k", r#"{"value": 1}"#).expect(201);
    let second = server.post("/k/", r#"{"value": "two"}"#).expect(200);
    assert_eq!(second["action"], "updated");
    assert!(second["version"].as_i64() > first["version"].as_i64());
    for value in [
        json!(null),
        json!(true),
        json!(-12.5),
        json!("text with \"quotes\" and ünïcode"),
        json!([1, [2, [3]], {"a": null}]),
        json!({"nested": {"deep": [1, 2, 3]}, "empty": {}}),
    ] {
        server
            .post("/k", &json!({ "value": value }).to_string())
            .expect(200);
        assert_eq!(server.get("/k").expect(200)["value"], value);
    }
    // No Content-Type at all (curl -d without -H) and a wrong one are both parsed as JSON.
    server
        .send("POST", "/plain", &[], Some(r#"{"value": 5}"#))
        .expect(201);
    server
        .send(
            "POST",
            "/form",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(r#"{"value": 6}"#),
        )
        .expect(201);
    assert_eq!(server.get("/form").expect(200)["value"], 6);
}

#[test]
fn trailing_slash_is_optional_and_keys_are_percent_decoded() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.post("/a%2Fb", r#"{"value": 1}"#).expect(201);
    assert_eq!(server.get("/a%2Fb/").expect(200)["key"], "a/b");
    server
        .post("/caf%C3%A9%20bar", r#"{"value": 2}"#)
        .expect(201);
    assert_eq!(
        server.get("/caf%C3%A9%20bar").expect(200)["key"],
        "café bar"
    );
    server.post("/a+b", r#"{"value": 3}"#).expect(201);
    assert_eq!(server.get("/a+b").expect(200)["key"], "a+b");
    server.post("/100%25", r#"{"value": 4}"#).expect(201);
    assert_eq!(server.get("/100%25").expect(200)["key"], "100%");
}

#[test]
fn missing_and_expired_keys_are_distinct_404s_and_expiry_is_lazy() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let missing = server.get("/nope/").expect_error(404, "not_found");
    assert_eq!(missing["error"], "Key not found");

    server
        .post("/short", r#"{"value": "x", "ttl_ms": 50}"#)
        .expect(201);
    std::thread::sleep(std::time::Duration::from_millis(80));
    let expired = server.get("/short").expect_error(404, "expired");
    assert_eq!(expired["error"], "Key not found (expired)");
    // The row was deleted by that GET: the next one sees a plain miss.
    assert_eq!(
        server.get("/short").expect_error(404, "not_found")["error"],
        "Key not found"
    );
    // An expired key is absent for every operation.
    server
        .post("/gone", r#"{"value": 1, "ttl_ms": 30}"#)
        .expect(201);
    server
        .post("/gone2", r#"{"value": 1, "ttl_ms": 30}"#)
        .expect(201);
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_eq!(server.send("HEAD", "/gone", &[], None).status, 404);
    server.delete("/gone2").expect_error(404, "expired");
    server.post("/gone2/incr", "").expect(200);
    assert_eq!(server.get("/gone2").expect(200)["value"], 1);
}

#[test]
fn set_without_ttl_clears_an_expiry_and_ttl_sets_one() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.post("/k", r#"{"value": 1, "ttl": 100}"#).expect(201);
    assert_eq!(server.get("/k").expect(200)["ttl_remaining"], 100);
    server.post("/k", r#"{"value": 2}"#).expect(200);
    let got = server.get("/k").expect(200);
    assert_eq!(
        (got["ttl_remaining"].clone(), got["expires_at"].clone()),
        (json!(-1), json!(null))
    );
}

#[test]
fn head_and_delete() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let set = server.post("/k", r#"{"value": 1}"#).expect(201);
    let head = server.send("HEAD", "/k/", &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("etag"),
        Some(format!("\"{}\"", set["version"]).as_str())
    );
    assert_eq!(server.send("HEAD", "/missing", &[], None).status, 404);

    let deleted = server.delete("/k/").expect(200);
    assert_eq!(deleted["status"], "ok");
    assert_eq!(deleted["key"], "k");
    assert_eq!(deleted["deleted"], true);
    assert!(deleted["version"].as_i64() > set["version"].as_i64());
    server.get("/k").expect_error(404, "not_found");
    server.delete("/k").expect_error(404, "not_found");
}

#[test]
fn health_endpoints() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(
        server.get("/_health/live").expect(200),
        json!({"status": "ok"})
    );
    assert_eq!(
        server.get("/_health").expect(200),
        json!({"status": "ok", "database": db.backend_name()})
    );
    assert_eq!(server.get("/_health/ready").expect(200)["status"], "ok");
}

#[test]
fn the_server_logs_where_it_listens_and_each_request() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.get("/_health/live").expect(200);
    server.get("/some-key").expect(404);
    let log = server.log();
    assert!(
        log.contains(&format!("listening on {}", server.base)),
        "{log}"
    );
    assert!(log.contains(&db.url), "{log}");
    // The access log line is written after the response; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server.log().contains("GET /some-key") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        server.log().contains("\"GET /some-key HTTP/1.1\" 404"),
        "{}",
        server.log()
    );
}

#[test]
fn values_round_trip_exactly_big_numbers_and_member_order() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server
        .put(
            "/exact",
            r#"{"value": {"z": 123456789012345678901234567890, "a": 1.50, "m": [0.1, -0.0]}}"#,
        )
        .expect(201);
    let got = server.get("/exact");
    assert_eq!(got.status, 200);
    assert!(
        got.body
            .contains(r#""value":{"z":123456789012345678901234567890,"a":1.50,"m":[0.1,-0.0]}"#),
        "{}",
        got.body
    );
}
