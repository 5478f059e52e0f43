//! The REST API's routes on collections: a hash's fields (`/<key>/fields/<field>`), a set's
//! or sorted set's members (`/<key>/members/<member>`), a list's items (`/<key>/items…`) and
//! ranges of the ordered types (`/<key>/range`). Each operation runs the Redis command that
//! does the same (`Op::command`), so both APIs share one semantics, and turns its error
//! replies into [`StoreError`]s: WRONGTYPE is 409 `wrong_type`, a missing key or member 404,
//! a bad argument 400 with Redis's text.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::StoreError;
use crate::model::{SET, ZSET};
use crate::precondition::Precondition;
use crate::redis::value::{format_score, member_json, member_text, score_json};
use crate::redis::{self, Command, Context, Reply, Source};
use crate::store::Tx;

/// One operation of the typed routes. Member texts are Redis strings (from the path, or a
/// body's JSON value as `/_upstash` maps it: a JSON string's contents, other JSON as text).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `GET /<key>/fields/<field>`: HGET.
    GetField(String),
    /// `PUT /<key>/fields/<field>`: HSET.
    PutField(String, String),
    /// `DELETE /<key>/fields/<field>`: HDEL.
    DeleteField(String),
    /// `GET /<key>/members/<member>`: SISMEMBER, or ZSCORE and ZRANK.
    GetMember(String),
    /// `PUT /<key>/members/<member>`: SADD, or ZADD with a score.
    PutMember(String, Option<f64>),
    /// `DELETE /<key>/members/<member>`: SREM or ZREM.
    DeleteMember(String),
    /// `POST /<key>/items`: RPUSH, or LPUSH at the head.
    Push { values: Vec<String>, head: bool },
    /// `DELETE /<key>/items/head|tail`: LPOP or RPOP.
    Pop { head: bool },
    /// `GET /<key>/items/<index>`: LINDEX.
    GetItem(i64),
    /// `PUT /<key>/items/<index>`: LSET.
    SetItem(i64, String),
    /// `GET /<key>/range`: LRANGE, or ZRANGE with its options.
    Range(RangeQuery),
}

/// `GET /<key>/range`'s query: `start`/`stop` (indexes or ranks; the default the whole
/// collection), or for a sorted set `by=score|lex` with `min`/`max` in Redis's syntax
/// (`(1`, `-inf`, `[a`, `-`, `+`), `rev`, and `offset`/`count`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeQuery {
    pub by: Option<String>,
    pub start: Option<String>,
    pub stop: Option<String>,
    pub min: Option<String>,
    pub max: Option<String>,
    pub rev: bool,
    pub offset: Option<i64>,
    pub count: Option<i64>,
}

/// What a typed write did: the key's state after it, and whether it made something new (a
/// field, a member, or the collection itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TypedWriteView {
    pub key: String,
    /// What the key holds (`hash`, `set`, `zset`, `list`); absent once the last member went.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Its members after the write (0: the key no longer exists).
    pub length: i64,
    /// The key's version after the write (absent when the key no longer exists).
    pub version: Option<i64>,
    /// A PUT: whether the field or member is new. A pop: the value taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Op {
    /// Whether the operation writes.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Op::GetField(_) | Op::GetMember(_) | Op::GetItem(_) | Op::Range(_)
        )
    }

    /// The Redis command this operation runs on `key`, for a key of type `kind` where it
    /// matters (members of sets and sorted sets).
    fn command(&self, key: &str, kind: Option<&str>) -> Command {
        let zset = kind == Some(ZSET);
        let (name, rest): (&str, Vec<String>) = match self {
            Op::GetField(field) => ("HGET", vec![field.clone()]),
            Op::PutField(field, value) => ("HSET", vec![field.clone(), value.clone()]),
            Op::DeleteField(field) => ("HDEL", vec![field.clone()]),
            Op::GetMember(member) if zset => ("ZSCORE", vec![member.clone()]),
            Op::GetMember(member) => ("SISMEMBER", vec![member.clone()]),
            Op::PutMember(member, Some(score)) => {
                ("ZADD", vec![format_score(*score), member.clone()])
            }
            Op::PutMember(member, None) => ("SADD", vec![member.clone()]),
            Op::DeleteMember(member) if zset => ("ZREM", vec![member.clone()]),
            Op::DeleteMember(member) => ("SREM", vec![member.clone()]),
            Op::Push { values, head } => (if *head { "LPUSH" } else { "RPUSH" }, values.clone()),
            Op::Pop { head } => (if *head { "LPOP" } else { "RPOP" }, Vec::new()),
            Op::GetItem(index) => ("LINDEX", vec![index.to_string()]),
            Op::SetItem(index, value) => ("LSET", vec![index.to_string(), value.clone()]),
            Op::Range(query) => return query.command(key, zset),
        };
        let mut args = vec![key.to_owned()];
        args.extend(rest);
        Command {
            name: name.to_owned(),
            args,
        }
    }
}

