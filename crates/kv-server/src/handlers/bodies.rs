//! The request bodies as the OpenAPI document shows them: schemas, never built (kv-core's
//! parsers read the bodies: `kv_core::request`, `kv_core::tx::parse_ops`); a test keeps each
//! schema to the fields its parser takes.

use serde_json::Value;
use utoipa::ToSchema;

/// The body of `POST` / `PUT /<key>/` as the OpenAPI document shows it. The parser is
/// `kv_core::args::SetArgs::from_json`; a test keeps the two to the same fields.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct SetRequest {
    /// The value: any JSON, `null` included.
    #[schema(value_type = Value, required = true)]
    value: Value,
    /// Expire after this many seconds (not with `ttl_ms` or `keep_ttl`).
    #[schema(minimum = 1)]
    ttl: Option<u64>,
    /// Expire after this many milliseconds.
    #[schema(minimum = 1)]
    ttl_ms: Option<u64>,
    /// Write only if the key is absent.
    nx: Option<bool>,
    /// Write only if the key is present.
    xx: Option<bool>,
    /// Keep the key's current expiry (Redis `KEEPTTL`).
    keep_ttl: Option<bool>,
    /// Write only if the key's version is this.
    #[schema(minimum = 1)]
    if_version: Option<i64>,
}

/// The body of `PATCH /<key>/`: `{"ttl": s}`, `{"ttl_ms": ms}`, or `{"ttl": null}` to persist.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
#[allow(dead_code)] // a schema, never built
pub struct ExpireRequest {
    #[schema(minimum = 1)]
    ttl: Option<u64>,
    #[schema(minimum = 1)]
    ttl_ms: Option<u64>,
}

/// The body of `POST /<key>/incr` and `/decr` (optional: empty means `{}`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct IncrRequest {
    /// Added (incr) or subtracted (decr); defaults to 1.
    by: Option<i64>,
    /// Expiry in seconds, applied only when this call creates the key.
    #[schema(minimum = 1)]
    ttl: Option<u64>,
    #[schema(minimum = 1)]
    ttl_ms: Option<u64>,
}

/// The body of `POST /_tx` as the OpenAPI document shows it (the parser is `kv_core::tx::parse_ops`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct TxRequest {
    #[schema(max_items = 1000)]
    ops: Vec<TxOpRequest>,
}

/// One op of a transaction, by its `op`. `set` and `incr` take the options of their single
/// requests (`SET_FIELDS`, `INCR_FIELDS`).
#[derive(ToSchema)]
#[serde(tag = "op", rename_all = "lowercase")]
#[allow(dead_code)] // a schema, never built
pub enum TxOpRequest {
    /// The key's value, or null when absent.
    #[serde(deny_unknown_fields)]
    Get { key: String },
    #[serde(deny_unknown_fields)]
    Set {
        key: String,
        #[schema(value_type = Value, required = true)]
        value: Value,
        #[schema(minimum = 1)]
        ttl: Option<u64>,
        #[schema(minimum = 1)]
        ttl_ms: Option<u64>,
        nx: Option<bool>,
        xx: Option<bool>,
        keep_ttl: Option<bool>,
        #[schema(minimum = 1)]
        if_version: Option<i64>,
    },
    /// Absent is not an error here: the result says `deleted: false`.
    #[serde(deny_unknown_fields)]
    Delete { key: String },
    /// `by` defaults to 1; negative decrements.
    #[serde(deny_unknown_fields)]
    Incr {
        key: String,
        by: Option<i64>,
        #[schema(minimum = 1)]
        ttl: Option<u64>,
        #[schema(minimum = 1)]
        ttl_ms: Option<u64>,
    },
    /// The key must be at `version`; null means it must be absent.
    #[serde(deny_unknown_fields)]
    Check {
        key: String,
        #[schema(minimum = 1, required = true)]
        version: Option<i64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_core::request::{EXPIRE_FIELDS, INCR_FIELDS, SET_FIELDS};

    /// The OpenAPI schema of a request body lists exactly the fields its parser accepts.
    #[test]
    fn request_schemas_have_the_parsers_fields() {
        use utoipa::PartialSchema;
        fn fields<T: PartialSchema>() -> Vec<String> {
            let schema = serde_json::to_value(T::schema()).unwrap_or_default();
            let mut names: Vec<String> = schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            names.sort();
            names
        }
        let sorted = |list: &[&str]| {
            let mut list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            list.sort();
            list
        };
        assert_eq!(fields::<SetRequest>(), sorted(SET_FIELDS));
        assert_eq!(fields::<ExpireRequest>(), sorted(EXPIRE_FIELDS));
        assert_eq!(fields::<IncrRequest>(), sorted(INCR_FIELDS));
    }
}

/// The body of `PUT /<key>/fields/<field>` and `PUT /<key>/items/<index>` (parser:
/// `kv_core::typed::value_body`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct ValueRequest {
    /// Any JSON; stored as a Redis string as `/_upstash` maps values (a JSON string's
    /// contents, other JSON as its compact text).
    #[schema(value_type = Value, required = true)]
    value: Value,
}

/// The body of `PUT /<key>/members/<member>` (parser: `kv_core::typed::member_body`): none
/// (or `{}`) for a set, `{"score"}` for a sorted set.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct MemberRequest {
    /// A number, or `"inf"` / `"-inf"`.
    #[schema(value_type = Option<Value>)]
    score: Option<Value>,
}

/// The body of `POST /<key>/items` (parser: `kv_core::typed::push_body`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct PushRequest {
    /// The elements to push, in order (at the head, the last one ends up first, as LPUSH).
    #[schema(value_type = Vec<Value>, min_items = 1)]
    values: Vec<Value>,
    /// `tail` (the default, RPUSH) or `head` (LPUSH).
    #[schema(value_type = Option<String>, pattern = "^(head|tail)$")]
    at: Option<String>,
}

/// The body of `POST /_eval` (parser: `handlers::eval::command_of`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct EvalRequest {
    /// Lua 5.1 source (EVAL); or give `sha`.
    script: Option<String>,
    /// The SHA1 of a script loaded before (EVALSHA).
    sha: Option<String>,
    /// The keys the script touches: `KEYS` in Lua.
    #[schema(value_type = Option<Vec<String>>)]
    keys: Option<Vec<Value>>,
    /// Its arguments: `ARGV` in Lua (numbers become their text).
    #[schema(value_type = Option<Vec<String>>)]
    args: Option<Vec<Value>>,
    /// Run as EVAL_RO: a write inside is an error (what a read-only API key may run).
    read_only: Option<bool>,
}
