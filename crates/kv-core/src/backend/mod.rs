//! Everything that differs between SQLite and PostgreSQL lives here: URLs, connecting
//! (pragmas), the pool, migrations, how a write transaction starts, the version counter,
//! row and key locks, the sweeper's batch delete and reading the database's clock. This module
//! holds what both share and picks the backend; `sqlite` and `postgres` hold what is
//! each one's own. The rest of kv-core is written once and runs on either backend through
//! `with_conn!`.

pub(crate) mod connection;
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod statement;
mod sweep_index;

pub(crate) use connection::with_conn;
pub use connection::{Backend, DbConnection};
pub use sweep_index::next_due;
pub(crate) use sweep_index::{Replaces, due_rows, insert_rows, put_row, refile};

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::StoreError;
use crate::model::KeyValue;
use crate::schema::{kv_meta, kv_store, kv_sweeps};

pub(crate) use sqlite::{
    Checkpointer, LogRestart, WRITER_AUTOCHECKPOINT_PAGES, begin_read, defer_checkpoints, end_read,
    restart_log, sqlite_batch, sqlite_savepoint,
};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Held while migrations run, so servers and sweepers starting together on one PostgreSQL
/// database migrate it once.
const MIGRATION_LOCK_ID: i64 = 0x6b76_7374_6f72;

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

    /// The SQLite file of a SQLite URL (`None` for PostgreSQL).
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        (self.backend == Backend::Sqlite).then(|| std::path::Path::new(&self.target))
    }

    /// The URL with any password (in the user info, a `password=` parameter or the client
    /// key's `sslpassword=`) replaced by `***`, for logs.
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
                    Some((name, _))
                        if name.eq_ignore_ascii_case("password")
                            || name.eq_ignore_ascii_case("sslpassword") =>
                    {
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
            postgres::read_database_clock(&mut conn).map_err(|e| fail(&e))?;
            Ok(DbConnection::Postgres(conn))
        }
    }
}

/// Brings [`crate::clock::now_ms`] in line with the database's clock (a no-op on SQLite,
/// whose clock is this machine's). For long-lived connections outside the pool (the
/// sweeper's, the writer's) and the server's clock sampler.
pub fn sync_clock(conn: &mut DbConnection) -> Result<(), StoreError> {
    match conn {
        DbConnection::Sqlite(_) => Ok(()),
        DbConnection::Postgres(c) => Ok(postgres::read_database_clock(c)?),
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

/// A pooled connection. Connections are not tested on checkout (that would cost every request
/// a round trip): one that turns out to be lost (the database restarted, the network dropped
/// it) is marked with [`PooledDb::mark_lost`] by whoever met the error, and the pool drops it.
pub struct PooledDb {
    conn: DbConnection,
    lost: bool,
}

impl PooledDb {
    /// The connection is gone: the pool replaces it instead of handing it out again.
    pub fn mark_lost(&mut self) {
        self.lost = true;
    }
}

impl std::ops::Deref for PooledDb {
    type Target = DbConnection;

    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledDb {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = PooledDb;
    type Error = DbSetupError;

    fn connect(&self) -> Result<PooledDb, DbSetupError> {
        Ok(PooledDb {
            conn: connect(&self.url, &self.options)?,
            lost: false,
        })
    }

    fn is_valid(&self, conn: &mut PooledDb) -> Result<(), DbSetupError> {
        with_conn!(&mut conn.conn, c => c.batch_execute("SELECT 1"))
            .map_err(|e| DbSetupError(e.to_string()))
    }

    fn has_broken(&self, conn: &mut PooledDb) -> bool {
        conn.lost || is_broken(&mut conn.conn)
    }
}

pub type DbPool = r2d2::Pool<ConnectionManager>;

/// A pool of `max_size` connections, which keeps `min_idle` open (`None`: all of them).
/// Checkout waits at most `checkout_timeout` (then the request gets 503). Connections are not
/// tested on checkout (see [`PooledDb`]).
pub fn build_pool(
    url: &DatabaseUrl,
    options: &ConnectionOptions,
    max_size: u32,
    min_idle: Option<u32>,
    checkout_timeout: Duration,
) -> DbPool {
    r2d2::Pool::builder()
        .max_size(max_size.max(1))
        .min_idle(min_idle)
        .connection_timeout(checkout_timeout)
        .test_on_check_out(false)
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

/// Runs `f` in one read-only transaction that sees one snapshot of the whole store from its
/// first read to its end, without blocking writers: SQLite's deferred `BEGIN` (in WAL mode a
/// reader keeps its snapshot while writers commit), PostgreSQL's `REPEATABLE READ READ ONLY`.
pub fn read_snapshot<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN")?,
        DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction_sql(
            c,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?,
    }
    let result = f(conn);
    let end = match &result {
        Ok(_) => with_conn!(conn, c => AnsiTransactionManager::commit_transaction(c)),
        Err(_) => with_conn!(conn, c => AnsiTransactionManager::rollback_transaction(c)),
    };
    match (result, end) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(err)) => Err(err.into()),
        (Err(err), end) => {
            if let Err(rollback) = end {
                log::warn!("rollback failed: {rollback}");
            }
            Err(err)
        }
    }
}

/// The rows (live or expired) of those of `keys` that exist, in one statement; inside a write
/// transaction, which holds the write lock (see [`find_for_update`]).
pub(crate) fn rows_of(conn: &mut DbConnection, keys: &[&str]) -> QueryResult<Vec<KeyValue>> {
    with_conn!(conn, c => kv_store::table
        .filter(kv_store::key.eq_any(keys))
        .select(KeyValue::as_select())
        .load(c))
}

/// Sets the store-wide version counter to at least `version`, inside a write transaction.
pub(crate) fn raise_version(conn: &mut DbConnection, version: i64) -> QueryResult<()> {
    with_conn!(conn, c => diesel::update(kv_meta::table.find(1).filter(kv_meta::version.lt(version)))
        .set(kv_meta::version.eq(version))
        .execute(c))
    .map(|_| ())
}

/// Whether the connection is unusable after a failed transaction and must be replaced.
pub fn is_broken(conn: &mut DbConnection) -> bool {
    with_conn!(conn, c => AnsiTransactionManager::is_broken_transaction_manager(c))
}

/// Takes the next store-wide version (inside the caller's write transaction, which holds the
/// counter until it ends).
pub(crate) fn next_version(conn: &mut DbConnection) -> QueryResult<i64> {
    match conn {
        DbConnection::Sqlite(c) => sqlite::bump_version(c),
        DbConnection::Postgres(c) => postgres::next_version(c),
    }
}

/// The version counter at the start of a write batch, locked until the batch commits: SQLite's
/// `BEGIN IMMEDIATE` already holds the whole database, PostgreSQL's batch locks the row (see
/// [`crate::store::BatchVersions`]).
pub(crate) fn lock_version(conn: &mut DbConnection) -> QueryResult<i64> {
    match conn {
        DbConnection::Sqlite(_) => current_version(conn),
        DbConnection::Postgres(c) => postgres::lock_version_counter(c),
    }
}

/// Sets SQLite's store-wide version counter at the end of a batch (PostgreSQL's batch sets
/// it in [`postgres::write_batch`]).
pub(crate) fn set_version(conn: &mut DbConnection, version: i64) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => sqlite::set_version(c, version),
        DbConnection::Postgres(_) => Err(diesel::result::Error::QueryBuilderError(
            "a PostgreSQL batch sets the counter in postgres::write_batch".into(),
        )),
    }
}

