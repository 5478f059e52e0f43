//! kv-server: the HTTP + JSON API of kvstore. Handlers are thin; the store logic is kv-core.
//!
//! Modules import only modules below them (a submodule may use its parent's items):
//! 1. `error`, `throttle`, `tls`, `shutdown`, `health_check`, `commands`;
//! 2. `http`, `json_errors`, `idempotency`, `feed` (on `error`); `config` (on `commands`,
//!    `throttle`, `tls`); `startup` (on `config`);
//! 3. `state` (on `error`, `feed`, `idempotency`);
//! 4. `metrics` (its key counts and sweeps read through `state`), `housekeeping`;
//! 5. `auth` (on `config`, `metrics`, `throttle`, `http`);
//! 6. `handlers`, `upstash`, `watch` (on `auth`, `state`, …);
//! 7. `openapi`, `cors`, `routes`; then `run` here.

pub mod auth;
mod body_deadline;
pub mod commands;
pub mod config;
mod cors;
pub mod error;
pub mod feed;
mod handlers;
pub mod health_check;
mod housekeeping;
mod http;
pub mod idempotency;
mod json_errors;
pub mod metrics;
pub mod openapi;
mod origin_guard;
mod peer;
pub mod routes;
mod shutdown;
mod startup;
pub mod state;
pub mod throttle;
pub mod tls;
mod upstash;
mod versions;
pub mod watch;

use std::io;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware, web};
use kv_core::{ConnectionOptions, Store, StoreOptions};

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Opens and migrates the database, then serves until SIGINT (Ctrl+C) or SIGTERM, after which
/// in-flight requests finish (for at most 10 s) and this returns `Ok`.
pub async fn run(config: Config) -> io::Result<()> {
    let api_keys = auth::ApiKeys::from_config(&config).map_err(io::Error::other)?;
    // The certificate first: a bad file stops the server before it touches the database.
    let certificates = config
        .tls_files()
        .map(tls::CertStore::open)
        .transpose()
        .map_err(io::Error::other)?;
    let cors_origins = cors::parse_origins(&config.cors_origins).map_err(io::Error::other)?;
    let origin_policy = web::Data::new(origin_guard::OriginPolicy::new(
        &cors_origins,
        &config.bind,
        &config.allowed_hosts,
    ));
    let client_timeout = Duration::from_secs(config.client_timeout);
    let options = StoreOptions {
        connection: ConnectionOptions {
            sync: config.sync,
            busy_timeout: Duration::from_millis(config.busy_timeout_ms),
        },
        pool_size: config.pool_size,
        checkout_timeout: Duration::from_millis(config.busy_timeout_ms),
        replicas: Some(config.replicas()),
    };
    let store =
        Store::open(&config.database_url, &options).map_err(|e| io::Error::other(e.to_string()))?;
    let migrated = store.migrations_applied();
    if migrated > 0 {
        log::info!("applied {migrated} database migration(s)");
    }
    let clock_offset = kv_core::clock::database_offset_ms();
    if clock_offset.abs() >= 1000 {
        log::warn!(
            "this machine's clock differs from the database's by {clock_offset} ms; \
             expiries follow the database's clock"
        );
    }
    let feed = feed::Feed::spawn(store.feed_connector(), config.max_watchers)
        .map_err(|e| io::Error::other(format!("cannot start the change feed: {e}")))?;
    kv_core::lua::set_limits(kv_core::lua::Limits {
        time: Duration::from_millis(config.script_time_limit),
        memory: usize::try_from(config.script_memory_limit).unwrap_or(usize::MAX),
    });
    let state = web::Data::new(AppState {
        store,
        max_body_bytes: config.max_body_bytes,
        max_import_bytes: config.max_import_bytes,
        idempotency_retention_ms: i64::try_from(config.idempotency_retention)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
        faults: Default::default(),
        feed: feed.clone(),
        watch_progress: Duration::from_secs(config.watch_progress),
        busy_timeout: Duration::from_millis(config.busy_timeout_ms),
        request_timeout: Duration::from_secs(config.request_timeout),
        max_response_bytes: config.max_response_bytes,
    });
    housekeeping::spawn(
        state.clone(),
        config.changes_retention(),
        config.active_expiry,
    );
    let metrics = web::Data::new(
        Metrics::new(Duration::from_secs(config.key_count_interval)).map_err(io::Error::other)?,
    );
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let max_body = config.max_body_bytes;
    let open_to_all = api_keys.is_empty();
    let openapi = web::Data::new(openapi::OpenApiDocument::new(!open_to_all));
    let api_keys = web::Data::new(api_keys);
    // The access log renders every request's line (address, request line, a timestamp) before
    // `log` filters it: skipped altogether when its level is off (`RUST_LOG=warn`).
    let access_log = log::log_enabled!(target: "actix_web::middleware::logger", log::Level::Info);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics.clone())
            .app_data(api_keys.clone())
            .app_data(openapi.clone())
            .app_data(origin_policy.clone())
            .app_data(web::Data::new(body_deadline::ClientTimeout(client_timeout)))
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::BadRequest(format!("invalid query string: {err}")).into()
            }))
            .configure(routes::configure)
            .wrap(middleware::from_fn(versions::middleware))
            .wrap(middleware::from_fn(auth::require_key))
            .wrap(cors::middleware(&cors_origins))
            .wrap(middleware::from_fn(origin_guard::check))
            .wrap(middleware::from_fn(body_deadline::limit))
            .wrap(json_errors::middleware(max_body))
            // Never log request headers here: they carry the API keys.
            .wrap(middleware::from_fn(metrics::middleware::track))
            .wrap(middleware::Condition::new(
                access_log,
                // The request line without `access_token` (see `auth`).
                middleware::Logger::new("%a \"%{request}xi\" %s %b %Dms")
                    .custom_request_replace("request", auth::request_line_for_log),
            ))
    })
    .workers(workers)
    .client_request_timeout(client_timeout)
    .on_connect(peer::on_connect)
    .shutdown_timeout(10)
    .shutdown_signal({
        let stop = shutdown::signal()?;
        async move {
            stop.await;
            // Watchers end at once; the rest finish their requests.
            feed.close();
        }
    });
    let server = match &certificates {
        Some(store) => {
            let tls = store.server_config().map_err(io::Error::other)?;
            tls::reload_on_sighup(std::sync::Arc::clone(store))?;
            server.bind_rustls_0_23(&config.bind, tls)?
        }
        None => server.bind(&config.bind)?,
    };
    startup::log_configuration(&config, &server.addrs(), workers);
    for addr in server
        .addrs()
        .iter()
        .filter(|addr| !addr.ip().is_loopback())
    {
        if open_to_all {
            log::warn!(
                "kv-server listens on {addr}, which is not a loopback address, and no API keys \
                 are configured: anyone who can reach it can read and write every key. Set \
                 --api-key / --api-keys-file (see docs/SECURITY.md)"
            );
        }
        if certificates.is_none() {
            log::warn!(
                "kv-server listens on {addr}, which is not a loopback address, without TLS: \
                 API keys and values cross the network in clear text. Set --tls-cert and \
                 --tls-key (see docs/SECURITY.md), or put a TLS-terminating proxy in front"
            );
        }
    }
    server.run().await
}
