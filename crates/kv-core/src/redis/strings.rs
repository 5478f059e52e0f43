//! String commands: GET, SET and its variants, MGET/MSET, GETRANGE/SETRANGE, APPEND, STRLEN,
//! INCR and its variants.

use super::call::Call;
use super::reply::{NOT_A_FLOAT, NOT_AN_INTEGER, Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use super::value::{escaped_len, format_float, parse_float, redis_int, redis_string, stored_json};
use crate::args::{IncrArgs, SetArgs, SetExpiry, counter_value};
use crate::error::StoreError;
use crate::expiry::MAX_EXPIRES_AT_MS;
use crate::precondition::Precondition;
use crate::store::Tx;

/// The longest string APPEND and SETRANGE make, counted as stored (a JSON string: a zero byte
/// takes 6 bytes as `\u0000`). Redis allows 512 MB; kvstore holds values whole in memory
/// while it writes them, and copies them into the change log.
pub const MAX_STRING_BYTES: usize = 16 * 1024 * 1024;

const TOO_LONG: &str =
    "ERR string exceeds maximum allowed size (16 MiB as stored in kvstore: a zero byte counts 6)";
const INFINITE_SUM: &str = "ERR increment would produce NaN or Infinity";

/// The value of `key` as a bulk string, or nil (WRONGTYPE for a collection).
pub(super) fn get_value(
    src: &mut dyn Source,
    call: &Call<'_>,
    key: &str,
) -> Result<Reply, StoreError> {
    match string_of(src, key)? {
        Some(text) => call.bulk(text),
        None => Ok(Reply::Nil),
    }
}

/// The Redis string `key` holds, if any: [`StoreError::WrongType`] when it holds a collection.
fn string_of(src: &mut dyn Source, key: &str) -> Result<Option<String>, StoreError> {
    match src.row(key)? {
        Some(row) if row.is_string() => Ok(Some(redis_string(&row.value))),
        Some(_) => Err(StoreError::WrongType),
        None => Ok(None),
    }
}

pub(super) fn get(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    get_value(src, call, call.args[0])
}

/// MGET: a key that holds a collection answers nil (as in Redis).
pub(super) fn mget(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    call.args
        .iter()
        .map(|key| match get_value(src, call, key) {
            Err(StoreError::WrongType) => Ok(Reply::Nil),
            other => other,
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Reply::Array)
}

pub(super) fn getrange(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, start, end] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let (Some(start), Some(end)) = (redis_int(start), redis_int(end)) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let text = string_of(src, key)?.unwrap_or_default();
    Ok(match byte_range(text.len(), start, end) {
        None => Reply::Str(String::new()),
        Some((from, to)) => match text.get(from..to) {
            Some(part) => call.bulk(part.to_owned())?,
            None => {
                error("ERR the range would split a UTF-8 character (kvstore values are UTF-8 text)")
            }
        },
    })
}

pub(super) fn strlen(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(Reply::Int(
        string_of(src, call.args[0])?.map_or(0, |text| text.len() as i64),
    ))
}

/// GETRANGE's byte range `[from, to)` of a string of `len` bytes, by Redis's rules (negative
/// indexes count from the end; `end` is inclusive and clamped), or `None`: empty.
pub fn byte_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some((usize::try_from(start).ok()?, usize::try_from(end + 1).ok()?))
}

pub(super) fn set(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, value, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    set_as(tx, call, key, value, options)
}

pub(super) fn setnx(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let reply = set_as(tx, call, call.args[0], call.args[1], &["nx"])?;
    Ok(Reply::Int(i64::from(reply == Reply::Ok)))
}

pub(super) fn setex(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, seconds, value] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    set_as(tx, call, key, value, &["ex", seconds])
}

pub(super) fn psetex(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ms, value] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    set_as(tx, call, key, value, &["px", ms])
}

