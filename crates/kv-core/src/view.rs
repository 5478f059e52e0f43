//! The JSON bodies of responses, built from rows. Stored values are JSON text and are
//! spliced into responses as raw JSON, never parsed into a tree and serialized again.
//!
//! Each view also derives its OpenAPI schema (`ToSchema`), so `GET /_openapi.json` describes
//! exactly what is serialized. Views deny unknown fields in the schema: a response has exactly
//! these fields, which also keeps the `oneOf`s of untagged enums unambiguous.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::error::StoreError;
use crate::expiry::{format_rfc3339_ms, ttl_remaining_ms, ttl_remaining_secs};
use crate::model::{KeyValue, StoredValue};
use crate::store::{SetOutcome, Stats};

const OK: &str = "ok";

/// A key with its value: `GET /<key>/`, scan items, a transaction's `get`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyView {
    pub key: String,
    /// The stored JSON value, any type.
    #[schema(value_type = Value)]
    pub value: Box<RawValue>,
    pub ttl_remaining: i64,
    pub ttl_remaining_ms: i64,
    /// RFC 3339 UTC with milliseconds, or null when the key does not expire.
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    pub version: i64,
    /// What the key holds: `string`, `hash`, `list`, `set` or `zset`. A collection's `value`
    /// is `null` here; `GET /<key>` answers its members.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A collection's member count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
    /// `GET /<key>` of a collection: the cursor that continues its members (`?cursor=`), null
    /// when they are all there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl KeyView {
    pub fn new(row: KeyValue, now: i64) -> Result<Self, StoreError> {
        let kind = Some(row.kind.clone());
        let value = RawValue::from_string(row.value).map_err(|e| {
            StoreError::Internal(format!("stored value of {:?} is not JSON: {e}", row.key))
        })?;
        Ok(KeyView {
            ttl_remaining: ttl_remaining_secs(row.expires_at, now),
            ttl_remaining_ms: ttl_remaining_ms(row.expires_at, now),
            expires_at: row.expires_at.map(format_rfc3339_ms),
            version: row.version,
            kind,
            length: row.length,
            cursor: None,
            key: row.key,
            value,
        })
    }
}

/// The body of `GET /<key>/`: the JSON a [`KeyView`] of the key serializes to, byte for byte,
/// written directly with the stored value spliced in as stored. The value was validated
/// when it was written, so a GET neither parses it again (as building a `RawValue` does) nor
/// goes through serde (measured in docs/BENCHMARKS.md).
pub fn key_json(key: &str, stored: &StoredValue, now: i64) -> Result<Vec<u8>, StoreError> {
    use std::io::Write;
    let mut out = Vec::with_capacity(key.len() + stored.value.len() + 128);
    let written = (|| {
        out.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut out, key)?;
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(stored.value.as_bytes());
        write!(
            out,
            ",\"ttl_remaining\":{},\"ttl_remaining_ms\":{},\"expires_at\":",
            ttl_remaining_secs(stored.expires_at, now),
            ttl_remaining_ms(stored.expires_at, now)
        )?;
        match stored.expires_at {
            Some(at) => serde_json::to_writer(&mut out, &format_rfc3339_ms(at))?,
            None => out.extend_from_slice(b"null"),
        }
        write!(out, ",\"version\":{},\"type\":\"string\"}}", stored.version)?;
        Ok::<_, std::io::Error>(())
    })();
    written.map_err(|e| StoreError::Internal(format!("writing the body of {key:?}: {e}")))?;
    Ok(out)
}

/// The most members `GET /<key>` of a collection answers at a time.
pub const COLLECTION_PAGE: i64 = 1000;

