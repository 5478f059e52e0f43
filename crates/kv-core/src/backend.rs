//! Everything that differs between SQLite and PostgreSQL lives here: URLs, connecting
//! (pragmas), the pool, migrations, how a write transaction starts, the version counter,
//! row and key locks, the sweeper's batch delete and reading the database's clock. The rest
//! of kv-core is written once and runs on either backend through [`with_conn!`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::clock;
use crate::error::StoreError;
use crate::model::KeyValue;
use crate::schema::{kv_meta, kv_store, kv_sweeps};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Held while migrations run, so servers and sweepers starting together on one PostgreSQL
/// database migrate it once.
const MIGRATION_LOCK_ID: i64 = 0x6b76_7374_6f72;

/// A connection to either backend.
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$c` bound to the backend's own connection: the same diesel code,
/// compiled once per backend.
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::backend::DbConnection::Sqlite($c) => $body,
            $crate::backend::DbConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use with_conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl DbConnection {
    pub fn backend(&self) -> Backend {
        match self {
            DbConnection::Sqlite(_) => Backend::Sqlite,
            DbConnection::Postgres(_) => Backend::Postgres,
        }
    }
}

/// `postgres://…` / `postgresql://…` selects PostgreSQL; anything else is a SQLite file path
/// (an optional `sqlite://` or `sqlite:` prefix is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    target: String,
}

impl DatabaseUrl {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with any password (in the user info or a `password=` parameter) replaced by
    /// `***`, for logs.
    pub fn redacted(&self) -> String {
        if self.backend == Backend::Sqlite {
            return self.target.clone();
        }
        let Some((scheme, rest)) = self.target.split_once("://") else {
            return self.target.clone();
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let mut redacted = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                let hidden = if userinfo.contains(':') { ":***" } else { "" };
                format!("{scheme}://{user}{hidden}@{host}{path}")
            }
            None => format!("{scheme}://{rest}"),
        };
        if let Some(query) = query {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            redacted.push('?');
            redacted.push_str(&params.join("&"));
        }
        redacted
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(DatabaseUrl {
                backend: Backend::Postgres,
                target: raw.to_owned(),
            });
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        if path.is_empty() {
            return Err(
                "the database URL is empty: give a SQLite file path or a postgres:// URL".into(),
            );
        }
        if path == ":memory:" || path.contains("mode=memory") {
            return Err("an in-memory SQLite database is not supported: give a file path".into());
        }
        Ok(DatabaseUrl {
            backend: Backend::Sqlite,
            target: path.to_owned(),
        })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.backend.name(), self.redacted())
    }
}

/// SQLite's `synchronous` setting: `normal` survives a process crash (kill -9); `full` also
/// survives a power loss, at the cost of an fsync per commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncMode {
    #[default]
    Normal,
    Full,
}

impl FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(SyncMode::Normal),
            "full" => Ok(SyncMode::Full),
            _ => Err(format!("unknown sync mode {s:?}: use normal or full")),
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncMode::Normal => "normal",
            SyncMode::Full => "full",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    pub sync: SyncMode,
    /// How long a SQLite writer waits for the write lock before answering "busy".
    pub busy_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            sync: SyncMode::Normal,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection or migration failure, with the driver's own message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DbSetupError(String);

impl From<String> for DbSetupError {
    fn from(message: String) -> Self {
        DbSetupError(message)
    }
}

/// Opens one configured connection (WAL, synchronous, busy timeout on SQLite).
pub fn connect(
    url: &DatabaseUrl,
    options: &ConnectionOptions,
) -> Result<DbConnection, DbSetupError> {
    // libpq's messages span lines ("…\n\tIs the server running…"): keep log lines whole.
    let fail = |e: &dyn fmt::Display| {
        let message = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        DbSetupError(format!("cannot open {url}: {message}"))
    };
    match url.backend {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::establish(&url.target).map_err(|e| fail(&e))?;
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {};",
                options.busy_timeout.as_millis(),
                options.sync
            ))
            .map_err(|e| fail(&e))?;
            Ok(DbConnection::Sqlite(conn))
        }
        Backend::Postgres => {
            let mut conn = PgConnection::establish(&url.target).map_err(|e| fail(&e))?;
            read_database_clock(&mut conn).map_err(|e| fail(&e))?;
            Ok(DbConnection::Postgres(conn))
        }
    }
}

#[derive(QueryableByName)]
struct ClockRow {
    #[diesel(sql_type = BigInt)]
    now_ms: i64,
}

/// Reads the PostgreSQL server's clock and records its offset from ours (see [`clock`]).
fn read_database_clock(c: &mut PgConnection) -> QueryResult<()> {
    let sent = clock::local_now_ms();
    let row = diesel::sql_query(
        "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms",
    )
    .get_result::<ClockRow>(c)?;
    clock::observe_database_clock(row.now_ms, sent, clock::local_now_ms());
    Ok(())
}

