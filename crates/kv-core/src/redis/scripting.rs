//! Scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD | EXISTS | FLUSH.
//! A script runs inside the command's transaction (EVAL in the write transaction, EVAL_RO on
//! a read connection), every `redis.call` through this endpoint's own command table with its
//! checks (a scoped API key's prefixes, read-only scripts, Upstash's `allow-key-locking`);
//! a script that fails is [`StoreError::Script`], so its transaction rolls back and nothing
//! it wrote stays. The engine and its sandbox: `crate::lua`; the script store:
//! `crate::scripts`.

use super::call::{Call, Command, Context};
use super::reply::{NOT_AN_INTEGER, REPLY_TOO_LARGE, Reply, error, wrong_args};
use super::source::Source;
use super::spec::{KeySpec, Spec};
use super::value::redis_int;
use crate::error::StoreError;
use crate::lua::{self, Failure};
use crate::scripts;
use crate::store::Tx;

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// What a script's first line (`#!lua flags=…`) allows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Flags {
    /// `no-writes` (or run by EVAL_RO): a write command is an error.
    no_writes: bool,
    /// Upstash's `allow-key-locking`: a key not given in KEYS is an error.
    key_locking: bool,
}

/// Reads the shebang line as Redis 7 does (and accepts Upstash's `allow-key-locking`); the
/// body Lua compiles (the shebang line left empty, so line numbers hold).
fn shebang(script: &str) -> Result<(Flags, String), Reply> {
    let Some(rest) = script.strip_prefix("#!") else {
        return Ok((Flags::default(), script.to_owned()));
    };
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    match words.next() {
        Some("lua") => {}
        Some(other) => {
            return Err(Reply::Error(format!("ERR Could not find engine '{other}'")));
        }
        None => return Err(error("ERR Unexpected engine in script shebang: ")),
    }
    let mut flags = Flags::default();
    for word in words {
        let Some(list) = word.strip_prefix("flags=") else {
            return Err(Reply::Error(format!(
                "ERR Unknown lua shebang option: {word}"
            )));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => flags.no_writes = true,
                "allow-key-locking" => flags.key_locking = true,
                "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => {
                    return Err(Reply::Error(format!(
                        "ERR Unexpected flag in script shebang: {other}"
                    )));
                }
            }
        }
    }
    Ok((flags, format!("\n{body}")))
}

/// `script numkeys key … arg …`, parsed.
struct Invocation<'a> {
    script: &'a str,
    keys: Vec<String>,
    argv: Vec<String>,
}

fn invocation<'a>(call: &Call<'a>) -> Result<Invocation<'a>, Reply> {
    let [script, numkeys, ref rest @ ..] = call.args[..] else {
        return Err(wrong_args(call.name));
    };
    let numkeys = match redis_int(numkeys) {
        Some(n) if n < 0 => return Err(error("ERR Number of keys can't be negative")),
        Some(n) => n as usize,
        None => return Err(error(NOT_AN_INTEGER)),
    };
    if numkeys > rest.len() {
        return Err(error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    Ok(Invocation {
        script,
        keys: rest[..numkeys].iter().map(|k| (*k).to_owned()).collect(),
        argv: rest[numkeys..].iter().map(|a| (*a).to_owned()).collect(),
    })
}

/// Whether a `redis.call` of `spec` with `args` may run in this script; the error reply if not.
fn refusal(
    spec: &Spec,
    args: &[&str],
    flags: Flags,
    keys: &[String],
    within: Option<&[String]>,
) -> Option<Reply> {
    if matches!(
        spec.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "script"
    ) {
        return Some(error("ERR This Redis command is not allowed from script"));
    }
    if flags.no_writes && spec.is_write() {
        return Some(error(
            "ERR Write commands are not allowed from read-only scripts.",
        ));
    }
    if spec.keys == KeySpec::Every && within.is_some() {
        return Some(error(
            "NOPERM this user has no permissions to access one of the keys used as arguments",
        ));
    }
    for key in spec.key_args(args) {
        if flags.key_locking && !keys.iter().any(|k| k == key) {
            return Some(Reply::Error(format!(
                "ERR Dynamic keys are not allowed in Lua scripts when 'allow-key-locking' flag is set. Key was: {key}"
            )));
        }
        if let Some(prefixes) = within
            && !prefixes.iter().any(|p| key.starts_with(p.as_str()))
        {
            return Some(error(
                "NOPERM this user has no permissions to access one of the keys used as arguments",
            ));
        }
    }
    None
}

/// Runs `body` with `run` as what its `redis.call`s do; a failure is the script's error.
fn run_script(
    body: &str,
    sha: &str,
    flags: Flags,
    invocation: &Invocation<'_>,
    call: &Call<'_>,
    run: &mut dyn FnMut(&Command) -> Result<Reply, StoreError>,
) -> Result<Reply, StoreError> {
    let (within, budget) = (call.within, call.budget);
    let (_, compiled) = match shebang(body) {
        Ok(parsed) => parsed,
        Err(reply) => return Ok(reply),
    };
    let keys = &invocation.keys;
    let mut dispatch = |mut parts: Vec<String>| -> Result<Reply, StoreError> {
        let name = parts.remove(0);
        let command = Command { name, args: parts };
        let Some(spec) = command.spec() else {
            return Ok(error("ERR Unknown Redis command called from script"));
        };
        let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
        if let Some(reply) = refusal(spec, &args, flags, keys, within) {
            return Ok(reply);
        }
        run(&command)
    };
    match lua::run(
        &compiled,
        sha,
        keys,
        &invocation.argv,
        &lua::limits(),
        &mut dispatch,
    ) {
        // A result over the response limit fails the script: nothing it wrote stays.
        Ok(reply) => match budget.charge(reply.size()) {
            Ok(()) => Ok(reply),
            Err(StoreError::ResponseTooLarge { .. }) => Err(StoreError::Script(format!(
                "{REPLY_TOO_LARGE} script: {sha}"
            ))),
            Err(other) => Err(other),
        },
        Err(Failure::Script(text)) => Err(StoreError::Script(text)),
        Err(Failure::Store(err)) => Err(err),
    }
}

fn context<'a>(call: &Call<'a>) -> Context<'a> {
    Context {
        within: call.within,
        budget: call.budget,
        deadline: call.deadline,
    }
}

