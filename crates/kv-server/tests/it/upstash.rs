//! `/_upstash`: the Upstash Redis REST protocol over the same keys as the REST API, spoken
//! here as the SDKs send it (JSON arrays, `Upstash-Encoding: base64`, Bearer tokens).

use crate::common::{Resp, Server, TestDatabase};
use serde_json::{Value, json};

fn call(server: &Server, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    server.send(
        "POST",
        &format!("/_upstash{path}"),
        headers,
        Some(&body.to_string()),
    )
}

/// A server with three tokens: `admin-77` (read-write), `reader-88` (read-only) and `app-99`
/// (read-write, scoped to `app:`).
fn with_tokens(db: &TestDatabase) -> Server {
    Server::start_with_key_file(
        db,
        "rw:admin-77\nro:reader-88\nrw:app-99 prefix=app:\n",
        &[],
    )
}

/// A pipeline sent with `token` as its Bearer token.
fn pipeline_as(server: &Server, token: &str, body: &Value) -> Resp {
    call(
        server,
        "/pipeline",
        body,
        &[("Authorization", &format!("Bearer {token}"))],
    )
}

fn result(server: &Server, command: Value) -> Value {
    let resp = call(server, "", &command, &[]);
    assert_eq!(resp.status, 200, "{command}: {}", resp.body);
    let body = resp.json();
    assert!(body.get("error").is_none(), "{body}");
    body["result"].clone()
}

fn error(server: &Server, command: Value) -> String {
    let resp = call(server, "", &command, &[]);
    assert_eq!(resp.status, 400, "{command}: {}", resp.body);
    resp.json()["error"].as_str().expect("error").to_owned()
}