/// Brings [`clock::now_ms`] in line with the database's clock (a no-op on SQLite, whose
/// clock is this machine's). For long-lived connections outside the pool, e.g. the sweeper's.
pub fn sync_clock(conn: &mut DbConnection) -> Result<(), StoreError> {
    match conn {
        DbConnection::Sqlite(_) => Ok(()),
        DbConnection::Postgres(c) => Ok(read_database_clock(c)?),
    }
}

/// Runs pending migrations (under a lock, so concurrent starters migrate once). Returns how
/// many ran.
pub fn run_migrations(conn: &mut DbConnection) -> Result<usize, DbSetupError> {
    let failed = |e: &dyn fmt::Display| DbSetupError(format!("migrations failed: {e}"));
    match conn {
        DbConnection::Sqlite(c) => c
            .immediate_transaction(|c| {
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|done| done.len())
                    .map_err(|e| MigrationError(e.to_string()))
            })
            .map_err(|e| failed(&e.0)),
        DbConnection::Postgres(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
                .map_err(|e| failed(&e))?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|done| done.len())
                .map_err(|e| failed(&e));
            let unlocked = c
                .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
                .map_err(|e| failed(&e));
            result.and_then(|n| unlocked.map(|()| n))
        }
    }
}

struct MigrationError(String);

impl From<diesel::result::Error> for MigrationError {
    fn from(e: diesel::result::Error) -> Self {
        MigrationError(e.to_string())
    }
}

/// The r2d2 connection manager: picks the backend from the URL and keeps the driver's error.
pub struct ConnectionManager {
    url: DatabaseUrl,
    options: ConnectionOptions,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = DbSetupError;

    fn connect(&self) -> Result<DbConnection, DbSetupError> {
        connect(&self.url, &self.options)
    }

    /// The checkout test (PostgreSQL only): reading the database's clock doubles as the
    /// liveness query, so the clock offset is refreshed at no extra cost.
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbSetupError> {
        match conn {
            DbConnection::Sqlite(c) => c.batch_execute("SELECT 1"),
            DbConnection::Postgres(c) => read_database_clock(c),
        }
        .map_err(|e| DbSetupError(e.to_string()))
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        is_broken(conn)
    }
}

pub type DbPool = r2d2::Pool<ConnectionManager>;

/// A pool of `max_size` connections. Checkout waits at most `checkout_timeout` (then the
/// request gets 503). PostgreSQL connections are tested on checkout so a restarted server is
/// noticed; SQLite files do not go away.
pub fn build_pool(
    url: &DatabaseUrl,
    options: &ConnectionOptions,
    max_size: u32,
    checkout_timeout: Duration,
) -> DbPool {
    r2d2::Pool::builder()
        .max_size(max_size.max(1))
        .connection_timeout(checkout_timeout)
        .test_on_check_out(url.backend == Backend::Postgres)
        .error_handler(Box::new(PoolErrorLog::default()))
        .build_unchecked(ConnectionManager {
            url: url.clone(),
            options: options.clone(),
        })
}

/// Logs the pool's connection failures at most once per [`PoolErrorLog::EVERY`], with how
/// many were left out: while the database is down, the pool retries every connection
/// several times a second.
#[derive(Debug, Default)]
struct PoolErrorLog {
    /// When the last line was logged, and the failures since.
    state: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

impl PoolErrorLog {
    const EVERY: Duration = Duration::from_secs(10);
}

impl r2d2::HandleError<DbSetupError> for PoolErrorLog {
    fn handle_error(&self, error: DbSetupError) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match state.as_mut() {
            Some((logged, left_out)) if logged.elapsed() < Self::EVERY => *left_out += 1,
            _ => {
                let left_out = state.map_or(0, |(_, n)| n);
                let more = match left_out {
                    0 => String::new(),
                    n => format!(" ({n} more failures since the last report)"),
                };
                log::error!("database connection failed: {error}{more}");
                *state = Some((std::time::Instant::now(), 0));
            }
        }
    }
}

/// Runs `f` in one write transaction: `BEGIN IMMEDIATE` on SQLite (the write lock up front,
/// so two processes on one file wait for each other instead of failing), an ordinary
/// transaction with row locks on PostgreSQL. Commits on `Ok`, rolls back on `Err`. (The
/// group-commit writer's batches are [`sqlite_batch`]es, their requests [`sqlite_savepoint`]s.)
pub(crate) fn write_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        _ => with_conn!(conn, c => AnsiTransactionManager::begin_transaction(c))?,
    }
    match f(conn) {
        Ok(value) => {
            with_conn!(conn, c => AnsiTransactionManager::commit_transaction(c))?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) =
                with_conn!(conn, c => AnsiTransactionManager::rollback_transaction(c))
            {
                log::warn!("rollback failed: {rollback}");
            }
            Err(err)
        }
    }
}

