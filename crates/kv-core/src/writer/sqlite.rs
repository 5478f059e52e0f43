//! Group commit for SQLite: one `BEGIN IMMEDIATE … COMMIT` for every request waiting at that
//! moment (see [`super`]).
//!
//! A failing request must roll back alone. A batch therefore runs first with its requests
//! straight in the transaction ([`BatchIsolation::Shared`]); if one of them fails, that whole
//! attempt is rolled back and the batch runs again with each request in its own savepoint
//! ([`BatchIsolation::Savepoint`]), where the failing ones roll back alone and the others
//! commit. Requests are deterministic over the same database state (each carries its own
//! `now`), so the second run fails the same requests. Savepoints are not free: SQLite copies
//! every page a request changes into a statement journal (measured in docs/BENCHMARKS.md), and
//! batches where every request succeeds are the common case.
//!
//! A second thread checkpoints the write-ahead log (copies it into the database file, which
//! waits for the disk) after every [`CHECKPOINT_EVERY`] writes and five times a second, so
//! batches do not wait for checkpoints, except for the restart of a long log below (once per
//! 20 MB or so of log; 1–21 ms each measured in the debug build).
//!
//! The log starts over from its beginning only when a write finds it wholly checkpointed and
//! no reader reading from it. Under steady reads and writes neither happens by itself: a
//! passive checkpoint never catches up with a writer that appends meanwhile, and readers that
//! keep their snapshot from one read to the next ([`crate::reader`]) are nearly always
//! reading from the log (it grew by 35 MB a second under the 90/10 benchmark mix). So once the
//! log is long and still growing, the checkpoint thread tells readers to keep no snapshot
//! ([`WriterProgress::snapshots_allowed`]), and the writer, between two batches, checkpoints
//! the rest of the log and waits up to [`RESTART_WAIT`] for the readers of the moment to
//! finish ([`backend::restart_log`]); its next batch starts the log over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::job::{Job, Shared, collect_batch, start};
use crate::backend::{self, DbConnection, LogRestart};
use crate::error::StoreError;
use crate::store::{BatchIsolation, BatchVersions, InBatch};

/// The most requests committed together.
const MAX_BATCH: usize = 1024;

/// Writes after which the checkpoint thread is woken (about 2 log pages each).
const CHECKPOINT_EVERY: usize = 500;

/// How often the checkpoint thread runs without being woken.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// A write-ahead log this long (in pages, 4 KiB each) that is still growing is due to start
/// over from its beginning: readers then stop keeping snapshots (see [`WriterProgress`]) and
/// the writer restarts it between batches. Half of the length at which the writer's
/// connection checkpoints itself ([`backend::WRITER_AUTOCHECKPOINT_PAGES`]), the last resort
/// should the checkpoint thread fall behind.
const LONG_LOG_PAGES: i32 = backend::WRITER_AUTOCHECKPOINT_PAGES as i32 / 2;

/// The longest the writer waits between two batches for readers to leave a long log. Readers
/// keep no snapshot then, so each leaves it within a read; a reader that stays (another
/// process's long read) costs the writer this much per attempt.
const RESTART_WAIT: Duration = Duration::from_millis(10);

/// After readers outstayed [`RESTART_WAIT`], the writer leaves the log alone for twice as long
/// as after the attempt before, from `RESTART_WAIT` up to this: steady readers that happen to
/// hold the log at that moment are outwaited at the next try, and a reader that keeps reading
/// from it costs the writer about 1% of its time.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Starts the checkpoint thread and the writer thread over `conn`.
pub(super) fn spawn<C>(
    mut conn: DbConnection,
    mut connect: C,
    queue: mpsc::Receiver<Box<dyn Job>>,
    shared: Shared,
) -> Result<(), StoreError>
where
    C: FnMut() -> Result<DbConnection, String> + Send + 'static,
{
    backend::defer_checkpoints(&mut conn)?;
    let checkpoints = connect().map_err(StoreError::Unavailable)?;
    let (wake_checkpointer, wakes) = mpsc::sync_channel(1);
    let published = Arc::clone(&shared.long_log);
    start("kv-checkpoint", move || {
        checkpoint(checkpoints, wakes, &published)
    })?;
    start("kv-writer", move || {
        serve(conn, connect, queue, wake_checkpointer, &shared)
    })
}

