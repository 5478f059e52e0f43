//! Set commands: SADD, SREM, SCARD, SISMEMBER, SMISMEMBER, SMEMBERS, SRANDMEMBER, SPOP, SMOVE,
//! SINTER, SINTERCARD, SINTERSTORE, SUNION, SUNIONSTORE, SDIFF, SDIFFSTORE, SSCAN. Members are
//! Redis strings, in byte order; a single-member command is one primary-key statement.

use std::collections::BTreeSet;

use super::call::Call;
use super::members::{
    all_members, check_member, coll_of, count_arg, for_write, length, next_cursor, random_offsets,
    read_collection, scan_options,
};
use super::reply::{Reply, error, wrong_args};
use super::source::Source;
use super::value::redis_int;
use crate::collections;
use crate::error::StoreError;
use crate::model::SET;
use crate::store::Tx;

/// SADD key member [member …]: how many are new.
pub(super) fn sadd(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref members @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    for member in members {
        if let Err(reply) = check_member(member) {
            return Ok(reply);
        }
    }
    let (row, coll) = for_write(tx, key, SET)?;
    let mut added = 0;
    for member in members {
        if collections::set_add(tx.conn(), coll, member)? {
            added += 1;
        }
    }
    let total = length(&row) + added;
    if added > 0 || row.version == 0 {
        tx.collection_written(row, total, call.name)?;
    }
    Ok(Reply::Int(added))
}

/// SREM key member [member …]: how many were removed.
pub(super) fn srem(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref members @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(row) = tx.collection(key, SET)? else {
        return Ok(Reply::Int(0));
    };
    let coll = row.coll.unwrap_or_default();
    let mut removed = 0;
    for member in members {
        if collections::set_remove(tx.conn(), coll, member)? {
            removed += 1;
        }
    }
    if removed > 0 {
        let total = length(&row) - removed;
        tx.collection_written(row, total, call.name)?;
    }
    Ok(Reply::Int(removed))
}

/// SPOP key [count]: removes and answers random members.
pub(super) fn spop(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, count) = match call.args[..] {
        [key] => (key, None),
        [key, count] => match redis_int(count) {
            Some(n) if n >= 0 => (key, Some(n)),
            _ => return Ok(error("ERR value is out of range, must be positive")),
        },
        _ => return Ok(wrong_args(call.name)),
    };
    let Some(row) = tx.collection(key, SET)? else {
        return Ok(if count.is_some() {
            Reply::Array(Vec::new())
        } else {
            Reply::Nil
        });
    };
    let coll = row.coll.unwrap_or_default();
    let mut picked = Vec::new();
    for offset in random_offsets(length(&row), count.unwrap_or(1))
        .into_iter()
        .rev()
    {
        if let Some(member) = collections::set_member_at(tx.conn(), coll, offset)? {
            picked.push(member);
        }
    }
    for member in &picked {
        collections::set_remove(tx.conn(), coll, member)?;
    }
    if !picked.is_empty() {
        let total = length(&row) - picked.len() as i64;
        tx.collection_written(row, total, call.name)?;
    }
    Ok(match count {
        None => picked.pop().map_or(Reply::Nil, Reply::Str),
        Some(_) => Reply::Array(picked.into_iter().map(Reply::Str).collect()),
    })
}

/// SMOVE source destination member.
pub(super) fn smove(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [from, to, member] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(source) = tx.collection(from, SET)? else {
        // The destination's type is checked all the same (as in Redis).
        tx.collection(to, SET)?;
        return Ok(Reply::Int(0));
    };
    if from == to {
        let present =
            collections::set_contains(tx.conn(), source.coll.unwrap_or_default(), member)?;
        return Ok(Reply::Int(i64::from(present)));
    }
    tx.collection(to, SET)?;
    let coll = source.coll.unwrap_or_default();
    if !collections::set_remove(tx.conn(), coll, member)? {
        return Ok(Reply::Int(0));
    }
    let total = length(&source) - 1;
    tx.collection_written(source, total, call.name)?;
    let (row, coll) = for_write(tx, to, SET)?;
    let added = collections::set_add(tx.conn(), coll, member)?;
    let total = length(&row) + i64::from(added);
    tx.collection_written(row, total, call.name)?;
    Ok(Reply::Int(1))
}

fn for_read(src: &mut dyn Source, key: &str) -> Result<Option<(i64, i64)>, StoreError> {
    match read_collection(src, key, SET)? {
        Some(row) => Ok(Some((coll_of(&row)?, row.length.unwrap_or(0)))),
        None => Ok(None),
    }
}

/// SCARD key.
pub(super) fn scard(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(Reply::Int(
        for_read(src, call.args[0])?.map_or(0, |(_, n)| n),
    ))
}

/// SISMEMBER key member.
pub(super) fn sismember(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some((coll, _)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Int(0));
    };
    let found = collections::set_contains(src.members()?, coll, call.args[1])?;
    Ok(Reply::Int(i64::from(found)))
}

/// SMISMEMBER key member [member …].
pub(super) fn smismember(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref members @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let coll = for_read(src, key)?.map(|(coll, _)| coll);
    let mut replies = Vec::with_capacity(members.len());
    for member in members {
        let found = match coll {
            Some(coll) => collections::set_contains(src.members()?, coll, member)?,
            None => false,
        };
        replies.push(Reply::Int(i64::from(found)));
    }
    Ok(Reply::Array(replies))
}

