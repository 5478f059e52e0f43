//! The limits that keep one request from hurting everyone (docs/SECURITY.md, "Limits"): the
//! response and value limits and the server's memory bound, the writer held no longer than the
//! busy timeout, the request timeout and a client's disconnect stopping the work, cross-site
//! requests and DNS rebinding refused, Idempotency-Keys kept per API key, the access log's
//! request line escaped, a slow body cut off. Each is the security probe's request, at a size
//! this machine runs in seconds (sizes given where scaled).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{Resp, Server, TestDatabase, request, wait_until};
use diesel::connection::SimpleConnection;
use kv_core::backend::{self, ConnectionOptions};
use kv_core::{DatabaseUrl, DbConnection};
use serde_json::{Value, json};

/// The server's peak resident memory so far (VmHWM), in bytes.
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// CPU time the server has used (user + system), from /proc.
fn cpu_time(server: &Server) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).expect("stat");
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat").1.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn upstash(server: &Server, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", &server.url(path), &all, Some(&body.to_string()))
}

/// Writes `count` keys `prefix0…` in transactions of 1000.
fn seed(server: &Server, prefix: &str, count: usize) {
    for start in (0..count).step_by(1000) {
        let ops: Vec<Value> = (start..(start + 1000).min(count))
            .map(|i| json!({"op": "set", "key": format!("{prefix}{i:07}"), "value": i}))
            .collect();
        server
            .post("/_tx", &json!({ "ops": ops }).to_string())
            .expect(200);
    }
}

#[test]
fn an_mget_of_a_large_value_repeated_is_refused_before_it_is_built() {
    // The probe: a 1,040,000-byte value read 1,500 times in one MGET (1.56 GB of reply).
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    let big = "x".repeat(1_040_000);
    let set = upstash(&server, "/_upstash", &json!(["SET", "app2:doc", big]), &[]);
    set.expect(200);
    let before = peak_rss(&server);
    let mut mget = vec![json!("MGET")];
    mget.extend(std::iter::repeat_n(json!("app2:doc"), 1500));
    let resp = upstash(&server, "/_upstash", &Value::Array(mget), &[]);
    let body = resp.expect(400);
    assert_eq!(body["error"], "ERR reply exceeds the response limit");
    // In a pipeline: the items within the limit (64 MiB: 64 of these values) answer, the rest
    // get the error.
    let gets: Vec<Value> = (0..100).map(|_| json!(["GET", "app2:doc"])).collect();
    let resp = upstash(&server, "/_upstash/pipeline", &Value::Array(gets), &[]);
    let items = resp.expect(200);
    let items = items.as_array().expect("items");
    let answered = items.iter().filter(|i| i["result"].is_string()).count();
    assert_eq!(answered, 64, "64 MiB holds 64 values of 1,040,000 bytes");
    assert!(
        items[99]["error"]
            .as_str()
            .is_some_and(|e| e.contains("response limit"))
    );
    // A /_tx of 1,000 gets of it: 422 response_too_large, nothing built.
    let ops: Vec<Value> = (0..1000)
        .map(|_| json!({"op": "get", "key": "app2:doc"}))
        .collect();
    server
        .post("/_tx", &json!({ "ops": ops }).to_string())
        .expect_error(422, "response_too_large");
    let after = peak_rss(&server);
    assert!(
        after < before + 400 * 1024 * 1024,
        "peak RSS grew from {before} to {after} bytes"
    );
}

#[test]
fn values_and_pages_count_against_the_response_limit() {
    let db = TestDatabase::sqlite();
    let server = Server::start_with(&db.url, &["--max-response-bytes", "100000"], &[]);
    for i in 0..5 {
        let value = "v".repeat(30_000);
        upstash(
            &server,
            "/_upstash",
            &json!(["SET", format!("k{i}"), value]),
            &[],
        )
        .expect(200);
    }
    server
        .get("/_keys?values=true")
        .expect_error(422, "response_too_large");
    server.get("/_keys").expect(200);
    server.get("/_keys?values=true&limit=2").expect(200);
}

