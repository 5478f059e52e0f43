//! Sorted set commands on ranges: ZRANGE (BYSCORE, BYLEX, REV, LIMIT, WITHSCORES),
//! ZRANGESTORE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZREVRANGE,
//! ZCOUNT, ZLEXCOUNT, ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX, ZPOPMIN, ZPOPMAX,
//! ZRANDMEMBER. Ranks, score and lex bounds all become positions (`sorted_sets::Cut`).

use super::call::Call;
use super::members::{PAGE, index_range, length, random_offsets};
use super::reply::{NOT_AN_INTEGER, Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use super::value::{parse_float, redis_int};
use super::zsets::{Entry, Found, entries_reply, for_read, store_entries};
use crate::error::StoreError;
use crate::model::ZSET;
use crate::sorted_sets::{self, Cut};
use crate::store::Tx;

const NOT_A_SCORE_RANGE: &str = "ERR min or max is not a float";
const NOT_A_LEX_RANGE: &str = "ERR min or max not valid string range item";

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
