//! The members of sorted sets, by collection id, and how ranks are answered.
//!
//! `kv_zset` holds (collection, member, score): its primary key finds a member's score, its
//! index on (collection, score, member) gives the order, so a range by score or by lex is an
//! index range: O(log n + k). Ranks need more, as a B-tree does not count: `kv_zset_block`
//! splits a large sorted set's order into blocks of [`HALF`] to [`SPLIT`] members, each row
//! the position its block starts at and how many members it holds. A rank is the sum of the
//! sizes of the blocks before the member's block (≤ n / 256 rows, kept in memory per set
//! version by a cache) plus a count within its block (≤ 512 index entries), against the
//! 500,000 index steps a plain count would take at a million members. A write keeps the blocks exact: one size
//! changes, a block over [`SPLIT`] is cut in two, one under [`MERGE`] joins the one before. A
//! sorted set of at most [`SPLIT`] members has no block rows: it is one block.
//!
//! Positions in the order are [`Cut`]s: "before every member at or after (score, member)".
//! Score and lex bounds become cuts (an exclusive score bound is the next double; an exclusive
//! lex bound is the member followed by byte 1, the next string, since members hold no zero
//! byte), so every range is `[from, to)` and every count is `below(to) - below(from)`.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};

use crate::backend::statement::{Bind, statement};
use crate::backend::{DbConnection, with_conn};
use crate::error::StoreError;
use crate::schema::{kv_zset, kv_zset_block};

/// A block is cut in two when it would hold more than this.
pub const SPLIT: i64 = 512;
/// The size of each half of a block that was cut in two.
pub const HALF: i64 = SPLIT / 2;
/// A block that falls under this joins the block before it (when they fit in one).
pub const MERGE: i64 = SPLIT / 8;
/// Members inserted per statement: three parameters a row stay under both databases' limits.
const INSERT_BATCH: usize = 1000;

/// A position in a sorted set's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Cut {
    /// Before every member at or after (score, member) in (score, byte order of member).
    At(f64, String),
    /// After every member.
    End,
}

impl Cut {
    /// Before every member.
    pub fn start() -> Cut {
        Cut::At(f64::NEG_INFINITY, String::new())
    }

    /// Just after the member (score, member).
    pub fn after(score: f64, member: &str) -> Cut {
        Cut::At(score, format!("{member}\u{1}"))
    }

    /// Before the first member whose score is above `score` (`score` included: ≤).
    pub fn above_score(score: f64) -> Cut {
        if score == f64::INFINITY {
            Cut::End
        } else {
            Cut::At(score.next_up(), String::new())
        }
    }

    /// Before the first member whose score is at least `score`.
    pub fn at_score(score: f64) -> Cut {
        Cut::At(score, String::new())
    }
}

#[derive(QueryableByName, Debug, Clone)]
struct Block {
    #[diesel(sql_type = Double)]
    score: f64,
    #[diesel(sql_type = Text)]
    member: String,
    #[diesel(sql_type = BigInt)]
    size: i64,
}

impl Block {
    fn is_first(&self) -> bool {
        self.score == f64::NEG_INFINITY && self.member.is_empty()
    }
}

