//! Export and import (`GET /_export`, `POST /_import`, `kv-server export | import`), online
//! backup (`kv-server backup`) and `kv-server copy`, against the real binary on SQLite or
//! PostgreSQL (the copy from SQLite into PostgreSQL needs `scripts/test-postgres.sh`).

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::common::{
    Resp, Server, TestDatabase, request, server_bin, stderr_of, stdout_of_success, store_version,
};
use serde_json::{Value, json};

/// The lines of an export, parsed.
fn lines_of(ndjson: &str) -> Vec<Value> {
    ndjson
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

fn keys_in(ndjson: &str) -> Vec<String> {
    lines_of(ndjson)
        .iter()
        .map(|line| line["key"].as_str().expect("key").to_owned())
        .collect()
}

fn import(server: &Server, query: &str, body: &str) -> Resp {
    server.post(&format!("/_import{query}"), body)
}

/// `kv-server <args>` over `database_url`, with `stdin` fed in.
fn command(database_url: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(server_bin())
        .arg("--database-url")
        .arg(database_url)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kv-server");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kv-server output")
}

/// Keys of several shapes: an object with a number kept as written, a key with `/` and
/// multibyte characters, one with a TTL, one already expired.
fn seed(server: &Server) {
    server
        .put(
            "/a",
            r#"{"value": {"x": [1, 2.50, 12345678901234567890123], "y": null}}"#,
        )
        .expect(201);
    server
        .put("/b%2F%C3%A9", r#"{"value": "h\u00e9\n"}"#)
        .expect(201);
    server.put("/c", r#"{"value": 7, "ttl": 3600}"#).expect(201);
    server
        .put("/gone", r#"{"value": 1, "ttl_ms": 1}"#)
        .expect(201);
    server.put("/z", r#"{"value": [true]}"#).expect(201);
    std::thread::sleep(std::time::Duration::from_millis(5));
}

#[test]
fn an_export_streams_every_live_key_in_byte_order_with_values_as_stored() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    seed(&server);
    let export = server.get("/_export");
    assert_eq!(export.status, 200, "{}", export.body);
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    assert!(export.body.ends_with('\n'), "{:?}", export.body);
    let lines = lines_of(&export.body);
    assert_eq!(
        keys_in(&export.body),
        ["a", "b/é", "c", "z"],
        "no expired key"
    );
    // The value exactly as stored: the numbers 2.50 and 12345678901234567890123 as written.
    assert!(
        export.body.starts_with(
            r#"{"key":"a","value":{"x":[1,2.50,12345678901234567890123],"y":null},"expires_at":null,"version":1}"#
        ),
        "{}",
        export.body
    );
    let c = server.get("/c").expect(200);
    assert_eq!(lines[2]["expires_at"], c["expires_at"]);
    assert_eq!(lines[2]["version"], c["version"]);
    assert_eq!(lines[1]["value"], json!("hé\n"));

    assert_eq!(keys_in(&server.get("/_export?prefix=b%2F").body), ["b/é"]);
    assert_eq!(
        keys_in(&server.get("/_export?match=%5Bac%5D").body),
        ["a", "c"]
    );
    assert_eq!(server.get("/_export?prefix=nothing").body, "");
    server
        .get(&format!("/_export?match={}", "x".repeat(2000)))
        .expect_error(400, "pattern_too_long");
    server
        .post("/_export", "")
        .expect_error(405, "method_not_allowed");
}

#[test]
fn an_export_of_many_keys_pages_through_them_all_once() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for batch in 0..3 {
        let ops: Vec<Value> = (batch * 1000..(batch * 1000 + 1000).min(2500))
            .map(|i| json!({"op": "set", "key": format!("k{i:05}"), "value": i}))
            .collect();
        server
            .post("/_tx", &json!({ "ops": ops }).to_string())
            .expect(200);
    }
    let keys = keys_in(&server.get("/_export").body);
    assert_eq!(keys.len(), 2500);
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "byte order, no repeats"
    );
}

#[test]
fn an_import_applies_every_line_in_one_version_and_each_mode_does_what_it_says() {
    let db = TestDatabase::new();
    let source = Server::start(&db);
    seed(&source);
    let export = source.get("/_export").body;
    drop(source);

    let target_db = TestDatabase::new();
    let target = Server::start(&target_db);
    target.put("/a", r#"{"value": "kept"}"#).expect(201);
    let dump = format!(
        "{export}{}\n",
        r#"{"key":"old","value":1,"expires_at":"2020-01-01T00:00:00Z"}"#
    );

    let skipped = import(&target, "?mode=skip_existing", &dump).expect(200);
    assert_eq!(
        skipped,
        json!({"status": "ok", "imported": 3, "skipped_existing": 1, "skipped_expired": 1, "version": 2, "chunks": 1})
    );
    assert_eq!(target.get("/a").expect(200)["value"], json!("kept"));
    let c = target.get("/c").expect(200);
    assert_eq!(
        c["version"],
        json!(2),
        "every key of an import takes its one version"
    );
    let exported: Vec<Value> = lines_of(&export);
    assert_eq!(
        c["expires_at"], exported[2]["expires_at"],
        "the expiry as exported"
    );

    let refused = import(&target, "?mode=fail_on_existing", &dump).expect_error(409, "key_exists");
    assert_eq!(refused["line"], json!(1), "{refused}");
    assert_eq!(target.get("/a").expect(200)["value"], json!("kept"));

    let replaced = import(&target, "", &dump).expect(200);
    assert_eq!(replaced["imported"], json!(4));
    assert_eq!(replaced["version"], json!(3));
    assert_eq!(target.get("/a").expect(200)["value"], source_value());
    // The whole store now exports as the source did, but for the versions.
    let strip = |ndjson: &str| -> Vec<Value> {
        lines_of(ndjson)
            .into_iter()
            .map(|mut line| {
                line["version"] = Value::Null;
                line
            })
            .collect()
    };
    assert_eq!(strip(&target.get("/_export").body), strip(&export));

    let empty = import(&target, "", "\n\n").expect(200);
    assert_eq!(empty["imported"], json!(0));
    assert_eq!(empty["version"], Value::Null, "nothing written, no version");
}

fn source_value() -> Value {
    serde_json::from_str(r#"{"x": [1, 2.50, 12345678901234567890123], "y": null}"#).expect("json")
}

#[test]
fn a_bad_line_is_400_naming_it_and_nothing_of_the_import_lands() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--max-import-bytes", "2000"], &[]);
    let good = r#"{"key":"first","value":1}"#;
    for (bad, code) in [
        ("not json", "invalid_json"),
        (r#"{"key":"_reserved","value":1}"#, "reserved_key"),
        (r#"{"key":"k"}"#, "missing_value"),
        (r#"{"key":"k","value":1,"ttl":3}"#, "invalid_line"),
        (
            r#"{"key":"k","value":1,"expires_at":"soon"}"#,
            "invalid_expires_at",
        ),
        (r#"{"key":"","value":1}"#, "invalid_key"),
        ("[1,2]", "invalid_line"),
        (r#"{"key":"k","type":"zset","value":[1]}"#, "invalid_line"),
        (r#"{"key":"k","type":"hash","value":[1]}"#, "invalid_line"),
    ] {
        let body = format!("{good}\n\n{bad}\n{good}\n");
        let err = import(&server, "", &body).expect_error(400, code);
        assert_eq!(err["line"], json!(3), "{bad}: {err}");
        assert!(
            err["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("line 3: ")),
            "{err}"
        );
    }
    server.get("/first").expect_error(404, "not_found");
    import(&server, "?mode=merge", good).expect_error(400, "invalid_mode");
    let big = format!("{good}\n").repeat(100);
    import(&server, "", &big).expect_error(413, "payload_too_large");
    server.get("/first").expect_error(404, "not_found");
    assert_eq!(store_version(&server), 0);
}

#[test]
fn read_only_keys_export_but_do_not_import_and_scoped_keys_stay_in_their_prefixes() {
    let db = TestDatabase::new();
    let server = Server::start_with_key_file(
        &db,
        "rw:admin-9f\nro:reader-1c\nrw:app-77 prefix=app1:\n",
        &[],
    );
    let as_key = |key: &str, method: &str, path: &str, body: Option<&str>| {
        server.send(
            method,
            path,
            &[("Authorization", &format!("Bearer {key}"))],
            body,
        )
    };
    for key in ["app1:a", "app1:b", "app2:secret"] {
        as_key(
            "admin-9f",
            "PUT",
            &format!("/{key}"),
            Some(r#"{"value":1}"#),
        )
        .expect(201);
    }
    server.get("/_export").expect_error(401, "unauthorized");
    assert_eq!(
        keys_in(&as_key("reader-1c", "GET", "/_export", None).body).len(),
        3
    );
    as_key(
        "reader-1c",
        "POST",
        "/_import",
        Some(r#"{"key":"n","value":1}"#),
    )
    .expect_error(403, "forbidden");

    assert_eq!(
        keys_in(&as_key("app-77", "GET", "/_export", None).body),
        ["app1:a", "app1:b"],
        "no prefix: all of its keys, never more"
    );
    as_key("app-77", "GET", "/_export?prefix=app2:", None).expect_error(403, "forbidden");
    let body = "{\"key\":\"app1:new\",\"value\":1}\n{\"key\":\"app2:new\",\"value\":1}\n";
    let err = as_key("app-77", "POST", "/_import", Some(body)).expect_error(403, "forbidden");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("line 2: ")),
        "{err}"
    );
    as_key("admin-9f", "GET", "/app1:new", None).expect_error(404, "not_found");
    as_key(
        "app-77",
        "POST",
        "/_import",
        Some(&body[..body.find('\n').expect("nl") + 1]),
    )
    .expect(200);
    as_key("admin-9f", "GET", "/app1:new", None).expect(200);
}

#[test]
fn the_export_and_import_commands_need_no_server() {
    let db = TestDatabase::new();
    {
        let server = Server::start(&db);
        seed(&server);
    }
    let exported = command(&db.url, &["export"], "");
    let dump = stdout_of_success(&exported);
    assert_eq!(keys_in(&dump), ["a", "b/é", "c", "z"]);
    assert!(
        stderr_of(&exported).contains("exported 4 keys"),
        "{exported:?}"
    );
    let file = db.dir().join("dump.ndjson");
    stdout_of_success(&command(
        &db.url,
        &[
            "export",
            "--match",
            "[az]",
            "--output",
            &file.display().to_string(),
        ],
        "",
    ));
    assert_eq!(
        keys_in(&std::fs::read_to_string(&file).expect("file")),
        ["a", "z"]
    );

    let target = TestDatabase::new();
    let loaded = command(&target.url, &["import"], &dump);
    assert!(
        loaded.status.success() && stderr_of(&loaded).contains("imported 4 keys"),
        "{loaded:?}"
    );
    let again = command(
        &target.url,
        &[
            "import",
            "--mode",
            "fail_on_existing",
            &file.display().to_string(),
        ],
        "",
    );
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        stderr_of(&again).contains("line 1: key \"a\" exists"),
        "{again:?}"
    );
    let bad = command(
        &target.url,
        &["import", "-"],
        "{\"key\":\"q\",\"value\":1}\n{oops\n",
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr_of(&bad).contains("line 2: Invalid JSON"), "{bad:?}");
    let missing = db.dir().join("typo.sqlite3").display().to_string();
    for args in [
        &["export"][..],
        &["backup", "-o", "b.sqlite3"],
        &["copy", "--to", &target.url],
    ] {
        let out = command(&missing, args, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(stderr_of(&out).contains("no SQLite database at"), "{out:?}");
    }
    assert!(
        !std::path::Path::new(&missing).exists(),
        "no empty store left behind"
    );

    let server = Server::start(&target);
    server.get("/q").expect_error(404, "not_found");
    assert_eq!(server.get("/a").expect(200)["value"], source_value());
}

#[test]
fn an_online_backup_while_writes_go_on_restores_with_every_key_it_holds() {
    let db = TestDatabase::sqlite();
    let mut server = Server::start(&db);
    for i in 0..300 {
        server
            .put(&format!("/before{i}"), &json!({"value": i}).to_string())
            .expect(201);
    }
    let backup = db.dir().join("backup.sqlite3");
    let stop = AtomicBool::new(false);
    let backed_up = thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                server
                    .put(&format!("/during{i}"), r#"{"value": "x"}"#)
                    .expect(201);
                i += 1;
            }
            i
        });
        let out = command(
            &db.url,
            &["backup", "--output", &backup.display().to_string()],
            "",
        );
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().expect("writer");
        assert!(writes > 0, "writes went on during the backup");
        out
    });
    assert!(backed_up.status.success(), "{backed_up:?}");
    assert!(
        stderr_of(&backed_up).contains("backed up to"),
        "{backed_up:?}"
    );
    let again = command(
        &db.url,
        &["backup", "--output", &backup.display().to_string()],
        "",
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr_of(&again).contains("exists already"), "{again:?}");

    let in_backup = stdout_of_success(&command(&backup.display().to_string(), &["export"], ""));
    let keys = keys_in(&in_backup);
    assert!(keys.iter().filter(|k| k.starts_with("before")).count() == 300);

    // Restore: stop, copy back, start.
    server.terminate();
    std::fs::copy(&backup, &db.url).expect("copy back");
    for companion in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{companion}", db.url));
    }
    server.restart();
    assert_eq!(
        server.get("/_export").body,
        in_backup,
        "every key of the backup, as it was"
    );
    server.get("/before299").expect(200);
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn copy_moves_a_sqlite_store_into_postgres_byte_for_byte_with_its_versions() {
    let sqlite = TestDatabase::sqlite();
    {
        let server = Server::start(&sqlite);
        seed(&server);
        server.delete("/z").expect(200); // the counter is above every live key's version
    }
    let source_export = stdout_of_success(&command(&sqlite.url, &["export"], ""));
    let postgres = TestDatabase::postgres();
    let copied = command(&sqlite.url, &["copy", "--to", &postgres.url], "");
    assert!(copied.status.success(), "{copied:?}");
    assert!(
        stderr_of(&copied).contains("copied 3 keys")
            && stderr_of(&copied).contains("counter is at 6"),
        "{copied:?}"
    );
    let server = Server::start(&postgres);
    assert_eq!(
        server.get("/_export").body,
        source_export,
        "key by key, byte for byte"
    );
    let stats = server.get("/_stats").expect(200);
    assert_eq!(stats["database"], json!("postgres"));
    assert_eq!(stats["version"], json!(6));
    let next = server.put("/new", r#"{"value": 1}"#).expect(201);
    assert_eq!(
        next["version"],
        json!(7),
        "new writes continue above the source's versions"
    );

    let refused = command(&sqlite.url, &["copy", "--to", &postgres.url], "");
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr_of(&refused).contains("--overwrite"), "{refused:?}");
    let overwritten = command(
        &sqlite.url,
        &["copy", "--to", &postgres.url, "--overwrite"],
        "",
    );
    assert!(overwritten.status.success(), "{overwritten:?}");
    server.get("/new").expect(200);

    let backup = sqlite.dir().join("pg.backup");
    let refused = command(
        &postgres.url,
        &["backup", "-o", &backup.display().to_string()],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr_of(&refused).contains("pg_dump"), "{refused:?}");
    assert!(!backup.exists());
}

#[test]
fn lines_see_the_lines_before_them_across_batches_of_a_long_import() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.put("/taken", r#"{"value": "before"}"#).expect(201);
    // 2,500 lines (three batches of the server's 1,000), one key twice, and at line 1,500 a
    // key that exists.
    let mut lines: Vec<String> = (0..2500)
        .map(|i| format!("{{\"key\":\"k{i}\",\"value\":{i}}}"))
        .collect();
    lines[1499] = r#"{"key":"taken","value":"imported"}"#.into();
    lines[2000] = r#"{"key":"k5","value":"again"}"#.into();
    let body = lines.join("\n");

    let err = import(&server, "?mode=fail_on_existing", &body).expect_error(409, "key_exists");
    assert_eq!(err["line"], json!(1500), "{err}");
    server.get("/k0").expect_error(404, "not_found");
    assert_eq!(server.get("/_stats").expect(200)["keys"], json!(1));

    let skipped = import(&server, "?mode=skip_existing", &body).expect(200);
    assert_eq!(skipped["imported"], json!(2498), "{skipped}");
    assert_eq!(
        skipped["skipped_existing"],
        json!(2),
        "taken, and k5 the second time"
    );
    assert_eq!(server.get("/k5").expect(200)["value"], json!(5));
    assert_eq!(server.get("/taken").expect(200)["value"], json!("before"));

    let replaced = import(&server, "", &body).expect(200);
    assert_eq!(replaced["imported"], json!(2500));
    assert_eq!(
        server.get("/k5").expect(200)["value"],
        json!("again"),
        "the last line wins"
    );
    assert_eq!(server.get("/taken").expect(200)["value"], json!("imported"));
    assert_eq!(server.get("/_stats").expect(200)["keys"], json!(2499));
}

/// The lines the server applies in one transaction at most (kv-core's `CHUNK_LINES`).
const CHUNK: usize = 10_000;

/// `count` lines `{"key":"k<i>","value":<i>}`, joined.
fn numbered_lines(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("{{\"key\":\"k{i}\",\"value\":{i}}}"))
        .collect()
}

#[test]
fn a_long_import_is_applied_in_chunks_while_other_writes_go_on_between_them() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let body = numbered_lines(3 * CHUNK + 500).join("\n");
    let importing = AtomicBool::new(true);
    let (answer, latencies) = thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut latencies = Vec::new();
            let mut i = 0;
            while importing.load(Ordering::Acquire) {
                let started = std::time::Instant::now();
                let url = server.url(&format!("/other{i}"));
                let put = request("PUT", &url, &[], Some(r#"{"value": 1}"#));
                latencies.push((started.elapsed(), put));
                i += 1;
            }
            latencies
        });
        let answer = import(&server, "", &body);
        importing.store(false, Ordering::Release);
        (answer, writer.join().expect("writer"))
    });
    let answer = answer.expect(200);
    assert_eq!(answer["imported"], json!(3 * CHUNK + 500), "{answer}");
    assert_eq!(answer["chunks"], json!(4), "{answer}");
    let slowest = latencies.iter().map(|(took, _)| *took).max();
    eprintln!(
        "{} PUTs during the import, the slowest in {slowest:?}",
        latencies.len()
    );
    for (took, put) in &latencies {
        put.expect(201);
        assert!(
            took.as_millis() < 2000,
            "a PUT waited {took:?} for the import"
        );
    }
    // Each chunk took a version of its own, the last one the answer's.
    let first = server.get("/k0").expect(200)["version"].clone();
    let last = server.get(&format!("/k{}", 3 * CHUNK + 499)).expect(200)["version"].clone();
    assert_eq!(last, answer["version"]);
    assert!(first.as_i64() < last.as_i64(), "{first} {last}");
    assert_eq!(
        server.get(&format!("/k{}", CHUNK - 1)).expect(200)["version"],
        first,
        "a chunk is one version"
    );
}

#[test]
fn a_chunk_that_fails_stops_the_import_saying_which_lines_stay_imported() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    // fail_on_existing checks the store before the first chunk: a key live before the import
    // in its last chunk stops it with nothing imported.
    server.put("/taken", r#"{"value": "before"}"#).expect(201);
    let mut lines = numbered_lines(2 * CHUNK + 500);
    lines[2 * CHUNK + 100] = r#"{"key":"taken","value":"imported"}"#.into();
    let err = import(&server, "?mode=fail_on_existing", &lines.join("\n"))
        .expect_error(409, "key_exists");
    assert_eq!(err["line"], json!(2 * CHUNK + 101), "{err}");
    assert_eq!(err["committed_lines"], json!(0), "{err}");
    server.get("/k0").expect_error(404, "not_found");

    // A key twice in the file: the second time is in the third chunk, which fails; the two
    // chunks before it stay.
    lines[2 * CHUNK + 100] = r#"{"key":"k7","value":"again"}"#.into();
    let err = import(&server, "?mode=fail_on_existing", &lines.join("\n"))
        .expect_error(409, "key_exists");
    assert_eq!(err["line"], json!(2 * CHUNK + 101), "{err}");
    assert_eq!(err["committed_lines"], json!(2 * CHUNK), "{err}");
    let message = err["error"].as_str().expect("error");
    assert!(
        message.starts_with(&format!("line {}: ", 2 * CHUNK + 101))
            && message.contains(&format!("lines 1 to {} were imported", 2 * CHUNK)),
        "{message}"
    );
    assert_eq!(server.get("/k7").expect(200)["value"], json!(7));
    server.get(&format!("/k{}", 2 * CHUNK - 1)).expect(200);
    server
        .get(&format!("/k{}", 2 * CHUNK))
        .expect_error(404, "not_found");
    assert_eq!(
        server.get("/_stats").expect(200)["keys"],
        json!(2 * CHUNK + 1)
    );

    // A bad line anywhere is found before any chunk: nothing of it lands.
    let db = TestDatabase::new();
    let server = Server::start(&db);
    lines[2 * CHUNK + 100] = "not json".into();
    let err = import(&server, "", &lines.join("\n")).expect_error(400, "invalid_json");
    assert_eq!(err["line"], json!(2 * CHUNK + 101), "{err}");
    assert_eq!(err.get("committed_lines"), None, "{err}");
    assert_eq!(store_version(&server), 0);
}

#[test]
fn a_long_import_repeated_with_its_idempotency_key_gets_its_answer_back() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let body = numbered_lines(CHUNK + 10).join("\n");
    let headers = [("Idempotency-Key", "load-1")];
    let first = server.send("POST", "/_import", &headers, Some(&body));
    let answer = first.expect(200);
    assert_eq!(answer["chunks"], json!(2), "{answer}");
    let version = store_version(&server);
    let again = server.send("POST", "/_import", &headers, Some(&body));
    assert_eq!(again.expect(200), answer);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(store_version(&server), version, "nothing written again");
}

