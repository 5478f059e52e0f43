//! [`Store`]: the one way kv-server and kv-sweeper reach the database, whichever backend it is.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{
    self, Backend, ConnectionOptions, DatabaseUrl, DbConnection, DbPool, DbSetupError,
};
use crate::changes::{self, LogRead};
use crate::error::StoreError;
use crate::known_version::KnownVersion;
use crate::model::StoredValue;
use crate::point_reads::{PointAnswer, PointReader};
use crate::reader;
use crate::replicas::{Fallback, ReplicaOptions, ReplicaStatus, Replicas, monitor};
use crate::store::{self, Lookup, Tx};
use crate::writer::Writer;

/// How a [`Store`] connects: the connections' options and the pool's size.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub connection: ConnectionOptions,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long a pool checkout waits before it fails (then the request gets 503).
    pub checkout_timeout: Duration,
    /// Read replicas (PostgreSQL only; `None` or no URLs: none).
    pub replicas: Option<ReplicaOptions>,
}

/// What a read found, and the store version it reflects (`Kv-Version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: i64,
}

/// An open store: the pool, the group-commit writer (its own thread and connection) and, on
/// PostgreSQL, the batched point readers; on SQLite, single-key reads run on the calling
/// thread over a connection of that thread's own, which keeps its snapshot between reads
/// ([`crate::reader`]).
///
/// - [`Store::write`]: a write transaction, queued to the group-commit writer;
/// - [`Store::read_key`] and [`Store::read_short`]: single-key and other short reads;
/// - [`Store::pool`]: anything else (scans, counts, health) on a pooled connection, to be run on
///   a thread that may block.
pub struct Store {
    url: DatabaseUrl,
    options: ConnectionOptions,
    pool: StorePool,
    writer: Writer,
    /// PostgreSQL's batched point reads (`None` on SQLite, whose reads run inline).
    point_reader: Option<PointReader>,
    /// The newest store version this server knows of ([`crate::known_version`]).
    known: Arc<KnownVersion>,
    /// Read replicas, if any ([`crate::replicas`]).
    replicas: Option<Arc<Replicas>>,
    migrations_applied: usize,
}

/// Where [`Store::read_short`] ran a read.
pub enum ShortRead<T, F> {
    /// On this thread, over its own connection: the result.
    Ran(Result<T, StoreError>),
    /// Not run: run it on a pooled connection ([`StorePool::read`]) on a thread that may block.
    OnPool(F),
}

impl Store {
    /// The oldest snapshot a read of [`Store::read_key`] or [`Store::read_short`] may see.
    pub const SNAPSHOT_MAX_AGE: Duration = reader::SNAPSHOT_MAX_AGE;

