//! Group commit. One thread owns the write connection; requests queue their writes to it and
//! it commits them in batches — one database transaction for every request waiting at that
//! moment. Each request is answered only after its batch has committed: durability is the
//! same as one transaction per request, at a fraction of the commits, and a request that fails
//! rolls back alone while the others commit. The batch takes its requests' versions from
//! memory (`BatchVersions`) and updates the store-wide counter once.
//!
//! How a batch runs is each database's own: `sqlite` (one `BEGIN IMMEDIATE … COMMIT`,
//! savepoints when a request fails, the write-ahead log's checkpoints) and `postgres` (rows
//! staged in memory, a fixed handful of round trips per batch, the version counter held until
//! commit so versions become visible in order across servers).

mod job;
mod postgres;
mod sqlite;

pub(crate) use job::collect_batch;

#[cfg(test)]
pub(crate) use sqlite::tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::backend::{Backend, DbConnection};
use crate::error::StoreError;
use crate::known_version::KnownVersion;
use crate::store::Tx;
use job::{Job, Request, Shared};

/// The handle requests use to reach the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Batches ended (committed or not), counted before their requests are answered.
    commits: Arc<AtomicU64>,
    /// SQLite's write-ahead log is long and growing: readers keep no snapshot.
    long_log: Arc<AtomicBool>,
    /// Requests sent and not answered yet.
    in_flight: Arc<AtomicUsize>,
}

/// What a reader needs to know of the writer before a read (see [`crate::reader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterProgress {
    /// Batches ended so far. A write's batch is counted before the write is answered, so a
    /// read that loads this after an answer knows whether its snapshot predates the write.
    pub commits: u64,
    /// Whether a reader may keep its snapshot after a read: not while the write-ahead log is
    /// due to start over, which no reader may be reading from at that moment.
    pub snapshots_allowed: bool,
}

impl Writer {
    /// Starts the writer thread over a connection from `connect` (called again to replace a
    /// connection that broke). The connection's backend picks how batches run. Each batch's
    /// version is made known to `known` once it has committed, before its requests are
    /// answered.
    pub fn spawn<C>(mut connect: C, known: Arc<KnownVersion>) -> Result<Writer, StoreError>
    where
        C: FnMut() -> Result<DbConnection, String> + Send + 'static,
    {
        let conn = connect().map_err(StoreError::Unavailable)?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let shared = Shared {
            commits: Arc::new(AtomicU64::new(0)),
            known,
            long_log: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let writer = Writer {
            jobs,
            commits: Arc::clone(&shared.commits),
            long_log: Arc::clone(&shared.long_log),
            in_flight: Arc::clone(&shared.in_flight),
        };
        match conn.backend() {
            Backend::Sqlite => sqlite::spawn(conn, connect, queue, shared)?,
            Backend::Postgres => postgres::spawn(conn, connect, queue, shared)?,
        }
        Ok(writer)
    }

    /// Where the writer is, for a read about to start.
    pub fn progress(&self) -> WriterProgress {
        WriterProgress {
            commits: self.commits.load(Ordering::Acquire),
            snapshots_allowed: !self.long_log.load(Ordering::Relaxed),
        }
    }

    /// Runs `op` as one write transaction (see [`crate::store::write`]) in the next batch, and
    /// answers once that batch has committed.
    pub async fn write<T, F>(&self, now: i64, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let job = Request {
            in_flight: Arc::clone(&self.in_flight),
            now,
            op,
            result: None,
            reply,
        };
        // A job the thread never got is dropped unanswered, and counted out here.
        self.jobs.send(Box::new(job)).map_err(|_| {
            self.in_flight.fetch_sub(1, Ordering::Release);
            StoreError::Unavailable("the writer thread has stopped".into())
        })?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the writer dropped a request".into()))?
    }
}
