//! `/_health/live`, `/_health`, `/_health/ready`.

use actix_web::{HttpResponse, web};
use kv_core::store;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The body of the health checks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthView {
    /// `ok` or `unavailable`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// `sqlite` or `postgres` (not on `/_health/live`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    database: Option<&'static str>,
    /// What is wrong, when unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// `database_unavailable`, when unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    code: Option<&'static str>,
    /// The read replicas (`--read-replica`), when there are any. A replica's trouble never
    /// makes the server unavailable: the primary answers its reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<Vec<ReplicaHealth>>,
}

/// A read replica in `/_health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaHealth {
    /// Its URL, password redacted.
    url: String,
    /// `ok` (in rotation), `lagging` (further behind than --replica-max-lag-ms) or `down`
    /// (unreachable, failing, or not a standby of this primary).
    #[schema(value_type = String, example = "ok")]
    state: &'static str,
    /// How far behind it was when last seen, in milliseconds: how long this server had known
    /// of a newer store version.
    lag_ms: u64,
}

fn replicas(state: &AppState) -> Option<Vec<ReplicaHealth>> {
    if !state.store.has_replicas() {
        return None;
    }
    let list = state.store.replica_status().into_iter();
    Some(
        list.map(|replica| ReplicaHealth {
            url: replica.url,
            state: replica.state.name(),
            lag_ms: u64::try_from(replica.lag.as_millis()).unwrap_or(u64::MAX),
        })
        .collect(),
    )
}

/// The process is up; the database is not touched.
#[utoipa::path(get, path = "/_health/live", tag = "server", operation_id = "live", security(()),
    responses((status = 200, description = "The process is up", body = HealthView)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HealthView {
        status: "ok",
        database: None,
        error: None,
        code: None,
        replicas: None,
    })
}

/// The database answers, and no request met a database fault (busy, read-only, disk full) in
/// the last 30 s (`FAULT_MEMORY`) without a write succeeding since.
#[utoipa::path(get, path = "/_health", tag = "server", operation_id = "health", security(()),
    responses(
        (status = 200, description = "The database answers", body = HealthView),
        (status = 503, description = "The database does not answer, or a request met a database fault lately", body = HealthView,
            headers(("Retry-After" = String, description = "Seconds"))),
    ))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.backend_name();
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
        None => HttpResponse::Ok().json(HealthView {
            status: "ok",
            database: Some(database),
            error: None,
            code: None,
            replicas: replicas(&state),
        }),
        Some(error) => {
            log::warn!("readiness check failed: {error}");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(HealthView {
                    status: "unavailable",
                    database: Some(database),
                    error: Some(error),
                    code: Some("database_unavailable"),
                    replicas: replicas(&state),
                })
        }
    }
}
