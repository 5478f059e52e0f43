//! The routes on collections, under their key: `/<key>/fields/<field>` (a hash's field),
//! `/<key>/members/<member>` (a set's or sorted set's member), `/<key>/items` and
//! `/<key>/items/<index|head|tail>` (a list's elements), `/<key>/range` (a list's or sorted
//! set's range). Each calls `kv_core::typed`, which runs the Redis command that does the same.

use actix_web::web::{Bytes, Query};
use actix_web::{HttpRequest, HttpResponse};
use kv_core::budget::ResponseBudget;
use kv_core::deadline::Deadline;
use kv_core::idempotency::StoredResponse;
use kv_core::now_ms;
use kv_core::redis::{Context, Snapshot};
use kv_core::typed::{self, Op, RangeQuery, TypedWriteView};
use serde::Deserialize;

use super::bodies::{MemberRequest, PushRequest, ValueRequest};
use crate::error::{ApiError, ErrorBody};
use crate::http::{header_precondition, json_object};
use crate::idempotency;
use crate::state::AppState;

/// The path's segment after the key's and the route's (`/<key>/fields/<this>`),
/// percent-decoded.
pub fn member_of(req: &HttpRequest) -> Result<String, ApiError> {
    let path = req.uri().path();
    let segment = path.splitn(4, '/').nth(3).unwrap_or_default();
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| {
            kv_core::error::StoreError::invalid(
                "invalid_member",
                "the field, member or index is not valid UTF-8 once percent-decoded",
            )
            .into()
        })
}

/// Runs a reading `op` on a read connection.
async fn read(state: &AppState, key: String, op: Op) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let limit = state.max_response_bytes;
    let (deadline, _client) = Deadline::after(state.request_timeout);
    let body = state
        .read_short(move |conn| {
            let mut source = Snapshot { conn, now };
            let budget = ResponseBudget::new(limit);
            let context = Context {
                within: None,
                budget: &budget,
                deadline: &deadline,
            };
            typed::read(&mut source, &key, &op, &context)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Runs a writing `op` (If-Match and Idempotency-Key as every write).
async fn write(
    req: &HttpRequest,
    state: &AppState,
    key: String,
    op: Op,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let precondition = header_precondition(req.headers())?;
    let idempotent = idempotency::request_with_body(req, body, state.idempotency_retention_ms)?;
    let limit = state.max_response_bytes;
    let (deadline, _client) = Deadline::after(state.request_timeout);
    state
        .write_answer(
            idempotent,
            now_ms(),
            move |tx| {
                let budget = ResponseBudget::new(limit);
                let context = Context {
                    within: None,
                    budget: &budget,
                    deadline: &deadline,
                };
                tx.typed_write(&key, &op, &precondition, &context)
            },
            |view: TypedWriteView| {
                let status = if view.created == Some(true) { 201 } else { 200 };
                StoredResponse::json(status, &view, view.version)
            },
        )
        .await
}

/// `GET /<key>/fields/<field>`: HGET.
#[utoipa::path(get, path = "/{key}/fields/{field}", tag = "data types", operation_id = "get_field",
    params(("key" = String, Path), ("field" = String, Path, description = "The field, percent-encoded")),
    responses(
        (status = 200, description = "`{\"key\",\"field\",\"value\"}`", body = Object),
        (status = 404, description = "No such key or field", body = ErrorBody),
        (status = 409, description = "The key is not a hash (`wrong_type`)", body = ErrorBody),
    ))]
pub async fn get_field(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    read(state, key, Op::GetField(member_of(req)?)).await
}

