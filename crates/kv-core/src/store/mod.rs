//! The store operations both binaries share. Single-key writes and `/_tx` transactions run
//! the same [`Tx`] methods; only how many of them share one database transaction differs.

mod collection_ops;
mod import;

use diesel::prelude::*;

use crate::args::{IncrArgs, ScanArgs, ScanPage, SetArgs, SetExpiry, counter_value};
use crate::backend::{self, DbConnection, Replaces, with_conn};
use crate::changes::{self, Change, ChangeOp};
use crate::collections;
use crate::error::StoreError;
use crate::idempotency::{Answer, IdempotentRequest, StoredResponse};
use crate::key::{validate_key, validate_writable_key};
use crate::model::IdempotencyRecord;
use crate::model::{KeyValue, StoredValue};
use crate::precondition::Precondition;
use crate::rows::Rows;
use crate::schema::kv_store;
use crate::stage::Stage;

/// A write that met a passing fault (PostgreSQL) is run again this many times before giving up.
const MAX_WRITE_RETRIES: usize = 8;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Live(T),
    Missing,
    /// A row was there but had expired: absent, like `Missing`, but reported as such.
    Expired,
}

impl<T> Lookup<T> {
    pub fn live(self) -> Result<T, StoreError> {
        match self {
            Lookup::Live(v) => Ok(v),
            Lookup::Missing => Err(StoreError::NotFound { expired: false }),
            Lookup::Expired => Err(StoreError::NotFound { expired: true }),
        }
    }
}

/// The result of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// The key was absent (or expired) before.
    pub created: bool,
    pub row: KeyValue,
}

#[diesel::dsl::auto_type]
fn live_at(now: i64) -> _ {
    kv_store::expires_at
        .is_null()
        .or(kv_store::expires_at.gt(now))
}

/// `GET`: the live row, or why there is none. Reads only: the caller removes an expired row
/// with [`Tx::purge_expired`] (lazy expiry) through the write path.
pub fn get(
    conn: &mut DbConnection,
    now: i64,
    key: &str,
) -> Result<Lookup<StoredValue>, StoreError> {
    validate_key(key)?;
    let row: Option<StoredValue> = with_conn!(conn, c => kv_store::table
        .find(key)
        .select(StoredValue::as_select())
        .get_result(c)
        .optional())?;
    Ok(lookup(row, now))
}

/// What a read of a key that found `row` at `now` gets.
pub fn lookup(row: Option<StoredValue>, now: i64) -> Lookup<StoredValue> {
    match row {
        None => Lookup::Missing,
        Some(row) if !row.is_expired(now) => Lookup::Live(row),
        Some(_) => Lookup::Expired,
    }
}

