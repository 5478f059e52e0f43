//! PostgreSQL point reads in batches. A `GET` is one primary-key lookup, and on PostgreSQL
//! each statement costs a round trip and the database's per-statement work, which outweigh
//! the lookup itself. So the reads waiting at one moment go to the database together, as one
//! prepared `SELECT … WHERE key = ANY($1)`: a read costs one round trip shared with the reads
//! beside it, and none waits for another to be gathered (a reader thread takes what is queued
//! and goes). [`READER_THREADS`] threads, each with a connection of its own, take turns, so
//! one batch is collected while another is at the database.
//!
//! A read queued after a write was acknowledged is sent after that write committed, so it
//! sees it (each statement reads the latest committed state). A connection found lost (the
//! database restarted) is replaced and the batch sent again once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

use crate::backend::DbConnection;
use crate::error::StoreError;
use crate::key::validate_key;
use crate::model::StoredValue;
use crate::store::{self, Lookup};
use crate::writer::collect_batch;

/// Reader threads (and connections) per server.
pub const READER_THREADS: usize = 2;

/// The most reads sent together.
const MAX_BATCH: usize = 512;

struct Read {
    key: String,
    now: i64,
    reply: oneshot::Sender<Result<Lookup<StoredValue>, StoreError>>,
}

/// The handle requests use to reach the reader threads.
#[derive(Clone)]
pub struct PointReader {
    reads: mpsc::Sender<Read>,
}

impl PointReader {
    /// Starts the reader threads, each over a connection from `connect` (called again to
    /// replace one that was lost).
    pub fn spawn<C>(connect: C) -> Result<PointReader, StoreError>
    where
        C: Fn() -> Result<DbConnection, String> + Send + Sync + 'static,
    {
        let (reads, queue) = mpsc::channel::<Read>();
        let queue = Arc::new(Mutex::new(queue));
        let connect = Arc::new(connect);
        for n in 0..READER_THREADS {
            let conn = connect().map_err(StoreError::Unavailable)?;
            let (queue, connect) = (Arc::clone(&queue), Arc::clone(&connect));
            std::thread::Builder::new()
                .name(format!("kv-reader-{n}"))
                .spawn(move || serve(conn, &*connect, &queue))
                .map_err(|e| StoreError::Internal(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(PointReader { reads })
    }

    /// `GET`: the live row of `key` at `now`, or why there is none (see [`store::get`]).
    pub async fn get(&self, now: i64, key: String) -> Result<Lookup<StoredValue>, StoreError> {
        validate_key(&key)?;
        let (reply, answer) = oneshot::channel();
        self.reads
            .send(Read { key, now, reply })
            .map_err(|_| StoreError::Unavailable("the reader threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("a reader thread dropped a read".into()))?
    }
}

fn serve(
    conn: DbConnection,
    connect: &dyn Fn() -> Result<DbConnection, String>,
    queue: &Mutex<mpsc::Receiver<Read>>,
) {
    let mut conn = Some(conn);
    loop {
        let batch = {
            let Ok(queue) = queue.lock() else { return };
            let Ok(first) = queue.recv() else { return };
            collect_batch(first, &queue, MAX_BATCH)
        };
        let keys: Vec<&str> = batch.iter().map(|read| read.key.as_str()).collect();
        let mut found = read_rows(&mut conn, connect, &keys);
        if found.as_ref().is_err_and(StoreError::is_connection_fault) {
            found = read_rows(&mut conn, connect, &keys);
        }
        match found {
            Ok(rows) => {
                let rows: HashMap<String, StoredValue> = rows.into_iter().collect();
                for read in batch {
                    let row = rows.get(&read.key).cloned();
                    // The client may have gone away.
                    let _ = read.reply.send(Ok(store::lookup(row, read.now)));
                }
            }
            Err(err) => {
                for read in batch {
                    let _ = read.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// The rows of `keys` on `conn`, connecting first if there is none; a connection found lost
/// is dropped.
fn read_rows(
    conn: &mut Option<DbConnection>,
    connect: &dyn Fn() -> Result<DbConnection, String>,
    keys: &[&str],
) -> Result<Vec<(String, StoredValue)>, StoreError> {
    if conn.is_none() {
        // Why is in the log, not in the response: it names the database's host.
        let opened = connect().map_err(|e| {
            log::warn!("a reader thread cannot reconnect: {e}");
            StoreError::Unavailable("no database connection".into())
        })?;
        *conn = Some(opened);
    }
    let Some(c) = conn.as_mut() else {
        return Err(StoreError::Unavailable("no database connection".into()));
    };
    let rows = store::get_many(c, keys);
    if rows.as_ref().is_err_and(StoreError::is_connection_fault) {
        *conn = None;
    }
    rows
}
