//! What the writer threads run: a queued request ([`Job`]), the counters they share with the
//! [`super::Writer`] handles, and how they take a batch off the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use crate::backend::DbConnection;
use crate::error::StoreError;
use crate::known_version::KnownVersion;
use crate::store::{self, BatchVersions, InBatch, Tx};

/// A queued request, type-erased so one queue carries every kind of write.
pub(super) trait Job: Send {
    /// Runs the request's writes inside the open batch (again if the batch is run again).
    /// Returns whether they succeeded.
    fn run(
        &mut self,
        conn: &mut DbConnection,
        versions: &mut BatchVersions,
        place: InBatch<'_>,
    ) -> bool;
    /// Runs the request as a write transaction of its own (a PostgreSQL request that a batch's
    /// staged rows cannot serve; see [`crate::stage`]). Returns the store's version when it
    /// committed, if it did.
    fn run_alone(&mut self, conn: &mut DbConnection) -> Option<i64>;
    /// Answers the request once the batch has committed, or failed to.
    fn finish(self: Box<Self>, committed: Result<(), &StoreError>);
}

pub(super) struct Request<T, F> {
    /// The writer's count of requests sent and not answered yet.
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) now: i64,
    pub(super) op: F,
    pub(super) result: Option<Result<T, StoreError>>,
    pub(super) reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Request<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send,
{
    fn run(
        &mut self,
        conn: &mut DbConnection,
        versions: &mut BatchVersions,
        place: InBatch<'_>,
    ) -> bool {
        let result = store::write_in_batch(conn, versions, place, self.now, &mut self.op);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn run_alone(&mut self, conn: &mut DbConnection) -> Option<i64> {
        let (result, version) = match store::write_versioned(conn, self.now, &mut self.op) {
            Ok((out, version)) => (Ok(out), Some(version)),
            Err(err) => (Err(err), None),
        };
        self.result = Some(result);
        version
    }

    fn finish(self: Box<Self>, committed: Result<(), &StoreError>) {
        self.in_flight.fetch_sub(1, Ordering::Release);
        let result = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Internal("a queued write was not run".into()))),
            Err(err) => Err(err.clone()),
        };
        // The client may have gone away; its write stands either way.
        let _ = self.reply.send(result);
    }
}

/// What the writer thread shares with the handles.
pub(super) struct Shared {
    pub(super) commits: Arc<AtomicU64>,
    /// Learns each batch's version once it has committed, before its requests are answered.
    pub(super) known: Arc<KnownVersion>,
    pub(super) long_log: Arc<AtomicBool>,
    pub(super) in_flight: Arc<AtomicUsize>,
}

/// Starts a named thread.
pub(super) fn start(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(|_| ())
        .map_err(|e| StoreError::Internal(format!("cannot start the {name} thread: {e}")))
}

/// The requests waiting now, `first` first, at most `max` (for the writers' batches and the
/// batched reads of [`crate::point_reads`]).
pub(crate) fn collect_batch<T>(first: T, queue: &mpsc::Receiver<T>, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}
