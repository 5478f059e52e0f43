//! What every handler shares, and the ways handlers reach the database:
//! - [`AppState::write`]: a write transaction, queued to the group-commit writer
//!   ([`kv_core::writer`]);
//! - [`AppState::read_key`]: a single-key read — on SQLite inline on the worker thread over
//!   that thread's own connection (microseconds; no thread hop), which keeps its snapshot
//!   between reads until the writer commits ([`kv_core::reader`]); on PostgreSQL batched
//!   with the reads beside it ([`kv_core::point_reads`]);
//! - [`AppState::db`]: anything else (scans, counts, health) on a pooled connection on the
//!   blocking thread pool.

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::web;
use kv_core::backend::{self, ConnectionOptions};
use kv_core::model::StoredValue;
use kv_core::point_reads::PointReader;
use kv_core::reader::{SNAPSHOT_MAX_AGE, SnapshotReader};
use kv_core::store::{self, Lookup, Tx};
use kv_core::writer::Writer;
use kv_core::{Backend, DatabaseUrl, DbConnection, DbPool, StoreError};

use crate::error::ApiError;
use crate::watch::Feed;

/// How long `/_health` keeps reporting a database fault that a request ran into, unless a
/// write succeeds first.
pub const FAULT_MEMORY: Duration = Duration::from_secs(30);

pub struct AppState {
    pub pool: DbPool,
    pub backend: Backend,
    pub max_body_bytes: usize,
    /// The largest `POST /_import` body (spooled to a temp file, not held in memory).
    pub max_import_bytes: usize,
    /// How long the response to a write with an Idempotency-Key is kept for its retries.
    pub idempotency_retention_ms: i64,
    /// The group-commit writer.
    pub writer: Writer,
    /// PostgreSQL's batched point reads (`None` on SQLite, whose reads run inline).
    pub point_reader: Option<PointReader>,
    pub url: DatabaseUrl,
    pub options: ConnectionOptions,
    /// The last database fault a request met, for `/_health`.
    pub faults: DbFaults,
    /// The change feed `/_watch` serves (poked after each write here).
    pub feed: Feed,
    /// How long an idle SSE watch stream waits before `event: progress` (`--watch-progress`).
    pub watch_progress: Duration,
}

thread_local! {
    /// Each worker thread's own SQLite read connection, opened on first use.
    static READER: RefCell<Option<SnapshotReader>> = const { RefCell::new(None) };
    /// This worker has a task pending that ends its reader's snapshot once it is old.
    static SNAPSHOT_RELEASE_PENDING: Cell<bool> = const { Cell::new(false) };
}

impl AppState {
    /// Runs the reads of `f` on a pooled connection on the blocking thread pool. Pooled
    /// connections are not tested before use: when `f` finds its connection gone (the
    /// database restarted), the pool drops it and `f` runs again on another, until one works
    /// or the pool has been gone through.
    pub async fn db<T, F>(&self, mut f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let result = web::block(move || {
            let mut tries = pool.max_size() + 1;
            loop {
                let mut conn = pool.get()?;
                match f(&mut conn) {
                    Err(err) if err.is_connection_fault() => {
                        conn.mark_lost();
                        tries -= 1;
                        if tries == 0 {
                            return Err(err);
                        }
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?;
        Ok(self.faults.observe(result)?)
    }

    /// Runs `op` as one write transaction (all of it, or none of it).
    pub async fn write<T, F>(&self, now: i64, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let result: Result<T, ApiError> =
            Ok(self.faults.observe(self.writer.write(now, op).await)?);
        if result.is_ok() {
            // A write went through: the database takes writes again.
            self.faults.clear();
            self.feed.poke();
        }
        result
    }

    /// `GET`: the live row of `key` at `now`, or why there is none.
    pub async fn read_key(&self, now: i64, key: String) -> Result<Lookup<StoredValue>, ApiError> {
        match &self.point_reader {
            Some(reader) => Ok(self.faults.observe(reader.get(now, key).await)?),
            None => {
                self.point_read(move |conn| store::get(conn, now, &key))
                    .await
            }
        }
    }

    /// Runs short reads (a few primary-key lookups): on SQLite inline on this worker's
    /// connection (see [`Self::read_key`]), on PostgreSQL on a pooled connection.
    pub async fn read_short<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        match self.backend {
            Backend::Sqlite => self.point_read(f).await,
            Backend::Postgres => self.db(f).await,
        }
    }

    /// Runs a short SQLite read (one primary-key lookup) on this worker's connection.
    async fn point_read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let writer = self.writer.progress();
        let result = READER.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                let conn = backend::connect(&self.url, &self.options)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                *slot = Some(SnapshotReader::new(conn, SNAPSHOT_MAX_AGE));
            }
            let reader = slot
                .as_mut()
                .ok_or_else(|| StoreError::Internal("no reader".into()))?;
            let result = reader.read(writer, f);
            if matches!(result, Err(StoreError::Unavailable(_))) || reader.is_broken() {
                *slot = None; // reconnect on the next request
            }
            result
        });
        release_snapshot_when_old();
        Ok(self.faults.observe(result)?)
    }
}

/// Makes sure this worker's reader does not keep its snapshot past [`SNAPSHOT_MAX_AGE`] once
/// requests stop: one task per worker at a time, ending when the snapshot has.
fn release_snapshot_when_old() {
    if SNAPSHOT_RELEASE_PENDING.replace(true) {
        return;
    }
    actix_web::rt::spawn(async {
        loop {
            actix_web::rt::time::sleep(SNAPSHOT_MAX_AGE).await;
            let still_open = READER.with(|slot| {
                let mut slot = slot.borrow_mut();
                let Some(reader) = slot.as_mut() else {
                    return false;
                };
                reader.release_old_snapshot().unwrap_or_else(|err| {
                    log::warn!("ending a read snapshot failed: {err}");
                    *slot = None;
                    false
                })
            });
            if !still_open {
                SNAPSHOT_RELEASE_PENDING.set(false);
                return;
            }
        }
    });
}

/// The last database fault (busy, read-only, disk full, unreachable) a request ran into, for
/// `/_health`: a database can answer reads while it refuses writes.
#[derive(Debug, Default)]
pub struct DbFaults {
    last: Mutex<Option<(String, Instant)>>,
}

impl DbFaults {
    /// Passes `result` through, remembering it if it is a database fault.
    pub fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Unavailable(reason)) = result.as_ref().map_err(StoreError::root) {
            self.record(reason);
        }
        result
    }

    pub fn record(&self, reason: &str) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((reason.to_owned(), Instant::now()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }

    /// The fault seen within the last [`FAULT_MEMORY`] and how long ago, if any.
    pub fn recent(&self) -> Option<(String, Duration)> {
        let last = self.last.lock().ok()?;
        let (reason, at) = last.as_ref()?;
        let age = at.elapsed();
        (age < FAULT_MEMORY).then(|| (reason.clone(), age))
    }
}
