//! What every handler shares, and the one way handlers reach the database.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::web;
use kv_core::{Backend, DbConnection, DbPool, StoreError};

use crate::error::ApiError;

/// How long `/_health` keeps reporting a database fault that a request ran into, unless a
/// write succeeds first.
pub const FAULT_MEMORY: Duration = Duration::from_secs(30);

pub struct AppState {
    pub pool: DbPool,
    pub backend: Backend,
    pub max_body_bytes: usize,
    pub faults: DbFaults,
}

impl AppState {
    /// Runs `f` on a pooled connection on the blocking thread pool: all of a request's
    /// database work happens in one such call.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let result = web::block(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?;
        if let Err(StoreError::Unavailable(reason)) = result.as_ref().map_err(StoreError::root) {
            self.faults.record(reason);
        }
        result.map_err(ApiError::from)
    }

    /// [`AppState::db`] for a write: its success shows the database takes writes again.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let result = self.db(f).await;
        if result.is_ok() {
            self.faults.clear();
        }
        result
    }
}

/// The last database fault (busy, read-only, disk full, unreachable) a request ran into, for
/// `/_health`: a database can answer reads while it refuses writes.
#[derive(Debug, Default)]
pub struct DbFaults {
    last: Mutex<Option<(String, Instant)>>,
}

impl DbFaults {
    pub fn record(&self, reason: &str) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((reason.to_owned(), Instant::now()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }

    /// The fault seen within the last [`FAULT_MEMORY`] and how long ago, if any.
    pub fn recent(&self) -> Option<(String, Duration)> {
        let last = self.last.lock().ok()?;
        let (reason, at) = last.as_ref()?;
        let age = at.elapsed();
        (age < FAULT_MEMORY).then(|| (reason.clone(), age))
    }
}
