//! `Idempotency-Key` (the IETF httpapi draft): the first response to a write sent with a key
//! is stored, in the same transaction as the write, with a fingerprint of the request; a
//! retry with the same key and the same request gets that response again and writes nothing;
//! the same key with another request is refused. Stored responses expire after the retention
//! and the sweeper deletes them.

use diesel::prelude::*;
use serde::Serialize;

use crate::backend::{DbConnection, with_conn};
use crate::error::StoreError;
use crate::model::IdempotencyRecord;
use crate::schema::kv_idempotency;

/// The longest Idempotency-Key, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// A write's Idempotency-Key, the fingerprint of its request and how long its response is
/// kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    pub key: String,
    /// Hex SHA-256 of everything that makes the request what it is.
    pub fingerprint: String,
    pub retention_ms: i64,
}

/// The header's value as the key: 1–255 visible ASCII characters; a structured-field string
/// (`"…"`, as the draft writes it) is unquoted first.
pub fn parse_key(header: &str) -> Result<String, StoreError> {
    let key = header
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(header);
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_KEY_CHARS || !key.chars().all(|c| c.is_ascii_graphic() || c == ' ')
    {
        return Err(StoreError::invalid(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1–{MAX_KEY_CHARS} visible ASCII characters"),
        ));
    }
    Ok(key.to_owned())
}

/// A response as stored for replay: status, JSON body and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    pub etag: Option<String>,
}

impl StoredResponse {
    /// A JSON response, with the ETag of `version` if given.
    pub fn json(
        status: u16,
        body: &impl Serialize,
        version: Option<i64>,
    ) -> Result<Self, StoreError> {
        Ok(StoredResponse {
            status,
            body: serde_json::to_string(body)
                .map_err(|e| StoreError::Internal(format!("response not serializable: {e}")))?,
            etag: version.map(|v| format!("\"{v}\"")),
        })
    }
}

/// What a write with an Idempotency-Key answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The write ran now; its response is stored.
    Fresh(StoredResponse),
    /// A retry: the stored response of the first, nothing written.
    Replayed(StoredResponse),
}

/// The stored records of `keys` (expired ones too).
pub(crate) fn find_records(
    conn: &mut DbConnection,
    keys: &[&str],
) -> Result<Vec<IdempotencyRecord>, StoreError> {
    Ok(with_conn!(conn, c => kv_idempotency::table
        .filter(kv_idempotency::idempotency_key.eq_any(keys))
        .select(IdempotencyRecord::as_select())
        .load(c))?)
}

/// Writes `records` over any (expired) records of the same keys: one statement on
/// PostgreSQL, one a record on SQLite (a non-batched write stores one).
pub(crate) fn put_records(
    conn: &mut DbConnection,
    records: &[IdempotencyRecord],
) -> Result<(), StoreError> {
    use diesel::upsert::excluded;
    match conn {
        _ if records.is_empty() => {}
        DbConnection::Sqlite(c) => {
            for record in records {
                diesel::replace_into(kv_idempotency::table)
                    .values(record)
                    .execute(c)?;
            }
        }
        DbConnection::Postgres(c) => {
            diesel::insert_into(kv_idempotency::table)
                .values(records)
                .on_conflict(kv_idempotency::idempotency_key)
                .do_update()
                .set((
                    kv_idempotency::fingerprint.eq(excluded(kv_idempotency::fingerprint)),
                    kv_idempotency::status.eq(excluded(kv_idempotency::status)),
                    kv_idempotency::body.eq(excluded(kv_idempotency::body)),
                    kv_idempotency::etag.eq(excluded(kv_idempotency::etag)),
                    kv_idempotency::expires_at.eq(excluded(kv_idempotency::expires_at)),
                ))
                .execute(c)?;
        }
    }
    Ok(())
}

/// Deletes the stored responses expired at `now` (the sweeper's job); returns how many.
pub fn sweep_expired(conn: &mut DbConnection, now: i64) -> Result<usize, StoreError> {
    Ok(with_conn!(conn, c => diesel::delete(
        kv_idempotency::table.filter(kv_idempotency::expires_at.le(now))
    )
    .execute(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255_characters_quoted_or_not() {
        assert_eq!(
            parse_key("8e03978e-40d5-43e8-bc93-6894a57f9324"),
            Ok("8e03978e-40d5-43e8-bc93-6894a57f9324".into())
        );
        assert_eq!(parse_key("\"abc\""), Ok("abc".into()));
        assert!(parse_key(&"k".repeat(255)).is_ok());
        for bad in ["", "\"\"", "tab\there", "é", &"k".repeat(256)] {
            let err = parse_key(bad).expect_err(bad);
            assert_eq!(err.code(), "invalid_idempotency_key");
        }
    }
}
