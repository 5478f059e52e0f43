//! Redis commands over the store, for the Upstash-compatible endpoint (`/_upstash`; the
//! protocol itself, JSON arrays in and `{"result"}` out, is kv-server's). Each command runs as
//! store operations inside a write transaction ([`Tx`]), with the REST API's guarantees, and
//! answers a RESP2-shaped [`Reply`] with Redis's own error texts.
//!
//! Values: Redis strings and kvstore's JSON values map onto each other losslessly. A string
//! written is stored as the JSON it is when it is JSON other than a string literal that
//! serializes back to exactly the same text (`42`, `{"a":1}`, `null`), and as a JSON string
//! holding it otherwise (`hello`, `1e3`, `{"a": 1}` with its space, `"quoted"`). A value read
//! is a JSON string's contents, or any other value's compact JSON text. So an object the SDK
//! set is an object for `GET /<key>`, and a value the REST API set reads back as the SDK would
//! have stored it.

use serde_json::Value;

use crate::error::StoreError;
use crate::expiry::{self, MAX_EXPIRES_AT_MS};
use crate::precondition::Precondition;
use crate::request::{IncrArgs, SetArgs, SetExpiry};
use crate::store::{KeyScope, Lookup, Tx};

/// A command as the client sent it: its name (any case) and arguments as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub args: Vec<String>,
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    /// The status reply `OK` (sent as is, never base64-encoded).
    Ok,
    Int(i64),
    /// A bulk or status string other than `OK` (`PONG`, values, `string`).
    Str(String),
    Array(Vec<Reply>),
    /// An error reply: Redis's text, prefix included (`ERR …`, `WRONGTYPE …`).
    Error(String),
}

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

fn wrong_args(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// The commands this endpoint runs, and whether each writes.
const COMMANDS: &[(&str, bool)] = &[
    ("ping", false),
    ("echo", false),
    ("get", false),
    ("mget", false),
    ("exists", false),
    ("ttl", false),
    ("pttl", false),
    ("type", false),
    ("dbsize", false),
    ("strlen", false),
    ("set", true),
    ("setnx", true),
    ("setex", true),
    ("psetex", true),
    ("mset", true),
    ("getdel", true),
    ("getset", true),
    ("del", true),
    ("unlink", true),
    ("incr", true),
    ("incrby", true),
    ("decr", true),
    ("decrby", true),
    ("expire", true),
    ("pexpire", true),
    ("expireat", true),
    ("pexpireat", true),
    ("persist", true),
    ("flushdb", true),
    ("flushall", true),
];

impl Command {
    fn lower(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// Whether this endpoint knows the command (others answer `ERR unknown command`).
    pub fn is_known(&self) -> bool {
        let name = self.lower();
        COMMANDS.iter().any(|(n, _)| *n == name)
    }

    /// Whether the command writes (a read-only API key may not run it).
    pub fn is_write(&self) -> bool {
        let name = self.lower();
        COMMANDS.iter().any(|(n, write)| *n == name && *write)
    }

    /// The keys the command reaches (for API keys scoped to prefixes); `None`: every key
    /// (DBSIZE, FLUSHDB).
    pub fn keys(&self) -> Option<Vec<&str>> {
        let args = || self.args.iter().map(String::as_str);
        match self.lower().as_str() {
            "ping" | "echo" => Some(Vec::new()),
            "dbsize" | "flushdb" | "flushall" => None,
            "mget" | "exists" | "del" | "unlink" => Some(args().collect()),
            "mset" => Some(args().step_by(2).collect()),
            _ => Some(args().take(1).collect()),
        }
    }

    /// The `ERR unknown command` reply, as Redis words it.
    pub fn unknown(&self) -> Reply {
        let args: Vec<String> = self.args.iter().take(3).map(|a| format!("'{a}'")).collect();
        Reply::Error(format!(
            "ERR unknown command '{}', with args beginning with: {}",
            self.name,
            args.join(" ")
        ))
    }
}

/// A Redis string as the JSON text kvstore stores (see the module's doc). A string that is a
/// JSON string literal (`"quoted"`, quotes included) is stored as a string holding it too:
/// stored as the literal's contents, it would read back without its quotes.
pub fn stored_json(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value)
            if !value.is_string()
                && serde_json::to_string(&value).is_ok_and(|again| again == text) =>
        {
            text.to_owned()
        }
        _ => serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into()),
    }
}

/// A stored JSON text as the Redis string it reads as.
pub fn redis_string(stored: &str) -> String {
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::String(s)) => s,
        _ => stored.to_owned(),
    }
}

