//! List commands: LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LLEN, LINDEX, LRANGE, LSET, LTRIM,
//! LREM, LINSERT, LPOS, LMOVE, RPOPLPUSH, LMPOP. A list's elements sit at consecutive
//! positions from its head's: a push takes the position before the head or after the tail, a
//! pop removes one at an end, so neither moves another element; LINDEX, LRANGE and LSET go
//! straight to their positions (O(log n + k)); LREM and LINSERT renumber (O(n), as Redis's).

use super::call::Call;
use super::members::{
    check_member, coll_of, for_write, index_offset, index_range, read_collection,
};
use super::reply::{NOT_AN_INTEGER, Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use super::value::redis_int;
use crate::collections;
use crate::error::StoreError;
use crate::model::{KeyValue, LIST};
use crate::store::Tx;

/// A list being written: its row, id, head position and length.
struct List {
    row: KeyValue,
    coll: i64,
    head: i64,
    len: i64,
}

impl List {
    fn push(&mut self, tx: &mut Tx<'_>, value: &str, left: bool) -> Result<(), StoreError> {
        let pos = if left {
            self.head -= 1;
            self.head
        } else {
            self.head + self.len
        };
        collections::list_put(tx.conn(), self.coll, pos, value)?;
        self.len += 1;
        Ok(())
    }

    /// Removes up to `count` elements from one end; they come in the order they were popped.
    fn pop(&mut self, tx: &mut Tx<'_>, count: i64, left: bool) -> Result<Vec<String>, StoreError> {
        let n = count.min(self.len);
        if n <= 0 {
            return Ok(Vec::new());
        }
        let (from, to) = if left {
            (self.head, self.head + n - 1)
        } else {
            (self.head + self.len - n, self.head + self.len - 1)
        };
        let mut values: Vec<String> = collections::list_range(tx.conn(), self.coll, from, to)?
            .into_iter()
            .map(|(_, value)| value)
            .collect();
        collections::list_remove_range(tx.conn(), self.coll, from, to)?;
        if left {
            self.head += n;
        } else {
            values.reverse();
        }
        self.len -= n;
        Ok(values)
    }

    fn done(self, tx: &mut Tx<'_>, command: &str) -> Result<(), StoreError> {
        tx.collection_written(self.row, self.len, command)
    }
}

/// The list of `key` to write to (a new, empty one if absent).
fn for_push(tx: &mut Tx<'_>, key: &str) -> Result<List, StoreError> {
    let (row, coll) = for_write(tx, key, LIST)?;
    let len = row.length.unwrap_or(0);
    let head = if len > 0 {
        collections::list_head(tx.conn(), coll)?.unwrap_or(0)
    } else {
        0
    };
    Ok(List {
        row,
        coll,
        head,
        len,
    })
}

/// The existing list of `key`, if any.
fn existing(tx: &mut Tx<'_>, key: &str) -> Result<Option<List>, StoreError> {
    match tx.collection(key, LIST)? {
        Some(row) => {
            let coll = row.coll.unwrap_or_default();
            let len = row.length.unwrap_or(0);
            let head = collections::list_head(tx.conn(), coll)?.unwrap_or(0);
            Ok(Some(List {
                row,
                coll,
                head,
                len,
            }))
        }
        None => Ok(None),
    }
}

/// LPUSH, RPUSH, LPUSHX, RPUSHX key element [element …]: the new length.
pub(super) fn push(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, ref values @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    for value in values {
        if let Err(reply) = check_member(value) {
            return Ok(reply);
        }
    }
    let left = call.name.starts_with('l');
    let mut list = if call.name.ends_with('x') {
        match existing(tx, key)? {
            Some(list) => list,
            None => return Ok(Reply::Int(0)),
        }
    } else {
        for_push(tx, key)?
    };
    for value in values {
        list.push(tx, value, left)?;
    }
    let len = list.len;
    list.done(tx, call.name)?;
    Ok(Reply::Int(len))
}

/// LPOP, RPOP key [count].
pub(super) fn pop(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (key, count) = match call.args[..] {
        [key] => (key, None),
        [key, count] => match redis_int(count) {
            Some(n) if n >= 0 => (key, Some(n)),
            _ => return Ok(error("ERR value is out of range, must be positive")),
        },
        _ => return Ok(wrong_args(call.name)),
    };
    let Some(mut list) = existing(tx, key)? else {
        return Ok(Reply::Nil);
    };
    let values = list.pop(tx, count.unwrap_or(1), call.name == "lpop")?;
    if !values.is_empty() {
        list.done(tx, call.name)?;
    }
    Ok(match count {
        None => values.into_iter().next().map_or(Reply::Nil, Reply::Str),
        Some(_) => Reply::Array(values.into_iter().map(Reply::Str).collect()),
    })
}

/// A list for a read command: its id, head and length.
fn for_read(src: &mut dyn Source, key: &str) -> Result<Option<(i64, i64, i64)>, StoreError> {
    let Some(row) = read_collection(src, key, LIST)? else {
        return Ok(None);
    };
    let coll = coll_of(&row)?;
    let head = collections::list_head(src.members()?, coll)?.unwrap_or(0);
    Ok(Some((coll, head, row.length.unwrap_or(0))))
}

/// LLEN key.
pub(super) fn llen(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let found = read_collection(src, call.args[0], LIST)?;
    Ok(Reply::Int(found.map_or(0, |row| row.length.unwrap_or(0))))
}

/// LINDEX key index.
pub(super) fn lindex(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let Some(index) = redis_int(call.args[1]) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let Some((coll, head, len)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Nil);
    };
    let at = index_offset(index, len);
    if at < 0 || at >= len {
        return Ok(Reply::Nil);
    }
    let found = collections::list_range(src.members()?, coll, head + at, head + at)?;
    match found.into_iter().next() {
        Some((_, value)) => call.bulk(value),
        None => Ok(Reply::Nil),
    }
}

