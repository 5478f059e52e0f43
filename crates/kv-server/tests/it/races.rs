//! Concurrent clients: INCR sums exactly, If-Match has exactly one winner, and the server
//! and the sweeper share one database under concurrent writes without a single error.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Server, TestDatabase, request, sweeper_bin, version};
use serde_json::json;

#[test]
fn concurrent_incrs_sum_exactly() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let (threads, per_thread) = (8, 40);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let base = server.base.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    let resp = request("POST", &format!("{base}/counter/incr"), &[], None);
                    assert_eq!(resp.status, 200, "{}", resp.body);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(
        server.get("/counter").expect(200)["value"],
        threads * per_thread
    );
}

#[test]
fn if_match_races_have_exactly_one_winner() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for round in 0..5 {
        let version = server
            .post("/doc", &json!({"value": round}).to_string())
            .expect_any_version();
        let tag = format!("\"{version}\"");
        let contenders = 12;
        let barrier = Arc::new(Barrier::new(contenders));
        let handles: Vec<_> = (0..contenders)
            .map(|i| {
                let (base, tag, barrier) = (server.base.clone(), tag.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    let body = json!({"value": format!("writer {i}")}).to_string();
                    request(
                        "PUT",
                        &format!("{base}/doc"),
                        &[("If-Match", &tag)],
                        Some(&body),
                    )
                    .status
                })
            })
            .collect();
        let statuses: Vec<u16> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 412).count(),
            contenders - 1,
            "{statuses:?}"
        );
    }
}

#[test]
fn server_and_sweeper_together_under_concurrent_writes_never_error() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let mut sweeper = Command::new(sweeper_bin())
        .args([
            "--database-url",
            &db.url,
            "--interval",
            "1",
            "--batch-size",
            "50",
        ])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kv-sweeper");
    let stdout = sweeper.stdout.take().expect("stdout");
    let runs = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("Successfully deleted"))
            .count()
    });

    let deadline = Instant::now() + Duration::from_millis(2500);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let base = server.base.clone();
            thread::spawn(move || {
                let mut n = 0;
                while Instant::now() < deadline {
                    let url = format!("{base}/w{w}-{}", n % 300);
                    let resp = request("POST", &url, &[], Some(r#"{"value": 1, "ttl_ms": 100}"#));
                    assert!(
                        resp.status == 200 || resp.status == 201,
                        "{}: {}",
                        resp.status,
                        resp.body
                    );
                    let resp = request("GET", &url, &[], None);
                    assert!(
                        [200, 404].contains(&resp.status),
                        "{}: {}",
                        resp.status,
                        resp.body
                    );
                    let resp = request("POST", &format!("{base}/hits/incr"), &[], None);
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let writes: usize = writers.into_iter().map(|h| h.join().expect("writer")).sum();
    assert_eq!(server.get("/hits").expect(200)["value"], writes);

    crate::common::signal(sweeper.id(), "TERM");
    let status = crate::common::wait_exit(&mut sweeper, Duration::from_secs(10));
    assert!(status.success(), "sweeper exit: {status:?}");
    let mut errors = String::new();
    if let Some(mut stderr) = sweeper.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut errors);
    }
    assert!(!errors.contains("failed"), "sweeper errors: {errors}");
    assert!(
        runs.join().expect("reader") >= 2,
        "the sweeper ran fewer than 2 cleanups"
    );
}

trait Version {
    fn expect_any_version(&self) -> i64;
}

impl Version for crate::common::Resp {
    fn expect_any_version(&self) -> i64 {
        assert!(self.status < 300, "{}", self.body);
        version(&self.json())
    }
}
