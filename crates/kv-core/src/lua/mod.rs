//! Lua scripts (EVAL and its kin): Lua 5.1 (mlua, vendored: built with the C compiler, no
//! system Lua), in a sandbox as Redis's ([`sandbox`]), with Redis's conversions between
//! replies and Lua values ([`convert`]) and its `bit` and `cjson` libraries ([`libs`]).
//!
//! [`run`] runs one script: in its thread's sandboxed state (kept from run to run, with the
//! scripts it compiled, by SHA1), `KEYS` and `ARGV`, the `redis` table (`call`, `pcall`,
//! `error_reply`, `status_reply`, `sha1hex`, `log`, `setresp`), its result converted to a
//! reply. What `redis.call` runs is the
//! caller's (`dispatch`): the script runs inside the caller's transaction, and a script that
//! fails ([`Failure`]) leaves that transaction to be rolled back.

pub mod convert;
pub mod libs;
mod redis_lib;
pub mod sandbox;

use std::sync::atomic::Ordering;

use mlua::chunk::ChunkMode;
use mlua::{Lua, MultiValue, Value, Variadic};

use crate::error::StoreError;
use crate::redis::reply::Reply;
pub use redis_lib::sha1_hex;
pub use sandbox::Limits;

/// The limits every script runs within (`--script-time-limit`, the memory limit), set once
/// at start by the server.
static LIMITS: std::sync::RwLock<Limits> = std::sync::RwLock::new(Limits {
    time: std::time::Duration::from_secs(5),
    memory: 64 << 20,
});

/// Sets the limits of every script from now on.
pub fn set_limits(limits: Limits) {
    if let Ok(mut current) = LIMITS.write() {
        *current = limits;
    }
}

/// The limits scripts run within.
pub fn limits() -> Limits {
    LIMITS.read().map(|l| *l).unwrap_or(Limits {
        time: std::time::Duration::from_secs(5),
        memory: 64 << 20,
    })
}

/// Why a script did not finish.
#[derive(Debug)]
pub enum Failure {
    /// An error the script raised, or its limits: the command's error reply (Redis's text).
    Script(String),
    /// The store failed under it (the database, the request's deadline, the response limit).
    Store(StoreError),
}

/// What `redis.call` (`protected` false) or `redis.pcall` asks the caller to run: the
/// command's name and arguments; its reply (an error reply is a Redis error), or a store
/// failure that ends the script.
pub type Dispatch<'a> = dyn FnMut(Vec<String>) -> Result<Reply, StoreError> + 'a;

/// Scripts each thread's sandbox keeps compiled, at most (then it starts over).
const COMPILED_SCRIPTS: usize = 256;

/// A thread's sandbox and the scripts it compiled, by SHA1.
struct Cached {
    sandbox: sandbox::Sandbox,
    compiled: std::collections::HashMap<String, mlua::Function>,
}

thread_local! {
    static SANDBOX: std::cell::RefCell<Option<Cached>> = const { std::cell::RefCell::new(None) };
}

/// Runs the script `body` (named `sha`: its compiled form is kept by it) with `keys` and
/// `argv` within `limits`.
pub fn run(
    body: &str,
    sha: &str,
    keys: &[String],
    argv: &[String],
    limits: &Limits,
    dispatch: &mut Dispatch<'_>,
) -> Result<Reply, Failure> {
    let cached = SANDBOX
        .with(|slot| slot.borrow_mut().take())
        .filter(|cached| cached.sandbox.limits == *limits);
    let mut cached = match cached {
        Some(cached) => cached,
        None => Cached {
            sandbox: sandbox::Sandbox::new(*limits).map_err(|e| {
                Failure::Script(format!("ERR could not start the script's sandbox: {e}"))
            })?,
            compiled: std::collections::HashMap::new(),
        },
    };
    let result = run_in(&mut cached, body, sha, keys, argv, dispatch);
    let spent = cached.sandbox.over.load(Ordering::Relaxed)
        || matches!(&result, Err(Failure::Script(text)) if text.contains("memory limit"));
    if !spent {
        // A run's garbage goes before it can add up toward the next run's limit.
        if cached.sandbox.lua.used_memory() > limits.memory / 4 {
            let _ = cached.sandbox.lua.gc_collect();
        }
        SANDBOX.with(|slot| *slot.borrow_mut() = Some(cached));
    }
    result
}