#[test]
fn string_commands_answer_as_redis_does() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(result(&server, json!(["PING"])), json!("PONG"));
    assert_eq!(result(&server, json!(["echo", "hi"])), json!("hi"));
    assert_eq!(result(&server, json!(["set", "k", "v"])), json!("OK"));
    assert_eq!(result(&server, json!(["get", "k"])), json!("v"));
    assert_eq!(result(&server, json!(["get", "missing"])), Value::Null);
    assert_eq!(result(&server, json!(["set", "k", "w", "NX"])), Value::Null);
    assert_eq!(
        result(&server, json!(["set", "k", "w", "xx", "get"])),
        json!("v")
    );
    assert_eq!(result(&server, json!(["setnx", "k", "x"])), json!(0));
    assert_eq!(result(&server, json!(["incr", "n"])), json!(1));
    assert_eq!(result(&server, json!(["incrby", "n", 41])), json!(42));
    assert_eq!(result(&server, json!(["decrby", "n", "2"])), json!(40));
    assert_eq!(
        error(&server, json!(["incr", "k"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        result(&server, json!(["mset", "a", "1", "b", "2"])),
        json!("OK")
    );
    assert_eq!(
        result(&server, json!(["mget", "a", "b", "nope"])),
        json!(["1", "2", null])
    );
    assert_eq!(
        result(&server, json!(["exists", "a", "b", "a", "nope"])),
        json!(3)
    );
    assert_eq!(result(&server, json!(["ttl", "a"])), json!(-1));
    assert_eq!(result(&server, json!(["ttl", "nope"])), json!(-2));
    assert_eq!(result(&server, json!(["expire", "a", 100])), json!(1));
    assert_eq!(result(&server, json!(["ttl", "a"])), json!(100));
    let pttl = result(&server, json!(["pttl", "a"]))
        .as_i64()
        .expect("pttl");
    assert!((99_000..=100_000).contains(&pttl), "{pttl}");
    assert_eq!(result(&server, json!(["persist", "a"])), json!(1));
    assert_eq!(result(&server, json!(["persist", "a"])), json!(0));
    assert_eq!(
        result(&server, json!(["set", "t", "v", "px", 60000])),
        json!("OK")
    );
    assert!(
        result(&server, json!(["ttl", "t"]))
            .as_i64()
            .is_some_and(|t| t == 60)
    );
    assert_eq!(result(&server, json!(["type", "t"])), json!("string"));
    assert_eq!(result(&server, json!(["type", "nope"])), json!("none"));
    assert_eq!(result(&server, json!(["getdel", "t"])), json!("v"));
    assert_eq!(result(&server, json!(["del", "a", "b", "nope"])), json!(2));
    assert_eq!(result(&server, json!(["dbsize"])), json!(2), "k and n");
    assert_eq!(
        error(&server, json!(["xadd", "h", "f", "v"])),
        "ERR unknown command 'xadd', with args beginning with: 'h' 'f' 'v' "
    );
    assert_eq!(
        error(&server, json!(["set", "k"])),
        "ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        error(&server, json!(["set", "k", "v", "bogus"])),
        "ERR syntax error"
    );
    assert!(error(&server, json!("not an array")).starts_with("ERR"));
    // Trailing slash, any Content-Type.
    let resp = server.send(
        "POST",
        "/_upstash/",
        &[("Content-Type", "text/plain")],
        Some(r#"["get","k"]"#),
    );
    assert_eq!(resp.json(), json!({"result": "w"}));
    assert!(resp.header("upstash-sync-token").is_some());
}

#[test]
fn values_are_the_same_keys_as_the_rest_api_sees() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    // What @upstash/redis sends for set("obj", {a: 1}) and set("n", 42).
    result(&server, json!(["set", "obj", "{\"a\":1}"]));
    result(&server, json!(["set", "n", 42]));
    result(&server, json!(["set", "text", "hello"]));
    assert_eq!(server.get("/obj").expect(200)["value"], json!({"a": 1}));
    assert_eq!(server.get("/n").expect(200)["value"], json!(42));
    assert_eq!(server.get("/text").expect(200)["value"], json!("hello"));
    server
        .put("/rest", r#"{"value": {"list": [1, 2.50]}}"#)
        .expect(201);
    server.put("/s", r#"{"value": "plain"}"#).expect(201);
    assert_eq!(
        result(&server, json!(["get", "rest"])),
        json!("{\"list\":[1,2.50]}")
    );
    assert_eq!(result(&server, json!(["get", "s"])), json!("plain"));
}

#[test]
fn base64_pipelines_and_multi_exec() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let b64 = [("Upstash-Encoding", "base64")];
    let resp = call(
        &server,
        "/pipeline",
        &json!([
            ["set", "k", "héllo"],
            ["get", "k"],
            ["incr", "k"],
            ["ping"],
            ["mget", "k", "x"]
        ]),
        &b64,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json(),
        json!([
            {"result": "OK"},
            {"result": "aMOpbGxv"},
            {"error": "ERR value is not an integer or out of range"},
            {"result": "UE9ORw=="},
            {"result": ["aMOpbGxv", null]},
        ])
    );
    let resp = call(
        &server,
        "/multi-exec/",
        &json!([["set", "a", 1], ["incr", "a"], ["get", "a"]]),
        &[],
    );
    assert_eq!(
        resp.json(),
        json!([{"result": "OK"}, {"result": 2}, {"result": "2"}])
    );
    // The sync token is the store version (docs/API.md, "Read replicas"): the same while
    // nothing is written, higher after a write.
    let token = |resp: &Resp| -> i64 {
        let token = resp.header("upstash-sync-token").expect("sync token");
        assert_eq!(Some(token), resp.header("kv-version"));
        token.parse().expect("a version")
    };
    let first = call(&server, "/pipeline", &json!([["ping"]]), &[]);
    let second = call(&server, "/pipeline", &json!([["ping"]]), &[]);
    assert_eq!(token(&first), token(&second));
    let wrote = call(&server, "/pipeline", &json!([["incr", "a"]]), &[]);
    assert!(token(&wrote) > token(&second));
    let bad = call(&server, "/pipeline", &json!({"not": "a list"}), &[]);
    assert_eq!(bad.status, 400);
}

#[test]
fn read_only_and_scoped_tokens_run_only_what_they_may() {
    let db = TestDatabase::new();
    let server = with_tokens(&db);
    let as_token = |token: &str, body: Value| pipeline_as(&server, token, &body);
    assert_eq!(call(&server, "", &json!(["ping"]), &[]).status, 401);
    as_token(
        "admin-77",
        json!([["set", "app:x", "1"], ["set", "other", "2"]]),
    );
    let reader = as_token(
        "reader-88",
        json!([["get", "other"], ["set", "other", "3"]]),
    );
    assert_eq!(
        reader.json(),
        json!([{"result": "2"}, {"error": "NOPERM this user has no permissions to run the 'set' command"}])
    );
    let app = as_token(
        "app-99",
        json!([["get", "app:x"], ["get", "other"], ["dbsize"]]),
    );
    let items = app.json();
    assert_eq!(items[0], json!({"result": "1"}));
    assert!(
        items[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("NOPERM")),
        "{items}"
    );
    assert!(
        items[2]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("NOPERM")),
        "{items}"
    );
}

#[test]
fn byte_commands_work_on_the_string_as_read_and_keep_utf8_whole() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(result(&server, json!(["append", "s", "Hello"])), json!(5));
    assert_eq!(result(&server, json!(["append", "s", " World"])), json!(11));
    assert_eq!(
        result(&server, json!(["getrange", "s", 0, 4])),
        json!("Hello")
    );
    assert_eq!(
        result(&server, json!(["getrange", "s", -5, -1])),
        json!("World")
    );
    assert_eq!(result(&server, json!(["getrange", "s", 5, 2])), json!(""));
    assert_eq!(
        result(&server, json!(["getrange", "nope", 0, -1])),
        json!("")
    );
    assert_eq!(
        result(&server, json!(["setrange", "s", 6, "Redis"])),
        json!(11)
    );
    assert_eq!(result(&server, json!(["get", "s"])), json!("Hello Redis"));
    // Past the end: zero bytes in between, as in Redis.
    assert_eq!(result(&server, json!(["setrange", "z", 2, "x"])), json!(3));
    assert_eq!(result(&server, json!(["get", "z"])), json!("\u{0}\u{0}x"));
    // An empty value on a missing key creates nothing.
    assert_eq!(
        result(&server, json!(["setrange", "none", 5, ""])),
        json!(0)
    );
    assert_eq!(result(&server, json!(["exists", "none"])), json!(0));
    // Bytes, not characters: "é" is two.
    result(&server, json!(["set", "u", "héllo"]));
    assert_eq!(result(&server, json!(["strlen", "u"])), json!(6));
    assert_eq!(result(&server, json!(["getrange", "u", 0, 2])), json!("hé"));
    assert_eq!(
        error(&server, json!(["getrange", "u", 0, 1])),
        "ERR the range would split a UTF-8 character (kvstore values are UTF-8 text)"
    );
    assert_eq!(
        error(&server, json!(["setrange", "u", 2, "x"])),
        "ERR the offset would split a UTF-8 character (kvstore values are UTF-8 text)"
    );
    assert_eq!(
        result(&server, json!(["get", "u"])),
        json!("héllo"),
        "unchanged"
    );
    assert_eq!(
        error(&server, json!(["setrange", "u", -1, "x"])),
        "ERR offset is out of range"
    );
    assert_eq!(
        error(&server, json!(["getrange", "u", "a", 1])),
        "ERR value is not an integer or out of range"
    );
    assert!(
        error(&server, json!(["setrange", "u", 1_000_000_000, "x"]))
            .starts_with("ERR string exceeds maximum allowed size")
    );
    // APPEND and SETRANGE keep the TTL.
    result(&server, json!(["set", "t", "a", "ex", 100]));
    result(&server, json!(["append", "t", "b"]));
    result(&server, json!(["setrange", "t", 0, "c"]));
    assert_eq!(result(&server, json!(["get", "t"])), json!("cb"));
    assert_eq!(result(&server, json!(["ttl", "t"])), json!(100));
    // A number appended to stays a number for the REST API when it still is one.
    result(&server, json!(["set", "n", 42]));
    result(&server, json!(["append", "n", "1"]));
    assert_eq!(server.get("/n").expect(200)["value"], json!(421));
}

#[test]
fn getex_incrbyfloat_and_msetnx() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    result(&server, json!(["set", "k", "v"]));
    assert_eq!(result(&server, json!(["getex", "k"])), json!("v"));
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(-1));
    assert_eq!(
        result(&server, json!(["getex", "k", "EX", 100])),
        json!("v")
    );
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(100));
    assert_eq!(
        result(&server, json!(["getex", "k", "px", 50_000])),
        json!("v")
    );
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(50));
    let in_a_minute = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 60) as i64;
    assert_eq!(
        result(&server, json!(["getex", "k", "exat", in_a_minute])),
        json!("v")
    );
    let ttl = result(&server, json!(["ttl", "k"])).as_i64().expect("ttl");
    assert!((58..=60).contains(&ttl), "{ttl}");
    assert_eq!(
        result(
            &server,
            json!(["getex", "k", "pxat", in_a_minute * 1000 + 30_000])
        ),
        json!("v")
    );
    assert_eq!(
        result(&server, json!(["getex", "k", "persist"])),
        json!("v")
    );
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(-1));
    assert_eq!(
        result(&server, json!(["getex", "nope", "ex", 5])),
        Value::Null
    );
    assert_eq!(
        error(&server, json!(["getex", "k", "ex", 0])),
        "ERR invalid expire time in 'getex' command"
    );
    assert_eq!(
        error(&server, json!(["getex", "k", "ex", 5, "persist"])),
        "ERR syntax error"
    );
    // A time in the past deletes the key.
    assert_eq!(
        result(&server, json!(["getex", "k", "pxat", 1])),
        json!("v")
    );
    assert_eq!(result(&server, json!(["exists", "k"])), json!(0));

    assert_eq!(
        result(&server, json!(["incrbyfloat", "f", "0.1"])),
        json!("0.1")
    );
    assert_eq!(
        result(&server, json!(["incrbyfloat", "f", 0.2])),
        json!("0.3")
    );
    assert_eq!(server.get("/f").expect(200)["value"], json!(0.3));
    result(&server, json!(["set", "g", "10.50", "ex", 100]));
    assert_eq!(
        result(&server, json!(["incrbyfloat", "g", "0.1"])),
        json!("10.6")
    );
    assert_eq!(
        result(&server, json!(["incrbyfloat", "g", -5])),
        json!("5.6")
    );
    assert_eq!(result(&server, json!(["ttl", "g"])), json!(100), "kept");
    result(&server, json!(["set", "e", "5.0e3"]));
    assert_eq!(
        result(&server, json!(["incrbyfloat", "e", "2.0e2"])),
        json!("5200")
    );
    result(&server, json!(["set", "w", "word"]));
    assert_eq!(
        error(&server, json!(["incrbyfloat", "w", 1])),
        "ERR value is not a valid float"
    );
    assert_eq!(
        error(&server, json!(["incrbyfloat", "f", "abc"])),
        "ERR value is not a valid float"
    );
    assert_eq!(
        error(&server, json!(["incrbyfloat", "f", "inf"])),
        "ERR increment would produce NaN or Infinity"
    );
    result(&server, json!(["set", "big", "1.7e308"]));
    assert_eq!(
        error(&server, json!(["incrbyfloat", "big", "1.7e308"])),
        "ERR increment would produce NaN or Infinity"
    );
    assert_eq!(
        result(&server, json!(["get", "big"])),
        json!("1.7e308"),
        "unchanged"
    );

    assert_eq!(
        result(&server, json!(["msetnx", "m1", "a", "m2", "b"])),
        json!(1)
    );
    assert_eq!(
        result(&server, json!(["msetnx", "m3", "c", "m1", "x"])),
        json!(0)
    );
    assert_eq!(
        result(&server, json!(["exists", "m3"])),
        json!(0),
        "all or nothing"
    );
    assert_eq!(result(&server, json!(["get", "m1"])), json!("a"));
    assert_eq!(
        error(&server, json!(["msetnx", "m4", "a", "m5"])),
        "ERR wrong number of arguments for 'msetnx' command"
    );
    // A key kvstore refuses fails the whole command: nothing before it is written.
    assert!(error(&server, json!(["mset", "m6", "a", "", "b"])).starts_with("ERR "));
    assert_eq!(result(&server, json!(["exists", "m6"])), json!(0));
}

