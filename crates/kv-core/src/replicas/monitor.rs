//! Checks the read replicas: at start (a URL that is not a standby of this primary is refused)
//! and then every [`CHECK_EVERY`] on a thread of its own, over a connection of its own to each
//! replica and one to the primary. A check reads the primary's version (so lag is measured
//! even when this server neither writes nor hears of writes), then each replica's identity and
//! version, and sets its state: down if unreachable or not a standby of this primary, lagging
//! if further behind than the bound, else in rotation.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};

use super::{Replica, ReplicaState, Replicas};
use crate::backend::{self, DbConnection};
use crate::known_version::KnownVersion;

/// How often every replica is checked: a replica that has caught up is back in rotation
/// within this long.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a PostgreSQL server says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub(crate) struct Identity {
    /// A hot standby (`pg_is_in_recovery()`).
    #[diesel(sql_type = Bool)]
    pub in_recovery: bool,
    /// The cluster's system identifier (`pg_control_system()`), the same on a primary and
    /// every standby made from it; `None` where the role may not read it.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub system: Option<i64>,
}

/// Asks `conn` what it is.
pub(crate) fn identify(conn: &mut DbConnection) -> Result<Identity, String> {
    let DbConnection::Postgres(c) = conn else {
        return Err("not a PostgreSQL database".into());
    };
    let query = "SELECT pg_is_in_recovery() AS in_recovery, \
                 (SELECT system_identifier FROM pg_control_system())::bigint AS system";
    match diesel::sql_query(query).get_result::<Identity>(c) {
        Ok(identity) => Ok(identity),
        // pg_control_system() may be closed to the role: then only recovery is checked.
        Err(_) => {
            diesel::sql_query("SELECT pg_is_in_recovery() AS in_recovery, NULL::bigint AS system")
                .get_result::<Identity>(c)
                .map_err(|e| e.to_string())
        }
    }
}

/// Why `replica` is not a standby of the primary `primary` identifies, if it is not.
pub(crate) fn mismatch(replica: Identity, primary: Identity) -> Option<String> {
    if !replica.in_recovery {
        return Some("it is not a hot standby (pg_is_in_recovery() is false)".into());
    }
    match (replica.system, primary.system) {
        (Some(theirs), Some(ours)) if theirs != ours => Some(format!(
            "it is a standby of another primary (system identifier {theirs}; the primary's is {ours})"
        )),
        _ => None,
    }
}

/// Starts the monitor thread over `primary` (a connection of its own, reopened by
/// `connect_primary` when lost).
pub(crate) fn spawn(
    replicas: Arc<Replicas>,
    known: Arc<KnownVersion>,
    primary: Identity,
    connect_primary: impl Fn() -> Result<DbConnection, String> + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("kv-replica-monitor".into())
        .spawn(move || {
            let mut primary_conn: Option<DbConnection> = None;
            let mut replica_conns: Vec<Option<DbConnection>> =
                replicas.list().iter().map(|_| None).collect();
            loop {
                std::thread::sleep(CHECK_EVERY);
                if primary_conn.is_none() {
                    primary_conn = connect_primary().ok();
                }
                if let Some(conn) = primary_conn.as_mut() {
                    match backend::current_version(conn) {
                        Ok(version) => known.observe(version),
                        Err(_) => primary_conn = None,
                    }
                }
                for (replica, conn) in replicas.list().iter().zip(replica_conns.iter_mut()) {
                    check(replica, conn, primary, &known, replicas.max_lag());
                }
            }
        })
        .map(|_| ())
}

/// Checks one replica over `conn` (opened if `None`, dropped on a failure) and sets its state.
fn check(
    replica: &Replica,
    conn: &mut Option<DbConnection>,
    primary: Identity,
    known: &KnownVersion,
    max_lag: Duration,
) {
    let checked = (|| {
        if conn.is_none() {
            *conn = Some(replica.connect()?);
        }
        let c = conn.as_mut().ok_or("no connection")?;
        let identity = identify(c)?;
        if let Some(why) = mismatch(identity, primary) {
            return Err(why);
        }
        backend::current_version(c).map_err(|e| e.to_string())
    })();
    match checked {
        Ok(version) => {
            known.observe(version);
            let lag = known.lag(version);
            replica.set_lag(lag);
            match lag > max_lag {
                true => replica.set_state(
                    ReplicaState::Lagging,
                    &format!("{} ms behind", lag.as_millis()),
                ),
                false => replica.set_state(ReplicaState::Ok, "caught up"),
            }
        }
        Err(why) => {
            *conn = None;
            replica.set_state(ReplicaState::Down, &why);
        }
    }
}

/// The check at start: every replica that can be reached must be a standby of this primary
/// (else the error says why); one that cannot be reached starts out of rotation.
pub(crate) fn first_check(replicas: &Replicas, primary: Identity) -> Result<(), String> {
    for replica in replicas.list() {
        let identity = replica.connect().and_then(|mut conn| identify(&mut conn));
        match identity {
            Ok(identity) => {
                if let Some(why) = mismatch(identity, primary) {
                    return Err(format!(
                        "--read-replica {}: refused: {why}",
                        replica.url.redacted()
                    ));
                }
            }
            Err(why) => replica.set_state(ReplicaState::Down, &why),
        }
    }
    Ok(())
}
