//! Every limit answers a clear 4xx JSON error: body size, key length, transaction size, scan
//! `limit`, `match` length and JSON nesting depth.

use crate::common::{Server, TestDatabase};
use serde_json::json;

#[test]
fn a_body_over_max_body_bytes_is_413() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--max-body-bytes", "1024"], &[]);
    let fits = json!({"value": "x".repeat(900)}).to_string();
    server.post("/k", &fits).expect(201);
    let big = json!({"value": "x".repeat(2000)}).to_string();
    for (method, path) in [
        ("POST", "/k"),
        ("PUT", "/k"),
        ("PATCH", "/k"),
        ("POST", "/_tx"),
        ("POST", "/k/incr"),
    ] {
        let body = server
            .send(method, path, &[], Some(&big))
            .expect_error(413, "payload_too_large");
        assert!(
            body["error"].as_str().unwrap_or_default().contains("1024"),
            "{body}"
        );
    }
}

#[test]
fn keys_longer_than_512_bytes_are_400() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let longest = "k".repeat(512);
    server
        .post(&format!("/{longest}"), r#"{"value": 1}"#)
        .expect(201);
    server.get(&format!("/{longest}")).expect(200);
    let too_long = "k".repeat(513);
    // 171 three-byte characters = 513 bytes, percent-encoded in the path.
    let too_long_utf8 = "%E2%82%AC".repeat(171);
    for key in [too_long.as_str(), too_long_utf8.as_str()] {
        server
            .post(&format!("/{key}"), r#"{"value": 1}"#)
            .expect_error(400, "key_too_long");
        server
            .get(&format!("/{key}"))
            .expect_error(400, "key_too_long");
        server
            .delete(&format!("/{key}"))
            .expect_error(400, "key_too_long");
    }
    let ops = json!({"ops": [{"op": "set", "key": too_long, "value": 1}]});
    let body = server
        .post("/_tx", &ops.to_string())
        .expect_error(400, "key_too_long");
    assert_eq!(body["op"], 0);
}

#[test]
fn a_transaction_holds_at_most_1000_ops() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let ops = |n: usize| {
        let ops: Vec<_> = (0..n)
            .map(|i| json!({"op": "set", "key": format!("k{i}"), "value": i}))
            .collect();
        json!({ "ops": ops }).to_string()
    };
    let done = server.post("/_tx", &ops(1000)).expect(200);
    assert_eq!(done["results"].as_array().map(Vec::len), Some(1000));
    let body = server
        .post("/_tx", &ops(1001))
        .expect_error(400, "too_many_ops");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("1000"),
        "{body}"
    );
}

#[test]
fn scan_limit_is_1_to_1000_and_match_at_most_1024_bytes() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.get("/_keys?limit=1").expect(200);
    server.get("/_keys?limit=1000").expect(200);
    for bad in ["0", "1001", "-1", "ten", "1e3", "99999999999999999999999"] {
        server
            .get(&format!("/_keys?limit={bad}"))
            .expect_error(400, "invalid_limit");
    }
    server
        .get(&format!("/_keys?match={}", "a".repeat(1024)))
        .expect(200);
    server
        .get(&format!("/_keys?match={}", "*".repeat(1025)))
        .expect_error(400, "pattern_too_long");
}

#[test]
fn json_nested_deeper_than_128_levels_is_400() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    // The body object is level 1, so the value may nest 127 levels.
    server
        .post("/k", &format!(r#"{{"value": {}}}"#, nested(127)))
        .expect(201);
    server
        .post("/k", &format!(r#"{{"value": {}}}"#, nested(128)))
        .expect_error(400, "invalid_json");
    // Deep nesting far beyond any stack is refused quickly, not a crash.
    let deep = "[".repeat(500_000);
    server
        .post("/k", &format!(r#"{{"value": {deep}"#))
        .expect_error(400, "invalid_json");
    let ops = format!(
        r#"{{"ops": [{{"op": "set", "key": "k", "value": {}}}]}}"#,
        nested(200)
    );
    server.post("/_tx", &ops).expect_error(400, "invalid_json");
    server.get("/_health/live").expect(200);
}
