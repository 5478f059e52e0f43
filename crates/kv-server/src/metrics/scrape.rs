//! What a scrape brings up to date before it renders: the key gauges (`kv_keys`,
//! `kv_keys_expiring`, `kv_store_version`, counted at most once per interval, see
//! [`super::key_counts`]) and `kv_keys_expired_swept_total`, the keys kv-sweeper deleted:
//! another process deletes them, so the server reads the count the sweeps keep in the database
//! (one row, read on every scrape: a primary-key lookup, unlike the key counts' scan).

use std::time::Instant;

use actix_web::web;
use kv_core::{now_ms, store};

use super::key_counts::Plan;
use super::registry::{Metrics, unix_time};
use crate::state::AppState;

/// Brings the key gauges up to date as far as the interval asks, before a scrape renders.
pub async fn count_keys(state: web::Data<AppState>, metrics: web::Data<Metrics>) {
    match metrics.key_counts.plan(Instant::now()) {
        Plan::Nothing => {}
        Plan::CountAndWait => count(&state, &metrics).await,
        Plan::CountInBackground => {
            actix_web::rt::spawn(async move {
                count(&state, &metrics).await;
                metrics.key_counts.count_ended();
            });
        }
    }
}

/// Counts live and expiring keys (one database call) into the gauges. On failure the gauges
/// keep their last figures (their timestamp shows their age) and the error is logged.
async fn count(state: &AppState, metrics: &Metrics) {
    let started = Instant::now();
    match state.db(|conn| store::stats(conn, now_ms())).await {
        Ok(stats) => {
            metrics.keys.set(stats.keys);
            metrics.keys_expiring.set(stats.expiring);
            metrics.store_version.set(stats.version);
            metrics.keys_counted_at.set(unix_time());
            metrics
                .keys_count_seconds
                .set(started.elapsed().as_secs_f64());
        }
        Err(err) => log::warn!("counting keys for /_metrics failed: {err}"),
    }
}

/// Brings the counter up to the database's count before a scrape renders. On failure it keeps
/// its last figure and the error is logged.
pub async fn count_swept(state: &AppState, metrics: &Metrics) {
    match state.db(store::swept_keys).await {
        Ok(total) => advance(metrics, total),
        Err(err) => log::warn!("reading the sweeps' count for /_metrics failed: {err}"),
    }
}

/// Moves the counter up to `total`. A counter never goes down: a smaller count (a database
/// replaced under a running server) leaves it where it is.
fn advance(metrics: &Metrics, total: i64) {
    let total = u64::try_from(total).unwrap_or(0);
    let shown = metrics.swept.get();
    if total > shown {
        metrics.swept.inc_by(total - shown);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_counter_follows_the_database_count_and_never_goes_down() {
        let metrics = Metrics::new(Duration::from_secs(30)).expect("metrics");
        advance(&metrics, 5);
        assert_eq!(metrics.swept.get(), 5);
        advance(&metrics, 12);
        assert_eq!(metrics.swept.get(), 12);
        advance(&metrics, 3);
        assert_eq!(metrics.swept.get(), 12);
    }
}
