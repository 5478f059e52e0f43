//! SQLite point reads that share one snapshot. Every SQLite read transaction takes a lock
//! in the write-ahead log's shared memory (a `fcntl` system call to take it and one to drop
//! it, under a mutex every reader of the process shares), which cost a GET more than its
//! B-tree lookup. A [`SnapshotReader`] keeps its read transaction open across reads and
//! starts a new one as soon as the group-commit writer has committed since — so a read
//! that starts after a write was acknowledged still sees it — or once the snapshot reaches
//! its maximum age ([`SNAPSHOT_MAX_AGE`] in the server), which bounds how long a write by
//! another process on the same file (`kv-sweeper`, or a second server) stays unseen. While the
//! write-ahead log is long and growing it keeps no snapshot between reads, so that the log can
//! start over ([`crate::writer::WriterProgress::snapshots_allowed`]).
//!
//! A server keeps one such reader per worker thread (`read_on_this_thread`), opened on
//! first use, and ends its snapshot once requests stop (`release_old_snapshot_on_this_thread`).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::backend::{self, ConnectionOptions, DatabaseUrl, DbConnection};
use crate::error::StoreError;
use crate::writer::WriterProgress;

/// The oldest snapshot the server's reads may see.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(1);

/// A SQLite read connection that reads from one snapshot until the writer commits.
pub struct SnapshotReader {
    conn: DbConnection,
    snapshot: Option<Snapshot>,
    max_age: Duration,
    /// Ending a snapshot failed: the connection's state is unknown, so it is replaced.
    broken: bool,
}

struct Snapshot {
    /// The writer's commit count when it was taken.
    commits: u64,
    taken: Instant,
}

impl SnapshotReader {
    /// A reader over `conn` whose snapshots last at most `max_age`.
    pub fn new(conn: DbConnection, max_age: Duration) -> Self {
        SnapshotReader {
            conn,
            snapshot: None,
            max_age,
            broken: false,
        }
    }

