//! Group commit for PostgreSQL (see [`super`]). A batch costs the same two round trips
//! whatever its size:
//!
//! 1. **Discovery** (no round trip): every request runs once against an empty [`Stage`] that
//!    notes the keys it asks for ([`crate::stage`]).
//! 2. One statement, outside any transaction, reads the version counter and the rows of every
//!    key of the batch, in one snapshot ([`postgres::read_batch`]).
//! 3. Every request runs against those rows in memory, in order, each seeing the ones before
//!    it; one that fails leaves nothing behind.
//! 4. One statement, a transaction of its own, locks the counter row, and only if the counter
//!    is still where step 2 read it, writes back what changed and sets the counter
//!    ([`postgres::write_batch_if_at`]); then the requests are answered. Every write of live
//!    data moves the counter, so an unmoved counter means the rows read in step 2 are still
//!    the latest: the batch is as if it had held the lock throughout. If another writer moved
//!    it (another server, the sweeper), nothing was written and the batch runs again, under
//!    the counter, as below, and so do the batches of the next second
//!    ([`UNDER_COUNTER_AFTER_LOST_RACE`]).
//!
//! Under the counter (a batch with `Idempotency-Key`s, whose records are one statement more,
//! or one after a lost race) a batch takes four round trips: `BEGIN`; one statement locks the
//! counter row and reads the rows ([`postgres::start_batch`]); the requests run; one statement
//! writes back what changed and sets the counter ([`postgres::write_batch`]); `COMMIT`.
//!
//! Every PostgreSQL write transaction locks the counter row first, so it is the database's
//! write lock (as `BEGIN IMMEDIATE` is SQLite's): batches from all servers on the database
//! take turns (requests within a batch do not), no two writers ever wait for each other in a
//! cycle, and versions become visible in the order they were handed out: once a client has
//! seen version V, every write with a smaller version is visible to everyone.
//!
//! Before a batch starts, while other requests are in flight, the writer waits briefly for
//! more to join it ([`GATHER_GAP`]). A request that needs a statement of its own (a bulk delete
//! over a key range) runs after the batch, as a transaction of its own ([`crate::store::write`]). A
//! batch that fails on a passing fault is rolled back and runs again from the start. Between
//! batches, and at least once a second when idle, the writer reads the database's clock
//! ([`crate::clock`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::job::{Job, Shared, collect_batch, start};
use crate::backend::{self, DbConnection, postgres};
use crate::error::StoreError;
use crate::idempotency;
use crate::stage::Stage;
use crate::store::{BatchVersions, InBatch};

/// The most requests committed together.
const MAX_BATCH: usize = 1024;

/// The most keys one batch reads, which bounds its statements and its memory. Requests past
/// this wait for the next batch (a single request with more keys, a `/_tx` of up to 1,000
/// ops, still runs).
const MAX_BATCH_KEYS: usize = 4096;

/// After a batch lost its race without the counter (see [`run_unlocked`]: another writer, a
/// server on the same database or the sweeper, wrote between its read and its write), batches
/// run under the counter for this long: while another writer is busy, each race lost costs a
/// read, a run and a write that come to nothing, and the counter makes the writers take turns
/// instead (measured with two servers in docs/BENCHMARKS.md).
const UNDER_COUNTER_AFTER_LOST_RACE: Duration = Duration::from_secs(1);

/// A batch that failed on a passing fault (a serialization failure, a deadlock with a
/// statement outside kvstore) runs again this many times before its requests get the error.
const MAX_BATCH_RETRIES: usize = 8;

/// While other requests are in flight (the last batch had several), the writer waits this long
/// for one more request before it starts a batch, and again after each that comes, until the
/// batch holds every request in flight, up to [`GATHER_MAX`] in all: the clients the last batch
/// answered send their next requests at about the same moment, and a batch costs the same
/// round trips whether they join it or make a batch of their own right after (measured in
/// docs/BENCHMARKS.md).
const GATHER_GAP: Duration = Duration::from_micros(200);

