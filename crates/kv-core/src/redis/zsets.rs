//! Sorted set commands: ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK, ZREVRANK, ZCOUNT,
//! ZLEXCOUNT, ZRANGE (BYSCORE, BYLEX, REV, LIMIT, WITHSCORES), ZRANGESTORE, ZRANGEBYSCORE,
//! ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZREVRANGE, ZPOPMIN, ZPOPMAX, ZRANDMEMBER,
//! ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX, ZUNION, ZINTER, ZDIFF and their STORE
//! forms, ZINTERCARD, ZSCAN. Scores print as Redis 7.0 prints them (`%.17g`). Storage and
//! ranks: `crate::sorted_sets`.

use std::collections::BTreeMap;

use super::call::Call;
use super::members::{
    PAGE, check_member, coll_of, for_write, index_range, length, next_cursor, random_offsets,
    scan_options,
};
use super::reply::{NOT_A_FLOAT, NOT_AN_INTEGER, Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use super::value::{format_score, parse_float, redis_int};
use crate::error::StoreError;
use crate::model::{KeyValue, SET, ZSET};
use crate::sorted_sets::{self, Cut};
use crate::store::Tx;

const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";
const NOT_A_SCORE_RANGE: &str = "ERR min or max is not a float";
const NOT_A_LEX_RANGE: &str = "ERR min or max not valid string range item";

/// A member with its score.
type Entry = (String, f64);

/// A sorted set as a read command finds it.
#[derive(Clone, Copy)]
struct Found {
    coll: i64,
    len: i64,
    /// Its key's version when `src` reads committed data (its rank blocks may be cached).
    version: Option<i64>,
}

/// The sorted set of `key` for a read.
fn for_read(src: &mut dyn Source, key: &str) -> Result<Option<Found>, StoreError> {
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
fn entries_reply(entries: Vec<Entry>, withscores: bool) -> Reply {
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

// ---- ranges ----

/// A lex bound: `-`, `+`, `[member` (inclusive) or `(member` (exclusive).
#[derive(Debug, Clone)]
enum Lex {
    Min,
    Max,
    Inclusive(String),
    Exclusive(String),
}

impl Lex {
    fn parse(text: &str) -> Option<Lex> {
        match text {
            "-" => Some(Lex::Min),
            "+" => Some(Lex::Max),
            _ => match text.as_bytes().first() {
                Some(b'[') => Some(Lex::Inclusive(text[1..].to_owned())),
                Some(b'(') => Some(Lex::Exclusive(text[1..].to_owned())),
                _ => None,
            },
        }
    }

    /// The position of this bound in a set whose members all score `score` (lex ranges are
    /// meaningful only there, as in Redis): a lower bound (`upper` false) is where the range
    /// starts, an upper one where it ends.
    fn cut(&self, upper: bool, score: f64) -> Cut {
        match (self, upper) {
            (Lex::Min, _) => Cut::start(),
            (Lex::Max, _) => Cut::End,
            (Lex::Inclusive(m), false) | (Lex::Exclusive(m), true) => Cut::At(score, m.clone()),
            (Lex::Inclusive(m), true) | (Lex::Exclusive(m), false) => Cut::after(score, m),
        }
    }
}

/// A score bound as a position: `x`, `(x` (exclusive), `inf`, `-inf`.
fn score_cut(text: &str, upper: bool) -> Option<Cut> {
    let (exclusive, number) = match text.strip_prefix('(') {
        Some(number) => (true, number),
        None => (false, text),
    };
    let x = parse_float(number)?;
    Some(if upper == exclusive {
        Cut::at_score(x)
    } else {
        Cut::above_score(x)
    })
}

/// What a range command selects: ranks, or positions by score or lex.
enum Span {
    Rank(i64, i64),
    Score(Cut, Cut),
    Lex(Lex, Lex),
}

/// A parsed range request.
struct Select {
    span: Span,
    reverse: bool,
    offset: i64,
    /// Negative: no limit.
    limit: i64,
    withscores: bool,
}

/// Which range command: ZRANGE and ZRANGESTORE take BY…/REV, the others are fixed.
#[derive(Clone, Copy, PartialEq)]
enum By {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Parses `min max [options]` of a range command into a [`Select`] (Redis's
/// `zrangeGenericCommand`).
fn parse_select(
    min: &str,
    max: &str,
    options: &[&str],
    mut by: By,
    mut reverse: bool,
    store: bool,
) -> Result<Select, Reply> {
    let flexible = by == By::Auto;
    let (mut offset, mut limit, mut withscores) = (0, -1, false);
    let mut at = 0;
    while let Some(option) = options.get(at) {
        let lower = option.to_ascii_lowercase();
        match lower.as_str() {
            "withscores" if !store => withscores = true,
            "limit" if options.len() - at > 2 => {
                let (Some(o), Some(l)) = (redis_int(options[at + 1]), redis_int(options[at + 2]))
                else {
                    return Err(error(NOT_AN_INTEGER));
                };
                (offset, limit) = (o, l);
                at += 2;
            }
            "byscore" if flexible => by = By::Score,
            "bylex" if flexible => by = By::Lex,
            "rev" if flexible => reverse = true,
            _ => return Err(error(SYNTAX)),
        }
        at += 1;
    }
    if by == By::Auto {
        by = By::Rank;
    }
    if limit != -1 && by == By::Rank {
        return Err(error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == By::Lex {
        return Err(error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // ZRANGE … BYSCORE REV and the ZREV…BY… commands take max before min.
    let (min, max) = if reverse && by != By::Rank {
        (max, min)
    } else {
        (min, max)
    };
    let span = match by {
        By::Rank | By::Auto => match (redis_int(min), redis_int(max)) {
            (Some(start), Some(stop)) => Span::Rank(start, stop),
            _ => return Err(error(NOT_AN_INTEGER)),
        },
        By::Score => match (score_cut(min, false), score_cut(max, true)) {
            (Some(from), Some(to)) => Span::Score(from, to),
            _ => return Err(error(NOT_A_SCORE_RANGE)),
        },
        By::Lex => match (Lex::parse(min), Lex::parse(max)) {
            (Some(from), Some(to)) => Span::Lex(from, to),
            _ => return Err(error(NOT_A_LEX_RANGE)),
        },
    };
    Ok(Select {
        span,
        reverse,
        offset,
        limit,
        withscores,
    })
}

/// The score lex bounds are placed at: the lowest member's (a lex range assumes one score).
fn lex_score(conn: &mut crate::backend::DbConnection, found: Found) -> Result<f64, StoreError> {
    Ok(sorted_sets::by_rank(conn, found.coll, found.version, 0, 1)?
        .first()
        .map_or(0.0, |(_, score)| *score))
}

/// The positions `[from, to)` a span covers, and how many to skip from the start: ranks
/// become the positions of their members.
fn positions(
    src: &mut dyn Source,
    found: Found,
    select: &Select,
) -> Result<Option<(Cut, Cut, i64, i64)>, StoreError> {
    let Found { coll, len, version } = found;
    let conn = src.members()?;
    Ok(match &select.span {
        Span::Rank(start, stop) => {
            let Some((first, last)) = index_range(*start, *stop, len) else {
                return Ok(None);
            };
            // Ranks count from the top when reversed.
            let (first, last) = if select.reverse {
                (len - 1 - last, len - 1 - first)
            } else {
                (first, last)
            };
            let lowest = sorted_sets::by_rank(conn, coll, version, first, 1)?;
            let highest = sorted_sets::by_rank(conn, coll, version, last, 1)?;
            let (Some((m1, s1)), Some((m2, s2))) = (lowest.first(), highest.first()) else {
                return Ok(None);
            };
            let count = last - first + 1;
            Some((Cut::At(*s1, m1.clone()), Cut::after(*s2, m2), 0, count))
        }
        Span::Score(from, to) => Some((from.clone(), to.clone(), select.offset, select.limit)),
        Span::Lex(from, to) => {
            let score = lex_score(conn, found)?;
            Some((
                from.cut(false, score),
                to.cut(true, score),
                select.offset,
                select.limit,
            ))
        }
    })
}

/// The members a [`Select`] picks, read a page at a time within the request's bounds.
fn run_select(
    src: &mut dyn Source,
    call: &Call<'_>,
    found: Found,
    select: &Select,
) -> Result<Vec<Entry>, StoreError> {
    if let Span::Rank(start, stop) = select.span {
        return by_ranks(src, call, found, (start, stop), select);
    }
    let coll = found.coll;
    let Some((mut from, mut to, offset, limit)) = positions(src, found, select)? else {
        return Ok(Vec::new());
    };
    if offset < 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut skip = offset;
    let mut left = if limit < 0 { i64::MAX } else { limit };
    while left > 0 {
        call.deadline.check()?;
        let want = left.min(PAGE);
        let page =
            sorted_sets::range(src.members()?, coll, &from, &to, select.reverse, skip, want)?;
        skip = 0;
        for (member, _) in &page {
            call.budget
                .charge(member.len() + if select.withscores { 24 } else { 0 })?;
        }
        let got = page.len() as i64;
        if let Some((member, score)) = page.last() {
            if select.reverse {
                to = Cut::At(*score, member.clone());
            } else {
                from = Cut::after(*score, member);
            }
        }
        out.extend(page);
        left -= got;
        if got < want {
            break;
        }
    }
    Ok(out)
}

/// The members at ranks `start..=stop` (Redis's indexes; from the top when reversed): the
/// first page found through the rank blocks, the rest read on from there.
fn by_ranks(
    src: &mut dyn Source,
    call: &Call<'_>,
    found: Found,
    (start, stop): (i64, i64),
    select: &Select,
) -> Result<Vec<Entry>, StoreError> {
    let Found { coll, len, .. } = found;
    let Some((first, last)) = index_range(start, stop, len) else {
        return Ok(Vec::new());
    };
    let (first, last) = if select.reverse {
        (len - 1 - last, len - 1 - first)
    } else {
        (first, last)
    };
    let mut left = last - first + 1;
    let mut out: Vec<Entry> = Vec::new();
    while left > 0 {
        call.deadline.check()?;
        let want = left.min(PAGE);
        let conn = src.members()?;
        let page = match out.last() {
            None => sorted_sets::by_rank(conn, coll, found.version, first, want)?,
            Some((member, score)) => {
                let from = Cut::after(*score, member);
                sorted_sets::range(conn, coll, &from, &Cut::End, false, 0, want)?
            }
        };
        for (member, _) in &page {
            call.budget
                .charge(member.len() + if select.withscores { 24 } else { 0 })?;
        }
        let got = page.len() as i64;
        out.extend(page);
        left -= got;
        if got < want {
            break;
        }
    }
    if select.reverse {
        out.reverse();
    }
    Ok(out)
}

/// ZRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZREVRANGE.
pub(super) fn zrange(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, min, max, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let (by, reverse) = match call.name {
        "zrangebyscore" => (By::Score, false),
        "zrevrangebyscore" => (By::Score, true),
        "zrangebylex" => (By::Lex, false),
        "zrevrangebylex" => (By::Lex, true),
        "zrevrange" => (By::Rank, true),
        _ => (By::Auto, false),
    };
    let select = match parse_select(min, max, options, by, reverse, false) {
        Ok(select) => select,
        Err(reply) => return Ok(reply),
    };
    let Some(found) = for_read(src, key)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let entries = run_select(src, call, found, &select)?;
    Ok(entries_reply(entries, select.withscores))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count].
pub(super) fn zrangestore(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [destination, key, min, max, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let select = match parse_select(min, max, options, By::Auto, false, true) {
        Ok(select) => select,
        Err(reply) => return Ok(reply),
    };
    let entries = match for_read(tx, key)? {
        Some(found) => run_select(tx, call, found, &select)?,
        None => Vec::new(),
    };
    store_entries(tx, call, destination, entries)
}

/// ZCOUNT key min max and ZLEXCOUNT key min max.
pub(super) fn zcount(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, min, max] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let by = if call.name == "zlexcount" {
        By::Lex
    } else {
        By::Score
    };
    let select = match parse_select(min, max, &[], by, false, false) {
        Ok(select) => select,
        Err(reply) => return Ok(reply),
    };
    let Some(found) = for_read(src, key)? else {
        return Ok(Reply::Int(0));
    };
    let Some((from, to, _, _)) = positions(src, found, &select)? else {
        return Ok(Reply::Int(0));
    };
    let Found { coll, len, version } = found;
    let conn = src.members()?;
    let below_to = sorted_sets::below(conn, coll, version, len, &to)?;
    let below_from = sorted_sets::below(conn, coll, version, len, &from)?;
    Ok(Reply::Int((below_to - below_from).max(0)))
}

/// ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX key min max: how many went.
pub(super) fn zremrange(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, min, max] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let by = match call.name {
        "zremrangebyrank" => By::Rank,
        "zremrangebyscore" => By::Score,
        _ => By::Lex,
    };
    let select = match parse_select(min, max, &[], by, false, false) {
        Ok(select) => select,
        Err(reply) => return Ok(reply),
    };
    let Some(row) = tx.collection(key, ZSET)? else {
        return Ok(Reply::Int(0));
    };
    let coll = row.coll.unwrap_or_default();
    let found = Found {
        coll,
        len: length(&row),
        version: None,
    };
    let Some((from, to, _, _)) = positions(tx, found, &select)? else {
        return Ok(Reply::Int(0));
    };
    let removed = sorted_sets::remove_range(tx.conn(), coll, &from, &to)?;
    if removed > 0 {
        let total = length(&row) - removed;
        tx.collection_written(row, total, call.name)?;
    }
    Ok(Reply::Int(removed))
}

/// ZPOPMIN and ZPOPMAX key [count].
pub(super) fn zpop(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, count) = match call.args[..] {
        [key] => (key, 1),
        [key, count] => match redis_int(count) {
            Some(n) if n >= 0 => (key, n),
            _ => return Ok(error("ERR value is out of range, must be positive")),
        },
        _ => return Ok(wrong_args(call.name)),
    };
    let Some(row) = tx.collection(key, ZSET)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let coll = row.coll.unwrap_or_default();
    let len = length(&row);
    let count = count.min(len);
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let max = call.name == "zpopmax";
    let select = Select {
        span: Span::Rank(0, count - 1),
        reverse: max,
        offset: 0,
        limit: -1,
        withscores: true,
    };
    let found = Found {
        coll,
        len,
        version: None,
    };
    let entries = run_select(tx, call, found, &select)?;
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(Reply::Array(Vec::new()));
    };
    let (low, high) = if max { (last, first) } else { (first, last) };
    let (from, to) = (Cut::At(low.1, low.0.clone()), Cut::after(high.1, &high.0));
    let removed = sorted_sets::remove_range(tx.conn(), coll, &from, &to)?;
    tx.collection_written(row, len - removed, call.name)?;
    Ok(entries_reply(entries, true))
}

/// ZRANDMEMBER key [count [WITHSCORES]].
pub(super) fn zrandmember(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, count, withscores) = match call.args[..] {
        [key] => (key, None, false),
        [key, count] => (key, Some(count), false),
        [key, count, option] if option.eq_ignore_ascii_case("withscores") => {
            (key, Some(count), true)
        }
        [_, _, _] => return Ok(error(SYNTAX)),
        _ => return Ok(wrong_args(call.name)),
    };
    let count = match count.map(redis_int) {
        None => None,
        Some(Some(n)) if n > i64::MIN / 2 || !withscores => Some(n),
        Some(Some(_)) => return Ok(error("ERR value is out of range")),
        Some(None) => return Ok(error(NOT_AN_INTEGER)),
    };
    let Some(Found { coll, len, version }) = for_read(src, key)? else {
        return Ok(if count.is_some() {
            Reply::Array(Vec::new())
        } else {
            Reply::Nil
        });
    };
    let mut picked = Vec::new();
    for offset in random_offsets(len, count.unwrap_or(1)) {
        call.deadline.check()?;
        if let Some(entry) = sorted_sets::by_rank(src.members()?, coll, version, offset, 1)?
            .into_iter()
            .next()
        {
            call.budget.charge(entry.0.len() + 24)?;
            picked.push(entry);
        }
    }
    if count.is_none() {
        return Ok(picked.pop().map_or(Reply::Nil, |(m, _)| Reply::Str(m)));
    }
    Ok(entries_reply(picked, withscores))
}

// ---- several sets ----

/// How ZUNION and ZINTER combine a member's weighted scores.
#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            // inf + -inf is 0 in Redis, not NaN.
            Aggregate::Sum => {
                let sum = a + b;
                if sum.is_nan() { 0.0 } else { sum }
            }
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        }
    }
}

/// The parsed arguments of ZUNION/ZINTER/ZDIFF (and their STORE forms, ZINTERCARD).
struct Combine<'a> {
    keys: Vec<&'a str>,
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    /// ZINTERCARD's LIMIT (0: none).
    limit: i64,
}

/// `numkeys key [key …]` of ZUNION and its kin, and the arguments after the keys.
fn parse_combine<'a, 'b>(
    name: &str,
    args: &'b [&'a str],
) -> Result<(Combine<'a>, &'b [&'a str]), Reply> {
    let Some(numkeys) = args.first().map(|n| redis_int(n)) else {
        return Err(wrong_args(name));
    };
    let Some(numkeys) = numkeys else {
        return Err(error(NOT_AN_INTEGER));
    };
    if numkeys < 1 {
        return Err(Reply::Error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - 1 {
        return Err(error(SYNTAX));
    }
    let combine = Combine {
        keys: args[1..=numkeys].to_vec(),
        weights: vec![1.0; numkeys],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    Ok((combine, &args[numkeys + 1..]))
}

/// Reads the options after the keys (after the keys' types were checked, as Redis does).
fn parse_combine_options(
    name: &str,
    combine: &mut Combine<'_>,
    options: &[&str],
    store: bool,
) -> Result<(), Reply> {
    let diff = name.starts_with("zdiff");
    let card = name == "zintercard";
    let mut at = 0;
    while let Some(option) = options.get(at) {
        let remaining = options.len() - at;
        let lower = option.to_ascii_lowercase();
        if card && lower == "limit" && remaining >= 2 {
            match redis_int(options[at + 1]) {
                Some(n) if n >= 0 => combine.limit = n,
                Some(_) => return Err(error("ERR LIMIT can't be negative")),
                None => return Err(error(NOT_AN_INTEGER)),
            }
            at += 2;
        } else if !diff && !card && lower == "weights" && remaining > combine.keys.len() {
            for i in 0..combine.keys.len() {
                let Some(weight) = parse_float(options[at + 1 + i]) else {
                    return Err(error("ERR weight value is not a float"));
                };
                combine.weights[i] = weight;
            }
            at += 1 + combine.keys.len();
        } else if !diff && !card && lower == "aggregate" && remaining >= 2 {
            combine.aggregate = match options[at + 1].to_ascii_lowercase().as_str() {
                "sum" => Aggregate::Sum,
                "min" => Aggregate::Min,
                "max" => Aggregate::Max,
                _ => return Err(error(SYNTAX)),
            };
            at += 2;
        } else if !store && !card && lower == "withscores" {
            combine.withscores = true;
            at += 1;
        } else {
            return Err(error(SYNTAX));
        }
    }
    Ok(())
}

/// Every member of the sorted set or set `row` (a set's members score 1), page by page.
fn all_entries(
    src: &mut dyn Source,
    call: &Call<'_>,
    kind: &str,
    coll: i64,
) -> Result<Vec<Entry>, StoreError> {
    if kind == SET {
        let members = super::members::all_members(src, call, coll)?;
        return Ok(members.into_iter().map(|m| (m, 1.0)).collect());
    }
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        call.deadline.check()?;
        let page = sorted_sets::page_by_member(src.members()?, coll, after.as_deref(), PAGE)?;
        let full = page.len() as i64 == PAGE;
        after = page.last().map(|(member, _)| member.clone());
        for (member, _) in &page {
            call.budget.charge(member.len())?;
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// What ZUNION, ZINTER or ZDIFF made, in the set's order, and the options that shape the
/// reply.
struct Combined {
    entries: Vec<Entry>,
    withscores: bool,
    /// ZINTERCARD's LIMIT (0: none).
    limit: i64,
}

/// The result of ZUNION, ZINTER or ZDIFF, in the set's order.
fn combined(
    src: &mut dyn Source,
    call: &Call<'_>,
    args: &[&str],
    store: bool,
) -> Result<Result<Combined, Reply>, StoreError> {
    let (mut combine, options) = match parse_combine(call.name, args) {
        Ok(parsed) => parsed,
        Err(reply) => return Ok(Err(reply)),
    };
    // The keys' types are checked before the options are read (as Redis does).
    let mut sources = Vec::with_capacity(combine.keys.len());
    for key in &combine.keys {
        sources.push(match src.row(key)? {
            Some(row) if row.kind == ZSET || row.kind == SET => {
                let coll = coll_of(&row)?;
                Some((row.kind, coll))
            }
            Some(_) => return Err(StoreError::WrongType),
            None => None,
        });
    }
    if let Err(reply) = parse_combine_options(call.name, &mut combine, options, store) {
        return Ok(Err(reply));
    }
    let op = call.name.trim_end_matches("store");
    let mut result: BTreeMap<String, f64> = BTreeMap::new();
    for (i, source) in sources.into_iter().enumerate() {
        let entries = match source {
            Some((kind, coll)) => all_entries(src, call, &kind, coll)?,
            None => Vec::new(),
        };
        let weight = combine.weights[i];
        let weighted = |score: f64| {
            let value = weight * score;
            if value.is_nan() { 0.0 } else { value }
        };
        match (op, i) {
            (_, 0) => {
                result = entries
                    .into_iter()
                    .map(|(m, s)| {
                        let s = if op == "zdiff" { s } else { weighted(s) };
                        (m, s)
                    })
                    .collect();
            }
            ("zunion", _) => {
                for (member, score) in entries {
                    let score = weighted(score);
                    result
                        .entry(member)
                        .and_modify(|s| *s = combine.aggregate.apply(*s, score))
                        .or_insert(score);
                }
            }
            ("zdiff", _) => {
                for (member, _) in entries {
                    result.remove(&member);
                }
            }
            _ => {
                let other: BTreeMap<String, f64> = entries.into_iter().collect();
                result = std::mem::take(&mut result)
                    .into_iter()
                    .filter_map(|(member, score)| {
                        let theirs = weighted(*other.get(&member)?);
                        Some((member, combine.aggregate.apply(score, theirs)))
                    })
                    .collect();
            }
        }
    }
    let mut entries: Vec<Entry> = result.into_iter().collect();
    entries.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Ok(Combined {
        entries,
        withscores: combine.withscores,
        limit: combine.limit,
    }))
}

/// ZUNION, ZINTER, ZDIFF numkeys key [key …] [WEIGHTS …] [AGGREGATE …] [WITHSCORES].
pub(super) fn zcombine(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(match combined(src, call, &call.args, false)? {
        Ok(combined) => entries_reply(combined.entries, combined.withscores),
        Err(reply) => reply,
    })
}

/// ZINTERCARD numkeys key [key …] [LIMIT limit].
pub(super) fn zintercard(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    Ok(match combined(src, call, &call.args, false)? {
        Ok(Combined { entries, limit, .. }) => {
            let n = entries.len() as i64;
            Reply::Int(if limit > 0 { n.min(limit) } else { n })
        }
        Err(reply) => reply,
    })
}

/// ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE destination numkeys key [key …] [options]: the
/// result's size.
pub(super) fn zcombinestore(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [destination, ref args @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let entries = match combined(tx, call, args, true)? {
        Ok(combined) => combined.entries,
        Err(reply) => return Ok(reply),
    };
    store_entries(tx, call, destination, entries)
}

/// Replaces `destination` with a sorted set of `entries` (none: deletes it); their count.
fn store_entries(
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
