//! API keys over HTTP: 401 / 403, read-only transactions, open health checks, key files, the
//! non-loopback warning, and keys never reaching the log.

use crate::common::{Server, TestDatabase, start_log};
use serde_json::json;

const RW: &str = "rw-secret-5b1f0c";
const RO: &str = "ro-secret-9d27e4";

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn with_keys(db: &TestDatabase) -> Server {
    Server::start_with(&db.url, &["--api-key", RW, "--read-only-key", RO], &[])
}

#[test]
fn without_keys_configured_nothing_is_asked() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let created = server.post("/k", r#"{"value": 1}"#);
    created.expect(201);
    assert_eq!(created.header("www-authenticate"), None);
}

#[test]
fn a_missing_or_wrong_key_is_401_with_www_authenticate() {
    let db = TestDatabase::new();
    let wrong = bearer("nope");
    let almost = bearer(&RW[..RW.len() - 1]);
    let longer = bearer(&format!("{RW}x"));
    for headers in [
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", almost.as_str())],
        vec![("Authorization", longer.as_str())],
        vec![("Authorization", RW)], // no scheme
        vec![("Authorization", "Basic cnc6c2VjcmV0")],
        vec![("X-API-Key", "nope")],
        vec![("X-API-Key", "")],
    ] {
        // A server for each: more than ten wrong keys from one address would be throttled
        // (tests/throttle.rs).
        let server = with_keys(&db);
        for (method, path, body) in [
            ("GET", "/k", None),
            ("POST", "/k", Some(r#"{"value": 1}"#)),
            ("GET", "/_keys", None),
            ("GET", "/_stats", None),
            ("POST", "/_tx", Some(r#"{"ops": []}"#)),
            ("GET", "/_nope", None),
            ("OPTIONS", "/k", None),
        ] {
            let resp = server.send(method, path, &headers, body);
            resp.expect_error(401, "unauthorized");
            let challenge = resp.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        }
    }
    // Nothing was written by the refused requests.
    let server = with_keys(&db);
    let rw = bearer(RW);
    server
        .send("GET", "/k", &[("Authorization", &rw)], None)
        .expect_error(404, "not_found");
}

#[test]
fn a_read_write_key_does_everything_by_either_header() {
    let db = TestDatabase::new();
    let server = with_keys(&db);
    let rw = bearer(RW);
    let lower = format!("bearer {RW}");
    server
        .send(
            "PUT",
            "/k",
            &[("Authorization", &rw)],
            Some(r#"{"value": 1}"#),
        )
        .expect(201);
    server
        .send("POST", "/k/incr", &[("authorization", &lower)], None)
        .expect(200);
    let got = server
        .send("GET", "/k", &[("X-API-Key", RW)], None)
        .expect(200);
    assert_eq!(got["value"], 2);
    server
        .send("DELETE", "/k", &[("X-API-Key", RW)], None)
        .expect(200);
}

#[test]
fn a_read_only_key_reads_and_gets_403_on_writes() {
    let db = TestDatabase::new();
    let server = with_keys(&db);
    let rw = bearer(RW);
    let ro = bearer(RO);
    server
        .send(
            "POST",
            "/k",
            &[("Authorization", &rw)],
            Some(r#"{"value": 7}"#),
        )
        .expect(201);
    let auth = [("Authorization", ro.as_str())];
    assert_eq!(
        server.send("GET", "/k", &auth, None).expect(200)["value"],
        7
    );
    assert_eq!(server.send("HEAD", "/k", &auth, None).status, 200);
    server.send("GET", "/_keys", &auth, None).expect(200);
    server.send("GET", "/_stats", &auth, None).expect(200);
    for (method, path, body) in [
        ("POST", "/k", Some(r#"{"value": 8}"#)),
        ("PUT", "/k", Some(r#"{"value": 8}"#)),
        ("PATCH", "/k", Some(r#"{"ttl": 5}"#)),
        ("DELETE", "/k", None),
        ("POST", "/k/incr", None),
        ("POST", "/k/decr", None),
        ("DELETE", "/_keys?all=true", None),
    ] {
        server
            .send(method, path, &auth, body)
            .expect_error(403, "forbidden");
        server
            .send(method, path, &[("X-API-Key", RO)], body)
            .expect_error(403, "forbidden");
    }
    let got = server.send("GET", "/k", &auth, None).expect(200);
    assert_eq!(
        (got["value"].clone(), got["ttl_remaining"].clone()),
        (json!(7), json!(-1))
    );
}

#[test]
fn a_read_only_key_runs_transactions_of_gets_and_checks_only() {
    let db = TestDatabase::new();
    let server = with_keys(&db);
    let rw = bearer(RW);
    let ro = bearer(RO);
    let set = server
        .send(
            "POST",
            "/a",
            &[("Authorization", &rw)],
            Some(r#"{"value": "x"}"#),
        )
        .expect(201);
    let version = set["version"].as_i64().expect("version");
    let auth = [("Authorization", ro.as_str())];
    let reads = json!({"ops": [
        {"op": "get", "key": "a"},
        {"op": "check", "key": "a", "version": version},
        {"op": "check", "key": "b", "version": null},
    ]});
    let done = server
        .send("POST", "/_tx", &auth, Some(&reads.to_string()))
        .expect(200);
    assert_eq!(done["results"][0]["value"], "x");
    for write in [
        json!({"op": "set", "key": "b", "value": 1}),
        json!({"op": "delete", "key": "a"}),
        json!({"op": "incr", "key": "c"}),
    ] {
        let ops = json!({"ops": [{"op": "get", "key": "a"}, write]});
        server
            .send("POST", "/_tx", &auth, Some(&ops.to_string()))
            .expect_error(403, "forbidden");
    }
    // Nothing of the refused transactions was applied.
    let keys = server.send("GET", "/_keys", &auth, None).expect(200);
    assert_eq!(keys["keys"], json!(["a"]));
    // A bad body is still a 400 for a read-only key (the body is parsed first).
    server
        .send("POST", "/_tx", &auth, Some("{"))
        .expect_error(400, "invalid_json");
}

#[test]
fn health_checks_are_open_and_everything_else_is_not() {
    let db = TestDatabase::new();
    let server = with_keys(&db);
    for path in ["/_health", "/_health/", "/_health/live", "/_health/ready"] {
        server.get(path).expect(200);
    }
    for path in ["/_healthz", "/_openapi.json", "/_stats"] {
        server.get(path).expect_error(401, "unauthorized");
    }
    // Only the health checks themselves: not other routes under /_health/.
    server
        .post("/_health/incr", "")
        .expect_error(401, "unauthorized");
}

#[test]
fn keys_come_from_the_environment_and_a_key_file() {
    let db = TestDatabase::new();
    let server = Server::start_with_key_file(
        &db,
        "# kvstore API keys\n\nrw:file-writer\n  ro: file-reader  \n#rw:commented-out\n",
        &[
            ("KV_API_KEYS", "env-writer-1,env-writer-2"),
            ("KV_READ_ONLY_KEYS", "env-reader"),
        ],
    );
    let body = Some(r#"{"value": 1}"#);
    for writer in ["env-writer-1", "env-writer-2", "file-writer"] {
        server
            .send("POST", "/k", &[("X-API-Key", writer)], body)
            .expect(if writer == "env-writer-1" { 201 } else { 200 });
    }
    for reader in ["env-reader", "file-reader"] {
        server
            .send("GET", "/k", &[("X-API-Key", reader)], None)
            .expect(200);
        server
            .send("POST", "/k", &[("X-API-Key", reader)], body)
            .expect_error(403, "forbidden");
    }
    server
        .send("GET", "/k", &[("X-API-Key", "commented-out")], None)
        .expect_error(401, "unauthorized");
}

#[test]
fn keys_never_reach_the_log() {
    let db = TestDatabase::new();
    let server = with_keys(&db);
    let rw = bearer(RW);
    let ro = bearer(RO);
    server
        .send(
            "POST",
            "/k",
            &[("Authorization", &rw)],
            Some(r#"{"value": 1}"#),
        )
        .expect(201);
    server
        .send(
            "POST",
            "/k",
            &[("Authorization", &ro)],
            Some(r#"{"value": 1}"#),
        )
        .expect(403);
    server
        .send("GET", "/k", &[("X-API-Key", "wrong-secret-key")], None)
        .expect(401);
    let log = server.log();
    assert!(
        log.contains("\"POST /k HTTP/1.1\" 201"),
        "access log missing:\n{log}"
    );
    for secret in [RW, RO, "wrong-secret-key"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// Runs kv-server with `args` until it listens (or exits); returns its log and whether it
/// started.
fn start_output(args: &[&str]) -> (bool, String) {
    let db = TestDatabase::new();
    start_log(&db.url, args)
}

#[test]
fn a_bad_key_file_line_stops_the_server_with_a_clear_error() {
    let db = TestDatabase::new();
    let file = db.dir().join("keys.txt");
    std::fs::write(&file, "rw:good-key\nsuper-secret-no-prefix\n").expect("write");
    let (started, log) = start_output(&[
        "--bind",
        "127.0.0.1:0",
        "--api-keys-file",
        &file.display().to_string(),
    ]);
    assert!(!started, "{log}");
    assert!(log.contains("line 2"), "{log}");
    assert!(
        !log.contains("super-secret") && !log.contains("good-key"),
        "{log}"
    );

    let missing = db.dir().join("missing.txt");
    let (started, log) = start_output(&[
        "--bind",
        "127.0.0.1:0",
        "--api-keys-file",
        &missing.display().to_string(),
    ]);
    assert!(
        !started && log.contains("cannot read the API key file"),
        "{log}"
    );
}

#[test]
fn binding_beyond_loopback_without_keys_warns() {
    let (started, log) = start_output(&["--bind", "0.0.0.0:0"]);
    assert!(started, "{log}");
    assert!(log.contains("no API keys"), "no warning:\n{log}");

    let (started, log) = start_output(&["--bind", "0.0.0.0:0", "--api-key", RW]);
    assert!(started && !log.contains("no API keys"), "{log}");

    let (started, log) = start_output(&["--bind", "127.0.0.1:0"]);
    assert!(started && !log.contains("no API keys"), "{log}");
}
