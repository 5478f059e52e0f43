//! Hash commands: HSET, HSETNX, HMSET, HGET, HMGET, HGETALL, HKEYS, HVALS, HLEN, HEXISTS,
//! HSTRLEN, HDEL, HINCRBY, HINCRBYFLOAT, HRANDFIELD, HSCAN. Fields and values are Redis
//! strings, stored as they are; every single-field command is one primary-key statement.

use super::call::Call;
use super::members::{
    all_fields, check_member, coll_of, count_arg, for_write, length, next_cursor, random_offsets,
    read_collection, scan_options,
};
use super::reply::{NOT_A_FLOAT, Reply, error, wrong_args};
use super::source::Source;
use super::value::{format_float, parse_float, redis_int};
use crate::collections;
use crate::error::StoreError;
use crate::model::HASH;
use crate::store::Tx;

/// HSET key field value [field value …]: how many fields are new. HMSET: OK.
pub(super) fn hset(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref pairs @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Ok(wrong_args(call.name));
    }
    for text in pairs {
        if let Err(reply) = check_member(text) {
            return Ok(reply);
        }
    }
    let (row, coll) = for_write(tx, key, HASH)?;
    let mut added = 0;
    for pair in pairs.chunks(2) {
        if collections::hash_put(tx.conn(), coll, pair[0], pair[1])? {
            added += 1;
        }
    }
    let total = length(&row) + added;
    tx.collection_written(row, total, call.name)?;
    Ok(if call.name == "hmset" {
        Reply::Ok
    } else {
        Reply::Int(added)
    })
}

/// HSETNX key field value: 1 if it set the field, 0 if the field was there.
pub(super) fn hsetnx(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, field, value] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    for text in [field, value] {
        if let Err(reply) = check_member(text) {
            return Ok(reply);
        }
    }
    let (row, coll) = for_write(tx, key, HASH)?;
    if collections::hash_get(tx.conn(), coll, field)?.is_some() {
        return Ok(Reply::Int(0));
    }
    collections::hash_put(tx.conn(), coll, field, value)?;
    let total = length(&row) + 1;
    tx.collection_written(row, total, call.name)?;
    Ok(Reply::Int(1))
}

/// HDEL key field [field …]: how many were removed.
pub(super) fn hdel(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref fields @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(row) = tx.collection(key, HASH)? else {
        return Ok(Reply::Int(0));
    };
    let coll = row.coll.unwrap_or_default();
    let mut removed = 0;
    for field in fields {
        if collections::hash_remove(tx.conn(), coll, field)? {
            removed += 1;
        }
    }
    if removed > 0 {
        let total = length(&row) - removed;
        tx.collection_written(row, total, call.name)?;
    }
    Ok(Reply::Int(removed))
}

/// HINCRBY key field increment.
pub(super) fn hincrby(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, field, by] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(by) = redis_int(by) else {
        return Ok(error("ERR value is not an integer or out of range"));
    };
    if let Err(reply) = check_member(field) {
        return Ok(reply);
    }
    let (row, coll) = for_write(tx, key, HASH)?;
    let current = collections::hash_get(tx.conn(), coll, field)?;
    let Some(n) = current.as_deref().map_or(Some(0), redis_int) else {
        return Ok(error("ERR hash value is not an integer"));
    };
    let Some(sum) = n.checked_add(by) else {
        return Ok(error("ERR increment or decrement would overflow"));
    };
    let added = collections::hash_put(tx.conn(), coll, field, &sum.to_string())?;
    let total = length(&row) + i64::from(added);
    tx.collection_written(row, total, call.name)?;
    Ok(Reply::Int(sum))
}

/// HINCRBYFLOAT key field increment.
pub(super) fn hincrbyfloat(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, field, by] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(by) = parse_float(by) else {
        return Ok(error(NOT_A_FLOAT));
    };
    if !by.is_finite() {
        // Redis 7 checks the increment first here (INCRBYFLOAT words it otherwise).
        return Ok(error("ERR value is NaN or Infinity"));
    }
    if let Err(reply) = check_member(field) {
        return Ok(reply);
    }
    let (row, coll) = for_write(tx, key, HASH)?;
    let current = collections::hash_get(tx.conn(), coll, field)?;
    let Some(n) = current.as_deref().map_or(Some(0.0), parse_float) else {
        return Ok(error("ERR hash value is not a float"));
    };
    let sum = n + by;
    if !sum.is_finite() {
        return Ok(error("ERR increment would produce NaN or Infinity"));
    }
    let text = format_float(sum);
    let added = collections::hash_put(tx.conn(), coll, field, &text)?;
    let total = length(&row) + i64::from(added);
    tx.collection_written(row, total, call.name)?;
    Ok(Reply::Str(text))
}