#[derive(QueryableByName)]
struct Entry {
    #[diesel(sql_type = Text)]
    member: String,
    #[diesel(sql_type = Double)]
    score: f64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The markers of the statements (see `backend::statement`).
mod marker {
    pub struct BlockOf;
    pub struct BlockBefore;
    pub struct Blocks;
    pub struct SizesBefore;
    pub struct CountBetween;
    pub struct CountFrom;
    pub struct RangeUp;
    pub struct RangeDown;
    pub struct RangeUpOpen;
    pub struct RangeDownOpen;
    pub struct RemoveBetween;
    pub struct RemoveFrom;
}

/// A member's score.
pub fn score(conn: &mut DbConnection, coll: i64, member: &str) -> Result<Option<f64>, StoreError> {
    Ok(with_conn!(conn, c => kv_zset::table
        .find((coll, member))
        .select(kv_zset::score)
        .first::<f64>(c)
        .optional())?)
}

/// Sets `member`'s score in the sorted set `coll` of `length` members (before this write),
/// whose score was `old` (`None`: a new member).
pub fn put(
    conn: &mut DbConnection,
    coll: i64,
    length: i64,
    member: &str,
    score: f64,
    old: Option<f64>,
) -> Result<(), StoreError> {
    let score = if score == 0.0 { 0.0 } else { score }; // one zero: SQLite keeps no "-0"
    let mut length = length;
    if let Some(old) = old {
        if old == score {
            return Ok(());
        }
        remove(conn, coll, member, old)?;
        length -= 1;
    }
    with_conn!(conn, c => diesel::insert_into(kv_zset::table)
        .values((kv_zset::coll.eq(coll), kv_zset::member.eq(member), kv_zset::score.eq(score)))
        .execute(c))?;
    match block_of(conn, coll, score, member)? {
        None if length + 1 > SPLIT => build_blocks(conn, coll, length + 1),
        None => Ok(()),
        Some(block) if block.size + 1 > SPLIT => {
            let Some((member, score)) = nth_from(conn, coll, block.score, &block.member, HALF)?
            else {
                return Err(StoreError::Internal("a block shorter than its size".into()));
            };
            set_size(conn, coll, &block, HALF)?;
            insert_block(conn, coll, score, &member, block.size + 1 - HALF)
        }
        Some(block) => set_size(conn, coll, &block, block.size + 1),
    }
}

/// Removes `member` (whose score is `score`); whether it was there.
pub fn remove(
    conn: &mut DbConnection,
    coll: i64,
    member: &str,
    score: f64,
) -> Result<bool, StoreError> {
    let removed =
        with_conn!(conn, c => diesel::delete(kv_zset::table.find((coll, member))).execute(c))?;
    if removed == 0 {
        return Ok(false);
    }
    if let Some(block) = block_of(conn, coll, score, member)? {
        shrink(conn, coll, block, 1)?;
    }
    Ok(true)
}

/// `block` lost `by` members: its size drops, and a small block joins the one before it.
fn shrink(conn: &mut DbConnection, coll: i64, block: Block, by: i64) -> Result<(), StoreError> {
    let size = block.size - by;
    if block.is_first() || size >= MERGE {
        return set_size(conn, coll, &block, size);
    }
    let Some(before) = block_before(conn, coll, &block)? else {
        return set_size(conn, coll, &block, size);
    };
    if before.size + size > SPLIT {
        return set_size(conn, coll, &block, size);
    }
    delete_block(conn, coll, &block)?;
    set_size(conn, coll, &before, before.size + size)
}

/// The block `(score, member)` is in, if the set has blocks.
fn block_of(
    conn: &mut DbConnection,
    coll: i64,
    score: f64,
    member: &str,
) -> Result<Option<Block>, StoreError> {
    let query = statement::<marker::BlockOf>(
        "SELECT score, member, size FROM kv_zset_block WHERE coll = ? AND (score, member) <= (?, ?) \
         ORDER BY score DESC, member DESC LIMIT 1",
        vec![Bind::Int(coll), Bind::Float(score), Bind::Text(member)],
    );
    Ok(with_conn!(conn, c => query.get_result::<Block>(c).optional())?)
}

/// The block before `block`.
fn block_before(
    conn: &mut DbConnection,
    coll: i64,
    block: &Block,
) -> Result<Option<Block>, StoreError> {
    let query = statement::<marker::BlockBefore>(
        "SELECT score, member, size FROM kv_zset_block WHERE coll = ? AND (score, member) < (?, ?) \
         ORDER BY score DESC, member DESC LIMIT 1",
        vec![
            Bind::Int(coll),
            Bind::Float(block.score),
            Bind::Text(&block.member),
        ],
    );
    Ok(with_conn!(conn, c => query.get_result::<Block>(c).optional())?)
}

/// Every block of the set, in order (none for a set of at most [`SPLIT`] members).
fn blocks(conn: &mut DbConnection, coll: i64) -> Result<Vec<Block>, StoreError> {
    let query = statement::<marker::Blocks>(
        "SELECT score, member, size FROM kv_zset_block WHERE coll = ? ORDER BY score, member",
        vec![Bind::Int(coll)],
    );
    Ok(with_conn!(conn, c => query.load::<Block>(c))?)
}

fn set_size(
    conn: &mut DbConnection,
    coll: i64,
    block: &Block,
    size: i64,
) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::update(
        kv_zset_block::table.find((coll, block.score, block.member.as_str())),
    )
    .set(kv_zset_block::size.eq(size))
    .execute(c))?;
    Ok(())
}

