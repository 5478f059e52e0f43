//! Sorted set commands over several sets: ZUNION, ZINTER, ZDIFF (WEIGHTS, AGGREGATE,
//! WITHSCORES; sets count as scores of 1), their STORE forms, and ZINTERCARD.

use std::collections::BTreeMap;

use super::call::Call;
use super::members::{PAGE, coll_of};
use super::reply::{NOT_AN_INTEGER, Reply, SYNTAX, error, wrong_args};
use super::source::Source;
use super::value::{parse_float, redis_int};
use super::zsets::{Entry, entries_reply, store_entries};
use crate::error::StoreError;
use crate::model::{SET, ZSET};
use crate::sorted_sets::{self};
use crate::store::Tx;

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