/// LRANGE key start stop.
pub(super) fn lrange(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let (Some(start), Some(stop)) = (redis_int(call.args[1]), redis_int(call.args[2])) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let Some((coll, head, len)) = for_read(src, call.args[0])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let Some((from, to)) = index_range(start, stop, len) else {
        return Ok(Reply::Array(Vec::new()));
    };
    let mut items = Vec::new();
    let mut at = from;
    while at <= to {
        call.deadline.check()?;
        let last = (at + super::members::PAGE - 1).min(to);
        for (_, value) in collections::list_range(src.members()?, coll, head + at, head + last)? {
            items.push(call.bulk(value)?);
        }
        at = last + 1;
    }
    Ok(Reply::Array(items))
}

/// LPOS key element [RANK rank] [COUNT count] [MAXLEN len].
pub(super) fn lpos(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, element, ref options @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0i64);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let Some(value) = rest.next() else {
            return Ok(error(SYNTAX));
        };
        let Some(n) = redis_int(value) else {
            return Ok(error(NOT_AN_INTEGER));
        };
        match option.to_ascii_lowercase().as_str() {
            "rank" if n == 0 || n == i64::MIN => {
                return Ok(error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            "rank" => rank = n,
            "count" if n < 0 => return Ok(error("ERR COUNT can't be negative")),
            "count" => count = Some(n),
            "maxlen" if n < 0 => return Ok(error("ERR MAXLEN can't be negative")),
            "maxlen" => maxlen = n,
            _ => return Ok(error(SYNTAX)),
        }
    }
    let Some(list) = for_read(src, key)? else {
        return Ok(if count.is_some() {
            Reply::Array(Vec::new())
        } else {
            Reply::Nil
        });
    };
    let values = all_elements(src, call, list)?;
    let scan: Box<dyn Iterator<Item = (usize, &String)>> = if rank > 0 {
        Box::new(values.iter().enumerate())
    } else {
        Box::new(values.iter().enumerate().rev())
    };
    let limit = if maxlen > 0 {
        maxlen as usize
    } else {
        usize::MAX
    };
    let wanted = count.map_or(1, |c| if c == 0 { usize::MAX } else { c as usize });
    let mut skip = rank.unsigned_abs() - 1;
    let mut found = Vec::new();
    for (compared, (index, value)) in scan.enumerate() {
        if compared >= limit || found.len() >= wanted {
            break;
        }
        if value == element {
            if skip > 0 {
                skip -= 1;
            } else {
                found.push(Reply::Int(index as i64));
            }
        }
    }
    Ok(match count {
        Some(_) => Reply::Array(found),
        None => found.into_iter().next().unwrap_or(Reply::Nil),
    })
}

