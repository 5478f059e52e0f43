//! Redis commands over the store, for the Upstash-compatible endpoint (`/_upstash`; the
//! protocol itself, JSON arrays in and `{"result"}` out, is kv-server's). Each command runs as
//! store operations through [`Tx`] methods (a write takes a version, as a REST write does), and
//! answers a RESP2-shaped [`Reply`] with Redis's own error texts.
//!
//! Values: Redis strings and kvstore's JSON values map onto each other losslessly. A string
//! written is stored as the JSON it is when it is JSON other than a string literal that
//! serializes back to exactly the same text (`42`, `{"a":1}`, `null`), and as a JSON string
//! holding it otherwise (`hello`, `1e3`, `{"a": 1}` with its space, `"quoted"`). A value read
//! is a JSON string's contents, or any other value's compact JSON text. So an object the SDK
//! set is an object for `GET /<key>`, and a value the REST API set reads back as the SDK would
//! have stored it.
//!
//! Read-only commands are written once, over a [`Source`]: a write transaction (when they run
//! beside writes, in a pipeline or `/multi-exec`) or a [`Snapshot`] on a read connection (a
//! pipeline of reads only never queues behind the writer).

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::backend::DbConnection;
use crate::cursor;
use crate::error::StoreError;
use crate::expiry::{self, MAX_EXPIRES_AT_MS};
use crate::glob::Glob;
use crate::key::validate_writable_key;
use crate::model::StoredValue;
use crate::precondition::Precondition;
use crate::request::{IncrArgs, MAX_PATTERN_BYTES, MAX_SCAN_LIMIT, SetArgs, SetExpiry};
use crate::store::{self, KeyScope, Lookup, ScanArgs, ScanPage, Tx};

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
const NOT_A_FLOAT: &str = "ERR value is not a valid float";
const SYNTAX: &str = "ERR syntax error";
const INFINITE_SUM: &str = "ERR increment would produce NaN or Infinity";

/// The longest string APPEND and SETRANGE make (Redis allows 512 MB; kvstore holds values
/// whole in memory while it writes them).
pub const MAX_STRING_BYTES: usize = 16 * 1024 * 1024;

/// The most keys KEYS answers; beyond, it asks for SCAN (Redis has no limit).
pub const MAX_KEYS_REPLY: usize = 100_000;

/// SCAN's page size when COUNT is not given (as Redis's).
const DEFAULT_SCAN_COUNT: usize = 10;

/// An integer argument or value as Redis reads one (`string2ll`): an optional `-`, then `0`
/// or digits without a leading zero, within 64 bits. No `+`, no spaces, no `-0`.
pub fn redis_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let first = digits.bytes().next()?;
    let well_formed = digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" && digits.len() == text.len() || (b'1'..=b'9').contains(&first));
    if !well_formed {
        return None;
    }
    text.parse::<i64>().ok()
}

fn wrong_args(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

fn error(text: &str) -> Reply {
    Reply::Error(text.to_owned())
}

/// How a command reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads a few keys by name (or none).
    Read,
    /// Reads through the key listing (KEYS, SCAN, RANDOMKEY, DBSIZE).
    Listing,
    Write,
}

/// The commands this endpoint runs.
const COMMANDS: &[(&str, Kind)] = &[
    ("ping", Kind::Read),
    ("echo", Kind::Read),
    ("time", Kind::Read),
    ("get", Kind::Read),
    ("mget", Kind::Read),
    ("getrange", Kind::Read),
    ("exists", Kind::Read),
    ("touch", Kind::Read),
    ("ttl", Kind::Read),
    ("pttl", Kind::Read),
    ("type", Kind::Read),
    ("strlen", Kind::Read),
    ("dbsize", Kind::Listing),
    ("keys", Kind::Listing),
    ("scan", Kind::Listing),
    ("randomkey", Kind::Listing),
    ("set", Kind::Write),
    ("setnx", Kind::Write),
    ("setex", Kind::Write),
    ("psetex", Kind::Write),
    ("mset", Kind::Write),
    ("msetnx", Kind::Write),
    ("getdel", Kind::Write),
    ("getset", Kind::Write),
    ("getex", Kind::Write),
    ("append", Kind::Write),
    ("setrange", Kind::Write),
    ("del", Kind::Write),
    ("unlink", Kind::Write),
    ("incr", Kind::Write),
    ("incrby", Kind::Write),
    ("incrbyfloat", Kind::Write),
    ("decr", Kind::Write),
    ("decrby", Kind::Write),
    ("expire", Kind::Write),
    ("pexpire", Kind::Write),
    ("expireat", Kind::Write),
    ("pexpireat", Kind::Write),
    ("persist", Kind::Write),
    ("rename", Kind::Write),
    ("renamenx", Kind::Write),
    ("copy", Kind::Write),
    ("flushdb", Kind::Write),
    ("flushall", Kind::Write),
];

/// The keys a command reaches, for API keys scoped to prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse<'a> {
    /// These keys, by name (none for PING, ECHO, TIME).
    Keys(Vec<&'a str>),
    /// Keys found by listing (KEYS, SCAN, RANDOMKEY): a scoped API key lists only its own
    /// prefixes.
    Listing,
    /// Every key, counted or deleted (DBSIZE, FLUSHDB, FLUSHALL): refused to a scoped key.
    Every,
}