    /// Opens the store at `url`: migrates its schema, then starts the pool (connections open
    /// as they are needed), the writer and the readers. A database that cannot be reached or
    /// migrated is an error.
    ///
    /// With read replicas, each is checked first: a URL that is not PostgreSQL, not a hot
    /// standby, or a standby of another primary is an error (and so is a SQLite primary); one
    /// that cannot be reached starts out of rotation.
    pub fn open(url: &DatabaseUrl, options: &StoreOptions) -> Result<Store, DbSetupError> {
        let replica_options = options.replicas.as_ref().filter(|r| !r.urls.is_empty());
        if replica_options.is_some() && url.backend() == Backend::Sqlite {
            return Err(format!(
                "read replicas (--read-replica) need a PostgreSQL primary; {url} is a SQLite store"
            )
            .into());
        }
        let mut conn = backend::connect(url, &options.connection)?;
        let migrations_applied = backend::run_migrations(&mut conn)?;
        let known = Arc::new(KnownVersion::new(
            backend::current_version(&mut conn).map_err(|e| e.to_string())?,
        ));
        let connector = {
            let (url, options) = (url.clone(), options.connection.clone());
            move || backend::connect(&url, &options).map_err(|e| e.to_string())
        };
        let replicas = match replica_options {
            Some(replicas) => Some(Self::start_replicas(
                &mut conn,
                replicas,
                &options.connection,
                &known,
                connector.clone(),
            )?),
            None => None,
        };
        drop(conn);
        let pool = StorePool {
            pool: backend::build_pool(
                url,
                &options.connection,
                options.pool_size,
                None,
                options.checkout_timeout,
            ),
            known: replicas.as_ref().map(|_| Arc::clone(&known)),
        };
        let failed = |e: StoreError| DbSetupError::from(e.to_string());
        let writer = Writer::spawn(connector.clone(), Arc::clone(&known)).map_err(failed)?;
        let point_reader = match url.backend() {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(PointReader::spawn("kv-reader", connector, true).map_err(failed)?)
            }
        };
        Ok(Store {
            url: url.clone(),
            options: options.connection.clone(),
            pool,
            writer,
            point_reader,
            known,
            replicas,
            migrations_applied,
        })
    }

    /// Checks the replicas against the primary `conn` reaches and starts their readers and
    /// monitor.
    fn start_replicas(
        conn: &mut DbConnection,
        options: &ReplicaOptions,
        connection: &ConnectionOptions,
        known: &Arc<KnownVersion>,
        connect_primary: impl Fn() -> Result<DbConnection, String> + Send + 'static,
    ) -> Result<Arc<Replicas>, DbSetupError> {
        if let Some(url) = options
            .urls
            .iter()
            .find(|u| u.backend() != Backend::Postgres)
        {
            return Err(format!(
                "--read-replica {}: not a PostgreSQL URL (a replica is a postgres:// hot standby)",
                url.redacted()
            )
            .into());
        }
        let primary = monitor::identify(conn)?;
        let replicas = Replicas::start(options, connection, Arc::clone(known))
            .map_err(|e| DbSetupError::from(e.to_string()))?;
        let replicas = Arc::new(replicas);
        monitor::first_check(&replicas, primary)?;
        monitor::spawn(
            Arc::clone(&replicas),
            Arc::clone(known),
            primary,
            connect_primary,
        )
        .map_err(|e| format!("cannot start the replica monitor thread: {e}"))?;
        Ok(replicas)
    }

    /// One connection of its own to the store at `url`, its schema migrated: for a process
    /// that needs no pool or writer thread (kv-sweeper, kv-server's commands).
    pub fn open_connection(
        url: &DatabaseUrl,
        options: &ConnectionOptions,
    ) -> Result<DbConnection, DbSetupError> {
        let mut conn = backend::connect(url, options)?;
        backend::run_migrations(&mut conn)?;
        Ok(conn)
    }

    /// Brings [`crate::clock::now_ms`] in line with the database's clock over `conn`, a
    /// long-lived connection of its own (see [`Store::open_connection`]).
    pub fn sync_clock(conn: &mut DbConnection) -> Result<(), StoreError> {
        backend::sync_clock(conn)
    }

    /// When the expiry timer next has work: the earliest time a row is due to be looked at
    /// (at or before the earliest expiry, see [`Tx::remove_expired`]), if a row has one.
    pub fn next_due(conn: &mut DbConnection) -> Result<Option<i64>, StoreError> {
        Ok(backend::next_due(conn)?)
    }

    /// How many migrations [`Store::open`] applied.
    pub fn migrations_applied(&self) -> usize {
        self.migrations_applied
    }

    /// The database's name: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.url.backend().name()
    }

    /// The pool, for reads on a thread that may block.
    pub fn pool(&self) -> &StorePool {
        &self.pool
    }

    /// Runs `op` as one write transaction (all of it, or none of it) in the writer's next
    /// batch, and answers once that batch has committed.
    pub async fn write<T, F>(&self, now: i64, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(now, op).await
    }

    /// `GET`: the live row of `key` at `now`, or why there is none. On SQLite the read runs
    /// on this thread (see [`Store::snapshot_release_due`]); on PostgreSQL it is batched with
    /// the reads beside it ([`crate::point_reads`]).
    ///
    /// With read replicas, a replica in rotation answers if it can: at `min_version` or newer
    /// when one is given (waiting for it a while), else within the lag bound; otherwise the
    /// primary does ([`crate::replicas`]).
    pub async fn read_key(
        &self,
        now: i64,
        key: String,
        min_version: Option<i64>,
    ) -> Result<Versioned<Lookup<StoredValue>>, StoreError> {
        let Some(reader) = &self.point_reader else {
            let found = self.read_on_this_thread(move |conn| store::get(conn, now, &key))?;
            return Ok(Versioned {
                value: found,
                version: self.known.latest(),
            });
        };
        if let Some(replicas) = &self.replicas
            && let Ok(read) = replicas.read_key(now, &key, min_version).await
        {
            return Ok(read);
        }
        match reader.get(now, key, None).await? {
            PointAnswer::At { found, version } => {
                self.known.observe(version);
                Ok(Versioned {
                    value: found,
                    version,
                })
            }
            PointAnswer::Behind { .. } => Err(StoreError::Internal(
                "a primary read asked for no version, yet was behind".into(),
            )),
        }
    }

    /// The read replicas, for reads of several statements on a thread that may block
    /// ([`ReplicaReads::read`]); `None` without replicas.
    pub fn replica_reads(&self) -> Option<ReplicaReads> {
        self.replicas.as_ref().map(|r| ReplicaReads(Arc::clone(r)))
    }

    /// The newest store version this server knows of: what a response that read or wrote
    /// data reflects at least (`Kv-Version`).
    pub fn known_version(&self) -> i64 {
        self.known.latest()
    }

    /// Whether reads may be served by read replicas.
    pub fn has_replicas(&self) -> bool {
        self.replicas.is_some()
    }

    /// Each read replica's state, lag and reads served (empty without replicas).
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        self.replicas.as_ref().map_or_else(Vec::new, |r| r.status())
    }

    /// Reads the primary answered instead of a replica, by reason (empty without replicas).
    pub fn replica_fallbacks(&self) -> Vec<(Fallback, u64)> {
        self.replicas
            .as_ref()
            .map_or_else(Vec::new, |r| r.fallbacks())
    }

    /// Short reads (a few primary-key lookups): on SQLite run here on this thread's
    /// connection (see [`Store::read_key`]); on PostgreSQL handed back, to be run on the pool.
    pub fn read_short<T, F>(&self, f: F) -> ShortRead<T, F>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    {
        match self.point_reader {
            Some(_) => ShortRead::OnPool(f),
            None => ShortRead::Ran(self.read_on_this_thread(f)),
        }
    }

    fn read_on_this_thread<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let writer = self.writer.progress();
        reader::read_on_this_thread(&self.url, &self.options, writer, f)
    }

    /// Whether a read on this thread left a snapshot open that nothing releases yet (once per
    /// such period): an open read transaction keeps checkpoints from reaching past it, so the
    /// caller then calls [`Store::release_old_snapshot`] on this thread every
    /// [`Store::SNAPSHOT_MAX_AGE`] until it answers `Ok(false)` or an error.
    pub fn snapshot_release_due() -> bool {
        reader::release_due_on_this_thread()
    }

    /// Ends this thread's read snapshot once it is at its maximum age. Returns whether a
    /// (younger) snapshot is still open.
    pub fn release_old_snapshot() -> Result<bool, StoreError> {
        reader::release_old_snapshot_on_this_thread()
    }

    /// What the change feed opens its connections with.
    pub fn feed_connector(&self) -> FeedConnector {
        FeedConnector {
            url: self.url.clone(),
            options: self.options.clone(),
            known: Arc::clone(&self.known),
        }
    }
}

