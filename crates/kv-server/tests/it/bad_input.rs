//! Every bad input gets its JSON error and changes nothing.

use crate::common::{Server, TestDatabase, store_version};

#[test]
fn bad_set_bodies_are_400_and_store_nothing() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for (body, code) in [
        ("not json", "invalid_json"),
        ("{\"value\": 1", "invalid_json"),
        ("{\"value\": 1} trailing", "invalid_json"),
        ("", "missing_value"),
        ("[1, 2]", "invalid_body"),
        ("\"value\"", "invalid_body"),
        ("{}", "missing_value"),
        (r#"{"ttl": 5}"#, "missing_value"),
        (r#"{"value": 1, "ttl": 0}"#, "invalid_ttl"),
        (r#"{"value": 1, "ttl": -1}"#, "invalid_ttl"),
        (r#"{"value": 1, "ttl": 2.5}"#, "invalid_ttl"),
        (r#"{"value": 1, "ttl": "60"}"#, "invalid_ttl"),
        (r#"{"value": 1, "ttl": true}"#, "invalid_ttl"),
        (r#"{"value": 1, "ttl_ms": 0}"#, "invalid_ttl"),
        (r#"{"value": 1, "ttl": 1, "ttl_ms": 1000}"#, "invalid_ttl"),
        (r#"{"value": 1, "ttl": 253402300800}"#, "invalid_ttl"),
        (
            r#"{"value": 1, "ttl": 18446744073709551615}"#,
            "invalid_ttl",
        ),
        (r#"{"value": 1, "ttl": 1e30}"#, "invalid_ttl"),
        (r#"{"value": 1, "nx": 1}"#, "invalid_option"),
        (r#"{"value": 1, "if_version": -3}"#, "invalid_option"),
        (r#"{"value": 1, "colour": "red"}"#, "unknown_field"),
    ] {
        let err = server.post("/k", body).expect_error(400, code);
        if code == "missing_value" {
            assert_eq!(err["error"], "Missing value in payload");
        }
    }
    server.get("/k").expect_error(404, "not_found");
    assert_eq!(store_version(&server), 0);
}

#[test]
fn json_nesting_deeper_than_128_levels_is_400() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    // The body object is one level: a value of 127 levels makes 128 in all.
    server
        .post("/ok", &format!("{{\"value\": {}}}", nested(127)))
        .expect(201);
    // (serde_json itself reads at most 127 levels, so check the raw text.)
    let got = server.get("/ok");
    assert_eq!(got.status, 200);
    assert!(
        got.body.contains(&format!("\"value\":{},", nested(127))),
        "{}",
        got.body
    );
    server
        .post("/deep", &format!("{{\"value\": {}}}", nested(128)))
        .expect_error(400, "invalid_json");
    server
        .post("/deeper", &format!("{{\"value\": {}}}", nested(100_000)))
        .expect_error(400, "invalid_json");
}

#[test]
fn bad_keys() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let max = "k".repeat(512);
    server
        .post(&format!("/{max}"), r#"{"value": 1}"#)
        .expect(201);
    assert_eq!(server.get(&format!("/{max}")).expect(200)["key"], max);
    let long = "k".repeat(513);
    server
        .post(&format!("/{long}"), r#"{"value": 1}"#)
        .expect_error(400, "key_too_long");
    server
        .get(&format!("/{long}"))
        .expect_error(400, "key_too_long");
    server
        .post("/a%0Ab", r#"{"value": 1}"#)
        .expect_error(400, "invalid_key");
    server
        .post("/%FF%FE", r#"{"value": 1}"#)
        .expect_error(400, "invalid_key");
    for path in ["/_private", "/%5Fhidden"] {
        server
            .post(path, r#"{"value": 1}"#)
            .expect_error(400, "reserved_key");
    }
    server
        .post("/_keys/incr", "")
        .expect_error(400, "reserved_key");
    server.delete("/_private").expect_error(400, "reserved_key");
    server
        .patch("/_private", r#"{"ttl": 1}"#)
        .expect_error(400, "reserved_key");
}

#[test]
fn unknown_routes_are_json_404_and_wrong_methods_json_405_with_allow() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for path in [
        "/_foo",
        "/_foo/",
        "/_health/nope",
        "/",
        "/a/b",
        "/a/b/c",
        "/k/incr/extra",
    ] {
        server.get(path).expect_error(404, "not_found");
    }
    for (method, path, allow) in [
        ("POST", "/_stats", "GET, HEAD"),
        ("DELETE", "/_health", "GET, HEAD"),
        ("PUT", "/_health/live", "GET, HEAD"),
        ("POST", "/_keys", "GET, HEAD, DELETE"),
        ("GET", "/_tx", "POST"),
        ("GET", "/k/incr", "POST"),
        ("DELETE", "/k/decr", "POST"),
        ("OPTIONS", "/k", "GET, HEAD, POST, PUT, PATCH, DELETE"),
        ("TRACE", "/k/", "GET, HEAD, POST, PUT, PATCH, DELETE"),
    ] {
        let resp = server.send(method, path, &[], None);
        resp.expect_error(405, "method_not_allowed");
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
}

#[test]
fn bodies_over_the_limit_are_413_json() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--max-body-bytes", "1000"], &[]);
    let big = format!("{{\"value\": \"{}\"}}", "x".repeat(2000));
    let err = server
        .post("/k", &big)
        .expect_error(413, "payload_too_large");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|m| m.starts_with("payload too large")),
        "{err}"
    );
    server
        .post("/_tx", &big)
        .expect_error(413, "payload_too_large");
    server.get("/k").expect_error(404, "not_found");
    server.post("/k", r#"{"value": "small"}"#).expect(201);
}

#[test]
fn hostile_requests_never_get_a_500() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let bodies = [
        "",
        "{",
        "null",
        "[]",
        "{\"value\":",
        "\u{0}",
        "{\"value\": 1, \"value\": 2}",
        "{\"ops\": [null]}",
        "{\"by\": null}",
        "{\"ttl\": {}}",
    ];
    let paths = [
        "/k",
        "/k/incr",
        "/k/decr",
        "/_tx",
        "/_keys?limit=5&cursor=00",
        "/_keys?match=%5B",
        "/%2F",
        "/%25%25",
    ];
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] {
        for path in paths {
            for body in bodies {
                let resp = server.send(method, path, &[("If-Match", "garbage")], Some(body));
                assert!(
                    resp.status < 500,
                    "{method} {path} {body:?} -> {} {}",
                    resp.status,
                    resp.body
                );
                if resp.status >= 400 && method != "HEAD" {
                    resp.expect_error(resp.status, resp.json()["code"].as_str().unwrap_or("?"));
                }
            }
        }
    }
}
