//! POST /_tx: all or nothing, read-your-writes, one version, errors naming the op.

use crate::common::{Server, TestDatabase, store_version};
use serde_json::{Value, json};

fn tx(server: &Server, ops: Value) -> crate::common::Resp {
    server.post("/_tx", &json!({ "ops": ops }).to_string())
}

#[test]
fn ops_see_each_other_and_share_one_version() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server.post("/old", r#"{"value": "x"}"#).expect(201);
    let body = tx(
        &server,
        json!([
            {"op": "check", "key": "acct", "version": null},
            {"op": "set", "key": "acct", "value": {"balance": 10}, "ttl": 100},
            {"op": "get", "key": "acct"},
            {"op": "incr", "key": "n", "by": 5},
            {"op": "incr", "key": "n"},
            {"op": "delete", "key": "old"},
            {"op": "delete", "key": "never"},
            {"op": "get", "key": "old"},
        ]),
    )
    .expect(200);
    assert_eq!(body["status"], "ok");
    let v = body["version"].as_i64().expect("version");
    let r = body["results"].as_array().expect("results");
    assert_eq!(r.len(), 8);
    assert_eq!(r[0], json!({"key": "acct", "ok": true}));
    assert_eq!(r[1]["action"], "created");
    assert_eq!(r[1]["version"], v);
    assert_eq!(r[2]["value"], json!({"balance": 10}));
    assert_eq!(r[2]["ttl_remaining"], 100);
    assert_eq!(r[2]["version"], v);
    assert_eq!(
        (r[3]["value"].clone(), r[4]["value"].clone()),
        (json!(5), json!(6))
    );
    assert_eq!(r[5]["deleted"], true);
    assert_eq!(r[6]["deleted"], false);
    assert_eq!(r[7], Value::Null);
    // Every write of the transaction carries the same new version.
    assert_eq!(server.get("/acct").expect(200)["version"], v);
    assert_eq!(server.get("/n").expect(200)["version"], v);
    assert_eq!(store_version(&server), v);
    // A check against that version now holds.
    tx(
        &server,
        json!([{"op": "check", "key": "acct", "version": v}]),
    )
    .expect(200);
}

#[test]
fn a_failed_check_or_precondition_applies_nothing() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let v = server.post("/a", r#"{"value": 1}"#).expect(201)["version"]
        .as_i64()
        .expect("v");
    let err = tx(
        &server,
        json!([
            {"op": "set", "key": "b", "value": 2},
            {"op": "check", "key": "a", "version": v + 1},
        ]),
    )
    .expect_error(412, "precondition_failed");
    assert_eq!(
        (err["op"].clone(), err["key"].clone()),
        (json!(1), json!("a"))
    );
    server.get("/b").expect_error(404, "not_found");

    let err = tx(
        &server,
        json!([
            {"op": "delete", "key": "a"},
            {"op": "set", "key": "a", "value": 3, "xx": true},
        ]),
    )
    .expect_error(412, "precondition_failed");
    assert_eq!(err["op"], 1);
    assert_eq!(server.get("/a").expect(200)["value"], 1);

    server.post("/s", r#"{"value": "str"}"#).expect(201);
    let err = tx(
        &server,
        json!([{"op": "incr", "key": "c"}, {"op": "incr", "key": "s"}]),
    )
    .expect_error(409, "not_an_integer");
    assert_eq!(
        (err["op"].clone(), err["key"].clone()),
        (json!(1), json!("s"))
    );
    server.get("/c").expect_error(404, "not_found");
    let version = server.get("/_stats").expect(200)["version"].as_i64();
    if db.is_postgres() {
        // The version sequence has gaps: a transaction that rolled back used its number.
        assert!(version >= Some(v + 1), "version {version:?}");
    } else {
        assert_eq!(version, Some(v + 1));
    }
}

#[test]
fn bad_transactions_are_400_with_the_op() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for (body, code) in [
        ("", "invalid_body"),
        ("[]", "invalid_body"),
        (r#"{"ops": {}}"#, "invalid_body"),
        (r#"{"ops": [], "x": 1}"#, "unknown_field"),
        ("{", "invalid_json"),
    ] {
        server.post("/_tx", body).expect_error(400, code);
    }
    for (op, code) in [
        (json!({"op": "fly", "key": "a"}), "invalid_op"),
        (json!({"key": "a"}), "invalid_op"),
        (json!({"op": "get"}), "invalid_op"),
        (json!({"op": "set", "key": "a"}), "missing_value"),
        (
            json!({"op": "set", "key": "a", "value": 1, "ttl": 0}),
            "invalid_ttl",
        ),
        (json!({"op": "check", "key": "a"}), "invalid_op"),
        (
            json!({"op": "get", "key": "a", "extra": 1}),
            "unknown_field",
        ),
        (json!(5), "invalid_op"),
    ] {
        let err = tx(&server, json!([{"op": "get", "key": "fine"}, op])).expect_error(400, code);
        assert_eq!(err["op"], 1, "{op}");
    }
    let err = tx(
        &server,
        json!([{"op": "set", "key": "_reserved", "value": 1}]),
    )
    .expect_error(400, "reserved_key");
    assert_eq!(
        (err["op"].clone(), err["key"].clone()),
        (json!(0), json!("_reserved"))
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"op": "get", "key": format!("k{i}")}))
        .collect();
    tx(&server, json!(too_many)).expect_error(400, "too_many_ops");
    let max: Vec<Value> = (0..1000)
        .map(|i| json!({"op": "set", "key": format!("k{i}"), "value": i}))
        .collect();
    assert_eq!(
        tx(&server, json!(max)).expect(200)["results"]
            .as_array()
            .map(Vec::len),
        Some(1000)
    );
    assert_eq!(tx(&server, json!([])).expect(200)["results"], json!([]));
}

#[test]
fn expired_keys_are_absent_inside_transactions() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    server
        .post("/e", r#"{"value": 41, "ttl_ms": 10}"#)
        .expect(201);
    std::thread::sleep(std::time::Duration::from_millis(30));
    let body = tx(
        &server,
        json!([
            {"op": "get", "key": "e"},
            {"op": "check", "key": "e", "version": null},
            {"op": "incr", "key": "e"},
        ]),
    )
    .expect(200);
    assert_eq!(body["results"][0], Value::Null);
    assert_eq!(body["results"][2]["value"], 1);
}