impl Command {
    fn lower(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    fn kind(&self) -> Option<Kind> {
        COMMANDS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&self.name))
            .map(|(_, k)| *k)
    }

    /// Whether this endpoint knows the command (others answer `ERR unknown command`).
    pub fn is_known(&self) -> bool {
        self.kind().is_some()
    }

    /// Whether the command writes (a read-only API key may not run it).
    pub fn is_write(&self) -> bool {
        self.kind() == Some(Kind::Write)
    }

    /// Whether the command reads through the key listing rather than by key (it may read many
    /// rows: not one for a worker thread's inline read).
    pub fn is_listing(&self) -> bool {
        self.kind() == Some(Kind::Listing)
    }

    /// The keys the command reaches (for API keys scoped to prefixes).
    pub fn keys(&self) -> KeyUse<'_> {
        let args = || self.args.iter().map(String::as_str);
        match self.lower().as_str() {
            "ping" | "echo" | "time" => KeyUse::Keys(Vec::new()),
            "dbsize" | "flushdb" | "flushall" => KeyUse::Every,
            "keys" | "scan" | "randomkey" => KeyUse::Listing,
            "mget" | "exists" | "touch" | "del" | "unlink" => KeyUse::Keys(args().collect()),
            "mset" | "msetnx" => KeyUse::Keys(args().step_by(2).collect()),
            "rename" | "renamenx" | "copy" => KeyUse::Keys(args().take(2).collect()),
            _ => KeyUse::Keys(args().take(1).collect()),
        }
    }

    /// The `ERR unknown command` reply, as Redis 7 words it: each argument quoted and followed
    /// by a space while the list is under 128 bytes (the last one cut to fit), the name cut at
    /// 128 bytes.
    pub fn unknown(&self) -> Reply {
        let mut args = String::new();
        for arg in &self.args {
            if args.len() >= 128 {
                break;
            }
            args.push('\'');
            args.push_str(utf8_prefix(arg, 128 - (args.len() - 1)));
            args.push_str("' ");
        }
        let text = format!(
            "ERR unknown command '{}', with args beginning with: {args}",
            utf8_prefix(&self.name, 128)
        );
        // An error reply is one line: Redis turns line breaks into spaces.
        Reply::Error(text.replace(['\r', '\n'], " "))
    }
}

/// The longest prefix of `text` of at most `max` bytes that does not cut a character.
fn utf8_prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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

/// A stored JSON text as the Redis string it reads as. Stored texts are valid JSON, so only
/// a string literal (starting with `"`) needs parsing.
pub fn redis_string(stored: &str) -> String {
    if !stored.starts_with('"') {
        return stored.to_owned();
    }
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::String(s)) => s,
        _ => stored.to_owned(),
    }
}

/// Where read commands read: a write transaction ([`Tx`]) or a read connection
/// ([`Snapshot`]).
pub trait Source {
    fn now(&self) -> i64;
    /// The live row of `key`, if any.
    fn row(&mut self, key: &str) -> Result<Option<StoredValue>, StoreError>;
    /// A page of live keys: under `within`'s prefixes (a scoped API key's), or under
    /// `args.prefix` when `within` is `None`.
    fn page(&mut self, within: Option<&[String]>, args: &ScanArgs) -> Result<ScanPage, StoreError>;
    /// How many keys are live.
    fn live_keys(&mut self) -> Result<i64, StoreError>;
}

impl Source for Tx<'_> {
    fn now(&self) -> i64 {
        Tx::now(self)
    }

    fn row(&mut self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        Ok(self.get(key)?.map(|row| StoredValue {
            value: row.value,
            version: row.version,
            expires_at: row.expires_at,
        }))
    }

    fn page(&mut self, within: Option<&[String]>, args: &ScanArgs) -> Result<ScanPage, StoreError> {
        // A key range is no set of staged rows: on PostgreSQL a transaction of its own.
        self.needs_own_transaction()?;
        let now = Tx::now(self);
        let (conn, _) = self.parts();
        listing_page(conn, now, within, args)
    }

    fn live_keys(&mut self) -> Result<i64, StoreError> {
        store::stats_in(self)
    }
}

/// Reads on a read connection, at `now`.
pub struct Snapshot<'c> {
    pub conn: &'c mut DbConnection,
    pub now: i64,
}

impl Source for Snapshot<'_> {
    fn now(&self) -> i64 {
        self.now
    }

    fn row(&mut self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        Ok(match store::get(self.conn, self.now, key)? {
            Lookup::Live(row) => Some(row),
            Lookup::Missing | Lookup::Expired => None,
        })
    }

    fn page(&mut self, within: Option<&[String]>, args: &ScanArgs) -> Result<ScanPage, StoreError> {
        listing_page(self.conn, self.now, within, args)
    }

    fn live_keys(&mut self) -> Result<i64, StoreError> {
        store::live_keys(self.conn, self.now)
    }
}

fn listing_page(
    conn: &mut DbConnection,
    now: i64,
    within: Option<&[String]>,
    args: &ScanArgs,
) -> Result<ScanPage, StoreError> {
    match within {
        Some(prefixes) => store::scan_within(conn, now, prefixes, args),
        None => store::scan(conn, now, args),
    }
}

