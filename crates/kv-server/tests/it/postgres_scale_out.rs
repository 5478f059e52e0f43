//! Scale-out on PostgreSQL: several kv-server and kv-sweeper processes on one database.
//!
//! Ignored by plain `cargo test`; `scripts/test-postgres.sh` runs them (with
//! `--include-ignored`) against a throwaway cluster. Run without `KV_TEST_POSTGRES_URL`, they
//! fail rather than pass.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::common::{
    Resp, Server, StoppedCluster, Sweeper, TestDatabase, postgres_admin_url, sweep_once, wait_until,
};
use serde_json::{Value, json};

/// Runs `f(i)` on `n` threads at once (released together by a barrier) and returns the results
/// in thread order.
fn race<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(n);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                scope.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racing thread panicked"))
            .collect()
    })
}

fn two_servers(db: &TestDatabase) -> [Server; 2] {
    [Server::start(db), Server::start(db)]
}

fn statuses(responses: &[Resp]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn servers_and_sweepers_starting_at_once_on_a_fresh_database_all_come_up() {
    for _ in 0..3 {
        let db = TestDatabase::postgres();
        let (servers, sweepers) = thread::scope(|scope| {
            let servers: Vec<_> = (0..2).map(|_| scope.spawn(|| Server::start(&db))).collect();
            let sweepers: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| Sweeper::start(&db.url, &["--interval", "1"])))
                .collect();
            (
                servers
                    .into_iter()
                    .map(|h| h.join().expect("start"))
                    .collect::<Vec<_>>(),
                sweepers
                    .into_iter()
                    .map(|h| h.join().expect("start"))
                    .collect::<Vec<_>>(),
            )
        });
        for sweeper in &sweepers {
            assert_eq!(sweeper.deleted_per_run(), [0], "{}", sweeper.output());
            assert!(!sweeper.output().contains("failed"), "{}", sweeper.output());
        }
        servers[0].post("/k/", r#"{"value": 1}"#).expect(201);
        for server in &servers {
            let stats = server.get("/_stats").expect(200);
            assert_eq!(stats["database"], "postgres");
            assert_eq!(stats["keys"], 1);
        }
    }
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn concurrent_incrs_split_across_two_servers_sum_exactly() {
    let db = TestDatabase::postgres();
    let servers = two_servers(&db);
    const THREADS: usize = 8;
    const PER_THREAD: usize = 40;
    // The counters do not exist yet: the first increments race to create them.
    let results = race(THREADS, |t| {
        (0..PER_THREAD)
            .map(|i| {
                let server = &servers[(t + i) % 2];
                let key = ["a", "b"][i % 2];
                let body = server.post(&format!("/{key}/incr"), "").expect(200);
                (
                    key,
                    body["value"].as_i64().expect("value"),
                    body["version"].as_i64().expect("version"),
                )
            })
            .collect::<Vec<_>>()
    });
    let results: Vec<_> = results.into_iter().flatten().collect();
    let per_key = (THREADS * PER_THREAD / 2) as i64;
    for key in ["a", "b"] {
        let mut values: Vec<i64> = results.iter().filter(|r| r.0 == key).map(|r| r.1).collect();
        values.sort_unstable();
        assert_eq!(
            values,
            (1..=per_key).collect::<Vec<_>>(),
            "every increment of {key} counted once"
        );
        for server in &servers {
            assert_eq!(server.get(&format!("/{key}")).expect(200)["value"], per_key);
        }
    }
    let versions: HashSet<i64> = results.iter().map(|r| r.2).collect();
    assert_eq!(
        versions.len(),
        results.len(),
        "every write has its own version"
    );
    // DECR from both servers lands back on zero.
    race(THREADS, |t| {
        for i in 0..PER_THREAD / 4 {
            servers[(t + i) % 2]
                .post("/a/decr", r#"{"by": 2}"#)
                .expect(200);
        }
    });
    assert_eq!(servers[1].get("/a").expect(200)["value"], 0);
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn if_match_races_across_servers_have_exactly_one_winner() {
    let db = TestDatabase::postgres();
    let servers = two_servers(&db);
    servers[0].post("/doc", r#"{"value": "v0"}"#).expect(201);
    for round in 0..15 {
        let version = servers[round % 2].get("/doc").expect(200)["version"].clone();
        let etag = format!("\"{version}\"");
        let responses = race(6, |t| {
            let body = json!({"value": format!("r{round}-t{t}")}).to_string();
            servers[t % 2].send("PUT", "/doc", &[("If-Match", &etag)], Some(&body))
        });
        let winners: Vec<usize> = (0..responses.len())
            .filter(|&t| responses[t].status == 200)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {:?}",
            statuses(&responses)
        );
        for r in &responses {
            if r.status != 200 {
                r.expect_error(412, "precondition_failed");
            }
        }
        let now = servers[(round + 1) % 2].get("/doc").expect(200);
        assert_eq!(now["value"], format!("r{round}-t{}", winners[0]));
        assert!(
            now["version"].as_i64() > version.as_i64(),
            "versions only grow"
        );
    }
    // nx on an absent key: exactly one creates it.
    for round in 0..15 {
        let path = format!("/new-{round}");
        let responses = race(6, |t| {
            servers[t % 2].post(&path, &json!({"value": t, "nx": true}).to_string())
        });
        let mut codes = statuses(&responses);
        codes.sort_unstable();
        assert_eq!(codes, [201, 412, 412, 412, 412, 412], "round {round}");
    }
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn transactions_racing_across_servers_stay_serializable() {
    let db = TestDatabase::postgres();
    let servers = two_servers(&db);
    servers[0].post("/balance", r#"{"value": 0}"#).expect(201);
    // Optimistic read-modify-write through check: exactly one transaction per round wins.
    for round in 0..10 {
        let version = servers[0].get("/balance").expect(200)["version"]
            .as_i64()
            .expect("version");
        let responses = race(6, |t| {
            let ops = json!({"ops": [
                {"op": "check", "key": "balance", "version": version},
                {"op": "set", "key": "balance", "value": round + 1},
                {"op": "incr", "key": "commits"},
            ]});
            servers[t % 2].post("/_tx", &ops.to_string())
        });
        let mut codes = statuses(&responses);
        codes.sort_unstable();
        assert_eq!(codes, [200, 412, 412, 412, 412, 412], "round {round}");
    }
    assert_eq!(servers[1].get("/balance").expect(200)["value"], 10);
    assert_eq!(servers[1].get("/commits").expect(200)["value"], 10);
    // Write skew: each transaction checks that the other's key is absent, then creates its
    // own. Run serially, the second always fails its check; so must one of them here.
    for round in 0..10 {
        let (a, b) = (format!("skew-a-{round}"), format!("skew-b-{round}"));
        let responses = race(2, |t| {
            let (mine, other) = if t == 0 { (&a, &b) } else { (&b, &a) };
            let ops = json!({"ops": [
                {"op": "check", "key": other, "version": null},
                {"op": "set", "key": mine, "value": t},
            ]});
            servers[t].post("/_tx", &ops.to_string())
        });
        let mut codes = statuses(&responses);
        codes.sort_unstable();
        assert_eq!(codes, [200, 412], "round {round}: {responses:?}");
    }
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn a_key_set_on_one_server_expires_on_the_other() {
    let db = TestDatabase::postgres();
    let servers = two_servers(&db);
    let set = servers[0]
        .post("/session", r#"{"value": "s", "ttl_ms": 300}"#)
        .expect(201);
    let seen = servers[1].get("/session").expect(200);
    assert_eq!(seen["expires_at"], set["expires_at"]);
    let left = seen["ttl_remaining_ms"].as_i64().expect("ttl_remaining_ms");
    assert!((1..=300).contains(&left), "ttl_remaining_ms {left}");
    wait_until(Duration::from_secs(10), "the key to expire", || {
        servers[1].get("/session").status == 404
    });
    // The other server's GET found the expired row and removed it.
    servers[0].get("/session").expect_error(404, "not_found");
    // INCR on the other server treats it as absent; the new key has no expiry.
    servers[0].post("/session/incr", "").expect(200);
    assert_eq!(servers[1].get("/session").expect(200)["ttl_remaining"], -1);
    // An expiry set by PATCH on one server is the other's too.
    servers[1]
        .patch("/session", r#"{"ttl_ms": 200}"#)
        .expect(200);
    wait_until(Duration::from_secs(10), "the patched key to expire", || {
        servers[0]
            .post("/session", r#"{"value": 0, "xx": true, "keep_ttl": true}"#)
            .status
            == 412
    });
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn lazy_expiry_on_one_server_never_removes_a_key_set_again_on_the_other() {
    let db = TestDatabase::postgres();
    let servers = two_servers(&db);
    for round in 0..20 {
        let set = servers[0].post("/k", r#"{"value": "old", "ttl_ms": 30}"#);
        assert!([200, 201].contains(&set.status), "{set:?}");
        thread::sleep(Duration::from_millis(40));
        // The row is expired: one server reads it (and deletes it lazily) while the other
        // sets the key again.
        let [read, write] = <[Resp; 2]>::try_from(race(2, |t| {
            if t == 0 {
                servers[1].get("/k")
            } else {
                servers[0].post("/k", &json!({"value": round}).to_string())
            }
        }))
        .expect("two responses");
        assert!([200, 404].contains(&read.status), "{read:?}");
        write.expect(201);
        assert_eq!(
            servers[1].get("/k").expect(200)["value"],
            round,
            "round {round}"
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn two_sweepers_delete_each_expired_key_once_and_no_live_key() {
    let db = TestDatabase::postgres();
    // The servers' own expiry timers off: the sweepers are to find the expired keys.
    let quiet = ["--active-expiry", "false"];
    let servers = [
        Server::start_with(&db.url, &quiet, &[]),
        Server::start_with(&db.url, &quiet, &[]),
    ];
    let sweeper_args = ["--interval", "1", "--batch-size", "7"];
    let sweepers = [
        Sweeper::start(&db.url, &sweeper_args),
        Sweeper::start(&db.url, &sweeper_args),
    ];
    const EXPIRING: usize = 1200;
    const LIVE: usize = 300;
    // Keys expiring in waves over ~1.5 s while both sweepers run, plus live keys (some with a
    // long ttl), plus keys set with a short ttl and at once set again without one.
    let mut chunks: Vec<Vec<Value>> = Vec::new();
    for chunk in 0..EXPIRING / 300 {
        chunks.push(
            (chunk * 300..(chunk + 1) * 300)
                .map(|i| json!({"op": "set", "key": format!("exp:{i:05}"), "value": i, "ttl_ms": 300 + (i % 12) * 100}))
                .collect(),
        );
    }
    chunks.push(
        (0..LIVE)
            .map(|i| match i % 2 {
                0 => json!({"op": "set", "key": format!("live:{i:05}"), "value": i}),
                _ => json!({"op": "set", "key": format!("live:{i:05}"), "value": i, "ttl": 600}),
            })
            .collect(),
    );
    race(chunks.len(), |c| {
        servers[c % 2]
            .post("/_tx", &json!({"ops": chunks[c]}).to_string())
            .expect(200);
    });
    for i in 0..50 {
        servers[i % 2]
            .post(
                &format!("/reset:{i:02}"),
                r#"{"value": "short", "ttl_ms": 400}"#,
            )
            .expect(201);
        servers[(i + 1) % 2]
            .post(&format!("/reset:{i:02}"), r#"{"value": "kept"}"#)
            .expect(200);
    }

    let total = || sweepers.iter().map(Sweeper::deleted_total).sum::<u64>();
    wait_until(
        Duration::from_secs(60),
        "the sweepers to delete every expired key",
        || total() >= EXPIRING as u64,
    );
    // One more full run each, to see nothing is counted twice or found again.
    for sweeper in &sweepers {
        sweeper.wait_for_runs(sweeper.deleted_per_run().len() + 2);
    }
    let per_sweeper: Vec<u64> = sweepers.iter().map(Sweeper::deleted_total).collect();
    assert_eq!(
        total(),
        EXPIRING as u64,
        "deleted per sweeper: {per_sweeper:?}"
    );
    for sweeper in &sweepers {
        assert!(!sweeper.output().contains("failed"), "{}", sweeper.output());
    }
    for server in &servers {
        let stats = server.get("/_stats").expect(200);
        assert_eq!(stats["keys"], LIVE + 50, "{stats}");
        assert_eq!(stats["expiring"], LIVE / 2, "{stats}");
    }
    let page = servers[0]
        .get("/_keys?prefix=live:&values=true&limit=1000")
        .expect(200);
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), LIVE);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["value"], i);
    }
    let page = servers[1]
        .get("/_keys?prefix=reset:&values=true")
        .expect(200);
    let values: Vec<&Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["value"])
        .collect();
    assert_eq!(values, vec![&json!("kept"); 50]);
    assert_eq!(
        servers[1].get("/_keys?prefix=exp:").expect(200)["keys"],
        json!([])
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn postgres_down_gives_503_with_retry_after_and_service_resumes_when_it_is_back() {
    let admin = postgres_admin_url("KV_TEST_POSTGRES_OUTAGE_URL");
    let ctl = postgres_admin_url("KV_TEST_POSTGRES_OUTAGE_CTL");
    let db = TestDatabase::postgres_at(&admin);
    let server = Server::start_with(&db.url, &["--busy-timeout-ms", "500"], &[]);
    server.post("/k", r#"{"value": "before"}"#).expect(201);

    let mut cluster = StoppedCluster::stop(ctl);
    for resp in [
        server.get("/k"),
        server.post("/k", r#"{"value": "during"}"#),
        server.post("/k/incr", ""),
        server.get("/_keys"),
        server.post("/_tx", r#"{"ops": [{"op": "get", "key": "k"}]}"#),
    ] {
        resp.expect_error(503, "database_unavailable");
        assert_eq!(resp.header("retry-after"), Some("1"), "{resp:?}");
    }
    let health = server
        .get("/_health")
        .expect_error(503, "database_unavailable");
    assert_eq!(health["database"], "postgres");
    server.get("/_health/live").expect(200);
    let sweep = sweep_once(&db.url, &[]);
    assert!(
        !sweep.status.success(),
        "kv-sweeper --once succeeded without a database"
    );
    assert!(
        String::from_utf8_lossy(&sweep.stderr).contains("cleanup of postgres"),
        "{sweep:?}"
    );

    cluster.start();
    wait_until(
        Duration::from_secs(30),
        "the server to see PostgreSQL again",
        || server.get("/_health").status == 200,
    );
    assert_eq!(server.get("/k").expect(200)["value"], "before");
    server.post("/k", r#"{"value": "after"}"#).expect(200);
    assert!(sweep_once(&db.url, &[]).status.success());
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn a_keys_version_only_grows_while_transactions_and_single_writes_race() {
    let db = TestDatabase::postgres();
    let servers = two_servers(&db);
    servers[0].post("/y", r#"{"value": 0}"#).expect(201);
    let running = AtomicUsize::new(2);
    let outcomes = race(4, |t| {
        let mut failures = Vec::new();
        match t {
            // Transactions writing x, then y: each takes its version at its first write and
            // may then wait for y behind a write that took a later version.
            0 | 1 => {
                for i in 0..150 {
                    let ops = json!({"ops": [
                        {"op": "set", "key": format!("x{t}"), "value": i},
                        {"op": "set", "key": "y", "value": i},
                    ]});
                    let resp = servers[t].post("/_tx", &ops.to_string());
                    if resp.status != 200 {
                        failures.push(format!("transaction: {resp:?}"));
                    }
                }
                running.fetch_sub(1, Ordering::SeqCst);
            }
            2 => {
                while running.load(Ordering::SeqCst) > 0 {
                    let resp = servers[0].post("/y", r#"{"value": "single"}"#);
                    if resp.status != 200 {
                        failures.push(format!("single write: {resp:?}"));
                    }
                }
            }
            _ => {
                let mut last = 0;
                while running.load(Ordering::SeqCst) > 0 {
                    let version = servers[1].get("/y").expect(200)["version"].as_i64();
                    let version = version.expect("version");
                    if version < last {
                        failures.push(format!("y went from version {last} back to {version}"));
                    }
                    last = version;
                }
            }
        }
        failures
    });
    let failures: Vec<String> = outcomes.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// libfaketime, which `scripts/test-postgres.sh` installs (Debian package `faketime`).
fn libfaketime() -> String {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|lib| lib.exists())
        .map(|lib| lib.display().to_string())
        .unwrap_or_else(|| {
            panic!(
                "libfaketime is not installed: this test {}",
                crate::common::NEEDS_POSTGRES
            )
        })
}

/// A server whose own clock is an hour ahead, via libfaketime.
fn server_an_hour_ahead(database_url: &str, lib: &str) -> Server {
    Server::start_with(
        database_url,
        &[],
        &[
            ("LD_PRELOAD", lib),
            ("FAKETIME", "+1h"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
}

fn ttl_remaining(server: &Server, key: &str) -> i64 {
    server.get(key).expect(200)["ttl_remaining"]
        .as_i64()
        .expect("ttl_remaining")
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn expiry_follows_the_database_clock_not_a_servers_own() {
    let lib = libfaketime();
    // The fake clock works: on SQLite (this machine's clock) a skewed server's expiry is an
    // hour off for a server with the true time.
    let sqlite = TestDatabase::sqlite();
    let (honest, skewed) = (
        Server::start(&sqlite),
        server_an_hour_ahead(&sqlite.url, &lib),
    );
    skewed.post("/k", r#"{"value": 1, "ttl": 60}"#).expect(201);
    assert!(
        ttl_remaining(&honest, "/k") > 3600,
        "libfaketime had no effect"
    );

    // On PostgreSQL both follow the database's clock: the same expiries, nothing live deleted.
    let db = TestDatabase::postgres();
    let (honest, skewed) = (Server::start(&db), server_an_hour_ahead(&db.url, &lib));
    assert!(
        skewed.log().contains("clock differs from the database's"),
        "{}",
        skewed.log()
    );
    honest.post("/a", r#"{"value": 1, "ttl": 60}"#).expect(201);
    skewed.post("/b", r#"{"value": 2, "ttl": 60}"#).expect(201);
    for server in [&honest, &skewed] {
        for key in ["/a", "/b"] {
            let left = ttl_remaining(server, key);
            assert!(
                (59..=60).contains(&left),
                "{key} on {}: ttl_remaining {left}",
                server.base
            );
        }
    }
    // A sweep from a process an hour ahead deletes nothing live either.
    let sweep = Command::new(crate::common::sweeper_bin())
        .args(["--once", "--database-url", &db.url])
        .env_remove("DATABASE_URL")
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", "+1h")
        .output()
        .expect("run kv-sweeper");
    assert!(
        String::from_utf8_lossy(&sweep.stdout).contains("Successfully deleted 0 expired keys."),
        "{sweep:?}"
    );
    assert_eq!(honest.get("/_stats").expect(200)["keys"], 2);
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn versions_become_visible_in_order_across_servers() {
    let db = TestDatabase::postgres();
    let servers = two_servers(&db);
    let writing = AtomicUsize::new(4);
    // Four writers (two on each server) each create new keys, so every version they are
    // given stays on its key. A reader on each server takes snapshots of all of them (one
    // `/_keys` page is one statement) while they write.
    let outcomes = race(6, |t| {
        let mut versions = Vec::new();
        let mut snapshots = Vec::new();
        if t < 4 {
            for i in 0..150 {
                let resp = servers[t % 2].post(&format!("/ord:{t}:{i}"), r#"{"value": 1}"#);
                versions.push(resp.expect(201)["version"].as_i64().expect("version"));
            }
            writing.fetch_sub(1, Ordering::SeqCst);
        } else {
            while writing.load(Ordering::SeqCst) > 0 {
                let page = servers[t % 2]
                    .get("/_keys?prefix=ord:&values=true&limit=1000")
                    .expect(200);
                let seen: HashSet<i64> = page["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|item| item["version"].as_i64().expect("version"))
                    .collect();
                snapshots.push(seen);
            }
        }
        (versions, snapshots)
    });
    let written: Vec<i64> = outcomes
        .iter()
        .flat_map(|(v, _)| v.iter().copied())
        .collect();
    assert_eq!(written.len(), 600);
    let snapshots: Vec<&HashSet<i64>> = outcomes.iter().flat_map(|(_, s)| s).collect();
    assert!(snapshots.len() > 10, "{} snapshots", snapshots.len());
    // Once a version is visible, every smaller one is: none fills a gap later.
    for seen in snapshots {
        let Some(&newest) = seen.iter().max() else {
            continue;
        };
        let missing: Vec<i64> = written
            .iter()
            .copied()
            .filter(|v| *v < newest && !seen.contains(v))
            .collect();
        assert!(
            missing.is_empty(),
            "version {newest} was visible before {missing:?}"
        );
    }
}