/// Runs `command` in `tx`. Errors of the command are error replies; a database failure is
/// the `Err` (the transaction rolls back and the request fails).
pub fn execute(tx: &mut Tx<'_>, command: &Command) -> Result<Reply, StoreError> {
    let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
    let name = command.lower();
    let result = match (name.as_str(), args.as_slice()) {
        ("ping", []) => Ok(Reply::Str("PONG".into())),
        ("ping", [message]) | ("echo", [message]) => Ok(Reply::Str((*message).to_owned())),
        ("get", [key]) => get(tx, key),
        ("mget", keys) if !keys.is_empty() => keys
            .iter()
            .map(|key| get(tx, key))
            .collect::<Result<Vec<_>, _>>()
            .map(Reply::Array),
        ("exists", keys) if !keys.is_empty() => {
            let mut found = 0;
            for key in keys {
                if tx.get(key)?.is_some() {
                    found += 1;
                }
            }
            Ok(Reply::Int(found))
        }
        ("ttl", [key]) => ttl(tx, key, false),
        ("pttl", [key]) => ttl(tx, key, true),
        ("type", [key]) => Ok(Reply::Str(
            if tx.get(key)?.is_some() {
                "string"
            } else {
                "none"
            }
            .into(),
        )),
        ("strlen", [key]) => Ok(Reply::Int(
            tx.get(key)?
                .map_or(0, |row| redis_string(&row.value).len() as i64),
        )),
        ("dbsize", []) => Ok(Reply::Int(crate::store::stats_in(tx)?)),
        ("set", [key, value, options @ ..]) => set(tx, key, value, options),
        ("setnx", [key, value]) => {
            let reply = set(tx, key, value, &["nx"])?;
            Ok(Reply::Int(i64::from(reply == Reply::Ok)))
        }
        ("setex", [key, seconds, value]) => set(tx, key, value, &["ex", seconds]),
        ("psetex", [key, ms, value]) => set(tx, key, value, &["px", ms]),
        ("mset", pairs) if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            for pair in pairs.chunks(2) {
                if let Reply::Error(e) = set(tx, pair[0], pair[1], &[])? {
                    return Ok(Reply::Error(e));
                }
            }
            Ok(Reply::Ok)
        }
        ("getdel", [key]) => {
            let old = get(tx, key)?;
            if old != Reply::Nil {
                tx.delete(key, &Precondition::default())?;
            }
            Ok(old)
        }
        ("getset", [key, value]) => {
            let old = get(tx, key)?;
            match set(tx, key, value, &[])? {
                Reply::Error(e) => Ok(Reply::Error(e)),
                _ => Ok(old),
            }
        }
        ("del" | "unlink", keys) if !keys.is_empty() => {
            let mut deleted = 0;
            for key in keys {
                if let Lookup::Live(_) = tx.delete(key, &Precondition::default())? {
                    deleted += 1;
                }
            }
            Ok(Reply::Int(deleted))
        }
        ("incr", [key]) => incr(tx, key, 1, false),
        ("decr", [key]) => incr(tx, key, 1, true),
        ("incrby" | "decrby", [key, by]) => match by.parse::<i64>() {
            Ok(by) => incr(tx, key, by, name == "decrby"),
            Err(_) => Ok(Reply::Error(NOT_AN_INTEGER.into())),
        },
        ("expire" | "pexpire" | "expireat" | "pexpireat", [key, when]) => {
            expire(tx, &name, key, when)
        }
        ("persist", [key]) => match tx.get(key)? {
            Some(row) if row.expires_at.is_some() => {
                tx.expire(key, None, &Precondition::default())?;
                Ok(Reply::Int(1))
            }
            _ => Ok(Reply::Int(0)),
        },
        ("flushdb" | "flushall", [] | [_]) => {
            tx.delete_keys(&KeyScope::All)?;
            Ok(Reply::Ok)
        }
        _ if !command.is_known() => Ok(command.unknown()),
        _ => Ok(wrong_args(&name)),
    };
    // A key the REST API refuses (empty, too long, reserved) is a command error, not a failed
    // request.
    match result {
        Err(StoreError::Invalid { message, .. }) => Ok(Reply::Error(format!("ERR {message}"))),
        other => other,
    }
}

fn get(tx: &mut Tx<'_>, key: &str) -> Result<Reply, StoreError> {
    Ok(tx
        .get(key)?
        .map_or(Reply::Nil, |row| Reply::Str(redis_string(&row.value))))
}

fn ttl(tx: &mut Tx<'_>, key: &str, millis: bool) -> Result<Reply, StoreError> {
    let now = tx.now();
    Ok(Reply::Int(match tx.get(key)? {
        None => -2,
        Some(row) if millis => expiry::ttl_remaining_ms(row.expires_at, now),
        Some(row) => match row.expires_at {
            None => -1,
            // Redis rounds TTL to the nearest second.
            Some(_) => expiry::ttl_remaining_secs(row.expires_at, now),
        },
    }))
}

/// A positive integer argument, or Redis's error.
fn positive(text: &str) -> Result<i64, Reply> {
    match text.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(Reply::Error(
            "ERR invalid expire time in 'set' command".into(),
        )),
        Err(_) => Err(Reply::Error(NOT_AN_INTEGER.into())),
    }
}