/// Runs `command` in `tx`; `within`: the prefixes of a scoped API key (KEYS, SCAN and
/// RANDOMKEY list only those). Errors of the command are error replies, and a command that
/// fails writes nothing; a database failure is the `Err` (the transaction rolls back and the
/// request fails).
pub fn execute(
    tx: &mut Tx<'_>,
    command: &Command,
    within: Option<&[String]>,
) -> Result<Reply, StoreError> {
    if !command.is_write() {
        return read(tx, command, within);
    }
    // Every key is checked before anything is written: a command that fails on its second
    // key must not have written its first.
    if let KeyUse::Keys(keys) = command.keys() {
        for key in keys {
            if let Err(err) = validate_writable_key(key) {
                return invalid_as_reply(Err(err));
            }
        }
    }
    invalid_as_reply(write(tx, command))
}

/// Runs `commands` in `tx`, in order (see [`execute`]); a refused command answers its reply.
pub fn execute_all(
    tx: &mut Tx<'_>,
    commands: &[Result<Command, Reply>],
    within: Option<&[String]>,
) -> Result<Vec<Reply>, StoreError> {
    let runnable = || commands.iter().filter_map(|c| c.as_ref().ok());
    if runnable().any(|c| matches!(c.keys(), KeyUse::Listing | KeyUse::Every)) {
        // A key range is no set of staged rows. Said before any row is read: on PostgreSQL
        // the writer's discovery run stops a request at the first row it asks for.
        tx.needs_own_transaction()?;
    }
    commands
        .iter()
        .map(|command| match command {
            Ok(command) => execute(tx, command, within),
            Err(reply) => Ok(reply.clone()),
        })
        .collect()
}

/// Runs the read-only `command` on `source` (a write command answers an error: run it with
/// [`execute`]).
pub fn read<S: Source>(
    source: &mut S,
    command: &Command,
    within: Option<&[String]>,
) -> Result<Reply, StoreError> {
    invalid_as_reply(read_command(source, command, within))
}

/// A key the REST API refuses (empty, too long, reserved) or a malformed cursor is a command
/// error, not a failed request.
fn invalid_as_reply(result: Result<Reply, StoreError>) -> Result<Reply, StoreError> {
    match result {
        Err(StoreError::Invalid { message, .. }) => Ok(Reply::Error(format!("ERR {message}"))),
        other => other,
    }
}

fn read_command<S: Source>(
    src: &mut S,
    command: &Command,
    within: Option<&[String]>,
) -> Result<Reply, StoreError> {
    let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
    let name = command.lower();
    match (name.as_str(), args.as_slice()) {
        ("ping", []) => Ok(Reply::Str("PONG".into())),
        ("ping", [message]) | ("echo", [message]) => Ok(Reply::Str((*message).to_owned())),
        ("time", []) => {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Ok(Reply::Array(vec![
                Reply::Str(since.as_secs().to_string()),
                Reply::Str(since.subsec_micros().to_string()),
            ]))
        }
        ("get", [key]) => get(src, key),
        ("mget", keys) if !keys.is_empty() => keys
            .iter()
            .map(|key| get(src, key))
            .collect::<Result<Vec<_>, _>>()
            .map(Reply::Array),
        ("getrange", [key, start, end]) => {
            let (Some(start), Some(end)) = (redis_int(start), redis_int(end)) else {
                return Ok(error(NOT_AN_INTEGER));
            };
            let text = src.row(key)?.map(|row| redis_string(&row.value));
            let text = text.unwrap_or_default();
            Ok(match byte_range(text.len(), start, end) {
                None => Reply::Str(String::new()),
                Some((from, to)) => match text.get(from..to) {
                    Some(part) => Reply::Str(part.to_owned()),
                    None => error(
                        "ERR the range would split a UTF-8 character (kvstore values are UTF-8 text)",
                    ),
                },
            })
        }
        ("exists" | "touch", keys) if !keys.is_empty() => {
            let mut found = 0;
            for key in keys {
                if src.row(key)?.is_some() {
                    found += 1;
                }
            }
            Ok(Reply::Int(found))
        }
        ("ttl", [key]) => ttl(src, key, false),
        ("pttl", [key]) => ttl(src, key, true),
        ("type", [key]) => Ok(Reply::Str(
            if src.row(key)?.is_some() {
                "string"
            } else {
                "none"
            }
            .into(),
        )),
        ("strlen", [key]) => Ok(Reply::Int(
            src.row(key)?
                .map_or(0, |row| redis_string(&row.value).len() as i64),
        )),
        ("dbsize", []) => Ok(Reply::Int(src.live_keys()?)),
        ("keys", [pattern]) => keys(src, pattern, within),
        ("scan", [cursor, options @ ..]) => scan(src, cursor, options, within),
        ("randomkey", []) => random_key(src, within),
        _ if !command.is_known() => Ok(command.unknown()),
        _ if command.is_write() => Ok(Reply::Error(format!(
            "ERR '{name}' writes: it runs in a write transaction"
        ))),
        _ => Ok(wrong_args(&name)),
    }
}

