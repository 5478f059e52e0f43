//! Operations: health endpoints, `/_metrics`, graceful shutdown, start-up and JSON logs, and
//! the sweeper's summary and metrics file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Server, TestDatabase, metric_sample, signal, sweep_once};
use serde_json::{Value, json};

#[track_caller]
fn assert_sample(metrics: &str, series: &str, expected: f64) {
    assert_eq!(
        metric_sample(metrics, series),
        Some(expected),
        "{series} in\n{metrics}"
    );
}

fn scrape(server: &Server) -> String {
    let resp = server.get("/_metrics");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    resp.body
}

/// Waits until `cond` holds on the server's log (log lines are written asynchronously).
#[track_caller]
fn wait_for_log(server: &Server, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if cond(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "log never matched:\n{log}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn health_endpoints_follow_the_contract() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for path in ["/_health", "/_health/", "/_health/ready", "/_health/ready/"] {
        let resp = server.get(path);
        assert_eq!(
            resp.expect(200),
            json!({"status": "ok", "database": db.backend_name()}),
            "{path}"
        );
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        server.get("/_health/live/").expect(200),
        json!({"status": "ok"})
    );
    for path in ["/_health/live", "/_health", "/_health/ready"] {
        let head = server.send("HEAD", path, &[], None);
        assert_eq!(head.status, 200, "{path}");
        assert!(head.body.is_empty());
        let wrong = server.send("POST", path, &[], Some("{}"));
        wrong.expect_error(405, "method_not_allowed");
        assert_eq!(wrong.header("allow"), Some("GET, HEAD"), "{path}");
    }
    server.get("/_health/other").expect_error(404, "not_found");
}

