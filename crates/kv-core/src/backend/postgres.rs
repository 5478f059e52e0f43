//! PostgreSQL's side of the backend: the database's clock, the version counter row (which is
//! also the database's write lock), the sweeper's batch delete, and the statements of the
//! group-commit writer's batch ([`crate::writer`]).
//!
//! Every PostgreSQL statement here is a fixed SQL text, so diesel prepares it once per
//! connection and reuses it.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text};

use crate::clock;
use crate::model::{Change, KeyValue, StoredValue};
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

/// The row of `key`. The caller's transaction holds the version counter row, which every
/// PostgreSQL write transaction locks first ([`lock_version_counter`], [`start_batch`]): it is
/// the database's write lock, as `BEGIN IMMEDIATE` is SQLite's, so nothing else changes the
/// row until the caller commits (the sweeper only removes expired rows, which read as absent).
pub(super) fn find(c: &mut PgConnection, key: &str) -> QueryResult<Option<KeyValue>> {
    kv_store::table
        .find(key)
        .select(KeyValue::as_select())
        .get_result(c)
        .optional()
}

/// The rows of `keys` that exist (the caller holds the version counter, see [`find`]).
pub(crate) fn read_rows(c: &mut PgConnection, keys: &[&str]) -> QueryResult<Vec<KeyValue>> {
    kv_store::table
        .filter(kv_store::key.eq_any(keys))
        .select(KeyValue::as_select())
        .load(c)
}

/// The store's version and the rows of `keys` that exist, in one statement, so in one
/// snapshot: the rows are as of that version (on a read replica too). For the batched point
/// reads ([`crate::point_reads`]).
pub(crate) fn rows_at_version(
    c: &mut PgConnection,
    keys: &[&str],
) -> QueryResult<(i64, Vec<(String, StoredValue)>)> {
    let found: Vec<(i64, Option<String>, Option<StoredValue>)> = kv_meta::table
        .left_join(kv_store::table.on(kv_store::key.eq_any(keys)))
        .filter(kv_meta::id.eq(1))
        .select((
            kv_meta::version,
            kv_store::key.nullable(),
            Option::<StoredValue>::as_select(),
        ))
        .load(c)?;
    let version = found.first().map_or(0, |(version, _, _)| *version);
    let rows = found
        .into_iter()
        .filter_map(|(_, key, row)| Some((key?, row?)))
        .collect();
    Ok((version, rows))
}

/// What [`start_batch`] read.
pub(crate) struct BatchStart {
    /// The version counter, locked until the batch commits.
    pub version: i64,
    /// The rows of the batch's keys that exist.
    pub rows: Vec<KeyValue>,
}

#[derive(QueryableByName)]
struct StartRow {
    #[diesel(sql_type = BigInt)]
    locked: i64,
    #[diesel(sql_type = BigInt)]
    seen: i64,
    #[diesel(sql_type = Nullable<Text>)]
    key: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    value: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    version: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    created_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    updated_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    expires_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    kind: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    coll: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    length: Option<i64>,
}

/// The start of a write batch, in one statement (one round trip): locks the version counter
/// row until the batch commits (the database's write lock, see [`find`]; versions then commit
/// in the order they are handed out) and reads the rows of `keys`.
///
/// The rows come from the statement's snapshot, taken before it waited for the lock: a write
/// transaction (on any server) that committed while this one waited is not in it. Every
/// write of live data moves the counter, so the statement also returns the counter as its
/// snapshot saw it: when that differs from the locked (latest) one, the rows are read again,
/// in a new statement, under the lock. Removals of expired rows move the counter too (each
/// records an `expired` event, see [`crate::changes`]).
pub(crate) fn start_batch(c: &mut PgConnection, keys: &[&str]) -> QueryResult<BatchStart> {
    let found = diesel::sql_query(
        "WITH counter AS MATERIALIZED ( \
           SELECT m.version AS locked, (SELECT version FROM kv_meta WHERE id = 1) AS seen \
           FROM kv_meta AS m WHERE m.id = 1 FOR UPDATE OF m), \
         found AS MATERIALIZED ( \
           SELECT key, value, version, created_at, updated_at, expires_at, kind, coll, length \
           FROM kv_store WHERE key = ANY($1)) \
         SELECT counter.locked, counter.seen, found.* FROM counter LEFT JOIN found ON true",
    )
    .bind::<Array<Text>, _>(keys)
    .load::<StartRow>(c)?;
    let Some(first) = found.first() else {
        return Err(diesel::result::Error::NotFound);
    };
    let version = first.locked;
    if first.locked != first.seen {
        return Ok(BatchStart {
            version,
            rows: read_rows(c, keys)?,
        });
    }
    let rows = found
        .into_iter()
        .filter_map(|row| {
            Some(KeyValue {
                key: row.key?,
                value: row.value?,
                version: row.version?,
                created_at: row.created_at?,
                updated_at: row.updated_at?,
                expires_at: row.expires_at,
                kind: row.kind?,
                coll: row.coll,
                length: row.length,
            })
        })
        .collect();
    Ok(BatchStart { version, rows })
}