fn write(tx: &mut Tx<'_>, command: &Command) -> Result<Reply, StoreError> {
    let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
    let name = command.lower();
    match (name.as_str(), args.as_slice()) {
        ("set", [key, value, options @ ..]) => set(tx, key, value, options),
        ("setnx", [key, value]) => {
            let reply = set(tx, key, value, &["nx"])?;
            Ok(Reply::Int(i64::from(reply == Reply::Ok)))
        }
        ("setex", [key, seconds, value]) => set_as(tx, "setex", key, value, &["ex", seconds]),
        ("psetex", [key, ms, value]) => set_as(tx, "psetex", key, value, &["px", ms]),
        ("mset", pairs) if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            for pair in pairs.chunks(2) {
                set(tx, pair[0], pair[1], &[])?;
            }
            Ok(Reply::Ok)
        }
        ("msetnx", pairs) if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            for pair in pairs.chunks(2) {
                if tx.get(pair[0])?.is_some() {
                    return Ok(Reply::Int(0));
                }
            }
            for pair in pairs.chunks(2) {
                set(tx, pair[0], pair[1], &[])?;
            }
            Ok(Reply::Int(1))
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
            set(tx, key, value, &[])?;
            Ok(old)
        }
        ("getex", [key, options @ ..]) => getex(tx, key, options),
        ("append", [key, value]) => {
            let old = tx.get(key)?.map(|row| redis_string(&row.value));
            let mut text = old.unwrap_or_default();
            if text.len() + value.len() > MAX_STRING_BYTES {
                return Ok(error(TOO_LONG));
            }
            text.push_str(value);
            set(tx, key, &text, &["keepttl"])?;
            Ok(Reply::Int(text.len() as i64))
        }
        ("setrange", [key, offset, value]) => setrange(tx, key, offset, value),
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
        ("incrby" | "decrby", [key, by]) => match redis_int(by) {
            // Its negation does not fit (Redis 7's text).
            Some(i64::MIN) if name == "decrby" => Ok(error("ERR decrement would overflow")),
            Some(by) => incr(tx, key, by, name == "decrby"),
            None => Ok(error(NOT_AN_INTEGER)),
        },
        ("incrbyfloat", [key, by]) => incr_by_float(tx, key, by),
        ("expire" | "pexpire" | "expireat" | "pexpireat", [key, when, options @ ..]) => {
            expire(tx, &name, key, when, options)
        }
        ("persist", [key]) => match tx.get(key)? {
            Some(row) if row.expires_at.is_some() => {
                tx.expire(key, None, &Precondition::default())?;
                Ok(Reply::Int(1))
            }
            _ => Ok(Reply::Int(0)),
        },
        ("rename", [from, to]) => rename(tx, from, to, false),
        ("renamenx", [from, to]) => rename(tx, from, to, true),
        ("copy", [from, to, options @ ..]) => copy(tx, from, to, options),
        ("flushdb" | "flushall", modes) => {
            // ASYNC and SYNC are the same here: the flush is one transaction.
            let mode_ok =
                |m: &&str| m.eq_ignore_ascii_case("async") || m.eq_ignore_ascii_case("sync");
            if modes.len() > 1 || !modes.iter().all(mode_ok) {
                return Ok(error(SYNTAX));
            }
            tx.delete_keys(&KeyScope::All)?;
            Ok(Reply::Ok)
        }
        _ => Ok(wrong_args(&name)),
    }
}

const TOO_LONG: &str = "ERR string exceeds maximum allowed size (16 MiB in kvstore)";

fn get<S: Source>(src: &mut S, key: &str) -> Result<Reply, StoreError> {
    Ok(src
        .row(key)?
        .map_or(Reply::Nil, |row| Reply::Str(redis_string(&row.value))))
}

fn ttl<S: Source>(src: &mut S, key: &str, millis: bool) -> Result<Reply, StoreError> {
    let now = src.now();
    Ok(Reply::Int(match src.row(key)? {
        None => -2,
        Some(row) if millis => expiry::ttl_remaining_ms(row.expires_at, now),
        Some(row) => match row.expires_at {
            None => -1,
            // Redis rounds TTL to the nearest second.
            Some(_) => expiry::ttl_remaining_secs(row.expires_at, now),
        },
    }))
}

/// GETRANGE's byte range `[from, to)` of a string of `len` bytes, by Redis's rules (negative
/// indexes count from the end; `end` is inclusive and clamped), or `None`: empty.
pub fn byte_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some((usize::try_from(start).ok()?, usize::try_from(end + 1).ok()?))
}

/// An expiry option's time (`ex`, `px`, `exat`, `pxat` and its argument) as unix ms, or
/// Redis's error for `command`.
fn expiry_at(now: i64, option: &str, n: &str, command: &str) -> Result<i64, Reply> {
    let invalid = || Reply::Error(format!("ERR invalid expire time in '{command}' command"));
    let n = redis_int(n).ok_or_else(|| error(NOT_AN_INTEGER))?;
    if n <= 0 {
        return Err(invalid());
    }
    let at = match option {
        "ex" => n.checked_mul(1000).and_then(|ms| now.checked_add(ms)),
        "px" => now.checked_add(n),
        "exat" => n.checked_mul(1000),
        _ => Some(n),
    };
    at.filter(|at| *at <= MAX_EXPIRES_AT_MS).ok_or_else(invalid)
}

fn set(tx: &mut Tx<'_>, key: &str, value: &str, options: &[&str]) -> Result<Reply, StoreError> {
    set_as(tx, "set", key, value, options)
}

