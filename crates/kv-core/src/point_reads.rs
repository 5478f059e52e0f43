//! PostgreSQL point reads in batches. A `GET` is one primary-key lookup, and on PostgreSQL
//! each statement costs a round trip and the database's per-statement work, which outweigh
//! the lookup itself. So the reads waiting at one moment go to the database together, as one
//! prepared `SELECT … WHERE key = ANY($1)`: a read costs one round trip shared with the reads
//! beside it, and none waits for another to be gathered (the reader thread takes what is
//! queued and goes). One thread with a connection of its own ([`READER_THREADS`]): the reads
//! that come while its batch is at the database make its next batch.
//!
//! A read queued after a write was acknowledged is sent after that write committed, so it
//! sees it (each statement reads the latest committed state). A connection found lost (the
//! database restarted) is replaced and the batch sent again once.
//!
//! The statement also reads the store's version, in the same snapshot as the rows: the
//! version the answer reflects (`Kv-Version`). On a read replica
//! ([`crate::replicas`]) a read may ask for a version at least `V`: while the replica is
//! behind it, the read is kept and sent again with the next batches (at least every
//! [`RETRY_EVERY`]) until the replica has caught up or the read's wait has run out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::backend::{DbConnection, postgres};
use crate::error::StoreError;
use crate::key::validate_key;
use crate::model::StoredValue;
use crate::store::{self, Lookup};
use crate::writer::collect_batch;

/// Reader threads (and connections) per server, and per read replica. One: two or three took
/// turns at a cost (a hand-off of the queue's lock between them, smaller batches), and served
/// 15–30 % fewer GETs on PostgreSQL (docs/BENCHMARKS.md); the code takes any number.
pub const READER_THREADS: usize = 1;

/// The most reads sent together.
const MAX_BATCH: usize = 512;

/// How often a read waiting for a replica to catch up is sent again.
pub const RETRY_EVERY: Duration = Duration::from_millis(1);

/// A version a read must see, and until when it waits for it.
#[derive(Debug, Clone, Copy)]
pub struct AtLeast {
    pub version: i64,
    pub until: Instant,
}

/// What a point read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointAnswer {
    /// The key's row as of `version` (the store's version in the read's snapshot).
    At {
        found: Lookup<StoredValue>,
        version: i64,
    },
    /// The database was still at `version`, below the one asked for, when the wait ran out.
    Behind { version: i64 },
}

struct Read {
    key: String,
    now: i64,
    at_least: Option<AtLeast>,
    reply: oneshot::Sender<Result<PointAnswer, StoreError>>,
}

/// The handle requests use to reach the reader threads.
#[derive(Clone)]
pub struct PointReader {
    reads: mpsc::Sender<Read>,
}

impl PointReader {
    /// Starts the reader threads (named `name-N`), each over a connection from `connect`
    /// (called again to replace one that was lost). With `connect_now`, a first connection
    /// that fails is an error; without, the threads connect on their first read.
    pub fn spawn<C>(name: &str, connect: C, connect_now: bool) -> Result<PointReader, StoreError>
    where
        C: Fn() -> Result<DbConnection, String> + Send + Sync + 'static,
    {
        let (reads, queue) = mpsc::channel::<Read>();
        let queue = Arc::new(Mutex::new(queue));
        let connect = Arc::new(connect);
        for n in 0..READER_THREADS {
            let conn = match connect_now {
                true => Some(connect().map_err(StoreError::Unavailable)?),
                false => None,
            };
            let (queue, connect) = (Arc::clone(&queue), Arc::clone(&connect));
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || serve(conn, &*connect, &queue))
                .map_err(|e| StoreError::Internal(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(PointReader { reads })
    }

    /// `GET`: the live row of `key` at `now`, or why there is none (see [`store::get`]), with
    /// the version it reflects; with `at_least`, from a snapshot at that version or newer, or
    /// [`PointAnswer::Behind`] once its wait has run out.
    pub async fn get(
        &self,
        now: i64,
        key: String,
        at_least: Option<AtLeast>,
    ) -> Result<PointAnswer, StoreError> {
        validate_key(&key)?;
        let (reply, answer) = oneshot::channel();
        let read = Read {
            key,
            now,
            at_least,
            reply,
        };
        self.reads
            .send(read)
            .map_err(|_| StoreError::Unavailable("the reader threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("a reader thread dropped a read".into()))?
    }
}

fn serve(
    conn: Option<DbConnection>,
    connect: &dyn Fn() -> Result<DbConnection, String>,
    queue: &Mutex<mpsc::Receiver<Read>>,
) {
    let mut conn = conn;
    // Reads whose replica was behind the version they asked for, sent again with the next batch.
    let mut waiting: Vec<Read> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut waiting);
        if batch.is_empty() {
            let Ok(queue) = queue.lock() else { return };
            let Ok(first) = queue.recv() else { return };
            batch = collect_batch(first, &queue, MAX_BATCH);
        } else {
            // Wait a moment for new reads to go with the waiting ones; another thread may be
            // the one collecting them.
            match queue.try_lock() {
                Ok(queue) => match queue.recv_timeout(RETRY_EVERY) {
                    Ok(first) => batch.extend(collect_batch(first, &queue, MAX_BATCH)),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                Err(_) => std::thread::sleep(RETRY_EVERY),
            }
        }
        let keys: Vec<&str> = batch.iter().map(|read| read.key.as_str()).collect();
        let mut found = read_rows(&mut conn, connect, &keys);
        if found.as_ref().is_err_and(StoreError::is_connection_fault) {
            found = read_rows(&mut conn, connect, &keys);
        }
        match found {
            Ok((version, rows)) => {
                let rows: HashMap<String, StoredValue> = rows.into_iter().collect();
                let now = Instant::now();
                for read in batch {
                    let answer = match read.at_least {
                        Some(at_least) if at_least.version > version => {
                            if now < at_least.until {
                                waiting.push(read);
                                continue;
                            }
                            PointAnswer::Behind { version }
                        }
                        _ => PointAnswer::At {
                            found: store::lookup(rows.get(&read.key).cloned(), read.now),
                            version,
                        },
                    };
                    // The client may have gone away.
                    let _ = read.reply.send(Ok(answer));
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

/// The store's version and the rows of `keys` on `conn`, connecting first if there is none;
/// a connection found lost is dropped.
fn read_rows(
    conn: &mut Option<DbConnection>,
    connect: &dyn Fn() -> Result<DbConnection, String>,
    keys: &[&str],
) -> Result<(i64, Vec<(String, StoredValue)>), StoreError> {
    if conn.is_none() {
        // Why is in the log, not in the response: it names the database's host.
        let opened = connect().map_err(|e| {
            log::warn!("a reader thread cannot reconnect: {e}");
            StoreError::Unavailable("no database connection".into())
        })?;
        *conn = Some(opened);
    }
    let rows = match conn.as_mut() {
        Some(DbConnection::Postgres(c)) => postgres::rows_at_version(c, keys).map_err(Into::into),
        Some(DbConnection::Sqlite(_)) => Err(StoreError::Internal(
            "batched point reads are for PostgreSQL".into(),
        )),
        None => Err(StoreError::Unavailable("no database connection".into())),
    };
    if rows.as_ref().is_err_and(StoreError::is_connection_fault) {
        *conn = None;
    }
    rows
}