#[test]
fn generic_key_commands() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    result(&server, json!(["set", "a", "1", "ex", 100]));
    result(&server, json!(["set", "b", "2"]));
    assert_eq!(
        result(&server, json!(["touch", "a", "b", "nope"])),
        json!(2)
    );
    // RENAME moves the value and its TTL.
    assert_eq!(result(&server, json!(["rename", "a", "c"])), json!("OK"));
    assert_eq!(result(&server, json!(["exists", "a"])), json!(0));
    assert_eq!(result(&server, json!(["get", "c"])), json!("1"));
    assert_eq!(result(&server, json!(["ttl", "c"])), json!(100));
    assert_eq!(
        error(&server, json!(["rename", "nope", "x"])),
        "ERR no such key"
    );
    assert_eq!(result(&server, json!(["rename", "c", "c"])), json!("OK"));
    assert_eq!(result(&server, json!(["renamenx", "c", "b"])), json!(0));
    assert_eq!(result(&server, json!(["renamenx", "c", "c"])), json!(0));
    assert_eq!(result(&server, json!(["renamenx", "c", "d"])), json!(1));
    assert_eq!(result(&server, json!(["get", "d"])), json!("1"));
    assert_eq!(
        error(&server, json!(["renamenx", "nope", "x"])),
        "ERR no such key"
    );
    // COPY keeps the TTL; REPLACE; same source and destination is 0.
    assert_eq!(result(&server, json!(["copy", "d", "e"])), json!(1));
    assert_eq!(result(&server, json!(["ttl", "e"])), json!(100));
    assert_eq!(result(&server, json!(["copy", "d", "b"])), json!(0));
    assert_eq!(result(&server, json!(["get", "b"])), json!("2"));
    assert_eq!(
        result(&server, json!(["copy", "d", "b", "REPLACE"])),
        json!(1)
    );
    assert_eq!(result(&server, json!(["get", "b"])), json!("1"));
    assert_eq!(result(&server, json!(["copy", "d", "d"])), json!(0));
    assert_eq!(result(&server, json!(["copy", "nope", "f"])), json!(0));
    assert_eq!(
        result(&server, json!(["copy", "d", "f", "db", 0])),
        json!(1)
    );
    assert_eq!(
        error(&server, json!(["copy", "d", "g", "db", 1])),
        "ERR DB index is out of range"
    );
    // TIME: two strings, seconds and microseconds.
    let time = result(&server, json!(["time"]));
    let secs: u64 = time[0].as_str().expect("secs").parse().expect("number");
    let micros: u64 = time[1].as_str().expect("micros").parse().expect("number");
    assert!(secs > 1_700_000_000 && micros < 1_000_000, "{time}");
}