/// SET with `options`, its errors worded for `command` (SETEX and PSETEX are SETs too).
fn set_as(
    tx: &mut Tx<'_>,
    command: &str,
    key: &str,
    value: &str,
    options: &[&str],
) -> Result<Reply, StoreError> {
    let now = tx.now();
    let (mut nx, mut xx, mut get_old, mut expiry) = (false, false, false, None);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let option = option.to_ascii_lowercase();
        let this = match option.as_str() {
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
            "keepttl" => SetExpiry::Keep,
            "ex" | "px" | "exat" | "pxat" => {
                let Some(n) = rest.next() else {
                    return Ok(error(SYNTAX));
                };
                match expiry_at(now, &option, n, command) {
                    Ok(at) => SetExpiry::At(at),
                    Err(reply) => return Ok(reply),
                }
            }
            _ => return Ok(error(SYNTAX)),
        };
        // One expiry option at most, as in Redis.
        if expiry.replace(this).is_some() {
            return Ok(error(SYNTAX));
        }
    }
    if nx && xx {
        return Ok(error(SYNTAX));
    }
    let old = if get_old { Some(get(tx, key)?) } else { None };
    let args = SetArgs {
        value: stored_json(value),
        expiry: expiry.unwrap_or(SetExpiry::Persist),
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

fn getex(tx: &mut Tx<'_>, key: &str, options: &[&str]) -> Result<Reply, StoreError> {
    let now = tx.now();
    // `None`: leave the expiry; `Some(None)`: PERSIST; `Some(Some(at))`: expire at.
    let mut change: Option<Option<i64>> = None;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let option = option.to_ascii_lowercase();
        let this = match option.as_str() {
            "persist" => None,
            "ex" | "px" | "exat" | "pxat" => {
                let Some(n) = rest.next() else {
                    return Ok(error(SYNTAX));
                };
                match expiry_at(now, &option, n, "getex") {
                    Ok(at) => Some(at),
                    Err(reply) => return Ok(reply),
                }
            }
            _ => return Ok(error(SYNTAX)),
        };
        if change.replace(this).is_some() {
            return Ok(error(SYNTAX));
        }
    }
    let Some(row) = tx.get(key)? else {
        return Ok(Reply::Nil);
    };
    let value = Reply::Str(redis_string(&row.value));
    match change {
        None => {}
        Some(None) if row.expires_at.is_none() => {}
        // A time in the past (EXAT, PXAT) deletes the key, as in Redis.
        Some(Some(at)) if at <= now => {
            tx.delete(key, &Precondition::default())?;
        }
        Some(at) => {
            tx.expire(key, at, &Precondition::default())?;
        }
    }
    Ok(value)
}

fn setrange(tx: &mut Tx<'_>, key: &str, offset: &str, value: &str) -> Result<Reply, StoreError> {
    let Some(offset) = redis_int(offset) else {
        return Ok(error(NOT_AN_INTEGER));
    };
    let Ok(offset) = usize::try_from(offset) else {
        return Ok(error("ERR offset is out of range"));
    };
    if offset.saturating_add(value.len()) > MAX_STRING_BYTES {
        return Ok(error(TOO_LONG));
    }
    let old = tx.get(key)?.map(|row| redis_string(&row.value));
    let old = old.unwrap_or_default();
    if value.is_empty() {
        // Nothing changes, and a missing key is not created (as in Redis).
        return Ok(Reply::Int(old.len() as i64));
    }
    let Some(text) = splice(&old, offset, value) else {
        return Ok(error(
            "ERR the offset would split a UTF-8 character (kvstore values are UTF-8 text)",
        ));
    };
    let len = text.len() as i64;
    set(tx, key, &text, &["keepttl"])?;
    Ok(Reply::Int(len))
}

/// SETRANGE's result: `old` with `value` written over its bytes from `offset`, padded with
/// zero bytes when `old` is shorter; `None` when that would cut a UTF-8 character of `old`.
pub fn splice(old: &str, offset: usize, value: &str) -> Option<String> {
    let end = offset.checked_add(value.len())?;
    let mut text = String::with_capacity(old.len().max(end));
    if offset <= old.len() {
        text.push_str(old.get(..offset)?);
    } else {
        text.push_str(old);
        text.extend(std::iter::repeat_n('\0', offset - old.len()));
    }
    text.push_str(value);
    if end < old.len() {
        text.push_str(old.get(end..)?);
    }
    Some(text)
}

fn incr(tx: &mut Tx<'_>, key: &str, by: i64, decrement: bool) -> Result<Reply, StoreError> {
    let args = IncrArgs {
        by,
        decrement,
        expires_at_if_created: None,
    };
    match tx.incr(key, &args, &Precondition::default()) {
        Ok(row) => Ok(Reply::Int(crate::request::counter_value(&row.value)?)),
        // The REST API's counters are JSON integers; Redis's are strings that read as one,
        // such as a JSON string "5" set through the REST API. Or the sum overflowed.
        Err(StoreError::NotAnInteger | StoreError::Overflow) => {
            let current = tx.get(key)?.map(|row| redis_string(&row.value));
            let Some(n) = current.as_deref().and_then(redis_int) else {
                return Ok(error(NOT_AN_INTEGER));
            };
            let delta = if decrement {
                by.checked_neg()
            } else {
                Some(by)
            };
            let Some(sum) = delta.and_then(|d| n.checked_add(d)) else {
                return Ok(error("ERR increment or decrement would overflow"));
            };
            set(tx, key, &sum.to_string(), &["keepttl"])?;
            Ok(Reply::Int(sum))
        }
        Err(err) => Err(err),
    }
}