#[test]
fn metrics_count_requests_by_route_template_never_by_key() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server
        .post("/user:secret-101/", r#"{"value": {"name": "Emeka"}}"#)
        .expect(201);
    server.get("/user:secret-101").expect(200);
    server.get("/user:secret-101/").expect(200);
    server.get("/missing-secret").expect(404);
    server.post("/hits-secret/incr", "").expect(200);
    server.post("/hits-secret/decr/", "").expect(200);
    server.get("/_keys?prefix=user").expect(200);
    server.send("HEAD", "/user:secret-101", &[], None);
    server.send("BREW", "/user:secret-101", &[], None);
    server.get("/a/b/c").expect(404);
    let metrics = scrape(&server);

    let requests = |method: &str, route: &str, status: u16| {
        format!(r#"kv_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#)
    };
    assert_sample(&metrics, &requests("POST", "/{key}", 201), 1.0);
    assert_sample(&metrics, &requests("GET", "/{key}", 200), 2.0);
    assert_sample(&metrics, &requests("GET", "/{key}", 404), 1.0);
    assert_sample(&metrics, &requests("HEAD", "/{key}", 200), 1.0);
    assert_sample(&metrics, &requests("POST", "/{key}/incr", 200), 1.0);
    assert_sample(&metrics, &requests("POST", "/{key}/decr", 200), 1.0);
    assert_sample(&metrics, &requests("GET", "/_keys", 200), 1.0);
    assert_sample(&metrics, &requests("other", "/{key}", 405), 1.0);
    assert_sample(&metrics, &requests("GET", "unmatched", 404), 1.0);
    assert!(!metrics.contains("secret"), "a key leaked into a label");

    let latency = r#"kv_http_request_duration_seconds_count{method="GET",route="/{key}"}"#;
    assert_sample(&metrics, latency, 3.0);
    assert_sample(
        &metrics,
        r#"kv_http_request_duration_seconds_bucket{method="GET",route="/{key}",le="+Inf"}"#,
        3.0,
    );
    // The scrape itself is counted by the next one.
    let again = scrape(&server);
    assert_sample(&again, &requests("GET", "/_metrics", 200), 1.0);
    assert!(again.contains("# TYPE kv_http_request_duration_seconds histogram"));
    assert!(again.contains("# TYPE kv_http_requests_total counter"));
    assert_eq!(server.send("HEAD", "/_metrics", &[], None).status, 200);
    let wrong = server.send("POST", "/_metrics", &[], Some(""));
    wrong.expect_error(405, "method_not_allowed");
}

#[test]
fn metrics_report_keys_lazy_expiry_and_the_pool() {
    let db = TestDatabase::new();
    let server = Server::start_with(
        &db.url,
        &["--key-count-interval", "3600", "--pool-size", "3"],
        &[],
    );
    server.post("/plain", r#"{"value": 1}"#).expect(201);
    server
        .post("/later", r#"{"value": 2, "ttl": 100}"#)
        .expect(201);
    server
        .post("/soon", r#"{"value": 3, "ttl_ms": 30}"#)
        .expect(201);
    server
        .post("/soon2", r#"{"value": 4, "ttl_ms": 30}"#)
        .expect(201);
    thread::sleep(Duration::from_millis(60));
    server.get("/soon").expect_error(404, "expired");
    assert_eq!(server.send("HEAD", "/soon2", &[], None).status, 404);
    server.get("/soon").expect_error(404, "not_found");

    let metrics = scrape(&server);
    assert_sample(&metrics, "kv_keys_expired_lazily_total", 2.0);
    // The first scrape waits for its count.
    assert_sample(&metrics, "kv_keys", 2.0);
    assert_sample(&metrics, "kv_keys_expiring", 1.0);
    // Four writes, and the two lazy expiries take a version each (their `expired` events).
    assert_sample(&metrics, "kv_store_version", 6.0);
    let counted_at = metric_sample(&metrics, "kv_keys_counted_timestamp_seconds").expect("counted");
    assert!(counted_at > 1.7e9, "{counted_at}");
    assert_sample(&metrics, "kv_db_pool_max_connections", 3.0);
    let idle = metric_sample(&metrics, r#"kv_db_pool_connections{state="idle"}"#).expect("idle");
    let in_use =
        metric_sample(&metrics, r#"kv_db_pool_connections{state="in_use"}"#).expect("in use");
    assert!(idle + in_use <= 3.0 && in_use >= 0.0, "{idle} {in_use}");
    assert!(metric_sample(&metrics, "process_start_time_seconds").is_some());

    // Within the interval the count is not run again: the figures stay as counted.
    server.post("/another", r#"{"value": 5}"#).expect(201);
    let cached = scrape(&server);
    assert_sample(&cached, "kv_keys", 2.0);
    assert_sample(&cached, "kv_keys_counted_timestamp_seconds", counted_at);

    // With an interval of 0, every scrape counts.
    let mut server = server;
    server.terminate();
    let server = Server::start_with(&db.url, &["--key-count-interval", "0"], &[]);
    assert_sample(&scrape(&server), "kv_keys", 3.0);
    server.post("/more", r#"{"value": 6}"#).expect(201);
    assert_sample(&scrape(&server), "kv_keys", 4.0);
}

#[test]
fn metrics_count_the_keys_sweeps_deleted_as_of_each_scrape() {
    let db = TestDatabase::new();
    // Key counts cached for an hour: the sweeps' count is read on every scrape all the same.
    let server = Server::start_with(&db.url, &["--key-count-interval", "3600"], &[]);
    let metrics = scrape(&server);
    assert!(
        metrics.contains("# TYPE kv_keys_expired_swept_total counter"),
        "{metrics}"
    );
    assert_sample(&metrics, "kv_keys_expired_swept_total", 0.0);
    let expiring = |key: &str| {
        server
            .post(&format!("/{key}"), r#"{"value": 1, "ttl_ms": 20}"#)
            .expect(201);
    };
    for key in ["gone0", "gone1", "gone2"] {
        expiring(key);
    }
    server.post("/stays", r#"{"value": 1}"#).expect(201);
    thread::sleep(Duration::from_millis(40));
    let sweep = |args: &[&str]| assert!(sweep_once(&db.url, args).status.success());
    sweep(&["--batch-size", "2"]);
    let metrics = scrape(&server);
    assert_sample(&metrics, "kv_keys_expired_swept_total", 3.0);
    assert_sample(&metrics, "kv_keys_expired_lazily_total", 0.0);

    // Later sweeps add to it; one that finds nothing leaves it as it is.
    expiring("gone3");
    thread::sleep(Duration::from_millis(40));
    sweep(&[]);
    sweep(&[]);
    assert_sample(&scrape(&server), "kv_keys_expired_swept_total", 4.0);

    // The count is kept in the database, so a restarted server starts from it.
    let mut server = server;
    server.terminate();
    let server = Server::start(&db);
    assert_sample(&scrape(&server), "kv_keys_expired_swept_total", 4.0);
}

/// Reads from `stream` until `needle` has arrived (or the connection closes).
fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = stream.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn sigterm_or_sigint_drains_an_in_flight_request(signal_name: &str) {
    let db = TestDatabase::new();
    let mut server = Server::start(&db);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // A first request proves a worker owns the connection.
    stream
        .write_all(b"GET /_health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    assert!(read_until(&mut stream, r#"{"status":"ok"}"#).starts_with("HTTP/1.1 200"));
    // The second is in flight: its `100 Continue` proves the server has read its head and
    // is handling it (a connection between requests counts as idle and is closed at once).
    let body = r#"{"value": "drained"}"#;
    let head = format!(
        "POST /inflight HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let continued = read_until(&mut stream, "\r\n\r\n");
    assert!(continued.starts_with("HTTP/1.1 100"), "{continued}");
    stream.write_all(&body.as_bytes()[..5]).expect("write");
    stream.flush().expect("flush");

    signal(server.pid(), signal_name);
    wait_for_log(&server, |log| {
        log.contains(&format!("SIG{signal_name} received"))
    });
    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections");
        thread::sleep(Duration::from_millis(10));
    }
    if let Err(err) = stream.write_all(&body.as_bytes()[5..]) {
        panic!("write rest: {err}\n{}", server.log());
    }
    let response = read_until(&mut stream, "\"version\"");
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "{response}\n{}",
        server.log()
    );
    assert!(response.contains(r#""action":"created""#), "{response}");

    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    // The write landed.
    let server = Server::start(&db);
    assert_eq!(server.get("/inflight").expect(200)["value"], "drained");
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    sigterm_or_sigint_drains_an_in_flight_request("TERM");
}

#[test]
fn ctrl_c_drains_in_flight_requests_and_exits_0() {
    sigterm_or_sigint_drains_an_in_flight_request("INT");
}

#[test]
fn start_up_configuration_is_one_line_without_secrets() {
    let db = TestDatabase::new();
    let mut server = Server::start_with(
        &db.url,
        &[
            "--api-key",
            "rw-secret-1",
            "--api-key",
            "rw-secret-2",
            "--read-only-key",
            "ro-secret",
            "--pool-size",
            "5",
        ],
        &[],
    );
    server.get("/_health/live").expect(200);
    server.terminate();
    let log = wait_for_log(&server, |log| log.contains("in-flight requests"));
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kv-server listening on"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    for field in [
        "version=",
        &format!("backend={}", db.backend_name()),
        &format!("database={}", db.url),
        "pool_size=5",
        "sync=normal",
        "api_keys=2",
        "read_only_keys=1",
        "log_format=text",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(!log.contains("secret"), "a key was logged:\n{log}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let db = TestDatabase::new();
    let mut server = Server::start_with(
        &db.url,
        &["--api-key", "json-secret"],
        &[("KV_LOG_FORMAT", "json")],
    );
    server.get("/_health/live").expect(200);
    server
        .send(
            "GET",
            "/some-key",
            &[("Authorization", "Bearer json-secret")],
            None,
        )
        .expect(404);
    wait_for_log(&server, |log| log.contains("GET /some-key"));
    server.terminate();
    let log = wait_for_log(&server, |log| log.contains("in-flight requests"));
    assert!(!log.contains("json-secret"), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for line in &lines {
        for field in ["ts", "level", "target", "msg"] {
            assert!(line[field].is_string(), "{field} missing: {line}");
        }
    }
    let start = lines
        .iter()
        .find(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.contains("listening on"))
        })
        .expect("start-up line");
    assert_eq!(start["backend"], db.backend_name());
    assert_eq!(start["database"], db.url.as_str());
    assert_eq!(start["api_keys"], 1);
    assert_eq!(start["log_format"], "json");
    assert!(start["workers"].as_u64().is_some_and(|w| w >= 1), "{start}");
    assert!(
        lines.iter().any(|l| l["msg"]
            .as_str()
            .is_some_and(|m| m.contains("\"GET /some-key HTTP/1.1\" 404"))),
        "{log}"
    );
}

#[test]
fn the_access_log_follows_its_level_in_rust_log() {
    let db = TestDatabase::new();
    // The start-up line (target kv_server) is how the harness finds the port.
    let quiet = Server::start_with(&db.url, &[], &[("RUST_LOG", "warn,kv_server=info")]);
    let loud = Server::start_with(
        &db.url,
        &[],
        &[(
            "RUST_LOG",
            "warn,kv_server=info,actix_web::middleware::logger=info",
        )],
    );
    // One database: the first SET creates the key, the second updates it.
    for (server, set_status) in [(&quiet, 201), (&loud, 200)] {
        server.post("/logged", r#"{"value": 1}"#).expect(set_status);
        server.get("/logged").expect(200);
    }
    wait_for_log(&loud, |log| log.contains("\"GET /logged HTTP/1.1\" 200"));
    // The quiet server had answered both of its requests before the loud one got its first.
    let log = quiet.log();
    assert!(log.contains("listening on"), "{log}");
    assert!(!log.contains("/logged"), "access log lines at warn:\n{log}");
}

#[test]
fn sweeper_logs_a_summary_and_writes_its_metrics_file() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for key in ["a", "b", "c"] {
        server
            .post(&format!("/{key}"), r#"{"value": 1, "ttl_ms": 20}"#)
            .expect(201);
    }
    server.post("/kept", r#"{"value": 1}"#).expect(201);
    thread::sleep(Duration::from_millis(40));

    let file = db.dir().join("kv_sweeper.prom");
    let file_arg = file.display().to_string();
    let out = sweep_once(&db.url, &["--metrics-file", &file_arg]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with("] Running cleanup..."), "{stdout}");
    assert_eq!(lines[1], "Successfully deleted 3 expired keys.");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cleanup deleted 3 expired keys in "),
        "{stderr}"
    );
    assert!(stderr.contains("deleted=3"), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("kv-sweeper starting"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("mode=once"), "{stderr}");

    let metrics = std::fs::read_to_string(&file).expect("metrics file");
    let series = |name: &str| format!(r#"{name}{{database="{}"}}"#, db.url);
    assert_sample(&metrics, &series("kv_sweeper_last_run_deleted_keys"), 3.0);
    assert_sample(&metrics, &series("kv_sweeper_last_run_success"), 1.0);
    let finished = metric_sample(&metrics, &series("kv_sweeper_last_run_timestamp_seconds"))
        .expect("timestamp");
    assert!(finished > 1.7e9);
    assert_sample(
        &metrics,
        &series("kv_sweeper_last_success_timestamp_seconds"),
        finished,
    );
    assert!(metric_sample(&metrics, &series("kv_sweeper_last_run_duration_seconds")).is_some());

    // JSON logs: stderr is one object per line; stdout keeps the seed's lines.
    let out = sweep_once(
        &db.url,
        &["--metrics-file", &file_arg, "--log-format", "json"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Successfully deleted 0 expired keys."));
    let summaries: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .filter(|l: &Value| l["msg"].as_str().is_some_and(|m| m.starts_with("cleanup ")))
        .collect();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0]["deleted"], 0);
    assert_eq!(summaries[0]["success"], true);
    assert!(summaries[0]["duration_seconds"].is_f64());

    // A failed run: exit 1, success 0, and the last success time kept from the file.
    let metrics = std::fs::read_to_string(&file).expect("metrics file");
    let last_success = metric_sample(
        &metrics,
        &series("kv_sweeper_last_success_timestamp_seconds"),
    )
    .expect("last success");
    std::fs::write(db.dir().join("not-a-db"), "garbage, not SQLite").expect("write");
    let broken = db.dir().join("not-a-db").display().to_string();
    let out = sweep_once(&broken, &["--metrics-file", &file_arg]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let metrics = std::fs::read_to_string(&file).expect("metrics file");
    let broken_series = |name: &str| format!(r#"{name}{{database="{broken}"}}"#);
    assert_sample(&metrics, &broken_series("kv_sweeper_last_run_success"), 0.0);
    assert_sample(
        &metrics,
        &broken_series("kv_sweeper_last_success_timestamp_seconds"),
        last_success,
    );
}