/// Runs `f` as one write transaction, run again from the start when it loses a race with
/// another server (PostgreSQL unique violation, serialization failure or deadlock). Its version
/// comes from the store-wide counter in the database.
pub fn write<T>(
    conn: &mut DbConnection,
    now: i64,
    f: impl FnMut(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    write_versioned(conn, now, f).map(|(out, _)| out)
}

/// [`write`], which also returns the store's version once it committed.
pub(crate) fn write_versioned<T>(
    conn: &mut DbConnection,
    now: i64,
    mut f: impl FnMut(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<(T, i64), StoreError> {
    let mut attempt = 0;
    loop {
        let result = backend::write_transaction(conn, |conn| {
            // On PostgreSQL the version counter first, as batches take it before any row
            // lock (see `backend::postgres::start_batch`): the two never wait for each other
            // in a cycle. (On SQLite the transaction already holds the database.)
            let counter = backend::lock_version(conn)?;
            let mut tx = Tx {
                conn,
                batch: None,
                rows: Rows::Direct,
                now,
                version: None,
                seq: 0,
            };
            let out = f(&mut tx)?;
            if let Some(version) = tx.version {
                backend::notify_changes(tx.conn, version)?;
            }
            Ok((out, tx.version.unwrap_or(counter)))
        });
        match result {
            Err(err) if err.is_retryable() && attempt < MAX_WRITE_RETRIES => attempt += 1,
            other => return other,
        }
    }
}

/// How a write of a SQLite batch is kept apart from the batch's other writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchIsolation {
    /// In its own savepoint: a failing write rolls back alone. SQLite then copies every page
    /// the write changes into a statement journal first.
    Savepoint,
    /// Straight in the batch's transaction: a failing write leaves the transaction in a state
    /// only a rollback of the whole batch undoes (see [`crate::writer`]).
    Shared,
}

/// Where a write of a batch runs (see [`crate::writer`]).
pub enum InBatch<'b> {
    /// SQLite: in the batch's open transaction.
    Sqlite(BatchIsolation),
    /// PostgreSQL: against the batch's rows staged in memory; a failing write leaves nothing
    /// there.
    Staged(&'b mut Stage),
}

/// Runs `f` as one write of a batch (inside the batch's transaction, see
/// [`crate::writer`]), its version taken from `versions`. A write that fails gives its
/// version back. Not run again here on a lost race: the writer runs the whole batch again.
pub fn write_in_batch<T>(
    conn: &mut DbConnection,
    versions: &mut BatchVersions,
    place: InBatch<'_>,
    now: i64,
    mut f: impl FnMut(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let unused = versions.last;
    let result = match place {
        InBatch::Sqlite(isolation) => {
            let mut run = |conn: &mut DbConnection| {
                f(&mut Tx {
                    conn,
                    batch: Some(&mut *versions),
                    rows: Rows::Direct,
                    now,
                    version: None,
                    seq: 0,
                })
            };
            match isolation {
                BatchIsolation::Savepoint => backend::sqlite_savepoint(conn, run),
                // A shared write that failed leaves its partial effects until the writer
                // rolls back the batch and runs it again with savepoints.
                BatchIsolation::Shared => run(conn),
            }
        }
        InBatch::Staged(stage) => {
            stage.begin_request();
            let result = f(&mut Tx {
                conn,
                batch: Some(&mut *versions),
                rows: Rows::Staged(&mut *stage),
                now,
                version: None,
                seq: 0,
            });
            stage.end_request(result.is_ok());
            result
        }
    };
    if result.is_err() {
        // Rolled back: the version it took goes to the next write, as if never taken.
        versions.last = unused;
    }
    result
}

/// The versions of one batch: the writer holds the version counter from the batch's start to
/// its commit (SQLite's write lock, or PostgreSQL's lock on the counter row), so it reads the
/// counter once, hands out the next versions from memory and writes the last one back before
/// committing — one counter update per batch instead of one per write. A write that rolls
/// back gives its version back.
#[derive(Debug)]
pub struct BatchVersions {
    stored: i64,
    last: i64,
}

impl BatchVersions {
    /// Reads the counter and locks it (inside the batch's transaction).
    pub fn start(conn: &mut DbConnection) -> Result<Self, StoreError> {
        let stored = backend::lock_version(conn)?;
        Ok(BatchVersions::from(stored))
    }

    /// Versions that follow `stored`.
    pub fn from(stored: i64) -> Self {
        BatchVersions {
            stored,
            last: stored,
        }
    }

    fn next(&mut self) -> i64 {
        self.last += 1;
        self.last
    }

    /// The last version handed out.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Writes the last version handed out back to the counter (before the batch commits).
    pub fn finish(self, conn: &mut DbConnection) -> Result<(), StoreError> {
        if self.last != self.stored {
            backend::set_version(conn, self.last)?;
        }
        Ok(())
    }
}

/// Store operations inside one write transaction. Every write in it carries the same new
/// version, taken from the store-wide counter (or its batch's) on the first write.
pub struct Tx<'c> {
    conn: &'c mut DbConnection,
    batch: Option<&'c mut BatchVersions>,
    /// Where its rows live: the database, or a PostgreSQL batch's staged rows.
    rows: Rows<'c>,
    now: i64,
    version: Option<i64>,
    /// The number of the transaction's next change in the change log.
    seq: i64,
}

impl Tx<'_> {
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The version of this transaction's writes, or `None` if it wrote nothing yet.
    pub fn written_version(&self) -> Option<i64> {
        self.version
    }

    /// The store's current version (this transaction's, if it wrote).
    pub fn store_version(&mut self) -> Result<i64, StoreError> {
        match (self.version, &self.batch) {
            (Some(v), _) => Ok(v),
            (None, Some(batch)) => Ok(batch.last),
            (None, None) => Ok(backend::current_version(self.conn)?),
        }
    }

    fn write_version(&mut self) -> Result<i64, StoreError> {
        if let Some(v) = self.version {
            return Ok(v);
        }
        let v = match self.batch.as_deref_mut() {
            Some(batch) => batch.next(),
            None => backend::next_version(self.conn)?,
        };
        self.version = Some(v);
        Ok(v)
    }

    /// Names the keys this transaction will touch, before any operation runs: a PostgreSQL
    /// batch reads all of them in its first statement (see [`crate::stage`]). Nothing
    /// otherwise: the transaction holds the database's write lock already.
    pub fn declare_keys<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) {
        if let Rows::Staged(_) = self.rows {
            let keys: Vec<&str> = keys
                .into_iter()
                .filter(|k| validate_key(k).is_ok())
                .collect();
            self.rows.declare(&keys);
        }
    }

    /// The row (live or expired). The transaction holds the database's write lock (see
    /// [`backend::find_for_update`]), so it stays as read until the transaction ends.
    fn locked_row(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.rows.row(self.conn, key)
    }

    fn lookup(&self, row: Option<KeyValue>) -> Lookup<KeyValue> {
        match row {
            None => Lookup::Missing,
            Some(row) if row.is_expired(self.now) => Lookup::Expired,
            Some(row) => Lookup::Live(row),
        }
    }

    /// Writes `row`, inserting or replacing whatever row (live or expired) held the key.
    fn put(&mut self, row: &KeyValue, replaces: Replaces) -> Result<(), StoreError> {
        self.rows.put(self.conn, row, replaces)
    }

    fn remove(&mut self, key: &str) -> Result<(), StoreError> {
        self.rows.remove(self.conn, key)
    }

    /// Records a change of `key` in the change log ([`crate::changes`]) under the
    /// transaction's version (taken now if this is its first write): `row` is what a `set`
    /// wrote.
    fn record(
        &mut self,
        op: ChangeOp,
        key: &str,
        row: Option<&KeyValue>,
    ) -> Result<(), StoreError> {
        let change = self.change(op, key, row)?;
        self.rows.log_change(self.conn, change)
    }

    /// The change [`Tx::record`] records, numbered as the transaction's next.
    fn change(
        &mut self,
        op: ChangeOp,
        key: &str,
        row: Option<&KeyValue>,
    ) -> Result<Change, StoreError> {
        let change = Change {
            version: self.write_version()?,
            seq: self.seq,
            key: key.to_owned(),
            op: op.as_str().to_owned(),
            value: row.map(|r| r.value.clone()),
            expires_at: row.and_then(|r| r.expires_at),
            at_ms: self.now,
            kind: None,
            command: None,
        };
        self.seq += 1;
        Ok(change)
    }

    /// Lazy expiry: deletes the row of `key` if it is expired at `now` — only then, so a key
    /// set again meanwhile survives — and records its `expired` change, which takes a version.
    pub fn purge_expired(&mut self, key: &str) -> Result<bool, StoreError> {
        let now = self.now;
        let expired = self.rows.remove_if_expired(self.conn, key, now)?;
        if expired {
            self.record(ChangeOp::Expired, key, None)?;
        }
        Ok(expired)
    }

    /// Looks at up to `limit` rows due at `expired_by` (at most the transaction's now: the
    /// server's expiry timer leaves a moment of grace, kv-sweeper none), soonest first:
    /// removes the expired ones, recording an `expired` change for each under one version,
    /// and counts them as swept; files the others, whose expiry moved on after they were
    /// filed, again under their expiry (see `backend::sweep_index`). On PostgreSQL rows
    /// another transaction has locked are passed by. A transaction of its own.
    pub fn remove_expired(
        &mut self,
        limit: i64,
        expired_by: i64,
    ) -> Result<ExpirySweep, StoreError> {
        self.needs_own_transaction()?;
        let expired_by = expired_by.min(self.now);
        let due = backend::due_rows(self.conn, expired_by, limit)?;
        let mut sweep = ExpirySweep {
            due: due.len(),
            removed: 0,
        };
        let (expired, moved_on): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|(_, expires_at)| crate::expiry::is_expired(*expires_at, expired_by));
        let moved_on: Vec<&str> = moved_on.iter().map(|(key, _)| key.as_str()).collect();
        backend::refile(self.conn, &moved_on)?;
        let keys: Vec<String> = expired.into_iter().map(|(key, _)| key).collect();
        if keys.is_empty() {
            return Ok(sweep);
        }
        let log = keys
            .iter()
            .map(|key| self.change(ChangeOp::Expired, key, None))
            .collect::<Result<Vec<_>, _>>()?;
        changes::insert(self.conn, &log)?;
        collections::discard_where_expired(self.conn, &keys, expired_by)?;
        let removed = with_conn!(self.conn, c => diesel::delete(
            kv_store::table
                .filter(kv_store::key.eq_any(&keys))
                .filter(kv_store::expires_at.le(expired_by)),
        )
        .execute(c))?;
        backend::count_swept(self.conn, removed)?;
        sweep.removed = removed;
        Ok(sweep)
    }

    /// The live row of `key`, if any.
    pub fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        validate_key(key)?;
        let row = self.locked_row(key)?;
        Ok(match self.lookup(row) {
            Lookup::Live(row) => Some(row),
            Lookup::Missing | Lookup::Expired => None,
        })
    }

    /// SET with its options (nx, xx, if_version, ttl, keep_ttl) and header conditions.
    pub fn set(&mut self, key: &str, args: &SetArgs) -> Result<SetOutcome, StoreError> {
        validate_writable_key(key)?;
        let row = self.locked_row(key)?;
        let replaces = Replaces::row(row.as_ref());
        let exists = row.is_some();
        let found_coll = row.as_ref().and_then(|r| r.coll);
        let live = match self.lookup(row) {
            Lookup::Live(row) => Some(row),
            Lookup::Missing | Lookup::Expired => None,
        };
        args.precondition.check(live.as_ref().map(|r| r.version))?;
        if exists && live.is_none() {
            self.record(ChangeOp::Expired, key, None)?;
        }
        // A SET replaces whatever the key held, a collection too (as in Redis).
        self.discard_members(found_coll)?;
        let version = self.write_version()?;
        let row = KeyValue::string(
            key,
            args.value.clone(),
            version,
            live.as_ref().map_or(self.now, |r| r.created_at),
            self.now,
            match args.expiry {
                SetExpiry::Persist => None,
                SetExpiry::Keep => live.as_ref().and_then(|r| r.expires_at),
                SetExpiry::At(at) => Some(at),
            },
        );
        self.put(&row, replaces)?;
        self.record(ChangeOp::Set, key, Some(&row))?;
        Ok(SetOutcome {
            created: live.is_none(),
            row,
        })
    }

    /// DEL. Returns the deleting version, or why nothing was deleted. An expired row is
    /// removed too, recorded as `expired` (which takes a version).
    pub fn delete(
        &mut self,
        key: &str,
        precondition: &Precondition,
    ) -> Result<Lookup<i64>, StoreError> {
        validate_writable_key(key)?;
        let row = self.locked_row(key)?;
        let coll = row.as_ref().and_then(|r| r.coll);
        let found = self.lookup(row);
        precondition.check(match &found {
            Lookup::Live(row) => Some(row.version),
            _ => None,
        })?;
        self.discard_members(coll)?;
        match found {
            Lookup::Live(_) => {
                self.remove(key)?;
                self.record(ChangeOp::Delete, key, None)?;
                Ok(Lookup::Live(self.write_version()?))
            }
            Lookup::Expired => {
                self.remove(key)?;
                self.record(ChangeOp::Expired, key, None)?;
                Ok(Lookup::Expired)
            }
            Lookup::Missing => Ok(Lookup::Missing),
        }
    }

    /// EXPIRE / PERSIST: sets (`Some`) or removes (`None`) the expiry, value untouched.
    pub fn expire(
        &mut self,
        key: &str,
        expires_at: Option<i64>,
        precondition: &Precondition,
    ) -> Result<KeyValue, StoreError> {
        validate_writable_key(key)?;
        let row = self.locked_row(key)?;
        let found = self.lookup(row);
        precondition.check(match &found {
            Lookup::Live(row) => Some(row.version),
            _ => None,
        })?;
        let mut row = found.live()?;
        let replaces = Replaces::row(Some(&row));
        row.version = self.write_version()?;
        row.updated_at = self.now;
        row.expires_at = expires_at;
        self.put(&row, replaces)?;
        self.record(ChangeOp::Set, key, Some(&row))?;
        Ok(row)
    }

    /// INCR / DECR: a missing or expired key starts at 0 and gets the ttl, if any; an existing
    /// key keeps its expiry.
    pub fn incr(
        &mut self,
        key: &str,
        args: &IncrArgs,
        precondition: &Precondition,
    ) -> Result<KeyValue, StoreError> {
        validate_writable_key(key)?;
        let row = self.locked_row(key)?;
        let replaces = Replaces::row(row.as_ref());
        let exists = row.is_some();
        let expired_coll = row.as_ref().and_then(|r| r.coll);
        let live = match self.lookup(row) {
            Lookup::Live(row) => Some(row),
            Lookup::Missing | Lookup::Expired => None,
        };
        precondition.check(live.as_ref().map(|r| r.version))?;
        if live.as_ref().is_some_and(|r| !r.is_string()) {
            return Err(StoreError::WrongType);
        }
        let current = live.as_ref().map(|r| counter_value(&r.value)).transpose()?;
        let next = args.apply(current.unwrap_or(0))?;
        if exists && live.is_none() {
            self.record(ChangeOp::Expired, key, None)?;
            self.discard_members(expired_coll)?;
        }
        let row = KeyValue::string(
            key,
            next.to_string(),
            self.write_version()?,
            live.as_ref().map_or(self.now, |r| r.created_at),
            self.now,
            match &live {
                Some(row) => row.expires_at,
                None => args.expires_at_if_created,
            },
        );
        self.put(&row, replaces)?;
        self.record(ChangeOp::Set, key, Some(&row))?;
        Ok(row)
    }

    /// Runs `write` unless `request` was answered already: then its stored response is the
    /// answer, or, for the same key with another request, `idempotency_key_reused`. Only a
    /// successful write's response is stored (a failed one changed nothing and may be
    /// retried). In a PostgreSQL batch the records are staged with the rows: the batch reads
    /// those of its requests in one statement and writes the new ones in one more.
    pub fn idempotent(
        &mut self,
        request: &IdempotentRequest,
        write: impl FnOnce(&mut Tx<'_>) -> Result<StoredResponse, StoreError>,
    ) -> Result<Answer, StoreError> {
        let now = self.now();
        let found = self.rows.record(self.conn, &request.key)?;
        if let Some(record) = found.filter(|r| r.expires_at > now) {
            if record.fingerprint != request.fingerprint {
                return Err(StoreError::IdempotencyKeyReused);
            }
            return Ok(Answer::Replayed(StoredResponse {
                status: u16::try_from(record.status).unwrap_or(200),
                body: record.body,
                etag: record.etag,
            }));
        }
        let response = write(self)?;
        if self.version.is_none() {
            // It wrote nothing (a read-only `/_tx`): nothing to replay, no record.
            return Ok(Answer::Fresh(response));
        }
        let record = IdempotencyRecord {
            idempotency_key: request.key.clone(),
            fingerprint: request.fingerprint.clone(),
            status: i32::from(response.status),
            body: response.body.clone(),
            etag: response.etag.clone(),
            expires_at: now.saturating_add(request.retention_ms),
        };
        self.rows.put_record(self.conn, record)?;
        Ok(Answer::Fresh(response))
    }

    /// The transaction's connection: for the statements of other modules.
    pub(crate) fn conn(&mut self) -> &mut DbConnection {
        self.conn
    }

    /// Stops a request that must run as a transaction of its own when it is in a PostgreSQL
    /// batch (whose staged rows are all it may touch); the writer then runs it alone.
    pub(crate) fn needs_own_transaction(&mut self) -> Result<(), StoreError> {
        self.rows.needs_own_transaction()
    }

    /// A transaction's `check`: the key is at `version` (`None`: the key is absent).
    pub fn check(&mut self, key: &str, version: Option<i64>) -> Result<(), StoreError> {
        let current = self.get(key)?.map(|row| row.version);
        if current == version {
            return Ok(());
        }
        let state = match current {
            Some(v) => format!("is at version {v}"),
            None => "does not exist".to_owned(),
        };
        Err(StoreError::PreconditionFailed(format!(
            "check failed: key {key:?} {state}"
        )))
    }

    /// Deletes the live keys in `scope`; expired rows in it go too, each recorded in the change
    /// log (`delete` or `expired`) under one version. Returns how many were live at `now`
    /// (exact even while other servers write: they wait for the write lock).
    pub fn delete_keys(&mut self, scope: &KeyScope) -> Result<i64, StoreError> {
        // A key range is no set of staged rows: this runs as a transaction of its own.
        self.needs_own_transaction()?;
        if let KeyScope::Prefix(prefix) = scope
            && matches_no_key(prefix)
        {
            return Ok(0);
        }
        let (lower, upper) = scope.key_range();
        let now = self.now;
        // Counted, then deleted, in SQL: the transaction holds the write lock, so no live row
        // comes or goes in between (the sweeper removes only expired ones), and no row is
        // brought into memory however many there are.
        let live: i64 = with_conn!(self.conn, c => {
            let in_range = kv_store::table.filter(kv_store::key.ge(&lower)).into_boxed();
            let in_range = match &upper {
                Some(upper) => in_range.filter(kv_store::key.lt(upper)),
                None => in_range,
            };
            in_range.filter(live_at(now)).count().get_result(c)
        })?;
        let any_row = live > 0
            || with_conn!(self.conn, c => {
                let in_range = kv_store::table.filter(kv_store::key.ge(&lower)).into_boxed();
                let in_range = match &upper {
                    Some(upper) => in_range.filter(kv_store::key.lt(upper)),
                    None => in_range,
                };
                diesel::select(diesel::dsl::exists(in_range)).get_result::<bool>(c)
            })?;
        if !any_row {
            return Ok(0);
        }
        let version = self.write_version()?;
        collections::discard_range(self.conn, &lower, upper.as_deref())?;
        let recorded = changes::record_range_removal(
            self.conn,
            version,
            self.seq,
            now,
            &lower,
            upper.as_deref(),
        )?;
        self.seq += recorded as i64;
        with_conn!(self.conn, c => {
            let in_range = kv_store::table.filter(kv_store::key.ge(&lower));
            match &upper {
                Some(upper) => diesel::delete(in_range.filter(kv_store::key.lt(upper))).execute(c),
                None => diesel::delete(in_range).execute(c),
            }
        })?;
        Ok(live)
    }
}

