//! `Idempotency-Key` on every write: a retry gets the first response back (with
//! `Idempotent-Replayed: true`) and writes nothing; the same key with another request is 422.

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use crate::common::{Resp, Server, TestDatabase, store_version, sweep_once};
use serde_json::json;

fn with_key(server: &Server, key: &str, method: &str, path: &str, body: Option<&str>) -> Resp {
    server.send(method, path, &[("Idempotency-Key", key)], body)
}

/// The first response and a retry: same status, body and ETag; the retry is marked replayed
/// and wrote nothing.
fn assert_replayed(server: &Server, key: &str, method: &str, path: &str, body: Option<&str>) {
    let first = with_key(server, key, method, path, body);
    assert!(first.status < 300, "{method} {path}: {}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let version = store_version(server);
    let retry = with_key(server, key, method, path, body);
    assert_eq!(retry.status, first.status, "{method} {path}");
    assert_eq!(retry.body, first.body, "{method} {path}");
    assert_eq!(
        retry.header("etag"),
        first.header("etag"),
        "{method} {path}"
    );
    assert_eq!(retry.header("content-type"), Some("application/json"));
    assert_eq!(
        retry.header("idempotent-replayed"),
        Some("true"),
        "{method} {path}"
    );
    assert_eq!(
        store_version(server),
        version,
        "{method} {path}: the retry wrote nothing"
    );
}

#[test]
fn an_incr_retried_ten_times_with_one_key_moves_the_counter_once() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let first = with_key(&server, "retry-1", "POST", "/hits/incr", None).expect(200);
    for _ in 0..9 {
        let retry = with_key(&server, "retry-1", "POST", "/hits/incr", None);
        assert_eq!(retry.expect(200), first);
        assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(server.get("/hits").expect(200)["value"], json!(1));
    // Another key is another request.
    let next = with_key(&server, "retry-2", "POST", "/hits/incr", None).expect(200);
    assert_eq!(next["value"], json!(2));
}

#[test]
fn every_write_route_replays_its_first_response() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.put("/gone", r#"{"value": 1}"#).expect(201);
    server.put("/p:1", r#"{"value": 1}"#).expect(201);
    for (i, (method, path, body)) in [
        ("POST", "/a", Some(r#"{"value": {"n": 1}}"#)),
        ("PUT", "/a", Some(r#"{"value": 2, "ttl": 60}"#)),
        ("PATCH", "/a", Some(r#"{"ttl": 120}"#)),
        ("POST", "/c/incr", Some(r#"{"by": 5}"#)),
        ("POST", "/c/decr", None),
        ("DELETE", "/gone", None),
        (
            "POST",
            "/_tx",
            Some(r#"{"ops": [{"op": "incr", "key": "c"}, {"op": "get", "key": "a"}]}"#),
        ),
        ("POST", "/_import", Some("{\"key\":\"i\",\"value\":1}\n")),
        ("DELETE", "/_keys?prefix=p:", None),
    ]
    .into_iter()
    .enumerate()
    {
        assert_replayed(&server, &format!("key-{i}"), method, path, body);
    }
    // A replayed create is still a 201, a replayed delete still a 200 (not the 404 a second
    // delete would get).
    let created = with_key(
        &server,
        "key-0",
        "POST",
        "/a",
        Some(r#"{"value": {"n": 1}}"#),
    );
    assert_eq!(created.status, 201);
    let deleted = with_key(&server, "key-5", "DELETE", "/gone", None);
    assert_eq!(deleted.status, 200);
    assert_eq!(
        server.get("/c").expect(200)["value"],
        json!(5),
        "5, -1, +1 once each"
    );
}

#[test]
fn the_same_key_with_another_request_is_422_and_bad_keys_are_400() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    with_key(&server, "k", "POST", "/a", Some(r#"{"value": 1}"#)).expect(201);
    for (method, path, body) in [
        ("POST", "/a", Some(r#"{"value": 2}"#)),
        ("PUT", "/a", Some(r#"{"value": 1}"#)),
        ("POST", "/b", Some(r#"{"value": 1}"#)),
        ("POST", "/a/incr", None),
    ] {
        with_key(&server, "k", method, path, body).expect_error(422, "idempotency_key_reused");
    }
    let conditional = server.send(
        "POST",
        "/a",
        &[("Idempotency-Key", "k"), ("If-Match", "\"1\"")],
        Some(r#"{"value": 1}"#),
    );
    conditional.expect_error(422, "idempotency_key_reused");
    assert_eq!(server.get("/a").expect(200)["value"], json!(1));
    server.get("/b").expect_error(404, "not_found");

    for bad in ["", &"k".repeat(256), "\"\""] {
        with_key(&server, bad, "POST", "/a", Some(r#"{"value": 1}"#))
            .expect_error(400, "invalid_idempotency_key");
    }
    // The structured-field form names the same key.
    with_key(&server, "\"k\"", "POST", "/a", Some(r#"{"value": 1}"#)).expect(201);
}

#[test]
fn a_failed_write_is_not_stored_so_its_retry_runs_again() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.put("/a", r#"{"value": 1}"#).expect(201);
    let body = Some(r#"{"value": 2, "nx": true}"#);
    with_key(&server, "once", "POST", "/a", body).expect_error(412, "precondition_failed");
    server.delete("/a").expect(200);
    let retried = with_key(&server, "once", "POST", "/a", body);
    assert_eq!(retried.status, 201, "{}", retried.body);
    assert_eq!(retried.header("idempotent-replayed"), None);
}

#[test]
fn concurrent_retries_of_one_request_write_once_and_all_get_the_same_answer() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let barrier = Barrier::new(8);
    let answers: Vec<(u16, String)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let resp = with_key(&server, "race", "POST", "/n/incr", None);
                    (resp.status, resp.body)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 200);
    assert_eq!(server.get("/n").expect(200)["value"], json!(1));
}

#[test]
fn after_the_retention_a_retry_is_a_new_request_and_the_sweeper_removes_old_responses() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--idempotency-retention", "1"], &[]);
    with_key(&server, "short", "POST", "/n/incr", None).expect(200);
    thread::sleep(Duration::from_millis(1050));
    let again = with_key(&server, "short", "POST", "/n/incr", None).expect(200);
    assert_eq!(again["value"], json!(2));
    thread::sleep(Duration::from_millis(1050));
    let sweep = sweep_once(&db.url, &[]);
    assert!(sweep.status.success(), "{sweep:?}");
    assert!(
        String::from_utf8_lossy(&sweep.stderr)
            .contains("deleted 1 expired Idempotency-Key responses"),
        "{sweep:?}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn one_key_sent_to_two_servers_at_once_writes_once() {
    let db = TestDatabase::postgres();
    let servers = [Server::start(&db), Server::start(&db)];
    let barrier = Barrier::new(8);
    let bodies: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (server, barrier) = (&servers[i % 2], &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    with_key(server, "across", "POST", "/n/incr", None).expect(200);
                    with_key(server, "across", "POST", "/n/incr", None).body
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(servers[1].get("/n").expect(200)["value"], json!(1));
}