fn insert_block(
    conn: &mut DbConnection,
    coll: i64,
    score: f64,
    member: &str,
    size: i64,
) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::insert_into(kv_zset_block::table)
        .values((
            kv_zset_block::coll.eq(coll),
            kv_zset_block::score.eq(score),
            kv_zset_block::member.eq(member),
            kv_zset_block::size.eq(size),
        ))
        .execute(c))?;
    Ok(())
}

fn delete_block(conn: &mut DbConnection, coll: i64, block: &Block) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::delete(
        kv_zset_block::table.find((coll, block.score, block.member.as_str())),
    )
    .execute(c))?;
    Ok(())
}

/// The member `n` places after the position (score, member) (0: the first at or after it).
fn nth_from(
    conn: &mut DbConnection,
    coll: i64,
    score: f64,
    member: &str,
    n: i64,
) -> Result<Option<(String, f64)>, StoreError> {
    let page = range(
        conn,
        coll,
        &Cut::At(score, member.to_owned()),
        &Cut::End,
        false,
        n,
        1,
    )?;
    Ok(page.into_iter().next())
}

/// Writes the blocks of the set `coll` of `length` members afresh (after a bulk insert).
pub fn build_blocks(conn: &mut DbConnection, coll: i64, length: i64) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::delete(kv_zset_block::table.filter(kv_zset_block::coll.eq(coll)))
        .execute(c))?;
    if length <= SPLIT {
        return Ok(());
    }
    let (mut score, mut member) = (f64::NEG_INFINITY, String::new());
    let mut left = length;
    while left > SPLIT {
        let Some((next_member, next_score)) = nth_from(conn, coll, score, &member, HALF)? else {
            break;
        };
        insert_block(conn, coll, score, &member, HALF)?;
        (score, member) = (next_score, next_member);
        left -= HALF;
    }
    insert_block(conn, coll, score, &member, left)
}

/// How many members come before `cut`, in a set of `length` members (`version`: as for
/// [`by_rank`]).
pub fn below(
    conn: &mut DbConnection,
    coll: i64,
    version: Option<i64>,
    length: i64,
    cut: &Cut,
) -> Result<i64, StoreError> {
    let Cut::At(score, member) = cut else {
        return Ok(length);
    };
    if version.is_some() {
        let order = order(conn, coll, version)?;
        let (before, from) = match order.block_of(*score, member) {
            Some((block, before)) => (before, Cut::At(block.score, block.member.clone())),
            None => (0, Cut::start()),
        };
        return Ok(before + count(conn, coll, &from, cut)?);
    }
    let (before, from) = match block_of(conn, coll, *score, member)? {
        None => (0, Cut::start()),
        Some(block) => {
            let query = statement::<marker::SizesBefore>(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS n FROM kv_zset_block \
                 WHERE coll = ? AND (score, member) < (?, ?)",
                vec![
                    Bind::Int(coll),
                    Bind::Float(block.score),
                    Bind::Text(&block.member),
                ],
            );
            let before = with_conn!(conn, c => query.get_result::<Count>(c))?.n;
            (before, Cut::At(block.score, block.member))
        }
    };
    Ok(before + count(conn, coll, &from, cut)?)
}

