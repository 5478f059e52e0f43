//! Versions, ETags and conditional writes: nx, xx, if_version, keep_ttl, If-Match,
//! If-None-Match; EXPIRE / PERSIST; INCR / DECR.

use crate::common::{Server, TestDatabase, store_version, version};
use serde_json::{Value, json};

#[test]
fn every_write_takes_a_new_higher_version_and_failed_writes_take_none() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.post("/s", r#"{"value": "text"}"#).expect(201);
    let v1 = version(&server.post("/a", r#"{"value": 1}"#).expect(201));
    let v2 = version(&server.post("/b", r#"{"value": 1}"#).expect(201));
    let v3 = version(&server.patch("/a", r#"{"ttl": 100}"#).expect(200));
    let v4 = version(&server.post("/c/incr", "").expect(200));
    let v5 = version(&server.delete("/b").expect(200));
    assert!(
        v1 < v2 && v2 < v3 && v3 < v4 && v4 < v5,
        "{v1} {v2} {v3} {v4} {v5}"
    );
    // A key deleted and set again gets a new version, never an old one.
    let v6 = version(&server.post("/b", r#"{"value": 2}"#).expect(201));
    assert!(v6 > v5);
    // Failed writes change nothing.
    server
        .post("/b", r#"{"value": 3, "nx": true}"#)
        .expect_error(412, "precondition_failed");
    server
        .post("/s/incr", "")
        .expect_error(409, "not_an_integer");
    assert_eq!(store_version(&server), v6);
    assert_eq!(server.get("/b").expect(200)["value"], 2);
}

#[test]
fn nx_and_xx() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server
        .post("/k", r#"{"value": 1, "xx": true}"#)
        .expect_error(412, "precondition_failed");
    server.get("/k").expect_error(404, "not_found");
    server.post("/k", r#"{"value": 1, "nx": true}"#).expect(201);
    server
        .post("/k", r#"{"value": 2, "nx": true}"#)
        .expect_error(412, "precondition_failed");
    assert_eq!(
        server.post("/k", r#"{"value": 3, "xx": true}"#).expect(200)["action"],
        "updated"
    );
    assert_eq!(server.get("/k").expect(200)["value"], 3);
    server
        .post("/k", r#"{"value": 1, "nx": true, "xx": true}"#)
        .expect_error(400, "invalid_option");
    // An expired key is absent for nx.
    server
        .post("/e", r#"{"value": 1, "ttl_ms": 20}"#)
        .expect(201);
    std::thread::sleep(std::time::Duration::from_millis(40));
    assert_eq!(
        server.post("/e", r#"{"value": 2, "nx": true}"#).expect(201)["action"],
        "created"
    );
}

#[test]
fn if_version_and_if_match_headers() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let v = version(&server.post("/k", r#"{"value": 1}"#).expect(201));
    server
        .post(
            "/k",
            &json!({"value": 2, "if_version": v + 100}).to_string(),
        )
        .expect_error(412, "precondition_failed");
    let v2 = version(
        &server
            .post("/k", &json!({"value": 2, "if_version": v}).to_string())
            .expect(200),
    );

    let stale = format!("\"{v}\"");
    let current = format!("\"{v2}\"");
    let weak = format!("W/\"{v2}\"");
    let list = format!("\"1\", {current}");
    server
        .send(
            "PUT",
            "/k",
            &[("If-Match", &stale)],
            Some(r#"{"value": 3}"#),
        )
        .expect_error(412, "precondition_failed");
    let v3 = version(
        &server
            .send(
                "PUT",
                "/k",
                &[("If-Match", &current)],
                Some(r#"{"value": 3}"#),
            )
            .expect(200),
    );
    let v4 = version(
        &server
            .send(
                "PUT",
                "/k",
                &[("If-Match", &format!("\"{v3}\""))],
                Some(r#"{"value": 4}"#),
            )
            .expect(200),
    );
    server
        .send("PUT", "/k", &[("If-Match", &weak)], Some(r#"{"value": 5}"#))
        .expect_error(412, "precondition_failed");
    server
        .send(
            "PUT",
            "/k",
            &[("If-Match", &format!("W/\"{v4}\""))],
            Some(r#"{"value": 5}"#),
        )
        .expect(200);
    server
        .send("PUT", "/k", &[("If-Match", &list)], Some(r#"{"value": 6}"#))
        .expect_error(412, "precondition_failed");
    server
        .send("PUT", "/k", &[("If-Match", "*")], Some(r#"{"value": 6}"#))
        .expect(200);
    server
        .send("PUT", "/new", &[("If-Match", "*")], Some(r#"{"value": 6}"#))
        .expect_error(412, "precondition_failed");
    server
        .send(
            "PUT",
            "/new",
            &[("If-None-Match", "*")],
            Some(r#"{"value": 6}"#),
        )
        .expect(201);
    server
        .send(
            "PUT",
            "/new",
            &[("If-None-Match", "*")],
            Some(r#"{"value": 7}"#),
        )
        .expect_error(412, "precondition_failed");
    assert_eq!(server.get("/new").expect(200)["value"], 6);

    // If-Match applies to DELETE, PATCH, incr and decr too.
    let v = version(&server.get("/k").expect(200));
    let wrong = format!("\"{}\"", v + 1000);
    server
        .send("DELETE", "/k", &[("If-Match", &wrong)], None)
        .expect_error(412, "precondition_failed");
    server
        .send(
            "PATCH",
            "/k",
            &[("If-Match", &wrong)],
            Some(r#"{"ttl": 5}"#),
        )
        .expect_error(412, "precondition_failed");
    server.post("/n", r#"{"value": 1}"#).expect(201);
    server
        .send("POST", "/n/incr", &[("If-Match", &wrong)], None)
        .expect_error(412, "precondition_failed");
    server
        .send("POST", "/n/decr", &[("If-Match", &wrong)], None)
        .expect_error(412, "precondition_failed");
    assert_eq!(server.get("/n").expect(200)["value"], 1);
    server
        .send("DELETE", "/k", &[("If-Match", &format!("\"{v}\""))], None)
        .expect(200);
    server.get("/k").expect_error(404, "not_found");
}

#[test]
fn get_with_if_none_match_is_304() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let v = version(&server.post("/k", r#"{"value": 1}"#).expect(201));
    let tag = format!("\"{v}\"");
    let not_modified = server.send("GET", "/k", &[("If-None-Match", &tag)], None);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(tag.as_str()));
    let changed = server.send("GET", "/k", &[("If-None-Match", "\"999999\"")], None);
    assert_eq!(changed.expect(200)["value"], 1);
}

#[test]
fn keep_ttl_keeps_the_expiry() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let set = server.post("/k", r#"{"value": 1, "ttl": 100}"#).expect(201);
    let kept = server
        .post("/k", r#"{"value": 2, "keep_ttl": true}"#)
        .expect(200);
    assert_eq!(kept["expires_at"], set["expires_at"]);
    assert_eq!(server.get("/k").expect(200)["value"], 2);
    server
        .post("/k", r#"{"value": 3, "ttl": 5, "keep_ttl": true}"#)
        .expect_error(400, "invalid_ttl");
    // keep_ttl on a key without expiry (or a new key) keeps "no expiry".
    assert_eq!(
        server
            .post("/p", r#"{"value": 1, "keep_ttl": true}"#)
            .expect(201)["expires_at"],
        Value::Null
    );
}

#[test]
fn patch_is_expire_and_persist() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let set = server.post("/k", r#"{"value": {"a": 1}}"#).expect(201);
    let expired = server.patch("/k/", r#"{"ttl": 30}"#).expect(200);
    assert_eq!(expired["status"], "ok");
    assert_eq!(expired["key"], "k");
    assert_eq!(expired["ttl_remaining"], 30);
    assert!(expired["expires_at"].is_string());
    assert!(version(&expired) > version(&set));
    assert_eq!(server.get("/k").expect(200)["value"], json!({"a": 1}));
    let ms = server.patch("/k", r#"{"ttl_ms": 1500}"#).expect(200);
    assert_eq!(ms["ttl_remaining"], 2);
    let persisted = server.patch("/k", r#"{"ttl": null}"#).expect(200);
    assert_eq!(persisted["expires_at"], Value::Null);
    assert_eq!(persisted["ttl_remaining"], -1);
    assert_eq!(server.get("/k").expect(200)["ttl_remaining"], -1);

    server
        .patch("/missing", r#"{"ttl": 5}"#)
        .expect_error(404, "not_found");
    for bad in [
        r#"{}"#,
        r#"{"ttl": 0}"#,
        r#"{"ttl": -1}"#,
        r#"{"ttl": "5"}"#,
        r#"{"ttl": 1, "ttl_ms": 1}"#,
        r#"{"value": 1}"#,
        "[",
        "",
    ] {
        let status = server.patch("/k", bad).status;
        assert_eq!(status, 400, "{bad}");
    }
    // A short EXPIRE really expires the key.
    server.patch("/k", r#"{"ttl_ms": 20}"#).expect(200);
    std::thread::sleep(std::time::Duration::from_millis(40));
    server.get("/k").expect_error(404, "expired");
}

#[test]
fn incr_and_decr() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let first = server.post("/hits/incr", "").expect(200);
    assert_eq!(
        (first["key"].clone(), first["value"].clone()),
        (json!("hits"), json!(1))
    );
    assert!(first["version"].as_i64().is_some());
    assert_eq!(
        server.post("/hits/incr/", r#"{"by": 10}"#).expect(200)["value"],
        11
    );
    assert_eq!(server.post("/hits/decr", "{}").expect(200)["value"], 10);
    assert_eq!(
        server.post("/hits/decr", r#"{"by": 15}"#).expect(200)["value"],
        -5
    );
    assert_eq!(
        server.post("/hits/incr", r#"{"by": -5}"#).expect(200)["value"],
        -10
    );
    assert_eq!(server.get("/hits").expect(200)["value"], -10);
    assert_eq!(server.post("/neg/decr", "").expect(200)["value"], -1);

    // ttl applies only when the key is created (the rate-limiter primitive).
    let created = server.post("/rl/incr", r#"{"ttl": 60}"#).expect(200);
    assert_eq!(created["value"], 1);
    let expires_at = server.get("/rl").expect(200)["expires_at"].clone();
    assert!(expires_at.is_string());
    server.post("/rl/incr", r#"{"ttl": 5}"#).expect(200);
    assert_eq!(server.get("/rl").expect(200)["expires_at"], expires_at);
    // An existing expiry is kept by a plain incr.
    server.post("/rl/incr", "").expect(200);
    assert_eq!(server.get("/rl").expect(200)["expires_at"], expires_at);

    // An expired counter starts again at 0.
    server
        .post("/short/incr", r#"{"by": 7, "ttl_ms": 20}"#)
        .expect(200);
    std::thread::sleep(std::time::Duration::from_millis(40));
    assert_eq!(server.post("/short/incr", "").expect(200)["value"], 1);
}

#[test]
fn incr_errors_leave_the_value_unchanged() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for (value, code) in [
        (json!("5"), "not_an_integer"),
        (json!(1.5), "not_an_integer"),
        (json!({"a": 1}), "not_an_integer"),
        (json!(null), "not_an_integer"),
        (json!(i64::MAX), "overflow"),
    ] {
        server
            .post("/v", &json!({ "value": value }).to_string())
            .expect_any();
        let err = server.post("/v/incr", "").expect_error(409, code);
        if code == "not_an_integer" {
            assert_eq!(err["error"], "value is not an integer");
        }
        assert_eq!(server.get("/v").expect(200)["value"], value);
    }
    server
        .post("/m", &json!({ "value": i64::MIN }).to_string())
        .expect(201);
    server.post("/m/decr", "").expect_error(409, "overflow");
    assert_eq!(server.get("/m").expect(200)["value"], json!(i64::MIN));
    for bad in [
        r#"{"by": 1.5}"#,
        r#"{"by": "2"}"#,
        r#"{"by": 18446744073709551615}"#,
        r#"{"ttl": 0}"#,
        r#"{"x": 1}"#,
        "[1]",
        "{",
        // Only a body of no bytes at all is the empty body ({}); whitespace is not JSON.
        " ",
        "\t\n",
    ] {
        server.post("/m/incr", bad).expect(400);
    }
    // Checked before any precondition: a bad body is 400 even when If-Match fails too.
    server
        .send("POST", "/m/incr", &[("If-Match", "\"999\"")], Some("\t "))
        .expect_error(400, "invalid_json");
    assert_eq!(server.get("/m").expect(200)["value"], json!(i64::MIN));
}

trait ExpectAny {
    fn expect_any(&self);
}

impl ExpectAny for crate::common::Resp {
    fn expect_any(&self) {
        assert!(
            self.status == 200 || self.status == 201,
            "{}: {}",
            self.status,
            self.body
        );
    }
}
