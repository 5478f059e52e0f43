//! The table rows: [`KeyValue`] (a key) and `IdempotencyRecord` (a stored response).

use diesel::prelude::*;

use crate::expiry;
use crate::schema::{kv_idempotency, kv_store};

/// One stored key. `value` is JSON text (validated before it is written); times are unix ms.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = kv_store)]
#[diesel(treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
}

impl KeyValue {
    /// Whether this row is expired at `now` (and so absent for every operation).
    pub fn is_expired(&self, now: i64) -> bool {
        expiry::is_expired(self.expires_at, now)
    }
}

/// What a read of one key (`GET`, `HEAD`) takes of its row: a point read selects only these
/// columns, and does not build the rest.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = kv_store)]
pub struct StoredValue {
    /// JSON text, validated before it was written.
    pub value: String,
    pub version: i64,
    pub expires_at: Option<i64>,
}

impl StoredValue {
    /// Whether this row is expired at `now` (and so absent for every operation).
    pub fn is_expired(&self, now: i64) -> bool {
        expiry::is_expired(self.expires_at, now)
    }
}

/// A stored response to a request with an Idempotency-Key, as its table row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = kv_idempotency)]
pub(crate) struct IdempotencyRecord {
    pub idempotency_key: String,
    pub fingerprint: String,
    pub status: i32,
    pub body: String,
    pub etag: Option<String>,
    pub expires_at: i64,
}
