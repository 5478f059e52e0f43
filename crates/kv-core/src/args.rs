//! The arguments store operations take ([`crate::store::Tx`]'s and the scans'): what a set,
//! an incr, a page of keys and an import line are, whoever parsed them (the REST bodies in
//! `request`, the `/_tx` ops in `tx`, Redis commands in `redis`, NDJSON lines in `transfer`).

use serde_json::Value;

use crate::error::StoreError;
use crate::glob::Glob;
use crate::model::KeyValue;
use crate::precondition::Precondition;

/// How a set changes the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetExpiry {
    /// No ttl: the key does not expire (a set clears any previous expiry).
    Persist,
    /// `keep_ttl`: keep the key's current expiry (Redis `KEEPTTL`).
    Keep,
    /// Expire at this unix ms.
    At(i64),
}

/// A set (`POST`/`PUT /<key>/`, or a transaction's `set` op).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetArgs {
    /// The value as compact JSON text.
    pub value: String,
    pub expiry: SetExpiry,
    pub precondition: Precondition,
}

/// An INCR / DECR (`POST /<key>/incr`, a transaction's `incr` op).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrArgs {
    pub by: i64,
    /// Subtract `by` instead of adding it (DECR).
    pub decrement: bool,
    /// The expiry the key gets if this call creates it.
    pub expires_at_if_created: Option<i64>,
}

impl IncrArgs {
    /// The counter after this call, from `current`.
    pub fn apply(&self, current: i64) -> Result<i64, StoreError> {
        let next = if self.decrement {
            current.checked_sub(self.by)
        } else {
            current.checked_add(self.by)
        };
        next.ok_or(StoreError::Overflow)
    }
}

/// Reads a stored value as an INCR counter: only a JSON integer in the 64-bit signed range.
pub fn counter_value(stored: &str) -> Result<i64, StoreError> {
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::Number(n)) if n.is_i64() => n.as_i64().ok_or(StoreError::NotAnInteger),
        Ok(Value::Number(n)) if n.is_u64() => Err(StoreError::Overflow),
        _ => Err(StoreError::NotAnInteger),
    }
}

/// A page request of `GET /_keys`.
#[derive(Debug, Clone)]
pub struct ScanArgs {
    pub prefix: String,
    pub pattern: Option<Glob>,
    pub limit: usize,
    /// Continue after this key (decoded cursor).
    pub after: Option<String>,
}

/// One page of keys in byte order; `next_after` is where the next page starts (`None`: done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub rows: Vec<KeyValue>,
    pub next_after: Option<String>,
}

/// What an import does with a key that is live already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    /// Overwrite it (the default).
    #[default]
    Replace,
    /// Keep it, and count the line as skipped.
    SkipExisting,
    /// Import nothing at all (409 `key_exists`, naming the line).
    FailOnExisting,
}

impl std::str::FromStr for ImportMode {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "replace" => Ok(ImportMode::Replace),
            "skip_existing" => Ok(ImportMode::SkipExisting),
            "fail_on_existing" => Ok(ImportMode::FailOnExisting),
            other => Err(StoreError::invalid(
                "invalid_mode",
                format!("mode must be replace, skip_existing or fail_on_existing, not {other:?}"),
            )),
        }
    }
}

/// One import line, validated like a SET of that key.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportLine {
    pub key: String,
    /// Compact JSON text, as a SET stores it (`null` for a collection).
    pub value: String,
    pub expires_at: Option<i64>,
    /// A collection's members (a line with a `"type"` other than `"string"`); `None`: a string.
    pub members: Option<Members>,
}

impl ImportLine {
    /// How much a line weighs toward an import chunk's line count: a string 1, a collection
    /// its members (at least 1).
    pub fn weight(&self) -> u64 {
        self.members.as_ref().map_or(1, |m| m.len().max(1) as u64)
    }

    /// A collection line without members: it creates nothing (an empty collection does not
    /// exist) and leaves the key as it was.
    pub fn is_empty_collection(&self) -> bool {
        self.members.as_ref().is_some_and(Members::is_empty)
    }
}

/// The members of a collection, as Redis strings: a hash's fields with their values (each
/// field once), a set's members (each once), a list's elements (in order), or a sorted
/// set's members with their scores (each member once).
#[derive(Debug, Clone, PartialEq)]
pub enum Members {
    Hash(Vec<(String, String)>),
    Set(Vec<String>),
    List(Vec<String>),
    Zset(Vec<(String, f64)>),
}

impl Members {
    pub fn len(&self) -> usize {
        match self {
            Members::Hash(fields) => fields.len(),
            Members::Set(members) | Members::List(members) => members.len(),
            Members::Zset(members) => members.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type these are the members of ([`crate::model::HASH`], …).
    pub fn kind(&self) -> &'static str {
        match self {
            Members::Hash(_) => crate::model::HASH,
            Members::Set(_) => crate::model::SET,
            Members::List(_) => crate::model::LIST,
            Members::Zset(_) => crate::model::ZSET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_json_integers_only() {
        assert_eq!(counter_value("5"), Ok(5));
        assert_eq!(counter_value("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            counter_value("18446744073709551615"),
            Err(StoreError::Overflow)
        );
        for v in ["5.0", "\"5\"", "null", "[1]", "{}", "true"] {
            assert_eq!(counter_value(v), Err(StoreError::NotAnInteger), "{v}");
        }
    }
}