/// The group-commit writer's batch: one SQLite write transaction (`BEGIN IMMEDIATE`, see
/// [`write_transaction`]) around `f`, committed on `Ok` and rolled back on `Err`, with
/// statements prepared once per connection (diesel's transaction manager runs them as SQL
/// text it parses anew each time). Its requests run in [`sqlite_savepoint`]s. A connection
/// whose rollback failed is marked broken ([`is_broken`]), so the writer replaces it.
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

/// Whether the connection is unusable after a failed transaction and must be replaced.
pub fn is_broken(conn: &mut DbConnection) -> bool {
    with_conn!(conn, c => AnsiTransactionManager::is_broken_transaction_manager(c))
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = BigInt)]
    version: i64,
}

/// Takes the next store-wide version (inside the caller's write transaction).
pub(crate) fn next_version(conn: &mut DbConnection) -> QueryResult<i64> {
    match conn {
        DbConnection::Sqlite(c) => BumpSqliteVersion.get_result(c),
        DbConnection::Postgres(c) => diesel::sql_query("SELECT nextval('kv_version') AS version")
            .get_result::<VersionRow>(c)
            .map(|row| row.version),
    }
}

/// Sets SQLite's store-wide version counter (see [`crate::store::BatchVersions`]).
pub(crate) fn set_version(conn: &mut DbConnection, version: i64) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => SetSqliteVersion(version).execute(c).map(|_| ()),
        // PostgreSQL's counter is a sequence, taken from by each transaction.
        DbConnection::Postgres(_) => Err(diesel::result::Error::QueryBuilderError(
            "batched versions are SQLite's".into(),
        )),
    }
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

/// Writes `row` over whatever row holds its key (the caller holds the key's lock). On SQLite
/// one `REPLACE`, whose prepared statement diesel caches (an `UPDATE` it prepares anew each
/// time); on PostgreSQL an `UPDATE` or `INSERT`.
pub(crate) fn put_row(
    conn: &mut DbConnection,
    row: &KeyValue,
    replaces_row: bool,
) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => diesel::replace_into(kv_store::table).values(row).execute(c),
        DbConnection::Postgres(c) if replaces_row => diesel::update(kv_store::table.find(&row.key))
            .set(row)
            .execute(c),
        DbConnection::Postgres(c) => diesel::insert_into(kv_store::table).values(row).execute(c),
    }
    .map(|_| ())
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

/// The latest version handed out (0 before the first write).
pub(crate) fn current_version(conn: &mut DbConnection) -> QueryResult<i64> {
    match conn {
        DbConnection::Sqlite(c) => kv_meta::table
            .find(1)
            .select(kv_meta::version)
            .get_result(c),
        DbConnection::Postgres(c) => diesel::sql_query(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS version FROM kv_version",
        )
        .get_result::<VersionRow>(c)
        .map(|row| row.version),
    }
}

/// Reads a row and locks the key until the write transaction ends, whether or not it has a
/// row: concurrent writers of one key (on any server) take turns, and a transaction that saw
/// a key absent keeps it absent until it commits. SQLite's `BEGIN IMMEDIATE` already holds
/// the database's write lock. PostgreSQL locks the row (`FOR UPDATE`); when there is none it
/// takes a transaction-scoped advisory lock on the key's name and reads again, since a
/// writer holding that lock may have inserted the row meanwhile. (Two transactions locking
/// the same keys in opposite orders deadlock; PostgreSQL aborts one and `store::write`
/// runs it again.)
pub(crate) fn find_for_update(conn: &mut DbConnection, key: &str) -> QueryResult<Option<KeyValue>> {
    match conn {
        DbConnection::Sqlite(c) => kv_store::table
            .find(key)
            .select(KeyValue::as_select())
            .get_result(c)
            .optional(),
        DbConnection::Postgres(c) => {
            let lock_row = |c: &mut PgConnection| {
                kv_store::table
                    .find(key)
                    .select(KeyValue::as_select())
                    .for_update()
                    .get_result(c)
                    .optional()
            };
            if let Some(row) = lock_row(c)? {
                return Ok(Some(row));
            }
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind::<Text, _>(key)
                .execute(c)?;
            lock_row(c)
        }
    }
}

