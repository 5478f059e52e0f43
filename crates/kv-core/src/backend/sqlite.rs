//! SQLite's side of the backend: the group-commit writer's batch and savepoints, the
//! statements it prepares once per connection, read snapshots, and the write-ahead log's
//! checkpoints and restarts.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteConnection;

use super::connection::DbConnection;
use crate::error::StoreError;
use crate::model::KeyValue;
use crate::schema::kv_store;

/// The group-commit writer's batch: one SQLite write transaction (`BEGIN IMMEDIATE`, see
/// [`super::write_transaction`]) around `f`, committed on `Ok` and rolled back on `Err`, with
/// statements prepared once per connection (diesel's transaction manager runs them as SQL
/// text it parses anew each time). Its requests run in [`sqlite_savepoint`]s. A connection
/// whose rollback failed is marked broken ([`super::is_broken`]), so the writer replaces it.
pub(crate) fn sqlite_batch<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_sqlite(conn, BeginImmediate)?;
    let result = f(conn).and_then(|value| {
        run_sqlite(conn, Commit)?;
        Ok(value)
    });
    if result.is_err()
        && let Err(rollback) = run_sqlite(conn, Rollback)
    {
        log::warn!("rollback failed: {rollback}");
        if let DbConnection::Sqlite(c) = conn {
            AnsiTransactionManager::transaction_manager_status_mut(c).set_in_error();
        }
    }
    result
}

/// Runs one of the fixed SQLite statements (an error on PostgreSQL, which has none).
fn run_sqlite(conn: &mut DbConnection, statement: impl SqliteStatement) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => statement.execute(c).map(|_| ()),
        DbConnection::Postgres(_) => Err(diesel::result::Error::BrokenTransactionManager),
    }
}

/// A savepoint inside SQLite's open transaction (one request of the writer's batch), with
/// statements prepared once per connection: diesel's own savepoints are SQL text it parses
/// anew every time, which cost the writer a parse twice per request.
pub(crate) fn sqlite_savepoint<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_sqlite(conn, Savepoint)?;
    match f(conn) {
        Ok(value) => {
            run_sqlite(conn, ReleaseSavepoint)?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = run_sqlite(conn, RollbackToSavepoint)
                .and_then(|()| run_sqlite(conn, ReleaseSavepoint))
            {
                log::warn!("rollback to savepoint failed: {rollback}");
            }
            Err(err)
        }
    }
}

/// SQLite's write-ahead log is copied back into the database file (a checkpoint) by a
/// thread of its own ([`crate::writer`]), not by the connection that commits: a checkpoint
/// waits for the disk (`fsync`), and every write queued behind the commit would wait with it.
/// The writer's connection still checkpoints itself once the log reaches this many pages
/// (about 40 MB), should the checkpoint thread fall behind.
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Makes `conn` the group-commit writer's connection: it leaves checkpoints to the [`Checkpointer`].
pub(crate) fn defer_checkpoints(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => c.batch_execute(&format!(
            "PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}"
        )),
        DbConnection::Postgres(_) => Ok(()),
    }
}

/// The checkpoint thread's connection: copies SQLite's write-ahead log into the database file
/// as far as readers allow, without blocking readers or the writer (`PASSIVE`), and then
/// flushes the database file to disk.
///
/// SQLite flushes the database file itself only when a checkpoint reaches the end of the log,
/// which under steady writes no passive checkpoint does (the writer appends meanwhile); the
/// writer's own last-resort checkpoint then reached it and waited for every page copied since
/// (68 ms at 1,000,000 keys). Flushed here after each checkpoint, little is left to wait for.
pub(crate) struct Checkpointer {
    conn: DbConnection,
    /// The database file, opened for writing (flushing needs that on Windows).
    database_file: Option<std::fs::File>,
    /// The last checkpoint's (log pages, pages copied): unchanged means nothing to flush.
    last: (i32, i32),
}

#[derive(QueryableByName)]
struct CheckpointRow {
    /// 1 when the checkpoint could not finish: another was running, or readers stayed.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    checkpointed: i32,
}

#[derive(QueryableByName)]
struct DatabaseFileRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    file: String,
}

