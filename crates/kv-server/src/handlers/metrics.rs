//! `GET /_metrics`: Prometheus text format.

use actix_web::{HttpResponse, web};
use kv_core::StoreError;

use crate::error::ApiError;
use crate::metrics::{CONTENT_TYPE, Metrics, scrape};
use crate::state::AppState;

/// Prometheus text: requests by route template and status, latency, keys, expired keys (lazily
/// and by sweeps), pool, read replicas.
#[utoipa::path(get, path = "/_metrics", tag = "server", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format (see docs/OPERATIONS.md)",
        content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    scrape::count_keys(state.clone(), metrics.clone()).await;
    scrape::count_swept(&state, &metrics).await;
    metrics.observe_pool(state.store.pool());
    metrics.observe_feed(&state.feed);
    metrics.observe_replicas(&state.store);
    let body = metrics
        .render()
        .map_err(|e| StoreError::Internal(format!("rendering metrics failed: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}