/// LSET key index element.
pub(super) fn lset(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, index, value] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(index) = redis_int(index) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    if let Err(reply) = check_member(value) {
        return Ok(reply);
    }
    let Some(list) = existing(tx, key)? else {
        return Ok(error("ERR no such key"));
    };
    let at = index_offset(index, list.len);
    if at < 0 || at >= list.len {
        return Ok(error("ERR index out of range"));
    }
    collections::list_put(tx.conn(), list.coll, list.head + at, value)?;
    list.done(tx, call.name)?;
    Ok(Reply::Ok)
}

/// LTRIM key start stop.
pub(super) fn ltrim(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, start, stop] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let (Some(start), Some(stop)) = (redis_int(start), redis_int(stop)) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let Some(mut list) = existing(tx, key)? else {
        return Ok(Reply::Ok);
    };
    let (head, len) = (list.head, list.len);
    match index_range(start, stop, len) {
        None => {
            collections::list_remove_range(tx.conn(), list.coll, head, head + len - 1)?;
            list.len = 0;
        }
        Some((from, to)) => {
            if from > 0 {
                collections::list_remove_range(tx.conn(), list.coll, head, head + from - 1)?;
            }
            if to < len - 1 {
                collections::list_remove_range(
                    tx.conn(),
                    list.coll,
                    head + to + 1,
                    head + len - 1,
                )?;
            }
            list.head = head + from;
            list.len = to - from + 1;
        }
    }
    if list.len != len {
        list.done(tx, call.name)?;
    }
    Ok(Reply::Ok)
}

/// Every element of the list `coll` (from position `head`, `len` of them), for LPOS, LREM and
/// LINSERT, page by page within the deadline.
fn all_elements(
    src: &mut dyn Source,
    call: &Call<'_>,
    (coll, head, len): (i64, i64, i64),
) -> Result<Vec<String>, StoreError> {
    let mut values = Vec::with_capacity(len.min(10_000) as usize);
    let mut at = 0;
    while at < len {
        call.deadline.check()?;
        let last = (at + super::members::PAGE - 1).min(len - 1);
        values.extend(
            collections::list_range(src.members()?, coll, head + at, head + last)?
                .into_iter()
                .map(|(_, value)| value),
        );
        at = last + 1;
    }
    Ok(values)
}

/// LREM key count element: how many were removed.
pub(super) fn lrem(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, count, element] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let Some(count) = redis_int(count) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let Some(mut list) = existing(tx, key)? else {
        return Ok(Reply::Int(0));
    };
    let values = all_elements(tx, call, (list.coll, list.head, list.len))?;
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0usize;
    let mut keep = vec![true; values.len()];
    let order: Box<dyn Iterator<Item = usize>> = if count < 0 {
        Box::new((0..values.len()).rev())
    } else {
        Box::new(0..values.len())
    };
    for index in order {
        if removed >= limit {
            break;
        }
        if values[index] == element {
            keep[index] = false;
            removed += 1;
        }
    }
    if removed > 0 {
        let kept: Vec<String> = values
            .into_iter()
            .zip(keep)
            .filter_map(|(value, keep)| keep.then_some(value))
            .collect();
        collections::list_rewrite(tx.conn(), list.coll, list.head, &kept)?;
        list.len = kept.len() as i64;
        list.done(tx, call.name)?;
    }
    Ok(Reply::Int(removed as i64))
}