impl Checkpointer {
    pub(crate) fn new(mut conn: DbConnection) -> Self {
        let file = match &mut conn {
            DbConnection::Sqlite(c) => diesel::sql_query("PRAGMA database_list")
                .load::<DatabaseFileRow>(c)
                .ok()
                .and_then(|rows| rows.into_iter().find(|row| row.name == "main"))
                .map(|row| row.file),
            DbConnection::Postgres(_) => None,
        };
        let database_file = file.filter(|f| !f.is_empty()).and_then(|path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| log::warn!("cannot open {path} to flush it after checkpoints: {e}"))
                .ok()
        });
        Checkpointer {
            conn,
            database_file,
            last: (0, 0),
        }
    }

    /// Checkpoints; returns how many pages the log holds.
    pub(crate) fn checkpoint(&mut self) -> Result<i32, String> {
        let DbConnection::Sqlite(c) = &mut self.conn else {
            return Ok(0);
        };
        let row = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
            .get_result::<CheckpointRow>(c)
            .map_err(|e| e.to_string())?;
        let now = (row.log, row.checkpointed);
        if row.checkpointed > 0
            && now != self.last
            && let Some(file) = &self.database_file
        {
            file.sync_data()
                .map_err(|e| format!("flushing the database file: {e}"))?;
        }
        self.last = now;
        Ok(row.log)
    }
}

/// What [`restart_log`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogRestart {
    /// The whole log is in the database file and no reader reads from it: the connection's
    /// next write starts it over from its beginning.
    Due,
    /// Another connection was checkpointing; nothing was waited for.
    CheckpointRunning,
    /// A reader kept reading from the log (or another process kept the write lock) for
    /// longer than the wait allowed.
    ReadersStayed,
}

#[derive(QueryableByName)]
struct BusyTimeoutRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    timeout: i32,
}

/// Checkpoints the whole write-ahead log and waits, at most `wait`, until no reader reads
/// from it (`RESTART`), so that the next write on `conn` starts the log over. For the
/// group-commit writer's connection between batches: it is the one writer, so nothing
/// appends meanwhile. The connection's own busy timeout is put back afterwards.
pub(crate) fn restart_log(conn: &mut DbConnection, wait: Duration) -> QueryResult<LogRestart> {
    let DbConnection::Sqlite(c) = conn else {
        return Ok(LogRestart::Due);
    };
    let configured = diesel::sql_query("PRAGMA busy_timeout").get_result::<BusyTimeoutRow>(c)?;
    c.batch_execute(&format!("PRAGMA busy_timeout = {}", wait.as_millis()))?;
    let row = diesel::sql_query("PRAGMA wal_checkpoint(RESTART)").get_result::<CheckpointRow>(c);
    c.batch_execute(&format!("PRAGMA busy_timeout = {}", configured.timeout))?;
    let row = row?;
    Ok(match (row.busy, row.log) {
        (0, _) => LogRestart::Due,
        // SQLite answers -1 when another checkpoint held the checkpoint lock.
        (_, -1) => LogRestart::CheckpointRunning,
        _ => LogRestart::ReadersStayed,
    })
}

/// `UPDATE kv_meta SET version = ?`, prepared once per connection like the statements of
/// [`sqlite_statement!`] (its static query id lets diesel keep it).
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct SetSqliteVersion(i64);

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for SetSqliteVersion {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        out.push_sql("UPDATE kv_meta SET version = ");
        out.push_bind_param::<BigInt, _>(&self.0)?;
        out.push_sql(" WHERE id = 1");
        Ok(())
    }
}

impl RunQueryDsl<SqliteConnection> for SetSqliteVersion {}

/// Takes the next version (the batch holds the database's write lock).
pub(super) fn bump_version(c: &mut SqliteConnection) -> QueryResult<i64> {
    BumpSqliteVersion.get_result(c)
}

/// Sets the version counter (see [`crate::store::BatchVersions`]).
pub(super) fn set_version(c: &mut SqliteConnection, version: i64) -> QueryResult<()> {
    SetSqliteVersion(version).execute(c).map(|_| ())
}

/// The row of `key` (`BEGIN IMMEDIATE` holds the database's write lock already).
pub(super) fn find(c: &mut SqliteConnection, key: &str) -> QueryResult<Option<KeyValue>> {
    kv_store::table
        .find(key)
        .select(KeyValue::as_select())
        .get_result(c)
        .optional()
}