/// The longest a batch waits for more requests.
const GATHER_MAX: Duration = Duration::from_millis(1);

/// How often the writer reads the database's clock.
const CLOCK_EVERY: Duration = Duration::from_secs(1);

/// Starts the writer thread over `conn`.
pub(super) fn spawn<C>(
    conn: DbConnection,
    connect: C,
    queue: mpsc::Receiver<Box<dyn Job>>,
    shared: Shared,
) -> Result<(), StoreError>
where
    C: FnMut() -> Result<DbConnection, String> + Send + 'static,
{
    start("kv-writer", move || serve(conn, connect, queue, &shared))
}

fn serve<C>(
    conn: DbConnection,
    mut connect: C,
    queue: mpsc::Receiver<Box<dyn Job>>,
    shared: &Shared,
) where
    C: FnMut() -> Result<DbConnection, String>,
{
    let mut conn = Some(conn);
    let mut clock_read = Instant::now();
    // Requests a batch left for the next one (it had read enough keys).
    let mut waiting: VecDeque<Box<dyn Job>> = VecDeque::new();
    let mut last_batch = 0;
    let mut races = Races::default();
    loop {
        let first = match waiting.pop_front() {
            Some(job) => job,
            None => match queue.recv_timeout(CLOCK_EVERY) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    read_clock(&mut conn, &mut clock_read);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Some(job) = waiting.pop_front()
        {
            batch.push(job);
        }
        let room = MAX_BATCH - batch.len();
        if room > 0
            && let Some(next) = queue.try_recv().ok()
        {
            batch.extend(collect_batch(next, &queue, room));
        }
        if last_batch > 1 {
            gather(&mut batch, &queue, &shared.in_flight);
        }
        last_batch = batch.len();
        if conn.is_none() {
            conn = connect()
                .map_err(|e| log::error!("writer cannot reconnect: {e}"))
                .ok();
        }
        let Some(c) = conn.as_mut() else {
            let down = StoreError::Unavailable("no database connection".into());
            batch.into_iter().for_each(|job| job.finish(Err(&down)));
            continue;
        };
        let plan = plan(c, batch);
        waiting.extend(plan.later);
        let mut staged = plan.staged;
        let ran = run_batch(c, &mut staged, &plan.keys, &plan.record_keys, &mut races);
        if let Ok((_, Some(version))) = &ran {
            shared.known.observe(*version);
        }
        shared.commits.fetch_add(1, Ordering::Release);
        if let Err(err) = &ran {
            log::warn!("a batch of {} writes failed: {err}", staged.len());
        }
        // Requests that found, past their first row, that they need a transaction of their
        // own (a key that holds a collection) run alone after the batch, as discovery's do.
        let late = ran
            .as_ref()
            .map_or_else(|_| Vec::new(), |(late, _)| late.clone());
        let committed = ran.map(|_| ());
        let mut alone = plan.alone;
        for (index, job) in staged.into_iter().enumerate() {
            if late.contains(&index) {
                alone.push(job);
            } else {
                job.finish(committed.as_ref().map(|_| ()));
            }
        }
        for mut job in alone {
            if let Some(version) = job.run_alone(c) {
                shared.known.observe(version);
            }
            job.finish(Ok(()));
        }
        if committed
            .as_ref()
            .is_err_and(|e| e.root().is_connection_fault())
            || backend::is_broken(c)
        {
            conn = None;
        }
        if clock_read.elapsed() >= CLOCK_EVERY {
            read_clock(&mut conn, &mut clock_read);
        }
    }
}

/// Adds the requests that come within [`GATHER_GAP`] of each other, for at most
/// [`GATHER_MAX`], and stops early once the batch holds every request sent to the writer and
/// not answered yet (`in_flight`; the clients the last batch answered may not have sent their
/// next one yet, so it always waits for one gap first).
fn gather(
    batch: &mut Vec<Box<dyn Job>>,
    queue: &mpsc::Receiver<Box<dyn Job>>,
    in_flight: &AtomicUsize,
) {
    let deadline = Instant::now() + GATHER_MAX;
    let mut waited = false;
    while batch.len() < MAX_BATCH && !(waited && batch.len() >= in_flight.load(Ordering::Acquire)) {
        let wait = GATHER_GAP.min(deadline.saturating_duration_since(Instant::now()));
        match queue.recv_timeout(wait) {
            Ok(job) => batch.push(job),
            Err(_) => return,
        }
        waited = true;
    }
}

/// Reads the database's clock (see [`crate::clock`]); a connection that fails is replaced.
fn read_clock(conn: &mut Option<DbConnection>, clock_read: &mut Instant) {
    if let Some(c) = conn.as_mut()
        && let Err(err) = backend::sync_clock(c)
    {
        log::warn!("reading the database's clock failed: {err}");
        *conn = None;
    }
    *clock_read = Instant::now();
}

/// A batch's requests sorted by how they run.
struct Plan {
    /// Against the staged rows of `keys` (and idempotency records of `record_keys`).
    staged: Vec<Box<dyn Job>>,
    keys: Vec<String>,
    record_keys: Vec<String>,
    /// Each as a transaction of its own, after the batch.
    alone: Vec<Box<dyn Job>>,
    /// In the next batch: this one reads enough keys.
    later: Vec<Box<dyn Job>>,
}

/// Runs every request in discovery mode (see [`crate::stage`]) to learn the keys it needs.
fn plan(conn: &mut DbConnection, batch: Vec<Box<dyn Job>>) -> Plan {
    let mut stage = Stage::discovery();
    let mut unused = BatchVersions::from(0);
    let mut plan = Plan {
        staged: Vec::new(),
        keys: Vec::new(),
        record_keys: Vec::new(),
        alone: Vec::new(),
        later: Vec::new(),
    };
    for mut job in batch {
        if stage.wanted_count() >= MAX_BATCH_KEYS && !plan.staged.is_empty() {
            plan.later.push(job);
            continue;
        }
        job.run(conn, &mut unused, InBatch::Staged(&mut stage));
        if stage.needs_own_transaction() {
            plan.alone.push(job);
        } else {
            plan.staged.push(job);
        }
    }
    plan.keys = stage.wanted_keys().into_iter().map(str::to_owned).collect();
    plan.record_keys = stage
        .wanted_record_keys()
        .into_iter()
        .map(str::to_owned)
        .collect();
    plan
}

/// Whether batches try without the counter first (see [`UNDER_COUNTER_AFTER_LOST_RACE`]).
#[derive(Debug, Default)]
struct Races {
    under_counter_until: Option<Instant>,
}

impl Races {
    fn unlocked(&self) -> bool {
        self.under_counter_until
            .is_none_or(|until| Instant::now() >= until)
    }

    fn lost(&mut self) {
        self.under_counter_until = Some(Instant::now() + UNDER_COUNTER_AFTER_LOST_RACE);
    }
}

/// What a batch that ran left to do: the indexes of its requests that need a transaction of
/// their own, and the store's version after it (none for an empty batch).
type Ran = (Vec<usize>, Option<i64>);

/// Runs `batch` against the staged rows of `keys` (and the idempotency records of
/// `record_keys`, one statement more each way when there are any) in one transaction and
/// commits it, again from the start after a passing fault. Returns the indexes of the
/// requests that asked, during the run, for a transaction of their own (they wrote nothing
/// here), and the store's version after the batch (none for an empty batch).
fn run_batch(
    conn: &mut DbConnection,
    batch: &mut [Box<dyn Job>],
    keys: &[String],
    record_keys: &[String],
    races: &mut Races,
) -> Result<Ran, StoreError> {
    if batch.is_empty() {
        return Ok((Vec::new(), None));
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let record_keys: Vec<&str> = record_keys.iter().map(String::as_str).collect();
    // Without idempotency records (whose write is a statement of its own), first without
    // holding the counter while the requests run; after a lost race, under the counter.
    if record_keys.is_empty() && races.unlocked() {
        match run_unlocked(conn, batch, &keys)? {
            Some(ran) => return Ok(ran),
            None => races.lost(),
        }
    }
    let mut attempt = 0;
    loop {
        let result = backend::write_transaction(conn, |conn| {
            let start = postgres::start_batch(pg(conn)?, &keys)?;
            let records = match record_keys.is_empty() {
                true => Vec::new(),
                false => idempotency::find_records(conn, &record_keys)?,
            };
            let mut stage = Stage::over(&keys, start.rows).with_records(&record_keys, records);
            let mut versions = BatchVersions::from(start.version);
            let first = versions.last();
            let alone = run_requests(conn, batch, &mut stage, &mut versions)?;
            let (puts, removes) = stage.changes();
            if !puts.is_empty() || !removes.is_empty() || versions.last() != first {
                let log = stage.change_log();
                postgres::write_batch(pg(conn)?, &puts, &removes, log, versions.last())?;
            }
            idempotency::put_records(conn, &stage.new_records())?;
            Ok((alone, Some(versions.last())))
        });
        match result {
            Err(err) if err.is_retryable() && attempt < MAX_BATCH_RETRIES => attempt += 1,
            other => return other,
        }
    }
}

/// Runs `batch` without holding the version counter while its requests run: one statement
/// reads the counter and the rows (no transaction), the requests run against them in memory,
/// and one statement, a transaction of its own, writes what changed only if the counter has
/// not moved since ([`postgres::write_batch_if_at`]): two round trips where a batch under the
/// counter takes four, and the counter is held only by the write and its commit. `None`: the
/// counter moved (another server wrote), nothing was written, and the batch must run again.
fn run_unlocked(
    conn: &mut DbConnection,
    batch: &mut [Box<dyn Job>],
    keys: &[&str],
) -> Result<Option<Ran>, StoreError> {
    let start = postgres::read_batch(pg(conn)?, keys)?;
    let mut stage = Stage::over(keys, start.rows);
    let mut versions = BatchVersions::from(start.version);
    let alone = run_requests(conn, batch, &mut stage, &mut versions)?;
    if !stage.new_records().is_empty() {
        return Ok(None); // not planned for: run under the counter, which writes them
    }
    let (puts, removes) = stage.changes();
    if puts.is_empty() && removes.is_empty() && versions.last() == start.version {
        return Ok(Some((alone, Some(start.version))));
    }
    let log = stage.change_log();
    let (read_at, version) = (start.version, versions.last());
    match postgres::write_batch_if_at(pg(conn)?, &puts, &removes, log, read_at, version) {
        Ok(wrote) => Ok(wrote.then_some((alone, Some(version)))),
        Err(err) => match StoreError::from(err) {
            err if err.is_retryable() => Ok(None),
            err => Err(err),
        },
    }
}

/// Runs the requests of `batch` in order against `stage`, taking versions from `versions`.
/// Returns the indexes of those that asked for a transaction of their own (they wrote
/// nothing here); an error if a row read on its own failed (the batch cannot stand, whatever
/// the requests made of it).
fn run_requests(
    conn: &mut DbConnection,
    batch: &mut [Box<dyn Job>],
    stage: &mut Stage,
    versions: &mut BatchVersions,
) -> Result<Vec<usize>, StoreError> {
    let mut alone = Vec::new();
    for (index, job) in batch.iter_mut().enumerate() {
        job.run(conn, versions, InBatch::Staged(&mut *stage));
        if stage.needs_own_transaction() {
            alone.push(index);
        }
    }
    match stage.take_database_error() {
        Some(err) => Err(err),
        None => Ok(alone),
    }
}

fn pg(conn: &mut DbConnection) -> Result<&mut diesel::PgConnection, StoreError> {
    match conn {
        DbConnection::Postgres(c) => Ok(c),
        DbConnection::Sqlite(_) => Err(StoreError::Internal(
            "the PostgreSQL writer was given a SQLite connection".into(),
        )),
    }
}
