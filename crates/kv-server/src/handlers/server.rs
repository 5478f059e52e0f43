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

/// The database answers.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state.backend.name();
    match state.db(store::ping).await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok", "database": database})),
        Err(err) => {
            log::warn!("readiness check failed: {err}");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(json!({
                    "status": "unavailable",
                    "database": database,
                    "error": err.to_string(),
                    "code": "database_unavailable",
                }))
        }
    }
}

pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(req.path().to_owned()))
}