/// Locks the version counter row until the transaction commits and returns the last version
/// handed out: a write transaction outside a batch takes it first (see [`find`]).
pub(crate) fn lock_version_counter(c: &mut PgConnection) -> QueryResult<i64> {
    kv_meta::table
        .find(1)
        .select(kv_meta::version)
        .for_update()
        .get_result(c)
}

/// Takes the next version for a write outside a batch (which holds the counter already).
pub(super) fn next_version(c: &mut PgConnection) -> QueryResult<i64> {
    diesel::update(kv_meta::table.find(1))
        .set(kv_meta::version.eq(kv_meta::version + 1))
        .returning(kv_meta::version)
        .get_result(c)
}

/// The end of a write batch, in one statement: writes `puts` over whatever rows hold their
/// keys, deletes the rows of `removes`, appends `log` to the change log and sets the version
/// counter to `version`. No key is in both `puts` and `removes`.
/// The channel a committed write notifies (its payload: the version), which servers' change
/// feeds LISTEN on. PostgreSQL delivers it at commit, never for a rollback.
pub const CHANGES_CHANNEL: &str = "kv_changes";

/// Tells listening servers that `version` changed the log (delivered when the transaction
/// commits).
pub(crate) fn notify_changes(c: &mut PgConnection, version: i64) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2::text)")
        .bind::<Text, _>(CHANGES_CHANNEL)
        .bind::<BigInt, _>(version)
        .execute(c)
        .map(|_| ())
}

pub(crate) fn write_batch(
    c: &mut PgConnection,
    puts: &[KeyValue],
    removes: &[&str],
    log: &[Change],
    version: i64,
) -> QueryResult<()> {
    let changed = |f: fn(&Change) -> i64| log.iter().map(f).collect::<Vec<i64>>();
    let column = |f: fn(&KeyValue) -> i64| puts.iter().map(f).collect::<Vec<i64>>();
    diesel::sql_query(
        "WITH put AS ( \
           INSERT INTO kv_store (key, value, version, created_at, updated_at, expires_at) \
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], \
                                $5::bigint[], $6::bigint[]) \
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             expires_at = EXCLUDED.expires_at, kind = 'string', coll = NULL, length = NULL), \
         removed AS (DELETE FROM kv_store WHERE key = ANY($7::text[])), \
         logged AS ( \
           INSERT INTO kv_changes (version, seq, key, op, value, expires_at, at_ms) \
           SELECT * FROM unnest($9::bigint[], $10::bigint[], $11::text[], $12::text[], \
                                $13::text[], $14::bigint[], $15::bigint[])) \
         UPDATE kv_meta SET version = $8 \
         FROM (SELECT pg_notify('kv_changes', $8::text)) AS notified WHERE id = 1",
    )
    .bind::<Array<Text>, _>(puts.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(puts.iter().map(|r| r.value.as_str()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(column(|r| r.version))
    .bind::<Array<BigInt>, _>(column(|r| r.created_at))
    .bind::<Array<BigInt>, _>(column(|r| r.updated_at))
    .bind::<Array<Nullable<BigInt>>, _>(puts.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(removes)
    .bind::<BigInt, _>(version)
    .bind::<Array<BigInt>, _>(changed(|r| r.version))
    .bind::<Array<BigInt>, _>(changed(|r| r.seq))
    .bind::<Array<Text>, _>(log.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(log.iter().map(|r| r.op.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(log.iter().map(|r| r.value.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(log.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(changed(|r| r.at_ms))
    .execute(c)
    .map(|_| ())
}
