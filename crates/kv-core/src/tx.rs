//! `POST /_tx`: several operations in one database transaction, all or nothing, each seeing
//! the effects of the ones before it. The ops are the same [`Tx`] methods single requests use.

use serde_json::{Map, Value};

use crate::args::{IncrArgs, SetArgs};
use crate::budget::ResponseBudget;
use crate::deadline::Deadline;
use crate::error::StoreError;
use crate::precondition::Precondition;
use crate::request::body_object;
use crate::store::{Lookup, Tx};
use crate::view::{CheckView, DeleteView, IncrView, KeyView, SetView, TxResult, TxView};

/// A transaction holds at most this many operations.
pub const MAX_TX_OPS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOp {
    Get { key: String },
    Set { key: String, args: SetArgs },
    Delete { key: String },
    Incr { key: String, args: IncrArgs },
    Check { key: String, version: Option<i64> },
}

impl TxOp {
    pub fn key(&self) -> &str {
        match self {
            TxOp::Get { key }
            | TxOp::Set { key, .. }
            | TxOp::Delete { key }
            | TxOp::Incr { key, .. }
            | TxOp::Check { key, .. } => key,
        }
    }

    /// Whether the op writes (a read-only API key may run only get and check).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            TxOp::Set { .. } | TxOp::Delete { .. } | TxOp::Incr { .. }
        )
    }
}

/// Parses `{"ops": [...]}`. An error names the op's index and key.
pub fn parse_ops(body: Option<Value>, now: i64) -> Result<Vec<TxOp>, StoreError> {
    let mut body = body_object(body)?;
    if let Some(field) = body.keys().find(|k| *k != "ops") {
        return Err(StoreError::invalid(
            "unknown_field",
            format!("unknown field \"{field}\"; a transaction is {{\"ops\": [...]}}"),
        ));
    }
    let ops = match body.remove("ops") {
        Some(Value::Array(ops)) => ops,
        _ => {
            return Err(StoreError::invalid(
                "invalid_body",
                "a transaction is {\"ops\": [...]}, an array of operations",
            ));
        }
    };
    if ops.len() > MAX_TX_OPS {
        return Err(StoreError::invalid(
            "too_many_ops",
            format!(
                "a transaction holds at most {MAX_TX_OPS} ops; this one has {}",
                ops.len()
            ),
        ));
    }
    ops.into_iter()
        .enumerate()
        .map(|(index, op)| {
            let key = op.get("key").and_then(Value::as_str).map(str::to_owned);
            parse_op(op, now).map_err(|e| e.in_op(index, key.as_deref()))
        })
        .collect()
}

fn parse_op(op: Value, now: i64) -> Result<TxOp, StoreError> {
    let Value::Object(mut op) = op else {
        return Err(StoreError::invalid(
            "invalid_op",
            "an op must be a JSON object",
        ));
    };
    let kind = match op.remove("op") {
        Some(Value::String(kind)) => kind,
        _ => {
            return Err(StoreError::invalid(
                "invalid_op",
                "an op needs \"op\": one of get, set, delete, incr, check",
            ));
        }
    };
    let key = match op.remove("key") {
        Some(Value::String(key)) => key,
        _ => {
            return Err(StoreError::invalid(
                "invalid_op",
                "an op needs \"key\": a string",
            ));
        }
    };
    let only = |op: &Map<String, Value>, allowed: &[&str]| match op
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
    {
        Some(field) => Err(StoreError::invalid(
            "unknown_field",
            format!("unknown field \"{field}\" in a {kind} op"),
        )),
        None => Ok(()),
    };
    match kind.as_str() {
        "get" => only(&op, &[]).map(|()| TxOp::Get { key }),
        "delete" => only(&op, &[]).map(|()| TxOp::Delete { key }),
        "set" => SetArgs::from_json(op, now).map(|args| TxOp::Set { key, args }),
        "incr" => IncrArgs::from_json(op, false, now).map(|args| TxOp::Incr { key, args }),
        "check" => {
            only(&op, &["version"])?;
            let version = match op.get("version") {
                Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().filter(|v| *v > 0).ok_or_else(|| {
                    StoreError::invalid(
                        "invalid_op",
                        "check's version must be a positive integer or null",
                    )
                })?),
                None => {
                    return Err(StoreError::invalid(
                        "invalid_op",
                        "a check op needs \"version\": a version, or null for \"absent\"",
                    ));
                }
            };
            Ok(TxOp::Check { key, version })
        }
        other => Err(StoreError::invalid(
            "invalid_op",
            format!("unknown op \"{other}\": use get, set, delete, incr or check"),
        )),
    }
}

/// Runs all ops inside `tx` (one write transaction, see [`crate::store::write`]). On any
/// failure the error names the failing op, and the caller's transaction applies nothing.
pub fn run_ops(
    tx: &mut Tx<'_>,
    ops: &[TxOp],
    budget: &ResponseBudget,
    deadline: &Deadline,
) -> Result<TxView, StoreError> {
    tx.declare_keys(ops.iter().map(TxOp::key));
    let results = ops
        .iter()
        .enumerate()
        .map(|(index, op)| {
            deadline.check()?;
            run_op(tx, op, budget).map_err(|e| e.in_op(index, Some(op.key())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TxView::new(tx.store_version()?, results))
}

fn run_op(tx: &mut Tx<'_>, op: &TxOp, budget: &ResponseBudget) -> Result<TxResult, StoreError> {
    let now = tx.now();
    Ok(match op {
        TxOp::Get { key } => {
            let row = tx.get(key)?;
            if let Some(row) = &row {
                budget.charge(row.key.len() + row.value.len())?;
            }
            TxResult::Get(row.map(|row| KeyView::new(row, now)).transpose()?)
        }
        TxOp::Set { key, args } => TxResult::Set(SetView::from(tx.set(key, args)?)),
        TxOp::Delete { key } => {
            let version = match tx.delete(key, &Precondition::default())? {
                Lookup::Live(version) => Some(version),
                Lookup::Missing | Lookup::Expired => None,
            };
            TxResult::Delete(DeleteView::new(key, version))
        }
        TxOp::Incr { key, args } => TxResult::Incr(IncrView::new(
            tx.incr(key, args, &Precondition::default())?,
            now,
        )?),
        TxOp::Check { key, version } => {
            tx.check(key, *version)?;
            TxResult::Check(CheckView {
                key: key.clone(),
                ok: true,
            })
        }
    })
}