/// EVAL and EVALSHA script|sha numkeys key … arg …: in the write transaction, all or nothing.
pub(super) fn eval(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let invocation = match invocation(call) {
        Ok(invocation) => invocation,
        Err(reply) => return Ok(reply),
    };
    // The script's rows are no set of staged rows: on PostgreSQL a transaction of its own.
    tx.needs_own_transaction()?;
    let (sha, body) = if call.name == "evalsha" {
        let sha = invocation.script.to_ascii_lowercase();
        match scripts::body(tx.conn(), &sha)? {
            Some(body) => (sha, body),
            None => return Ok(error(NOSCRIPT)),
        }
    } else {
        let sha = lua::sha1_hex(invocation.script.as_bytes());
        if let Err(reply) = shebang(invocation.script) {
            return Ok(reply);
        }
        let now = tx.now();
        scripts::store(tx.conn(), &sha, invocation.script, now)?;
        (sha, invocation.script.to_owned())
    };
    let flags = match shebang(&body) {
        Ok((flags, _)) => flags,
        Err(reply) => return Ok(reply),
    };
    let context = context(call);
    run_script(&body, &sha, flags, &invocation, call, &mut |command| {
        (call.nested.write)(tx, command, &context)
    })
}

/// EVAL_RO and EVALSHA_RO: on a read connection; a write inside is an error. The body of an
/// EVAL_RO is not stored (storing is a write).
pub(super) fn eval_ro(src: &mut dyn Source, call: &Call<'_>) -> Result<Reply, StoreError> {
    let invocation = match invocation(call) {
        Ok(invocation) => invocation,
        Err(reply) => return Ok(reply),
    };
    let (sha, body) = if call.name == "evalsha_ro" {
        let sha = invocation.script.to_ascii_lowercase();
        match scripts::body(src.members()?, &sha)? {
            Some(body) => (sha, body),
            None => return Ok(error(NOSCRIPT)),
        }
    } else {
        (
            lua::sha1_hex(invocation.script.as_bytes()),
            invocation.script.to_owned(),
        )
    };
    let flags = match shebang(&body) {
        Ok((flags, _)) => Flags {
            no_writes: true,
            ..flags
        },
        Err(reply) => return Ok(reply),
    };
    let context = context(call);
    run_script(&body, &sha, flags, &invocation, call, &mut |command| {
        (call.nested.read)(src, command, &context)
    })
}

/// SCRIPT LOAD script | EXISTS sha … | FLUSH [ASYNC|SYNC].
pub(super) fn script(tx: &mut Tx<'_>, call: &Call<'_>) -> Result<Reply, StoreError> {
    let [subcommand, ref rest @ ..] = call.args[..] else {
        return Ok(wrong_args(call.name));
    };
    tx.needs_own_transaction()?;
    match (subcommand.to_ascii_lowercase().as_str(), rest) {
        ("load", [body]) => {
            if let Err(reply) = shebang(body) {
                return Ok(reply);
            }
            let sha = lua::sha1_hex(body.as_bytes());
            let now = tx.now();
            scripts::store(tx.conn(), &sha, body, now)?;
            Ok(Reply::Str(sha))
        }
        ("exists", shas) if !shas.is_empty() => {
            let mut found = Vec::with_capacity(shas.len());
            for sha in shas {
                let there = scripts::exists(tx.conn(), &sha.to_ascii_lowercase())?;
                found.push(Reply::Int(i64::from(there)));
            }
            Ok(Reply::Array(found))
        }
        ("flush", []) => {
            scripts::flush(tx.conn())?;
            Ok(Reply::Ok)
        }
        ("flush", [mode])
            if mode.eq_ignore_ascii_case("async") || mode.eq_ignore_ascii_case("sync") =>
        {
            scripts::flush(tx.conn())?;
            Ok(Reply::Ok)
        }
        ("load" | "exists" | "flush", _) => Ok(Reply::Error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{subcommand}'. Try SCRIPT HELP."
        ))),
        _ => Ok(Reply::Error(format!(
            "ERR unknown subcommand '{subcommand}'. Try SCRIPT HELP."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_are_read_as_redis_7_reads_them() {
        assert_eq!(shebang("return 1").map(|(f, _)| f), Ok(Flags::default()));
        let (flags, body) =
            shebang("#!lua flags=allow-key-locking,no-writes\nreturn 1").expect("flags");
        assert!(flags.key_locking && flags.no_writes);
        assert_eq!(body, "\nreturn 1", "the shebang line left empty");
        assert_eq!(
            shebang("#!lua flags=bogus\nreturn 1").map(|(f, _)| f),
            Err(error("ERR Unexpected flag in script shebang: bogus"))
        );
        assert_eq!(
            shebang("#!lua name=x\nreturn 1").map(|(f, _)| f),
            Err(error("ERR Unknown lua shebang option: name=x"))
        );
        assert!(shebang("#!python\n").is_err());
    }
}
