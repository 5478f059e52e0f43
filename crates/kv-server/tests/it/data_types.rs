//! Hashes, sets, lists and sorted sets over `/_upstash` (Redis 7's replies and errors), WRONGTYPE between types,
//! the generic commands on collections (TYPE, EXISTS, DEL, EXPIRE, RENAME, COPY, SCAN TYPE),
//! `GET /<key>` of a collection, and no member left behind once a collection's key is gone.

use std::time::Duration;

use crate::common::{Server, TestDatabase, assert_no_orphan_members, wait_until};
use serde_json::{Value, json};

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

use crate::common::{redis_err as err, redis_ok as ok};

#[test]
fn hashes_answer_as_redis_does() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(ok(&server, json!(["HSET", "h", "a", "1", "b", "2"])), 2);
    assert_eq!(ok(&server, json!(["HSET", "h", "a", "10", "c", "3"])), 1);
    assert_eq!(ok(&server, json!(["HGET", "h", "a"])), "10");
    assert_eq!(ok(&server, json!(["HGET", "h", "zz"])), Value::Null);
    assert_eq!(ok(&server, json!(["HGET", "nohash", "a"])), Value::Null);
    assert_eq!(
        ok(&server, json!(["HMGET", "h", "a", "zz", "c"])),
        json!(["10", null, "3"])
    );
    assert_eq!(
        ok(&server, json!(["HGETALL", "h"])),
        json!(["a", "10", "b", "2", "c", "3"])
    );
    assert_eq!(ok(&server, json!(["HKEYS", "h"])), json!(["a", "b", "c"]));
    assert_eq!(ok(&server, json!(["HVALS", "h"])), json!(["10", "2", "3"]));
    assert_eq!(ok(&server, json!(["HLEN", "h"])), 3);
    assert_eq!(ok(&server, json!(["HEXISTS", "h", "b"])), 1);
    assert_eq!(ok(&server, json!(["HSTRLEN", "h", "a"])), 2);
    assert_eq!(ok(&server, json!(["HSETNX", "h", "a", "x"])), 0);
    assert_eq!(ok(&server, json!(["HSETNX", "h", "d", "4"])), 1);
    assert_eq!(ok(&server, json!(["HINCRBY", "h", "a", "5"])), 15);
    assert_eq!(ok(&server, json!(["HINCRBY", "h", "new", "-3"])), -3);
    assert_eq!(ok(&server, json!(["HINCRBYFLOAT", "h", "f", "1.5"])), "1.5");
    assert_eq!(
        err(&server, json!(["HINCRBY", "h", "f", "1"])),
        "ERR hash value is not an integer"
    );
    assert_eq!(
        err(&server, json!(["HINCRBY", "h", "a", "x"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&server, json!(["HINCRBYFLOAT", "h", "a", "x"])),
        "ERR value is not a valid float"
    );
    assert_eq!(ok(&server, json!(["HMSET", "h", "m", "1"])), "OK");
    assert_eq!(ok(&server, json!(["HDEL", "h", "m", "new", "f", "zz"])), 3);
    assert_eq!(ok(&server, json!(["HLEN", "h"])), 4);
    assert_eq!(
        err(&server, json!(["HSET", "h", "a"])),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(
        err(&server, json!(["HGET", "h"])),
        "ERR wrong number of arguments for 'hget' command"
    );
    let scan = ok(&server, json!(["HSCAN", "h", "0", "COUNT", "2"]));
    assert_eq!(scan[1], json!(["a", "15", "b", "2"]));
    let next = scan[0].as_str().expect("cursor").to_owned();
    let scan = ok(
        &server,
        json!(["HSCAN", "h", next, "COUNT", "10", "NOVALUES"]),
    );
    assert_eq!(scan, json!(["0", ["c", "d"]]));
    let pick = ok(&server, json!(["HRANDFIELD", "h", "-5", "WITHVALUES"]));
    assert_eq!(pick.as_array().map(Vec::len), Some(10));
    assert_eq!(
        ok(&server, json!(["HRANDFIELD", "h", "10"]))
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    // Emptied, the hash is gone.
    assert_eq!(ok(&server, json!(["HDEL", "h", "a", "b", "c", "d"])), 4);
    assert_eq!(ok(&server, json!(["EXISTS", "h"])), 0);
    assert_eq!(ok(&server, json!(["TYPE", "h"])), "none");
}

#[test]
fn sets_answer_as_redis_does() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(ok(&server, json!(["SADD", "s", "b", "a", "c", "a"])), 3);
    assert_eq!(ok(&server, json!(["SADD", "s", "a", "d"])), 1);
    assert_eq!(ok(&server, json!(["SCARD", "s"])), 4);
    assert_eq!(
        ok(&server, json!(["SMEMBERS", "s"])),
        json!(["a", "b", "c", "d"])
    );
    assert_eq!(ok(&server, json!(["SISMEMBER", "s", "b"])), 1);
    assert_eq!(
        ok(&server, json!(["SMISMEMBER", "s", "b", "x"])),
        json!([1, 0])
    );
    assert_eq!(ok(&server, json!(["SREM", "s", "d", "x"])), 1);
    ok(&server, json!(["SADD", "t", "b", "c", "e"]));
    assert_eq!(ok(&server, json!(["SINTER", "s", "t"])), json!(["b", "c"]));
    assert_eq!(
        ok(&server, json!(["SUNION", "s", "t"])),
        json!(["a", "b", "c", "e"])
    );
    assert_eq!(ok(&server, json!(["SDIFF", "s", "t"])), json!(["a"]));
    assert_eq!(
        ok(&server, json!(["SDIFF", "s", "missing"])),
        json!(["a", "b", "c"])
    );
    assert_eq!(ok(&server, json!(["SINTERCARD", "2", "s", "t"])), 2);
    assert_eq!(
        ok(&server, json!(["SINTERCARD", "2", "s", "t", "LIMIT", "1"])),
        1
    );
    assert_eq!(
        err(&server, json!(["SINTERCARD", "0", "s"])),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(ok(&server, json!(["SINTERSTORE", "dest", "s", "t"])), 2);
    assert_eq!(ok(&server, json!(["SMEMBERS", "dest"])), json!(["b", "c"]));
    assert_eq!(ok(&server, json!(["SUNIONSTORE", "dest", "s", "t"])), 4);
    assert_eq!(
        ok(&server, json!(["SDIFFSTORE", "dest", "missing", "t"])),
        0
    );
    assert_eq!(
        ok(&server, json!(["EXISTS", "dest"])),
        0,
        "an empty result leaves no key"
    );
    assert_eq!(ok(&server, json!(["SMOVE", "s", "t", "a"])), 1);
    assert_eq!(ok(&server, json!(["SMOVE", "s", "t", "zz"])), 0);
    assert_eq!(ok(&server, json!(["SISMEMBER", "t", "a"])), 1);
    let popped = ok(&server, json!(["SPOP", "t", "2"]));
    assert_eq!(popped.as_array().map(Vec::len), Some(2));
    assert_eq!(ok(&server, json!(["SCARD", "t"])), 2);
    assert_eq!(
        ok(&server, json!(["SRANDMEMBER", "t", "-4"]))
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert!(ok(&server, json!(["SRANDMEMBER", "t"])).is_string());
    assert_eq!(
        ok(&server, json!(["SSCAN", "s", "0", "MATCH", "b*"])),
        json!(["0", ["b"]])
    );
    assert_eq!(
        err(&server, json!(["SPOP", "t", "-1"])),
        "ERR value is out of range, must be positive"
    );
}

#[test]
fn a_command_of_one_type_on_a_key_of_another_is_wrongtype() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    ok(&server, json!(["SET", "str", "v"]));
    ok(&server, json!(["HSET", "h", "f", "v"]));
    ok(&server, json!(["SADD", "s", "m"]));
    for command in [
        json!(["HGET", "str", "f"]),
        json!(["HSET", "s", "f", "v"]),
        json!(["SADD", "h", "m"]),
        json!(["SMEMBERS", "str"]),
        json!(["GET", "h"]),
        json!(["APPEND", "s", "x"]),
        json!(["INCR", "h"]),
        json!(["INCRBYFLOAT", "s", "1"]),
        json!(["STRLEN", "h"]),
        json!(["GETRANGE", "s", "0", "1"]),
        json!(["SINTER", "s", "h"]),
    ] {
        assert_eq!(err(&server, command.clone()), WRONGTYPE, "{command}");
    }
    // MGET answers nil for a key of another type; SET replaces whatever the key held.
    assert_eq!(ok(&server, json!(["MGET", "str", "h"])), json!(["v", null]));
    assert_eq!(ok(&server, json!(["TYPE", "h"])), "hash");
    assert_eq!(ok(&server, json!(["TYPE", "s"])), "set");
    assert_eq!(ok(&server, json!(["TYPE", "str"])), "string");
    assert_eq!(ok(&server, json!(["SET", "h", "now a string"])), "OK");
    assert_eq!(ok(&server, json!(["GET", "h"])), "now a string");
    // REST: incr of a set is 409 wrong_type.
    server.post("/s/incr", "").expect_error(409, "wrong_type");
}

#[test]
fn generic_commands_work_on_collections() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    ok(&server, json!(["HSET", "h", "a", "1", "b", "2"]));
    ok(&server, json!(["SADD", "s", "x", "y"]));
    ok(&server, json!(["SET", "str", "v"]));
    assert_eq!(ok(&server, json!(["EXISTS", "h", "s", "str", "no"])), 3);
    assert_eq!(ok(&server, json!(["EXPIRE", "h", "100"])), 1);
    assert_eq!(ok(&server, json!(["TTL", "h"])), 100);
    assert_eq!(ok(&server, json!(["PERSIST", "h"])), 1);
    assert_eq!(ok(&server, json!(["RENAME", "h", "h2"])), "OK");
    assert_eq!(
        ok(&server, json!(["HGETALL", "h2"])),
        json!(["a", "1", "b", "2"])
    );
    assert_eq!(ok(&server, json!(["EXISTS", "h"])), 0);
    assert_eq!(ok(&server, json!(["COPY", "h2", "h3"])), 1);
    ok(&server, json!(["HSET", "h3", "c", "3"]));
    assert_eq!(ok(&server, json!(["HLEN", "h2"])), 2, "a copy is its own");
    assert_eq!(ok(&server, json!(["HLEN", "h3"])), 3);
    let scan = ok(
        &server,
        json!(["SCAN", "0", "TYPE", "hash", "COUNT", "100"]),
    );
    assert_eq!(scan[1], json!(["h2", "h3"]));
    let scan = ok(&server, json!(["SCAN", "0", "COUNT", "100", "WITHTYPE"]));
    assert_eq!(
        scan[1],
        json!(["h2", "hash", "h3", "hash", "s", "set", "str", "string"])
    );
    assert_eq!(ok(&server, json!(["DEL", "h2", "s"])), 2);
    assert_eq!(ok(&server, json!(["DBSIZE"])), 2);
    // GET /<key> of a collection: its members.
    let body = server.get("/h3").expect(200);
    assert_eq!(body["type"], "hash");
    assert_eq!(body["length"], 3);
    assert_eq!(body["value"], json!({"a": 1, "b": 2, "c": 3}));
    assert_eq!(body["cursor"], Value::Null);
    ok(&server, json!(["SADD", "tags", "red", "{\"a\":1}"]));
    let body = server.get("/tags").expect(200);
    assert_eq!(
        body["value"],
        json!(["red", {"a": 1}]),
        "byte order: r before {{"
    );
    assert_eq!(server.get("/_stats").expect(200)["keys"], 3);
}

#[test]
fn a_collection_whose_key_is_gone_leaves_no_member_behind() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let members: Vec<Value> = (0..3000).map(|i| json!(format!("m{i}"))).collect();
    let mut sadd = vec![json!("SADD"), json!("big")];
    sadd.extend(members);
    assert_eq!(ok(&server, Value::Array(sadd)), 3000);
    ok(&server, json!(["HSET", "h", "f", "v"]));
    ok(&server, json!(["SADD", "exp", "m"]));
    ok(&server, json!(["PEXPIRE", "exp", "50"]));
    ok(&server, json!(["SADD", "over", "m"]));
    // Deleted, overwritten, expired, flushed: every way a key goes.
    ok(&server, json!(["DEL", "big"]));
    ok(&server, json!(["SET", "over", "string now"]));
    server.delete("/h").expect(200);
    wait_until(Duration::from_secs(5), "the expired set removed", || {
        ok(&server, json!(["EXISTS", "exp"])) == 0 && server.get("/_stats").expect(200)["keys"] == 1
    });
    ok(&server, json!(["SADD", "late", "m"]));
    ok(&server, json!(["FLUSHDB"]));
    // The server removes the members in batches; then none is left in any table.
    assert_no_orphan_members(&db);
}

#[test]
fn a_collection_s_writes_reach_watchers_with_their_type_and_command() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let since = crate::common::store_version(&server);
    ok(&server, json!(["HSET", "session:1", "user", "ada"]));
    ok(&server, json!(["SADD", "tags", "red"]));
    ok(&server, json!(["DEL", "tags"]));
    let body = server
        .get(&format!("/_watch?prefix=&since={since}&wait=1"))
        .expect(200);
    let events: Vec<(Value, Value, Value, Value)> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["op"].clone(),
                e["key"].clone(),
                e["type"].clone(),
                e["command"].clone(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (
                json!("set"),
                json!("session:1"),
                json!("hash"),
                json!("hset")
            ),
            (json!("set"), json!("tags"), json!("set"), json!("sadd")),
            (json!("delete"), json!("tags"), Value::Null, Value::Null),
        ]
    );
    assert!(body["events"][0].get("value").is_none(), "no value: {body}");
}

