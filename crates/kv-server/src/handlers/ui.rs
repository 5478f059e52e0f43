//! `/_ui`: the key browser. Its three files are embedded in the binary and hold no data (the
//! page reads and writes only through the public API, sending the user's API key), so they are
//! served without an API key. These and `/_metrics` are the only non-JSON responses.

use actix_web::HttpResponse;
use actix_web::http::header;

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

/// Same-origin script, style and fetch only; no inline script or style, no frames, no plugins.
/// `img-src data:` is for the empty favicon, which keeps the browser from asking for
/// `/favicon.ico`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // Small files: always revalidate, so a new binary's page is picked up at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /_ui`, `/_ui/`: the page.
pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /_ui/app.js`.
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /_ui/app.css`.
pub async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}