/// A float argument or value as Redis reads it (`strtold`): the whole text, no spaces; `inf`
/// and `infinity` (signed or not) are floats, NaN is not, and neither is a finite text beyond
/// a double's range (Redis's `long double` holds it; kvstore's double cannot).
fn parse_float(text: &str) -> Option<f64> {
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let x = text.parse::<f64>().ok().filter(|x| !x.is_nan())?;
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let infinity_literal = matches!(unsigned.to_ascii_lowercase().as_str(), "inf" | "infinity");
    (x.is_finite() || infinity_literal).then_some(x)
}

/// How INCRBYFLOAT prints a result: plain decimal (no exponent), with the fewest significant
/// digits that give back the same double, or up to 15 that come within one unit in the last
/// place of it. Redis adds in `long double` and prints 17 decimals, which hides the double's
/// last-place error the same way: 0.1 + 0.2 is "0.3", not "0.30000000000000004".
pub fn format_float(x: f64) -> String {
    let x = if x == 0.0 { 0.0 } else { x }; // no "-0"
    let ulps = |a: f64, b: f64| {
        if a.is_sign_negative() != b.is_sign_negative() {
            return u64::MAX;
        }
        a.to_bits().abs_diff(b.to_bits())
    };
    for digits in 1..=17usize {
        let Ok(candidate) = format!("{:.*e}", digits - 1, x).parse::<f64>() else {
            break;
        };
        if candidate == x || (digits <= 15 && ulps(candidate, x) <= 1) {
            return at_most_17_decimals(format!("{candidate}"), candidate);
        }
    }
    at_most_17_decimals(format!("{x}"), x)
}

/// Redis prints 17 decimals at most (`%.17Lf`, trailing zeros cut): 1e-20 is "0".
fn at_most_17_decimals(text: String, x: f64) -> String {
    match text.split_once('.') {
        Some((_, decimals)) if decimals.len() > 17 => {
            let rounded = format!("{x:.17}");
            let rounded = rounded.trim_end_matches('0').trim_end_matches('.');
            match rounded {
                "-0" => "0".to_owned(),
                _ => rounded.to_owned(),
            }
        }
        _ => text,
    }
}

fn incr_by_float(tx: &mut Tx<'_>, key: &str, by: &str) -> Result<Reply, StoreError> {
    // The stored value is read first, as in Redis; an infinite one is a float too, whose sum
    // is then refused.
    let current = match tx.get(key)? {
        None => Some(0.0),
        Some(row) => parse_float(&redis_string(&row.value)),
    };
    let (Some(current), Some(by)) = (current, parse_float(by)) else {
        return Ok(error(NOT_A_FLOAT));
    };
    let sum = current + by;
    if !sum.is_finite() {
        return Ok(error(INFINITE_SUM));
    }
    let text = format_float(sum);
    // Stored as the JSON number it prints as (see `stored_json`): `GET /<key>` shows a number.
    set(tx, key, &text, &["keepttl"])?;
    Ok(Reply::Str(text))
}

fn expire(
    tx: &mut Tx<'_>,
    name: &str,
    key: &str,
    when: &str,
    options: &[&str],
) -> Result<Reply, StoreError> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        match option.to_ascii_lowercase().as_str() {
            "nx" => nx = true,
            "xx" => xx = true,
            "gt" => gt = true,
            "lt" => lt = true,
            _ => return Ok(Reply::Error(format!("ERR Unsupported option {option}"))),
        }
    }
    if nx && (xx || gt || lt) {
        return Ok(error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Ok(error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let Some(n) = redis_int(when) else {
        return Ok(error(NOT_AN_INTEGER));
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
    let Some(row) = tx.get(key)? else {
        return Ok(Reply::Int(0));
    };
    // GT and LT take "no expiry" as an infinite TTL.
    let refused = match row.expires_at {
        None => xx || gt,
        Some(current) => nx || (gt && at <= current) || (lt && at >= current),
    };
    if refused {
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

/// RENAME / RENAMENX: the value and its expiry move to `to`.
fn rename(tx: &mut Tx<'_>, from: &str, to: &str, nx: bool) -> Result<Reply, StoreError> {
    let Some(row) = tx.get(from)? else {
        return Ok(error("ERR no such key"));
    };
    let done = if nx { Reply::Int(1) } else { Reply::Ok };
    if from == to {
        return Ok(if nx { Reply::Int(0) } else { Reply::Ok });
    }
    if nx && tx.get(to)?.is_some() {
        return Ok(Reply::Int(0));
    }
    put_copy(tx, to, &row.value, row.expires_at)?;
    tx.delete(from, &Precondition::default())?;
    Ok(done)
}

/// COPY source destination [DB 0] [REPLACE]: the value and its expiry.
fn copy(tx: &mut Tx<'_>, from: &str, to: &str, options: &[&str]) -> Result<Reply, StoreError> {
    let mut replace = false;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match option.to_ascii_lowercase().as_str() {
            "replace" => replace = true,
            "db" => match rest.next().map(|db| redis_int(db)) {
                Some(Some(0)) => {}
                Some(Some(_)) => return Ok(error("ERR DB index is out of range")),
                Some(None) => return Ok(error(NOT_AN_INTEGER)),
                None => return Ok(error(SYNTAX)),
            },
            _ => return Ok(error(SYNTAX)),
        }
    }
    if from == to {
        return Ok(Reply::Int(0));
    }
    let Some(row) = tx.get(from)? else {
        return Ok(Reply::Int(0));
    };
    if !replace && tx.get(to)?.is_some() {
        return Ok(Reply::Int(0));
    }
    put_copy(tx, to, &row.value, row.expires_at)?;
    Ok(Reply::Int(1))
}

/// Writes the stored JSON text `value` under `key`, expiring at `expires_at`.
fn put_copy(
    tx: &mut Tx<'_>,
    key: &str,
    value: &str,
    expires_at: Option<i64>,
) -> Result<(), StoreError> {
    let args = SetArgs {
        value: value.to_owned(),
        expiry: expires_at.map_or(SetExpiry::Persist, SetExpiry::At),
        precondition: Precondition::default(),
    };
    tx.set(key, &args).map(|_| ())
}

/// The characters of `pattern` before its first special one: every key it matches starts
/// with them, so the listing can start there.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '\\'))
        .collect()
}

/// Where a listing of `pattern` looks: under its literal prefix when that is in reach (no
/// scope, or inside one of the scope's prefixes), else within the scope's prefixes.
fn listing_scope<'w>(
    pattern: Option<&str>,
    within: Option<&'w [String]>,
) -> (Option<&'w [String]>, String) {
    let prefix = pattern.map(literal_prefix).unwrap_or_default();
    match within {
        Some(prefixes) if !prefixes.iter().any(|p| prefix.starts_with(p.as_str())) => {
            (Some(prefixes), String::new())
        }
        _ => (None, prefix),
    }
}

fn pattern_checked(pattern: &str) -> Result<Glob, Reply> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(Reply::Error(format!(
            "ERR the pattern is {} bytes; the limit is {MAX_PATTERN_BYTES}",
            pattern.len()
        )));
    }
    Ok(Glob::new(pattern))
}

