//! `/_ui`: the key browser's embedded assets (content types, CSP, methods, no API key needed).
//! The page itself is tested in Chromium by `scripts/ui-test.sh`.

use crate::common::{Server, TestDatabase, request};

const ASSETS: [(&str, &str); 4] = [
    ("/_ui", "text/html; charset=utf-8"),
    ("/_ui/", "text/html; charset=utf-8"),
    ("/_ui/app.js", "text/javascript; charset=utf-8"),
    ("/_ui/app.css", "text/css; charset=utf-8"),
];

#[test]
fn serves_the_assets_with_their_types_and_a_strict_csp() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for (path, content_type) in ASSETS {
        let resp = server.get(path);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.header("content-type"), Some(content_type), "{path}");
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            resp.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(resp.header("x-frame-options"), Some("DENY"), "{path}");
        let csp = resp.header("content-security-policy").expect("CSP");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: {directive} missing in {csp}"
            );
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(!resp.body.is_empty());

        let head = server.send("HEAD", path, &[], None);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
}

#[test]
fn the_page_loads_only_its_own_script_and_stylesheet() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let html = server.get("/_ui").body;
    assert!(html.contains(r#"<script src="/_ui/app.js" defer></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/_ui/app.css">"#));
    // No inline script, handler or style: the CSP would block them anyway.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains(" onclick=") && !html.contains(" style="));
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[test]
fn other_methods_and_paths_answer_json() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    for path in ["/_ui", "/_ui/", "/_ui/app.js", "/_ui/app.css"] {
        let resp = server.post(path, "{\"value\": 1}");
        resp.expect_error(405, "method_not_allowed");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    }
    server.get("/_ui/index.html").expect_error(404, "not_found");
    server.get("/_ui/app.js/").expect_error(404, "not_found");
    // `_ui` stays a reserved key name.
    server
        .send("PUT", "/_ui/", &[], Some("{\"value\": 1}"))
        .expect_error(405, "method_not_allowed");
    server
        .post("/_uix/", "{\"value\": 1}")
        .expect_error(400, "reserved_key");
}

#[test]
fn the_assets_need_no_api_key() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--api-key", "ui-secret"], &[]);
    for (path, _) in ASSETS {
        let resp = request("GET", &server.url(path), &[], None);
        assert_eq!(resp.status, 200, "{path} without a key");
    }
}