pub(super) fn mset(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    if !call.args.len().is_multiple_of(2) {
        return Ok(wrong_args(call.name));
    }
    for pair in call.args.chunks(2) {
        set_as(tx, call, pair[0], pair[1], &[])?;
    }
    Ok(Reply::Ok)
}

pub(super) fn msetnx(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    if !call.args.len().is_multiple_of(2) {
        return Ok(wrong_args(call.name));
    }
    for pair in call.args.chunks(2) {
        if tx.get(pair[0])?.is_some() {
            return Ok(Reply::Int(0));
        }
    }
    for pair in call.args.chunks(2) {
        set_as(tx, call, pair[0], pair[1], &[])?;
    }
    Ok(Reply::Int(1))
}

pub(super) fn getdel(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let key = call.args[0];
    let old = get_value(tx, call, key)?;
    if old != Reply::Nil {
        tx.delete(key, &Precondition::default())?;
    }
    Ok(old)
}

pub(super) fn getset(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, value) = (call.args[0], call.args[1]);
    let old = get_value(tx, call, key)?;
    set_as(tx, call, key, value, &[])?;
    Ok(old)
}

pub(super) fn append(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, value) = (call.args[0], call.args[1]);
    let old = string_of(tx, key)?;
    let mut text = old.unwrap_or_default();
    if escaped_len(&text) + escaped_len(value) > MAX_STRING_BYTES {
        return Ok(error(TOO_LONG));
    }
    text.push_str(value);
    set_as(tx, call, key, &text, &["keepttl"])?;
    Ok(Reply::Int(text.len() as i64))
}

/// An expiry option's time (`ex`, `px`, `exat`, `pxat` and its argument) as unix ms, or
/// Redis's error for `command`.
fn expiry_at(now: i64, option: &str, n: &str, command: &str) -> Result<i64, Reply> {
    let invalid = || Reply::Error(format!("ERR invalid expire time in '{command}' command"));
    let n = redis_int(n).ok_or_else(|| error(NOT_AN_INTEGER))?;
    if n <= 0 {
        return Err(invalid());
    }
    let at = match option {
        "ex" => n.checked_mul(1000).and_then(|ms| now.checked_add(ms)),
        "px" => now.checked_add(n),
        "exat" => n.checked_mul(1000),
        _ => Some(n),
    };
    at.filter(|at| *at <= MAX_EXPIRES_AT_MS).ok_or_else(invalid)
}

/// SET `key` to the Redis string `value` with SET's `options`, its errors worded for the
/// command of `call` (SETEX and PSETEX are SETs too).
fn set_as(
    tx: &mut Tx<'_>,
    call: &Call<'_>,
    key: &str,
    value: &str,
    options: &[&str],
) -> Result<Reply, StoreError> {
    let now = tx.now();
    let (mut nx, mut xx, mut get_old, mut expiry) = (false, false, false, None);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let option = option.to_ascii_lowercase();
        let this = match option.as_str() {
            "nx" => {
                nx = true;
                continue;
            }
            "xx" => {
                xx = true;
                continue;
            }
            "get" => {
                get_old = true;
                continue;
            }
            "keepttl" => SetExpiry::Keep,
            "ex" | "px" | "exat" | "pxat" => {
                let Some(n) = rest.next() else {
                    return Ok(error(SYNTAX));
                };
                match expiry_at(now, &option, n, call.name) {
                    Ok(at) => SetExpiry::At(at),
                    Err(reply) => return Ok(reply),
                }
            }
            _ => return Ok(error(SYNTAX)),
        };
        // One expiry option at most, as in Redis.
        if expiry.replace(this).is_some() {
            return Ok(error(SYNTAX));
        }
    }
    if nx && xx {
        return Ok(error(SYNTAX));
    }
    let old = if get_old {
        Some(get_value(tx, call, key)?)
    } else {
        None
    };
    let args = SetArgs {
        value: stored_json(value),
        expiry: expiry.unwrap_or(SetExpiry::Persist),
        precondition: Precondition {
            nx,
            xx,
            ..Precondition::default()
        },
    };
    match tx.set(key, &args) {
        Ok(_) => Ok(old.unwrap_or(Reply::Ok)),
        Err(StoreError::PreconditionFailed(_)) => Ok(old.unwrap_or(Reply::Nil)),
        Err(err) => Err(err),
    }
}