#[test]
fn a_setrange_far_past_the_end_counts_its_zero_bytes_as_stored() {
    // The probe: 40 bytes that asked for 16 MiB of zero bytes, stored as ~96 MiB of JSON.
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    let resp = upstash(
        &server,
        "/_upstash",
        &json!(["SETRANGE", "app1:big", "16777200", "x"]),
        &[],
    );
    let body = resp.expect(400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("ERR string exceeds maximum allowed size")),
        "{body}"
    );
    server.get("/app1:big").expect_error(404, "not_found");
    // Within the limit as stored: 2,700,000 zero bytes are 16,200,000 bytes of JSON.
    let resp = upstash(
        &server,
        "/_upstash",
        &json!(["SETRANGE", "app1:ok", "2700000", "x"]),
        &[],
    );
    assert_eq!(resp.expect(200)["result"], 2_700_001);
    // 100,000 more zero bytes would take it past 16 MiB as stored.
    let resp = upstash(
        &server,
        "/_upstash",
        &json!(["APPEND", "app1:ok", "\u{0}".repeat(100_000)]),
        &[],
    );
    assert!(
        resp.expect(400)["error"]
            .as_str()
            .is_some_and(|e| e.contains("maximum allowed size"))
    );
    let resp = upstash(&server, "/_upstash", &json!(["STRLEN", "app1:ok"]), &[]);
    assert_eq!(
        resp.expect(200)["result"],
        2_700_001,
        "the refused APPEND wrote nothing"
    );
}

#[test]
fn a_pipeline_holds_at_most_1000_commands() {
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    for path in ["/_upstash/pipeline", "/_upstash/multi-exec"] {
        let commands: Vec<Value> = (0..1001)
            .map(|i| json!(["SET", format!("k{i}"), "v"]))
            .collect();
        let body = upstash(&server, path, &Value::Array(commands), &[]).expect(400);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("at most 1000")),
            "{body}"
        );
    }
    assert_eq!(server.get("/_stats").expect(200)["keys"], 0, "nothing ran");
    let commands: Vec<Value> = (0..1000)
        .map(|i| json!(["SET", format!("k{i}"), "v"]))
        .collect();
    upstash(&server, "/_upstash/pipeline", &Value::Array(commands), &[]).expect(200);
    assert_eq!(server.get("/_stats").expect(200)["keys"], 1000);
}