/// The hash of `key` for a read command, and its collection id.
fn for_read(
    src: &mut dyn Source,
    key: &str,
) -> Result<Option<(crate::model::StoredValue, i64)>, StoreError> {
    match read_collection(src, key, HASH)? {
        Some(row) => {
            let coll = coll_of(&row)?;
            Ok(Some((row, coll)))
        }
        None => Ok(None),
    }
}

/// HGET key field.
pub(super) fn hget(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some((_, coll)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Nil);
    };
    match collections::hash_get(src.members()?, coll, call.args[1])? {
        Some(value) => call.bulk(value),
        None => Ok(Reply::Nil),
    }
}

/// HMGET key field [field …].
pub(super) fn hmget(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref fields @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let coll = for_read(src, key)?.map(|(_, coll)| coll);
    let mut replies = Vec::with_capacity(fields.len());
    for field in fields {
        let value = match coll {
            Some(coll) => collections::hash_get(src.members()?, coll, field)?,
            None => None,
        };
        replies.push(match value {
            Some(value) => call.bulk(value)?,
            None => Reply::Nil,
        });
    }
    Ok(Reply::Array(replies))
}

/// HGETALL, HKEYS, HVALS: the whole hash in field order.
pub(super) fn hgetall(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some((_, coll)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let fields = all_fields(src, call, coll)?;
    let replies = match call.name {
        "hkeys" => fields.into_iter().map(|(f, _)| Reply::Str(f)).collect(),
        "hvals" => fields.into_iter().map(|(_, v)| Reply::Str(v)).collect(),
        _ => fields
            .into_iter()
            .flat_map(|(f, v)| [Reply::Str(f), Reply::Str(v)])
            .collect(),
    };
    Ok(Reply::Array(replies))
}

/// HLEN key.
pub(super) fn hlen(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(Reply::Int(
        for_read(src, call.args[0])?.map_or(0, |(row, _)| row.length.unwrap_or(0)),
    ))
}

/// HEXISTS key field.
pub(super) fn hexists(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some((_, coll)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Int(0));
    };
    let found = collections::hash_get(src.members()?, coll, call.args[1])?.is_some();
    Ok(Reply::Int(i64::from(found)))
}

/// HSTRLEN key field.
pub(super) fn hstrlen(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some((_, coll)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Int(0));
    };
    let value = collections::hash_get(src.members()?, coll, call.args[1])?;
    Ok(Reply::Int(value.map_or(0, |v| v.len() as i64)))
}

/// HRANDFIELD key [count [WITHVALUES]].
pub(super) fn hrandfield(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, count, with_values) = match call.args[..] {
        [key] => (key, None, false),
        [key, count] => (key, Some(count), false),
        [key, count, option] if option.eq_ignore_ascii_case("withvalues") => {
            (key, Some(count), true)
        }
        [_, _, _] => return Ok(error(super::reply::SYNTAX)),
        _ => return Ok(wrong_args(call.name)),
    };
    let count = match count.map(count_arg).transpose() {
        Ok(count) => count,
        Err(reply) => return Ok(reply),
    };
    let found = for_read(src, key)?;
    let Some((row, coll)) = found else {
        return Ok(if count.is_some() {
            Reply::Array(Vec::new())
        } else {
            Reply::Nil
        });
    };
    let length = row.length.unwrap_or(0);
    let offsets = random_offsets(length, count.unwrap_or(1));
    let mut picked = Vec::new();
    for offset in offsets {
        if let Some((field, value)) = collections::hash_field_at(src.members()?, coll, offset)? {
            call.budget.charge(field.len() + value.len())?;
            picked.push((field, value));
        }
    }
    if count.is_none() {
        return Ok(picked
            .into_iter()
            .next()
            .map_or(Reply::Nil, |(field, _)| Reply::Str(field)));
    }
    Ok(Reply::Array(
        picked
            .into_iter()
            .flat_map(|(field, value)| {
                let mut items = vec![Reply::Str(field)];
                if with_values {
                    items.push(Reply::Str(value));
                }
                items
            })
            .collect(),
    ))
}

/// HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES].
pub(super) fn hscan(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref rest @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let options = match scan_options(rest, true) {
        Ok(options) => options,
        Err(reply) => return Ok(reply),
    };
    let Some((_, coll)) = for_read(src, key)? else {
        return Ok(Reply::Array(vec![
            Reply::Str("0".into()),
            Reply::Array(Vec::new()),
        ]));
    };
    let limit = options.count as i64;
    let page = collections::hash_page(src.members()?, coll, options.after.as_deref(), limit)?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(|(field, _)| field.clone()))
        .flatten();
    let mut items = Vec::new();
    for (field, value) in page {
        if options
            .pattern
            .as_ref()
            .is_some_and(|glob| !glob.matches(&field))
        {
            continue;
        }
        call.budget.charge(field.len() + value.len())?;
        items.push(Reply::Str(field));
        if !options.no_values {
            items.push(Reply::Str(value));
        }
    }
    Ok(Reply::Array(vec![
        next_cursor(next.as_deref()),
        Reply::Array(items),
    ]))
}