fn set(tx: &mut Tx<'_>, key: &str, value: &str, options: &[&str]) -> Result<Reply, StoreError> {
    let now = tx.now();
    let (mut nx, mut xx, mut get_old, mut expiry) = (false, false, false, SetExpiry::Persist);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let option = option.to_ascii_lowercase();
        let at = match option.as_str() {
            "nx" => {
                nx = true;
                continue;
            }
            "xx" => {
                xx = true;
                continue;
            }
            "get" => {
                get_old = true;
                continue;
            }
            "keepttl" => {
                expiry = SetExpiry::Keep;
                continue;
            }
            "ex" | "px" | "exat" | "pxat" => {
                let Some(n) = rest.next() else {
                    return Ok(Reply::Error(SYNTAX.into()));
                };
                match positive(n) {
                    Ok(n) => match option.as_str() {
                        "ex" => now.checked_add(n.saturating_mul(1000)),
                        "px" => now.checked_add(n),
                        "exat" => n.checked_mul(1000),
                        _ => Some(n),
                    },
                    Err(reply) => return Ok(reply),
                }
            }
            _ => return Ok(Reply::Error(SYNTAX.into())),
        };
        match at {
            Some(at) if at <= MAX_EXPIRES_AT_MS => expiry = SetExpiry::At(at),
            _ => {
                return Ok(Reply::Error(
                    "ERR invalid expire time in 'set' command".into(),
                ));
            }
        }
    }
    if nx && xx {
        return Ok(Reply::Error(SYNTAX.into()));
    }
    let old = if get_old { Some(get(tx, key)?) } else { None };
    let args = SetArgs {
        value: stored_json(value),
        expiry,
        precondition: Precondition {
            nx,
            xx,
            ..Precondition::default()
        },
    };
    match tx.set(key, &args) {
        Ok(_) => Ok(old.unwrap_or(Reply::Ok)),
        Err(StoreError::PreconditionFailed(_)) => Ok(old.unwrap_or(Reply::Nil)),
        Err(err) => Err(err),
    }
}

fn incr(tx: &mut Tx<'_>, key: &str, by: i64, decrement: bool) -> Result<Reply, StoreError> {
    let args = IncrArgs {
        by,
        decrement,
        expires_at_if_created: None,
    };
    match tx.incr(key, &args, &Precondition::default()) {
        Ok(row) => Ok(Reply::Int(crate::request::counter_value(&row.value)?)),
        Err(StoreError::NotAnInteger) => Ok(Reply::Error(NOT_AN_INTEGER.into())),
        Err(StoreError::Overflow) => Ok(Reply::Error(
            "ERR increment or decrement would overflow".into(),
        )),
        Err(err) => Err(err),
    }
}

fn expire(tx: &mut Tx<'_>, name: &str, key: &str, when: &str) -> Result<Reply, StoreError> {
    let Ok(n) = when.parse::<i64>() else {
        return Ok(Reply::Error(NOT_AN_INTEGER.into()));
    };
    let now = tx.now();
    let at = match name {
        "expire" => n.checked_mul(1000).and_then(|ms| now.checked_add(ms)),
        "pexpire" => now.checked_add(n),
        "expireat" => n.checked_mul(1000),
        _ => Some(n),
    };
    let Some(at) = at.filter(|at| *at <= MAX_EXPIRES_AT_MS) else {
        return Ok(Reply::Error(format!(
            "ERR invalid expire time in '{name}' command"
        )));
    };
    if tx.get(key)?.is_none() {
        return Ok(Reply::Int(0));
    }
    if at <= now {
        // A time in the past deletes the key, as in Redis.
        tx.delete(key, &Precondition::default())?;
    } else {
        tx.expire(key, Some(at), &Precondition::default())?;
    }
    Ok(Reply::Int(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_map_onto_json_values_losslessly() {
        for (text, stored) in [
            ("42", "42"),
            ("{\"a\":1}", "{\"a\":1}"),
            ("\"quoted\"", "\"\\\"quoted\\\"\""),
            ("hello", "\"hello\""),
            ("1e3", "\"1e3\""),
            ("{\"a\": 1}", "\"{\\\"a\\\": 1}\""),
            ("", "\"\""),
            ("null", "null"),
            ("12345678901234567890123", "12345678901234567890123"),
        ] {
            assert_eq!(stored_json(text), stored, "{text}");
            assert_eq!(redis_string(&stored_json(text)), text, "{text} reads back");
        }
        // A value the REST API set reads as its JSON text, or a string's contents.
        assert_eq!(redis_string("[1,2]"), "[1,2]");
        assert_eq!(redis_string("\"hé\""), "hé");
    }

    #[test]
    fn commands_know_their_keys_and_whether_they_write() {
        let cmd = |name: &str, args: &[&str]| Command {
            name: name.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        assert!(cmd("SET", &["k", "v"]).is_write());
        assert!(!cmd("Get", &["k"]).is_write());
        assert_eq!(
            cmd("mset", &["a", "1", "b", "2"]).keys(),
            Some(vec!["a", "b"])
        );
        assert_eq!(cmd("dbsize", &[]).keys(), None);
        assert!(!cmd("hset", &["h", "f", "v"]).is_known());
        assert_eq!(
            cmd("hset", &["h", "f", "v", "w"]).unknown(),
            Reply::Error(
                "ERR unknown command 'hset', with args beginning with: 'h' 'f' 'v'".into()
            )
        );
    }
}