/// The latest version handed out (0 before the first write).
pub(crate) fn current_version(conn: &mut DbConnection) -> QueryResult<i64> {
    with_conn!(conn, c => kv_meta::table
        .find(1)
        .select(kv_meta::version)
        .get_result(c))
}

/// Reads a row inside a write transaction, which holds the database's write lock: SQLite's
/// `BEGIN IMMEDIATE`, or on PostgreSQL the version counter row that every write transaction
/// locks first (see [`postgres::find`]). Concurrent writers of one key (on any server) take
/// turns, and a transaction that saw a key absent keeps it absent until it commits.
pub(crate) fn find_for_update(conn: &mut DbConnection, key: &str) -> QueryResult<Option<KeyValue>> {
    match conn {
        DbConnection::Sqlite(c) => sqlite::find(c, key),
        DbConnection::Postgres(c) => postgres::find(c, key),
    }
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

/// On PostgreSQL, notifies the servers' change feeds that `version` committed (at commit);
/// on SQLite nothing (its feed polls the file).
pub(crate) fn notify_changes(conn: &mut DbConnection, version: i64) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(_) => Ok(()),
        DbConnection::Postgres(c) => postgres::notify_changes(c, version),
    }
}

/// Subscribes `conn` to the notifications of committed writes (PostgreSQL; SQLite has none,
/// its change feed polls).
pub fn listen_for_changes(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(_) => Ok(()),
        DbConnection::Postgres(c) => diesel::connection::SimpleConnection::batch_execute(
            c,
            &format!("LISTEN {}", postgres::CHANGES_CHANNEL),
        ),
    }
}

/// Whether a write committed since the last call (a notification arrived on a connection
/// that [`listen_for_changes`]); reads only what the socket already holds, never waits.
pub fn changes_notified(conn: &mut DbConnection) -> QueryResult<bool> {
    match conn {
        DbConnection::Sqlite(_) => Ok(false),
        DbConnection::Postgres(c) => {
            let mut notified = false;
            for notification in c.notifications_iter() {
                notification?;
                notified = true;
            }
            Ok(notified)
        }
    }
}

/// The URL of a SQLite file `kv.sqlite3` in `dir`, for tests.
#[cfg(test)]
pub(crate) fn sqlite_url_in(dir: &std::path::Path) -> DatabaseUrl {
    dir.join("kv.sqlite3")
        .display()
        .to_string()
        .parse()
        .expect("url")
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
        assert_eq!(
            parse("postgres://kv@db/kv?sslmode=verify-full&sslkey=k.pem&sslpassword=x")
                .expect("url")
                .redacted(),
            "postgres://kv@db/kv?sslmode=verify-full&sslkey=k.pem&sslpassword=***"
        );
    }
}
