//! What every handler shares ([`AppState`]), and the ways handlers reach the store
//! ([`kv_core::Store`]):
//! - [`AppState::write`] and [`AppState::write_answer`]: a write transaction, queued to the
//!   group-commit writer;
//! - [`AppState::read_key`]: a single-key read — on SQLite inline on the worker thread over
//!   that thread's own connection (microseconds; no thread hop), which keeps its snapshot
//!   between reads until the writer commits; on PostgreSQL batched with the reads beside it;
//! - [`AppState::db`]: anything else (scans, counts, health) on a pooled connection on the
//!   blocking thread pool.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, web};
use futures_util::future::Either;
use kv_core::deadline::Deadline;
use kv_core::idempotency::{Answer, IdempotentRequest, StoredResponse};
use kv_core::model::StoredValue;
use kv_core::store::{Lookup, Tx};
use kv_core::{DbConnection, ShortRead, Store, StoreError, Versioned};

use crate::error::ApiError;
use crate::feed::Feed;
use crate::idempotency::REPLAYED;

/// How long `/_health` keeps reporting a database fault that a request ran into, unless a
/// write succeeds first.
pub const FAULT_MEMORY: Duration = Duration::from_secs(30);

pub struct AppState {
    pub store: Store,
    pub max_body_bytes: usize,
    /// The largest `POST /_import` body (spooled to a temp file, not held in memory).
    pub max_import_bytes: usize,
    /// How long the response to a write with an Idempotency-Key is kept for its retries.
    pub idempotency_retention_ms: i64,
    /// The last database fault a request met, for `/_health`.
    pub faults: DbFaults,
    /// The change feed `/_watch` serves (poked after each write here).
    pub feed: Feed,
    /// How long an idle SSE watch stream waits before `event: progress` (`--watch-progress`).
    pub watch_progress: Duration,
    /// How long a write may wait for its turn at the writer before it is answered 503.
    pub busy_timeout: Duration,
    /// How long a request may run (`--request-timeout`; zero: no limit).
    pub request_timeout: Duration,
    /// The largest response body (`--max-response-bytes`).
    pub max_response_bytes: usize,
}

