//! Read replicas: PostgreSQL hot standbys of the primary that serve single-key reads, with a
//! promise stronger than "eventually" (docs/POSTGRES.md, "Read replicas"):
//!
//! - a read that asks for version `V` (`Kv-Min-Version`) is answered only from a snapshot at
//!   `V` or newer: the replica's version is read in the same statement as the rows
//!   ([`crate::point_reads`]); a replica behind is waited for at most the wait, then the
//!   primary answers;
//! - a read that asks for nothing is answered by a replica at most the bound behind
//!   ([`KnownVersion::lag`]), else by the primary;
//! - a replica that fails a read, lags past the bound or stops being a standby of this
//!   primary is taken out of rotation; the monitor (`monitor.rs`) checks every replica each
//!   second and takes it back once it has caught up.
//!
//! A replica's trouble is never an error to a client: the primary answers instead, and the
//! reason is counted ([`Fallback`]).

pub(crate) mod monitor;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::Versioned;
use crate::backend::{self, ConnectionOptions, DatabaseUrl, DbConnection, DbPool};
use crate::error::StoreError;
use crate::known_version::KnownVersion;
use crate::model::StoredValue;
use crate::point_reads::{AtLeast, PointAnswer, PointReader, RETRY_EVERY};
use crate::store::Lookup;

/// Connections per replica for reads of several statements.
const POOL_SIZE: u32 = 4;

/// How long such a read waits for a replica's connection before the primary answers it.
const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_millis(100);

/// The replicas a store reads from, and how.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// The standbys' URLs (`--read-replica`).
    pub urls: Vec<DatabaseUrl>,
    /// How long a read that asks for a version waits for a replica behind it
    /// (`--replica-wait-ms`).
    pub wait: Duration,
    /// How far behind a replica may be for reads that ask for no version
    /// (`--replica-max-lag-ms`).
    pub max_lag: Duration,
}

/// Why the primary answered a read a replica could have served (`kv_replica_fallbacks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The version asked for is newer than any this server knows of (the primary has it, or
    /// nobody has: the primary answers at once).
    Ahead,
    /// The replica did not reach the version asked for within the wait.
    Behind,
    /// The replica was further behind than the bound.
    Lagging,
    /// The replica failed the read (unreachable, a hot-standby conflict, …).
    Error,
    /// No replica was in rotation.
    NoneInRotation,
}

impl Fallback {
    pub const ALL: [Fallback; 5] = [
        Fallback::Ahead,
        Fallback::Behind,
        Fallback::Lagging,
        Fallback::Error,
        Fallback::NoneInRotation,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Fallback::Ahead => "ahead",
            Fallback::Behind => "behind",
            Fallback::Lagging => "lagging",
            Fallback::Error => "error",
            Fallback::NoneInRotation => "none_in_rotation",
        }
    }
}

/// A replica's state, as `/_health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// In rotation.
    Ok,
    /// Reachable, but further behind than the bound: out of rotation.
    Lagging,
    /// Unreachable, failing, or not a standby of this primary: out of rotation.
    Down,
}

impl ReplicaState {
    pub fn name(self) -> &'static str {
        match self {
            ReplicaState::Ok => "ok",
            ReplicaState::Lagging => "lagging",
            ReplicaState::Down => "down",
        }
    }

    fn from_u8(n: u8) -> ReplicaState {
        match n {
            0 => ReplicaState::Ok,
            1 => ReplicaState::Lagging,
            _ => ReplicaState::Down,
        }
    }
}

/// One replica as `/_health` and `/_metrics` show it.
#[derive(Debug, Clone)]
pub struct ReplicaStatus {
    /// The URL, its password redacted.
    pub url: String,
    pub state: ReplicaState,
    /// How far behind it was when last seen.
    pub lag: Duration,
    /// Reads it has served.
    pub reads: u64,
}

/// A replica: its point readers and what is known of it.
pub(crate) struct Replica {
    url: DatabaseUrl,
    options: ConnectionOptions,
    state: AtomicU8,
    lag_us: AtomicU64,
    reads: AtomicU64,
    reader: PointReader,
    /// Connections for reads of several statements ([`Replicas::read_snapshot`]), opened as
    /// they are needed.
    pool: DbPool,
}

