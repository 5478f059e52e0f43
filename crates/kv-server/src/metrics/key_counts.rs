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

pub struct KeyCounts {
    interval: Duration,
    /// When the last count started (whether it succeeded or not).
    attempted_at: Mutex<Option<Instant>>,
    /// A background count is running.
    counting: AtomicBool,
}

/// What a scrape does about the key counts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
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

    /// A background count has ended: the next due scrape may start another.
    pub(super) fn count_ended(&self) {
        self.counting.store(false, Ordering::SeqCst);
    }

    pub(super) fn plan(&self, now: Instant) -> Plan {
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