/// A connection from `connect`, set up for the writer.
fn writer_connection<C>(connect: &mut C) -> Result<DbConnection, StoreError>
where
    C: FnMut() -> Result<DbConnection, String>,
{
    let mut conn = connect().map_err(StoreError::Unavailable)?;
    backend::defer_checkpoints(&mut conn)?;
    Ok(conn)
}

fn serve<C>(
    conn: DbConnection,
    mut connect: C,
    queue: mpsc::Receiver<Box<dyn Job>>,
    wake_checkpointer: mpsc::SyncSender<()>,
    shared: &Shared,
) where
    C: FnMut() -> Result<DbConnection, String>,
{
    let mut conn = Some(conn);
    let mut writes_since_checkpoint = 0;
    let mut restart = RestartSchedule::default();
    while let Ok(first) = queue.recv() {
        let mut batch = collect_batch(first, &queue, MAX_BATCH);
        if conn.is_none() {
            conn = writer_connection(&mut connect)
                .map_err(|e| log::error!("writer cannot reconnect: {e}"))
                .ok();
        }
        let committed = match conn.as_mut() {
            Some(conn) => run_batch(conn, &mut batch),
            None => Err(StoreError::Unavailable("no database connection".into())),
        };
        if let Ok(version) = committed {
            shared.known.observe(version);
        }
        shared.commits.fetch_add(1, Ordering::Release);
        if let Err(err) = &committed {
            log::warn!("a batch of {} writes failed: {err}", batch.len());
        }
        // After a database fault (read-only file, full disk, I/O error) a new connection
        // finds the database as it is now; SQLite's may keep reporting the fault.
        let fault = matches!(
            committed.as_ref().map_err(StoreError::root),
            Err(StoreError::Unavailable(_))
        );
        if fault || conn.as_mut().is_some_and(backend::is_broken) {
            conn = None;
        }
        writes_since_checkpoint += batch.len();
        if writes_since_checkpoint >= CHECKPOINT_EVERY {
            // Full means a wake-up is already pending.
            let _ = wake_checkpointer.try_send(());
            writes_since_checkpoint = 0;
        }
        for job in batch {
            job.finish(committed.as_ref().map(|_| ()));
        }
        if let Some(conn) = conn.as_mut() {
            restart.restart_if_due(conn, &shared.long_log);
        }
    }
}

/// When the writer next tries to restart a long log (see [`RESTART_BACKOFF_MAX`]).
#[derive(Debug, Default)]
struct RestartSchedule {
    /// Attempts since the last restart that readers outstayed (or that failed).
    failures: u32,
    not_before: Option<Instant>,
}

impl RestartSchedule {
    /// Restarts the log (between two batches) if the checkpoint thread found it long and no
    /// failed attempt asks to wait; clears `long_log` once the restart is due.
    fn restart_if_due(&mut self, conn: &mut DbConnection, long_log: &AtomicBool) {
        if !long_log.load(Ordering::Relaxed) || !self.is_due(Instant::now()) {
            return;
        }
        let outcome = backend::restart_log(conn, RESTART_WAIT);
        if let Err(err) = &outcome {
            log::warn!("restarting the write-ahead log failed: {err}");
        }
        if outcome == Ok(LogRestart::Due) {
            long_log.store(false, Ordering::Relaxed);
        }
        self.record(outcome.ok(), Instant::now());
    }

