//! The one start-up log line: where the server listens and how it is configured, without
//! secrets (API keys are counted, never shown; the database URL's password is redacted).

use std::net::SocketAddr;

use crate::config::Config;

pub fn log_configuration(config: &Config, addrs: &[SocketAddr], workers: usize) {
    let scheme = if config.tls_files().is_some() {
        "https"
    } else {
        "http"
    };
    let listen = addrs
        .iter()
        .map(|addr| format!("{scheme}://{addr}"))
        .collect::<Vec<_>>()
        .join(" and ");
    let database = config.database_url.redacted();
    let api_keys_file = config
        .api_keys_file
        .as_ref()
        .map_or_else(|| "none".to_owned(), |path| path.display().to_string());
    let cors_origins = if config.cors_origins.is_empty() {
        "none".to_owned()
    } else {
        config.cors_origins.join(",")
    };
    log::info!(
        version = env!("CARGO_PKG_VERSION"),
        backend = config.database_url.backend().name(),
        database = database.as_str(),
        workers = workers,
        pool_size = config.pool_size,
        sync:% = config.sync,
        busy_timeout_ms = config.busy_timeout_ms,
        max_body_bytes = config.max_body_bytes,
        api_keys = config.api_keys.len(),
        read_only_keys = config.read_only_keys.len(),
        api_keys_file = api_keys_file.as_str(),
        cors_origins = cors_origins.as_str(),
        key_count_interval_s = config.key_count_interval,
        changes_retention_s = config.changes_retention,
        changes_max_rows = config.changes_max_rows,
        max_watchers = config.max_watchers,
        watch_progress_s = config.watch_progress,
        active_expiry = config.active_expiry,
        read_replicas = config.read_replicas.len(),
        replica_wait_ms = config.replica_wait_ms,
        replica_max_lag_ms = config.replica_max_lag_ms,
        log_format:% = config.log_format;
        "kv-server listening on {listen}"
    );
}