#[test]
fn expire_options_as_in_redis() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    result(&server, json!(["set", "k", "v"]));
    // No expiry: XX and GT do nothing (no expiry is infinite), NX and LT set one.
    assert_eq!(result(&server, json!(["expire", "k", 100, "xx"])), json!(0));
    assert_eq!(result(&server, json!(["expire", "k", 100, "GT"])), json!(0));
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(-1));
    assert_eq!(result(&server, json!(["expire", "k", 100, "lt"])), json!(1));
    assert_eq!(result(&server, json!(["persist", "k"])), json!(1));
    assert_eq!(result(&server, json!(["expire", "k", 100, "nx"])), json!(1));
    assert_eq!(result(&server, json!(["expire", "k", 200, "nx"])), json!(0));
    assert_eq!(result(&server, json!(["expire", "k", 50, "gt"])), json!(0));
    assert_eq!(result(&server, json!(["expire", "k", 200, "gt"])), json!(1));
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(200));
    assert_eq!(
        result(&server, json!(["pexpire", "k", 300_000, "lt"])),
        json!(0)
    );
    assert_eq!(
        result(&server, json!(["pexpire", "k", 150_000, "lt", "xx"])),
        json!(1)
    );
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(150));
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1000) as i64;
    assert_eq!(
        result(&server, json!(["expireat", "k", later, "gt"])),
        json!(1)
    );
    assert_eq!(
        result(
            &server,
            json!(["pexpireat", "k", later * 1000 + 5000, "lt"])
        ),
        json!(0)
    );
    assert_eq!(
        result(&server, json!(["expire", "nope", 10, "nx"])),
        json!(0)
    );
    assert_eq!(
        error(&server, json!(["expire", "k", 10, "nx", "xx"])),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        error(&server, json!(["expire", "k", 10, "nx", "gt"])),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        error(&server, json!(["expire", "k", 10, "gt", "lt"])),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(
        error(&server, json!(["expire", "k", 10, "sometimes"])),
        "ERR Unsupported option sometimes"
    );
    // A time in the past deletes the key when the condition holds.
    assert_eq!(result(&server, json!(["expire", "k", -1, "lt"])), json!(1));
    assert_eq!(result(&server, json!(["exists", "k"])), json!(0));
}