/// One `/_upstash` command's result (panics on an error).
#[track_caller]
fn redis(server: &Server, command: Value) -> Value {
    let resp = request(
        "POST",
        &server.url("/_upstash"),
        &[("content-type", "application/json")],
        Some(&command.to_string()),
    );
    let body = resp.json();
    assert!(body.get("error").is_none(), "{command}: {body}");
    body["result"].clone()
}

/// Members that are Redis strings of every shape: numbers as written (and not), JSON text,
/// a string literal with its quotes, empty, multibyte.
const TRICKY: [&str; 10] = [
    "1",
    "red",
    "1.50",
    "\"quoted\"",
    "",
    " 1",
    "{\"b\":1,\"a\":2}",
    "12345678901234567890123",
    "null",
    "h\u{e9}\n",
];

/// A hash `h` (with a TTL), a set `s` and two strings.
fn seed_collections(server: &Server) {
    let mut hset = vec![json!("HSET"), json!("h")];
    for (i, member) in TRICKY.iter().enumerate() {
        hset.extend([json!(format!("f{i}")), json!(member)]);
    }
    assert_eq!(redis(server, Value::Array(hset)), json!(10));
    assert_eq!(redis(server, json!(["EXPIRE", "h", 3600])), json!(1));
    let mut sadd = vec![json!("SADD"), json!("s")];
    sadd.extend(TRICKY.iter().map(|m| json!(m)));
    assert_eq!(redis(server, Value::Array(sadd)), json!(10));
    server
        .put("/a", r#"{"value": {"x": [1, 2.50]}}"#)
        .expect(201);
    assert_eq!(redis(server, json!(["SET", "str", "1.50"])), json!("OK"));
}

/// What a database holds of the keys of [`seed_collections`], compared across databases.
fn collections_of(server: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    for key in ["h", "s", "a", "str"] {
        out.push(redis(server, json!(["TYPE", key])));
        let mut got = server.get(&format!("/{key}")).expect(200);
        got.as_object_mut().expect("object").remove("version");
        got.as_object_mut().expect("object").remove("ttl_remaining");
        got.as_object_mut()
            .expect("object")
            .remove("ttl_remaining_ms");
        out.push(got);
    }
    out.push(redis(server, json!(["HGETALL", "h"])));
    let mut members: Vec<String> =
        serde_json::from_value(redis(server, json!(["SMEMBERS", "s"]))).expect("members");
    members.sort();
    out.push(json!(members));
    out.push(redis(server, json!(["GET", "str"])));
    out
}

/// An export line without its version (an import writes at the target's next version).
fn without_versions(ndjson: &str) -> Vec<Value> {
    lines_of(ndjson)
        .into_iter()
        .map(|mut line| {
            line.as_object_mut().expect("object").remove("version");
            line
        })
        .collect()
}

#[test]
fn hashes_and_sets_export_with_their_type_and_import_back_exactly() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    seed_collections(&server);
    let export = server.get("/_export");
    assert_eq!(export.status, 200, "{}", export.body);
    let lines = lines_of(&export.body);
    assert_eq!(keys_in(&export.body), ["a", "h", "s", "str"]);
    assert_eq!(lines[1]["type"], json!("hash"));
    assert_eq!(lines[1]["value"]["f0"], json!(1), "{}", lines[1]);
    assert_eq!(lines[1]["value"]["f1"], json!("red"));
    assert_eq!(lines[1]["value"]["f3"], json!("\"quoted\""));
    assert!(lines[1]["expires_at"].is_string(), "{}", lines[1]);
    assert_eq!(lines[2]["type"], json!("set"));
    assert_eq!(lines[2]["value"].as_array().map(Vec::len), Some(10));
    for string in [&lines[0], &lines[3]] {
        assert!(
            string.get("type").is_none(),
            "a string line as before: {string}"
        );
    }
    assert!(
        export
            .body
            .starts_with(r#"{"key":"a","value":{"x":[1,2.50]},"expires_at":null,"version":4}"#),
        "{}",
        export.body
    );

    let target_db = TestDatabase::new();
    let target = Server::start(&target_db);
    // A hash already at `h` is replaced, not merged into; a string at `s` too.
    redis(&target, json!(["HSET", "h", "old", "1"]));
    redis(&target, json!(["SET", "s", "x"]));
    let empty = r#"{"key":"e","type":"set","value":[]}"#;
    let body = format!("{}{empty}\n", export.body);
    let done = import(&target, "", &body).expect(200);
    assert_eq!(done["imported"], json!(4), "{done}");
    assert_eq!(collections_of(&target), collections_of(&server));
    assert_eq!(
        redis(&target, json!(["EXISTS", "e"])),
        json!(0),
        "an empty collection's line creates nothing"
    );
    assert_eq!(
        without_versions(&target.get("/_export").body),
        without_versions(&export.body),
        "exported again, the same lines"
    );

    let skipped = import(&target, "?mode=skip_existing", &export.body).expect(200);
    assert_eq!(skipped["skipped_existing"], json!(4), "{skipped}");
    import(&target, "?mode=fail_on_existing", &export.body).expect_error(409, "key_exists");
    // A new collection after the import takes an id of its own.
    assert_eq!(redis(&target, json!(["SADD", "s2", "m"])), json!(1));
    assert_eq!(collections_of(&target), collections_of(&server));

    // The commands carry the type too.
    let dumped = stdout_of_success(&command(&db.url, &["export"], ""));
    assert_eq!(without_versions(&dumped), without_versions(&export.body));
    let third = TestDatabase::new();
    let loaded = command(&third.url, &["import"], &dumped);
    assert!(loaded.status.success(), "{loaded:?}");
    let third = Server::start(&third);
    assert_eq!(collections_of(&third), collections_of(&server));
}

#[test]
fn copy_brings_collections_with_their_members_and_new_ids_do_not_collide() {
    let source = TestDatabase::sqlite();
    let expected = {
        let server = Server::start(&source);
        seed_collections(&server);
        redis(&server, json!(["SADD", "gone", "x"]));
        redis(&server, json!(["DEL", "gone"]));
        collections_of(&server)
    };
    let source_export = stdout_of_success(&command(&source.url, &["export"], ""));
    let target = TestDatabase::sqlite();
    let copied = command(&source.url, &["copy", "--to", &target.url], "");
    assert!(copied.status.success(), "{copied:?}");
    assert!(stderr_of(&copied).contains("copied 4 keys"), "{copied:?}");
    {
        let server = Server::start(&target);
        assert_eq!(collections_of(&server), expected);
        assert_eq!(server.get("/_export").body, source_export, "byte for byte");
        // New collections take ids above the copied ones: none shares members with them.
        for key in ["n1", "n2", "n3", "n4"] {
            assert_eq!(redis(&server, json!(["HSET", key, "new", "1"])), json!(1));
            assert_eq!(
                redis(&server, json!(["SADD", format!("{key}s"), "new"])),
                json!(1)
            );
        }
        assert_eq!(collections_of(&server), expected);
        // A collection at a key the copy will overwrite, and one it leaves alone.
        redis(&server, json!(["HSET", "h", "extra", "1"]));
    }
    let refused = command(&source.url, &["copy", "--to", &target.url], "");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let overwritten = command(
        &source.url,
        &["copy", "--to", &target.url, "--overwrite"],
        "",
    );
    assert!(overwritten.status.success(), "{overwritten:?}");
    let server = Server::start(&target);
    assert_eq!(collections_of(&server), expected, "replaced, not merged");
    assert_eq!(
        redis(&server, json!(["HGETALL", "n1"])),
        json!(["new", "1"]),
        "the target's other collections stay as they were"
    );
    assert_eq!(redis(&server, json!(["SMEMBERS", "n1s"])), json!(["new"]));
    redis(&server, json!(["SADD", "later", "m"]));
    assert_eq!(collections_of(&server), expected);
}
