//! Read replicas (docs/API.md, "Read replicas"): `Kv-Version` on every data response,
//! `Kv-Min-Version` honoured, and on PostgreSQL a real hot standby (streaming replication,
//! made by `scripts/test-postgres.sh` with `pg_basebackup -R`) serving reads.
//!
//! The standby tests stop the standby and pause its replay, so they run as one test, in order:
//! run side by side they would disturb each other. They are ignored by plain `cargo test`;
//! `scripts/test-postgres.sh` runs them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde_json::Value;

use crate::common::{
    Resp, Server, StoppedCluster, TestDatabase, admin_sql, postgres_admin_url, refused_at_start,
    wait_until,
};

fn version_of(resp: &Resp) -> i64 {
    resp.header("kv-version")
        .unwrap_or_else(|| panic!("no Kv-Version: {resp:?}"))
        .parse()
        .expect("Kv-Version is an integer")
}

fn get_at(server: &Server, path: &str, min_version: Option<i64>) -> Resp {
    match min_version {
        Some(v) => server.send("GET", path, &[("Kv-Min-Version", &v.to_string())], None),
        None => server.get(path),
    }
}

#[test]
fn every_data_response_carries_the_store_version_and_a_bad_minimum_is_400() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let first = server.put("/a", r#"{"value": 1}"#);
    first.expect(201);
    let written = version_of(&first);
    assert!(written >= 1);
    let read = server.get("/a");
    read.expect(200);
    assert!(
        version_of(&read) >= written,
        "a read reflects the write before it"
    );
    let second = server.put("/b", r#"{"value": 2}"#);
    assert!(version_of(&second) > written, "versions grow with writes");
    let missing = server.get("/nope");
    missing.expect_error(404, "not_found");
    assert!(version_of(&missing) >= version_of(&second));
    for path in ["/_keys", "/_stats"] {
        assert!(
            version_of(&server.get(path)) >= version_of(&second),
            "{path}"
        );
    }
    let tx = server.post("/_tx", r#"{"ops": [{"op": "get", "key": "a"}]}"#);
    tx.expect(200);
    assert!(version_of(&tx) >= version_of(&second));
    let upstash = server.post("/_upstash", r#"["SET", "c", "3"]"#);
    upstash.expect(200);
    let token = upstash.header("upstash-sync-token").expect("sync token");
    assert_eq!(token, upstash.header("kv-version").expect("Kv-Version"));
    assert!(version_of(&upstash) > version_of(&second));
    // Routes that are not data carry none.
    assert_eq!(server.get("/_health").header("kv-version"), None);

    // A minimum the store has reached, or one above it: answered (the primary is current).
    let ahead = get_at(&server, "/a", Some(version_of(&upstash) + 1000));
    assert_eq!(ahead.expect(200)["value"], 1);
    assert!(
        version_of(&ahead) < version_of(&upstash) + 1000,
        "shows where it is"
    );
    for bad in ["0", "-1", "abc", "1.5", "", "99999999999999999999"] {
        let resp = server.send("GET", "/a", &[("Kv-Min-Version", bad)], None);
        resp.expect_error(400, "bad_request");
        let resp = server.send(
            "PUT",
            "/a",
            &[("Kv-Min-Version", bad)],
            Some(r#"{"value": 9}"#),
        );
        resp.expect_error(400, "bad_request");
    }
    assert_eq!(
        server.get("/a").expect(200)["value"],
        1,
        "a refused write wrote nothing"
    );
    let resp = server.send(
        "POST",
        "/_upstash",
        &[("upstash-sync-token", "not-a-version")],
        Some(r#"["GET", "c"]"#),
    );
    resp.expect_error(400, "bad_request");
    // @upstash/redis sends an empty token before its first response.
    let resp = server.send(
        "POST",
        "/_upstash",
        &[("upstash-sync-token", "")],
        Some(r#"["GET", "c"]"#),
    );
    assert_eq!(resp.expect(200)["result"], "3");
}

#[test]
fn replicas_are_refused_on_sqlite_and_when_not_postgresql() {
    let db = TestDatabase::sqlite();
    refused_at_start(
        &db.url,
        &["--read-replica", "postgres://postgres@127.0.0.1:1/x"],
        "need a PostgreSQL primary",
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn a_replica_that_is_not_a_postgresql_standby_is_refused_at_start() {
    let db = TestDatabase::postgres();
    refused_at_start(
        &db.url,
        &[
            "--read-replica",
            &db.dir().join("kv.sqlite3").display().to_string(),
        ],
        "not a PostgreSQL URL",
    );
    // The primary itself is no standby.
    refused_at_start(&db.url, &["--read-replica", &db.url], "not a hot standby");
}

/// One number from `sql` on `url`.
fn sql_number(url: &str, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Number {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query(sql)
        .get_result::<Number>(&mut conn)
        .expect(sql)
        .n
}

fn replica_states(server: &Server) -> Vec<String> {
    let health = server.get("/_health").expect(200);
    health["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no replicas in /_health: {health}"))
        .iter()
        .map(|r| r["state"].as_str().expect("state").to_owned())
        .collect()
}

fn wait_for_state(server: &Server, state: &str, within: Duration) {
    wait_until(within, &format!("the replica to be {state}"), || {
        replica_states(server) == [state]
    });
}

/// The value of the Prometheus sample `name` (with its labels) on `server`, 0 if absent.
fn metric(server: &Server, name: &str) -> f64 {
    let text = server.get("/_metrics").body;
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn a_hot_standby_serves_reads_never_older_than_asked_or_than_the_bound() {
    let primary_admin = postgres_admin_url("KV_TEST_POSTGRES_REPLICATED_URL");
    let standby_admin = postgres_admin_url("KV_TEST_POSTGRES_STANDBY_URL");
    let standby_ctl = postgres_admin_url("KV_TEST_POSTGRES_STANDBY_CTL");
    let db = TestDatabase::postgres_at(&primary_admin);
    let replica = db.url_on(&standby_admin);

    // A standby of another primary is refused at start.
    let other = TestDatabase::postgres();
    refused_at_start(
        &other.url,
        &["--read-replica", &replica],
        "a standby of another primary",
    );

    let args = [
        "--read-replica",
        replica.as_str(),
        "--replica-max-lag-ms",
        "300",
        "--replica-wait-ms",
        "50",
    ];
    let servers = [
        Server::start_with(&db.url, &args, &[]),
        Server::start_with(&db.url, &args, &[]),
    ];
    // The standby has the database once it has replayed its creation and migrations.
    for server in &servers {
        wait_for_state(server, "ok", Duration::from_secs(20));
    }
    let health = servers[0].get("/_health").expect(200);
    assert!(
        !health["replicas"][0]["url"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{health}"
    );

    // Read-your-writes across two servers under concurrency: each writer writes through one
    // server and reads back through the other with the version it got. Never stale.
    let scans_before = sql_number(
        &replica,
        "SELECT coalesce(sum(idx_scan + seq_scan), 0)::bigint AS n FROM pg_stat_user_tables \
         WHERE relname = 'kv_meta'",
    );
    let stale = AtomicUsize::new(0);
    thread::scope(|scope| {
        for writer in 0..6 {
            let (servers, stale) = (&servers, &stale);
            scope.spawn(move || {
                for n in 0..60 {
                    let (to, from) = (&servers[n % 2], &servers[(n + 1) % 2]);
                    let path = format!("/w{writer}");
                    let wrote = to.put(&path, &format!(r#"{{"value": {n}}}"#));
                    assert!(wrote.status < 300, "{wrote:?}");
                    let read = get_at(from, &path, Some(version_of(&wrote)));
                    let body = read.expect(200);
                    if body["value"] != n {
                        stale.fetch_add(1, Ordering::Relaxed);
                    }
                    assert!(version_of(&read) >= version_of(&wrote), "{read:?}");
                }
            });
        }
    });
    assert_eq!(stale.load(Ordering::Relaxed), 0, "stale reads with a token");
    // The standby really served them: the servers count its reads, and so does the standby.
    let served: f64 = servers
        .iter()
        .map(|s| metric(s, "kv_replica_reads_total"))
        .sum();
    assert!(served > 0.0, "no read was served by the replica");
    wait_until(Duration::from_secs(5), "the standby to count reads", || {
        sql_number(
            &replica,
            "SELECT coalesce(sum(idx_scan + seq_scan), 0)::bigint AS n FROM pg_stat_user_tables \
             WHERE relname = 'kv_meta'",
        ) > scans_before
    });

    // /_upstash point reads (GET, and MGET in a pipeline) with the SDK's sync token: served
    // by the standby too, never stale.
    let served_before = metric(&servers[1], "kv_replica_reads_total");
    for n in 0..40 {
        let set = servers[0].post("/_upstash", &format!(r#"["SET", "u", "{n}"]"#));
        set.expect(200);
        let token = set.header("upstash-sync-token").expect("token").to_owned();
        let sent = [("upstash-sync-token", token.as_str())];
        let get = servers[1].send("POST", "/_upstash", &sent, Some(r#"["GET", "u"]"#));
        assert_eq!(get.expect(200)["result"], n.to_string());
        assert!(version_of(&get) >= version_of(&set));
        let pipeline = r#"[["MGET", "u", "w0"], ["STRLEN", "u"]]"#;
        let mget = servers[1].send("POST", "/_upstash/pipeline", &sent, Some(pipeline));
        assert_eq!(mget.expect(200)[0]["result"][0], n.to_string());
    }
    assert!(metric(&servers[1], "kv_replica_reads_total") > served_before);

    // Replay paused: reads without a token are never older than the bound; with a token
    // they are never older than the token.
    let reader = &servers[1];
    servers[0]
        .put("/paused", r#"{"value": "before"}"#)
        .expect(201);
    wait_until(Duration::from_secs(5), "the standby to replay", || {
        get_at(reader, "/paused", None).status == 200
    });
    admin_sql(&standby_admin, "SELECT pg_wal_replay_pause()").expect("pause replay");
    let wrote = servers[0].put("/paused", r#"{"value": "after"}"#);
    wrote.expect(200);
    let written_at = Instant::now();
    let bound = Duration::from_millis(300);
    while written_at.elapsed() < bound * 3 {
        let asked = Instant::now();
        let body = get_at(reader, "/paused", None).expect(200);
        if body["value"] == "before" {
            assert!(
                asked.duration_since(written_at) < bound + Duration::from_millis(100),
                "a read {:?} after the write was older than the bound",
                asked.duration_since(written_at)
            );
        }
        let with_token = get_at(reader, "/paused", Some(version_of(&wrote))).expect(200);
        assert_eq!(with_token["value"], "after");
        thread::sleep(Duration::from_millis(20));
    }
    wait_for_state(reader, "lagging", Duration::from_secs(3));
    assert!(metric(reader, "kv_replica_fallbacks_total{reason=\"") > 0.0);
    admin_sql(&standby_admin, "SELECT pg_wal_replay_resume()").expect("resume replay");
    wait_for_state(reader, "ok", Duration::from_secs(5));

    // The standby stopped under load: every read is answered, by the primary.
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    thread::scope(|scope| {
        for n in 0..4 {
            let (servers, stop, answered) = (&servers, &stop, &answered);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let resp = get_at(&servers[n % 2], "/paused", (n % 2 == 0).then_some(1));
                    let body: Value = resp.expect(200);
                    assert_eq!(body["value"], "after", "{resp:?}");
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Whatever happens below, the readers stop (a failed wait must fail the test, not
        // leave the scope waiting for them).
        struct StopReaders<'a>(&'a AtomicBool);
        impl Drop for StopReaders<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop_readers = StopReaders(&stop);
        thread::sleep(Duration::from_millis(200));
        let mut stopped = StoppedCluster::stop(standby_ctl.clone());
        for server in &servers {
            wait_for_state(server, "down", Duration::from_secs(5));
        }
        thread::sleep(Duration::from_millis(200));
        stopped.start();
        // Back once it has started and caught up (a restart under the suite's load can take
        // a while), each server's monitor notices within a second.
        for server in &servers {
            wait_for_state(server, "ok", Duration::from_secs(30));
        }
    });
    assert!(answered.load(Ordering::Relaxed) > 0);
    assert!(
        servers[0].log().contains("out of rotation (down)"),
        "{}",
        servers[0].log()
    );

    // Last (it ends the standby's life as one): promoted, it is no standby of this primary any
    // more, and is taken out of rotation with the reason logged; reads go on.
    admin_sql(&standby_admin, "SELECT pg_promote()").expect("promote");
    wait_for_state(&servers[1], "down", Duration::from_secs(10));
    assert_eq!(
        get_at(&servers[1], "/paused", None).expect(200)["value"],
        "after"
    );
    assert!(
        servers[1].log().contains("not a hot standby"),
        "{}",
        servers[1].log()
    );
}
