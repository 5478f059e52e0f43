//! `kv_keys`, `kv_keys_expiring` and `kv_store_version` for `/_metrics`, without counting the
//! whole table on every scrape.
//!
//! Counting is a scan of the table (`SELECT count(*)` with the expiry filter), so it runs at
//! most once per `--key-count-interval` seconds, and only while someone scrapes: a scrape that
//! finds the figures older than the interval answers with them at once and starts a count in
//! the background for the next scrape. The very first scrape waits for its count, so the
//! gauges never show an uncounted 0. `kv_keys_counted_timestamp_seconds` says how old they
//! are. An interval of 0 counts on every scrape (and waits for it): for small stores and tests.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::web;
use kv_core::{now_ms, store};

use super::{Metrics, unix_time};
use crate::state::AppState;

pub struct KeyCounts {
    interval: Duration,
    /// When the last count started (whether it succeeded or not).
    attempted_at: Mutex<Option<Instant>>,
    /// A background count is running.
    counting: AtomicBool,
}

/// What a scrape does about the key counts.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Count now and wait for it.
    CountAndWait,
    /// Answer with the figures at hand; count in the background for the next scrape.
    CountInBackground,
    /// The figures are fresh enough.
    Nothing,
}

impl KeyCounts {
    pub fn new(interval: Duration) -> Self {
        KeyCounts {
            interval,
            attempted_at: Mutex::new(None),
            counting: AtomicBool::new(false),
        }
    }

    fn plan(&self, now: Instant) -> Plan {
        let mut attempted_at = self
            .attempted_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let plan = match *attempted_at {
            _ if self.interval.is_zero() => Plan::CountAndWait,
            None => Plan::CountAndWait,
            Some(at) if now.duration_since(at) < self.interval => Plan::Nothing,
            Some(_) if self.counting.swap(true, Ordering::SeqCst) => Plan::Nothing,
            Some(_) => Plan::CountInBackground,
        };
        if plan != Plan::Nothing {
            *attempted_at = Some(now);
        }
        plan
    }
}

/// Brings the key gauges up to date as far as the interval asks, before a scrape renders.
pub async fn before_scrape(state: web::Data<AppState>, metrics: web::Data<Metrics>) {
    match metrics.key_counts.plan(Instant::now()) {
        Plan::Nothing => {}
        Plan::CountAndWait => count(&state, &metrics).await,
        Plan::CountInBackground => {
            actix_web::rt::spawn(async move {
                count(&state, &metrics).await;
                metrics.key_counts.counting.store(false, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_at_most_once_per_interval_and_first_waits() {
        let counts = KeyCounts::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(counts.plan(t0), Plan::CountAndWait);
        assert_eq!(counts.plan(t0 + Duration::from_secs(29)), Plan::Nothing);
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(counts.plan(t1), Plan::CountInBackground);
        // While that count runs, later scrapes start no other.
        assert_eq!(counts.plan(t1 + Duration::from_secs(40)), Plan::Nothing);
        counts.counting.store(false, Ordering::SeqCst);
        assert_eq!(
            counts.plan(t1 + Duration::from_secs(41)),
            Plan::CountInBackground
        );
    }

    #[test]
    fn interval_zero_counts_on_every_scrape() {
        let counts = KeyCounts::new(Duration::ZERO);
        let t0 = Instant::now();
        assert_eq!(counts.plan(t0), Plan::CountAndWait);
        assert_eq!(counts.plan(t0), Plan::CountAndWait);
    }
}