#[test]
fn listings_and_transactions_name_a_collection_s_type() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    ok(&server, json!(["HSET", "h", "a", "1", "b", "2"]));
    ok(&server, json!(["SET", "s", "v"]));
    let page = server.get("/_keys?values=true").expect(200);
    assert_eq!(page["items"][0]["key"], "h");
    assert_eq!(page["items"][0]["type"], "hash");
    assert_eq!(page["items"][0]["length"], 2);
    assert_eq!(page["items"][0]["value"], Value::Null);
    assert_eq!(
        page["items"][1]["type"], "string",
        "every item names its type"
    );
    assert!(page["items"][1].get("length").is_none());
    // GET of a string key: as before, plus its type.
    let body = server.get("/s").expect(200);
    assert_eq!(
        (body["value"].clone(), body["type"].clone()),
        (json!("v"), json!("string"))
    );
    let tx = server
        .post("/_tx", r#"{"ops":[{"op":"get","key":"h"}]}"#)
        .expect(200);
    assert_eq!(tx["results"][0]["type"], "hash");
}

#[test]
fn keys_list_by_type() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    ok(&server, json!(["HSET", "a:h", "f", "v"]));
    ok(&server, json!(["SADD", "a:s", "m"]));
    ok(&server, json!(["SET", "a:str", "v"]));
    let keys = |query: &str| server.get(&format!("/_keys?{query}")).expect(200)["keys"].clone();
    assert_eq!(keys("type=hash"), json!(["a:h"]));
    assert_eq!(keys("type=set&prefix=a:"), json!(["a:s"]));
    assert_eq!(keys("type=string"), json!(["a:str"]));
    assert_eq!(keys("type=zset"), json!([]));
    ok(&server, json!(["ZADD", "a:z", "1", "m"]));
    assert_eq!(keys("type=zset"), json!(["a:z"]));
    server
        .get("/_keys?type=tree")
        .expect_error(400, "invalid_parameter");
}