#[test]
fn keys_scan_and_randomkey() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(result(&server, json!(["randomkey"])), Value::Null);
    assert_eq!(result(&server, json!(["scan", 0])), json!(["0", []]));
    let mut all: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
    all.extend(["other:1".to_owned(), "h+/=llo".to_owned()]);
    let mut mset = vec![json!("mset")];
    for key in &all {
        mset.extend([json!(key), json!("v")]);
    }
    result(&server, Value::Array(mset));
    all.sort();
    let mut keys: Vec<String> =
        serde_json::from_value(result(&server, json!(["keys", "*"]))).expect("keys");
    keys.sort();
    assert_eq!(keys, all);
    assert_eq!(
        result(&server, json!(["keys", "user:1?"])),
        json!((10..20).map(|i| format!("user:{i}")).collect::<Vec<_>>())
    );
    assert_eq!(
        result(&server, json!(["keys", "h[+]*"])),
        json!(["h+/=llo"])
    );
    assert_eq!(result(&server, json!(["keys", "nothing*"])), json!([]));
    // SCAN pages: the cursor is a string, "0" when done; every key once.
    let mut seen = Vec::new();
    let mut cursor = json!("0");
    let mut pages = 0;
    loop {
        let page = result(&server, json!(["scan", cursor, "count", 10]));
        let keys = page[1].as_array().expect("keys").clone();
        assert!(keys.len() <= 10, "{page}");
        seen.extend(
            keys.into_iter()
                .map(|k| k.as_str().expect("key").to_owned()),
        );
        pages += 1;
        cursor = page[0].clone();
        assert!(cursor.is_string(), "{page}");
        if cursor == json!("0") {
            break;
        }
        assert!(pages < 10, "the listing ends");
    }
    assert_eq!(seen, all);
    assert_eq!(
        pages, 3,
        "27 keys in pages of 10; the last says it is the last"
    );
    // MATCH with a literal prefix, TYPE, a small keyspace in one page.
    assert_eq!(
        result(
            &server,
            json!(["scan", "0", "MATCH", "user:0*", "COUNT", 100])
        ),
        json!([
            "0",
            (0..10).map(|i| format!("user:0{i}")).collect::<Vec<_>>()
        ])
    );
    assert_eq!(
        result(
            &server,
            json!(["scan", "0", "match", "other:*", "type", "string"])
        ),
        json!(["0", ["other:1"]])
    );
    assert_eq!(
        result(
            &server,
            json!(["scan", "0", "type", "hash", "count", "1000"])
        ),
        json!(["0", []])
    );
    assert_eq!(error(&server, json!(["scan", "zz"])), "ERR invalid cursor");
    assert_eq!(
        error(&server, json!(["scan", 0, "count", 0])),
        "ERR syntax error"
    );
    assert_eq!(
        error(&server, json!(["scan", 0, "count"])),
        "ERR syntax error"
    );
    assert_eq!(
        error(&server, json!(["scan", 0, "bogus", 1])),
        "ERR syntax error"
    );
    let random = result(&server, json!(["randomkey"]));
    assert!(
        all.iter().any(|k| json!(k) == random),
        "{random} is one of the keys"
    );
    assert_eq!(result(&server, json!(["dbsize"])), json!(27));
}