pub(super) fn getex(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let now = tx.now();
    // `None`: leave the expiry; `Some(None)`: PERSIST; `Some(Some(at))`: expire at.
    let mut change: Option<Option<i64>> = None;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let option = option.to_ascii_lowercase();
        let this = match option.as_str() {
            "persist" => None,
            "ex" | "px" | "exat" | "pxat" => {
                let Some(n) = rest.next() else {
                    return Ok(error(SYNTAX));
                };
                match expiry_at(now, &option, n, "getex") {
                    Ok(at) => Some(at),
                    Err(reply) => return Ok(reply),
                }
            }
            _ => return Ok(error(SYNTAX)),
        };
        if change.replace(this).is_some() {
            return Ok(error(SYNTAX));
        }
    }
    let Some(row) = tx.get(key)? else {
        return Ok(Reply::Nil);
    };
    if !row.is_string() {
        return Err(StoreError::WrongType);
    }
    let value = Reply::Str(redis_string(&row.value));
    match change {
        None => {}
        Some(None) if row.expires_at.is_none() => {}
        // A time in the past (EXAT, PXAT) deletes the key, as in Redis.
        Some(Some(at)) if at <= now => {
            tx.delete(key, &Precondition::default())?;
        }
        Some(at) => {
            tx.expire(key, at, &Precondition::default())?;
        }
    }
    Ok(value)
}

pub(super) fn setrange(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, offset, value] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(offset) = redis_int(offset) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let Ok(offset) = usize::try_from(offset) else {
        return Ok(error("ERR offset is out of range"));
    };
    if offset.saturating_add(value.len()) > MAX_STRING_BYTES {
        return Ok(error(TOO_LONG));
    }
    let old = string_of(tx, key)?;
    let old = old.unwrap_or_default();
    // As stored: the old bytes kept, the zero bytes padded in (6 each), the new ones.
    let padding = offset.saturating_sub(old.len());
    let kept = old
        .get(..offset.min(old.len()))
        .map_or(old.len(), escaped_len)
        + old.get(offset + value.len()..).map_or(0, escaped_len);
    if kept + 6 * padding + escaped_len(value) > MAX_STRING_BYTES {
        return Ok(error(TOO_LONG));
    }
    if value.is_empty() {
        // Nothing changes, and a missing key is not created (as in Redis).
        return Ok(Reply::Int(old.len() as i64));
    }
    let Some(text) = splice(&old, offset, value) else {
        return Ok(error(
            "ERR the offset would split a UTF-8 character (kvstore values are UTF-8 text)",
        ));
    };
    let len = text.len() as i64;
    set_as(tx, call, key, &text, &["keepttl"])?;
    Ok(Reply::Int(len))
}

/// SETRANGE's result: `old` with `value` written over its bytes from `offset`, padded with
/// zero bytes when `old` is shorter; `None` when that would cut a UTF-8 character of `old`.
pub fn splice(old: &str, offset: usize, value: &str) -> Option<String> {
    let end = offset.checked_add(value.len())?;
    let mut text = String::with_capacity(old.len().max(end));
    if offset <= old.len() {
        text.push_str(old.get(..offset)?);
    } else {
        text.push_str(old);
        text.extend(std::iter::repeat_n('\0', offset - old.len()));
    }
    text.push_str(value);
    if end < old.len() {
        text.push_str(old.get(end..)?);
    }
    Some(text)
}

pub(super) fn incr(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    incr_by(tx, call, 1, false)
}

pub(super) fn decr(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    incr_by(tx, call, 1, true)
}

pub(super) fn incrby(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    match redis_int(call.args[1]) {
        Some(by) => incr_by(tx, call, by, false),
        None => Ok(error(NOT_AN_INTEGER)),
    }
}

