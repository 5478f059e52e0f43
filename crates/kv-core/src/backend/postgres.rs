//! PostgreSQL's side of the backend: the database's clock, the version counter row (which is
//! also the database's write lock), the sweeper's batch delete, and the statements of the
//! group-commit writer's batch ([`crate::writer`]).
//!
//! Every PostgreSQL statement here is a fixed SQL text, so diesel prepares it once per
//! connection and reuses it.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::statement::{Bind, statement};
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
    let found = statement::<marker::StartBatch>(
        "WITH counter AS MATERIALIZED ( \
           SELECT m.version AS locked, (SELECT version FROM kv_meta WHERE id = 1) AS seen \
           FROM kv_meta AS m WHERE m.id = 1 FOR UPDATE OF m), \
         found AS MATERIALIZED ( \
           SELECT key, value, version, created_at, updated_at, expires_at, kind, coll, length \
           FROM kv_store WHERE key = ANY(?)) \
         SELECT counter.locked, counter.seen, found.* FROM counter LEFT JOIN found ON true",
        vec![Bind::Texts(keys.to_vec())],
    )
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

/// The start of a batch that holds no lock while its requests run, in one statement outside
/// any transaction: the counter and the rows of `keys`, from one snapshot. Its write
/// ([`write_batch_if_at`]) then writes only if nothing moved the counter meanwhile.
pub(crate) fn read_batch(c: &mut PgConnection, keys: &[&str]) -> QueryResult<BatchStart> {
    let found: Vec<(i64, Option<KeyValue>)> = kv_meta::table
        .left_join(kv_store::table.on(kv_store::key.eq_any(keys)))
        .filter(kv_meta::id.eq(1))
        .select((kv_meta::version, Option::<KeyValue>::as_select()))
        .load(c)?;
    let version = found.first().map_or(0, |(version, _)| *version);
    let rows = found.into_iter().filter_map(|(_, row)| row).collect();
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

/// The channel a committed write notifies (its payload: the version), which servers' change
/// feeds LISTEN on. PostgreSQL delivers it at commit, never for a rollback.
pub const CHANGES_CHANNEL: &str = "kv_changes";

/// Tells listening servers that `version` changed the log (delivered when the transaction
/// commits).
pub(crate) fn notify_changes(c: &mut PgConnection, version: i64) -> QueryResult<()> {
    statement::<marker::Notify>(
        "SELECT pg_notify(?, ?::text)",
        vec![Bind::Text(CHANGES_CHANNEL), Bind::Int(version)],
    )
    .execute(c)
    .map(|_| ())
}

/// The end of a write batch, in one statement: writes `puts` over whatever rows hold their
/// keys (their `sweep_at` kept as `put_row` keeps it), deletes the rows of `removes`, appends
/// `log` to the change log and sets the version counter to `version`, inside the batch's
/// transaction, which holds the counter. No key is in both `puts` and `removes`.
pub(crate) fn write_batch(
    c: &mut PgConnection,
    puts: &[KeyValue],
    removes: &[&str],
    log: &[Change],
    version: i64,
) -> QueryResult<()> {
    let mut binds = batch_binds(puts, removes, log);
    binds.extend([Bind::Int(version), Bind::Int(version)]);
    statement::<marker::WriteBatch>(
        "WITH put AS ( \
           INSERT INTO kv_store (key, value, version, created_at, updated_at, expires_at, \
                                 sweep_at) \
           SELECT *, e FROM unnest(?::text[], ?::text[], ?::bigint[], ?::bigint[], \
                                   ?::bigint[], ?::bigint[]) AS r(k, v, n, c, u, e) \
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             expires_at = EXCLUDED.expires_at, kind = 'string', coll = NULL, length = NULL, \
             sweep_at = LEAST(kv_store.sweep_at, EXCLUDED.expires_at)), \
         removed AS (DELETE FROM kv_store WHERE key = ANY(?::text[])), \
         logged AS ( \
           INSERT INTO kv_changes (version, seq, key, op, value, expires_at, at_ms) \
           SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::text[], \
                                ?::text[], ?::bigint[], ?::bigint[])) \
         UPDATE kv_meta SET version = ? \
         FROM (SELECT pg_notify('kv_changes', ?::text)) AS notified WHERE id = 1",
        binds,
    )
    .execute(c)
    .map(|_| ())
}

/// What [`write_batch_if_at`] did.
#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A whole write batch that held no lock while its requests ran (see [`read_batch`]), in one
/// statement, which is its own transaction: what [`write_batch`] writes, only if the counter
/// is still at `read_at`, the version the batch read its rows at. The counter row is locked
/// first (waiting for a writer that holds it), so versions still commit in the order they are
/// handed out. Returns whether it wrote: `false` when another writer moved the counter since
/// (every write of live data moves it), and then nothing was written.
pub(crate) fn write_batch_if_at(
    c: &mut PgConnection,
    puts: &[KeyValue],
    removes: &[&str],
    log: &[Change],
    read_at: i64,
    version: i64,
) -> QueryResult<bool> {
    let mut binds = vec![Bind::Int(version), Bind::Int(read_at)];
    binds.extend(batch_binds(puts, removes, log));
    let written = statement::<marker::WriteBatchIfAt>(
        "WITH counter AS ( \
           UPDATE kv_meta SET version = ? WHERE id = 1 AND version = ? RETURNING version), \
         put AS ( \
           INSERT INTO kv_store (key, value, version, created_at, updated_at, expires_at, \
                                 sweep_at) \
           SELECT *, e FROM unnest(?::text[], ?::text[], ?::bigint[], ?::bigint[], \
                                   ?::bigint[], ?::bigint[]) AS r(k, v, n, c, u, e) \
           WHERE EXISTS (SELECT 1 FROM counter) \
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             expires_at = EXCLUDED.expires_at, kind = 'string', coll = NULL, length = NULL, \
             sweep_at = LEAST(kv_store.sweep_at, EXCLUDED.expires_at)), \
         removed AS ( \
           DELETE FROM kv_store WHERE key = ANY(?::text[]) AND EXISTS (SELECT 1 FROM counter)), \
         logged AS ( \
           INSERT INTO kv_changes (version, seq, key, op, value, expires_at, at_ms) \
           SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::text[], \
                                ?::text[], ?::bigint[], ?::bigint[]) \
           WHERE EXISTS (SELECT 1 FROM counter)) \
         SELECT count(*)::bigint AS n FROM counter, \
           LATERAL (SELECT pg_notify('kv_changes', counter.version::text)) AS notified",
        binds,
    )
    .get_result::<Written>(c)?;
    Ok(written.n > 0)
}

/// The binds of a batch's rows, removals and changes, in the order both batch writes take them.
fn batch_binds<'a>(puts: &'a [KeyValue], removes: &[&'a str], log: &'a [Change]) -> Vec<Bind<'a>> {
    let changed = |f: fn(&Change) -> i64| Bind::Ints(log.iter().map(f).collect());
    let column = |f: fn(&KeyValue) -> i64| Bind::Ints(puts.iter().map(f).collect());
    vec![
        Bind::Texts(puts.iter().map(|r| r.key.as_str()).collect()),
        Bind::Texts(puts.iter().map(|r| r.value.as_str()).collect()),
        column(|r| r.version),
        column(|r| r.created_at),
        column(|r| r.updated_at),
        Bind::MaybeInts(puts.iter().map(|r| r.expires_at).collect()),
        Bind::Texts(removes.to_vec()),
        changed(|r| r.version),
        changed(|r| r.seq),
        Bind::Texts(log.iter().map(|r| r.key.as_str()).collect()),
        Bind::Texts(log.iter().map(|r| r.op.as_str()).collect()),
        Bind::MaybeTexts(log.iter().map(|r| r.value.as_deref()).collect()),
        Bind::MaybeInts(log.iter().map(|r| r.expires_at).collect()),
        changed(|r| r.at_ms),
    ]
}

/// The markers of the batch statements (see [`super::statement`]).
mod marker {
    pub struct StartBatch;
    pub struct WriteBatch;
    pub struct WriteBatchIfAt;
    pub struct Notify;
}