/// A fixed SQLite statement with a static query id, so diesel prepares it once per
/// connection and keeps it (statements it builds, like `update(…).returning(…)` or its own
/// savepoints, are prepared anew on every call).
trait SqliteStatement:
    diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>
    + diesel::query_builder::QueryId
    + RunQueryDsl<SqliteConnection>
{
}

macro_rules! sqlite_statement {
    ($(#[$doc:meta])* $name:ident = $sql:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
        struct $name;

        impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
            ) -> QueryResult<()> {
                out.push_sql($sql);
                Ok(())
            }
        }

        impl RunQueryDsl<SqliteConnection> for $name {}

        impl SqliteStatement for $name {}
    };
}

sqlite_statement!(
    /// SQLite's version bump.
    BumpSqliteVersion = "UPDATE kv_meta SET version = version + 1 WHERE id = 1 RETURNING version"
);
sqlite_statement!(Savepoint = "SAVEPOINT kv_write");
sqlite_statement!(ReleaseSavepoint = "RELEASE kv_write");
sqlite_statement!(RollbackToSavepoint = "ROLLBACK TO kv_write");
sqlite_statement!(BeginImmediate = "BEGIN IMMEDIATE");
sqlite_statement!(Commit = "COMMIT");
sqlite_statement!(Rollback = "ROLLBACK");
sqlite_statement!(BeginDeferred = "BEGIN");

/// Opens a read transaction on a SQLite connection: its first read takes a snapshot that
/// every read until [`end_read`] sees (see [`crate::reader`]).
pub(crate) fn begin_read(conn: &mut DbConnection) -> QueryResult<()> {
    run_sqlite(conn, BeginDeferred)
}

/// Ends the read transaction [`begin_read`] opened.
pub(crate) fn end_read(conn: &mut DbConnection) -> QueryResult<()> {
    run_sqlite(conn, Commit)
}

impl diesel::query_builder::Query for BumpSqliteVersion {
    type SqlType = BigInt;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ConnectionOptions, connect, sqlite_url_in, with_conn};

    fn execute(conn: &mut DbConnection, sql: &str) {
        with_conn!(conn, c => c.batch_execute(sql)).expect(sql);
    }

    #[test]
    fn a_restarted_log_starts_over_at_the_next_write_once_no_reader_reads_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = sqlite_url_in(dir.path());
        let options = ConnectionOptions {
            busy_timeout: Duration::from_millis(4321),
            ..Default::default()
        };
        let mut writer = connect(&url, &options).expect("writer");
        let mut reader = connect(&url, &options).expect("reader");
        // Reports the log's length, as the checkpoint thread sees it.
        let mut checkpointer = Checkpointer::new(connect(&url, &options).expect("checkpointer"));
        let mut log_pages = || checkpointer.checkpoint().expect("checkpoint");
        defer_checkpoints(&mut writer).expect("defer");
        execute(&mut writer, "CREATE TABLE t (x BLOB)");
        let write = |conn: &mut DbConnection| {
            execute(conn, "INSERT INTO t VALUES (randomblob(3000))");
        };
        (0..50).for_each(|_| write(&mut writer));
        // A reader in the middle of a read, on a snapshot the writer has written past.
        execute(&mut reader, "BEGIN; SELECT count(*) FROM t;");
        (0..50).for_each(|_| write(&mut writer));
        let long = log_pages();
        assert!(long > 100, "{long} log pages");

        let waited = std::time::Instant::now();
        let wait = Duration::from_millis(20);
        assert_eq!(
            restart_log(&mut writer, wait).expect("restart"),
            LogRestart::ReadersStayed
        );
        assert!(waited.elapsed() >= wait, "waited {:?}", waited.elapsed());
        write(&mut writer);
        assert!(log_pages() > long, "the log goes on past the reader");

        execute(&mut reader, "COMMIT");
        assert_eq!(
            restart_log(&mut writer, wait).expect("restart"),
            LogRestart::Due
        );
        let DbConnection::Sqlite(c) = &mut writer else {
            unreachable!()
        };
        let timeout = diesel::sql_query("PRAGMA busy_timeout")
            .get_result::<BusyTimeoutRow>(c)
            .expect("busy_timeout")
            .timeout;
        assert_eq!(timeout, 4321, "the connection's busy timeout is put back");
        write(&mut writer);
        let restarted = log_pages();
        assert!(
            (1..10).contains(&restarted),
            "the write starts the log over: {restarted} pages"
        );
    }
}