impl AppState {
    /// Runs the reads of `f` on a pooled connection on the blocking thread pool (see
    /// [`kv_core::StorePool::read`]: a connection found gone is replaced and `f` runs again).
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.store.pool().clone();
        let result = web::block(move || pool.read(f))
            .await
            .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?;
        Ok(self.faults.observe(result)?)
    }

    /// Runs `op` as one write transaction (all of it, or none of it). A write that has not
    /// started within the busy timeout (the writer is busy with others) is answered 503 at
    /// once and will write nothing; one whose client went away before it started, or that
    /// waited past the request timeout, writes nothing either.
    pub async fn write<T, F>(&self, now: i64, mut op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (deadline, _client) = Deadline::after(self.request_timeout);
        let turn = Arc::new(WriteTurn::default());
        let op = {
            let turn = Arc::clone(&turn);
            move |tx: &mut Tx<'_>| {
                turn.start()?;
                deadline.check()?;
                op(tx)
            }
        };
        let answer = self.store.write(now, op);
        futures_util::pin_mut!(answer);
        let waited = actix_web::rt::time::sleep(self.busy_timeout);
        futures_util::pin_mut!(waited);
        let result = match futures_util::future::select(answer, waited).await {
            Either::Left((result, _)) => result,
            // The writer is busy (a long request, or a database another process holds): as a
            // busy database, this is a fault /_health reports until a write goes through.
            Either::Right(((), answer)) => match turn.give_up() {
                Ok(()) => Err(StoreError::Unavailable(format!(
                    "busy: the writer did not start this write within {} ms (--busy-timeout-ms)",
                    self.busy_timeout.as_millis()
                ))),
                Err(()) => answer.await,
            },
        };
        let result: Result<T, ApiError> = Ok(self.faults.observe(result)?);
        if result.is_ok() {
            // A write went through: the database takes writes again.
            self.faults.clear();
            self.feed.poke();
        }
        result
    }

    /// Runs `op` as one write transaction and answers with what `render` makes of its result.
    /// With an Idempotency-Key, `render` runs inside the transaction and its response is
    /// stored with the write, or a retry gets the stored response back and nothing runs.
    pub async fn write_answer<T, F, R>(
        &self,
        idempotent: Option<IdempotentRequest>,
        now: i64,
        mut op: F,
        render: R,
    ) -> Result<HttpResponse, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
        R: Fn(T) -> Result<StoredResponse, StoreError> + Send + 'static,
    {
        let Some(request) = idempotent else {
            let result = self.write(now, op).await?;
            return Ok(respond(render(result)?, false));
        };
        let answer = self
            .write(now, move |tx| tx.idempotent(&request, |tx| render(op(tx)?)))
            .await?;
        Ok(match answer {
            Answer::Fresh(response) => respond(response, false),
            Answer::Replayed(response) => respond(response, true),
        })
    }

    /// `GET`: the live row of `key` at `now`, or why there is none, and the store version the
    /// read reflects; from a read replica when one can answer at `min_version` (see
    /// [`kv_core::Store::read_key`]).
    pub async fn read_key(
        &self,
        now: i64,
        key: String,
        min_version: Option<i64>,
    ) -> Result<Versioned<Lookup<StoredValue>>, ApiError> {
        let result = self.store.read_key(now, key, min_version).await;
        release_snapshot_when_old();
        Ok(self.faults.observe(result)?)
    }

    /// Runs short reads (a few primary-key lookups): on SQLite inline on this worker's
    /// connection (see [`Self::read_key`]), on PostgreSQL on a pooled connection.
    pub async fn read_short<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        match self.store.read_short(f) {
            ShortRead::Ran(result) => {
                release_snapshot_when_old();
                Ok(self.faults.observe(result)?)
            }
            ShortRead::OnPool(f) => self.db(f).await,
        }
    }

    /// Runs the reads of `f` on a read replica when one can serve them at `min_version` (see
    /// [`kv_core::ReplicaReads::read`]), else as [`Self::read_short`] does. Returns the answer
    /// and, when a replica gave it, the store version it reflects.
    pub async fn read_replicated<T, F>(
        &self,
        min_version: Option<i64>,
        f: F,
    ) -> Result<(T, Option<i64>), ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        if let Some(replicas) = self.store.replica_reads() {
            let on_replica = f.clone();
            let answer = web::block(move || replicas.read(min_version, on_replica))
                .await
                .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?;
            if let Some(answer) = answer {
                let read = answer?;
                return Ok((read.value, Some(read.version)));
            }
        }
        Ok((self.read_short(f).await?, None))
    }
}

/// Whether a queued write has started, or was given up by its handler (see
/// [`AppState::write`]): whichever comes first wins.
#[derive(Debug, Default)]
struct WriteTurn(AtomicU8);

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const GIVEN_UP: u8 = 2;

impl WriteTurn {
    /// The writer runs the write (again, on a retry): `Err` if its handler gave it up.
    fn start(&self) -> Result<(), StoreError> {
        match self
            .0
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(STARTED) => Ok(()),
            Err(_) => Err(StoreError::Unavailable(
                "busy: given up before the writer reached it".into(),
            )),
        }
    }

    /// The handler stops waiting: `Err` if the write has started already (then it waits on).
    fn give_up(&self) -> Result<(), ()> {
        self.0
            .compare_exchange(QUEUED, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|_| ())
    }
}

/// A write's response, as a write handler answers it (`replayed`: a stored one).
fn respond(response: StoredResponse, replayed: bool) -> HttpResponse {
    let mut builder =
        HttpResponse::build(StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK));
    if let Some(etag) = response.etag {
        builder.insert_header((header::ETAG, etag));
    }
    if replayed {
        builder.insert_header((REPLAYED, "true"));
    }
    builder
        .content_type(ContentType::json())
        .body(response.body)
}

/// Makes sure this worker's reader does not keep its snapshot past
/// [`Store::SNAPSHOT_MAX_AGE`] once requests stop, when a read on this worker left one open:
/// one task per worker at a time, ending when the snapshot has.
fn release_snapshot_when_old() {
    if !Store::snapshot_release_due() {
        return;
    }
    actix_web::rt::spawn(async {
        loop {
            actix_web::rt::time::sleep(Store::SNAPSHOT_MAX_AGE).await;
            match Store::release_old_snapshot() {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => {
                    log::warn!("ending a read snapshot failed: {err}");
                    return;
                }
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
