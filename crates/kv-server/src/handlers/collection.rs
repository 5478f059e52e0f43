//! `/_keys` (scan, bulk delete), `/_tx` and `/_stats`.

use actix_web::{HttpRequest, HttpResponse, web};
use kv_core::budget::ResponseBudget;
use kv_core::deadline::Deadline;
use kv_core::request::{query_flag, scan_args};
use kv_core::store::{self, KeyScope};
use kv_core::view::{BulkDeleteView, ItemsPage, KeyView, KeysPage, ScanView, StatsView, TxView};
use kv_core::{StoreError, cursor, now_ms, tx};
use serde::Deserialize;

use crate::auth::{Access, Reach};
use crate::error::{ApiError, ErrorBody};
use crate::http::json_body;
use crate::idempotency;
use crate::peer;
use crate::state::AppState;

use super::bodies::TxRequest;
use kv_core::idempotency::StoredResponse;

/// The query of `GET /_keys` (all of it but `all`) and `DELETE /_keys` (`prefix`, `all`).
/// Values are strings here; kv-core parses them, so a bad one is a 400 that says why.
#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    prefix: Option<String>,
    #[serde(rename = "match")]
    pattern: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    values: Option<String>,
    all: Option<String>,
    /// Only keys of this type (`string`, `hash`, `set`).
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /_keys`: one page of live keys (or items with values) in byte order.
#[utoipa::path(get, path = "/_keys", tag = "collection", operation_id = "scan_keys",
    params(
        ("prefix" = Option<String>, Query, description = "Only keys starting with this"),
        ("match" = Option<String>, Query, description = "A Redis glob (`*`, `?`, `[a-z]`, `[^a]`, `\\` escapes), at most 1024 bytes"),
        ("limit" = Option<i64>, Query, description = "Keys per page, 1–1000 (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "The `cursor` of the previous page"),
        ("values" = Option<String>, Query, description = "`true`/`1`: items with values", pattern = "^(true|false|1|0)$"),
        ("type" = Option<String>, Query, description = "Only keys of this type (a page may then hold fewer keys while more remain)", pattern = "^(string|hash|set|list|zset)$"),
    ),
    responses(
        (status = 200, description = "A page; only `cursor: null` means done", body = ScanView),
    ))]
pub async fn scan(
    query: web::Query<KeysQuery>,
    reach: Reach,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    // A scoped key: a prefix within its scope, or, without one, all of its keys.
    let within = reach.listing(q.prefix.as_deref())?;
    let args = scan_args(
        q.prefix.as_deref(),
        q.pattern.as_deref(),
        q.limit.as_deref(),
        q.cursor.as_deref(),
    )?;
    let with_values = query_flag("values", q.values.as_deref())?;
    let kind = match q.kind.as_deref() {
        None => None,
        Some(kind @ ("string" | "hash" | "set" | "list" | "zset")) => Some(kind.to_owned()),
        Some(other) => {
            return Err(StoreError::invalid(
                "invalid_parameter",
                format!("type must be string, hash, set, list or zset, not {other:?}"),
            )
            .into());
        }
    };
    let now = now_ms();
    let max_response_bytes = state.max_response_bytes;
    let body = state
        .db(move |conn| {
            let mut page = match &within {
                Some(prefixes) => store::scan_within(conn, now, prefixes, &args)?,
                None => store::scan(conn, now, &args)?,
            };
            let cursor = page.next_after.as_deref().map(cursor::encode);
            if let Some(kind) = &kind {
                page.rows.retain(|row| &row.kind == kind);
            }
            Ok(if with_values {
                let budget = ResponseBudget::new(max_response_bytes);
                for row in &page.rows {
                    budget.charge(row.key.len() + row.value.len())?;
                }
                let items = page
                    .rows
                    .into_iter()
                    .map(|row| KeyView::new(row, now))
                    .collect::<Result<Vec<_>, _>>()?;
                ScanView::Items(ItemsPage { items, cursor })
            } else {
                let keys = page.rows.into_iter().map(|row| row.key).collect();
                ScanView::Keys(KeysPage { keys, cursor })
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `DELETE /_keys?prefix=P` or `?all=true`.
#[utoipa::path(delete, path = "/_keys", tag = "collection", operation_id = "delete_keys",
    params(
        ("prefix" = Option<String>, Query, description = "Delete the keys starting with this (not empty)"),
        ("all" = Option<String>, Query, description = "`true`/`1`: delete every key", pattern = "^(true|false|1|0)$"),
    ),
    responses(
        (status = 200, description = "How many live keys were deleted", body = BulkDeleteView),
    ))]
pub async fn delete_keys(
    req: HttpRequest,
    query: web::Query<KeysQuery>,
    reach: Reach,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let all = query_flag("all", query.all.as_deref())?;
    let scope = match (query.prefix.as_deref(), all) {
        (Some(prefix), false) if !prefix.is_empty() => KeyScope::Prefix(prefix.to_owned()),
        (None, true) => KeyScope::All,
        (Some(_), true) => {
            return Err(ApiError::BadRequest(
                "give prefix or all=true, not both".into(),
            ));
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give a non-empty prefix (DELETE /_keys?prefix=P) or all=true".into(),
            ));
        }
    };
    // A scoped key deletes within its prefixes: `all=true` is all of its keys.
    let scopes = match (&reach.0, scope) {
        (None, scope) => vec![scope],
        (Some(_), KeyScope::Prefix(prefix)) => {
            reach.check_prefix(&prefix)?;
            vec![KeyScope::Prefix(prefix)]
        }
        (Some(reachable), KeyScope::All) => reachable
            .prefixes()
            .iter()
            .map(|p| KeyScope::Prefix(p.clone()))
            .collect(),
    };
    let idempotent = idempotency::request_with_body(&req, &[], state.idempotency_retention_ms)?;
    state
        .write_answer(
            idempotent,
            now_ms(),
            move |tx| {
                scopes
                    .iter()
                    .try_fold(0, |total, scope| Ok(total + tx.delete_keys(scope)?))
            },
            |deleted| StoredResponse::json(200, &BulkDeleteView::new(deleted), None),
        )
        .await
}

/// `POST /_tx`. A read-only API key may run it when every op reads (get, check).
#[utoipa::path(post, path = "/_tx", tag = "collection", operation_id = "transaction",
    request_body(content = TxRequest, description = "Parsed as JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "All ops applied; one result per op", body = TxView),
        (status = 409, description = "An op failed (`op`, `key` name it); nothing applied", body = ErrorBody),
        (status = 412, description = "A check or precondition failed (`op`, `key` name it); nothing applied", body = ErrorBody),
    ))]
pub async fn transaction(
    req: HttpRequest,
    access: Access,
    reach: Reach,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let ops = tx::parse_ops(json_body(&body)?, now)?;
    if access == Access::ReadOnly && ops.iter().any(tx::TxOp::is_write) {
        return Err(ApiError::Forbidden);
    }
    // Every op's key within a scoped key's prefixes, or nothing runs.
    for (index, op) in ops.iter().enumerate() {
        reach.check(op.key()).map_err(|err| match err {
            ApiError::OutOfReach(why) => ApiError::OutOfReach(format!("op {index}: {why}")),
            other => other,
        })?;
    }
    let idempotent = idempotency::request_with_body(&req, &body, state.idempotency_retention_ms)?;
    let max_response_bytes = state.max_response_bytes;
    let (deadline, _client) = Deadline::after(state.request_timeout);
    let deadline = deadline.watching(peer::probe(&req));
    state
        .write_answer(
            idempotent,
            now,
            move |tx| {
                let budget = ResponseBudget::new(max_response_bytes);
                tx::run_ops(tx, &ops, &budget, &deadline)
            },
            |view| StoredResponse::json(200, &view, None),
        )
        .await
}

/// `GET /_stats`.
#[utoipa::path(get, path = "/_stats", tag = "collection", operation_id = "stats",
    responses((status = 200, description = "Counts of the live store", body = StatsView)))]
pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database = state.store.backend_name();
    let stats = state.db(|conn| store::stats(conn, now_ms())).await?;
    Ok(HttpResponse::Ok().json(StatsView::new(stats, database)))
}