impl RangeQuery {
    fn command(&self, key: &str, zset: bool) -> Command {
        let mut args = vec![key.to_owned()];
        let by = self.by.as_deref().filter(|by| *by != "rank");
        match by {
            Some(by) => {
                let (low, high) = if by == "lex" {
                    ("-", "+")
                } else {
                    ("-inf", "+inf")
                };
                let min = self.min.clone().unwrap_or_else(|| low.to_owned());
                let max = self.max.clone().unwrap_or_else(|| high.to_owned());
                // ZRANGE … REV takes the higher bound first.
                if self.rev {
                    args.extend([max, min]);
                } else {
                    args.extend([min, max]);
                }
                args.push(format!("BY{}", by.to_ascii_uppercase()));
            }
            None => {
                args.push(self.start.clone().unwrap_or_else(|| "0".into()));
                args.push(self.stop.clone().unwrap_or_else(|| "-1".into()));
            }
        }
        if !zset {
            return Command {
                name: "LRANGE".into(),
                args,
            };
        }
        if self.rev {
            args.push("REV".into());
        }
        if self.offset.is_some() || self.count.is_some() {
            args.push("LIMIT".into());
            args.push(self.offset.unwrap_or(0).to_string());
            args.push(self.count.unwrap_or(-1).to_string());
        }
        if by != Some("lex") {
            args.push("WITHSCORES".into());
        }
        Command {
            name: "ZRANGE".into(),
            args,
        }
    }
}

