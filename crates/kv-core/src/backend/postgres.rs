//! PostgreSQL's side of the backend: the database's clock, key locks, the version counter
//! row, the sweeper's batch delete, and the statements of the group-commit writer's batch
//! ([`crate::writer`]).
//!
//! Every PostgreSQL statement here is a fixed SQL text, so diesel prepares it once per
//! connection and reuses it.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text};

use crate::clock;
use crate::model::KeyValue;
use crate::schema::{kv_meta, kv_store};

#[derive(QueryableByName)]
struct ClockRow {
    #[diesel(sql_type = BigInt)]
    now_ms: i64,
}

/// Reads the PostgreSQL server's clock and records its offset from ours (see [`clock`]).
pub(super) fn read_database_clock(c: &mut PgConnection) -> QueryResult<()> {
    let sent = clock::local_now_ms();
    let row = diesel::sql_query(
        "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms",
    )
    .get_result::<ClockRow>(c)?;
    clock::observe_database_clock(row.now_ms, sent, clock::local_now_ms());
    Ok(())
}

/// Locks `keys` by name until the transaction ends (transaction-scoped advisory locks), in
/// byte order, so that two transactions locking overlapping sets queue instead of
/// deadlocking. A key with no row cannot be locked otherwise.
fn lock_key_names(c: &mut PgConnection, keys: &[&str]) -> QueryResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) \
         FROM unnest($1::text[]) AS k ORDER BY k COLLATE \"C\"",
    )
    .bind::<Array<Text>, _>(keys)
    .execute(c)
    .map(|_| ())
}

/// The row of `key`, locked (see [`super::find_for_update`]).
pub(super) fn find_for_update(c: &mut PgConnection, key: &str) -> QueryResult<Option<KeyValue>> {
    let lock_row = |c: &mut PgConnection| {
        kv_store::table
            .find(key)
            .select(KeyValue::as_select())
            .for_update()
            .get_result(c)
            .optional()
    };
    if let Some(row) = lock_row(c)? {
        return Ok(Some(row));
    }
    lock_key_names(c, &[key])?;
    lock_row(c)
}

/// Locks `keys` (sorted, without duplicates): the rows there are, and the names of the others
/// (see [`super::lock_keys`]).
pub(super) fn lock_keys(c: &mut PgConnection, keys: &[&str]) -> QueryResult<()> {
    let found: Vec<String> = kv_store::table
        .filter(kv_store::key.eq_any(keys))
        .order(kv_store::key)
        .select(kv_store::key)
        .for_update()
        .load(c)?;
    let absent: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|key| found.binary_search_by(|f| f.as_str().cmp(key)).is_err())
        .collect();
    lock_key_names(c, &absent)
}

/// The start of a write batch: locks every key it will touch by name (whether it has a row or
/// not), then reads their rows and locks those too, so that the sweeper and bulk deletes pass
/// them by. Two round trips for the whole batch. Every writer of a key holds its name or its
/// row (see [`find_for_update`]), so nothing changes these rows before the batch commits.
pub(crate) fn lock_and_read(c: &mut PgConnection, keys: &[&str]) -> QueryResult<Vec<KeyValue>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    lock_key_names(c, keys)?;
    kv_store::table
        .filter(kv_store::key.eq_any(keys))
        .select(KeyValue::as_select())
        .for_update()
        .load(c)
}

/// Locks the version counter row until the transaction commits and returns the last version
/// handed out. Every write takes its version under this lock, so versions commit in order.
pub(crate) fn lock_version_counter(c: &mut PgConnection) -> QueryResult<i64> {
    kv_meta::table
        .find(1)
        .select(kv_meta::version)
        .for_update()
        .get_result(c)
}

/// Takes the next version for a write outside a batch (inside its transaction; the counter
/// row stays locked until it commits).
pub(super) fn next_version(c: &mut PgConnection) -> QueryResult<i64> {
    diesel::update(kv_meta::table.find(1))
        .set(kv_meta::version.eq(kv_meta::version + 1))
        .returning(kv_meta::version)
        .get_result(c)
}

/// The end of a write batch, in one statement: writes `puts` over whatever rows hold their
/// keys, deletes the rows of `removes`, and sets the version counter to `version`. No key is
/// in both.
pub(crate) fn write_batch(
    c: &mut PgConnection,
    puts: &[KeyValue],
    removes: &[&str],
    version: i64,
) -> QueryResult<()> {
    let column = |f: fn(&KeyValue) -> i64| puts.iter().map(f).collect::<Vec<i64>>();
    diesel::sql_query(
        "WITH put AS ( \
           INSERT INTO kv_store (key, value, version, created_at, updated_at, expires_at) \
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], \
                                $5::bigint[], $6::bigint[]) \
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             expires_at = EXCLUDED.expires_at), \
         removed AS (DELETE FROM kv_store WHERE key = ANY($7::text[])) \
         UPDATE kv_meta SET version = $8 WHERE id = 1",
    )
    .bind::<Array<Text>, _>(puts.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(puts.iter().map(|r| r.value.as_str()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(column(|r| r.version))
    .bind::<Array<BigInt>, _>(column(|r| r.created_at))
    .bind::<Array<BigInt>, _>(column(|r| r.updated_at))
    .bind::<Array<Nullable<BigInt>>, _>(puts.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(removes)
    .bind::<BigInt, _>(version)
    .execute(c)
    .map(|_| ())
}

/// Deletes up to `limit` rows expired at `now`, passing by rows another transaction has
/// locked (see [`super::delete_expired_batch`]).
pub(super) fn delete_expired_batch(
    c: &mut PgConnection,
    now: i64,
    limit: i64,
) -> QueryResult<usize> {
    // MATERIALIZED: the batch is picked (and locked) exactly once.
    diesel::sql_query(
        "WITH batch AS MATERIALIZED \
         (SELECT key FROM kv_store WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 \
          FOR UPDATE SKIP LOCKED) \
         DELETE FROM kv_store USING batch \
         WHERE kv_store.key = batch.key AND kv_store.expires_at <= $1",
    )
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(limit)
    .execute(c)
}
