//! Commands on keys whatever they hold: EXISTS, DEL, TTL and EXPIRE and their variants,
//! PERSIST, TYPE, RENAME, COPY, and the listings KEYS, SCAN and RANDOMKEY.

use super::call::Call;
use super::members::random;
use super::reply::{NOT_AN_INTEGER, Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use super::value::redis_int;
use crate::args::{ScanArgs, SetArgs, SetExpiry};
use crate::cursor;
use crate::error::StoreError;
use crate::expiry::{self, MAX_EXPIRES_AT_MS};
use crate::glob::Glob;
use crate::precondition::Precondition;
use crate::request::{MAX_PATTERN_BYTES, MAX_SCAN_LIMIT};
use crate::store::{Lookup, Tx};

/// The most keys KEYS answers; beyond, it asks for SCAN (Redis has no limit).
pub const MAX_KEYS_REPLY: usize = 100_000;

/// SCAN's page size when COUNT is not given (as Redis's).
const DEFAULT_SCAN_COUNT: usize = 10;

/// EXISTS and TOUCH: how many of the keys are live (a key named twice counts twice).
pub(super) fn exists(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let mut found = 0;
    for key in &call.args {
        if src.row(key)?.is_some() {
            found += 1;
        }
    }
    Ok(Reply::Int(found))
}

pub(super) fn ttl(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    remaining(src, call.args[0], false)
}

pub(super) fn pttl(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    remaining(src, call.args[0], true)
}

fn remaining(src: &mut dyn Source, key: &str, millis: bool) -> Result<Reply, StoreError> {
    let now = src.now();
    Ok(Reply::Int(match src.row(key)? {
        None => -2,
        Some(row) if millis => expiry::ttl_remaining_ms(row.expires_at, now),
        Some(row) => match row.expires_at {
            None => -1,
            // Redis rounds TTL to the nearest second.
            Some(_) => expiry::ttl_remaining_secs(row.expires_at, now),
        },
    }))
}

pub(super) fn type_of(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(Reply::Str(
        src.row(call.args[0])?
            .map_or_else(|| "none".to_owned(), |row| row.kind),
    ))
}

/// DEL and UNLINK: how many of the keys were live.
pub(super) fn del(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let mut deleted = 0;
    for key in &call.args {
        if let Lookup::Live(_) = tx.delete(key, &Precondition::default())? {
            deleted += 1;
        }
    }
    Ok(Reply::Int(deleted))
}

/// EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT with NX, XX, GT and LT.
pub(super) fn expire(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, when, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        match option.to_ascii_lowercase().as_str() {
            "nx" => nx = true,
            "xx" => xx = true,
            "gt" => gt = true,
            "lt" => lt = true,
            _ => return Ok(Reply::Error(format!("ERR Unsupported option {option}"))),
        }
    }
    if nx && (xx || gt || lt) {
        return Ok(error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Ok(error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let Some(n) = redis_int(when) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let now = tx.now();
    let at = match call.name {
        "expire" => n.checked_mul(1000).and_then(|ms| now.checked_add(ms)),
        "pexpire" => now.checked_add(n),
        "expireat" => n.checked_mul(1000),
        _ => Some(n),
    };
    let Some(at) = at.filter(|at| *at <= MAX_EXPIRES_AT_MS) else {
        return Ok(Reply::Error(format!(
            "ERR invalid expire time in '{}' command",
            call.name
        )));
    };
    let Some(row) = tx.get(key)? else {
        return Ok(Reply::Int(0));
    };
    // GT and LT take "no expiry" as an infinite TTL.
    let refused = match row.expires_at {
        None => xx || gt,
        Some(current) => nx || (gt && at <= current) || (lt && at >= current),
    };
    if refused {
        return Ok(Reply::Int(0));
    }
    if at <= now {
        // A time in the past deletes the key, as in Redis.
        tx.delete(key, &Precondition::default())?;
    } else {
        tx.expire(key, Some(at), &Precondition::default())?;
    }
    Ok(Reply::Int(1))
}

pub(super) fn persist(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let key = call.args[0];
    match tx.get(key)? {
        Some(row) if row.expires_at.is_some() => {
            tx.expire(key, None, &Precondition::default())?;
            Ok(Reply::Int(1))
        }
        _ => Ok(Reply::Int(0)),
    }
}

pub(super) fn rename(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    move_key(tx, call.args[0], call.args[1], false)
}

pub(super) fn renamenx(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    move_key(tx, call.args[0], call.args[1], true)
}

/// RENAME / RENAMENX: the value (a collection's members too) and its expiry move to `to`.
fn move_key(tx: &mut Tx<'_>, from: &str, to: &str, nx: bool) -> Result<Reply, StoreError> {
    if tx.get(from)?.is_none() {
        return Ok(error("ERR no such key"));
    }
    let done = if nx { Reply::Int(1) } else { Reply::Ok };
    if from == to {
        return Ok(if nx { Reply::Int(0) } else { Reply::Ok });
    }
    if nx && tx.get(to)?.is_some() {
        return Ok(Reply::Int(0));
    }
    tx.rename(from, to)?;
    Ok(done)
}

/// COPY source destination [DB 0] [REPLACE]: the value and its expiry.
pub(super) fn copy(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [from, to, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let mut replace = false;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match option.to_ascii_lowercase().as_str() {
            "replace" => replace = true,
            "db" => match rest.next().map(|db| redis_int(db)) {
                Some(Some(0)) => {}
                Some(Some(_)) => return Ok(error("ERR DB index is out of range")),
                Some(None) => return Ok(error(NOT_AN_INTEGER)),
                None => return Ok(error(SYNTAX)),
            },
            _ => return Ok(error(SYNTAX)),
        }
    }
    if from == to {
        return Ok(Reply::Int(0));
    }
    let Some(row) = tx.get(from)? else {
        return Ok(Reply::Int(0));
    };
    if !replace && tx.get(to)?.is_some() {
        return Ok(Reply::Int(0));
    }
    if row.is_string() {
        put_copy(tx, to, &row.value, row.expires_at)?;
    } else {
        tx.copy_collection(&row, to)?;
    }
    Ok(Reply::Int(1))
}

/// Writes the stored JSON text `value` under `key`, expiring at `expires_at`.
fn put_copy(
    tx: &mut Tx<'_>,
    key: &str,
    value: &str,
    expires_at: Option<i64>,
) -> Result<(), StoreError> {
    let args = SetArgs {
        value: value.to_owned(),
        expiry: expires_at.map_or(SetExpiry::Persist, SetExpiry::At),
        precondition: Precondition::default(),
    };
    tx.set(key, &args).map(|_| ())
}

/// The characters of `pattern` before its first special one: every key it matches starts
/// with them, so the listing can start there.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '\\'))
        .collect()
}

/// Where a listing of `pattern` looks: under its literal prefix when that is in reach (no
/// scope, or inside one of the scope's prefixes), else within the scope's prefixes.
fn listing_scope<'w>(
    pattern: Option<&str>,
    within: Option<&'w [String]>,
) -> (Option<&'w [String]>, String) {
    let prefix = pattern.map(literal_prefix).unwrap_or_default();
    match within {
        Some(prefixes) if !prefixes.iter().any(|p| prefix.starts_with(p.as_str())) => {
            (Some(prefixes), String::new())
        }
        _ => (None, prefix),
    }
}

fn pattern_checked(pattern: &str) -> Result<Glob, Reply> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(Reply::Error(format!(
            "ERR the pattern is {} bytes; the limit is {MAX_PATTERN_BYTES}",
            pattern.len()
        )));
    }
    Ok(Glob::new(pattern))
}

