//! `/_health/live`, `/_health`, `/_health/ready`, and the JSON answers for unknown routes.

use actix_web::{HttpRequest, HttpResponse, web};
use kv_core::store;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// The process is up; the database is not touched.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers, and no request ran into a database fault (busy, read-only, disk full)
/// in the last `FAULT_MEMORY` without a write succeeding since.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state.backend.name();
    let problem = match state.db(store::ping).await {
        Ok(()) => state.faults.recent().map(|(reason, age)| {
            format!(
                "database unavailable: {reason} (a request failed {}s ago)",
                age.as_secs()
            )
        }),
        Err(err) => Some(err.to_string()),
    };
    match problem {
        None => HttpResponse::Ok().json(json!({"status": "ok", "database": database})),
        Some(error) => {
            log::warn!("readiness check failed: {error}");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(json!({
                    "status": "unavailable",
                    "database": database,
                    "error": error,
                    "code": "database_unavailable",
                }))
        }
    }
}

pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(req.path().to_owned()))
}