fn run_in(
    cached: &mut Cached,
    body: &str,
    sha: &str,
    keys: &[String],
    argv: &[String],
    dispatch: &mut Dispatch<'_>,
) -> Result<Reply, Failure> {
    let sandbox = &cached.sandbox;
    let lua = &sandbox.lua;
    sandbox
        .begin(keys, argv)
        .map_err(|e| Failure::Script(format!("ERR could not start the script: {e}")))?;
    if cached.compiled.len() >= COMPILED_SCRIPTS {
        cached.compiled.clear();
    }
    let mut failed_store: Option<StoreError> = None;
    let result = lua.scope(|scope| {
        let call =
            scope.create_function_mut(|lua, (protected, args): (bool, Variadic<Value>)| {
                let mut command = Vec::with_capacity(args.len());
                for arg in args.iter() {
                    match convert::argument(arg) {
                        Ok(text) => command.push(text),
                        Err(text) => return raise_or_table(lua, protected, &text),
                    }
                }
                if command.is_empty() {
                    let text = "ERR Please specify at least one argument for this redis lib call";
                    return raise_or_table(lua, protected, text);
                }
                match dispatch(command) {
                    Ok(Reply::Error(text)) => raise_or_table(lua, protected, &text),
                    Ok(reply) => convert::reply_to_lua(lua, &reply),
                    Err(err) => {
                        failed_store = Some(err);
                        Err(mlua::Error::runtime(
                            "ERR the store failed under the script",
                        ))
                    }
                }
            })?;
        sandbox.redis.raw_set("__call", call)?;
        let function = match cached.compiled.get(sha) {
            Some(function) => function.clone(),
            None => {
                let function = lua
                    .load(body)
                    .set_name("@user_script")
                    .set_mode(ChunkMode::Text)
                    .into_function()?;
                cached.compiled.insert(sha.to_owned(), function.clone());
                function
            }
        };
        // A script may have moved its own environment (setfenv(1, …)): back to the sandbox's.
        function.set_environment(lua.globals())?;
        function.call::<MultiValue>(())
    });
    let _ = sandbox.redis.raw_set("__call", Value::Nil);
    if let Some(err) = failed_store {
        return Err(Failure::Store(err));
    }
    match result {
        Ok(values) => Ok(convert::lua_to_reply(
            values.iter().next().unwrap_or(&Value::Nil),
        )),
        Err(err) => {
            let text = if sandbox.over.load(Ordering::Relaxed) {
                sandbox::TIMED_OUT.to_owned()
            } else {
                message_of(&err)
            };
            let text = if text.contains(sandbox::OUT_OF_MEMORY) {
                "ERR script exceeded the memory limit".to_owned()
            } else {
                text
            };
            Err(Failure::Script(format!(
                "{} script: {sha}",
                convert::with_code(&text)
            )))
        }
    }
}

/// A Redis error from `redis.call` (raised) or `redis.pcall` (its `{err=…}` table).
fn raise_or_table(lua: &Lua, protected: bool, text: &str) -> mlua::Result<Value> {
    if protected {
        convert::error_table(lua, text)
    } else {
        Err(mlua::Error::runtime(text.to_owned()))
    }
}

/// The text of a Lua error, without mlua's traceback.
fn message_of(err: &mlua::Error) -> String {
    match err {
        mlua::Error::RuntimeError(text) | mlua::Error::SyntaxError { message: text, .. } => {
            text.lines().next().unwrap_or_default().to_owned()
        }
        mlua::Error::CallbackError { cause, .. } => message_of(cause),
        mlua::Error::MemoryError(_) => sandbox::OUT_OF_MEMORY.to_owned(),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}
