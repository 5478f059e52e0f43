//! What every handler shares, and the one way handlers reach the database.

use actix_web::web;
use kv_core::{Backend, DbConnection, DbPool, StoreError};

use crate::error::ApiError;

pub struct AppState {
    pub pool: DbPool,
    pub backend: Backend,
    pub max_body_bytes: usize,
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
        web::block(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?
        .map_err(ApiError::from)
    }
}
