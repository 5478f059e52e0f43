//! kv-sweeper: `--once` for cron, loop mode with the seed's output, Ctrl+C / SIGTERM, and a
//! clear failure when the database cannot be reached.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::common::{Server, TestDatabase, stderr_of, stdout_of, sweep_once, sweeper_bin};

#[test]
fn once_deletes_expired_keys_only_and_reports_the_count() {
    let db = TestDatabase::new();
    // The server's own expiry timer off: the sweeper is to find the expired keys.
    let server = Server::start_with(&db.url, &["--active-expiry", "false"], &[]);
    for i in 0..5 {
        server
            .post(&format!("/temp{i}"), r#"{"value": 1, "ttl_ms": 20}"#)
            .expect(201);
    }
    for i in 0..3 {
        server
            .post(&format!("/keep{i}"), r#"{"value": 1}"#)
            .expect(201);
    }
    server
        .post("/later", r#"{"value": 1, "ttl": 300}"#)
        .expect(201);
    thread::sleep(Duration::from_millis(40));

    let output = sweep_once(&db.url, &["--batch-size", "2"]);
    assert!(output.status.success(), "{output:?}");
    let out = stdout_of(&output);
    assert!(out.contains("] Running cleanup..."), "{out}");
    assert!(
        out.contains("Successfully deleted 5 expired keys."),
        "{out}"
    );
    let stats = server.get("/_stats").expect(200);
    assert_eq!(
        (stats["keys"].as_i64(), stats["expiring"].as_i64()),
        (Some(4), Some(1))
    );
    // The rows are gone, not just hidden: a second sweep finds nothing.
    assert!(stdout_of(&sweep_once(&db.url, &[])).contains("Successfully deleted 0 expired keys."));
    // And a GET of a swept key is a plain miss.
    server.get("/temp0").expect_error(404, "not_found");
}

/// A sweep finds a row by when it is due, which a write moves to an earlier expiry but never
/// to a later one (a row found due whose expiry moved on is filed again): every way of moving
/// an expiry (SET, PATCH, a transaction, a hash's EXPIRE, RENAME) sweeps the right keys.
#[test]
fn expiries_moved_earlier_are_swept_and_those_moved_later_or_removed_are_kept() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--active-expiry", "false"], &[]);
    let (long, short) = (r#""ttl": 300"#, r#""ttl_ms": 20"#);
    // "sooner-*" get an earlier expiry and go; "later-*" get a later one and stay.
    for (name, first, then) in [("sooner", long, short), ("later", short, long)] {
        let set = format!("/{name}-set");
        server
            .post(&set, &format!(r#"{{"value": 1, {first}}}"#))
            .expect(201);
        server
            .post(&set, &format!(r#"{{"value": 2, {then}}}"#))
            .expect(200);
        let patch = format!("/{name}-patch");
        server
            .post(&patch, &format!(r#"{{"value": 1, {first}}}"#))
            .expect(201);
        server.patch(&patch, &format!("{{{then}}}")).expect(200);
        for ttl in [first, then] {
            let op = format!(r#"{{"op": "set", "key": "{name}-tx", "value": 1, {ttl}}}"#);
            server
                .post("/_tx", &format!(r#"{{"ops": [{op}]}}"#))
                .expect(200);
        }
    }
    let upstash = |commands: &str| server.post("/_upstash/pipeline", commands).expect(200);
    upstash(
        r#"[["hset", "sooner-hash", "f", "v"], ["expire", "sooner-hash", 300], ["pexpire", "sooner-hash", 20]]"#,
    );
    upstash(
        r#"[["hset", "later-hash", "f", "v"], ["pexpire", "later-hash", 20], ["expire", "later-hash", 300]]"#,
    );
    // RENAME of a key with an earlier expiry over one with a later one.
    upstash(
        r#"[["set", "src", "1", "px", 20], ["set", "sooner-rename", "1", "ex", 300], ["rename", "src", "sooner-rename"]]"#,
    );
    // A first expiry, then none.
    server
        .post("/persisted", r#"{"value": 1, "ttl_ms": 20}"#)
        .expect(201);
    server.patch("/persisted", r#"{"ttl": null}"#).expect(200);
    thread::sleep(Duration::from_millis(40));

    // One row a batch: the sweep goes on past batches whose rows were all filed again.
    let out = stdout_of(&sweep_once(&db.url, &["--batch-size", "1"]));
    assert!(
        out.contains("Successfully deleted 5 expired keys."),
        "{out}"
    );
    server.get("/sooner-rename").expect_error(404, "not_found");
    for kind in ["set", "patch", "tx"] {
        server
            .get(&format!("/sooner-{kind}"))
            .expect_error(404, "not_found");
        server.get(&format!("/later-{kind}")).expect(200);
    }
    server.get("/persisted").expect(200);
    let stats = server.get("/_stats").expect(200);
    assert_eq!(
        (stats["keys"].as_i64(), stats["expiring"].as_i64()),
        (Some(5), Some(4)),
        "{stats}"
    );
    assert!(stdout_of(&sweep_once(&db.url, &[])).contains("Successfully deleted 0 expired keys."));
}

#[test]
fn once_creates_and_migrates_a_fresh_database_so_either_binary_may_start_first() {
    let db = TestDatabase::new();
    let output = sweep_once(&db.url, &[]);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout_of(&output).contains("Successfully deleted 0 expired keys."));
    // The server's own expiry timer off: the sweeper is to find the expired keys.
    let server = Server::start_with(&db.url, &["--active-expiry", "false"], &[]);
    server.post("/k", r#"{"value": 1}"#).expect(201);
}

#[test]
fn once_fails_clearly_when_the_database_cannot_be_reached() {
    let output = sweep_once("/nonexistent-dir/for/sure/kv.sqlite3", &[]);
    assert!(!output.status.success());
    let err = stderr_of(&output);
    assert!(err.contains("kv-sweeper: cleanup of"), "{err}");
    assert!(
        err.contains("/nonexistent-dir/for/sure/kv.sqlite3"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_refused() {
    for args in [
        &["--interval", "0"][..],
        &["--batch-size", "0"],
        &["--database-url", ":memory:"],
    ] {
        let output = Command::new(sweeper_bin())
            .args(args)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn loop_mode_prints_the_seed_banner_sweeps_periodically_and_stops_on_sigterm() {
    let db = TestDatabase::new();
    // The server's own expiry timer off: the sweeper is to find the expired keys.
    let server = Server::start_with(&db.url, &["--active-expiry", "false"], &[]);
    let mut sweeper = Command::new(sweeper_bin())
        .args(["--database-url", &db.url, "--interval", "1"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kv-sweeper");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = sweeper.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from kv-sweeper")
    };

    let banner: Vec<String> = (0..2).map(|_| next()).collect();
    assert_eq!(
        banner[1], "Scheduler Started. Running cleanup every 1s.",
        "{banner:?}"
    );
    // The first cleanup runs at once.
    let mut line = next();
    while !line.ends_with("Running cleanup...") {
        line = next();
    }
    assert!(
        line.starts_with('[') && line.as_bytes()[9] == b']',
        "{line}"
    );
    assert_eq!(next(), "Successfully deleted 0 expired keys.");

    for i in 0..3 {
        server
            .post(&format!("/t{i}"), r#"{"value": 1, "ttl_ms": 10}"#)
            .expect(201);
    }
    let mut deleted = 0;
    for _ in 0..20 {
        let line = next();
        if let Some(n) = line.strip_prefix("Successfully deleted ") {
            deleted += n
                .trim_end_matches(" expired keys.")
                .parse::<u32>()
                .expect("count");
            if deleted >= 3 {
                break;
            }
        }
    }
    assert_eq!(deleted, 3);

    crate::common::signal(sweeper.id(), "TERM");
    let status = crate::common::wait_exit(&mut sweeper, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}