/// A set of keys for bulk operations: those starting with a prefix, or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    Prefix(String),
    All,
}

impl KeyScope {
    /// The scope as a primary-key range `lower <= key < upper` (no upper bound: to the end).
    fn key_range(&self) -> (String, Option<String>) {
        match self {
            KeyScope::All => (String::new(), None),
            KeyScope::Prefix(prefix) => (prefix.clone(), prefix_upper_bound(prefix)),
        }
    }
}

/// The smallest string greater than every string starting with `prefix` (byte order), if any.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Whether no key can start with `prefix`: keys hold no control characters (see
/// [`validate_key`]). Such a prefix never reaches the database (PostgreSQL text cannot even
/// hold NUL).
fn matches_no_key(prefix: &str) -> bool {
    prefix.chars().any(char::is_control)
}

/// `after` cut at its first NUL: for keys, which hold no NUL, "greater than" either is the
/// same (a key starting with the part before the NUL has a next byte above NUL, or is that
/// part and below both). PostgreSQL text cannot hold NUL, and a cursor is client input.
fn same_bound_without_nul(after: &str) -> String {
    after.split('\0').next().unwrap_or_default().to_owned()
}

/// Pages through live keys along the primary-key index. With a `match` pattern, at most
/// `10 × limit` keys are examined per page, so a page may hold fewer than `limit` keys.
pub fn scan(conn: &mut DbConnection, now: i64, args: &ScanArgs) -> Result<ScanPage, StoreError> {
    if matches_no_key(&args.prefix) {
        return Ok(ScanPage {
            rows: Vec::new(),
            next_after: None,
        });
    }
    let limit = args.limit.max(1);
    let max_examined = limit.saturating_mul(10);
    let upper = prefix_upper_bound(&args.prefix);
    let mut after = args
        .after
        .as_deref()
        .map(same_bound_without_nul)
        .filter(|a| *a >= args.prefix);
    let mut rows = Vec::new();
    let mut examined = 0;
    loop {
        let chunk = i64::try_from(limit).unwrap_or(i64::MAX);
        let start = after.clone();
        let batch: Vec<KeyValue> = with_conn!(conn, c => {
            let mut query = kv_store::table.into_boxed();
            query = match &start {
                Some(after) => query.filter(kv_store::key.gt(after.clone())),
                None => query.filter(kv_store::key.ge(args.prefix.clone())),
            };
            if let Some(upper) = &upper {
                query = query.filter(kv_store::key.lt(upper.clone()));
            }
            query
                .filter(live_at(now))
                .order(kv_store::key.asc())
                .limit(chunk)
                .select(KeyValue::as_select())
                .load(c)
        })?;
        let exhausted = batch.len() < limit;
        for row in batch {
            examined += 1;
            after = Some(row.key.clone());
            if args.pattern.as_ref().is_none_or(|p| p.matches(&row.key)) {
                rows.push(row);
                if rows.len() == limit {
                    return Ok(ScanPage {
                        rows,
                        next_after: after,
                    });
                }
            }
        }
        if exhausted {
            return Ok(ScanPage {
                rows,
                next_after: None,
            });
        }
        if examined >= max_examined {
            return Ok(ScanPage {
                rows,
                next_after: after,
            });
        }
    }
}