    fn is_due(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// Records the outcome of an attempt that ended at `now` (`None`: it failed with an error).
    fn record(&mut self, outcome: Option<LogRestart>, now: Instant) {
        match outcome {
            Some(LogRestart::Due) => *self = RestartSchedule::default(),
            // Cost nothing: try again after the next batch.
            Some(LogRestart::CheckpointRunning) => {}
            Some(LogRestart::ReadersStayed) | None => {
                let pause = RESTART_WAIT
                    .saturating_mul(1 << self.failures.min(16))
                    .min(RESTART_BACKOFF_MAX);
                self.failures += 1;
                self.not_before = Some(now + pause);
            }
        }
    }
}

/// Runs `batch` in one transaction and commits it: shared, and if a request fails, again
/// with savepoints (see the module's documentation). Returns the store's version after it.
fn run_batch(conn: &mut DbConnection, batch: &mut [Box<dyn Job>]) -> Result<i64, StoreError> {
    let mut attempt = |conn: &mut DbConnection, isolation| {
        let mut failed = false;
        let committed = backend::sqlite_batch(conn, |conn| {
            let mut versions = BatchVersions::start(conn)?;
            for job in batch.iter_mut() {
                let ran = job.run(conn, &mut versions, InBatch::Sqlite(isolation));
                if !ran && isolation == BatchIsolation::Shared {
                    failed = true;
                    return Err(StoreError::Internal("a shared batch write failed".into()));
                }
            }
            let last = versions.last();
            versions.finish(conn)?;
            Ok(last)
        });
        (committed, failed)
    };
    match attempt(conn, BatchIsolation::Shared) {
        (_, true) => attempt(conn, BatchIsolation::Savepoint).0,
        (committed, false) => committed,
    }
}

/// The checkpoint thread: checkpoints when woken and every [`CHECKPOINT_INTERVAL`], until
/// the writer stops, and publishes whether the log is long and still growing.
fn checkpoint(conn: DbConnection, wakes: mpsc::Receiver<()>, long_log: &AtomicBool) {
    let mut checkpointer = backend::Checkpointer::new(conn);
    let mut last_log_pages = 0;
    // Logged when it starts failing, when the reason changes and when it works again, not
    // five times a second (a read-only or full disk fails every checkpoint).
    let mut failing: Option<String> = None;
    loop {
        match wakes.recv_timeout(CHECKPOINT_INTERVAL) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        match checkpointer.checkpoint() {
            Ok(log_pages) => {
                // Not growing (no writes), the log stays as it is, and snapshots keep nothing
                // from happening.
                long_log.store(
                    log_pages >= LONG_LOG_PAGES && log_pages > last_log_pages,
                    Ordering::Relaxed,
                );
                last_log_pages = log_pages;
                if failing.take().is_some() {
                    log::info!("checkpoints work again");
                }
            }
            Err(err) => {
                long_log.store(false, Ordering::Relaxed);
                if failing.as_ref() != Some(&err) {
                    // The writer's connection checkpoints itself meanwhile (see
                    // `defer_checkpoints`).
                    log::warn!("checkpoint failed: {err}");
                }
                failing = Some(err);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::Writer;
    use super::*;
    use crate::args::{SetArgs, SetExpiry};
    use crate::backend::{ConnectionOptions, DatabaseUrl};
    use crate::store::{self, Tx};
    use std::thread;

    /// A migrated SQLite file in `dir` and a writer over it.
    pub(crate) fn sqlite_store(dir: &tempfile::TempDir) -> (std::path::PathBuf, Writer) {
        let path = dir.path().join("kv.sqlite3");
        let url: DatabaseUrl = path.display().to_string().parse().expect("url");
        let options = ConnectionOptions::default();
        let mut conn = backend::connect(&url, &options).expect("connect");
        backend::run_migrations(&mut conn).expect("migrate");
        let connect = move || backend::connect(&url, &options).map_err(|e| e.to_string());
        let known = std::sync::Arc::new(crate::known_version::KnownVersion::new(0));
        let writer = Writer::spawn(connect, known).expect("writer");
        (path, writer)
    }

    pub(crate) fn set_args(value: &str) -> SetArgs {
        SetArgs {
            value: value.to_owned(),
            expiry: SetExpiry::Persist,
            precondition: Default::default(),
        }
    }

    /// Sends `count` writes at once, so that they share batches, the `i`-th running `op(i, …)`,
    /// and returns their results in order.
    fn write_together<T, F>(writer: &Writer, count: usize, op: F) -> Vec<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: Fn(usize, &mut Tx<'_>) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        block_on(async {
            let handles: Vec<_> = (0..count)
                .map(|i| {
                    let (writer, op) = (writer.clone(), op.clone());
                    tokio::spawn(
                        async move { writer.write(crate::now_ms(), move |tx| op(i, tx)).await },
                    )
                })
                .collect();
            let mut results = Vec::new();
            for handle in handles {
                results.push(handle.await.expect("task"));
            }
            results
        })
    }

    /// Sets `k0`, `k1`, … to `value`, one write at a time, calling `after(i)` after each.
    fn set_one_by_one(writer: &Writer, count: usize, value: &str, mut after: impl FnMut(usize)) {
        block_on(async {
            for i in 0..count {
                let args = set_args(value);
                writer
                    .write(crate::now_ms(), move |tx| tx.set(&format!("k{i}"), &args))
                    .await
                    .expect("write");
                after(i);
            }
        });
    }

    pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn a_failing_request_rolls_back_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, writer) = sqlite_store(&dir);
        // Sent together, so they share batches: every third one writes, then fails.
        let results = write_together(&writer, 60, |i, tx| {
            let outcome = tx.set(&format!("k{i}"), &set_args("1"))?;
            if i % 3 == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(outcome.row.version)
        });
        let url: DatabaseUrl = path.display().to_string().parse().expect("url");
        let mut conn = backend::connect(&url, &ConnectionOptions::default()).expect("connect");
        let mut versions = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            let stored = store::get(&mut conn, crate::now_ms(), &format!("k{i}")).expect("get");
            if i % 3 == 0 {
                assert!(
                    matches!(result, Err(StoreError::Conflict)),
                    "k{i}: {result:?}"
                );
                assert!(
                    matches!(stored, store::Lookup::Missing),
                    "k{i} was rolled back"
                );
            } else {
                let version = result.expect("committed");
                assert!(matches!(stored, store::Lookup::Live(row) if row.version == version));
                versions.push(version);
            }
        }
        versions.sort_unstable();
        assert_eq!(
            versions,
            (1..=40).collect::<Vec<i64>>(),
            "every committed write has its own version, and the failed ones took none"
        );
        assert_eq!(
            backend::current_version(&mut conn).expect("version"),
            40,
            "the counter is at the last version"
        );
    }

    #[test]
    fn a_batch_run_again_with_savepoints_gives_each_write_what_it_saw_the_first_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_path, writer) = sqlite_store(&dir);
        let incr = crate::args::IncrArgs {
            by: 1,
            decrement: false,
            expires_at_if_created: None,
        };
        // Sent together, so they share batches: increments of one counter, and every fifth
        // request increments it and then fails, so its batch runs again with savepoints.
        let results = write_together(&writer, 50, move |i, tx| {
            let row = tx.incr("counter", &incr, &Default::default())?;
            if i % 5 == 0 {
                return Err(StoreError::Conflict);
            }
            crate::args::counter_value(&row.value)
        });
        let mut counted: Vec<i64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .copied()
            .collect();
        counted.sort_unstable();
        assert_eq!(
            counted,
            (1..=40).collect::<Vec<i64>>(),
            "each committed increment saw the ones before it, and the failed ones left nothing"
        );
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, Err(StoreError::Conflict)))
                .count(),
            10
        );
    }

    #[test]
    fn the_log_starts_over_while_readers_read_all_the_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, writer) = sqlite_store(&dir);
        let wal = path.with_extension("sqlite3-wal");
        let url: DatabaseUrl = path.display().to_string().parse().expect("url");
        let done = Arc::new(AtomicBool::new(false));
        // Two readers as the server's two workers are, reading without pause.
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let conn = backend::connect(&url, &ConnectionOptions::default()).expect("connect");
                let (writer, done) = (writer.clone(), Arc::clone(&done));
                thread::spawn(move || {
                    let mut reader =
                        crate::reader::SnapshotReader::new(conn, crate::reader::SNAPSHOT_MAX_AGE);
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        reader
                            .read(writer.progress(), |conn| {
                                store::get(conn, crate::now_ms(), "k1")
                            })
                            .expect("read");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        // One write at a time, each about three log pages: some 250 MB of log if it never
        // started over, six times the length at which the writer's connection checkpoints
        // itself.
        let value = format!("\"{}\"", "x".repeat(100));
        let mut log = LogLength::open(&path);
        let mut largest_file = 0;
        set_one_by_one(&writer, 20_000, &value, |_| {
            log.sample();
            largest_file = largest_file.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        });
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            let reads = reader.join().expect("reader");
            assert!(reads > 1000, "the readers read throughout ({reads} reads)");
        }
        // With readers in the way of every restart SQLite would make by itself, only the
        // writer's connection's own checkpoint would start the log over, once it reached
        // this length (every time: 10,001 to 10,013 pages, measured without the writer's
        // restart). The writer restarts it soon after LONG_LOG_PAGES (5,200 to 6,900 pages
        // measured), on busy cores now and then later, when readers outwait its attempts.
        let last_resort = backend::WRITER_AUTOCHECKPOINT_PAGES;
        let long: Vec<u32> = log
            .peaks
            .iter()
            .copied()
            .filter(|&pages| pages >= LONG_LOG_PAGES as u32)
            .collect();
        let early = long.iter().filter(|&&pages| pages < last_resort).count();
        assert!(
            !long.is_empty() && early * 2 > long.len(),
            "the log started over mostly at {last_resort} pages or later: {long:?}"
        );
        // And it never grows without end (250 MB here).
        let last_resort_bytes = u64::from(last_resort) * 4096;
        assert!(
            largest_file < 2 * last_resort_bytes,
            "the log grew to {largest_file} bytes"
        );
    }

    /// The write-ahead log's length as SQLite's shared memory (the `-shm` file) says it: the
    /// last valid frame (`mxFrame`, at byte 16 of the wal-index header, in the machine's byte
    /// order; sqlite.org/walformat.html), sampled to find the length each time it started over.
    struct LogLength {
        shm: std::fs::File,
        current: u32,
        /// The longest the log was before each time it started over.
        peaks: Vec<u32>,
    }

    impl LogLength {
        fn open(database: &std::path::Path) -> LogLength {
            let shm = std::fs::File::open(database.with_extension("sqlite3-shm")).expect("shm");
            LogLength {
                shm,
                current: 0,
                peaks: Vec::new(),
            }
        }

        fn sample(&mut self) {
            use std::io::{Read, Seek, SeekFrom};
            let mut frame = [0; 4];
            self.shm
                .seek(SeekFrom::Start(16))
                .and_then(|_| self.shm.read_exact(&mut frame))
                .expect("wal-index header");
            let frames = u32::from_ne_bytes(frame);
            if frames < self.current {
                self.peaks.push(self.current);
            }
            self.current = frames;
        }
    }

    #[test]
    fn restarts_outstayed_by_readers_back_off_up_to_a_second() {
        let start = Instant::now();
        let mut schedule = RestartSchedule::default();
        assert!(schedule.is_due(start));
        let mut pauses = Vec::new();
        for _ in 0..9 {
            schedule.record(Some(LogRestart::ReadersStayed), start);
            let pause = schedule.not_before.expect("scheduled") - start;
            assert!(!schedule.is_due(start + pause - Duration::from_micros(1)));
            assert!(schedule.is_due(start + pause));
            pauses.push(pause.as_millis());
        }
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        schedule.record(None, start);
        assert!(
            !schedule.is_due(start + Duration::from_millis(999)),
            "errors back off too"
        );
        schedule.record(Some(LogRestart::CheckpointRunning), start);
        assert_eq!(
            schedule.failures, 10,
            "a busy checkpoint lock is not a failure"
        );
        schedule.record(Some(LogRestart::Due), start);
        assert!(
            schedule.is_due(start),
            "a restart starts the schedule afresh"
        );
        schedule.record(Some(LogRestart::ReadersStayed), start);
        assert_eq!(schedule.not_before, Some(start + RESTART_WAIT));
    }

    #[test]
    fn the_checkpoint_thread_copies_the_log_into_the_database_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, writer) = sqlite_store(&dir);
        let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let empty = size(&path);
        let value = format!("\"{}\"", "x".repeat(400));
        set_one_by_one(&writer, 200, &value, |_| {});
        // These writes fill a few hundred log pages: fewer than any connection checkpoints
        // itself at (1,000 by default, 10,000 for the writer), so only the checkpoint thread
        // (at the latest after CHECKPOINT_INTERVAL) moves them into the database file.
        let deadline = Instant::now() + Duration::from_secs(5);
        while size(&path) < empty + 60_000 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            size(&path) >= empty + 60_000,
            "database file is {} bytes, was {empty}",
            size(&path)
        );
    }
}
