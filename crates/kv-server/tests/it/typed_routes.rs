//! The REST routes on collections: `/<key>/fields/<field>`, `/<key>/members/<member>`,
//! `/<key>/items…` and `/<key>/range`, with the same auth, scopes, If-Match, Idempotency-Key
//! and error rules as every write, and the same data as `/_upstash` sees.

use crate::common::{Server, TestDatabase, redis_ok as upstash};
use serde_json::{Value, json};

#[test]
fn a_hash_s_fields_are_resources_under_its_key() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let created = server
        .put("/user:1/fields/profile", r#"{"value": {"name": "ada"}}"#)
        .expect(201);
    assert_eq!(created["type"], "hash");
    assert_eq!(created["length"], 1);
    assert_eq!(created["created"], true);
    let updated = server
        .put("/user:1/fields/profile", r#"{"value": {"name": "grace"}}"#)
        .expect(200);
    assert_eq!(updated["created"], false);
    assert!(updated["version"].as_i64() > created["version"].as_i64());
    let field = server.get("/user:1/fields/profile").expect(200);
    assert_eq!(
        field,
        json!({"key": "user:1", "field": "profile", "value": {"name": "grace"}})
    );
    // The same data through the Redis protocol.
    assert_eq!(
        upstash(&server, json!(["HGET", "user:1", "profile"])),
        r#"{"name":"grace"}"#
    );
    // A field name with a slash, percent-encoded.
    server
        .put("/user:1/fields/a%2Fb", r#"{"value": 7}"#)
        .expect(201);
    assert_eq!(upstash(&server, json!(["HGET", "user:1", "a/b"])), "7");
    server
        .get("/user:1/fields/nope")
        .expect_error(404, "not_found");
    server.get("/nokey/fields/f").expect_error(404, "not_found");
    server
        .put("/user:1/fields/x", r#"{"val": 1}"#)
        .expect_error(400, "invalid_body");
    server.delete("/user:1/fields/a%2Fb").expect(200);
    let gone = server.delete("/user:1/fields/profile").expect(200);
    assert_eq!(gone["length"], 0);
    assert_eq!(gone["version"], Value::Null);
    server.get("/user:1").expect_error(404, "not_found");
    server
        .delete("/user:1/fields/profile")
        .expect_error(404, "not_found");
    // Another type under the key: 409 wrong_type, nothing written.
    server.post("/str", r#"{"value": "v"}"#).expect(201);
    server
        .put("/str/fields/f", r#"{"value": 1}"#)
        .expect_error(409, "wrong_type");
    assert_eq!(server.get("/str").expect(200)["value"], "v");
}

#[test]
fn set_and_sorted_set_members_are_resources_under_their_key() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(server.put("/tags/red", "").status, 404, "not a route");
    server.put("/tags/members/red", "").expect(201);
    assert_eq!(
        server.put("/tags/members/red", "{}").expect(200)["created"],
        false
    );
    server.get("/tags/members/red").expect(200);
    server
        .get("/tags/members/blue")
        .expect_error(404, "not_found");
    server
        .put("/tags/members/blue", r#"{"score": 1}"#)
        .expect_error(409, "wrong_type");
    assert_eq!(
        upstash(&server, json!(["SMEMBERS", "tags"])),
        json!(["red"])
    );

    for (member, score) in [("ada", 3.5), ("grace", 10.0), ("alan", -1.0)] {
        server
            .put(
                &format!("/board/members/{member}"),
                &json!({ "score": score }).to_string(),
            )
            .expect(201);
    }
    server
        .put("/board/members/edsger", r#"{"score": "-inf"}"#)
        .expect(201);
    let ada = server.get("/board/members/ada").expect(200);
    assert_eq!(
        ada,
        json!({"key": "board", "member": "ada", "score": 3.5, "rank": 2})
    );
    let moved = server
        .put("/board/members/ada", r#"{"score": 20}"#)
        .expect(200);
    assert_eq!(moved["created"], false);
    assert_eq!(server.get("/board/members/ada").expect(200)["rank"], 3);
    server
        .put("/board/members/x", r#"{"score": "high"}"#)
        .expect_error(400, "invalid_body");
    let range = server.get("/board/range").expect(200);
    assert_eq!(
        range["items"],
        json!([["edsger", "-inf"], ["alan", -1], ["grace", 10], ["ada", 20]])
    );
    let top = server
        .get("/board/range?by=score&min=(0&rev=true&count=1")
        .expect(200);
    assert_eq!(top["items"], json!([["ada", 20]]));
    let ranks = server.get("/board/range?start=1&stop=2").expect(200);
    assert_eq!(ranks["items"], json!([["alan", -1], ["grace", 10]]));
    server
        .get("/board/range?by=score&min=x")
        .expect_error(400, "invalid_argument");
    server
        .get("/board/range?by=height")
        .expect_error(400, "invalid_parameter");
    server
        .get("/board/range?colour=red")
        .expect_error(400, "invalid_parameter");
    server.delete("/board/members/ada").expect(200);
    server
        .delete("/board/members/ada")
        .expect_error(404, "not_found");
    assert_eq!(upstash(&server, json!(["ZCARD", "board"])), 3);
    server.get("/tags/range").expect_error(409, "wrong_type");
}

#[test]
fn a_list_s_items_push_pop_index_and_range() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let pushed = server
        .post("/jobs/items", r#"{"values": [{"id": 1}, "two"]}"#)
        .expect(200);
    assert_eq!(
        (pushed["type"].clone(), pushed["length"].clone()),
        (json!("list"), json!(2))
    );
    server
        .post("/jobs/items", r#"{"values": ["zero"], "at": "head"}"#)
        .expect(200);
    assert_eq!(
        server.get("/jobs/range").expect(200)["items"],
        json!(["zero", {"id": 1}, "two"])
    );
    assert_eq!(server.get("/jobs/items/-1").expect(200)["value"], "two");
    server.get("/jobs/items/9").expect_error(404, "not_found");
    server
        .get("/jobs/items/x")
        .expect_error(400, "invalid_index");
    server.put("/jobs/items/1", r#"{"value": 42}"#).expect(200);
    server
        .put("/jobs/items/9", r#"{"value": 1}"#)
        .expect_error(400, "invalid_argument");
    let popped = server.delete("/jobs/items/head").expect(200);
    assert_eq!(
        (popped["value"].clone(), popped["length"].clone()),
        (json!("zero"), json!(2))
    );
    assert_eq!(
        server.delete("/jobs/items/tail").expect(200)["value"],
        "two"
    );
    server
        .delete("/jobs/items/middle")
        .expect_error(400, "invalid_index");
    assert_eq!(
        server.get("/jobs/range?start=0&stop=0").expect(200)["items"],
        json!([42])
    );
    let last = server.delete("/jobs/items/tail").expect(200);
    assert_eq!(last["length"], 0);
    server
        .delete("/jobs/items/tail")
        .expect_error(404, "not_found");
    server
        .post("/jobs/items", r#"{"values": []}"#)
        .expect_error(400, "invalid_body");
    server
        .get("/jobs/range?by=score")
        .expect_error(404, "not_found");
}

#[test]
fn typed_writes_honour_if_match_idempotency_keys_and_api_keys() {
    let db = TestDatabase::new();
    let server =
        Server::start_with_key_file(&db, "rw:admin-1\nro:reader-1\nrw:app-1 prefix=app:\n", &[]);
    let as_key =
        |method: &str, path: &str, key: &str, extra: &[(&str, &str)], body: Option<&str>| {
            let mut headers = vec![("x-api-key", key)];
            headers.extend_from_slice(extra);
            server.send(method, path, &headers, body)
        };
    let first = as_key(
        "PUT",
        "/app:h/fields/f",
        "admin-1",
        &[],
        Some(r#"{"value": 1}"#),
    )
    .expect(201);
    let etag = format!("\"{}\"", first["version"]);
    as_key(
        "PUT",
        "/app:h/fields/f",
        "admin-1",
        &[("if-match", "\"999\"")],
        Some(r#"{"value": 2}"#),
    )
    .expect_error(412, "precondition_failed");
    as_key(
        "PUT",
        "/app:h/fields/f",
        "admin-1",
        &[("if-match", &etag)],
        Some(r#"{"value": 3}"#),
    )
    .expect(200);
    // An Idempotency-Key sent twice pushes once; the second answer is the first one replayed.
    let push = |key: &str| {
        as_key(
            "POST",
            "/app:q/items",
            "admin-1",
            &[("idempotency-key", key)],
            Some(r#"{"values": ["job"]}"#),
        )
    };
    let once = push("push-1");
    let again = push("push-1");
    assert_eq!(once.json(), again.json());
    assert!(
        again.header("idempotent-replayed").is_some(),
        "{:?}",
        again.headers
    );
    let list = as_key("GET", "/app:q", "admin-1", &[], None).expect(200);
    assert_eq!(list["length"], 1);
    // A read-only key reads and may not write; a scoped key reaches only its prefixes.
    as_key("GET", "/app:h/fields/f", "reader-1", &[], None).expect(200);
    as_key(
        "PUT",
        "/app:h/fields/g",
        "reader-1",
        &[],
        Some(r#"{"value": 1}"#),
    )
    .expect_error(403, "forbidden");
    as_key(
        "PUT",
        "/app:h/fields/g",
        "app-1",
        &[],
        Some(r#"{"value": 1}"#),
    )
    .expect(201);
    as_key("PUT", "/other/members/m", "app-1", &[], Some("{}")).expect_error(403, "forbidden");
    as_key("GET", "/other/range", "app-1", &[], None).expect_error(403, "forbidden");
}
