//! What every handler shares, and the ways handlers reach the database:
//! - [`AppState::write`]: a write transaction — on SQLite queued to the group-commit writer,
//!   on PostgreSQL run on a pooled connection;
//! - [`AppState::point_read`]: a single-key read — on SQLite inline on the worker thread over
//!   that thread's own connection (microseconds; no thread hop), on PostgreSQL pooled;
//! - [`AppState::db`]: anything else (scans, counts, health) on a pooled connection on the
//!   blocking thread pool.

use std::cell::RefCell;

use actix_web::web;
use kv_core::backend::{self, ConnectionOptions};
use kv_core::store::{self, Tx};
use kv_core::writer::Writer;
use kv_core::{Backend, DatabaseUrl, DbConnection, DbPool, StoreError};

use crate::error::ApiError;

pub struct AppState {
    pub pool: DbPool,
    pub backend: Backend,
    pub max_body_bytes: usize,
    /// SQLite's group-commit writer (`None` on PostgreSQL).
    pub writer: Option<Writer>,
    pub url: DatabaseUrl,
    pub options: ConnectionOptions,
}

thread_local! {
    /// Each worker thread's own SQLite read connection, opened on first use.
    static READER: RefCell<Option<DbConnection>> = const { RefCell::new(None) };
}

impl AppState {
    /// Runs `f` on a pooled connection on the blocking thread pool.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?
        .map_err(ApiError::from)
    }

    /// Runs `op` as one write transaction (all of it, or none of it).
    pub async fn write<T, F>(&self, now: i64, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.writer {
            Some(writer) => Ok(writer.write(now, op).await?),
            None => self.db(move |conn| store::write(conn, now, op)).await,
        }
    }

    /// Runs a short read (one primary-key lookup).
    pub async fn point_read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        if self.backend != Backend::Sqlite {
            return self.db(f).await;
        }
        READER.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                let conn = backend::connect(&self.url, &self.options)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                *slot = Some(conn);
            }
            let conn = slot
                .as_mut()
                .ok_or_else(|| StoreError::Internal("no reader".into()))?;
            let result = f(conn);
            if matches!(result, Err(StoreError::Unavailable(_))) || backend::is_broken(conn) {
                *slot = None; // reconnect on the next request
            }
            Ok(result?)
        })
    }
}
