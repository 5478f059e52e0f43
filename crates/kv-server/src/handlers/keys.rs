//! `/<key>/`: GET, HEAD, POST/PUT (SET), PATCH (EXPIRE/PERSIST), DELETE, and
//! `/<key>/incr`, `/<key>/decr`.

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use kv_core::args::{IncrArgs, SetArgs};
use kv_core::idempotency::StoredResponse;
use kv_core::key::is_reserved;
use kv_core::model::StoredValue;
use kv_core::now_ms;
use kv_core::request::expiry_from_json;

use super::bodies::{ExpireRequest, IncrRequest, SetRequest};
use kv_core::budget::ResponseBudget;
use kv_core::store::Lookup;
use kv_core::view::{
    DeleteView, ExpireView, IncrView, KeyView, SetView, collection_json, key_json,
};

use crate::error::{ApiError, ErrorBody};
use crate::http::{etag, header_precondition, json_object, not_modified};
use crate::idempotency;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::versions::{KV_VERSION, MinVersion, answered_at};

/// The `{key}` path parameter of every `/<key>` route, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a schema, never built
struct KeyParam {
    /// The key: 1–512 bytes of UTF-8 once percent-decoded, no control characters (`/` is sent as `%2F`). Keys starting with `_` are the server's routes.
    #[param(
        min_length = 1,
        pattern = "^[^_\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    key: String,
}

/// Reads go through here: `_`-keys are the server's routes, so an unknown one is a 404 route.
pub(crate) fn readable_key(req: &HttpRequest, key: String) -> Result<String, ApiError> {
    if is_reserved(&key) {
        return Err(ApiError::RouteNotFound(req.path().to_owned()));
    }
    Ok(key)
}

/// What a point read of a key found.
struct Found {
    key: String,
    stored: StoredValue,
    /// The time it was read at.
    now: i64,
    /// The store version the read reflects (`Kv-Version`).
    version: i64,
}

/// The live key, or its 404: from a read replica when one can answer at the request's
/// `Kv-Min-Version` ([`MinVersion`]), else from the primary. An expired row is deleted before
/// answering (lazy expiry) and, when this request is the one that deleted it, counted in
/// `kv_keys_expired_lazily_total`.
async fn lookup(
    req: &HttpRequest,
    state: &AppState,
    metrics: &Metrics,
    key: String,
) -> Result<Found, ApiError> {
    let now = now_ms();
    let read = state
        .read_key(now, key.clone(), MinVersion::of(req))
        .await?;
    let (found, version) = (read.value, read.version);
    if let Lookup::Expired = found {
        let purging = key.clone();
        if state
            .write(now, move |tx| tx.purge_expired(&purging))
            .await?
        {
            metrics.lazily_expired.inc();
        }
    }
    let stored = found.live().inspect_err(|_| answered_at(req, version))?;
    Ok(Found {
        key,
        stored,
        now,
        version,
    })
}

#[utoipa::path(get, path = "/{key}", tag = "keys", operation_id = "get_key",
    params(KeyParam, ("If-None-Match" = Option<String>, Header, description = "`\"<version>\"`: 304 when the key is still at it")),
    responses(
        (status = 200, description = "The key", body = KeyView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 304, description = "Not modified since the given version", headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, description = "No such key (`not_found`), or it expired (`expired`)", body = ErrorBody),
    ))]
pub async fn get(
    req: &HttpRequest,
    key: String,
    state: &AppState,
    metrics: &Metrics,
) -> Result<HttpResponse, ApiError> {
    let key = readable_key(req, key)?;
    let Found {
        key,
        stored,
        now,
        version: read_at,
    } = lookup(req, state, metrics, key).await?;
    if not_modified(req.headers(), stored.version)? {
        return Ok(HttpResponse::NotModified()
            .insert_header(etag(stored.version))
            .insert_header((KV_VERSION, read_at))
            .finish());
    }
    let version = stored.version;
    if stored.is_string() {
        return Ok(HttpResponse::Ok()
            .insert_header(etag(version))
            .insert_header((KV_VERSION, read_at))
            .content_type(ContentType::json())
            .body(key_json(&key, &stored, now)?));
    }
    let body = {
        // A collection: its members, a page at a time (`?cursor=`).
        let after = collection_cursor(req)?;
        let max_response_bytes = state.max_response_bytes;
        state
            .db(move |conn| {
                let budget = ResponseBudget::new(max_response_bytes);
                collection_json(conn, &key, &stored, now, after.as_deref(), &budget)
            })
            .await?
    };
    // The members came from the primary, which may be newer than the row's read.
    Ok(HttpResponse::Ok()
        .insert_header(etag(version))
        .insert_header((KV_VERSION, state.store.known_version()))
        .content_type(ContentType::json())
        .body(body))
}

/// The `cursor` of `GET /<key>?cursor=C` (a collection's next page), decoded.
fn collection_cursor(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let cursor = req
        .query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("cursor="));
    match cursor {
        None | Some("") => Ok(None),
        Some(cursor) => Ok(kv_core::cursor::decode(cursor)?),
    }
}

