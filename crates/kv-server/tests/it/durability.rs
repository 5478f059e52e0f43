//! Acknowledged writes survive a restart, a SIGTERM and a `kill -9`.

use crate::common::{Server, TestDatabase};
use serde_json::json;

#[test]
fn acknowledged_writes_survive_kill_9() {
    let db = TestDatabase::new();
    let mut server = Server::start(&db);
    for i in 0..200 {
        server
            .post(&format!("/k{i}"), &json!({"value": i}).to_string())
            .expect(201);
    }
    server.post("/n/incr", r#"{"by": 41}"#).expect(200);
    server.post("/n/incr", "").expect(200);
    server.delete("/k0").expect(200);
    server.restart(); // kill -9, then start again over the same file
    for i in 1..200 {
        assert_eq!(server.get(&format!("/k{i}")).expect(200)["value"], i);
    }
    server.get("/k0").expect_error(404, "not_found");
    assert_eq!(server.get("/n").expect(200)["value"], 42);
    assert_eq!(server.get("/_stats").expect(200)["keys"], 200);
}

#[test]
fn sigterm_exits_0_and_data_persists_with_versions_continuing() {
    let db = TestDatabase::new();
    let mut server = Server::start(&db);
    let v = server
        .post("/k", r#"{"value": "kept", "ttl": 300}"#)
        .expect(201)["version"]
        .as_i64()
        .expect("v");
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let server = Server::start(&db);
    let got = server.get("/k").expect(200);
    assert_eq!(got["value"], "kept");
    assert!(got["ttl_remaining"].as_i64().is_some_and(|t| t > 290));
    let v2 = server.post("/other", r#"{"value": 1}"#).expect(201)["version"]
        .as_i64()
        .expect("v");
    assert!(v2 > v, "versions must never be reused across restarts");
}

#[test]
fn full_sync_mode_works() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--sync", "full"], &[]);
    server.post("/k", r#"{"value": 1}"#).expect(201);
    assert_eq!(server.get("/k").expect(200)["value"], 1);
}