#[test]
fn scoped_keys_list_only_their_prefixes_and_read_only_keys_only_read() {
    let db = TestDatabase::new();
    let server = with_tokens(&db);
    let as_token = |token: &str, body: Value| {
        let resp = pipeline_as(&server, token, &body);
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.json()
    };
    as_token(
        "admin-77",
        json!([["mset", "app:1", "a", "app:2", "b", "zzz", "c", "aaa", "d"]]),
    );
    let app = as_token(
        "app-99",
        json!([
            ["keys", "*"],
            ["scan", "0", "count", 100],
            ["randomkey"],
            ["scan", "0", "match", "app:2*"],
            ["keys", "z*"],
            ["rename", "app:1", "elsewhere"],
            ["copy", "app:1", "app:3"],
            ["msetnx", "app:4", "x", "zzz", "y"]
        ]),
    );
    assert_eq!(app[0], json!({"result": ["app:1", "app:2"]}));
    assert_eq!(app[1], json!({"result": ["0", ["app:1", "app:2"]]}));
    assert!(
        app[2] == json!({"result": "app:1"}) || app[2] == json!({"result": "app:2"}),
        "{app}"
    );
    assert_eq!(app[3], json!({"result": ["0", ["app:2"]]}));
    assert_eq!(app[4], json!({"result": []}));
    let noperm = json!({"error": "NOPERM this user has no permissions to access one of the keys used as arguments"});
    assert_eq!(app[5], noperm);
    assert_eq!(app[6], json!({"result": 1}));
    assert_eq!(app[7], noperm);
    let reader = as_token(
        "reader-88",
        json!([
            ["scan", 0, "count", 100],
            ["getrange", "zzz", 0, 0],
            ["touch", "zzz"],
            ["time"],
            ["incrbyfloat", "zzz", 1],
            ["getex", "zzz"],
            ["append", "zzz", "x"]
        ]),
    );
    assert_eq!(
        reader[0],
        json!({"result": ["0", ["aaa", "app:1", "app:2", "app:3", "zzz"]]})
    );
    assert_eq!(reader[1], json!({"result": "c"}));
    assert_eq!(reader[2], json!({"result": 1}));
    assert!(reader[3]["result"].is_array());
    for (item, name) in [(4, "incrbyfloat"), (5, "getex"), (6, "append")] {
        assert_eq!(
            reader[item],
            json!({"error": format!("NOPERM this user has no permissions to run the '{name}' command")})
        );
    }
}

