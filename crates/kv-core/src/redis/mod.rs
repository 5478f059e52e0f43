//! Redis commands over the store, for the Upstash-compatible endpoint (`/_upstash`; the
//! protocol itself, JSON arrays in and `{"result"}` out, is kv-server's). Each command runs as
//! store operations through [`Tx`] methods (a write takes a version, as a REST write does), and
//! answers a RESP2-shaped [`Reply`] with Redis's own error texts.
//!
//! Layout: [`table`] declares every command once (name, arity, keys, read or write, function);
//! each family has its file (`strings`, `generic` keys, `server`, `hashes`, `sets`, `lists`,
//! `zsets` with `zset_ranges` and `zset_combine`, `scripting`: EVAL and its kin, whose engine
//! is `crate::lua`; `members` what the collections share); [`value`] maps Redis strings onto kvstore's JSON values; [`source`] is where read commands
//! read; `call` and `reply` are what a command's function takes and answers.

mod call;
mod generic;
mod hashes;
mod lists;
mod members;
pub mod reply;
mod scripting;
mod server;
mod sets;
pub mod source;
pub mod spec;
mod strings;
pub mod table;
pub mod value;
mod zset_combine;
mod zset_ranges;
mod zsets;

pub use call::{Call, Command, Context, Nested};
pub use generic::MAX_KEYS_REPLY;
pub use reply::Reply;
pub use source::{Snapshot, Source};
pub use spec::{KeySpec, Run, Spec};
pub use strings::{MAX_STRING_BYTES, byte_range, splice};
pub use value::{format_float, redis_int, redis_string, stored_json};

use crate::error::StoreError;
use crate::key::validate_writable_key;
use crate::store::Tx;
pub use reply::REPLY_TOO_LARGE;
use reply::wrong_args;

/// The keys a command reaches, for API keys scoped to prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse<'a> {
    /// These keys, by name (none for PING, ECHO, TIME, or a command this endpoint does not
    /// know).
    Keys(Vec<&'a str>),
    /// Keys found by listing (KEYS, SCAN, RANDOMKEY): a scoped API key lists only its own
    /// prefixes.
    Listing,
    /// Every key, counted or deleted (DBSIZE, FLUSHDB, FLUSHALL): refused to a scoped key.
    Every,
}

impl Command {
    /// Its declaration, or `None` for a command this endpoint does not run.
    pub fn spec(&self) -> Option<&'static Spec> {
        table::lookup(&self.name)
    }

    /// Whether this endpoint knows the command (others answer `ERR unknown command`).
    pub fn is_known(&self) -> bool {
        self.spec().is_some()
    }

    /// Whether the command writes (a read-only API key may not run it).
    pub fn is_write(&self) -> bool {
        self.spec().is_some_and(Spec::is_write)
    }

    /// Whether the command runs a Lua script: it runs on its own (a script that fails rolls
    /// back its own writes only), and never on an HTTP worker.
    pub fn is_script(&self) -> bool {
        self.spec()
            .is_some_and(|spec| matches!(spec.name, "eval" | "evalsha" | "eval_ro" | "evalsha_ro"))
    }

    /// Whether the command reads through the key listing rather than by key (it may read many
    /// rows: not one for a worker thread's inline read).
    pub fn is_listing(&self) -> bool {
        self.spec().is_some_and(|spec| {
            !spec.is_write() && matches!(spec.keys, KeySpec::Listing | KeySpec::Every)
        })
    }

    /// The keys the command reaches (for API keys scoped to prefixes).
    pub fn keys(&self) -> KeyUse<'_> {
        let Some(spec) = self.spec() else {
            return KeyUse::Keys(Vec::new());
        };
        match spec.keys {
            KeySpec::Listing => KeyUse::Listing,
            KeySpec::Every => KeyUse::Every,
            KeySpec::None
            | KeySpec::Range { .. }
            | KeySpec::NumKeys { .. }
            | KeySpec::DestinationNumKeys => KeyUse::Keys(spec.key_args(&self.arg_strs())),
        }
    }

    fn arg_strs(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    /// Its declaration and the call its function takes, or the reply that refuses it (an
    /// unknown command, a wrong number of arguments).
    fn call<'a>(&'a self, context: &Context<'a>) -> Result<(&'static Spec, Call<'a>), Reply> {
        let spec = self.spec().ok_or_else(|| self.unknown())?;
        if !spec.arity_fits(self.args.len() + 1) {
            return Err(wrong_args(spec.name));
        }
        let call = Call {
            name: spec.name,
            args: self.arg_strs(),
            within: context.within,
            budget: context.budget,
            deadline: context.deadline,
            nested: Nested {
                write: execute,
                read,
            },
        };
        Ok((spec, call))
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

/// Runs `command` in `tx`, for `context` (a scoped API key's prefixes, the response's
/// budget). Errors of the command are error replies, and a command that
/// fails writes nothing; a database failure is the `Err` (the transaction rolls back and the
/// request fails).
pub fn execute(
    tx: &mut Tx<'_>,
    command: &Command,
    context: &Context<'_>,
) -> Result<Reply, StoreError> {
    context.deadline.check()?;
    let (spec, call) = match command.call(context) {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    match spec.run {
        Run::Read(run) => invalid_as_reply(run(tx, &call)),
        Run::Write(run) => {
            // Every key is checked before anything is written: a command that fails on its
            // second key must not have written its first.
            for key in spec.key_args(&call.args) {
                if let Err(err) = validate_writable_key(key) {
                    return invalid_as_reply(Err(err));
                }
            }
            invalid_as_reply(run(tx, &call))
        }
    }
}

/// Runs `commands` in `tx`, in order (see [`execute`]); a refused command answers its reply.
pub fn execute_all(
    tx: &mut Tx<'_>,
    commands: &[Result<Command, Reply>],
    context: &Context<'_>,
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
            Ok(command) => execute(tx, command, context),
            Err(reply) => Ok(reply.clone()),
        })
        .collect()
}

