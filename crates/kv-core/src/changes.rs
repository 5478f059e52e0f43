//! The change log behind `GET /_watch`: one row per change, written in the same transaction
//! as the write that made it ([`crate::store::Tx`] records them), so the log holds exactly the
//! committed changes, in version order. All changes of one transaction carry its version and
//! are numbered by `seq` within it. Removing an expired row is a change too (`expired`), with a
//! version of its own transaction, whoever removes it (a read, a write over it, a bulk delete,
//! the server's expiry timer or kv-sweeper).
//!
//! The log is kept for a retention (age and row count, [`Retention`]) and trimmed oldest first,
//! whole versions at a time ([`trim`]); `kv_changes_trimmed` remembers the newest version
//! trimmed, so a reader can tell "nothing happened" from "history gone".

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use crate::backend::{self, DbConnection, with_conn};
use crate::error::StoreError;
pub use crate::model::{Change, ChangeOp};
use crate::schema::{kv_changes, kv_changes_trimmed, kv_meta};

/// Rows per multi-row insert (7 parameters each, under SQLite's 32,766).
const INSERT_CHUNK: usize = 1000;

/// Appends `changes` to the log, inside the caller's write transaction. One change (a plain
/// write's) goes in a one-row insert, whose prepared statement the connection keeps: diesel
/// prepares a multi-row insert anew each time.
pub(crate) fn insert(conn: &mut DbConnection, changes: &[Change]) -> QueryResult<()> {
    if let [change] = changes {
        with_conn!(conn, c => diesel::insert_into(kv_changes::table).values(change).execute(c))?;
        return Ok(());
    }
    for chunk in changes.chunks(INSERT_CHUNK) {
        with_conn!(conn, c => diesel::insert_into(kv_changes::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// Records the removal of every row whose key is in `lower <= key < upper` (no `upper`: to the
/// end) in one statement, without bringing the rows into memory: `delete` for live rows,
/// `expired` for rows expired at `now`. Numbered from `first_seq` in key order. Returns how many
/// it recorded.
pub(crate) fn record_range_removal(
    conn: &mut DbConnection,
    version: i64,
    first_seq: i64,
    now: i64,
    lower: &str,
    upper: Option<&str>,
) -> QueryResult<usize> {
    let query = diesel::sql_query(
        "INSERT INTO kv_changes (version, seq, key, op, value, expires_at, at_ms) \
         SELECT $1, $2 + ROW_NUMBER() OVER (ORDER BY key) - 1, key, \
                CASE WHEN expires_at IS NOT NULL AND expires_at <= $3 \
                     THEN 'expired' ELSE 'delete' END, \
                NULL, NULL, $3 \
         FROM kv_store WHERE key >= $4 AND ($5 IS NULL OR key < $5)",
    )
    .bind::<BigInt, _>(version)
    .bind::<BigInt, _>(first_seq)
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(lower)
    .bind::<Nullable<Text>, _>(upper);
    with_conn!(conn, c => query.clone().execute(c))
}

/// A read of the log: changes in version order, then where the read stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// Whole versions: a transaction's changes are never split. A value longer than the read's
    /// `max_value_bytes` is not read: `None`, with its change's index in `omitted`.
    pub changes: Vec<Change>,
    /// The changes (by index in `changes`) whose value was too long to read.
    pub omitted: Vec<usize>,
    /// Every change at or below this version is gone from the log.
    pub trimmed: i64,
    /// Every change at or below this version has been read (those above `after`, that is):
    /// the store's current version, or the last version read when the read stopped early.
    pub scanned: i64,
}

/// A change as [`read_after`] selects it, its value cut to NULL when long.
type ChangeRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
);

/// The changes with versions above `after`: at least `max_rows` rows when there are that many
/// (more to finish the last version), all read from one snapshot together with the trim mark
/// and the store's version.
pub fn read_after(
    conn: &mut DbConnection,
    after: i64,
    max_rows: usize,
    max_value_bytes: usize,
) -> Result<LogRead, StoreError> {
    let limit = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
    backend::read_snapshot(conn, |conn| {
        let trimmed = trimmed_version(conn)?;
        let current: i64 = with_conn!(conn, c => kv_meta::table
            .find(1)
            .select(kv_meta::version)
            .get_result(c))?;
        // A long value stays in the database: the query returns NULL and a flag instead.
        let value = format!("CASE WHEN length(value) > {max_value_bytes} THEN NULL ELSE value END");
        let long = format!("COALESCE(length(value) > {max_value_bytes}, FALSE)");
        let columns = || {
            (
                (
                    kv_changes::version,
                    kv_changes::seq,
                    kv_changes::key,
                    kv_changes::op,
                    diesel::dsl::sql::<Nullable<Text>>(&value),
                    kv_changes::expires_at,
                    kv_changes::at_ms,
                    kv_changes::kind,
                    kv_changes::command,
                ),
                diesel::dsl::sql::<diesel::sql_types::Bool>(&long),
            )
        };
        let mut rows: Vec<(ChangeRow, bool)> = with_conn!(conn, c => kv_changes::table
            .filter(kv_changes::version.gt(after))
            .order((kv_changes::version.asc(), kv_changes::seq.asc()))
            .limit(limit)
            .select(columns())
            .load(c))?;
        let full = rows.len() as i64 == limit;
        let scanned = match rows.last() {
            Some((last, _)) if full => {
                let (version, seq) = (last.0, last.1);
                let rest: Vec<(ChangeRow, bool)> = with_conn!(conn, c => kv_changes::table
                    .filter(kv_changes::version.eq(version))
                    .filter(kv_changes::seq.gt(seq))
                    .order(kv_changes::seq.asc())
                    .select(columns())
                    .load(c))?;
                rows.extend(rest);
                version
            }
            _ => current.max(after),
        };
        let omitted = rows
            .iter()
            .enumerate()
            .filter_map(|(index, (_, long))| long.then_some(index))
            .collect();
        let changes = rows
            .into_iter()
            .map(|(row, _)| Change {
                version: row.0,
                seq: row.1,
                key: row.2,
                op: row.3,
                value: row.4,
                expires_at: row.5,
                at_ms: row.6,
                kind: row.7,
                command: row.8,
            })
            .collect();
        Ok(LogRead {
            changes,
            omitted,
            trimmed,
            scanned,
        })
    })
}

/// Where the log stands: `(trimmed, current)`, the trim mark and the store's version, read
/// together. A reader may resume from any version in `trimmed..=current`.
pub fn position(conn: &mut DbConnection) -> Result<(i64, i64), StoreError> {
    backend::read_snapshot(conn, |conn| {
        let trimmed = trimmed_version(conn)?;
        Ok((trimmed, backend::current_version(conn)?))
    })
}

/// The newest version trimmed from the log: a reader resuming below it has lost history.
pub fn trimmed_version(conn: &mut DbConnection) -> QueryResult<i64> {
    with_conn!(conn, c => kv_changes_trimmed::table
        .find(1)
        .select(kv_changes_trimmed::version)
        .get_result(c))
}

/// Declares every change at or below `version` gone (a trim, or a copy that wrote rows
/// without their history): a reader resuming below it is told to re-list.
pub(crate) fn raise_trim_mark(conn: &mut DbConnection, version: i64) -> QueryResult<()> {
    with_conn!(conn, c => diesel::update(
        kv_changes_trimmed::table
            .find(1)
            .filter(kv_changes_trimmed::version.lt(version))
    )
    .set(kv_changes_trimmed::version.eq(version))
    .execute(c))
    .map(|_| ())
}

/// How long the log keeps changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Changes older than this (ms) are trimmed.
    pub max_age_ms: i64,
    /// At most this many rows are kept (the newest).
    pub max_rows: i64,
}

impl Retention {
    /// `--changes-retention` (seconds) and `--changes-max-rows`, as both binaries take them.
    pub fn new(max_age_secs: u64, max_rows: u64) -> Retention {
        Retention {
            max_age_ms: i64::try_from(max_age_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            max_rows: i64::try_from(max_rows).unwrap_or(i64::MAX),
        }
    }
}

/// Rows one trim step looks at (and, about, deletes): the write lock is never held for long.
const TRIM_STEP_ROWS: i64 = 5000;

/// Trims changes past `retention` at `now`, oldest first, whole versions at a time, in short
/// transactions; raises the trim mark with each. Returns how many rows went.
pub fn trim(conn: &mut DbConnection, now: i64, retention: &Retention) -> Result<u64, StoreError> {
    let cutoff = now.saturating_sub(retention.max_age_ms);
    // The newest version past the row cap: it and every version below it go.
    let over_cap: Option<i64> = with_conn!(conn, c => kv_changes::table
        .order((kv_changes::version.desc(), kv_changes::seq.desc()))
        .offset(retention.max_rows.max(0))
        .select(kv_changes::version)
        .first(c)
        .optional())?;
    let mut total = 0u64;
    loop {
        let oldest: Vec<(i64, i64)> = with_conn!(conn, c => kv_changes::table
            .order((kv_changes::version.asc(), kv_changes::seq.asc()))
            .limit(TRIM_STEP_ROWS)
            .select((kv_changes::version, kv_changes::at_ms))
            .load(c))?;
        let Some(&(last_seen, _)) = oldest.last() else {
            return Ok(total);
        };
        // The oldest versions made before the cutoff, up to the first one made after it.
        let too_old = oldest
            .iter()
            .take_while(|(_, at)| *at < cutoff)
            .map(|(version, _)| *version)
            .last();
        let Some(cut) = too_old.max(over_cap.map(|v| v.min(last_seen))) else {
            return Ok(total);
        };
        let deleted = backend::write_transaction(conn, |conn| {
            let deleted = with_conn!(conn, c => diesel::delete(
                kv_changes::table.filter(kv_changes::version.le(cut))
            )
            .execute(c))?;
            raise_trim_mark(conn, cut)?;
            Ok(deleted)
        })?;
        total += deleted as u64;
        if deleted == 0 {
            return Ok(total);
        }
    }
}