#[test]
fn reads_see_the_writes_acknowledged_before_them() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for i in 0..50 {
        result(&server, json!(["set", "k", i]));
        // A read-only request runs on a read connection, not through the writer.
        assert_eq!(result(&server, json!(["get", "k"])), json!(i.to_string()));
        let resp = call(
            &server,
            "/pipeline",
            &json!([["get", "k"], ["ttl", "k"]]),
            &[],
        );
        assert_eq!(
            resp.json(),
            json!([{"result": i.to_string()}, {"result": -1}])
        );
    }
    // Reads and writes mixed in a pipeline run in order.
    let resp = call(
        &server,
        "/pipeline",
        &json!([
            ["get", "k"],
            ["append", "k", "!"],
            ["get", "k"],
            ["keys", "k*"]
        ]),
        &[],
    );
    assert_eq!(
        resp.json(),
        json!([{"result": "49"}, {"result": 3}, {"result": "49!"}, {"result": ["k"]}])
    );
}

#[test]
fn cors_lets_a_page_on_another_origin_use_the_endpoint() {
    let db = TestDatabase::new();
    let origin = "https://app.example.com";
    let server = Server::start_with(&db.url, &["--cors-origin", origin, "--api-key", "k1"], &[]);
    // The SDKs' headers, asked for by the browser's preflight (which carries no key).
    let preflight = server.send(
        "OPTIONS",
        "/_upstash/pipeline",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type,upstash-encoding,upstash-sync-token",
            ),
        ],
        None,
    );
    assert!(preflight.status < 300, "{}", preflight.status);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(origin)
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in ["authorization", "upstash-encoding", "upstash-sync-token"] {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }
    let resp = server.send(
        "POST",
        "/_upstash",
        &[("Origin", origin), ("Authorization", "Bearer k1")],
        Some(r#"["set","k","v"]"#),
    );
    assert_eq!(resp.json(), json!({"result": "OK"}));
    assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
    assert!(
        resp.header("access-control-expose-headers")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("upstash-sync-token")
    );
}

#[test]
fn extreme_arguments_are_error_replies_and_write_nothing() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    result(&server, json!(["set", "k", "héllo"]));
    let max = i64::MAX.to_string();
    let min = i64::MIN.to_string();
    assert_eq!(
        result(&server, json!(["getrange", "k", min, max])),
        json!("héllo")
    );
    for command in [
        json!(["setrange", "k", max, "x"]),
        json!(["expire", "k", max]),
        json!(["pexpireat", "k", max]),
        json!(["getex", "k", "ex", max]),
        json!(["set", "k", "v", "ex", max]),
        json!(["incrbyfloat", "k", "1e999"]),
        json!(["incrby", "k", "99999999999999999999"]),
        json!(["scan", "1"]),
        json!(["scan", "1+97"]),
        json!(["scan", 0, "count", "99999999999999999999"]),
        json!(["keys", "*".repeat(2000)]),
        json!(["copy", "k", "j", "db"]),
        json!(["rename", "k", ""]),
        json!(["msetnx", "j", "1", "", "2"]),
        json!(["getrange", "k", 0]),
        json!(["time", "extra"]),
    ] {
        let resp = call(&server, "", &command, &[]);
        assert_eq!(resp.status, 400, "{command}: {}", resp.body);
        assert!(
            resp.json()["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("ERR ")),
            "{command}: {}",
            resp.body
        );
    }
    assert_eq!(result(&server, json!(["get", "k"])), json!("héllo"));
    assert_eq!(result(&server, json!(["ttl", "k"])), json!(-1));
    assert_eq!(result(&server, json!(["dbsize"])), json!(1));
}