/// `PUT /<key>/fields/<field>`: HSET.
#[utoipa::path(put, path = "/{key}/fields/{field}", tag = "data types", operation_id = "put_field",
    params(("key" = String, Path), ("field" = String, Path), ("If-Match" = Option<String>, Header, description = "`*` or `\"<version>\"` ETags the key must be at")),
    request_body(content = ValueRequest),
    responses(
        (status = 201, description = "A new field (or a new hash)", body = TypedWriteView),
        (status = 200, description = "The field's value replaced", body = TypedWriteView),
        (status = 409, description = "The key is not a hash (`wrong_type`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn put_field(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let value = typed::value_body(&json_object(&body)?)?;
    let op = Op::PutField(member_of(req)?, value);
    write(req, state, key, op, &body).await
}

/// `DELETE /<key>/fields/<field>`: HDEL.
#[utoipa::path(delete, path = "/{key}/fields/{field}", tag = "data types", operation_id = "delete_field",
    params(("key" = String, Path), ("field" = String, Path), ("If-Match" = Option<String>, Header, description = "`*` or `\"<version>\"` ETags the key must be at")),
    responses(
        (status = 200, description = "Removed; `length` 0 when the hash went with it", body = TypedWriteView),
        (status = 404, description = "No such key or field", body = ErrorBody),
        (status = 409, description = "The key is not a hash (`wrong_type`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn delete_field(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    write(req, state, key, Op::DeleteField(member_of(req)?), &[]).await
}

/// `GET /<key>/members/<member>`: SISMEMBER, or ZSCORE and ZRANK.
#[utoipa::path(get, path = "/{key}/members/{member}", tag = "data types", operation_id = "get_member",
    params(("key" = String, Path), ("member" = String, Path, description = "The member, percent-encoded")),
    responses(
        (status = 200, description = "`{\"key\",\"member\"}`, and for a sorted set `\"score\"` and `\"rank\"`", body = Object),
        (status = 404, description = "No such key or member", body = ErrorBody),
        (status = 409, description = "The key is not a set or sorted set (`wrong_type`)", body = ErrorBody),
    ))]
pub async fn get_member(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    read(state, key, Op::GetMember(member_of(req)?)).await
}

/// `PUT /<key>/members/<member>`: SADD, or ZADD with `{"score"}`.
#[utoipa::path(put, path = "/{key}/members/{member}", tag = "data types", operation_id = "put_member",
    params(("key" = String, Path), ("member" = String, Path), ("If-Match" = Option<String>, Header, description = "`*` or `\"<version>\"` ETags the key must be at")),
    request_body(content = Option<MemberRequest>, description = "None for a set; `{\"score\"}` for a sorted set"),
    responses(
        (status = 201, description = "A new member (or a new collection)", body = TypedWriteView),
        (status = 200, description = "Already a member (a sorted set's score set)", body = TypedWriteView),
        (status = 409, description = "The key holds another type (`wrong_type`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn put_member(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let score = typed::member_body(&json_object(&body)?)?;
    let op = Op::PutMember(member_of(req)?, score);
    write(req, state, key, op, &body).await
}

/// `DELETE /<key>/members/<member>`: SREM or ZREM.
#[utoipa::path(delete, path = "/{key}/members/{member}", tag = "data types", operation_id = "delete_member",
    params(("key" = String, Path), ("member" = String, Path), ("If-Match" = Option<String>, Header, description = "`*` or `\"<version>\"` ETags the key must be at")),
    responses(
        (status = 200, description = "Removed; `length` 0 when the collection went with it", body = TypedWriteView),
        (status = 404, description = "No such key or member", body = ErrorBody),
        (status = 409, description = "The key is not a set or sorted set (`wrong_type`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn delete_member(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    write(req, state, key, Op::DeleteMember(member_of(req)?), &[]).await
}

/// `POST /<key>/items`: RPUSH, or LPUSH with `"at":"head"`.
#[utoipa::path(post, path = "/{key}/items", tag = "data types", operation_id = "push_items",
    params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "`*` or `\"<version>\"` ETags the key must be at")),
    request_body(content = PushRequest),
    responses(
        (status = 200, description = "Pushed; the list's new length", body = TypedWriteView),
        (status = 409, description = "The key is not a list (`wrong_type`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn push(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let op = typed::push_body(&json_object(&body)?)?;
    write(req, state, key, op, &body).await
}

/// The index in `/<key>/items/<index>`.
fn index_of(req: &HttpRequest) -> Result<i64, ApiError> {
    let text = member_of(req)?;
    kv_core::redis::redis_int(&text).ok_or_else(|| {
        kv_core::error::StoreError::invalid(
            "invalid_index",
            format!(
                "{text:?} is not an index (an integer; negative counts from the tail), head or tail"
            ),
        )
        .into()
    })
}

/// `GET /<key>/items/<index>`: LINDEX.
#[utoipa::path(get, path = "/{key}/items/{index}", tag = "data types", operation_id = "get_item",
    params(("key" = String, Path), ("index" = i64, Path, description = "0 the head, -1 the tail")),
    responses(
        (status = 200, description = "`{\"key\",\"index\",\"value\"}`", body = Object),
        (status = 404, description = "No such key, or the index is out of range", body = ErrorBody),
        (status = 409, description = "The key is not a list (`wrong_type`)", body = ErrorBody),
    ))]