/// How many members lie in `[from, to)`.
fn count(conn: &mut DbConnection, coll: i64, from: &Cut, to: &Cut) -> Result<i64, StoreError> {
    let Cut::At(from_score, from_member) = from else {
        return Ok(0);
    };
    Ok(match to {
        Cut::At(to_score, to_member) => {
            let query = statement::<marker::CountBetween>(
                "SELECT COUNT(*) AS n FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?) \
                 AND (score, member) < (?, ?)",
                vec![
                    Bind::Int(coll),
                    Bind::Float(*from_score),
                    Bind::Text(from_member),
                    Bind::Float(*to_score),
                    Bind::Text(to_member),
                ],
            );
            with_conn!(conn, c => query.get_result::<Count>(c))?
        }
        Cut::End => {
            let query = statement::<marker::CountFrom>(
                "SELECT COUNT(*) AS n FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?)",
                vec![
                    Bind::Int(coll),
                    Bind::Float(*from_score),
                    Bind::Text(from_member),
                ],
            );
            with_conn!(conn, c => query.get_result::<Count>(c))?
        }
    }
    .n)
}

/// The members in `[from, to)` (score order; descending when `reverse`), skipping `offset`,
/// at most `limit` (negative: all) of them, with their scores.
pub fn range(
    conn: &mut DbConnection,
    coll: i64,
    from: &Cut,
    to: &Cut,
    reverse: bool,
    offset: i64,
    limit: i64,
) -> Result<Vec<(String, f64)>, StoreError> {
    let Cut::At(from_score, from_member) = from else {
        return Ok(Vec::new());
    };
    let limit = if limit < 0 { i64::MAX } else { limit };
    let mut binds = vec![
        Bind::Int(coll),
        Bind::Float(*from_score),
        Bind::Text(from_member),
    ];
    if let Cut::At(to_score, to_member) = to {
        binds.extend([Bind::Float(*to_score), Bind::Text(to_member)]);
    }
    binds.extend([Bind::Int(limit), Bind::Int(offset)]);
    let rows = match (to, reverse) {
        (Cut::At(..), false) => with_conn!(conn, c => statement::<marker::RangeUp>(
            "SELECT member, score FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?) \
             AND (score, member) < (?, ?) ORDER BY score, member LIMIT ? OFFSET ?",
            binds,
        )
        .load::<Entry>(c))?,
        (Cut::At(..), true) => with_conn!(conn, c => statement::<marker::RangeDown>(
            "SELECT member, score FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?) \
             AND (score, member) < (?, ?) ORDER BY score DESC, member DESC LIMIT ? OFFSET ?",
            binds,
        )
        .load::<Entry>(c))?,
        (Cut::End, false) => with_conn!(conn, c => statement::<marker::RangeUpOpen>(
            "SELECT member, score FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?) \
             ORDER BY score, member LIMIT ? OFFSET ?",
            binds,
        )
        .load::<Entry>(c))?,
        (Cut::End, true) => with_conn!(conn, c => statement::<marker::RangeDownOpen>(
            "SELECT member, score FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?) \
             ORDER BY score DESC, member DESC LIMIT ? OFFSET ?",
            binds,
        )
        .load::<Entry>(c))?,
    };
    Ok(rows.into_iter().map(|e| (e.member, e.score)).collect())
}

/// The members at ranks `start..start + count` (0: the lowest), in order. `version`: the
/// set's key version when reading committed data (its blocks may come from the block cache).
pub fn by_rank(
    conn: &mut DbConnection,
    coll: i64,
    version: Option<i64>,
    start: i64,
    count: i64,
) -> Result<Vec<(String, f64)>, StoreError> {
    let order = order(conn, coll, version)?;
    let (from, offset) = match order.block_at_rank(start) {
        Some((block, before)) => (Cut::At(block.score, block.member.clone()), start - before),
        None => (Cut::start(), start),
    };
    range(conn, coll, &from, &Cut::End, false, offset, count)
}

/// A sorted set's blocks in order, with the members before each: what ranks are read from.
#[derive(Debug, Default)]
struct Order {
    blocks: Vec<Block>,
    /// `before[i]`: the members in the blocks before block `i`.
    before: Vec<i64>,
}

impl Order {
    fn new(blocks: Vec<Block>) -> Order {
        let mut before = Vec::with_capacity(blocks.len());
        let mut total = 0;
        for block in &blocks {
            before.push(total);
            total += block.size;
        }
        Order { blocks, before }
    }

