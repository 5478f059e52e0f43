//! Parsing of request bodies into store arguments. Every bad input becomes a
//! `StoreError::Invalid` with a message that says what to fix.

use serde_json::{Map, Value};

use crate::args::{IncrArgs, ScanArgs, SetArgs, SetExpiry};
use crate::cursor;
use crate::error::StoreError;
use crate::expiry::{self, Ttl};
use crate::glob::Glob;
use crate::precondition::Precondition;

/// `GET /_keys` returns this many keys unless `limit` says otherwise.
pub const DEFAULT_SCAN_LIMIT: usize = 100;
/// The largest `limit` of `GET /_keys`.
pub const MAX_SCAN_LIMIT: usize = 1000;

/// The longest `match` pattern of `GET /_keys`, in bytes: matching costs up to
/// pattern × key length per key examined, so the pattern is bounded like the key.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// JSON nested deeper than this many levels is refused.
pub const MAX_JSON_DEPTH: usize = 128;

/// The fields of a set body, of a `PATCH` (expire) body and of an incr / decr body.
pub const SET_FIELDS: &[&str] = &[
    "value",
    "ttl",
    "ttl_ms",
    "nx",
    "xx",
    "keep_ttl",
    "if_version",
];
pub const EXPIRE_FIELDS: &[&str] = &["ttl", "ttl_ms"];
pub const INCR_FIELDS: &[&str] = &["by", "ttl", "ttl_ms"];