fn keys<S: Source>(
    src: &mut S,
    pattern: &str,
    within: Option<&[String]>,
) -> Result<Reply, StoreError> {
    let glob = match pattern_checked(pattern) {
        Ok(glob) => glob,
        Err(reply) => return Ok(reply),
    };
    let (within, prefix) = listing_scope(Some(pattern), within);
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = src.page(
            within,
            &ScanArgs {
                prefix: prefix.clone(),
                pattern: Some(glob.clone()),
                limit: MAX_SCAN_LIMIT,
                after,
            },
        )?;
        found.extend(page.rows.into_iter().map(|row| Reply::Str(row.key)));
        if found.len() > MAX_KEYS_REPLY {
            return Ok(Reply::Error(format!(
                "ERR KEYS matches more than {MAX_KEYS_REPLY} keys: use SCAN"
            )));
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(Reply::Array(found)),
        }
    }
}

fn scan<S: Source>(
    src: &mut S,
    cursor: &str,
    options: &[&str],
    within: Option<&[String]>,
) -> Result<Reply, StoreError> {
    let Ok(after) = cursor::decode_decimal(cursor) else {
        return Ok(error("ERR invalid cursor"));
    };
    let (mut pattern, mut count, mut strings) = (None, DEFAULT_SCAN_COUNT, true);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let Some(arg) = rest.next() else {
            return Ok(error(SYNTAX));
        };
        match option.to_ascii_lowercase().as_str() {
            "match" => pattern = Some(*arg),
            "count" => match redis_int(arg) {
                Some(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => return Ok(error(SYNTAX)),
                None => return Ok(error(NOT_AN_INTEGER)),
            },
            // Every key holds a string.
            "type" => strings = arg.eq_ignore_ascii_case("string"),
            _ => return Ok(error(SYNTAX)),
        }
    }
    let glob = match pattern.map(pattern_checked).transpose() {
        Ok(glob) => glob,
        Err(reply) => return Ok(reply),
    };
    if !strings {
        return Ok(Reply::Array(vec![
            Reply::Str("0".into()),
            Reply::Array(Vec::new()),
        ]));
    }
    let count = count.min(MAX_SCAN_LIMIT);
    let (within, prefix) = listing_scope(pattern, within);
    // One more than asked: a page that ends the listing says so ("0") at once.
    let page = src.page(
        within,
        &ScanArgs {
            prefix,
            pattern: glob,
            limit: count + 1,
            after,
        },
    )?;
    let mut rows = page.rows;
    let next = if rows.len() > count {
        rows.truncate(count);
        rows.last().map(|row| row.key.clone())
    } else {
        page.next_after
    };
    Ok(Reply::Array(vec![
        Reply::Str(next.map_or_else(|| "0".to_owned(), |key| cursor::encode_decimal(&key))),
        Reply::Array(rows.into_iter().map(|row| Reply::Str(row.key)).collect()),
    ]))
}

