//! `/_upstash`: the Upstash Redis REST protocol over the same keys as the REST API, spoken
//! here as the SDKs send it (JSON arrays, `Upstash-Encoding: base64`, Bearer tokens).

mod common;

use common::{Resp, Server, TestDatabase};
use serde_json::{Value, json};

fn call(server: &Server, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    server.send(
        "POST",
        &format!("/_upstash{path}"),
        headers,
        Some(&body.to_string()),
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
        error(&server, json!(["hset", "h", "f", "v"])),
        "ERR unknown command 'hset', with args beginning with: 'h' 'f' 'v'"
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
    let first = call(&server, "/pipeline", &json!([["ping"]]), &[]);
    let second = call(&server, "/pipeline", &json!([["ping"]]), &[]);
    assert_ne!(
        first.header("upstash-sync-token"),
        second.header("upstash-sync-token")
    );
    let bad = call(&server, "/pipeline", &json!({"not": "a list"}), &[]);
    assert_eq!(bad.status, 400);
}

#[test]
fn read_only_and_scoped_tokens_run_only_what_they_may() {
    let db = TestDatabase::new();
    let file = db.dir().join("keys.txt");
    std::fs::write(&file, "rw:admin-77\nro:reader-88\nrw:app-99 prefix=app:\n").expect("keys");
    let server = Server::start_with(
        &db.url,
        &["--api-keys-file", &file.display().to_string()],
        &[],
    );
    let as_token = |token: &str, body: Value| {
        call(
            &server,
            "/pipeline",
            &body,
            &[("Authorization", &format!("Bearer {token}"))],
        )
    };
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