    /// The block holding rank `rank`, and the members before it (`None`: no blocks).
    fn block_at_rank(&self, rank: i64) -> Option<(&Block, i64)> {
        if self.blocks.is_empty() {
            return None;
        }
        let i = self.before.partition_point(|&before| before <= rank).max(1) - 1;
        Some((&self.blocks[i], self.before[i]))
    }

    /// The block holding the position (score, member), and the members before it.
    fn block_of(&self, score: f64, member: &str) -> Option<(&Block, i64)> {
        let i = self.blocks.partition_point(|b| {
            b.score < score || (b.score == score && b.member.as_str() <= member)
        });
        let i = i.checked_sub(1)?;
        Some((&self.blocks[i], self.before[i]))
    }
}

/// The blocks of sorted sets read at a committed version, kept while the set stays at it: a
/// write to a set gives its key a new version, so an entry is never stale (versions only
/// grow), and readers of a large set skip reading its ~n/256 block rows on every rank.
struct BlockCache {
    entries: std::collections::HashMap<i64, (i64, std::sync::Arc<Order>)>,
}

/// Sets whose blocks [`BlockCache`] keeps at most.
const CACHED_SETS: usize = 64;

static BLOCK_CACHE: std::sync::LazyLock<std::sync::Mutex<BlockCache>> =
    std::sync::LazyLock::new(|| {
        std::sync::Mutex::new(BlockCache {
            entries: std::collections::HashMap::new(),
        })
    });

/// The set's [`Order`]: from the cache when `version` is given and it holds that version.
fn order(
    conn: &mut DbConnection,
    coll: i64,
    version: Option<i64>,
) -> Result<std::sync::Arc<Order>, StoreError> {
    let Some(version) = version else {
        return Ok(std::sync::Arc::new(Order::new(blocks(conn, coll)?)));
    };
    if let Ok(cache) = BLOCK_CACHE.lock()
        && let Some((at, order)) = cache.entries.get(&coll)
        && *at == version
    {
        return Ok(order.clone());
    }
    let order = std::sync::Arc::new(Order::new(blocks(conn, coll)?));
    if order.blocks.is_empty() {
        return Ok(order);
    }
    if let Ok(mut cache) = BLOCK_CACHE.lock() {
        if cache.entries.len() >= CACHED_SETS && !cache.entries.contains_key(&coll) {
            let evicted = cache.entries.keys().next().copied();
            if let Some(evicted) = evicted {
                cache.entries.remove(&evicted);
            }
        }
        let newer = cache
            .entries
            .get(&coll)
            .is_some_and(|(at, _)| *at > version);
        if !newer {
            cache.entries.insert(coll, (version, order.clone()));
        }
    }
    Ok(order)
}

/// Removes the members in `[from, to)`; how many went. The blocks the range touches are
/// counted again (those left empty go).
pub fn remove_range(
    conn: &mut DbConnection,
    coll: i64,
    from: &Cut,
    to: &Cut,
) -> Result<i64, StoreError> {
    let Cut::At(from_score, from_member) = from else {
        return Ok(0);
    };
    let mut binds = vec![
        Bind::Int(coll),
        Bind::Float(*from_score),
        Bind::Text(from_member),
    ];
    let removed = match to {
        Cut::At(to_score, to_member) => {
            binds.extend([Bind::Float(*to_score), Bind::Text(to_member)]);
            with_conn!(conn, c => statement::<marker::RemoveBetween>(
                "DELETE FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?) \
                 AND (score, member) < (?, ?)",
                binds,
            )
            .execute(c))?
        }
        Cut::End => with_conn!(conn, c => statement::<marker::RemoveFrom>(
            "DELETE FROM kv_zset WHERE coll = ? AND (score, member) >= (?, ?)",
            binds,
        )
        .execute(c))?,
    } as i64;
    if removed > 0 {
        recount_blocks(conn, coll, from, to)?;
    }
    Ok(removed)
}