/// Refuses a body field other than `fields`.
fn only_fields(body: &serde_json::Map<String, Value>, fields: &[&str]) -> Result<(), StoreError> {
    match body.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(unknown) => Err(StoreError::invalid(
            "invalid_body",
            format!(
                "unknown field {unknown:?}; this body takes {}",
                fields.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// `{"value": any JSON}` (PUT of a field or an item): the value as a Redis string.
pub fn value_body(body: &serde_json::Map<String, Value>) -> Result<String, StoreError> {
    only_fields(body, &["value"])?;
    body.get("value")
        .map(member_text)
        .ok_or_else(|| StoreError::invalid("invalid_body", "the body needs \"value\""))
}

/// `{}` (a set's member) or `{"score": n}` (a sorted set's; a number, `"inf"` or `"-inf"`).
pub fn member_body(body: &serde_json::Map<String, Value>) -> Result<Option<f64>, StoreError> {
    only_fields(body, &["score"])?;
    match body.get("score") {
        None => Ok(None),
        Some(score) => redis::value::score_from_json(score)
            .map(Some)
            .ok_or_else(|| {
                StoreError::invalid(
                    "invalid_body",
                    "\"score\" must be a number, \"inf\" or \"-inf\"",
                )
            }),
    }
}

/// `{"values": [v, …], "at": "tail"|"head"}` (a push; `at` defaults to the tail).
pub fn push_body(body: &serde_json::Map<String, Value>) -> Result<Op, StoreError> {
    only_fields(body, &["values", "at"])?;
    let values = match body.get("values") {
        Some(Value::Array(values)) if !values.is_empty() => {
            values.iter().map(member_text).collect()
        }
        _ => {
            return Err(StoreError::invalid(
                "invalid_body",
                "\"values\" must be a non-empty array",
            ));
        }
    };
    let head = match body.get("at").and_then(Value::as_str) {
        None if body.get("at").is_none() => false,
        Some("tail") => false,
        Some("head") => true,
        _ => {
            return Err(StoreError::invalid(
                "invalid_body",
                "\"at\" must be \"head\" or \"tail\"",
            ));
        }
    };
    Ok(Op::Push { values, head })
}

/// A Redis error reply as the REST API's error.
fn checked(reply: Reply, limit: usize) -> Result<Reply, StoreError> {
    let Reply::Error(text) = reply else {
        return Ok(reply);
    };
    Err(match text.as_str() {
        t if t.starts_with("WRONGTYPE") => StoreError::WrongType,
        "ERR no such key" => StoreError::NotFound { expired: false },
        t if t == redis::REPLY_TOO_LARGE => StoreError::ResponseTooLarge { limit },
        t => StoreError::invalid("invalid_argument", t.trim_start_matches("ERR ")),
    })
}

/// The type a live key holds, or `None`.
fn kind_of(src: &mut dyn Source, key: &str) -> Result<Option<String>, StoreError> {
    Ok(src.row(key)?.map(|row| row.kind))
}

/// Runs the reading `op` on `key` over `src`: the body of its answer.
pub fn read(
    src: &mut dyn Source,
    key: &str,
    op: &Op,
    context: &Context<'_>,
) -> Result<Value, StoreError> {
    let limit = context.budget.limit();
    let kind = kind_of(src, key)?;
    let not_found = || StoreError::NotFound { expired: false };
    let run = |src: &mut dyn Source, command: &Command| -> Result<Reply, StoreError> {
        checked(redis::read(src, command, context)?, limit)
    };
    Ok(match op {
        Op::GetField(field) => match run(src, &op.command(key, None))? {
            Reply::Str(value) => serde_json::json!({
                "key": key, "field": field, "value": member_json(&value),
            }),
            _ => return Err(not_found()),
        },
        Op::GetMember(member) => {
            let kind = kind.ok_or_else(not_found)?;
            if kind != SET && kind != ZSET {
                return Err(StoreError::WrongType);
            }
            match run(src, &op.command(key, Some(&kind)))? {
                Reply::Int(1) => serde_json::json!({ "key": key, "member": member }),
                Reply::Str(score) => {
                    let rank = Command {
                        name: "ZRANK".into(),
                        args: vec![key.to_owned(), member.clone()],
                    };
                    let rank = match run(src, &rank)? {
                        Reply::Int(rank) => rank,
                        _ => return Err(not_found()),
                    };
                    let score = redis::value::parse_float(&score).unwrap_or(f64::NAN);
                    serde_json::json!({
                        "key": key, "member": member, "score": score_json(score), "rank": rank,
                    })
                }
                _ => return Err(not_found()),
            }
        }
        Op::GetItem(index) => match run(src, &op.command(key, None))? {
            Reply::Str(value) => serde_json::json!({
                "key": key, "index": index, "value": member_json(&value),
            }),
            _ => return Err(not_found()),
        },
        Op::Range(query) => {
            let kind = kind.ok_or_else(not_found)?;
            let zset = match kind.as_str() {
                ZSET => true,
                crate::model::LIST => false,
                _ => return Err(StoreError::WrongType),
            };
            if !zset && (query.by.is_some() || query.min.is_some() || query.rev) {
                return Err(StoreError::invalid(
                    "invalid_parameter",
                    "a list's range takes start and stop (by, min, max and rev are for sorted sets)",
                ));
            }
            let lex = query.by.as_deref() == Some("lex");
            let items = match run(src, &op.command(key, Some(&kind)))? {
                Reply::Array(items) => items,
                _ => Vec::new(),
            };
            let texts: Vec<String> = items
                .into_iter()
                .filter_map(|item| match item {
                    Reply::Str(text) => Some(text),
                    _ => None,
                })
                .collect();
            let items: Vec<Value> = if zset && !lex {
                texts
                    .chunks(2)
                    .map(|pair| {
                        let score = redis::value::parse_float(&pair[1]).unwrap_or(f64::NAN);
                        serde_json::json!([member_json(&pair[0]), score_json(score)])
                    })
                    .collect()
            } else {
                texts.iter().map(|text| member_json(text)).collect()
            };
            serde_json::json!({ "key": key, "type": kind, "items": items })
        }
        _ => {
            return Err(StoreError::Internal("a write given to typed::read".into()));
        }
    })
}

impl Tx<'_> {
    /// Runs the writing `op` on `key` under `precondition` (If-Match: the key's version).
    pub fn typed_write(
        &mut self,
        key: &str,
        op: &Op,
        precondition: &Precondition,
        context: &Context<'_>,
    ) -> Result<TypedWriteView, StoreError> {
        let limit = context.budget.limit();
        let before = self.get(key)?;
        precondition.check(before.as_ref().map(|row| row.version))?;
        let kind = before.as_ref().map(|row| row.kind.clone());
        if matches!(
            op,
            Op::DeleteField(_) | Op::DeleteMember(_) | Op::Pop { .. }
        ) && before.is_none()
        {
            return Err(StoreError::NotFound { expired: false });
        }
        if let (Op::DeleteMember(_), Some(kind)) = (op, kind.as_deref())
            && kind != SET
            && kind != ZSET
        {
            return Err(StoreError::WrongType);
        }
        let reply = checked(
            redis::execute(self, &op.command(key, kind.as_deref()), context)?,
            limit,
        )?;
        let (created, value) = match (op, reply) {
            (Op::PutField(..) | Op::PutMember(..), Reply::Int(n)) => (Some(n > 0), None),
            (Op::DeleteField(_) | Op::DeleteMember(_), Reply::Int(0)) => {
                return Err(StoreError::NotFound { expired: false });
            }
            (Op::Pop { .. }, Reply::Str(text)) => (None, Some(member_json(&text))),
            (Op::Pop { .. }, _) => return Err(StoreError::NotFound { expired: false }),
            _ => (None, None),
        };
        let after = self.get(key)?;
        Ok(TypedWriteView {
            key: key.to_owned(),
            kind: after.as_ref().map(|row| row.kind.clone()),
            length: after.as_ref().and_then(|row| row.length).unwrap_or(0),
            version: after.as_ref().map(|row| row.version),
            created,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_runs_its_redis_command() {
        let line = |op: Op, kind: Option<&str>| {
            let command = op.command("k", kind);
            format!("{} {}", command.name, command.args.join(" "))
        };
        assert_eq!(
            line(Op::PutField("f".into(), "v".into()), None),
            "HSET k f v"
        );
        assert_eq!(
            line(Op::PutMember("m".into(), Some(1.5)), None),
            "ZADD k 1.5 m"
        );
        assert_eq!(line(Op::DeleteMember("m".into()), Some(ZSET)), "ZREM k m");
        assert_eq!(line(Op::DeleteMember("m".into()), Some(SET)), "SREM k m");
        assert_eq!(line(Op::Pop { head: true }, None), "LPOP k");
        let range = |query: RangeQuery, zset| {
            let command = query.command("k", zset);
            format!("{} {}", command.name, command.args.join(" "))
        };
        assert_eq!(range(RangeQuery::default(), false), "LRANGE k 0 -1");
        assert_eq!(
            range(RangeQuery::default(), true),
            "ZRANGE k 0 -1 WITHSCORES"
        );
        let by_score = RangeQuery {
            by: Some("score".into()),
            min: Some("(1".into()),
            rev: true,
            count: Some(10),
            ..RangeQuery::default()
        };
        assert_eq!(
            range(by_score, true),
            "ZRANGE k +inf (1 BYSCORE REV LIMIT 0 10 WITHSCORES"
        );
        assert_eq!(member_text(&serde_json::json!("a")), "a");
        assert_eq!(member_text(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(member_json("42"), serde_json::json!(42));
        let body = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            value_body(&body(serde_json::json!({"value": 1}))),
            Ok("1".into())
        );
        assert!(value_body(&body(serde_json::json!({}))).is_err());
        assert!(value_body(&body(serde_json::json!({"value": 1, "ttl": 2}))).is_err());
        assert_eq!(member_body(&body(serde_json::json!({}))), Ok(None));
        assert_eq!(
            member_body(&body(serde_json::json!({"score": "-inf"}))),
            Ok(Some(f64::NEG_INFINITY))
        );
        assert!(member_body(&body(serde_json::json!({"score": "x"}))).is_err());
        assert_eq!(
            push_body(&body(serde_json::json!({"values": ["a", 2], "at": "head"}))),
            Ok(Op::Push {
                values: vec!["a".into(), "2".into()],
                head: true
            })
        );
        assert!(push_body(&body(serde_json::json!({"values": []}))).is_err());
        assert!(push_body(&body(serde_json::json!({"values": [1], "at": "middle"}))).is_err());
    }
}
