//! The table rows: [`KeyValue`] (a key), `IdempotencyRecord` (a stored response) and
//! [`Change`] (a line of the change log).

use diesel::prelude::*;

use crate::expiry;
use crate::schema::{kv_changes, kv_idempotency, kv_store};

/// What a key holds: a string (a JSON value) or a collection of members.
pub const STRING: &str = "string";
pub const HASH: &str = "hash";
pub const SET: &str = "set";
pub const LIST: &str = "list";
pub const ZSET: &str = "zset";

/// One stored key. `value` is JSON text (validated before it is written); times are unix ms.
/// A collection (`kind` other than [`STRING`]) has the value `null`, its members under its
/// collection id `coll` (see `crate::collections`), and their count `length`.
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
    pub kind: String,
    pub coll: Option<i64>,
    pub length: Option<i64>,
}

impl KeyValue {
    /// A string key's row.
    pub fn string(
        key: &str,
        value: String,
        version: i64,
        created_at: i64,
        updated_at: i64,
        expires_at: Option<i64>,
    ) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value,
            version,
            created_at,
            updated_at,
            expires_at,
            kind: STRING.to_owned(),
            coll: None,
            length: None,
        }
    }

    /// Whether the key holds a string.
    pub fn is_string(&self) -> bool {
        self.kind == STRING
    }

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
    /// JSON text, validated before it was written (`null` for a collection).
    pub value: String,
    pub version: i64,
    pub expires_at: Option<i64>,
    /// What the key holds ([`STRING`], [`HASH`], [`SET`]).
    pub kind: String,
    /// A collection's id and member count.
    pub coll: Option<i64>,
    pub length: Option<i64>,
}

impl StoredValue {
    /// Whether the key holds a string.
    pub fn is_string(&self) -> bool {
        self.kind == STRING
    }

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

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// The key was written (set, patch, incr, decr, import): the event carries the new value.
    Set,
    /// The key was deleted by a client.
    Delete,
    /// The key's expired row was removed.
    Expired,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Set => "set",
            ChangeOp::Delete => "delete",
            ChangeOp::Expired => "expired",
        }
    }
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = kv_changes)]
#[diesel(treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct Change {
    pub version: i64,
    pub seq: i64,
    pub key: String,
    /// [`ChangeOp::as_str`].
    pub op: String,
    /// The value written (JSON text), for `set`.
    pub value: Option<String>,
    /// The expiry written, for `set`.
    pub expires_at: Option<i64>,
    /// When the change was made (unix ms): what the retention is measured against.
    pub at_ms: i64,
    /// For a collection's write: its type and the command (`hset`); it carries no value.
    pub kind: Option<String>,
    pub command: Option<String>,
}