#[test]
fn lists_keep_their_order_through_get_export_and_import() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(ok(&server, json!(["RPUSH", "q", "b", "c", "{\"a\":1}"])), 3);
    assert_eq!(ok(&server, json!(["LPUSH", "q", "a"])), 4);
    assert_eq!(
        ok(&server, json!(["LRANGE", "q", "0", "-1"])),
        json!(["a", "b", "c", "{\"a\":1}"])
    );
    assert_eq!(ok(&server, json!(["TYPE", "q"])), "list");
    let body = server.get("/q").expect(200);
    assert_eq!(body["type"], "list");
    assert_eq!(body["length"], 4);
    assert_eq!(body["value"], json!(["a", "b", "c", {"a": 1}]));
    // Export, then import into a fresh database: the same list, in order.
    let export = server.get("/_export").body;
    assert!(
        export.contains(r#""type":"list","value":["a","b","c",{"a":1}]"#),
        "{export}"
    );
    let other = TestDatabase::new();
    let target = Server::start(&other);
    target.post("/_import", &export).expect(200);
    assert_eq!(
        ok(&target, json!(["LRANGE", "q", "0", "-1"])),
        json!(["a", "b", "c", "{\"a\":1}"])
    );
    // A queue: pushes at one end, pops at the other, a thousand times over.
    for i in 0..1000 {
        ok(&server, json!(["RPUSH", "jobs", format!("job{i}")]));
    }
    for i in 0..1000 {
        assert_eq!(ok(&server, json!(["LPOP", "jobs"])), format!("job{i}"));
    }
    assert_eq!(ok(&server, json!(["EXISTS", "jobs"])), 0);
}

