//! Sorted set commands on members: ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK,
//! ZREVRANK, ZSCAN; and what the sorted-set families share (a set as a read finds it, replies
//! of members with scores, storing a computed set). Ranges are `zset_ranges`, several sets
//! `zset_combine`. Scores print as Redis 7.0 prints them (`%.17g`). Storage and ranks:
//! `crate::sorted_sets`.

use super::call::Call;
use super::members::{check_member, coll_of, for_write, length, next_cursor, scan_options};
use super::reply::{NOT_A_FLOAT, Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use super::value::{format_score, parse_float};
use crate::error::StoreError;
use crate::model::{KeyValue, ZSET};
use crate::sorted_sets::{self, Cut};
use crate::store::Tx;

const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";

/// A member with its score.
pub(super) type Entry = (String, f64);

/// A sorted set as a read command finds it.
#[derive(Clone, Copy)]
pub(super) struct Found {
    pub coll: i64,
    pub len: i64,
    /// Its key's version when `src` reads committed data (its rank blocks may be cached).
    pub version: Option<i64>,
}

/// The sorted set of `key` for a read.
pub(super) fn for_read(src: &mut dyn Source, key: &str) -> Result<Option<Found>, StoreError> {
    let committed = src.committed();
    match super::members::read_collection(src, key, ZSET)? {
        Some(row) => Ok(Some(Found {
            coll: coll_of(&row)?,
            len: row.length.unwrap_or(0),
            version: committed.then_some(row.version),
        })),
        None => Ok(None),
    }
}

/// Replies for `entries`: members, each followed by its score when `withscores`.
pub(super) fn entries_reply(entries: Vec<Entry>, withscores: bool) -> Reply {
    let mut items = Vec::with_capacity(entries.len() * if withscores { 2 } else { 1 });
    for (member, score) in entries {
        items.push(Reply::Str(member));
        if withscores {
            items.push(Reply::Str(format_score(score)));
        }
    }
    Reply::Array(items)
}

// ---- writes of members ----

/// ZADD's flags.
#[derive(Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member …].
pub(super) fn zadd(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref rest @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let mut flags = AddFlags::default();
    let mut at = 0;
    while let Some(option) = rest.get(at) {
        match option.to_ascii_lowercase().as_str() {
            "nx" => flags.nx = true,
            "xx" => flags.xx = true,
            "gt" => flags.gt = true,
            "lt" => flags.lt = true,
            "ch" => flags.ch = true,
            "incr" => flags.incr = true,
            _ => break,
        }
        at += 1;
    }
    let pairs = &rest[at..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Ok(error(SYNTAX));
    }
    if flags.nx && flags.xx {
        return Ok(error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (flags.nx && (flags.gt || flags.lt)) || (flags.gt && flags.lt) {
        return Ok(error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if flags.incr && pairs.len() > 2 {
        return Ok(error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let mut entries = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks(2) {
        let Some(score) = parse_float(pair[0]) else {
            return Ok(error(NOT_A_FLOAT));
        };
        if let Err(reply) = check_member(pair[1]) {
            return Ok(reply);
        }
        entries.push((pair[1], score));
    }
    add(tx, call, key, &entries, &flags)
}

/// ZINCRBY key increment member: the new score.
pub(super) fn zincrby(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, by, member] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(by) = parse_float(by) else {
        return Ok(error(NOT_A_FLOAT));
    };
    if let Err(reply) = check_member(member) {
        return Ok(reply);
    }
    let flags = AddFlags {
        incr: true,
        ..AddFlags::default()
    };
    add(tx, call, key, &[(member, by)], &flags)
}

/// What ZADD and ZINCRBY do with parsed arguments (Redis's `zsetAdd` per member).
fn add(
    tx: &mut Tx<'_>,
    call: &Call<'_>,
    key: &str,
    entries: &[(&str, f64)],
    flags: &AddFlags,
) -> Result<Reply, StoreError> {
    let existing = tx.collection(key, ZSET)?;
    if existing.is_none() && flags.xx {
        return Ok(if flags.incr {
            Reply::Nil
        } else {
            Reply::Int(0)
        });
    }
    let (row, coll) = for_write(tx, key, ZSET)?;
    let mut total = length(&row);
    let (mut added, mut updated, mut processed) = (0, 0, 0);
    let mut last_score = 0.0;
    for &(member, score) in entries {
        let current = sorted_sets::score(tx.conn(), coll, member)?;
        let mut score = score;
        match current {
            Some(current) => {
                if flags.nx {
                    continue;
                }
                if flags.incr {
                    score += current;
                    if score.is_nan() {
                        return Ok(error(NAN_SCORE));
                    }
                }
                if (flags.lt && score >= current) || (flags.gt && score <= current) {
                    continue;
                }
                processed += 1;
                last_score = score;
                if score != current {
                    sorted_sets::put(tx.conn(), coll, total, member, score, Some(current))?;
                    updated += 1;
                }
            }
            None => {
                if flags.xx {
                    continue;
                }
                sorted_sets::put(tx.conn(), coll, total, member, score, None)?;
                total += 1;
                added += 1;
                processed += 1;
                last_score = score;
            }
        }
    }
    if added + updated > 0 {
        tx.collection_written(row, total, call.name)?;
    }
    Ok(if flags.incr {
        if processed > 0 {
            Reply::Str(format_score(last_score))
        } else {
            Reply::Nil
        }
    } else if flags.ch {
        Reply::Int(added + updated)
    } else {
        Reply::Int(added)
    })
}

/// ZREM key member [member …]: how many were removed.
pub(super) fn zrem(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref members @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(row) = tx.collection(key, ZSET)? else {
        return Ok(Reply::Int(0));
    };
    let coll = row.coll.unwrap_or_default();
    let mut removed = 0;
    for member in members {
        if let Some(score) = sorted_sets::score(tx.conn(), coll, member)? {
            sorted_sets::remove(tx.conn(), coll, member, score)?;
            removed += 1;
        }
    }
    if removed > 0 {
        let total = length(&row) - removed;
        tx.collection_written(row, total, call.name)?;
    }
    Ok(Reply::Int(removed))
}

// ---- single-member reads ----

/// ZCARD key.
pub(super) fn zcard(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(Reply::Int(
        for_read(src, call.args[0])?.map_or(0, |found| found.len),
    ))
}

/// ZSCORE key member.
pub(super) fn zscore(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some(found) = for_read(src, call.args[0])? else {
        return Ok(Reply::Nil);
    };
    let score = sorted_sets::score(src.members()?, found.coll, call.args[1])?;
    Ok(score.map_or(Reply::Nil, |s| Reply::Str(format_score(s))))
}

/// ZMSCORE key member [member …].
pub(super) fn zmscore(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref members @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let coll = for_read(src, key)?.map(|found| found.coll);
    let mut replies = Vec::with_capacity(members.len());
    for member in members {
        let score = match coll {
            Some(coll) => sorted_sets::score(src.members()?, coll, member)?,
            None => None,
        };
        replies.push(score.map_or(Reply::Nil, |s| Reply::Str(format_score(s))));
    }
    Ok(Reply::Array(replies))
}

/// ZRANK and ZREVRANK key member [WITHSCORE].
pub(super) fn zrank(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, member, withscore) = match call.args[..] {
        [key, member] => (key, member, false),
        [key, member, option] if option.eq_ignore_ascii_case("withscore") => (key, member, true),
        [_, _, _] => return Ok(error(SYNTAX)),
        _ => return Ok(wrong_args(call.name)),
    };
    let Some(Found { coll, len, version }) = for_read(src, key)? else {
        return Ok(Reply::Nil);
    };
    let conn = src.members()?;
    let Some(score) = sorted_sets::score(conn, coll, member)? else {
        return Ok(Reply::Nil);
    };
    let at = Cut::At(score, member.to_owned());
    let rank = sorted_sets::below(conn, coll, version, len, &at)?;
    let rank = if call.name == "zrevrank" {
        len - 1 - rank
    } else {
        rank
    };
    Ok(if withscore {
        Reply::Array(vec![Reply::Int(rank), Reply::Str(format_score(score))])
    } else {
        Reply::Int(rank)
    })
}

/// Replaces `destination` with a sorted set of `entries` (none: deletes it); their count.
pub(super) fn store_entries(
    tx: &mut Tx<'_>,
    call: &Call<'_>,
    destination: &str,
    entries: Vec<Entry>,
) -> Result<Reply, StoreError> {
    tx.delete(destination, &crate::precondition::Precondition::default())?;
    if entries.is_empty() {
        return Ok(Reply::Int(0));
    }
    let (row, coll): (KeyValue, i64) = for_write(tx, destination, ZSET)?;
    let total = entries.len() as i64;
    sorted_sets::insert_all(tx.conn(), coll, &entries)?;
    sorted_sets::build_blocks(tx.conn(), coll, total)?;
    tx.collection_written(row, total, call.name)?;
    Ok(Reply::Int(total))
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]: members in byte order, each with its score.
pub(super) fn zscan(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref rest @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let options = match scan_options(rest, false) {
        Ok(options) => options,
        Err(reply) => return Ok(reply),
    };
    let Some(Found { coll, .. }) = for_read(src, key)? else {
        return Ok(Reply::Array(vec![
            Reply::Str("0".into()),
            Reply::Array(Vec::new()),
        ]));
    };
    let limit = options.count as i64;
    let page = sorted_sets::page_by_member(src.members()?, coll, options.after.as_deref(), limit)?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(|(member, _)| member.clone()))
        .flatten();
    let mut items = Vec::new();
    for (member, score) in page {
        if options
            .pattern
            .as_ref()
            .is_some_and(|glob| !glob.matches(&member))
        {
            continue;
        }
        call.budget.charge(member.len() + 24)?;
        items.push((member, score));
    }
    Ok(Reply::Array(vec![
        next_cursor(next.as_deref()),
        entries_reply(items, true),
    ]))
}
