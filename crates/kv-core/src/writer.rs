//! Group commit for SQLite. One thread owns the write connection; requests queue their writes
//! to it and it commits them in batches — one `BEGIN IMMEDIATE … COMMIT` for every request
//! waiting at that moment. Each request runs in its own savepoint, so a failing request rolls
//! back alone, and each is answered only after its batch has committed: durability is the
//! same as one transaction per request, at a fraction of the commits.

use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use crate::backend::{self, DbConnection};
use crate::error::StoreError;
use crate::store::{self, Tx};

/// The most requests committed together.
const MAX_BATCH: usize = 1024;

/// A queued request, type-erased so one queue carries every kind of write.
trait Job: Send {
    /// Runs the request's writes (in their own savepoint) inside the open batch.
    fn run(&mut self, conn: &mut DbConnection);
    /// Answers the request once the batch has committed, or failed to.
    fn finish(self: Box<Self>, committed: Result<(), &StoreError>);
}

struct Request<T, F> {
    now: i64,
    op: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Request<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &mut DbConnection) {
        if let Some(op) = self.op.take() {
            self.result = Some(store::write(conn, self.now, op));
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), &StoreError>) {
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

/// The handle requests use to reach the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread over a connection from `connect` (called again to replace a
    /// connection that broke).
    pub fn spawn<C>(mut connect: C) -> Result<Writer, StoreError>
    where
        C: FnMut() -> Result<DbConnection, String> + Send + 'static,
    {
        let conn = connect().map_err(StoreError::Unavailable)?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        thread::Builder::new()
            .name("kv-writer".into())
            .spawn(move || serve(conn, connect, queue))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { jobs })
    }

    /// Runs `op` as one write transaction (see [`store::write`]) in the next batch, and
    /// answers once that batch has committed.
    pub async fn write<T, F>(&self, now: i64, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Request {
            now,
            op: Some(op),
            result: None,
            reply,
        };
        self.jobs
            .send(Box::new(job))
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the writer dropped a request".into()))?
    }
}

fn serve<C>(conn: DbConnection, mut connect: C, queue: mpsc::Receiver<Box<dyn Job>>)
where
    C: FnMut() -> Result<DbConnection, String>,
{
    let mut conn = Some(conn);
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            conn = connect()
                .map_err(|e| log::error!("writer cannot reconnect: {e}"))
                .ok();
        }
        let committed = match conn.as_mut() {
            Some(conn) => backend::write_transaction(conn, |conn| {
                for job in batch.iter_mut() {
                    job.run(conn);
                }
                Ok(())
            }),
            None => Err(StoreError::Unavailable("no database connection".into())),
        };
        if let Err(err) = &committed {
            log::warn!("a batch of {} writes failed: {err}", batch.len());
        }
        if conn.as_mut().is_some_and(backend::is_broken) {
            conn = None;
        }
        for job in batch {
            job.finish(committed.as_ref().map(|_| ()));
        }
    }
}
