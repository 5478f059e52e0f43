//! `kv_keys_expired_swept_total`: the keys kv-sweeper deleted. Another process deletes them, so
//! the server reads the count the sweeps keep in the database (one row, read on every scrape:
//! a primary-key lookup, unlike the key counts' scan).

use kv_core::store;

use super::Metrics;
use crate::state::AppState;

/// Brings the counter up to the database's count before a scrape renders. On failure it keeps
/// its last figure and the error is logged.
pub async fn before_scrape(state: &AppState, metrics: &Metrics) {
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