/// A sorted set of `n` members `m0000`… scored `i % 100`, in its order (score, member).
fn scored(n: usize) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = (0..n)
        .map(|i| (format!("m{i:04}"), (i % 100) as i64))
        .collect();
    all.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    all
}

#[test]
fn a_large_sorted_set_ranks_ranges_pages_and_travels_exactly() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let n = 5000;
    let mut zadd = vec![json!("ZADD"), json!("board")];
    for i in 0..n {
        zadd.push(json!((i % 100).to_string()));
        zadd.push(json!(format!("m{i:04}")));
    }
    assert_eq!(ok(&server, Value::Array(zadd)), n);
    let order = scored(n);
    // Single adds past the first block's size split blocks; ranks stay exact.
    for i in n..n + 300 {
        ok(&server, json!(["ZADD", "board", "50", format!("m{i:04}")]));
    }
    let mut order_after: Vec<(String, i64)> = order.clone();
    order_after.extend((n..n + 300).map(|i| (format!("m{i:04}"), 50)));
    order_after.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let len = order_after.len();
    for rank in [0, 1, 1023, 1024, 2048, len / 2, len - 1] {
        let (member, score) = &order_after[rank];
        assert_eq!(
            ok(&server, json!(["ZRANK", "board", member])),
            rank,
            "{member}"
        );
        assert_eq!(
            ok(&server, json!(["ZREVRANK", "board", member])),
            len - 1 - rank
        );
        assert_eq!(
            ok(&server, json!(["ZSCORE", "board", member])),
            score.to_string()
        );
    }
    let mid = len / 2;
    let expected: Vec<Value> = order_after[mid..mid + 10]
        .iter()
        .map(|(m, _)| json!(m))
        .collect();
    assert_eq!(
        ok(
            &server,
            json!(["ZRANGE", "board", mid.to_string(), (mid + 9).to_string()])
        ),
        Value::Array(expected)
    );
    let in_range = order_after
        .iter()
        .filter(|(_, s)| (10..=20).contains(s))
        .count();
    assert_eq!(
        ok(&server, json!(["ZCOUNT", "board", "10", "20"])),
        in_range
    );
    // GET pages by rank: 1000 [member, score] pairs and a cursor.
    let page = server.get("/board").expect(200);
    assert_eq!(page["type"], "zset");
    assert_eq!(page["length"], len);
    assert_eq!(
        page["value"][0],
        json!([order_after[0].0, order_after[0].1])
    );
    assert_eq!(page["value"].as_array().map(Vec::len), Some(1000));
    let cursor = page["cursor"].as_str().expect("a cursor").to_owned();
    let next = server.get(&format!("/board?cursor={cursor}")).expect(200);
    assert_eq!(next["value"][0][0], json!(order_after[1000].0));
    // Removing a range across blocks, then ranks again.
    let removed = ok(&server, json!(["ZREMRANGEBYSCORE", "board", "10", "60"]));
    let left: Vec<&(String, i64)> = order_after
        .iter()
        .filter(|(_, s)| !(10..=60).contains(s))
        .collect();
    assert_eq!(removed, len - left.len());
    let last = left.last().expect("some left");
    assert_eq!(
        ok(&server, json!(["ZRANK", "board", last.0])),
        left.len() - 1
    );
    assert_eq!(ok(&server, json!(["ZCARD", "board"])), left.len());
    // Export and import into a fresh database; COPY; the same set.
    let all = ok(&server, json!(["ZRANGE", "board", "0", "-1", "WITHSCORES"]));
    let other = TestDatabase::new();
    let target = Server::start(&other);
    target
        .post("/_import", &server.get("/_export").body)
        .expect(200);
    assert_eq!(
        ok(&target, json!(["ZRANGE", "board", "0", "-1", "WITHSCORES"])),
        all
    );
    assert_eq!(
        ok(&target, json!(["ZRANK", "board", last.0])),
        left.len() - 1
    );
    assert_eq!(ok(&server, json!(["COPY", "board", "copy"])), 1);
    assert_eq!(
        ok(&server, json!(["ZRANK", "copy", last.0])),
        left.len() - 1
    );
    // ZUNIONSTORE of the two: a new set, its blocks written at once.
    assert_eq!(
        ok(&server, json!(["ZUNIONSTORE", "sum", "2", "board", "copy"])),
        left.len()
    );
    assert_eq!(
        ok(&server, json!(["ZSCORE", "sum", last.0])),
        (last.1 * 2).to_string()
    );
    assert_eq!(ok(&server, json!(["ZRANK", "sum", last.0])), left.len() - 1);
    // Gone: no member row and no block left behind.
    ok(&server, json!(["DEL", "board", "copy", "sum"]));
    assert_no_orphan_members(&db);
}