/// Counts again the blocks that overlap `[from, to)`, then joins small neighbours.
fn recount_blocks(
    conn: &mut DbConnection,
    coll: i64,
    from: &Cut,
    to: &Cut,
) -> Result<(), StoreError> {
    let all = blocks(conn, coll)?;
    let starts: Vec<Cut> = all
        .iter()
        .map(|b| Cut::At(b.score, b.member.clone()))
        .collect();
    let mut kept: Vec<Block> = Vec::with_capacity(all.len());
    for (i, mut block) in all.into_iter().enumerate() {
        let end = starts.get(i + 1).cloned().unwrap_or(Cut::End);
        if before(&starts[i], to) && before(from, &end) {
            block.size = count(conn, coll, &starts[i], &end)?;
            set_size(conn, coll, &block, block.size)?;
        }
        match kept.last_mut() {
            Some(last) if block.size < MERGE && last.size + block.size <= SPLIT => {
                delete_block(conn, coll, &block)?;
                last.size += block.size;
                set_size(conn, coll, last, last.size)?;
            }
            _ => kept.push(block),
        }
    }
    Ok(())
}

/// Whether the position `a` comes strictly before `b`.
fn before(a: &Cut, b: &Cut) -> bool {
    match (a, b) {
        (_, Cut::End) => !matches!(a, Cut::End),
        (Cut::End, _) => false,
        (Cut::At(s1, m1), Cut::At(s2, m2)) => s1 < s2 || (s1 == s2 && m1 < m2),
    }
}

/// A page of members in byte order of member after `after`, with their scores (export, copy,
/// ZSCAN).
pub fn page_by_member(
    conn: &mut DbConnection,
    coll: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, f64)>, StoreError> {
    Ok(with_conn!(conn, c => {
        let query = kv_zset::table
            .filter(kv_zset::coll.eq(coll))
            .order(kv_zset::member.asc())
            .select((kv_zset::member, kv_zset::score))
            .limit(limit)
            .into_boxed();
        match after {
            Some(after) => query.filter(kv_zset::member.gt(after)).load(c),
            None => query.load(c),
        }
    })?)
}

