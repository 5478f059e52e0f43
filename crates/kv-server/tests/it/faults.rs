//! Database faults over HTTP (SQLite): a database locked past the busy timeout, a read-only
//! database file, a full disk. Each time writes answer 503 JSON with `Retry-After`, reads go
//! on, `/_health` reports the fault, and everything works again once it clears.
//!
//! The read-only and disk-full tests need root (`chattr +i`, `mount -t tmpfs`), as CI and the
//! development machines have; they fail loudly when they cannot set the fault up, rather than
//! pass without testing anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Resp, Server, TestDatabase};
use diesel::connection::SimpleConnection;
use kv_core::backend::{self, ConnectionOptions};
use kv_core::{DatabaseUrl, DbConnection};
use serde_json::json;

/// Asserts a 503 JSON error with `Retry-After` whose message names `reason`.
#[track_caller]
fn assert_unavailable(resp: &Resp, reason: &str) {
    let body = resp.expect_error(503, "database_unavailable");
    assert!(
        resp.header("retry-after").is_some(),
        "no Retry-After: {resp:?}"
    );
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(reason),
        "{message:?} does not say {reason:?}"
    );
}

/// `/_health` reports the fault (503 naming it) while `/_health/live` stays up.
#[track_caller]
fn assert_health_reports(server: &Server, reason: &str) {
    let health = server.get("/_health");
    let body = health.expect(503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["code"], "database_unavailable");
    assert!(health.header("retry-after").is_some());
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(reason),
        "{message:?} does not say {reason:?}"
    );
    server.get("/_health/ready").expect(503);
    server.get("/_health/live").expect(200);
}

/// After a fault clears: writes work and `/_health` is 200 again.
#[track_caller]
fn assert_recovered(server: &Server) {
    server.post("/after", r#"{"value": "ok"}"#).expect(201);
    assert_eq!(server.get("/after").expect(200)["value"], "ok");
    server.get("/_health").expect(200);
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn a_database_locked_past_the_busy_timeout_is_503_until_released() {
    let db = TestDatabase::sqlite();
    let server = Server::start_with(&db.url, &["--busy-timeout-ms", "200"], &[]);
    server.post("/k", r#"{"value": 1}"#).expect(201);

    // Another process (here: another connection) holds the write lock.
    let url: DatabaseUrl = db.url.parse().expect("url");
    let mut holder = backend::connect(&url, &ConnectionOptions::default()).expect("connect");
    let DbConnection::Sqlite(conn) = &mut holder else {
        panic!("expected SQLite");
    };
    conn.batch_execute("BEGIN EXCLUSIVE").expect("lock");

    let started = Instant::now();
    assert_unavailable(&server.post("/k", r#"{"value": 2}"#), "busy");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        started.elapsed()
    );
    assert_unavailable(&server.post("/k/incr", ""), "busy");
    assert_unavailable(
        &server.post("/_tx", r#"{"ops": [{"op": "delete", "key": "k"}]}"#),
        "busy",
    );
    // Reads go on (WAL readers do not wait for the writer).
    assert_eq!(server.get("/k").expect(200)["value"], 1);
    assert_health_reports(&server, "busy");

    conn.batch_execute("COMMIT").expect("unlock");
    assert_recovered(&server);
    assert_eq!(server.get("/k").expect(200)["value"], 1);
}

/// Makes files immutable (`chattr +i`: not even root can write them, through file descriptors
/// opened before) until dropped.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: Vec<PathBuf>) -> Immutable {
        for path in &paths {
            let path = path.display().to_string();
            run("chattr", &["+i", &path]).unwrap_or_else(|e| {
                panic!("cannot make the database read-only (this test needs root and ext4/xfs/btrfs): {e}")
            });
        }
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = run("chattr", &["-i", &path.display().to_string()]);
        }
    }
}

#[test]
fn a_read_only_database_file_is_503_until_writable_again() {
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    server.post("/k", r#"{"value": 1}"#).expect(201);
    let files = vec![
        PathBuf::from(&db.url),
        PathBuf::from(format!("{}-wal", db.url)),
    ];
    for file in &files {
        assert!(file.exists(), "{} missing", file.display());
    }

    let read_only = Immutable::set(files);
    let resp = server.post("/k", &json!({"value": "x".repeat(10_000)}).to_string());
    assert_unavailable(&resp, "database unavailable");
    assert_unavailable(&server.delete("/k"), "database unavailable");
    assert_eq!(server.get("/k").expect(200)["value"], 1);
    assert_health_reports(&server, "database unavailable");

    drop(read_only);
    assert_recovered(&server);
    assert_eq!(server.get("/k").expect(200)["value"], 1);
}

/// A tiny tmpfs, unmounted when dropped.
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size: &str) -> TinyDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().display().to_string();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &path],
        )
        .unwrap_or_else(|e| panic!("cannot mount a tmpfs (this test needs root): {e}"));
        TinyDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file, which is returned so it can be removed.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).and_then(|()| file.flush()).is_ok() {}
        filler
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.dir.path().display().to_string()]);
    }
}

#[test]
fn a_full_disk_is_503_until_space_is_freed() {
    let disk = TinyDisk::mount("2m");
    let url = disk.path().join("kv.sqlite3").display().to_string();
    let mut server = Server::start_with(&url, &[], &[]);
    server.post("/k", r#"{"value": 1}"#).expect(201);

    let filler = disk.fill();
    let big = json!({"value": "x".repeat(300_000)}).to_string();
    assert_unavailable(&server.post("/big", &big), "disk is full");
    assert_eq!(server.get("/k").expect(200)["value"], 1);
    assert_health_reports(&server, "disk is full");

    std::fs::remove_file(&filler).expect("free the disk");
    server.post("/big", &big).expect(201);
    assert_recovered(&server);
    assert_eq!(server.get("/k").expect(200)["value"], 1);
    server.kill9();
}
