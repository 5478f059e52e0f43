//! The one clock every expiry decision uses: the database's.
//!
//! With SQLite that is this machine's clock (the file is local). With PostgreSQL, servers and
//! sweepers on several machines share one database, and a key must expire at the same moment
//! for all of them: a process whose own clock runs ahead would otherwise report live keys as
//! expired and delete them (lazily, or in a sweep). So the process follows the PostgreSQL
//! server's clock: the backend measures the offset between it and the local clock whenever it
//! talks to the database anyway (on connect and on every pool checkout), and [`now_ms`] is the
//! local clock plus that offset. No extra round trip per request; the error is at most half a
//! round trip to the database.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// Database clock minus local clock, in milliseconds (0 with SQLite).
static DATABASE_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// The current time in unix milliseconds, on the database's clock.
pub fn now_ms() -> i64 {
    local_now_ms().saturating_add(DATABASE_OFFSET_MS.load(Ordering::Relaxed))
}

/// This machine's clock in unix milliseconds.
pub fn local_now_ms() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// How far the database's clock is ahead of this machine's (negative: behind).
pub fn database_offset_ms() -> i64 {
    DATABASE_OFFSET_MS.load(Ordering::Relaxed)
}

/// Records a reading of the database's clock, `database_ms`, taken by a query sent at local
/// time `sent` and answered at `received`: the reading is taken to be from the middle.
pub(crate) fn observe_database_clock(database_ms: i64, sent: i64, received: i64) {
    DATABASE_OFFSET_MS.store(offset_of(database_ms, sent, received), Ordering::Relaxed);
}

fn offset_of(database_ms: i64, sent: i64, received: i64) -> i64 {
    let midpoint = sent.saturating_add(received.saturating_sub(sent) / 2);
    database_ms.saturating_sub(midpoint)
}

#[cfg(test)]
mod tests {
    use super::offset_of;

    #[test]
    fn a_reading_counts_from_the_middle_of_the_round_trip() {
        assert_eq!(offset_of(1_000, 1_000, 1_000), 0);
        assert_eq!(offset_of(1_010, 1_000, 1_020), 0);
        assert_eq!(offset_of(3_600_000 + 1_005, 1_000, 1_010), 3_600_000);
        assert_eq!(offset_of(1_000, 3_601_000, 3_601_000), -3_600_000);
    }
}
