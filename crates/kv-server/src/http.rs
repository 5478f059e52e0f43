//! Small HTTP helpers shared by the handlers: bodies, conditional headers, ETags.

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderMap};
use kv_core::StoreError;
use kv_core::precondition::{EtagSet, Precondition};
use kv_core::request;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The key of a `/<key>/…` route: the first path segment, percent-decoded as UTF-8 (so `%2F`
/// is a `/` inside the key and `+` stays a plus).
pub fn key_of(req: &HttpRequest) -> Result<String, ApiError> {
    let path = req.uri().path();
    let segment = path.strip_prefix('/').unwrap_or(path);
    let segment = segment.split('/').next().unwrap_or_default();
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| {
            StoreError::invalid("invalid_key", "key is not valid UTF-8 once percent-decoded").into()
        })
}

/// The body as a JSON object, whatever the Content-Type; an empty body is `{}`.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    Ok(request::body_object(request::parse_body(body)?)?)
}

/// The body as JSON (`None` when empty), whatever the Content-Type.
pub fn json_body(body: &[u8]) -> Result<Option<Value>, ApiError> {
    Ok(request::parse_body(body)?)
}

fn etag_header(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<EtagSet>, ApiError> {
    headers
        .get(&name)
        .map(|value| {
            value
                .to_str()
                .map(EtagSet::parse)
                .map_err(|_| ApiError::BadRequest(format!("{name} must be ASCII")))
        })
        .transpose()
}

/// `If-Match` / `If-None-Match` of a write, as a precondition.
pub fn header_precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    Ok(Precondition {
        if_match: etag_header(headers, header::IF_MATCH)?,
        if_none_match: etag_header(headers, header::IF_NONE_MATCH)?,
        ..Precondition::default()
    })
}

/// Whether a `GET` with `If-None-Match` may be answered 304 for a key at `version`.
pub fn not_modified(headers: &HeaderMap, version: i64) -> Result<bool, ApiError> {
    Ok(
        etag_header(headers, header::IF_NONE_MATCH)?
            .is_some_and(|tags| tags.matches(Some(version))),
    )
}

pub fn etag(version: i64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}