/// LINSERT key BEFORE|AFTER pivot element: the new length, -1 without the pivot.
pub(super) fn linsert(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [key, place, pivot, element] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let after = match place.to_ascii_lowercase().as_str() {
        "before" => false,
        "after" => true,
        _ => return Ok(error(SYNTAX)),
    };
    if let Err(reply) = check_member(element) {
        return Ok(reply);
    }
    let Some(mut list) = existing(tx, key)? else {
        return Ok(Reply::Int(0));
    };
    let mut values = all_elements(tx, call, (list.coll, list.head, list.len))?;
    let Some(at) = values.iter().position(|value| value == pivot) else {
        return Ok(Reply::Int(-1));
    };
    values.insert(if after { at + 1 } else { at }, element.to_owned());
    collections::list_rewrite(tx.conn(), list.coll, list.head, &values)?;
    list.len = values.len() as i64;
    let len = list.len;
    list.done(tx, call.name)?;
    Ok(Reply::Int(len))
}

fn side(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "left" => Some(true),
        "right" => Some(false),
        _ => None,
    }
}

/// Moves one element from an end of `from` to an end of `to` (LMOVE, RPOPLPUSH).
fn move_one(
    tx: &mut Tx<'_>,
    call: &Call<'_>,
    from: &str,
    to: &str,
    from_left: bool,
    to_left: bool,
) -> Result<Reply, StoreError> {
    let Some(mut source) = existing(tx, from)? else {
        return Ok(Reply::Nil);
    };
    // The destination's type is checked before anything moves (as in Redis).
    tx.collection(to, LIST)?;
    let Some(value) = source.pop(tx, 1, from_left)?.into_iter().next() else {
        return Ok(Reply::Nil);
    };
    source.done(tx, call.name)?;
    let mut destination = for_push(tx, to)?;
    destination.push(tx, &value, to_left)?;
    destination.done(tx, call.name)?;
    Ok(Reply::Str(value))
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT.
pub(super) fn lmove(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [from, to, wherefrom, whereto] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    let (Some(from_left), Some(to_left)) = (side(wherefrom), side(whereto)) else {
        return Ok(error(SYNTAX));
    };
    move_one(tx, call, from, to, from_left, to_left)
}

/// RPOPLPUSH source destination.
pub(super) fn rpoplpush(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    move_one(tx, call, call.args[0], call.args[1], false, true)
}

/// LMPOP numkeys key [key …] LEFT|RIGHT [COUNT count]: the first non-empty list's key and
/// popped elements, or nil.
pub(super) fn lmpop(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let numkeys = match redis_int(call.args[0]) {
        Some(n) if n > 0 => n as usize,
        _ => return Ok(error("ERR numkeys should be greater than 0")),
    };
    let Some(keys) = call.args.get(1..=numkeys) else {
        return Ok(error(SYNTAX));
    };
    let Some(left) = call.args.get(numkeys + 1).and_then(|s| side(s)) else {
        return Ok(error(SYNTAX));
    };
    let count = match &call.args[numkeys + 2..] {
        [] => 1,
        [option, n] if option.eq_ignore_ascii_case("count") => match redis_int(n) {
            Some(n) if n > 0 => n,
            _ => return Ok(error("ERR count should be greater than 0")),
        },
        _ => return Ok(error(SYNTAX)),
    };
    for key in keys {
        let Some(mut list) = existing(tx, key)? else {
            continue;
        };
        let values = list.pop(tx, count, left)?;
        if values.is_empty() {
            continue;
        }
        list.done(tx, call.name)?;
        return Ok(Reply::Array(vec![
            Reply::Str((*key).to_owned()),
            Reply::Array(values.into_iter().map(Reply::Str).collect()),
        ]));
    }
    Ok(Reply::Nil)
}