/// Pages through the live keys under any of `prefixes` (byte order, none covering another),
/// as one listing in byte order: what `GET /_keys` without `prefix=` shows a key scoped to
/// those prefixes. `args.prefix` is ignored; the cursor continues across prefixes.
pub fn scan_within(
    conn: &mut DbConnection,
    now: i64,
    prefixes: &[String],
    args: &ScanArgs,
) -> Result<ScanPage, StoreError> {
    let limit = args.limit.max(1);
    let mut rows = Vec::new();
    for prefix in prefixes {
        let after = args
            .after
            .clone()
            .filter(|after| after.as_str() >= prefix.as_str());
        // A cursor past this prefix's keys: on to the next.
        if after
            .as_deref()
            .is_some_and(|a| !a.starts_with(prefix.as_str()) && a > prefix.as_str())
        {
            continue;
        }
        let page = scan(
            conn,
            now,
            &ScanArgs {
                prefix: prefix.clone(),
                pattern: args.pattern.clone(),
                limit: limit - rows.len(),
                after,
            },
        )?;
        rows.extend(page.rows);
        if page.next_after.is_some() {
            return Ok(ScanPage {
                rows,
                next_after: page.next_after,
            });
        }
        if rows.len() >= limit {
            let next_after = rows.last().map(|row| row.key.clone());
            return Ok(ScanPage { rows, next_after });
        }
    }
    Ok(ScanPage {
        rows,
        next_after: None,
    })
}