/// A random number (std's hasher keys are random per process and per call).
fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// RANDOMKEY: a key from the page of keys after a random point of the key space (so not
/// uniform: a key after a gap in the key space is picked more often), or nil.
fn random_key<S: Source>(src: &mut S, within: Option<&[String]>) -> Result<Reply, StoreError> {
    const PAGE: usize = 64;
    let r = random();
    // A printable ASCII string of four characters.
    let point: String = (0..4)
        .map(|i| char::from(b' ' + ((r >> (i * 8)) % 95) as u8))
        .collect();
    let mut page = src.page(
        within,
        &ScanArgs {
            prefix: String::new(),
            pattern: None,
            limit: PAGE,
            after: Some(point),
        },
    )?;
    if page.rows.is_empty() {
        page = src.page(
            within,
            &ScanArgs {
                prefix: String::new(),
                pattern: None,
                limit: PAGE,
                after: None,
            },
        )?;
    }
    let n = page.rows.len();
    if n == 0 {
        return Ok(Reply::Nil);
    }
    let pick = usize::try_from((r >> 32) % n as u64).unwrap_or(0);
    Ok(page
        .rows
        .into_iter()
        .nth(pick)
        .map_or(Reply::Nil, |row| Reply::Str(row.key)))
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
        assert!(cmd("incrbyfloat", &["k", "1"]).is_write());
        assert!(!cmd("touch", &["k"]).is_write());
        assert!(cmd("SCAN", &["0"]).is_listing());
        assert_eq!(
            cmd("mset", &["a", "1", "b", "2"]).keys(),
            KeyUse::Keys(vec!["a", "b"])
        );
        assert_eq!(
            cmd("msetnx", &["a", "1", "b", "2"]).keys(),
            KeyUse::Keys(vec!["a", "b"])
        );
        assert_eq!(
            cmd("copy", &["a", "b", "replace"]).keys(),
            KeyUse::Keys(vec!["a", "b"])
        );
        assert_eq!(cmd("keys", &["*"]).keys(), KeyUse::Listing);
        assert_eq!(cmd("dbsize", &[]).keys(), KeyUse::Every);
        assert!(!cmd("hset", &["h", "f", "v"]).is_known());
        assert_eq!(
            cmd("hset", &["h", "f", "v", "w"]).unknown(),
            Reply::Error(
                "ERR unknown command 'hset', with args beginning with: 'h' 'f' 'v' 'w' ".into()
            )
        );
        // Arguments while the list is under 128 bytes, the last one cut to fit.
        let long = "x".repeat(200);
        let Reply::Error(text) = cmd("hset", &["a", &long, "b"]).unknown() else {
            panic!("an error");
        };
        let args = text.split_once("beginning with: ").expect("args").1;
        assert_eq!(args, format!("'a' '{}' ", "x".repeat(124)));
        assert_eq!(args.len(), 4 + 1 + 124 + 2);
    }

    #[test]
    fn integers_are_read_as_redis_reads_them() {
        for (text, n) in [
            ("0", 0),
            ("7", 7),
            ("-7", -7),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(redis_int(text), Some(n), "{text:?}");
        }
        for bad in [
            "",
            "-",
            "+5",
            "007",
            "-0",
            "00",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "9223372036854775808",
        ] {
            assert_eq!(redis_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn incrbyfloat_prints_like_redis() {
        for (x, text) in [
            (0.1 + 0.2, "0.3"),
            (10.5 + 0.1, "10.6"),
            (2.5, "2.5"),
            (5.0e3 + 2.0e2, "5200"),
            (3.0, "3"),
            (-0.0, "0"),
            (-1.5, "-1.5"),
            (1e21, "1000000000000000000000"),
            (1.0 / 3.0, "0.3333333333333333"),
            (0.30000000000000004 + 1e-17, "0.3"),
            // 17 decimals at most, as Redis's %.17Lf.
            (1e-20, "0"),
            (-1e-20, "0"),
            (1.2345678901234567e-10, "0.00000000012345679"),
        ] {
            assert_eq!(format_float(x), text, "{x:?}");
        }
        assert_eq!(parse_float("5.0e3"), Some(5000.0));
        assert_eq!(parse_float("inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("-Infinity"), Some(f64::NEG_INFINITY));
        for bad in ["", " 1", "1 ", "abc", "--inf", "NaN", "1e400"] {
            assert_eq!(parse_float(bad), None, "{bad:?}");
        }
        // What is stored is a JSON number: GET /<key> shows a number.
        assert_eq!(stored_json(&format_float(0.1 + 0.2)), "0.3");
        assert_eq!(stored_json(&format_float(1e21)), "1000000000000000000000");
    }

    #[test]
    fn getrange_indexes_as_in_redis() {
        // "This is a string" (16 bytes), Redis's documented examples.
        let len = "This is a string".len();
        assert_eq!(byte_range(len, 0, 3), Some((0, 4)));
        assert_eq!(byte_range(len, -3, -1), Some((13, 16)));
        assert_eq!(byte_range(len, 0, -1), Some((0, 16)));
        assert_eq!(byte_range(len, 10, 100), Some((10, 16)));
        assert_eq!(byte_range(len, -100, 2), Some((0, 3)));
        assert_eq!(byte_range(len, 5, 2), None);
        assert_eq!(byte_range(len, -1, -5), None);
        assert_eq!(byte_range(len, 20, 30), None);
        assert_eq!(byte_range(0, 0, -1), None);
        assert_eq!(byte_range(len, i64::MIN, i64::MAX), Some((0, 16)));
    }

    #[test]
    fn setrange_splices_bytes_and_keeps_utf8_whole() {
        assert_eq!(
            splice("Hello World", 6, "Redis").as_deref(),
            Some("Hello Redis")
        );
        assert_eq!(splice("", 3, "x").as_deref(), Some("\0\0\0x"));
        assert_eq!(splice("ab", 1, "").as_deref(), Some("ab"));
        assert_eq!(splice("héllo", 1, "e").as_deref(), None, "cuts é in two");
        assert_eq!(splice("héllo", 1, "éé").as_deref(), Some("hééo"));
        assert_eq!(splice("héllo", 3, "L").as_deref(), Some("héLlo"));
    }
}