/// Locks several keys at once, in byte order, the way [`find_for_update`] locks one: a
/// transaction that knows all its keys up front (`POST /_tx`) then takes its version after
/// every row it touches has stopped changing, and two such transactions over the same keys
/// queue instead of deadlocking. A no-op on SQLite (`BEGIN IMMEDIATE` locks everything).
pub(crate) fn lock_keys(conn: &mut DbConnection, keys: &[&str]) -> QueryResult<()> {
    let DbConnection::Postgres(c) = conn else {
        return Ok(());
    };
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    let found: Vec<String> = kv_store::table
        .filter(kv_store::key.eq_any(&keys))
        .order(kv_store::key)
        .select(kv_store::key)
        .for_update()
        .load(c)?;
    let absent: Vec<&str> = keys
        .into_iter()
        .filter(|key| found.binary_search_by(|f| f.as_str().cmp(key)).is_err())
        .collect();
    if !absent.is_empty() {
        diesel::sql_query(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) \
             FROM unnest($1::text[]) AS k ORDER BY k COLLATE \"C\"",
        )
        .bind::<Array<Text>, _>(&absent)
        .execute(c)?;
    }
    Ok(())
}

/// Adds `deleted` to the sweeps' count of deleted keys, inside the sweep batch's transaction.
pub(crate) fn count_swept(conn: &mut DbConnection, deleted: usize) -> QueryResult<()> {
    let deleted = i64::try_from(deleted).unwrap_or(i64::MAX);
    with_conn!(conn, c => diesel::update(kv_sweeps::table.find(1))
        .set(kv_sweeps::deleted_keys.eq(kv_sweeps::deleted_keys + deleted))
        .execute(c))
    .map(|_| ())
}

/// Expired keys deleted by sweeps so far, all sweepers together.
pub(crate) fn swept_keys(conn: &mut DbConnection) -> QueryResult<i64> {
    with_conn!(conn, c => kv_sweeps::table
        .find(1)
        .select(kv_sweeps::deleted_keys)
        .get_result(c))
}

/// Deletes up to `limit` rows expired at `now`. On PostgreSQL, rows another sweeper has
/// locked are skipped, so sweepers never wait on each other or count a row twice.
pub(crate) fn delete_expired_batch(
    conn: &mut DbConnection,
    now: i64,
    limit: i64,
) -> QueryResult<usize> {
    match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(
            "DELETE FROM kv_store WHERE key IN \
             (SELECT key FROM kv_store WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2) \
             AND expires_at <= ?1",
        )
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .execute(c),
        // MATERIALIZED: the batch is picked (and locked) exactly once.
        DbConnection::Postgres(c) => diesel::sql_query(
            "WITH batch AS MATERIALIZED \
             (SELECT key FROM kv_store WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 \
              FOR UPDATE SKIP LOCKED) \
             DELETE FROM kv_store USING batch \
             WHERE kv_store.key = batch.key AND kv_store.expires_at <= $1",
        )
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .execute(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DatabaseUrl, String> {
        s.parse()
    }

    #[test]
    fn urls_select_the_backend() {
        assert_eq!(
            parse("kv.sqlite3").map(|u| u.backend()),
            Ok(Backend::Sqlite)
        );
        assert_eq!(
            parse("sqlite://./data/kv.db").map(|u| u.target),
            Ok("./data/kv.db".into())
        );
        assert_eq!(
            parse("postgres://u@h/db").map(|u| u.backend()),
            Ok(Backend::Postgres)
        );
        assert_eq!(
            parse("postgresql://u@h/db").map(|u| u.backend()),
            Ok(Backend::Postgres)
        );
        assert!(parse("").is_err() && parse(":memory:").is_err() && parse("sqlite://").is_err());
    }

    fn execute(conn: &mut DbConnection, sql: &str) {
        with_conn!(conn, c => c.batch_execute(sql)).expect(sql);
    }

    #[test]
    fn a_restarted_log_starts_over_at_the_next_write_once_no_reader_reads_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = parse(&dir.path().join("kv.sqlite3").display().to_string()).expect("url");
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

    #[test]
    fn passwords_are_redacted() {
        let url = parse("postgres://kv:s3cret@db:5432/kv?sslmode=disable").expect("url");
        assert_eq!(
            url.redacted(),
            "postgres://kv:***@db:5432/kv?sslmode=disable"
        );
        assert_eq!(
            parse("postgres://kv@db/kv").expect("url").redacted(),
            "postgres://kv@db/kv"
        );
        assert_eq!(
            parse("postgresql://db/kv?user=kv&password=s3cret&sslmode=disable")
                .expect("url")
                .redacted(),
            "postgresql://db/kv?user=kv&password=***&sslmode=disable"
        );
        assert_eq!(
            parse("postgres://kv:a@b@db/kv?Password=x")
                .expect("url")
                .to_string(),
            "postgres postgres://kv:***@db/kv?Password=***"
        );
    }
}
