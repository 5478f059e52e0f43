//! The newest store version this server knows to exist, and since when it has known each:
//! what a response's `Kv-Version` shows, what a `Kv-Min-Version` is compared with, and how a
//! read replica's lag is measured (in versions turned into time: how long the replica has been
//! behind a version this server knew of, see [`KnownVersion::lag`]).
//!
//! The server learns versions from its own writer's commits, from its reads of the primary
//! (the point reads carry the version in the same statement), and from the change feed
//! (other servers' writes, within its delivery delay).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// How long the timeline remembers when a version became known: lags longer than this are
/// reported as this long (the bound a replica may lag is at most [`KnownVersion::HORIZON`]).
const HORIZON: Duration = Duration::from_secs(120);

/// Versions learned within this long of the last entry share it (the timeline stays small
/// under any write rate: at most one entry per this period).
const RESOLUTION: Duration = Duration::from_millis(1);

/// The newest version known, with a timeline of when versions became known.
#[derive(Debug)]
pub struct KnownVersion {
    latest: AtomicI64,
    /// `(version, when it became known)`, oldest first, versions rising: an entry says every
    /// version up to it was known from that moment (or from an earlier entry's).
    timeline: Mutex<VecDeque<(i64, Instant)>>,
}

impl KnownVersion {
    /// The longest lag the timeline can measure.
    pub const HORIZON: Duration = HORIZON;

    /// Knows `version` (the store's version when the server started) from now on.
    pub fn new(version: i64) -> KnownVersion {
        KnownVersion {
            latest: AtomicI64::new(version),
            timeline: Mutex::new(VecDeque::from([(version, Instant::now())])),
        }
    }

    /// The newest version known.
    pub fn latest(&self) -> i64 {
        self.latest.load(Ordering::Acquire)
    }

    /// Learns that `version` exists (a commit, a read of the primary, the change feed).
    pub fn observe(&self, version: i64) {
        if self.latest.fetch_max(version, Ordering::AcqRel) >= version {
            return;
        }
        let now = Instant::now();
        let Ok(mut timeline) = self.timeline.lock() else {
            return;
        };
        match timeline.back_mut() {
            Some((newest, at)) if now.duration_since(*at) < RESOLUTION => {
                *newest = (*newest).max(version);
            }
            Some((newest, _)) if *newest >= version => {}
            _ => timeline.push_back((version, now)),
        }
        while timeline.len() > 1
            && timeline
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) > HORIZON)
        {
            timeline.pop_front();
        }
    }

    /// How far behind a replica at `version` is: how long this server has known of a newer
    /// version (zero when it knows of none), at most [`KnownVersion::HORIZON`].
    pub fn lag(&self, version: i64) -> Duration {
        if version >= self.latest() {
            return Duration::ZERO;
        }
        let Ok(timeline) = self.timeline.lock() else {
            return HORIZON;
        };
        // The first entry past `version`: when a version newer than the replica's was first known.
        let first_newer = timeline.partition_point(|(known, _)| *known <= version);
        match timeline.get(first_newer) {
            Some((_, at)) => at.elapsed().min(HORIZON),
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread::sleep;

    use super::*;

    #[test]
    fn a_replica_at_the_newest_version_has_no_lag() {
        let known = KnownVersion::new(5);
        assert_eq!(known.lag(5), Duration::ZERO);
        assert_eq!(known.lag(9), Duration::ZERO, "ahead of what is known");
        known.observe(7);
        assert_eq!(known.latest(), 7);
        assert_eq!(known.lag(7), Duration::ZERO);
    }

    #[test]
    fn lag_counts_from_when_a_newer_version_became_known() {
        let known = KnownVersion::new(1);
        sleep(Duration::from_millis(30));
        known.observe(2);
        sleep(Duration::from_millis(30));
        known.observe(3);
        let behind_one = known.lag(2);
        let behind_two = known.lag(1);
        assert!(behind_one < Duration::from_millis(30), "{behind_one:?}");
        assert!(behind_two >= Duration::from_millis(30), "{behind_two:?}");
        assert!(behind_two < Duration::from_millis(60), "{behind_two:?}");
    }

    #[test]
    fn older_versions_learned_later_change_nothing() {
        let known = KnownVersion::new(10);
        known.observe(4);
        assert_eq!(known.latest(), 10);
        assert_eq!(known.lag(10), Duration::ZERO);
        assert!(known.lag(9) < Duration::from_secs(1));
    }
}