/// SMEMBERS key: in byte order.
pub(super) fn smembers(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some((coll, _)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let members = all_members(src, call, coll)?;
    Ok(Reply::Array(members.into_iter().map(Reply::Str).collect()))
}

/// SRANDMEMBER key [count].
pub(super) fn srandmember(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, count) = match call.args[..] {
        [key] => (key, None),
        [key, count] => match count_arg(count) {
            Ok(n) => (key, Some(n)),
            Err(reply) => return Ok(reply),
        },
        _ => return Ok(wrong_args(call.name)),
    };
    let Some((coll, length)) = for_read(src, key)? else {
        return Ok(if count.is_some() {
            Reply::Array(Vec::new())
        } else {
            Reply::Nil
        });
    };
    let mut picked = Vec::new();
    for offset in random_offsets(length, count.unwrap_or(1)) {
        if let Some(member) = collections::set_member_at(src.members()?, coll, offset)? {
            call.budget.charge(member.len())?;
            picked.push(Reply::Str(member));
        }
    }
    Ok(match count {
        None => picked.pop().unwrap_or(Reply::Nil),
        Some(_) => Reply::Array(picked),
    })
}

/// The members of the sets named `keys` (an absent key: the empty set), each in byte order.
fn sets_of(
    src: &mut dyn Source,
    call: &Call<'_>,
    keys: &[&str],
) -> Result<Vec<BTreeSet<String>>, StoreError> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(match for_read(src, key)? {
            Some((coll, _)) => all_members(src, call, coll)?.into_iter().collect(),
            None => BTreeSet::new(),
        });
    }
    Ok(sets)
}

/// What SINTER, SUNION and SDIFF make of `sets`.
fn combine(op: &str, sets: Vec<BTreeSet<String>>) -> BTreeSet<String> {
    let mut sets = sets.into_iter();
    let first = sets.next().unwrap_or_default();
    sets.fold(first, |acc, set| match op {
        "inter" => acc.intersection(&set).cloned().collect(),
        "union" => acc.union(&set).cloned().collect(),
        _ => acc.difference(&set).cloned().collect(),
    })
}

fn op_of(name: &str) -> &'static str {
    if name.starts_with("sinter") {
        "inter"
    } else if name.starts_with("sunion") {
        "union"
    } else {
        "diff"
    }
}

/// SINTER, SUNION, SDIFF key [key …].
pub(super) fn scombine(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let sets = sets_of(src, call, &call.args)?;
    let result = combine(op_of(call.name), sets);
    Ok(Reply::Array(result.into_iter().map(Reply::Str).collect()))
}

/// SINTERCARD numkeys key [key …] [LIMIT limit].
pub(super) fn sintercard(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let numkeys = match redis_int(call.args[0]) {
        Some(n) if n > 0 => n,
        _ => return Ok(error("ERR numkeys should be greater than 0")),
    };
    let numkeys = numkeys as usize;
    let Some(keys) = call.args.get(1..=numkeys) else {
        return Ok(error(
            "ERR Number of keys can't be greater than number of args",
        ));
    };
    let mut limit = 0usize;
    match &call.args[numkeys + 1..] {
        [] => {}
        [option, n] if option.eq_ignore_ascii_case("limit") => match redis_int(n) {
            Some(n) if n >= 0 => limit = n as usize,
            _ => return Ok(error("ERR LIMIT can't be negative")),
        },
        _ => return Ok(error(super::reply::SYNTAX)),
    }
    let sets = sets_of(src, call, keys)?;
    let count = combine("inter", sets).len();
    Ok(Reply::Int(
        if limit > 0 { count.min(limit) } else { count } as i64
    ))
}

/// SINTERSTORE, SUNIONSTORE, SDIFFSTORE destination key [key …]: the result's size.
pub(super) fn sstore(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [destination, ref keys @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let sets = sets_of(tx, call, keys)?;
    let result = combine(op_of(call.name), sets);
    // The destination is replaced whatever it held (as in Redis).
    tx.delete(destination, &crate::precondition::Precondition::default())?;
    if result.is_empty() {
        return Ok(Reply::Int(0));
    }
    let (row, coll) = for_write(tx, destination, SET)?;
    for member in &result {
        collections::set_add(tx.conn(), coll, member)?;
    }
    let total = result.len() as i64;
    tx.collection_written(row, total, call.name)?;
    Ok(Reply::Int(total))
}

/// SSCAN key cursor [MATCH pattern] [COUNT count].
pub(super) fn sscan(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref rest @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let options = match scan_options(rest, false) {
        Ok(options) => options,
        Err(reply) => return Ok(reply),
    };
    let Some((coll, _)) = for_read(src, key)? else {
        return Ok(Reply::Array(vec![
            Reply::Str("0".into()),
            Reply::Array(Vec::new()),
        ]));
    };
    let limit = options.count as i64;
    let page = collections::set_page(src.members()?, coll, options.after.as_deref(), limit)?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().cloned())
        .flatten();
    let mut items = Vec::new();
    for member in page {
        if options
            .pattern
            .as_ref()
            .is_some_and(|glob| !glob.matches(&member))
        {
            continue;
        }
        call.budget.charge(member.len())?;
        items.push(Reply::Str(member));
    }
    Ok(Reply::Array(vec![
        next_cursor(next.as_deref()),
        Reply::Array(items),
    ]))
}
