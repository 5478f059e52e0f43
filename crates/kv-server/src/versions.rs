//! The store version on the wire (docs/API.md, "Read replicas"): every response that reads or
//! writes data carries `Kv-Version: V`, the store version its answer reflects (on `/_upstash`
//! also as `upstash-sync-token`), and a request may ask with `Kv-Min-Version: V` (or
//! `upstash-sync-token: V`) to be answered only from data at version V or newer.
//!
//! A handler that knows the exact version of its answer (a point read, which reads it in the
//! same statement as the row, perhaps on a replica) sets `Kv-Version` itself, or, when it
//! answers an error (a 404), says so with [`answered_at`]; every other data response gets the
//! newest version the server knows of once the handler is done, which is at least what the
//! handler read or wrote ([`kv_core::known_version`]).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, ResponseError, web};

use crate::error::ApiError;
use crate::state::AppState;

/// Upstash's name for the same: the SDKs read it after every response and send it back with
/// the next request (`readYourWrites`).
pub const SYNC_TOKEN: &str = "upstash-sync-token";

/// The store version a response reflects.
pub const KV_VERSION: HeaderName = HeaderName::from_static("kv-version");

/// The oldest store version a request may be answered from.
pub const KV_MIN_VERSION: HeaderName = HeaderName::from_static("kv-min-version");

/// The version a request asked to be answered at or after (`Kv-Min-Version`), in its
/// extensions once [`middleware`] has read it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MinVersion(pub Option<i64>);

impl MinVersion {
    /// What the request asked for (nothing, for a request the middleware did not see).
    pub fn of(req: &HttpRequest) -> Option<i64> {
        req.extensions().get::<MinVersion>().and_then(|m| m.0)
    }
}

/// The exact store version a request's answer reflects, when its handler knows it.
#[derive(Debug, Clone, Copy)]
struct AnsweredAt(i64);

/// Records that the answer to `req` reflects the store at `version` (its `Kv-Version`).
pub fn answered_at(req: &HttpRequest, version: i64) {
    req.extensions_mut().insert(AnsweredAt(version));
}

/// Whether responses to `path` carry `Kv-Version`: the key routes and the server routes that
/// read or write data.
fn carries_version(path: &str) -> bool {
    const DATA_ROUTES: [&str; 7] = [
        "/_tx",
        "/_keys",
        "/_stats",
        "/_upstash",
        "/_eval",
        "/_import",
        "/_export",
    ];
    match path.strip_prefix("/_") {
        None => path.len() > 1,
        Some(_) => DATA_ROUTES.iter().any(|route| {
            path.strip_prefix(route)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }),
    }
}

/// `Kv-Min-Version`, else `upstash-sync-token`. Anything but a positive integer is 400, except
/// that @upstash/redis sends back whatever token it was given, so in `upstash-sync-token` an
/// empty value (before its first response) and `0` (what a store that was never written to
/// reports) ask for nothing.
fn min_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    for name in [&KV_MIN_VERSION, &HeaderName::from_static(SYNC_TOKEN)] {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let text = value.to_str().unwrap_or("\u{0}").trim();
        if name != KV_MIN_VERSION && (text.is_empty() || text == "0") {
            continue;
        }
        return match text.parse::<i64>() {
            Ok(version) if version > 0 && text.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Some(version))
            }
            _ => Err(ApiError::BadRequest(format!(
                "{} must be a positive integer (a Kv-Version this server sent), not {text:?}",
                if *name == KV_MIN_VERSION {
                    "Kv-Min-Version"
                } else {
                    SYNC_TOKEN
                }
            ))),
        };
    }
    Ok(None)
}

/// Reads `Kv-Min-Version` into the request's [`MinVersion`] (400 if malformed) and adds
/// `Kv-Version` to the response if the handler did not.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if !carries_version(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let asked = match min_version(req.headers()) {
        Ok(asked) => asked,
        Err(err) => {
            let response = err.error_response();
            let mut response = req.into_response(response);
            add_version(&mut response);
            return Ok(response.map_into_right_body());
        }
    };
    if asked.is_some() {
        req.extensions_mut().insert(MinVersion(asked));
    }
    let mut response = next.call(req).await?;
    add_version(&mut response);
    Ok(response.map_into_left_body())
}

/// Sets `Kv-Version`, unless the handler did, to the version it answered at ([`answered_at`]),
/// else to the newest the server knows of; and on `/_upstash` the sync token to it.
fn add_version<B>(response: &mut ServiceResponse<B>) {
    if !response.headers().contains_key(KV_VERSION) {
        let request = response.request();
        let answered = request.extensions().get::<AnsweredAt>().map(|at| at.0);
        let version = answered.or_else(|| {
            request
                .app_data::<web::Data<AppState>>()
                .map(|state| state.store.known_version())
        });
        let Some(version) = version else { return };
        response
            .headers_mut()
            .insert(KV_VERSION, HeaderValue::from(version));
    }
    if response.request().path().starts_with("/_upstash")
        && let Some(version) = response.headers().get(KV_VERSION).cloned()
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SYNC_TOKEN), version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_routes_carry_the_version() {
        for path in [
            "/k",
            "/a/fields/f",
            "/_tx",
            "/_keys",
            "/_upstash/pipeline",
            "/_stats/",
        ] {
            assert!(carries_version(path), "{path}");
        }
        for path in [
            "/",
            "/_health",
            "/_metrics",
            "/_watch",
            "/_ui/app.js",
            "/_txx",
        ] {
            assert!(!carries_version(path), "{path}");
        }
    }

    fn asked(headers: &[(&'static str, &'static str)]) -> Result<Option<i64>, ApiError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        min_version(&map)
    }

    #[test]
    fn the_minimum_is_a_positive_integer() {
        assert_eq!(asked(&[]).ok(), Some(None));
        assert_eq!(asked(&[("kv-min-version", "42")]).ok(), Some(Some(42)));
        assert_eq!(asked(&[("upstash-sync-token", "7")]).ok(), Some(Some(7)));
        assert_eq!(asked(&[("upstash-sync-token", "")]).ok(), Some(None));
        assert_eq!(asked(&[("upstash-sync-token", "0")]).ok(), Some(None));
        for bad in ["0", "-3", "+5", "abc", "", "1.5", "99999999999999999999"] {
            assert!(asked(&[("kv-min-version", bad)]).is_err(), "{bad:?}");
        }
        assert!(asked(&[("upstash-sync-token", "1700000000-3")]).is_err());
    }
}