/// Whether the database answers (`GET /_health`).
pub fn ping(conn: &mut DbConnection) -> Result<(), StoreError> {
    use diesel::connection::SimpleConnection;
    with_conn!(conn, c => c.batch_execute("SELECT 1"))?;
    Ok(())
}

/// The live keys, counted inside `tx` (Redis `DBSIZE`): a count over the whole table, so on
/// PostgreSQL a transaction of its own, not a batch's staged rows.
pub fn stats_in(tx: &mut Tx<'_>) -> Result<i64, StoreError> {
    tx.needs_own_transaction()?;
    let now = tx.now();
    let conn = tx.conn();
    live_keys(conn, now)
}

/// Figures for `GET /_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub keys: i64,
    pub expiring: i64,
    pub version: i64,
}

/// The live keys at `now`.
pub fn live_keys(conn: &mut DbConnection, now: i64) -> Result<i64, StoreError> {
    Ok(with_conn!(conn, c => kv_store::table.filter(live_at(now)).count().get_result::<i64>(c))?)
}

pub fn stats(conn: &mut DbConnection, now: i64) -> Result<Stats, StoreError> {
    let keys = live_keys(conn, now)?;
    let expiring = with_conn!(conn, c => kv_store::table
        .filter(kv_store::expires_at.gt(now))
        .count()
        .get_result::<i64>(c))?;
    let version = backend::current_version(conn)?;
    Ok(Stats {
        keys,
        expiring,
        version,
    })
}

