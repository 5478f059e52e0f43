//! CORS: no headers without `--cors-origin`; preflights and simple requests from allowed
//! origins; preflights answered before authentication.

use crate::common::{Server, TestDatabase};

const APP: &str = "https://app.example.com";

fn preflight(server: &Server, origin: &str, method: &str, headers: &str) -> crate::common::Resp {
    server.send(
        "OPTIONS",
        "/k",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", headers),
        ],
        None,
    )
}

#[test]
fn without_the_flag_there_are_no_cors_headers() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    // A page of another origin is refused before its request runs (see hardening.rs).
    let resp = server.send("GET", "/_stats", &[("Origin", APP)], None);
    resp.expect_error(403, "cross_origin");
    assert!(
        !resp
            .headers
            .iter()
            .any(|(k, _)| k.starts_with("access-control-")),
        "{:?}",
        resp.headers
    );
    let resp = preflight(&server, APP, "PUT", "content-type");
    resp.expect_error(403, "cross_origin");
    assert_eq!(resp.header("access-control-allow-origin"), None);
    // Without an Origin, an OPTIONS request is just that: 405 with Allow.
    server
        .send("OPTIONS", "/k", &[], None)
        .expect_error(405, "method_not_allowed");
}

#[test]
fn allowed_origins_get_preflights_and_simple_requests_answered() {
    let db = TestDatabase::new();
    let server = Server::start_with(
        &db.url,
        &[
            "--cors-origin",
            APP,
            "--cors-origin",
            "http://localhost:3000",
            "--api-key",
            "k1",
        ],
        &[],
    );
    // The preflight carries no key and still succeeds.
    let resp = preflight(
        &server,
        APP,
        "PUT",
        "authorization, x-api-key, if-match, if-none-match, content-type",
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));
    let methods = resp
        .header("access-control-allow-methods")
        .unwrap_or_default();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = resp
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in [
        "authorization",
        "x-api-key",
        "if-match",
        "if-none-match",
        "content-type",
    ] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert!(resp.header("access-control-max-age").is_some());

    // The preflight of @upstash/redis in a browser (its telemetry headers are on by default;
    // upstash-redis also sends its retry count).
    let sdk_headers = "authorization, content-type, upstash-encoding, upstash-sync-token, \
        upstash-telemetry-runtime, upstash-telemetry-platform, upstash-telemetry-sdk, \
        upstash-telemetry-retry";
    let resp = preflight(&server, APP, "POST", sdk_headers);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));

    // The actual request: the origin is echoed and ETag is readable by the page.
    let put = server.send(
        "PUT",
        "/k",
        &[("Origin", APP), ("Authorization", "Bearer k1")],
        Some(r#"{"value": 1}"#),
    );
    put.expect(201);
    assert_eq!(put.header("access-control-allow-origin"), Some(APP));
    let exposed = put
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");

    // Errors carry the CORS headers too, so the page can read them.
    let unauthorized = server.send("GET", "/k", &[("Origin", "http://localhost:3000")], None);
    unauthorized.expect_error(401, "unauthorized");
    assert_eq!(
        unauthorized.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );

    // Another origin is refused, with a JSON error.
    let resp = preflight(&server, "https://evil.example.net", "PUT", "content-type");
    resp.expect_error(403, "cross_origin");
    assert_eq!(resp.header("access-control-allow-origin"), None);
    // A method we do not serve is refused in the preflight.
    let resp = preflight(&server, APP, "TRACE", "content-type");
    assert!(resp.status >= 400 && resp.status < 500, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), None);
    // Requests without Origin (curl, servers) are not affected.
    server
        .send("GET", "/k", &[("X-API-Key", "k1")], None)
        .expect(200);
}

#[test]
fn a_star_allows_any_origin() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &[], &[("KV_CORS_ORIGINS", "*")]);
    let resp = preflight(&server, "https://anything.example", "DELETE", "if-match");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    let get = server.send(
        "GET",
        "/_stats",
        &[("Origin", "https://other.example")],
        None,
    );
    get.expect(200);
    assert_eq!(get.header("access-control-allow-origin"), Some("*"));
}
