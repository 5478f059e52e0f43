//! `/_keys` (scan, bulk delete), `/_tx` and `/_stats`.

use actix_web::{HttpResponse, web};
use kv_core::request::{query_flag, scan_args};
use kv_core::store::{self, KeyScope};
use kv_core::view::{BulkDeleteView, ItemsPage, KeyView, KeysPage, ScanView, StatsView};
use kv_core::{cursor, now_ms, tx};
use serde::Deserialize;

use crate::error::ApiError;
use crate::http::json_body;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    prefix: Option<String>,
    #[serde(rename = "match")]
    pattern: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    values: Option<String>,
    all: Option<String>,
}

/// `GET /_keys`: one page of live keys (or items with values) in byte order.
pub async fn scan(
    query: web::Query<KeysQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let args = scan_args(
        q.prefix.as_deref(),
        q.pattern.as_deref(),
        q.limit.as_deref(),
        q.cursor.as_deref(),
    )?;
    let with_values = query_flag("values", q.values.as_deref())?;
    let now = now_ms();
    let body = state
        .db(move |conn| {
            let page = store::scan(conn, now, &args)?;
            let cursor = page.next_after.as_deref().map(cursor::encode);
            Ok(if with_values {
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
pub async fn delete_keys(
    query: web::Query<KeysQuery>,
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
    let now = now_ms();
    let deleted = state.write(now, move |tx| tx.delete_keys(&scope)).await?;
    Ok(HttpResponse::Ok().json(BulkDeleteView::new(deleted)))
}

/// `POST /_tx`.
pub async fn transaction(
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let ops = tx::parse_ops(json_body(&body)?, now)?;
    let view = state.write(now, move |tx| tx::run_ops(tx, &ops)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /_stats`.
pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database = state.backend.name();
    let stats = state.db(|conn| store::stats(conn, now_ms())).await?;
    Ok(HttpResponse::Ok().json(StatsView::new(stats, database)))
}