#[utoipa::path(head, path = "/{key}", tag = "keys", operation_id = "head_key",
    params(KeyParam),
    responses(
        (status = 200, description = "The key exists", headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, description = "No such key"),
    ))]
pub async fn head(
    req: &HttpRequest,
    key: String,
    state: &AppState,
    metrics: &Metrics,
) -> Result<HttpResponse, ApiError> {
    let key = readable_key(req, key)?;
    let found = lookup(req, state, metrics, key).await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(found.stored.version))
        .insert_header((KV_VERSION, found.version))
        .finish())
}

/// SET (`POST` and `PUT` alike).
#[utoipa::path(post, path = "/{key}", tag = "keys", operation_id = "set_key",
    params(KeyParam, ("If-Match" = Option<String>, Header, description = "`*` (the key exists) or a list of `\"<version>\"` ETags the key must be at"), ("If-None-Match" = Option<String>, Header, description = "`*`: write only if the key is absent")),
    request_body(content = SetRequest, description = "Parsed as JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "Created", body = SetView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 200, description = "Updated", body = SetView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 412, description = "`nx`, `xx`, `if_version`, `If-Match` or `If-None-Match` does not hold", body = ErrorBody),
    ))]
pub async fn set(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let mut args = SetArgs::from_json(json_object(&body)?, now)?;
    let headers = header_precondition(req.headers())?;
    args.precondition.if_match = headers.if_match;
    args.precondition.if_none_match = headers.if_none_match;
    let idempotent = idempotency::request_with_body(req, &body, state.idempotency_retention_ms)?;
    state
        .write_answer(
            idempotent,
            now,
            move |tx| tx.set(&key, &args),
            |outcome| {
                let status = if outcome.created { 201 } else { 200 };
                let version = outcome.row.version;
                StoredResponse::json(status, &SetView::from(outcome), Some(version))
            },
        )
        .await
}

#[utoipa::path(delete, path = "/{key}", tag = "keys", operation_id = "delete_key",
    params(KeyParam, ("If-Match" = Option<String>, Header, description = "`*` (the key exists) or a list of `\"<version>\"` ETags the key must be at")),
    responses(
        (status = 200, description = "Deleted", body = DeleteView),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn delete(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let precondition = header_precondition(req.headers())?;
    let idempotent = idempotency::request_with_body(req, &[], state.idempotency_retention_ms)?;
    let deleting = key.clone();
    state
        .write_answer(
            idempotent,
            now_ms(),
            move |tx| tx.delete(&deleting, &precondition),
            move |found| {
                StoredResponse::json(200, &DeleteView::new(&key, Some(found.live()?)), None)
            },
        )
        .await
}

/// EXPIRE / PERSIST.
#[utoipa::path(patch, path = "/{key}", tag = "keys", operation_id = "expire_key",
    params(KeyParam, ("If-Match" = Option<String>, Header, description = "`*` (the key exists) or a list of `\"<version>\"` ETags the key must be at")),
    request_body(content = ExpireRequest, description = "Parsed as JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "The new expiry", body = ExpireView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn patch(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let expires_at = expiry_from_json(json_object(&body)?, now)?;
    let precondition = header_precondition(req.headers())?;
    let idempotent = idempotency::request_with_body(req, &body, state.idempotency_retention_ms)?;
    state
        .write_answer(
            idempotent,
            now,
            move |tx| tx.expire(&key, expires_at, &precondition),
            move |row| {
                let version = row.version;
                StoredResponse::json(200, &ExpireView::new(row, now), Some(version))
            },
        )
        .await
}

#[utoipa::path(post, path = "/{key}/incr", tag = "keys", operation_id = "incr_key",
    params(KeyParam, ("If-Match" = Option<String>, Header, description = "`*` (the key exists) or a list of `\"<version>\"` ETags the key must be at")),
    request_body(content = Option<IncrRequest>, description = "Optional; parsed as JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "The new value", body = IncrView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 409, description = "The value is not an integer (`not_an_integer`) or would overflow (`overflow`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn incr(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    counter(req, key, body, state, false).await
}

#[utoipa::path(post, path = "/{key}/decr", tag = "keys", operation_id = "decr_key",
    params(KeyParam, ("If-Match" = Option<String>, Header, description = "`*` (the key exists) or a list of `\"<version>\"` ETags the key must be at")),
    request_body(content = Option<IncrRequest>, description = "Optional; parsed as JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "The new value", body = IncrView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 409, description = "The value is not an integer (`not_an_integer`) or would overflow (`overflow`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn decr(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    counter(req, key, body, state, true).await
}

async fn counter(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
    decrement: bool,
) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let args = IncrArgs::from_json(json_object(&body)?, decrement, now)?;
    let precondition = header_precondition(req.headers())?;
    let idempotent = idempotency::request_with_body(req, &body, state.idempotency_retention_ms)?;
    state
        .write_answer(
            idempotent,
            now,
            move |tx| tx.incr(&key, &args, &precondition),
            move |row| {
                let view = IncrView::new(row, now)?;
                let version = view.version;
                StoredResponse::json(200, &view, Some(version))
            },
        )
        .await
}