pub(super) fn decrby(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    match redis_int(call.args[1]) {
        // Its negation does not fit (Redis 7's text).
        Some(i64::MIN) => Ok(error("ERR decrement would overflow")),
        Some(by) => incr_by(tx, call, by, true),
        None => Ok(error(NOT_AN_INTEGER)),
    }
}

fn incr_by(
    tx: &mut Tx<'_>,
    call: &Call<'_>,
    by: i64,
    decrement: bool,
) -> Result<Reply, StoreError> {
    let key = call.args[0];
    let args = IncrArgs {
        by,
        decrement,
        expires_at_if_created: None,
    };
    match tx.incr(key, &args, &Precondition::default()) {
        Ok(row) => Ok(Reply::Int(counter_value(&row.value)?)),
        // The REST API's counters are JSON integers; Redis's are strings that read as one,
        // such as a JSON string "5" set through the REST API. Or the sum overflowed.
        Err(StoreError::NotAnInteger | StoreError::Overflow) => {
            let current = string_of(tx, key)?;
            let Some(n) = current.as_deref().and_then(redis_int) else {
                return Ok(error(NOT_AN_INTEGER));
            };
            let delta = if decrement {
                by.checked_neg()
            } else {
                Some(by)
            };
            let Some(sum) = delta.and_then(|d| n.checked_add(d)) else {
                return Ok(error("ERR increment or decrement would overflow"));
            };
            set_as(tx, call, key, &sum.to_string(), &["keepttl"])?;
            Ok(Reply::Int(sum))
        }
        Err(err) => Err(err),
    }
}

pub(super) fn incrbyfloat(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, by) = (call.args[0], call.args[1]);
    // The stored value is read first, as in Redis; an infinite one is a float too, whose sum
    // is then refused.
    let current = match string_of(tx, key)? {
        None => Some(0.0),
        Some(text) => parse_float(&text),
    };
    let (Some(current), Some(by)) = (current, parse_float(by)) else {
        return Ok(error(NOT_A_FLOAT));
    };
    let sum = current + by;
    if !sum.is_finite() {
        return Ok(error(INFINITE_SUM));
    }
    let text = format_float(sum);
    // Stored as the JSON number it prints as (see `stored_json`): `GET /<key>` shows a number.
    set_as(tx, call, key, &text, &["keepttl"])?;
    Ok(Reply::Str(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_indexes_as_in_redis() {
        // "This is a string" (16 bytes), Redis's documented examples.
        let len = "This is a string".len();
        assert_eq!(byte_range(len, 0, 3), Some((0, 4)));
        assert_eq!(byte_range(len, -3, -1), Some((13, 16)));
        assert_eq!(byte_range(len, 0, -1), Some((0, 16)));
        assert_eq!(byte_range(len, 10, 100), Some((10, 16)));
        assert_eq!(byte_range(len, -100, 2), Some((0, 3)));
        assert_eq!(byte_range(len, 5, 2), None);
        assert_eq!(byte_range(len, -1, -5), None);
        assert_eq!(byte_range(len, 20, 30), None);
        assert_eq!(byte_range(0, 0, -1), None);
        assert_eq!(byte_range(len, i64::MIN, i64::MAX), Some((0, 16)));
    }

    #[test]
    fn setrange_splices_bytes_and_keeps_utf8_whole() {
        assert_eq!(
            splice("Hello World", 6, "Redis").as_deref(),
            Some("Hello Redis")
        );
        assert_eq!(splice("", 3, "x").as_deref(), Some("\0\0\0x"));
        assert_eq!(splice("ab", 1, "").as_deref(), Some("ab"));
        assert_eq!(splice("héllo", 1, "e").as_deref(), None, "cuts é in two");
        assert_eq!(splice("héllo", 1, "éé").as_deref(), Some("hééo"));
        assert_eq!(splice("héllo", 3, "L").as_deref(), Some("héLlo"));
    }
}