#[test]
fn sorted_set_errors_leave_nothing_half_applied() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    ok(&server, json!(["ZADD", "z", "1", "a"]));
    assert_eq!(
        err(&server, json!(["ZADD", "z", "2", "b", "x", "c"])),
        "ERR value is not a valid float"
    );
    assert_eq!(ok(&server, json!(["ZCARD", "z"])), 1);
    ok(&server, json!(["ZADD", "z", "inf", "i"]));
    assert_eq!(
        err(&server, json!(["ZINCRBY", "z", "-inf", "i"])),
        "ERR resulting score is not a number (NaN)"
    );
    assert_eq!(ok(&server, json!(["ZSCORE", "z", "i"])), "inf");
    ok(&server, json!(["SET", "s", "v"]));
    assert_eq!(err(&server, json!(["ZADD", "s", "1", "a"])), WRONGTYPE);
    assert_eq!(
        err(&server, json!(["ZUNIONSTORE", "z", "2", "z", "s"])),
        WRONGTYPE
    );
    assert_eq!(ok(&server, json!(["ZCARD", "z"])), 2);
    assert_eq!(
        err(&server, json!(["ZADD", "z", "1", "a\u{0}b"])),
        "ERR kvstore's hash fields and values and set members cannot hold a zero byte"
    );
    // GET shows infinite scores as strings.
    let body = server.get("/z").expect(200);
    assert_eq!(body["value"], json!([["a", 1], ["i", "inf"]]));
}