/// Inserts members into a sorted set `coll` that holds none of them (each member once); the
/// caller then writes its blocks with [`build_blocks`].
pub fn insert_all(
    conn: &mut DbConnection,
    coll: i64,
    members: &[(String, f64)],
) -> Result<(), StoreError> {
    for batch in members.chunks(INSERT_BATCH) {
        let rows: Vec<_> = batch
            .iter()
            .map(|(member, score)| {
                let score = if *score == 0.0 { 0.0 } else { *score };
                (
                    kv_zset::coll.eq(coll),
                    kv_zset::member.eq(member),
                    kv_zset::score.eq(score),
                )
            })
            .collect();
        with_conn!(conn, c => diesel::insert_into(kv_zset::table).values(&rows).execute(c))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn migrated() -> DbConnection {
        let mut conn =
            DbConnection::Sqlite(diesel::Connection::establish(":memory:").expect("sqlite"));
        crate::backend::run_migrations(&mut conn).expect("migrations");
        conn
    }

    /// The model's order: by score, then member.
    fn ordered(model: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
        let mut all: Vec<_> = model.iter().map(|(m, s)| (m.clone(), *s)).collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        all
    }

    /// Every block's size is the count of its members, and they add up to the length.
    fn check_blocks(conn: &mut DbConnection, len: i64) {
        let all = blocks(conn, 1).expect("blocks");
        if all.is_empty() {
            return;
        }
        assert!(
            all[0].is_first(),
            "the first block starts before every member"
        );
        let mut total = 0;
        for (i, block) in all.iter().enumerate() {
            let end = all
                .get(i + 1)
                .map_or(Cut::End, |b| Cut::At(b.score, b.member.clone()));
            let counted =
                count(conn, 1, &Cut::At(block.score, block.member.clone()), &end).expect("count");
            assert_eq!(block.size, counted, "block {i} of {}", all.len());
            assert!(block.size <= SPLIT, "block {i} is over SPLIT");
            total += block.size;
        }
        assert_eq!(total, len);
    }

    #[test]
    fn ranks_stay_exact_through_splits_merges_and_range_removals() {
        let mut conn = migrated();
        let mut model: BTreeMap<String, f64> = BTreeMap::new();
        let mut seed: u64 = 7;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..15000 {
            let member = format!("m{}", next(30000));
            // Few distinct scores: many members share one, so blocks start mid-score.
            let score = next(40) as f64 - 20.0;
            let len = model.len() as i64;
            if round % 5 == 4 {
                if let Some(old) = model.remove(&member) {
                    assert!(remove(&mut conn, 1, &member, old).expect("remove"));
                }
            } else {
                let old = model.insert(member.clone(), score);
                put(&mut conn, 1, len, &member, score, old).expect("put");
            }
        }
        check_blocks(&mut conn, model.len() as i64);
        let all = ordered(&model);
        let len = all.len() as i64;
        assert!(len > 3 * SPLIT, "large enough to have blocks: {len}");
        for rank in [0, 1, HALF - 1, HALF, SPLIT, len / 2, len - 2, len - 1] {
            let (member, score) = &all[rank as usize];
            let at = Cut::At(*score, member.clone());
            assert_eq!(below(&mut conn, 1, None, len, &at).expect("below"), rank);
            assert_eq!(
                below(&mut conn, 1, Some(9), len, &at).expect("cached"),
                rank
            );
            let page = by_rank(&mut conn, 1, None, rank, 3).expect("by rank");
            assert_eq!(
                by_rank(&mut conn, 1, Some(9), rank, 3).expect("cached"),
                page
            );
            assert_eq!(page, all[rank as usize..(rank as usize + 3).min(all.len())]);
        }
        let under_zero = all.iter().filter(|(_, s)| *s < 0.0).count() as i64;
        assert_eq!(
            below(&mut conn, 1, None, len, &Cut::at_score(0.0)).expect("below"),
            under_zero
        );
        let at_most_five = all.iter().filter(|(_, s)| *s <= 5.0).count() as i64;
        assert_eq!(
            below(&mut conn, 1, None, len, &Cut::above_score(5.0)).expect("below"),
            at_most_five
        );

        // A range removal across many blocks, then one within a block.
        let removed = remove_range(&mut conn, 1, &Cut::at_score(-10.0), &Cut::above_score(10.0))
            .expect("remove range");
        model.retain(|_, s| !(-10.0..=10.0).contains(s));
        assert_eq!(removed, len - model.len() as i64);
        check_blocks(&mut conn, model.len() as i64);
        let all = ordered(&model);
        let len = all.len() as i64;
        let (m, s) = &all[10];
        let (m2, s2) = &all[20];
        let removed = remove_range(&mut conn, 1, &Cut::At(*s, m.clone()), &Cut::after(*s2, m2))
            .expect("remove range");
        assert_eq!(removed, 11);
        check_blocks(&mut conn, len - 11);
        let rest: Vec<_> = all[..10].iter().chain(&all[21..]).cloned().collect();
        assert_eq!(by_rank(&mut conn, 1, None, 0, -1).expect("all"), rest);

        // Blocks written afresh give the same ranks.
        build_blocks(&mut conn, 1, rest.len() as i64).expect("build");
        check_blocks(&mut conn, rest.len() as i64);
        let mid = rest.len() / 2;
        assert_eq!(
            by_rank(&mut conn, 1, None, mid as i64, 2).expect("mid"),
            rest[mid..mid + 2]
        );
    }

    #[test]
    fn cuts_order_as_the_set_does() {
        assert!(before(&Cut::start(), &Cut::End));
        assert!(!before(&Cut::End, &Cut::End));
        assert!(before(&Cut::at_score(1.0), &Cut::above_score(1.0)));
        assert!(before(&Cut::At(1.0, "a".into()), &Cut::after(1.0, "a")));
        assert!(before(
            &Cut::after(1.0, "a"),
            &Cut::At(1.0, "a\u{2}".into())
        ));
        assert_eq!(Cut::above_score(f64::INFINITY), Cut::End);
        assert!(before(
            &Cut::above_score(f64::NEG_INFINITY),
            &Cut::at_score(-1e308)
        ));
    }
}
