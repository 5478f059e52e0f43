//! SQLite GETs read from a snapshot kept between requests (kv_core::reader): a write is seen
//! by the next GET once acknowledged, a write by another process within milliseconds, and a
//! server with no requests holds no snapshot that would keep the log from being checkpointed.

use std::thread;
use std::time::Duration;

use crate::common::{Server, TestDatabase};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Integer;
use kv_core::backend::{self, ConnectionOptions};
use kv_core::{DatabaseUrl, DbConnection};

/// A connection of another process to the server's SQLite file.
fn other_process(db: &TestDatabase) -> DbConnection {
    let url: DatabaseUrl = db.url.parse().expect("url");
    backend::connect(&url, &ConnectionOptions::default()).expect("connect")
}

fn sqlite(conn: &mut DbConnection) -> &mut SqliteConnection {
    match conn {
        DbConnection::Sqlite(c) => c,
        DbConnection::Postgres(_) => panic!("expected SQLite"),
    }
}

#[test]
fn every_get_sees_the_writes_answered_before_it() {
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    for i in 0..50 {
        server
            .put("/k", &format!(r#"{{"value": {i}}}"#))
            .expect(if i == 0 { 201 } else { 200 });
        assert_eq!(server.get("/k").expect(200)["value"], i);
        server.post("/n/incr", "").expect(200);
        assert_eq!(server.get("/n").expect(200)["value"], i + 1);
    }
    server.delete("/k").expect(200);
    server.get("/k").expect_error(404, "not_found");
}

#[test]
fn a_write_by_another_process_is_seen_within_milliseconds() {
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    server.post("/k", r#"{"value": "before"}"#).expect(201);
    assert_eq!(server.get("/k").expect(200)["value"], "before");

    sqlite(&mut other_process(&db))
        .batch_execute(r#"UPDATE kv_store SET value = '"after"' WHERE key = 'k'"#)
        .expect("update");
    thread::sleep(Duration::from_millis(20));
    assert_eq!(server.get("/k").expect(200)["value"], "after");
}

#[derive(QueryableByName, Debug)]
struct CheckpointResult {
    #[diesel(sql_type = Integer)]
    busy: i32,
    #[diesel(sql_type = Integer)]
    log: i32,
}

#[test]
fn an_idle_server_holds_no_snapshot() {
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    for i in 0..20 {
        server
            .put(&format!("/k{i}"), r#"{"value": "some text to log"}"#)
            .expect(201);
        // Read right after the write, while it is still in the log only.
        server.get(&format!("/k{i}")).expect(200);
    }
    thread::sleep(Duration::from_millis(50));

    // A reader holding a snapshot of the log would keep TRUNCATE from emptying the log:
    // it would wait out the busy timeout and report busy.
    let mut other = other_process(&db);
    let other = sqlite(&mut other);
    other
        .batch_execute("PRAGMA busy_timeout = 2000")
        .expect("pragma");
    let result: CheckpointResult = diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
        .get_result(other)
        .expect("checkpoint");
    assert_eq!(result.busy, 0, "{result:?}");
    assert_eq!(result.log, 0, "the log was emptied: {result:?}");
    assert_eq!(server.get("/k0").expect(200)["value"], "some text to log");
}
