//! API keys scoped to key prefixes (`rw:KEY prefix=app1: prefix=shared:` in the key file):
//! every route, with a scoped key, inside and outside its prefixes.

use crate::common::{Resp, Server, TestDatabase, keys_of, refused_at_start, stderr_of};
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-51aa";
const APP: &str = "app-key-0c7d";
const READER: &str = "app-reader-93be";

fn start(db: &TestDatabase) -> Server {
    let server = Server::start_with_key_file(
        db,
        &format!("rw:{ADMIN}\nrw:{APP} prefix=app1: prefix=shared:\nro:{READER}   prefix=app1:\n"),
        &[],
    );
    for key in ["app1:a", "app1:b", "shared:x", "app2:secret"] {
        as_key(
            &server,
            ADMIN,
            "POST",
            &format!("/{key}"),
            Some(r#"{"value": 1}"#),
        )
        .expect(201);
    }
    server
}

fn as_key(server: &Server, key: &str, method: &str, path: &str, body: Option<&str>) -> Resp {
    server.send(method, path, &[("X-API-Key", key)], body)
}

#[test]
fn single_key_routes_reach_only_keys_under_the_prefixes() {
    let db = TestDatabase::new();
    let server = start(&db);
    let body = Some(r#"{"value": 2}"#);
    for (method, path, body) in [
        ("GET", "/app2:secret", None),
        ("HEAD", "/app2:secret", None),
        ("GET", "/app2%3Asecret", None),
        ("POST", "/app2:secret", body),
        ("PUT", "/app2:new", body),
        ("PATCH", "/app2:secret", Some(r#"{"ttl": 60}"#)),
        ("DELETE", "/app2:secret", None),
        ("POST", "/app2:secret/incr", None),
        ("POST", "/app2:secret/decr", None),
        ("GET", "/app1", None),
    ] {
        let resp = as_key(&server, APP, method, path, body);
        assert_eq!(resp.status, 403, "{method} {path}: {resp:?}");
        if method != "HEAD" {
            assert_eq!(resp.json()["code"], "forbidden", "{method} {path}");
        }
    }
    // Nothing outside was touched.
    let secret = as_key(&server, ADMIN, "GET", "/app2:secret", None).expect(200);
    assert_eq!(
        (secret["value"].clone(), secret["ttl_remaining"].clone()),
        (json!(1), json!(-1))
    );
    as_key(&server, ADMIN, "GET", "/app2:new", None).expect_error(404, "not_found");

    // Inside, everything works as usual.
    as_key(&server, APP, "GET", "/app1:a", None).expect(200);
    as_key(&server, APP, "GET", "/app1%3Aa", None).expect(200);
    as_key(&server, APP, "PUT", "/shared:y", body).expect(201);
    as_key(&server, APP, "PATCH", "/app1:a", Some(r#"{"ttl": 60}"#)).expect(200);
    as_key(&server, APP, "POST", "/app1:n/incr", None).expect(200);
    as_key(&server, APP, "DELETE", "/app1:b", None).expect(200);
    // A read-only scoped key reads within its scope and writes nowhere.
    as_key(&server, READER, "GET", "/app1:a", None).expect(200);
    as_key(&server, READER, "GET", "/shared:x", None).expect_error(403, "forbidden");
    as_key(&server, READER, "POST", "/app1:a", body).expect_error(403, "forbidden");
}

#[test]
fn listings_show_only_keys_under_the_prefixes() {
    let db = TestDatabase::new();
    let server = start(&db);
    let all = as_key(&server, APP, "GET", "/_keys", None).expect(200);
    assert_eq!(
        keys_of(&all),
        ["app1:a", "app1:b", "shared:x"],
        "all of mine"
    );
    assert_eq!(all["cursor"], Value::Null);
    let app1 = as_key(&server, APP, "GET", "/_keys?prefix=app1:", None).expect(200);
    assert_eq!(keys_of(&app1), ["app1:a", "app1:b"]);
    let one = as_key(&server, APP, "GET", "/_keys?prefix=app1:a", None).expect(200);
    assert_eq!(keys_of(&one), ["app1:a"]);
    for prefix in ["app", "app2:", "s"] {
        as_key(
            &server,
            APP,
            "GET",
            &format!("/_keys?prefix={prefix}"),
            None,
        )
        .expect_error(403, "forbidden");
    }
    let matched = as_key(&server, APP, "GET", "/_keys?match=*a*", None).expect(200);
    assert_eq!(keys_of(&matched), ["app1:a", "app1:b", "shared:x"]);
    let items = as_key(&server, APP, "GET", "/_keys?values=true", None).expect(200);
    assert_eq!(items["items"].as_array().map(Vec::len), Some(3));

    // A page at a time, across the prefixes.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/_keys?limit=1&cursor={cursor}");
        let page = as_key(&server, APP, "GET", &path, None).expect(200);
        seen.extend(keys_of(&page));
        match page["cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen, ["app1:a", "app1:b", "shared:x"]);
}

#[test]
fn bulk_deletes_and_transactions_stay_within_the_prefixes() {
    let db = TestDatabase::new();
    let server = start(&db);
    as_key(&server, APP, "DELETE", "/_keys?prefix=app2:", None).expect_error(403, "forbidden");
    as_key(&server, APP, "DELETE", "/_keys?prefix=app", None).expect_error(403, "forbidden");

    let outside = json!({"ops": [
        {"op": "set", "key": "app1:t", "value": 1},
        {"op": "get", "key": "app2:secret"},
    ]});
    let resp = as_key(&server, APP, "POST", "/_tx", Some(&outside.to_string()));
    let error = resp.expect_error(403, "forbidden");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("op 1:")),
        "{error}"
    );
    as_key(&server, ADMIN, "GET", "/app1:t", None).expect_error(404, "not_found");
    let inside = json!({"ops": [
        {"op": "set", "key": "app1:t", "value": 1},
        {"op": "incr", "key": "shared:n"},
    ]});
    as_key(&server, APP, "POST", "/_tx", Some(&inside.to_string())).expect(200);

    // `all=true` is all of mine: app1:a, app1:b, app1:t, shared:x, shared:n.
    let deleted = as_key(&server, APP, "DELETE", "/_keys?all=true", None).expect(200);
    assert_eq!(deleted["deleted"], 5, "{deleted}");
    as_key(&server, ADMIN, "GET", "/app2:secret", None).expect(200);
    let left = as_key(&server, ADMIN, "GET", "/_keys", None).expect(200);
    assert_eq!(keys_of(&left), ["app2:secret"]);
}

#[test]
fn whole_store_routes_are_forbidden_and_health_stays_open() {
    let db = TestDatabase::new();
    let server = start(&db);
    for path in ["/_stats", "/_metrics"] {
        as_key(&server, APP, "GET", path, None).expect_error(403, "forbidden");
        assert_eq!(
            as_key(&server, ADMIN, "GET", path, None).status,
            200,
            "{path}"
        );
    }
    as_key(&server, APP, "GET", "/_openapi.json", None).expect(200);
    server.get("/_health").expect(200);
}

#[test]
fn a_bad_scope_in_the_key_file_stops_the_server_naming_the_line() {
    let db = TestDatabase::new();
    for (line, says) in [
        (
            "rw:k prefix=",
            "line 2: after the key, only `prefix=<prefix>` scopes may follow",
        ),
        (
            "rw:k app1:",
            "line 2: after the key, only `prefix=<prefix>` scopes may follow",
        ),
    ] {
        let file = db.dir().join("bad-keys.txt");
        std::fs::write(&file, format!("rw:fine\n{line}\n")).expect("key file");
        let stderr = stderr_of(&refused_at_start(
            &db.url,
            &["--api-keys-file", &file.display().to_string()],
            says,
        ));
        assert!(
            !stderr.contains("app1"),
            "the line's text is not shown: {stderr}"
        );
    }
}
