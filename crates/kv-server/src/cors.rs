//! CORS for browser apps: off unless `--cors-origin` is given (repeatable, or `*` for any
//! origin). Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered here,
//! before authentication, since browsers send them without credentials.

use actix_cors::Cors;
use actix_web::http::{Method, Uri, header};
use actix_web::middleware::Condition;

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: usize = 3600;

/// Checks the configured origins at start: each is `*` or `scheme://host[:port]` (a trailing
/// `/` is dropped). Returns them cleaned up.
pub fn parse_origins(origins: &[String]) -> Result<Vec<String>, String> {
    origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .map(|origin| {
            if origin == "*" {
                return Ok(origin.to_owned());
            }
            let uri: Uri = origin
                .parse()
                .map_err(|_| format!("--cors-origin {origin:?} is not an origin"))?;
            let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
            match (uri.scheme(), uri.authority()) {
                (Some(_), Some(_)) if bare => Ok(origin.to_owned()),
                _ => Err(format!(
                    "--cors-origin {origin:?} is not an origin: give scheme://host[:port] or *"
                )),
            }
        })
        .collect()
}

/// The CORS middleware for `origins` (from [`parse_origins`]); it does nothing when there are
/// none.
pub fn middleware(origins: &[String]) -> Condition<Cors> {
    let mut cors = Cors::default()
        .allowed_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-api-key"),
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::CONTENT_TYPE,
            header::HeaderName::from_static(crate::idempotency::IDEMPOTENCY_KEY),
            header::HeaderName::from_static(crate::upstash::ENCODING),
            header::HeaderName::from_static(crate::versions::SYNC_TOKEN),
            crate::versions::KV_MIN_VERSION,
        ])
        .allowed_headers(crate::upstash::TELEMETRY_HEADERS.map(header::HeaderName::from_static))
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::ALLOW,
            header::HeaderName::from_static(crate::idempotency::REPLAYED),
            header::HeaderName::from_static(crate::versions::SYNC_TOKEN),
            crate::versions::KV_VERSION,
        ])
        .max_age(PREFLIGHT_MAX_AGE_SECS);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    Condition::new(!origins.is_empty(), cors)
}

#[cfg(test)]
mod tests {
    use super::parse_origins;

    #[test]
    fn origins_are_checked_at_start() {
        let given =
            |list: &[&str]| parse_origins(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            given(&["https://app.example.com/", " http://localhost:3000", ""]),
            Ok(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        assert_eq!(given(&["*"]), Ok(vec!["*".into()]));
        for bad in [
            "app.example.com",
            "https://x.com/path",
            "not a url",
            "https://",
        ] {
            assert!(given(&[bad]).is_err(), "{bad}");
        }
    }
}