/// The body of `GET /<key>` of a collection: `{"key","type","value","length","ttl_remaining",
/// "ttl_remaining_ms","expires_at","version"}`, its value the members after `after` (at most
/// [`COLLECTION_PAGE`], within `budget`) as JSON: a hash an object, a set an array in byte
/// order, a list an array in order, a sorted set an array of `[member, score]` by score; members are Redis strings, shown as their JSON values (see `redis::value`). With
/// more to come, `"cursor"` continues (`GET /<key>?cursor=C`).
pub fn collection_json(
    conn: &mut crate::backend::DbConnection,
    key: &str,
    stored: &StoredValue,
    now: i64,
    after: Option<&str>,
    budget: &crate::budget::ResponseBudget,
) -> Result<Vec<u8>, StoreError> {
    use crate::collections;
    use crate::redis::value::member_json;
    let coll = stored
        .coll
        .ok_or_else(|| StoreError::Internal(format!("{key:?}: a collection without an id")))?;
    let (value, last, count): (serde_json::Value, Option<String>, i64) = match stored.kind.as_str()
    {
        crate::model::HASH => {
            let page = collections::hash_page(conn, coll, after, COLLECTION_PAGE)?;
            let mut object = serde_json::Map::new();
            for (field, value) in &page {
                budget.charge(field.len() + value.len())?;
                object.insert(field.clone(), member_json(value));
            }
            let last = page.last().map(|(field, _)| field.clone());
            (serde_json::Value::Object(object), last, page.len() as i64)
        }
        crate::model::LIST => {
            // A list pages by offset: the cursor counts the elements before the page.
            let offset = after.and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
            let head = collections::list_head(conn, coll)?.unwrap_or(0) + offset;
            let page = collections::list_range(conn, coll, head, head + COLLECTION_PAGE - 1)?;
            let mut items = Vec::with_capacity(page.len());
            for (_, element) in &page {
                budget.charge(element.len())?;
                items.push(member_json(element));
            }
            let next = (offset + page.len() as i64).to_string();
            (
                serde_json::Value::Array(items),
                Some(next),
                page.len() as i64,
            )
        }
        crate::model::ZSET => {
            // A sorted set pages by rank, as a list by offset.
            let offset = after.and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
            let page = crate::sorted_sets::by_rank(
                conn,
                coll,
                Some(stored.version),
                offset,
                COLLECTION_PAGE,
            )?;
            let mut items = Vec::with_capacity(page.len());
            for (member, score) in &page {
                budget.charge(member.len() + 24)?;
                items.push(serde_json::json!([
                    member_json(member),
                    crate::redis::value::score_json(*score),
                ]));
            }
            let next = (offset + page.len() as i64).to_string();
            (
                serde_json::Value::Array(items),
                Some(next),
                page.len() as i64,
            )
        }
        _ => {
            let page = collections::set_page(conn, coll, after, COLLECTION_PAGE)?;
            let mut items = Vec::with_capacity(page.len());
            for member in &page {
                budget.charge(member.len())?;
                items.push(member_json(member));
            }
            (
                serde_json::Value::Array(items),
                page.last().cloned(),
                page.len() as i64,
            )
        }
    };
    let cursor = (count == COLLECTION_PAGE)
        .then(|| last.map(|last| crate::cursor::encode(&last)))
        .flatten();
    let body = serde_json::json!({
        "key": key,
        "type": stored.kind,
        "value": value,
        "length": stored.length.unwrap_or(0),
        "ttl_remaining": ttl_remaining_secs(stored.expires_at, now),
        "ttl_remaining_ms": ttl_remaining_ms(stored.expires_at, now),
        "expires_at": stored.expires_at.map(format_rfc3339_ms),
        "version": stored.version,
        "cursor": cursor,
    });
    serde_json::to_vec(&body).map_err(|e| StoreError::Internal(format!("a collection's body: {e}")))
}

/// `POST`/`PUT /<key>/` and a transaction's `set`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetView {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    /// `created` (201) or `updated` (200).
    #[schema(value_type = String, example = "created")]
    pub action: &'static str,
    pub key: String,
    /// RFC 3339 UTC with milliseconds, or null when the key does not expire.
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    pub version: i64,
}

impl From<SetOutcome> for SetView {
    fn from(outcome: SetOutcome) -> Self {
        SetView {
            status: OK,
            action: if outcome.created {
                "created"
            } else {
                "updated"
            },
            expires_at: outcome.row.expires_at.map(format_rfc3339_ms),
            version: outcome.row.version,
            key: outcome.row.key,
        }
    }
}

/// `DELETE /<key>/` and a transaction's `delete` (where `deleted` may be false).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteView {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    pub key: String,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

impl DeleteView {
    pub fn new(key: &str, version: Option<i64>) -> Self {
        DeleteView {
            status: OK,
            key: key.to_owned(),
            deleted: version.is_some(),
            version,
        }
    }
}

/// `PATCH /<key>/` (EXPIRE / PERSIST).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpireView {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    pub key: String,
    /// RFC 3339 UTC with milliseconds, or null when the key does not expire.
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    pub ttl_remaining: i64,
    pub ttl_remaining_ms: i64,
    pub version: i64,
}

impl ExpireView {
    pub fn new(row: KeyValue, now: i64) -> Self {
        ExpireView {
            status: OK,
            expires_at: row.expires_at.map(format_rfc3339_ms),
            ttl_remaining: ttl_remaining_secs(row.expires_at, now),
            ttl_remaining_ms: ttl_remaining_ms(row.expires_at, now),
            version: row.version,
            key: row.key,
        }
    }
}

