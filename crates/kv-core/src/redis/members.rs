//! What hash, set and list commands share: reading a key as a collection of one type (WRONGTYPE
//! otherwise), paging through all of a collection's members within the request's bounds, the
//! options of HSCAN and SSCAN, and picking members at random.

use std::hash::{BuildHasher, Hasher};

use super::call::Call;
use super::reply::{NOT_AN_INTEGER, Reply, SYNTAX, error};
use super::source::Source;
use super::value::redis_int;
use crate::collections;
use crate::cursor;
use crate::error::StoreError;
use crate::glob::Glob;
use crate::model::{KeyValue, StoredValue};
use crate::request::MAX_PATTERN_BYTES;
use crate::store::Tx;

/// Members read per statement when a command reads a whole collection.
pub(super) const PAGE: i64 = 1000;

/// The live collection of `key`, which must be of `kind`: `None` when the key is absent,
/// [`StoreError::WrongType`] when it holds something else.
pub(super) fn read_collection(
    src: &mut dyn Source,
    key: &str,
    kind: &str,
) -> Result<Option<StoredValue>, StoreError> {
    match src.row(key)? {
        Some(row) if row.kind == kind => Ok(Some(row)),
        Some(_) => Err(StoreError::WrongType),
        None => Ok(None),
    }
}

/// The collection of `key` to write to (see `Tx::collection_for_write`), and its id.
pub(super) fn for_write(
    tx: &mut Tx<'_>,
    key: &str,
    kind: &str,
) -> Result<(KeyValue, i64), StoreError> {
    let row = tx.collection_for_write(key, kind)?;
    let coll = row
        .coll
        .ok_or_else(|| StoreError::Internal(format!("a {kind} row without a collection id")))?;
    Ok((row, coll))
}

/// A collection row's member count.
pub(super) fn length(row: &KeyValue) -> i64 {
    row.length.unwrap_or(0)
}

/// The collection id of a collection row.
pub(super) fn coll_of(row: &StoredValue) -> Result<i64, StoreError> {
    row.coll
        .ok_or_else(|| StoreError::Internal(format!("a {} row without a collection id", row.kind)))
}

/// Every field and value of a hash, page by page (within the deadline).
pub(super) fn all_fields(
    src: &mut dyn Source,
    call: &Call<'_>,
    coll: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        call.deadline.check()?;
        let page = collections::hash_page(src.members()?, coll, after.as_deref(), PAGE)?;
        let full = page.len() as i64 == PAGE;
        after = page.last().map(|(field, _)| field.clone());
        for (field, value) in &page {
            call.budget.charge(field.len() + value.len())?;
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// Every member of a set, page by page (within the deadline), in byte order.
pub(super) fn all_members(
    src: &mut dyn Source,
    call: &Call<'_>,
    coll: i64,
) -> Result<Vec<String>, StoreError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        call.deadline.check()?;
        let page = collections::set_page(src.members()?, coll, after.as_deref(), PAGE)?;
        let full = page.len() as i64 == PAGE;
        after = page.last().cloned();
        for member in &page {
            call.budget.charge(member.len())?;
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// HSCAN's and SSCAN's arguments after the key.
pub(super) struct ScanOptions {
    pub after: Option<String>,
    pub pattern: Option<Glob>,
    pub count: usize,
    /// HSCAN … NOVALUES.
    pub no_values: bool,
}

/// Parses `cursor [MATCH pattern] [COUNT count]` (and `NOVALUES` when `novalues` is allowed).
pub(super) fn scan_options(args: &[&str], novalues: bool) -> Result<ScanOptions, Reply> {
    let (cursor, options) = args.split_first().ok_or_else(|| error(SYNTAX))?;
    let after = cursor::decode_decimal(cursor).map_err(|_| error("ERR invalid cursor"))?;
    let mut scan = ScanOptions {
        after,
        pattern: None,
        count: 10,
        no_values: false,
    };
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match option.to_ascii_lowercase().as_str() {
            "novalues" if novalues => scan.no_values = true,
            "match" => {
                let pattern = rest.next().ok_or_else(|| error(SYNTAX))?;
                if pattern.len() > MAX_PATTERN_BYTES {
                    return Err(Reply::Error(format!(
                        "ERR the pattern is {} bytes; the limit is {MAX_PATTERN_BYTES}",
                        pattern.len()
                    )));
                }
                scan.pattern = Some(Glob::new(pattern));
            }
            "count" => match rest.next().map(|n| redis_int(n)) {
                Some(Some(n)) if n >= 1 => {
                    scan.count = usize::try_from(n).unwrap_or(1000).min(1000)
                }
                Some(Some(_)) | None => return Err(error(SYNTAX)),
                Some(None) => return Err(error(NOT_AN_INTEGER)),
            },
            _ => return Err(error(SYNTAX)),
        }
    }
    Ok(scan)
}

/// The cursor that continues after `last` (`"0"`: the scan is done).
pub(super) fn next_cursor(last: Option<&str>) -> Reply {
    Reply::Str(last.map_or_else(|| "0".to_owned(), cursor::encode_decimal))
}

/// A random number (std's hasher keys are random per process and per call).
pub(super) fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Redis's index `i` of a list or sorted set of `len` as an offset from the head (negative:
/// from the end).
pub(super) fn index_offset(i: i64, len: i64) -> i64 {
    if i < 0 { len + i } else { i }
}

/// LRANGE's, LTRIM's and ZRANGE's `[start, stop]` as offsets within `0..len`, or `None`:
/// empty.
pub(super) fn index_range(start: i64, stop: i64, len: i64) -> Option<(i64, i64)> {
    let start = index_offset(start, len).max(0);
    let stop = index_offset(stop, len).min(len - 1);
    (start <= stop && start < len).then_some((start, stop))
}

/// The offsets (0‥`length`) that HRANDFIELD / SRANDMEMBER `count` pick: `count` distinct ones
/// (all when `count` ≥ `length`) for a positive count, `-count` with repeats for a negative.
pub(super) fn random_offsets(length: i64, count: i64) -> Vec<i64> {
    if length <= 0 || count == 0 {
        return Vec::new();
    }
    if count < 0 {
        return (0..count.unsigned_abs())
            .map(|_| (random() % length as u64) as i64)
            .collect();
    }
    if count >= length {
        return (0..length).collect();
    }
    let mut picked = std::collections::BTreeSet::new();
    while (picked.len() as i64) < count {
        picked.insert((random() % length as u64) as i64);
    }
    picked.into_iter().collect()
}

/// A count argument (HRANDFIELD, SRANDMEMBER, SPOP): Redis's error texts.
pub(super) fn count_arg(text: &str) -> Result<i64, Reply> {
    redis_int(text).ok_or_else(|| error(NOT_AN_INTEGER))
}

/// Refuses a member with a zero byte: PostgreSQL's text cannot hold one (and kvstore keeps
/// SQLite's members the same).
pub(super) fn check_member(text: &str) -> Result<(), Reply> {
    if text.contains('\0') {
        return Err(error(
            "ERR kvstore's hash fields and values and set members cannot hold a zero byte",
        ));
    }
    Ok(())
}