#[test]
fn arguments_and_counters_are_read_as_redis_7_reads_them() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    result(&server, json!(["set", "keep", "1"]));
    // FLUSHDB takes ASYNC or SYNC, nothing else (and then flushes nothing).
    assert_eq!(
        error(&server, json!(["flushdb", "foo"])),
        "ERR syntax error"
    );
    assert_eq!(
        error(&server, json!(["flushall", "sync", "async"])),
        "ERR syntax error"
    );
    assert_eq!(result(&server, json!(["dbsize"])), json!(1));
    // SETEX and PSETEX name themselves in their errors.
    assert_eq!(
        error(&server, json!(["setex", "k", 0, "v"])),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        error(&server, json!(["psetex", "k", -1, "v"])),
        "ERR invalid expire time in 'psetex' command"
    );
    // Integers as string2ll reads them: no "+", no leading zeros.
    for command in [
        json!(["incrby", "n", "+5"]),
        json!(["incrby", "n", "007"]),
        json!(["expire", "keep", "+10"]),
        json!(["getrange", "keep", "+0", "-1"]),
        json!(["set", "n", "1", "ex", "010"]),
    ] {
        assert_eq!(
            error(&server, command.clone()),
            "ERR value is not an integer or out of range",
            "{command}"
        );
    }
    assert_eq!(result(&server, json!(["exists", "n"])), json!(0));
    assert_eq!(result(&server, json!(["ttl", "keep"])), json!(-1));

    // A string that reads as an integer counts, whoever stored it: the REST API's "5".
    server
        .put("/js", r#"{"value": "5", "ttl": 100}"#)
        .expect(201);
    assert_eq!(result(&server, json!(["incr", "js"])), json!(6));
    assert_eq!(result(&server, json!(["decrby", "js", 10])), json!(-4));
    let rest = server.get("/js").expect(200);
    assert_eq!(rest["value"], json!(-4), "stored as the number it reads as");
    assert!(
        rest["ttl_remaining"].as_i64().is_some_and(|t| t > 0),
        "{rest}"
    );
    server.put("/word", r#"{"value": "five"}"#).expect(201);
    assert_eq!(
        error(&server, json!(["incr", "word"])),
        "ERR value is not an integer or out of range"
    );
    // Overflow: of a stored value that is no 64-bit integer, of the sum, of DECRBY's negation.
    result(&server, json!(["set", "huge", "9223372036854775808"]));
    assert_eq!(
        error(&server, json!(["incr", "huge"])),
        "ERR value is not an integer or out of range"
    );
    result(&server, json!(["set", "max", i64::MAX.to_string()]));
    assert_eq!(
        error(&server, json!(["incr", "max"])),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(
        error(&server, json!(["decrby", "max", i64::MIN.to_string()])),
        "ERR decrement would overflow"
    );
    assert_eq!(
        result(&server, json!(["get", "max"])),
        json!(i64::MAX.to_string())
    );
    // INCRBYFLOAT reads the stored value first; an infinite increment is a float whose sum
    // is refused; NaN is no float.
    assert_eq!(
        error(&server, json!(["incrbyfloat", "word", "inf"])),
        "ERR value is not a valid float"
    );
    assert_eq!(
        error(&server, json!(["incrbyfloat", "keep", "-Infinity"])),
        "ERR increment would produce NaN or Infinity"
    );
    for bad in ["nan", "--inf"] {
        assert_eq!(
            error(&server, json!(["incrbyfloat", "keep", bad])),
            "ERR value is not a valid float"
        );
    }
    // An error reply is one line.
    assert_eq!(
        error(&server, json!(["foo", "a\nb"])),
        "ERR unknown command 'foo', with args beginning with: 'a b' "
    );
    // INCRBYFLOAT prints 17 decimals at most, as Redis does.
    assert_eq!(
        result(&server, json!(["incrbyfloat", "tiny", "1e-20"])),
        json!("0")
    );
}