/// `POST /<key>/incr` / `decr` and a transaction's `incr`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrView {
    pub key: String,
    pub value: i64,
    pub version: i64,
    /// RFC 3339 UTC with milliseconds, or null when the key does not expire.
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    pub ttl_remaining: i64,
}

impl IncrView {
    pub fn new(row: KeyValue, now: i64) -> Result<Self, StoreError> {
        Ok(IncrView {
            value: crate::args::counter_value(&row.value)?,
            expires_at: row.expires_at.map(format_rfc3339_ms),
            ttl_remaining: ttl_remaining_secs(row.expires_at, now),
            version: row.version,
            key: row.key,
        })
    }
}

/// A transaction's `check`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckView {
    pub key: String,
    pub ok: bool,
}

/// `GET /_keys` without values.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysPage {
    pub keys: Vec<String>,
    /// Pass it back as `cursor` for the next page; null when the scan is done.
    #[schema(required = true)]
    pub cursor: Option<String>,
}

/// `GET /_keys?values=true`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsPage {
    pub items: Vec<KeyView>,
    /// Pass it back as `cursor` for the next page; null when the scan is done.
    #[schema(required = true)]
    pub cursor: Option<String>,
}

/// A page of `GET /_keys`: keys only, or items with values.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ScanView {
    Keys(KeysPage),
    Items(ItemsPage),
}

/// `DELETE /_keys`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDeleteView {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    pub deleted: i64,
}

impl BulkDeleteView {
    pub fn new(deleted: i64) -> Self {
        BulkDeleteView {
            status: OK,
            deleted,
        }
    }
}

/// `POST /_import`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportView {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    /// Keys written.
    pub imported: u64,
    /// Lines of keys that were live already (`mode=skip_existing`).
    pub skipped_existing: u64,
    /// Lines whose `expires_at` had passed.
    pub skipped_expired: u64,
    /// The version the last imported key took, or null when nothing was written.
    #[schema(required = true)]
    pub version: Option<i64>,
    /// The transactions the import was applied in: 1 for an import of at most 10,000 lines
    /// and 4 MiB (all or nothing); more for a longer one, each of them all or nothing.
    pub chunks: u64,
}

impl ImportView {
    /// An import applied in one transaction (set `chunks` for more).
    pub fn new(summary: crate::transfer::ImportSummary, version: Option<i64>) -> Self {
        ImportView {
            status: OK,
            imported: summary.imported,
            skipped_existing: summary.skipped_existing,
            skipped_expired: summary.skipped_expired,
            version,
            chunks: 1,
        }
    }
}

/// `GET /_stats`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsView {
    pub keys: i64,
    pub expiring: i64,
    pub version: i64,
    /// `sqlite` or `postgres`.
    #[schema(value_type = String, example = "sqlite")]
    pub database: &'static str,
}

impl StatsView {
    pub fn new(stats: Stats, database: &'static str) -> Self {
        StatsView {
            keys: stats.keys,
            expiring: stats.expiring,
            version: stats.version,
            database,
        }
    }
}

/// One result of a transaction, in op order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TxResult {
    Get(Option<KeyView>),
    Set(SetView),
    Delete(DeleteView),
    Incr(IncrView),
    Check(CheckView),
}

/// `POST /_tx`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TxView {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    pub version: i64,
    pub results: Vec<TxResult>,
}

impl TxView {
    pub fn new(version: i64, results: Vec<TxResult>) -> Self {
        TxView {
            status: OK,
            version,
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_body_is_what_its_key_view_serializes_to() {
        let now = 1_795_305_540_123;
        let values = [
            r#"{"name":"Emeka","skills":["Python","Django"]}"#,
            "null",
            "-12.50e3",
            r#""caf\u00e9 \"quoted\"""#,
            "[]",
        ];
        let keys = [
            "k",
            "user:1",
            "a \"quoted\" key",
            "caf\u{e9}/\u{1F600}",
            "back\\slash",
        ];
        for (i, key) in keys.iter().enumerate() {
            for (j, value) in values.iter().enumerate() {
                for expires_at in [None, Some(now + 1_500), Some(now - 1)] {
                    let version = (i * 10 + j + 1) as i64;
                    let stored = StoredValue {
                        value: (*value).to_owned(),
                        version,
                        expires_at,
                        kind: crate::model::STRING.to_owned(),
                        coll: None,
                        length: None,
                    };
                    let row =
                        KeyValue::string(key, (*value).to_owned(), version, now, now, expires_at);
                    let view = KeyView::new(row, now).expect("view");
                    assert_eq!(
                        String::from_utf8(key_json(key, &stored, now).expect("body"))
                            .expect("UTF-8"),
                        serde_json::to_string(&view).expect("serialized"),
                        "{key} {value} {expires_at:?}"
                    );
                }
            }
        }
    }
}