#[test]
fn listings_in_a_pipeline_never_hold_the_writer() {
    // The probe: one SET and 40 `KEYS *zzz` over a million keys held every writer 26.7 s.
    // Scaled: 20,000 keys and 200 KEYS; writes sent meanwhile must not wait for them.
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    seed(&server, "key", 20_000);
    let mut commands = vec![json!(["SET", "first", "1"])];
    commands.extend((0..200).map(|_| json!(["KEYS", "*zzz"])));
    commands.push(json!(["SET", "last", "2"]));
    let base = server.base.clone();
    let pipeline = std::thread::spawn(move || {
        request(
            "POST",
            &format!("{base}/_upstash/pipeline"),
            &[],
            Some(&Value::Array(commands).to_string()),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.put("/meanwhile", r#"{"value": 1}"#).expect(201);
    let waited = started.elapsed();
    let items = pipeline.join().expect("pipeline").expect(200);
    assert!(
        waited < Duration::from_secs(1),
        "a write waited {waited:?} behind KEYS"
    );
    let items = items.as_array().expect("items").clone();
    assert_eq!(items[0]["result"], "OK");
    assert_eq!(items[1]["result"], json!([]));
    assert_eq!(items[201]["result"], "OK");
    // In a multi-exec that writes, a listing is refused (it would run in the transaction).
    let body = upstash(
        &server,
        "/_upstash/multi-exec",
        &json!([["SET", "a", "1"], ["KEYS", "*"]]),
        &[],
    )
    .expect(200);
    assert_eq!(body[0]["result"], "OK");
    assert!(
        body[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot run inside a multi-exec"))
    );
    // One that only reads may list.
    let body = upstash(&server, "/_upstash/multi-exec", &json!([["DBSIZE"]]), &[]).expect(200);
    assert_eq!(body[0]["result"], 20_004);
}

#[test]
fn a_write_that_cannot_start_within_the_busy_timeout_gets_503_at_once() {
    let db = TestDatabase::sqlite();
    let server = Server::start_with(&db.url, &["--busy-timeout-ms", "500"], &[]);
    server.put("/k", r#"{"value": 1}"#).expect(201);
    // Another process holds SQLite's write lock for 4 s: the writer waits on it, and the
    // writes queued behind it must not wait with it.
    let url: DatabaseUrl = db.url.parse().expect("url");
    let mut holder = backend::connect(&url, &ConnectionOptions::default()).expect("connect");
    let DbConnection::Sqlite(conn) = &mut holder else {
        panic!("expected SQLite");
    };
    conn.batch_execute("BEGIN EXCLUSIVE").expect("lock");
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let base = server.base.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let resp = request(
                    "PUT",
                    &format!("{base}/w{i}"),
                    &[("content-type", "application/json")],
                    Some(r#"{"value": 1}"#),
                );
                (resp, started.elapsed())
            })
        })
        .collect();
    for writer in writers {
        let (resp, took) = writer.join().expect("writer");
        let body = resp.expect_error(503, "database_unavailable");
        assert!(resp.header("retry-after").is_some());
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("busy")),
            "{body}"
        );
        assert!(
            took < Duration::from_millis(2500),
            "answered after {took:?}"
        );
    }
    conn.batch_execute("ROLLBACK").expect("unlock");
    drop(holder);
    // Nothing the refused writes sent was written, and writes work again.
    for i in 0..4 {
        server.get(&format!("/w{i}")).expect_error(404, "not_found");
    }
    server.put("/after", r#"{"value": 1}"#).expect(201);
}

#[test]
fn a_request_past_the_timeout_is_stopped_and_a_gone_client_s_work_stops() {
    // The probe: 1,000 `SCAN … MATCH nomatch*` ran for minutes and went on after the client
    // disconnected. Scaled: 20,000 keys, 1,000 KEYS of a pattern that matches none.
    let db = TestDatabase::sqlite();
    let server = Server::start_with(&db.url, &["--request-timeout", "1"], &[]);
    seed(&server, "key", 20_000);
    // No literal prefix: each KEYS examines every key.
    let keys: Vec<Value> = (0..1000).map(|_| json!(["KEYS", "*nomatch"])).collect();
    let started = Instant::now();
    let resp = upstash(
        &server,
        "/_upstash/pipeline",
        &Value::Array(keys.clone()),
        &[],
    );
    resp.expect_error(503, "request_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // A /_tx is stopped the same way, and nothing it wrote is kept: a multi-exec of writes
    // followed by many point reads would do; a plain write is too quick to time out, so this
    // checks the server still writes.
    server.put("/after-timeout", r#"{"value": 1}"#).expect(201);

    // A client that goes away: its work stops (the server's CPU goes quiet at once).
    let server = Server::start_with(&db.url, &["--request-timeout", "0"], &[]);
    let body = Value::Array(keys).to_string();
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "POST /_upstash/pipeline HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(500));
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    let used = cpu_time(&server);
    std::thread::sleep(Duration::from_millis(1000));
    let more = cpu_time(&server) - used;
    assert!(
        more < Duration::from_millis(300),
        "the server went on working: {more:?} of CPU in 1 s"
    );
}

#[test]
fn pages_of_other_origins_cannot_write_and_foreign_host_names_are_refused() {
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    server.put("/keep", r#"{"value": 1}"#).expect(201);
    // The probe: a no-cors fetch from any web page (text/plain, no preflight).
    let evil = [
        ("origin", "https://evil.example"),
        ("content-type", "text/plain"),
    ];
    request(
        "POST",
        &server.url("/_upstash"),
        &evil,
        Some(r#"["FLUSHDB"]"#),
    )
    .expect_error(403, "cross_origin");
    request("DELETE", &server.url("/keep"), &evil, None).expect_error(403, "cross_origin");
    server.get("/keep").expect(200);
    // Sec-Fetch-Site without an Origin: refused for writes.
    request(
        "POST",
        &server.url("/_upstash"),
        &[("sec-fetch-site", "cross-site")],
        Some(r#"["FLUSHDB"]"#),
    )
    .expect_error(403, "cross_origin");
    // The server's own origin (the key browser) and no Origin at all (curl) go through.
    let own = server.base.clone();
    request(
        "PUT",
        &server.url("/own"),
        &[("origin", &own)],
        Some(r#"{"value": 1}"#),
    )
    .expect(201);
    server.put("/curl", r#"{"value": 1}"#).expect(201);
    // DNS rebinding: a name that resolves to 127.0.0.1 but is not the server's.
    request(
        "GET",
        &server.url("/keep"),
        &[("host", "attacker.example")],
        None,
    )
    .expect_error(421, "misdirected_request");
    request("GET", &server.url("/keep"), &[("host", "localhost")], None).expect(200);

    // With --cors-origin and API keys: a scoped key's POST from another origin is refused.
    let server = Server::start_with_key_file(
        &db,
        "rw:admin-key\nrw:tenant-key prefix=app1:\n",
        &[
            ("KV_CORS_ORIGINS", "https://good.example"),
            ("KV_ALLOWED_HOSTS", "kv.internal"),
        ],
    );
    let auth = ("authorization", "Bearer tenant-key");
    request(
        "PUT",
        &server.url("/app1:x"),
        &[auth, ("origin", "https://evil.example")],
        Some(r#"{"value": 1}"#),
    )
    .expect_error(403, "cross_origin");
    request(
        "PUT",
        &server.url("/app1:x"),
        &[auth, ("origin", "https://good.example")],
        Some(r#"{"value": 1}"#),
    )
    .expect(201);
    request(
        "GET",
        &server.url("/app1:x"),
        &[auth, ("host", "kv.internal:8000")],
        None,
    )
    .expect(200);
}

#[test]
fn idempotency_keys_belong_to_the_api_key_that_sent_them() {
    let db = TestDatabase::sqlite();
    let server = Server::start_with_key_file(
        &db,
        "rw:admin-key\nro:reader-key\nrw:tenant-key prefix=app1:\n",
        &[],
    );
    let send = |key: &str, idem: &str, path: &str, body: &str| {
        request(
            "POST",
            &server.url(path),
            &[
                ("authorization", &format!("Bearer {key}")),
                ("idempotency-key", idem),
            ],
            Some(body),
        )
    };
    // The probe: a read-only key's read-only /_tx with order-99 stored a record, and the
    // admin's later write with order-99 got 422.
    send(
        "reader-key",
        "order-99",
        "/_tx",
        r#"{"ops":[{"op":"get","key":"a"}]}"#,
    )
    .expect(200);
    send("admin-key", "order-99", "/app1:a", r#"{"value": 1}"#).expect(201);
    // The admin's order-43 and a tenant's order-43: neither sees the other's.
    send("admin-key", "order-43", "/app1:b", r#"{"value": "admin"}"#).expect(201);
    let tenant = send(
        "tenant-key",
        "order-43",
        "/app1:c",
        r#"{"value": "tenant"}"#,
    );
    tenant.expect(201);
    assert_eq!(tenant.header("idempotent-replayed"), None);
    // The same key retried with X-API-Key instead of Bearer: one client, a replay.
    let retry = request(
        "POST",
        &server.url("/app1:c"),
        &[("x-api-key", "tenant-key"), ("idempotency-key", "order-43")],
        Some(r#"{"value": "tenant"}"#),
    );
    retry.expect(201);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    // A read-only /_tx stores no record: the same key with another request is no 422.
    send(
        "admin-key",
        "read-1",
        "/_tx",
        r#"{"ops":[{"op":"get","key":"a"}]}"#,
    )
    .expect(200);
    send(
        "admin-key",
        "read-1",
        "/_tx",
        r#"{"ops":[{"op":"get","key":"b"}]}"#,
    )
    .expect(200);
}

#[test]
fn the_access_log_escapes_quotes_in_the_request_line() {
    let db = TestDatabase::sqlite();
    let server = Server::start(&db);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "GET /app1:\"%20injected=1\" HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    wait_until(Duration::from_secs(5), "the access log line", || {
        server.log().contains("injected=1")
    });
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("injected=1"))
        .expect("line");
    assert!(
        line.contains(r#""GET /app1:\"%20injected=1\" HTTP/1.1""#),
        "{line}"
    );
}

#[test]
fn a_body_trickled_slower_than_the_client_timeout_is_cut_off() {
    let db = TestDatabase::sqlite();
    let server = Server::start_with(&db.url, &["--client-timeout", "1"], &[]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "PUT /slow HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .expect("send");
    let started = Instant::now();
    // One byte every 200 ms: 100 bytes would take 20 s.
    let mut cut_off = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        if stream.write_all(b" ").is_err() {
            cut_off = true;
            break;
        }
        let mut peek = [0u8; 1];
        stream.set_nonblocking(true).expect("nonblocking");
        let ready = matches!(stream.peek(&mut peek), Ok(n) if n > 0)
            || matches!(stream.peek(&mut peek), Ok(0));
        stream.set_nonblocking(false).expect("blocking");
        if ready {
            cut_off = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut_off, "the server still reads the body after {took:?}");
    assert!(took < Duration::from_secs(4), "cut off only after {took:?}");
    server.get("/slow").expect_error(404, "not_found");
}
