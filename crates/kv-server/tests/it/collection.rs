//! GET /_keys (prefix, match, limit, cursor, values), DELETE /_keys, GET /_stats.

use std::collections::BTreeSet;

use crate::common::{Server, TestDatabase, keys_of};
use serde_json::{Value, json};

/// Pages through `/_keys?{query}` to the end, returning every key seen.
fn scan_all(server: &Server, query: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let url = match &cursor {
            Some(c) => format!("/_keys?{query}&cursor={c}"),
            None => format!("/_keys?{query}"),
        };
        let page = server.get(&url).expect(200);
        all.extend(keys_of(&page));
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
    panic!("paging did not end");
}

#[test]
fn lists_live_keys_in_byte_order_with_prefix_match_and_values() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for key in [
        "user:2",
        "user:10",
        "user:1",
        "session:a",
        "Zebra",
        "ключ",
        "user:x",
    ] {
        server
            .post(
                &format!("/{}", urlencode(key)),
                &json!({"value": key}).to_string(),
            )
            .expect(201);
    }
    server
        .post("/user:gone", r#"{"value": 1, "ttl_ms": 10}"#)
        .expect(201);
    std::thread::sleep(std::time::Duration::from_millis(30));

    let all = server.get("/_keys").expect(200);
    assert_eq!(
        keys_of(&all),
        [
            "Zebra",
            "session:a",
            "user:1",
            "user:10",
            "user:2",
            "user:x",
            "ключ"
        ]
    );
    assert_eq!(all["cursor"], Value::Null);
    assert_eq!(
        keys_of(&server.get("/_keys?prefix=user:").expect(200)),
        ["user:1", "user:10", "user:2", "user:x"]
    );
    assert_eq!(
        keys_of(&server.get("/_keys?match=user:%3F").expect(200)),
        ["user:1", "user:2", "user:x"]
    );
    assert_eq!(
        keys_of(&server.get("/_keys?match=user:%5B0-9%5D*").expect(200)),
        ["user:1", "user:10", "user:2"]
    );
    assert_eq!(
        keys_of(&server.get("/_keys?match=*a*").expect(200)),
        ["Zebra", "session:a"]
    );
    assert_eq!(
        keys_of(&server.get("/_keys?prefix=nothing").expect(200)),
        Vec::<String>::new()
    );

    let items = server.get("/_keys?prefix=user:1&values=true").expect(200);
    assert_eq!(items["cursor"], Value::Null);
    let items = items["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["key"], "user:1");
    assert_eq!(items[0]["value"], "user:1");
    assert_eq!(items[0]["ttl_remaining"], -1);
    assert!(items[0]["version"].as_i64().is_some());
    assert_eq!(
        server.get("/_keys?values=1&limit=1").expect(200)["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn paging_with_limit_and_cursor_is_complete() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let expected: Vec<String> = (0..57).map(|i| format!("k{i:03}")).collect();
    let ops: Vec<Value> = expected
        .iter()
        .map(|k| json!({"op": "set", "key": k, "value": 1}))
        .collect();
    server
        .post("/_tx", &json!({ "ops": ops }).to_string())
        .expect(200);
    let first = server.get("/_keys?limit=10").expect(200);
    assert_eq!(keys_of(&first).len(), 10);
    assert!(first["cursor"].is_string());
    assert_eq!(scan_all(&server, "limit=10"), expected);
    assert_eq!(scan_all(&server, "limit=1000"), expected);
    assert_eq!(
        scan_all(&server, "limit=7&match=k0*"),
        expected[..57]
            .iter()
            .filter(|k| k.starts_with("k0"))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        scan_all(&server, "limit=3&prefix=k05"),
        ["k050", "k051", "k052", "k053", "k054", "k055", "k056"]
    );
}

#[test]
fn paging_while_keys_are_added_is_duplicate_free_and_misses_no_existing_key() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let existing: Vec<String> = (0..200).map(|i| format!("e{i:04}")).collect();
    let ops: Vec<Value> = existing
        .iter()
        .map(|k| json!({"op": "set", "key": k, "value": 1}))
        .collect();
    server
        .post("/_tx", &json!({ "ops": ops }).to_string())
        .expect(200);

    let base = server.base.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..150 {
            let key = format!("e{:04}x", (i * 7) % 200);
            crate::common::request(
                "POST",
                &format!("{base}/{key}"),
                &[],
                Some(r#"{"value": 2}"#),
            );
        }
    });
    let seen = scan_all(&server, "limit=9");
    writer.join().expect("writer");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates in a scan");
    for key in &existing {
        assert!(unique.contains(key), "{key} missing");
    }
    let sorted: Vec<&String> = unique.iter().copied().collect();
    assert_eq!(seen.iter().collect::<Vec<_>>(), sorted, "not in byte order");
}

#[test]
fn bad_scan_parameters_are_400() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for query in ["limit=0", "limit=1001", "limit=x", "limit=-5"] {
        server
            .get(&format!("/_keys?{query}"))
            .expect_error(400, "invalid_limit");
    }
    server
        .get("/_keys?cursor=not-a-cursor")
        .expect_error(400, "invalid_cursor");
    server
        .get("/_keys?values=maybe")
        .expect_error(400, "invalid_parameter");
}