/// The read replicas (cheap to clone), for reads of several statements.
#[derive(Clone)]
pub struct ReplicaReads(Arc<Replicas>);

impl ReplicaReads {
    /// Runs the reads of `f` in one snapshot of a replica in rotation, at `min_version` or
    /// newer (waiting for it at most the replica wait), else within the lag bound; blocking.
    /// `None` when the primary must run them instead (the reason is counted, see
    /// [`Store::replica_fallbacks`]). An error of `f` that is no database fault is returned
    /// as the answer.
    pub fn read<T>(
        &self,
        min_version: Option<i64>,
        f: impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Option<Result<Versioned<T>, StoreError>> {
        self.0.read_snapshot(min_version, f).ok()
    }
}

/// The store's pool (cheap to clone). Its connections are not tested before use.
#[derive(Clone)]
pub struct StorePool {
    pool: DbPool,
    /// With read replicas, a read here also reads the store's version after it, so that
    /// `Kv-Version` is never older than what the read saw.
    known: Option<Arc<KnownVersion>>,
}

impl StorePool {
    /// Runs the reads of `f` on a pooled connection, blocking. When `f` finds its connection
    /// gone (the database restarted), the pool drops it and `f` runs again on another, until
    /// one works or the pool has been gone through.
    pub fn read<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(&mut DbConnection) -> Result<T, StoreError>,
    {
        let mut tries = self.pool.max_size() + 1;
        loop {
            let mut conn = self.pool.get()?;
            match f(&mut conn) {
                Ok(out) => {
                    if let Some(known) = &self.known
                        && let Ok(version) = backend::current_version(&mut conn)
                    {
                        known.observe(version);
                    }
                    return Ok(out);
                }
                Err(err) if err.is_connection_fault() => {
                    conn.mark_lost();
                    tries -= 1;
                    if tries == 0 {
                        return Err(err);
                    }
                }
                other => return other,
            }
        }
    }

