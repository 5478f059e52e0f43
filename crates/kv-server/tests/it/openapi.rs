//! `GET /_openapi.json` over HTTP, and values that the fuzzers found changing on the way.

use crate::common::{Server, TestDatabase};

#[test]
fn the_openapi_document_is_served() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let resp = server.get("/_openapi.json");
    let doc = resp.expect(200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/{key}",
        "/{key}/incr",
        "/{key}/decr",
        "/_keys",
        "/_tx",
        "/_export",
        "/_import",
        "/_stats",
        "/_health",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["security"].is_null(), "no keys configured, no security");

    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--api-key", "k"], &[]);
    server
        .get("/_openapi.json")
        .expect_error(401, "unauthorized");
    let doc = server
        .send("GET", "/_openapi.json", &[("X-API-Key", "k")], None)
        .expect(200);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn floats_are_stored_exactly() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    // Found by the property test of the body parser: without serde_json's float_roundtrip,
    // this value came back as -1.5757977919873208e90.
    let original = -1.575797791987321e90_f64;
    server
        .post("/f", r#"{"value": [-1.575797791987321e+90, 0.1, 5e-324]}"#)
        .expect(201);
    let got = server.get("/f").expect(200);
    assert_eq!(got["value"][0].as_f64(), Some(original));
    assert_eq!(got["value"][1].as_f64(), Some(0.1));
    assert_eq!(got["value"][2].as_f64(), Some(5e-324));
}