/// What one [`Tx::remove_expired`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpirySweep {
    /// Rows found due: fewer than asked for means none are left.
    pub due: usize,
    /// Expired rows removed.
    pub removed: usize,
}

/// Expired keys deleted by sweeps ([`sweep_expired`]) so far: every sweeper's, since the
/// database was created (or migrated to count them).
pub fn swept_keys(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(backend::swept_keys(conn)?)
}

/// Deletes rows expired at `now` in transactions of at most `batch_size` rows, so the write
/// lock is never held for long, and pauses after each full batch for as long as the batch
/// took (at least 5 ms), so the server's writes get the lock in between: a sweep of a million
/// keys takes seconds longer, and requests meanwhile do not wait behind it (measured in
/// docs/BENCHMARKS.md: 1,000,000 keys in 17.7 s, a 90/10 mix's p99 17 ms meanwhile; twice
/// as long a pause took 27 s for a p99 of 19 ms). Each batch adds its deletions to the count
/// [`swept_keys`] reads, in its own transaction. Stops early when `stop()` says so (between
/// batches).
pub fn sweep_expired(
    conn: &mut DbConnection,
    now: i64,
    batch_size: u32,
    stop: &dyn Fn() -> bool,
) -> Result<u64, StoreError> {
    let batch_size = batch_size.max(1);
    let mut total = 0u64;
    loop {
        let started = std::time::Instant::now();
        let sweep = write(conn, now, |tx| {
            tx.remove_expired(i64::from(batch_size), now)
        })?;
        total += sweep.removed as u64;
        if sweep.due < batch_size as usize || stop() {
            return Ok(total);
        }
        let pause = started.elapsed().max(std::time::Duration::from_millis(5));
        std::thread::sleep(pause);
    }
}

/// Removes the members of discarded collections (see `collections`), a bounded batch per
/// transaction, until none are left or `stop` says so (kv-sweeper). Returns how many went.
pub fn collect_garbage(
    conn: &mut DbConnection,
    now: i64,
    stop: &dyn Fn() -> bool,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        let removed = write(conn, now, |tx| tx.collect_garbage())?;
        total += removed as u64;
        if removed == 0 || stop() {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn prefix_bounds_in_byte_order() {
        assert_eq!(prefix_upper_bound("user:"), Some("user;".into()));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_upper_bound("\u{D7FF}"), Some("\u{E000}".into()));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }
}