    /// Runs `f` once on a pooled connection, blocking: for work that must not run twice (a
    /// streamed export).
    pub fn read_once<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }

    /// The pool's connections: open, and idle among them.
    pub fn state(&self) -> r2d2::State {
        self.pool.state()
    }

    /// The most connections the pool opens.
    pub fn max_size(&self) -> u32 {
        self.pool.max_size()
    }
}

/// Opens the change feed's connections (cheap to clone).
#[derive(Clone)]
pub struct FeedConnector {
    url: DatabaseUrl,
    options: ConnectionOptions,
    known: Arc<KnownVersion>,
}

impl FeedConnector {
    /// Whether the feed's connection hears of writes as they commit (PostgreSQL's `LISTEN`);
    /// without that (SQLite) the feed polls.
    pub fn notifies(&self) -> bool {
        self.url.backend() == Backend::Postgres
    }

    /// A new connection, listening for writes if [`FeedConnector::notifies`].
    pub fn connect(&self) -> Result<FeedConnection, String> {
        let mut conn = backend::connect(&self.url, &self.options).map_err(|e| e.to_string())?;
        if self.notifies() {
            backend::listen_for_changes(&mut conn).map_err(|e| e.to_string())?;
        }
        Ok(FeedConnection {
            conn,
            known: Arc::clone(&self.known),
        })
    }
}

/// The change feed's connection to the change log ([`crate::changes`]).
pub struct FeedConnection {
    conn: DbConnection,
    /// Learns the store's version at each [`FeedConnection::position`] (other servers' writes).
    known: Arc<KnownVersion>,
}

impl FeedConnection {
    /// Whether a write committed since the last call (a notification arrived); reads only
    /// what the socket already holds, never waits. Always `false` without notifications.
    pub fn notified(&mut self) -> diesel::QueryResult<bool> {
        backend::changes_notified(&mut self.conn)
    }

    /// Where the log stands: `(trimmed, current)`, the trim mark and the store's version (see
    /// [`changes::position`]).
    pub fn position(&mut self) -> Result<(i64, i64), StoreError> {
        let (trimmed, current) = changes::position(&mut self.conn)?;
        self.known.observe(current);
        Ok((trimmed, current))
    }

    /// The changes above `after`, at least `max_rows` when there are that many (see
    /// [`changes::read_after`]).
    pub fn read_after(
        &mut self,
        after: i64,
        max_rows: usize,
        max_value_bytes: usize,
    ) -> Result<LogRead, StoreError> {
        changes::read_after(&mut self.conn, after, max_rows, max_value_bytes)
    }
}