impl Replica {
    fn state(&self) -> ReplicaState {
        ReplicaState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Sets the state, logging a change.
    pub(crate) fn set_state(&self, state: ReplicaState, why: &str) {
        let before = ReplicaState::from_u8(self.state.swap(state as u8, Ordering::AcqRel));
        if before != state {
            let url = self.url.redacted();
            match state {
                ReplicaState::Ok => log::info!("read replica {url} is back in rotation"),
                _ => log::warn!(
                    "read replica {url} is out of rotation ({}): {why}",
                    state.name()
                ),
            }
        }
    }

    pub(crate) fn set_lag(&self, lag: Duration) {
        self.lag_us.store(
            u64::try_from(lag.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn connect(&self) -> Result<DbConnection, String> {
        backend::connect(&self.url, &self.options).map_err(|e| e.to_string())
    }
}

/// A store's read replicas, and the counts of reads they did not serve.
pub(crate) struct Replicas {
    list: Vec<Replica>,
    next: AtomicUsize,
    wait: Duration,
    max_lag: Duration,
    known: Arc<KnownVersion>,
    fallbacks: [AtomicU64; Fallback::ALL.len()],
}

/// Where a read goes.
enum Route<'r> {
    Replica(&'r Replica),
    Primary(Fallback),
}

impl Replicas {
    /// Starts a point reader per replica (connecting on first use); every replica starts in
    /// rotation, the monitor's first check having just passed ([`monitor::first_check`]).
    pub(crate) fn start(
        options: &ReplicaOptions,
        connection: &ConnectionOptions,
        known: Arc<KnownVersion>,
    ) -> Result<Replicas, StoreError> {
        let mut list = Vec::with_capacity(options.urls.len());
        for (n, url) in options.urls.iter().enumerate() {
            let connector = {
                let (url, options) = (url.clone(), connection.clone());
                move || backend::connect(&url, &options).map_err(|e| e.to_string())
            };
            list.push(Replica {
                url: url.clone(),
                options: connection.clone(),
                state: AtomicU8::new(ReplicaState::Ok as u8),
                lag_us: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                reader: PointReader::spawn(&format!("kv-replica{n}"), connector, false)?,
                pool: backend::build_pool(
                    url,
                    connection,
                    POOL_SIZE,
                    Some(0),
                    POOL_CHECKOUT_TIMEOUT,
                ),
            });
        }
        Ok(Replicas {
            list,
            next: AtomicUsize::new(0),
            wait: options.wait,
            max_lag: options.max_lag,
            known,
            fallbacks: Default::default(),
        })
    }

    pub(crate) fn list(&self) -> &[Replica] {
        &self.list
    }

    pub(crate) fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// A point read on a replica, or `Err` with why the primary must answer it instead
    /// (counted).
    pub(crate) async fn read_key(
        &self,
        now: i64,
        key: &str,
        min_version: Option<i64>,
    ) -> Result<Versioned<Lookup<StoredValue>>, Fallback> {
        let replica = match self.route(min_version) {
            Route::Replica(replica) => replica,
            Route::Primary(why) => return Err(self.fell_back(why)),
        };
        let at_least = min_version.map(|version| AtLeast {
            version,
            until: Instant::now() + self.wait,
        });
        match replica.reader.get(now, key.to_owned(), at_least).await {
            Ok(PointAnswer::At { found, version }) => {
                self.served(replica, version, min_version)?;
                Ok(Versioned {
                    value: found,
                    version,
                })
            }
            Ok(PointAnswer::Behind { .. }) => Err(self.fell_back(Fallback::Behind)),
            Err(err) => Err(self.failed(replica, &err)),
        }
    }

    /// Runs the reads of `f` in one snapshot of a replica (`REPEATABLE READ`), at
    /// `min_version` or newer when given (waiting for it a while), else within the lag bound;
    /// blocking. `Err` with why the primary must run them instead (counted). An error of `f`
    /// that is no database fault (a bad argument, a reply over budget) is the answer: the
    /// primary would give it too.
    pub(crate) fn read_snapshot<T>(
        &self,
        min_version: Option<i64>,
        mut f: impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<Result<Versioned<T>, StoreError>, Fallback> {
        let replica = match self.route(min_version) {
            Route::Replica(replica) => replica,
            Route::Primary(why) => return Err(self.fell_back(why)),
        };
        let until = Instant::now() + self.wait;
        loop {
            let mut conn = match replica.pool.get() {
                Ok(conn) => conn,
                Err(err) => {
                    replica.set_state(ReplicaState::Down, &err.to_string());
                    return Err(self.fell_back(Fallback::Error));
                }
            };
            let read = backend::read_snapshot(&mut conn, |c| {
                let version = backend::current_version(c)?;
                match min_version.is_some_and(|min| min > version) {
                    true => Ok((version, None)),
                    false => Ok((version, Some(f(c)))),
                }
            });
            match read {
                Ok((_, Some(Err(err)))) if is_database_fault(&err) => {
                    return Err(self.failed(replica, &err));
                }
                Ok((version, Some(answer))) => {
                    self.served(replica, version, min_version)?;
                    return Ok(answer.map(|value| Versioned { value, version }));
                }
                Ok((_, None)) if Instant::now() < until => {
                    drop(conn);
                    std::thread::sleep(RETRY_EVERY);
                }
                Ok((_, None)) => return Err(self.fell_back(Fallback::Behind)),
                Err(err) => {
                    if err.is_connection_fault() {
                        conn.mark_lost();
                    }
                    return Err(self.failed(replica, &err));
                }
            }
        }
    }

    /// `replica` answered a read from its snapshot at `version`: learns the version and the
    /// replica's lag, and counts the read, unless the read asked for no version and the
    /// replica is further behind than the bound (then out of rotation, and the primary
    /// answers).
    fn served(
        &self,
        replica: &Replica,
        version: i64,
        min_version: Option<i64>,
    ) -> Result<(), Fallback> {
        self.known.observe(version);
        let lag = self.known.lag(version);
        replica.set_lag(lag);
        if min_version.is_none() && lag > self.max_lag {
            let why = format!("{} ms behind", lag.as_millis());
            replica.set_state(ReplicaState::Lagging, &why);
            return Err(self.fell_back(Fallback::Lagging));
        }
        replica.reads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `replica` failed a read: out of rotation if it cannot be reached; the primary answers.
    fn failed(&self, replica: &Replica, err: &StoreError) -> Fallback {
        if err.is_connection_fault() {
            replica.set_state(ReplicaState::Down, &err.to_string());
        }
        let url = replica.url.redacted();
        log::debug!("read replica {url} failed a read: {err}");
        self.fell_back(Fallback::Error)
    }

    /// The replica in rotation next in turn, or why there is none to ask.
    fn route(&self, min_version: Option<i64>) -> Route<'_> {
        if min_version.is_some_and(|v| v > self.known.latest()) {
            return Route::Primary(Fallback::Ahead);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.list.len())
            .map(|i| &self.list[(start + i) % self.list.len()])
            .find(|replica| replica.state() == ReplicaState::Ok)
            .map_or(Route::Primary(Fallback::NoneInRotation), Route::Replica)
    }

    fn fell_back(&self, why: Fallback) -> Fallback {
        self.fallbacks[why as usize].fetch_add(1, Ordering::Relaxed);
        why
    }

    /// Each replica as `/_health` shows it.
    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        self.list
            .iter()
            .map(|replica| ReplicaStatus {
                url: replica.url.redacted(),
                state: replica.state(),
                lag: Duration::from_micros(replica.lag_us.load(Ordering::Relaxed)),
                reads: replica.reads.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Reads the primary answered instead of a replica, by reason.
    pub(crate) fn fallbacks(&self) -> Vec<(Fallback, u64)> {
        Fallback::ALL
            .iter()
            .map(|why| (*why, self.fallbacks[*why as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

/// Whether `err` says the database failed rather than the request: then the primary answers.
fn is_database_fault(err: &StoreError) -> bool {
    matches!(
        err.root(),
        StoreError::Unavailable(_) | StoreError::Internal(_) | StoreError::Conflict
    )
}