#[test]
fn bulk_delete_by_prefix_or_all_counts_live_keys_only() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for key in ["a:1", "a:2", "a:3", "ab", "b:1"] {
        server
            .post(&format!("/{key}"), r#"{"value": 1}"#)
            .expect(201);
    }
    server
        .post("/a:dead", r#"{"value": 1, "ttl_ms": 10}"#)
        .expect(201);
    std::thread::sleep(std::time::Duration::from_millis(30));
    server.delete("/_keys").expect_error(400, "bad_request");
    server
        .delete("/_keys?prefix=")
        .expect_error(400, "bad_request");
    assert_eq!(
        server.delete("/_keys?prefix=a:").expect(200),
        json!({"status": "ok", "deleted": 3})
    );
    assert_eq!(keys_of(&server.get("/_keys").expect(200)), ["ab", "b:1"]);
    assert_eq!(server.delete("/_keys?prefix=zzz").expect(200)["deleted"], 0);
    assert_eq!(server.delete("/_keys?all=true").expect(200)["deleted"], 2);
    assert_eq!(
        keys_of(&server.get("/_keys").expect(200)),
        Vec::<String>::new()
    );
}

#[test]
fn stats_count_live_and_expiring_keys() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let empty = server.get("/_stats").expect(200);
    assert_eq!(empty["keys"], 0);
    assert_eq!(empty["expiring"], 0);
    assert_eq!(empty["version"], 0);
    assert_eq!(empty["database"], db.backend_name());
    server.post("/a", r#"{"value": 1}"#).expect(201);
    server.post("/b", r#"{"value": 1, "ttl": 100}"#).expect(201);
    let v = server
        .post("/c", r#"{"value": 1, "ttl_ms": 10}"#)
        .expect(201)["version"]
        .clone();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let stats = server.get("/_stats").expect(200);
    assert_eq!(
        (
            stats["keys"].clone(),
            stats["expiring"].clone(),
            stats["version"].clone()
        ),
        (json!(2), json!(1), v)
    );
}

fn urlencode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prefixes_and_cursors_with_nul_or_control_characters_match_no_key() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for key in ["a", "ab", "b"] {
        server
            .post(&format!("/{key}"), r#"{"value": 1}"#)
            .expect(201);
    }
    // No key holds a control character (PostgreSQL text cannot even hold NUL).
    for prefix in ["%00", "a%00", "%01", "a%0A"] {
        assert_eq!(
            server.get(&format!("/_keys?prefix={prefix}")).expect(200),
            json!({"keys": [], "cursor": null})
        );
        assert_eq!(
            server
                .delete(&format!("/_keys?prefix={prefix}"))
                .expect(200)["deleted"],
            0
        );
    }
    // A cursor "after a\0x" continues after "a", as every key greater than one is greater
    // than the other.
    let cursor: String = "a\0x".bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        server.get(&format!("/_keys?cursor={cursor}")).expect(200)["keys"],
        json!(["ab", "b"])
    );
    assert_eq!(server.get("/_stats").expect(200)["keys"], 3);
}