pub(super) fn keys(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let pattern = call.args[0];
    let glob = match pattern_checked(pattern) {
        Ok(glob) => glob,
        Err(reply) => return Ok(reply),
    };
    let (within, prefix) = listing_scope(Some(pattern), call.within);
    let mut found = Vec::new();
    let mut after = None;
    loop {
        call.deadline.check()?;
        let page = src.page(
            within,
            &ScanArgs {
                prefix: prefix.clone(),
                pattern: Some(glob.clone()),
                limit: MAX_SCAN_LIMIT,
                after,
            },
        )?;
        for row in page.rows {
            found.push(call.bulk(row.key)?);
        }
        if found.len() > MAX_KEYS_REPLY {
            return Ok(Reply::Error(format!(
                "ERR KEYS matches more than {MAX_KEYS_REPLY} keys: use SCAN"
            )));
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(Reply::Array(found)),
        }
    }
}

pub(super) fn scan(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [cursor, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Ok(after) = cursor::decode_decimal(cursor) else {
        return Ok(error("ERR invalid cursor"));
    };
    let (mut pattern, mut count, mut kind, mut with_type) = (None, DEFAULT_SCAN_COUNT, None, false);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        // Upstash's WITHTYPE: each key followed by its type.
        if option.eq_ignore_ascii_case("withtype") {
            with_type = true;
            continue;
        }
        let Some(arg) = rest.next() else {
            return Ok(error(SYNTAX));
        };
        match option.to_ascii_lowercase().as_str() {
            "match" => pattern = Some(*arg),
            "count" => match redis_int(arg) {
                Some(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => return Ok(error(SYNTAX)),
                None => return Ok(error(NOT_AN_INTEGER)),
            },
            "type" => kind = Some(arg.to_ascii_lowercase()),
            _ => return Ok(error(SYNTAX)),
        }
    }
    let glob = match pattern.map(pattern_checked).transpose() {
        Ok(glob) => glob,
        Err(reply) => return Ok(reply),
    };
    let count = count.min(MAX_SCAN_LIMIT);
    let (within, prefix) = listing_scope(pattern, call.within);
    // One more than asked: a page that ends the listing says so ("0") at once.
    let page = src.page(
        within,
        &ScanArgs {
            prefix,
            pattern: glob,
            limit: count + 1,
            after,
        },
    )?;
    let mut rows = page.rows;
    let next = if rows.len() > count {
        rows.truncate(count);
        rows.last().map(|row| row.key.clone())
    } else {
        page.next_after
    };
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        if kind.as_deref().is_some_and(|kind| kind != row.kind) {
            continue;
        }
        keys.push(Reply::Str(row.key));
        if with_type {
            keys.push(Reply::Str(row.kind));
        }
    }
    Ok(Reply::Array(vec![
        Reply::Str(next.map_or_else(|| "0".to_owned(), |key| cursor::encode_decimal(&key))),
        Reply::Array(keys),
    ]))
}

/// RANDOMKEY: a key from the page of keys after a random point of the key space (so not
/// uniform: a key after a gap in the key space is picked more often), or nil.
pub(super) fn random_key(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    const PAGE: usize = 64;
    let r = random();
    // A printable ASCII string of four characters.
    let point: String = (0..4)
        .map(|i| char::from(b' ' + ((r >> (i * 8)) % 95) as u8))
        .collect();
    let mut page = src.page(
        call.within,
        &ScanArgs {
            prefix: String::new(),
            pattern: None,
            limit: PAGE,
            after: Some(point),
        },
    )?;
    if page.rows.is_empty() {
        page = src.page(
            call.within,
            &ScanArgs {
                prefix: String::new(),
                pattern: None,
                limit: PAGE,
                after: None,
            },
        )?;
    }
    let n = page.rows.len();
    if n == 0 {
        return Ok(Reply::Nil);
    }
    let pick = usize::try_from((r >> 32) % n as u64).unwrap_or(0);
    Ok(page
        .rows
        .into_iter()
        .nth(pick)
        .map_or(Reply::Nil, |row| Reply::Str(row.key)))
}