/// Parses a request body as JSON, whatever its Content-Type. An empty body (no bytes) is
/// `None`; a body of only whitespace is not JSON, and so is 400 like any other.
pub fn parse_body(bytes: &[u8]) -> Result<Option<Value>, StoreError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if nesting_depth(bytes) > MAX_JSON_DEPTH {
        return Err(StoreError::invalid(
            "invalid_json",
            format!("Invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // The depth was bounded above, so serde_json's own (lower) recursion limit is not needed.
    de.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut de)
        .and_then(|v: Value| de.end().map(|()| v))
        .map_err(|e| StoreError::invalid("invalid_json", format!("Invalid JSON: {e}")))?;
    Ok(Some(value))
}

/// The deepest nesting of arrays and objects in a JSON text (strings are skipped).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The body as a JSON object (`None`, an empty body, is `{}`).
pub fn body_object(body: Option<Value>) -> Result<Map<String, Value>, StoreError> {
    match body {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(StoreError::invalid(
            "invalid_body",
            "request body must be a JSON object",
        )),
    }
}

impl SetArgs {
    pub fn from_json(mut body: Map<String, Value>, now: i64) -> Result<Self, StoreError> {
        reject_unknown(&body, SET_FIELDS)?;
        let value = body
            .remove("value")
            .ok_or_else(|| StoreError::invalid("missing_value", "Missing value in payload"))?;
        let ttl = take_ttl(&mut body)?;
        let keep_ttl = take_bool(&mut body, "keep_ttl")?;
        let nx = take_bool(&mut body, "nx")?;
        let xx = take_bool(&mut body, "xx")?;
        if nx && xx {
            return Err(StoreError::invalid(
                "invalid_option",
                "nx and xx cannot both be true",
            ));
        }
        let expiry = match (ttl, keep_ttl) {
            (Some(_), true) => {
                return Err(StoreError::invalid(
                    "invalid_ttl",
                    "ttl cannot be combined with keep_ttl",
                ));
            }
            (Some(ttl), false) => SetExpiry::At(expires_at(now, ttl)?),
            (None, true) => SetExpiry::Keep,
            (None, false) => SetExpiry::Persist,
        };
        let if_version = match body.remove("if_version") {
            None | Some(Value::Null) => None,
            Some(v) => Some(positive_i64(&v, "if_version")?),
        };
        // Straight into a buffer: `Value`'s `Display` (`to_string`) writes the same text
        // through `fmt::Write`, piece by piece.
        let value = serde_json::to_string(&value)
            .map_err(|e| StoreError::Internal(format!("value not serializable: {e}")))?;
        Ok(SetArgs {
            value,
            expiry,
            precondition: Precondition {
                nx,
                xx,
                if_version,
                ..Precondition::default()
            },
        })
    }
}

/// The new expiry of a `PATCH /<key>/` (EXPIRE / PERSIST): `None` removes it.
pub fn expiry_from_json(mut body: Map<String, Value>, now: i64) -> Result<Option<i64>, StoreError> {
    reject_unknown(&body, EXPIRE_FIELDS)?;
    let present = |body: &Map<String, Value>, f: &str| body.contains_key(f);
    if !present(&body, "ttl") && !present(&body, "ttl_ms") {
        return Err(StoreError::invalid(
            "invalid_ttl",
            "give {\"ttl\": seconds}, {\"ttl_ms\": milliseconds} or {\"ttl\": null}",
        ));
    }
    match take_ttl(&mut body)? {
        Some(ttl) => expires_at(now, ttl).map(Some),
        None => Ok(None),
    }
}

impl IncrArgs {
    pub fn from_json(
        mut body: Map<String, Value>,
        decrement: bool,
        now: i64,
    ) -> Result<Self, StoreError> {
        reject_unknown(&body, INCR_FIELDS)?;
        let by = match body.remove("by") {
            None | Some(Value::Null) => 1,
            Some(v) => v.as_i64().ok_or_else(|| {
                StoreError::invalid("invalid_by", "by must be a 64-bit signed integer")
            })?,
        };
        let expires_at_if_created = take_ttl(&mut body)?
            .map(|ttl| expires_at(now, ttl))
            .transpose()?;
        Ok(IncrArgs {
            by,
            decrement,
            expires_at_if_created,
        })
    }
}

/// The query of `GET /_keys`: `prefix`, `match`, `limit` (1–1000, default 100), `cursor`.
pub fn scan_args(
    prefix: Option<&str>,
    pattern: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<ScanArgs, StoreError> {
    let limit = match limit {
        None => DEFAULT_SCAN_LIMIT,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_SCAN_LIMIT).contains(&n) => n,
            _ => {
                return Err(StoreError::invalid(
                    "invalid_limit",
                    format!("limit must be an integer from 1 to {MAX_SCAN_LIMIT}"),
                ));
            }
        },
    };
    if let Some(pattern) = pattern
        && pattern.len() > MAX_PATTERN_BYTES
    {
        return Err(StoreError::invalid(
            "pattern_too_long",
            format!(
                "match is {} bytes; the limit is {MAX_PATTERN_BYTES}",
                pattern.len()
            ),
        ));
    }
    Ok(ScanArgs {
        prefix: prefix.unwrap_or_default().to_owned(),
        pattern: pattern.map(Glob::new),
        limit,
        after: cursor.map(cursor::decode).transpose()?.flatten(),
    })
}

/// A boolean query parameter: `true`/`1` or `false`/`0`.
pub fn query_flag(name: &str, raw: Option<&str>) -> Result<bool, StoreError> {
    match raw {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(StoreError::invalid(
            "invalid_parameter",
            format!("{name} must be true, false, 1 or 0"),
        )),
    }
}

fn reject_unknown(body: &Map<String, Value>, known: &[&str]) -> Result<(), StoreError> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(field) => Err(StoreError::invalid(
            "unknown_field",
            format!(
                "unknown field \"{field}\"; expected one of: {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// `ttl` (seconds) or `ttl_ms`; null counts as absent. Both given is an error.
fn take_ttl(body: &mut Map<String, Value>) -> Result<Option<Ttl>, StoreError> {
    let seconds = non_null(body.remove("ttl"));
    let millis = non_null(body.remove("ttl_ms"));
    match (seconds, millis) {
        (Some(_), Some(_)) => Err(StoreError::invalid(
            "invalid_ttl",
            "give ttl or ttl_ms, not both",
        )),
        (Some(s), None) => Ok(Some(Ttl::Seconds(positive_u64(&s, "ttl")?))),
        (None, Some(ms)) => Ok(Some(Ttl::Millis(positive_u64(&ms, "ttl_ms")?))),
        (None, None) => Ok(None),
    }
}

fn expires_at(now: i64, ttl: Ttl) -> Result<i64, StoreError> {
    expiry::expires_at_after(now, ttl)
        .map_err(|e| StoreError::invalid("invalid_ttl", e.to_string()))
}

fn non_null(v: Option<Value>) -> Option<Value> {
    v.filter(|v| !v.is_null())
}

fn take_bool(body: &mut Map<String, Value>, field: &str) -> Result<bool, StoreError> {
    match body.remove(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(StoreError::invalid(
            "invalid_option",
            format!("{field} must be true or false"),
        )),
    }
}

fn positive_u64(v: &Value, field: &str) -> Result<u64, StoreError> {
    match v.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(StoreError::invalid(
            if field.starts_with("ttl") {
                "invalid_ttl"
            } else {
                "invalid_option"
            },
            format!("{field} must be a positive integer"),
        )),
    }
}

fn positive_i64(v: &Value, field: &str) -> Result<i64, StoreError> {
    let n = positive_u64(v, field)?;
    i64::try_from(n)
        .map_err(|_| StoreError::invalid("invalid_option", format!("{field} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_000_000;

    fn obj(v: Value) -> Map<String, Value> {
        body_object(Some(v)).expect("object")
    }

    fn set(v: Value) -> Result<SetArgs, StoreError> {
        SetArgs::from_json(obj(v), NOW)
    }

    #[test]
    fn body_parsing() {
        assert_eq!(parse_body(b"").ok(), Some(None));
        assert_eq!(parse_body(br#"{"a":1}"#).ok(), Some(Some(json!({"a": 1}))));
        for bad in [&b"{"[..], b"{\"a\":1} x", b"nope", b"\xff", b"  \n", b"\t"] {
            assert_eq!(parse_body(bad).map_err(|e| e.code()), Err("invalid_json"));
        }
        assert!(body_object(Some(json!([1]))).is_err());
    }

    #[test]
    fn nesting_limit_is_128_levels() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_body(nested(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert!(parse_body(nested(MAX_JSON_DEPTH + 1).as_bytes()).is_err());
        assert!(parse_body(nested(100_000).as_bytes()).is_err());
        // Brackets inside strings do not count.
        let in_string = format!("{{\"v\": \"{}\"}}", "[".repeat(1000));
        assert!(parse_body(in_string.as_bytes()).is_ok());
        assert_eq!(nesting_depth(br#"{"a":"\"[[[", "b":[1]}"#), 2);
    }

    #[test]
    fn set_defaults_and_ttls() {
        let args = set(json!({"value": {"a": [1, 2]}})).expect("valid");
        assert_eq!(args.value, r#"{"a":[1,2]}"#);
        assert_eq!(args.expiry, SetExpiry::Persist);
        assert_eq!(
            set(json!({"value": null})).map(|a| a.value).ok().as_deref(),
            Some("null")
        );
        assert_eq!(
            set(json!({"value": 1, "ttl": 60})).map(|a| a.expiry).ok(),
            Some(SetExpiry::At(NOW + 60_000))
        );
        assert_eq!(
            set(json!({"value": 1, "ttl_ms": 5})).map(|a| a.expiry).ok(),
            Some(SetExpiry::At(NOW + 5))
        );
        assert_eq!(
            set(json!({"value": 1, "ttl": null})).map(|a| a.expiry).ok(),
            Some(SetExpiry::Persist)
        );
        assert_eq!(
            set(json!({"value": 1, "keep_ttl": true}))
                .map(|a| a.expiry)
                .ok(),
            Some(SetExpiry::Keep)
        );
    }

    #[test]
    fn set_rejects_bad_input() {
        for (body, code) in [
            (json!({}), "missing_value"),
            (json!({"val": 1}), "unknown_field"),
            (json!({"value": 1, "ttl": 0}), "invalid_ttl"),
            (json!({"value": 1, "ttl": -5}), "invalid_ttl"),
            (json!({"value": 1, "ttl": 1.5}), "invalid_ttl"),
            (json!({"value": 1, "ttl": "60"}), "invalid_ttl"),
            (json!({"value": 1, "ttl": 1, "ttl_ms": 1}), "invalid_ttl"),
            (
                json!({"value": 1, "ttl": 1, "keep_ttl": true}),
                "invalid_ttl",
            ),
            (json!({"value": 1, "ttl": u64::MAX}), "invalid_ttl"),
            (
                json!({"value": 1, "ttl": 300_000_000_000u64}),
                "invalid_ttl",
            ),
            (
                json!({"value": 1, "nx": true, "xx": true}),
                "invalid_option",
            ),
            (json!({"value": 1, "nx": "yes"}), "invalid_option"),
            (json!({"value": 1, "if_version": 0}), "invalid_option"),
        ] {
            assert_eq!(set(body.clone()).map_err(|e| e.code()), Err(code), "{body}");
        }
    }

    #[test]
    fn expiry_patch_bodies() {
        let exp = |v: Value| expiry_from_json(obj(v), NOW);
        assert_eq!(exp(json!({"ttl": 10})), Ok(Some(NOW + 10_000)));
        assert_eq!(exp(json!({"ttl_ms": 10})), Ok(Some(NOW + 10)));
        assert_eq!(exp(json!({"ttl": null})), Ok(None));
        assert!(exp(json!({})).is_err());
        assert!(exp(json!({"ttl": 0})).is_err());
        assert!(exp(json!({"value": 1})).is_err());
    }

    #[test]
    fn incr_arithmetic_and_parsing() {
        let incr = |v: Value, dec| IncrArgs::from_json(obj(v), dec, NOW);
        let by_one = incr(json!({}), false).expect("valid");
        assert_eq!((by_one.by, by_one.expires_at_if_created), (1, None));
        assert_eq!(by_one.apply(41), Ok(42));
        assert_eq!(
            incr(json!({"by": 5}), true).and_then(|a| a.apply(0)),
            Ok(-5)
        );
        assert_eq!(
            incr(json!({"by": -5}), false).and_then(|a| a.apply(0)),
            Ok(-5)
        );
        assert_eq!(by_one.apply(i64::MAX), Err(StoreError::Overflow));
        assert_eq!(
            incr(json!({"by": 1}), true).and_then(|a| a.apply(i64::MIN)),
            Err(StoreError::Overflow)
        );
        assert_eq!(
            incr(json!({"ttl": 2}), false).map(|a| a.expires_at_if_created),
            Ok(Some(NOW + 2000))
        );
        assert!(incr(json!({"by": 1.5}), false).is_err());
        assert!(incr(json!({"by": u64::MAX}), false).is_err());
        assert!(incr(json!({"by": "1"}), false).is_err());
    }

    #[test]
    fn scan_query_parameters() {
        let args = scan_args(Some("u:"), Some("u:*"), None, None).expect("valid");
        assert_eq!(
            (args.prefix.as_str(), args.limit, args.after),
            ("u:", 100, None)
        );
        assert_eq!(
            scan_args(None, None, Some("1000"), None).map(|a| a.limit),
            Ok(1000)
        );
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(scan_args(None, None, Some(bad), None).is_err(), "{bad}");
        }
        assert!(scan_args(None, None, None, Some("zz")).is_err());
        let longest = "*".repeat(MAX_PATTERN_BYTES);
        assert!(scan_args(None, Some(&longest), None, None).is_ok());
        let too_long = "*".repeat(MAX_PATTERN_BYTES + 1);
        assert_eq!(
            scan_args(None, Some(&too_long), None, None)
                .map(|_| ())
                .map_err(|e| e.code()),
            Err("pattern_too_long")
        );
        assert_eq!(query_flag("values", Some("1")), Ok(true));
        assert_eq!(query_flag("values", None), Ok(false));
        assert!(query_flag("values", Some("yes")).is_err());
    }
}