/// Runs the read-only `command` on `source` (a write command answers an error: run it with
/// [`execute`]).
pub fn read(
    source: &mut dyn Source,
    command: &Command,
    context: &Context<'_>,
) -> Result<Reply, StoreError> {
    context.deadline.check()?;
    let (spec, call) = match command.call(context) {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    match spec.run {
        Run::Read(run) => invalid_as_reply(run(source, &call)),
        Run::Write(_) => Ok(Reply::Error(format!(
            "ERR '{}' writes: it runs in a write transaction",
            spec.name
        ))),
    }
}

/// A key the REST API refuses (empty, too long, reserved) or a malformed cursor is a command
/// error, not a failed request; so is a reply that would pass the response limit.
fn invalid_as_reply(result: Result<Reply, StoreError>) -> Result<Reply, StoreError> {
    match result {
        Err(StoreError::Invalid { message, .. }) => Ok(Reply::Error(format!("ERR {message}"))),
        Err(StoreError::ResponseTooLarge { .. }) => Ok(Reply::Error(REPLY_TOO_LARGE.into())),
        Err(StoreError::WrongType) => Ok(Reply::Error(StoreError::WrongType.to_string())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, args: &[&str]) -> Command {
        Command {
            name: name.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn commands_know_their_keys_and_whether_they_write() {
        assert!(cmd("SET", &["k", "v"]).is_write());
        assert!(!cmd("Get", &["k"]).is_write());
        assert!(cmd("incrbyfloat", &["k", "1"]).is_write());
        assert!(!cmd("touch", &["k"]).is_write());
        assert!(cmd("SCAN", &["0"]).is_listing());
        assert!(cmd("dbsize", &[]).is_listing());
        assert!(!cmd("flushdb", &[]).is_listing());
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
        assert!(!cmd("xadd", &["h", "f", "v"]).is_known());
        assert_eq!(
            cmd("xadd", &["h", "f", "v", "w"]).unknown(),
            Reply::Error(
                "ERR unknown command 'xadd', with args beginning with: 'h' 'f' 'v' 'w' ".into()
            )
        );
        // Arguments while the list is under 128 bytes, the last one cut to fit.
        let long = "x".repeat(200);
        let Reply::Error(text) = cmd("xadd", &["a", &long, "b"]).unknown() else {
            panic!("an error");
        };
        let args = text.split_once("beginning with: ").expect("args").1;
        assert_eq!(args, format!("'a' '{}' ", "x".repeat(124)));
        assert_eq!(args.len(), 4 + 1 + 124 + 2);
    }
}