    /// Runs the reads of `f` in a snapshot taken after the writer's `writer.commits`-th
    /// commit (read [`crate::writer::Writer::progress`] before calling) and no older than its
    /// maximum age. The snapshot is kept for the next read only if `writer` allows it.
    pub fn read<T>(
        &mut self,
        writer: WriterProgress,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now = Instant::now();
        let commits = writer.commits;
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.commits != commits || now - s.taken >= self.max_age)
        {
            self.end()?;
        }
        if self.snapshot.is_none() {
            if let DbConnection::Postgres(_) = self.conn {
                return f(&mut self.conn); // every PostgreSQL read is its own transaction
            }
            backend::begin_read(&mut self.conn)?;
            self.snapshot = Some(Snapshot {
                commits,
                taken: now,
            });
        }
        let result = f(&mut self.conn);
        if result.is_err() {
            // Start afresh after a failed read. SQLite may have ended the transaction itself
            // (an I/O error does), so ending it can fail too; the read's error is the one to report.
            let _ = self.end();
        } else if !writer.snapshots_allowed {
            self.end()?;
        }
        result
    }

    /// Ends the snapshot once it is at its maximum age: an open read transaction keeps
    /// checkpoints from reaching past it, so an idle reader must not hold one. Returns
    /// whether a (younger) snapshot is still open.
    pub fn release_old_snapshot(&mut self) -> Result<bool, StoreError> {
        match &self.snapshot {
            Some(s) if s.taken.elapsed() >= self.max_age => {
                self.end()?;
                Ok(false)
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// The connection broke: replace it with a new one.
    pub fn is_broken(&mut self) -> bool {
        self.broken || backend::is_broken(&mut self.conn)
    }

    fn end(&mut self) -> Result<(), StoreError> {
        if self.snapshot.take().is_some()
            && let Err(err) = backend::end_read(&mut self.conn)
        {
            self.broken = true;
            return Err(err.into());
        }
        Ok(())
    }
}

thread_local! {
    /// This thread's own SQLite read connection, opened on first use.
    static READER: RefCell<Option<SnapshotReader>> = const { RefCell::new(None) };
    /// A snapshot may be open on this thread, and someone has been told to release it.
    static RELEASE_PENDING: Cell<bool> = const { Cell::new(false) };
    /// A read ran on this thread while no release was pending: one is due.
    static RELEASE_DUE: Cell<bool> = const { Cell::new(false) };
}

/// Runs the reads of `f` on this thread's reader (see [`SnapshotReader::read`]), connecting it
/// to `url` first if this thread has none; a reader that failed is dropped and replaced on the
/// next read.
pub(crate) fn read_on_this_thread<T>(
    url: &DatabaseUrl,
    options: &ConnectionOptions,
    writer: WriterProgress,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let result = READER.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let conn = backend::connect(url, options)
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
    if !RELEASE_PENDING.replace(true) {
        RELEASE_DUE.set(true);
    }
    result
}

/// Whether a read on this thread left a snapshot that nothing releases yet: the caller then
/// calls [`release_old_snapshot_on_this_thread`] on this thread every [`SNAPSHOT_MAX_AGE`]
/// until it answers `Ok(false)` or an error. Answers `true` once per such period.
pub(crate) fn release_due_on_this_thread() -> bool {
    RELEASE_DUE.replace(false)
}

/// Ends this thread's snapshot once it is at its maximum age (see
/// [`SnapshotReader::release_old_snapshot`]). Returns whether a (younger) snapshot is still
/// open; on an error the reader is dropped (replaced on the next read). Either way, unless a
/// snapshot is still open, the next read makes a release due again.
pub(crate) fn release_old_snapshot_on_this_thread() -> Result<bool, StoreError> {
    let result = READER.with(|slot| {
        let mut slot = slot.borrow_mut();
        let Some(reader) = slot.as_mut() else {
            return Ok(false);
        };
        let result = reader.release_old_snapshot();
        if result.is_err() {
            *slot = None;
        }
        result
    });
    if !matches!(result, Ok(true)) {
        RELEASE_PENDING.set(false);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::thread;

    use diesel::connection::SimpleConnection;

    use super::*;
    use crate::backend::{ConnectionOptions, DatabaseUrl};
    use crate::store::{self, Lookup};
    use crate::writer::Writer;
    use crate::writer::tests::{block_on, set_args, sqlite_store};

    struct Store {
        _dir: tempfile::TempDir,
        path: PathBuf,
        writer: Writer,
    }

    impl Store {
        fn new() -> Store {
            let dir = tempfile::tempdir().expect("tempdir");
            let (path, writer) = sqlite_store(&dir);
            Store {
                _dir: dir,
                path,
                writer,
            }
        }

        fn connect(&self) -> DbConnection {
            let url: DatabaseUrl = self.path.display().to_string().parse().expect("url");
            backend::connect(&url, &ConnectionOptions::default()).expect("connect")
        }

        fn reader(&self, max_age: Duration) -> SnapshotReader {
            SnapshotReader::new(self.connect(), max_age)
        }

        fn set(&self, key: &str, value: &str) {
            let (key, args) = (key.to_owned(), set_args(value));
            block_on(
                self.writer
                    .write(crate::now_ms(), move |tx| tx.set(&key, &args)),
            )
            .expect("set");
        }
    }

    fn value(reader: &mut SnapshotReader, writer: WriterProgress, key: &str) -> String {
        let found = reader
            .read(writer, |conn| store::get(conn, crate::now_ms(), key))
            .expect("read");
        match found {
            Lookup::Live(row) => row.value,
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn reads_share_a_snapshot_until_the_writer_commits() {
        let store = Store::new();
        let mut reader = store.reader(Duration::from_secs(3600));
        store.set("k", "1");
        let before = store.writer.progress();
        assert!(before.snapshots_allowed);
        assert_eq!(value(&mut reader, before, "k"), "1");
        store.set("k", "2");
        assert_eq!(
            value(&mut reader, before, "k"),
            "1",
            "the snapshot is kept while the commit count stays"
        );
        let after = store.writer.progress();
        assert!(after.commits > before.commits, "the write was counted");
        assert_eq!(value(&mut reader, after, "k"), "2");
    }

    #[test]
    fn a_snapshot_ends_at_its_maximum_age() {
        let store = Store::new();
        let max_age = Duration::from_millis(20);
        let mut reader = store.reader(max_age);
        store.set("k", "1");
        let commits = store.writer.progress();
        assert_eq!(value(&mut reader, commits, "k"), "1");
        // A write by another process does not move this writer's count.
        let mut other = store.connect();
        match &mut other {
            DbConnection::Sqlite(c) => c
                .batch_execute("UPDATE kv_store SET value = '2' WHERE key = 'k'")
                .expect("update"),
            DbConnection::Postgres(_) => unreachable!("a SQLite test"),
        }
        thread::sleep(max_age);
        assert!(
            !reader.release_old_snapshot().expect("release"),
            "an old snapshot is ended"
        );
        assert_eq!(value(&mut reader, commits, "k"), "2");
    }

    #[test]
    fn no_snapshot_is_kept_when_the_writer_says_so() {
        let store = Store::new();
        let mut reader = store.reader(Duration::from_secs(3600));
        store.set("k", "1");
        let progress = WriterProgress {
            snapshots_allowed: false,
            ..store.writer.progress()
        };
        assert_eq!(value(&mut reader, progress, "k"), "1");
        assert!(
            !reader.release_old_snapshot().expect("release"),
            "the read left no snapshot open"
        );
        // Another process's write, which does not move the commit count either.
        match &mut store.connect() {
            DbConnection::Sqlite(c) => c
                .batch_execute("UPDATE kv_store SET value = '2' WHERE key = 'k'")
                .expect("update"),
            DbConnection::Postgres(_) => unreachable!("a SQLite test"),
        }
        assert_eq!(value(&mut reader, progress, "k"), "2");
    }
}