pub async fn get_item(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    read(state, key, Op::GetItem(index_of(req)?)).await
}

/// `PUT /<key>/items/<index>`: LSET.
#[utoipa::path(put, path = "/{key}/items/{index}", tag = "data types", operation_id = "set_item",
    params(("key" = String, Path), ("index" = i64, Path), ("If-Match" = Option<String>, Header, description = "`*` or `\"<version>\"` ETags the key must be at")),
    request_body(content = ValueRequest),
    responses(
        (status = 200, description = "Replaced", body = TypedWriteView),
        (status = 400, description = "The index is out of range (`invalid_argument`)", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "The key is not a list (`wrong_type`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn set_item(
    req: &HttpRequest,
    key: String,
    body: Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let value = typed::value_body(&json_object(&body)?)?;
    let op = Op::SetItem(index_of(req)?, value);
    write(req, state, key, op, &body).await
}

/// `DELETE /<key>/items/head` and `/tail`: LPOP and RPOP.
#[utoipa::path(delete, path = "/{key}/items/{index}", tag = "data types", operation_id = "pop_item",
    params(("key" = String, Path), ("index" = String, Path, description = "`head` or `tail`: DELETE pops an end"), ("If-Match" = Option<String>, Header, description = "`*` or `\"<version>\"` ETags the key must be at")),
    responses(
        (status = 200, description = "Popped: `value` is the element taken", body = TypedWriteView),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "The key is not a list (`wrong_type`)", body = ErrorBody),
        (status = 412, description = "`If-Match` does not hold", body = ErrorBody),
    ))]
pub async fn pop(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let head = match member_of(req)?.as_str() {
        "head" => true,
        "tail" => false,
        other => {
            return Err(kv_core::error::StoreError::invalid(
                "invalid_index",
                format!("DELETE takes /items/head or /items/tail, not {other:?}"),
            )
            .into());
        }
    };
    write(req, state, key, Op::Pop { head }, &[]).await
}

/// `GET /<key>/range`'s query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// `rank` (the default), `score` or `lex` (sorted sets).
    by: Option<String>,
    /// The first index or rank (default 0; negative counts from the end).
    start: Option<String>,
    /// The last index or rank, included (default -1).
    stop: Option<String>,
    /// `by=score|lex`: the lower bound in Redis's syntax (`1.5`, `(1.5`, `-inf`; `[a`, `(a`, `-`).
    min: Option<String>,
    /// `by=score|lex`: the upper bound (`+inf`, `+`).
    max: Option<String>,
    /// Highest first.
    rev: Option<bool>,
    /// `by=score|lex`: members to skip.
    offset: Option<i64>,
    /// `by=score|lex`: at most this many.
    count: Option<i64>,
}

/// `GET /<key>/range`: LRANGE, or ZRANGE with its options.
#[utoipa::path(get, path = "/{key}/range", tag = "data types", operation_id = "get_range",
    params(("key" = String, Path), RangeParams),
    responses(
        (status = 200, description = "`{\"key\",\"type\",\"items\"}`: a list's elements, or a sorted set's `[member, score]` pairs (members alone `by=lex`)", body = Object),
        (status = 400, description = "A bad bound or index (`invalid_argument`)", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "The key is not a list or sorted set (`wrong_type`)", body = ErrorBody),
    ))]
pub async fn range(
    req: &HttpRequest,
    key: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let params = Query::<RangeParams>::from_query(req.query_string())
        .map_err(|e| kv_core::error::StoreError::invalid("invalid_parameter", e.to_string()))?
        .into_inner();
    if let Some(by) = params.by.as_deref()
        && !matches!(by, "rank" | "score" | "lex")
    {
        return Err(kv_core::error::StoreError::invalid(
            "invalid_parameter",
            format!("by must be rank, score or lex, not {by:?}"),
        )
        .into());
    }
    let query = RangeQuery {
        by: params.by,
        start: params.start,
        stop: params.stop,
        min: params.min,
        max: params.max,
        rev: params.rev.unwrap_or(false),
        offset: params.offset,
        count: params.count,
    };
    read(state, key, Op::Range(query)).await
}
