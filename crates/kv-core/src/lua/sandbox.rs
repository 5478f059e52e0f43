//! A fresh Lua 5.1 state per script run, sandboxed as Redis's: the base library without
//! `dofile`, `loadfile` and `print`, `string`, `table`, `math`, `os` with only `os.clock`,
//! `bit`, `cjson`; no `io`, `package`, `require` or `debug`; `loadstring`/`load` take text only
//! (a precompiled chunk can crash Lua 5.1); no global may be created or read that does not
//! exist. Limits: memory (the allocator refuses past it) and time (an instruction-count hook);
//! once a limit is hit the run is over: `pcall`, `xpcall` and `coroutine.resume` pass the error
//! on rather than catch it. A fresh state per run means nothing one script does to the tables
//! is seen by the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mlua::chunk::ChunkMode;
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Value, VmState};

use super::libs;

/// A script's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long it may run (`--script-time-limit`).
    pub time: Duration,
    /// How much memory its Lua state may take.
    pub memory: usize,
}

/// The text of the error a script that ran past its time limit ends with.
pub const TIMED_OUT: &str = "ERR script timed out";
/// Lua's own text for an allocation the memory limit refused.
pub const OUT_OF_MEMORY: &str = "not enough memory";

/// Hooks run every this many instructions to check the time limit.
const HOOK_EVERY: u32 = 1000;

/// A new sandboxed state with `KEYS` and `ARGV` set (the `redis` table is added per run,
/// as it borrows the run's transaction). `over` is set once a limit is hit.
pub fn state(
    limits: &Limits,
    keys: &[String],
    argv: &[String],
    over: Arc<AtomicBool>,
) -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )?;
    let started = Instant::now();
    let globals = lua.globals();
    for name in [
        "dofile",
        "loadfile",
        "print",
        "module",
        "require",
        "collectgarbage",
    ] {
        globals.raw_set(name, Value::Nil)?;
    }
    // collectgarbage("count") and ("collect") only, as scripts use it (Redis allows it whole).
    globals.raw_set(
        "collectgarbage",
        lua.create_function(|lua, option: Option<String>| match option.as_deref() {
            Some("count") => Ok(lua.used_memory() as f64 / 1024.0),
            None | Some("collect") | Some("step") => {
                lua.gc_collect()?;
                Ok(0.0)
            }
            Some(other) => Err(mlua::Error::runtime(format!(
                "collectgarbage: option {other:?} is not allowed"
            ))),
        })?,
    )?;
    let text_only = lua.create_function(|lua, (chunk, name): (Value, Option<String>)| {
        let Value::String(code) = chunk else {
            return Ok((
                Value::Nil,
                Some("load takes a string of Lua source".to_owned()),
            ));
        };
        if code.as_bytes().first() == Some(&0x1b) {
            return Ok((
                Value::Nil,
                Some("precompiled chunks are not allowed".to_owned()),
            ));
        }
        let loaded = lua
            .load(code.as_bytes().to_vec())
            .set_name(name.unwrap_or_else(|| "=(load)".to_owned()))
            .set_mode(ChunkMode::Text)
            .into_function();
        Ok(match loaded {
            Ok(function) => (Value::Function(function), None),
            Err(e) => (Value::Nil, Some(e.to_string())),
        })
    })?;
    globals.raw_set("loadstring", text_only.clone())?;
    globals.raw_set("load", text_only)?;
    let os = lua.create_table()?;
    os.raw_set(
        "clock",
        lua.create_function(move |_, ()| Ok(started.elapsed().as_secs_f64()))?,
    )?;
    globals.raw_set("os", os)?;
    globals.raw_set("bit", libs::bit(&lua)?)?;
    globals.raw_set("cjson", libs::cjson(&lua)?)?;
    globals.raw_set(
        "KEYS",
        lua.create_sequence_from(keys.iter().map(String::as_str))?,
    )?;
    globals.raw_set(
        "ARGV",
        lua.create_sequence_from(argv.iter().map(String::as_str))?,
    )?;
    // Over a limit: the time limit passed, or memory so near its limit that the error just
    // caught was (most likely) an allocation it refused.
    let flag = over.clone();
    let near_full = limits.memory / 16 * 15;
    globals.raw_set(
        "__kv_over",
        lua.create_function(move |lua, ()| {
            Ok(flag.load(Ordering::Relaxed) || lua.used_memory() >= near_full)
        })?,
    )?;
    // A limit's error goes through pcall, xpcall and coroutine.resume: a script cannot catch
    // it and run on.
    lua.load(
        r#"
        local over, pcall_, xpcall_, resume_ = __kv_over, pcall, xpcall, coroutine.resume
        __kv_over = nil
        local function pass(ok, ...)
            if not ok and (over() or (...) == "not enough memory") then error((...), 0) end
            return ok, ...
        end
        pcall = function(f, ...) return pass(pcall_(f, ...)) end
        xpcall = function(f, handler) return pass(xpcall_(f, handler)) end
        coroutine.resume = function(co, ...) return pass(resume_(co, ...)) end
        "#,
    )
    .set_name("=sandbox")
    .exec()?;
    lua.set_memory_limit(limits.memory)?;
    let time = limits.time;
    // Global: coroutines the script creates run under the hook too.
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_, _| {
            if over.load(Ordering::Relaxed) || started.elapsed() > time {
                over.store(true, Ordering::Relaxed);
                return Err(mlua::Error::runtime(TIMED_OUT));
            }
            Ok(VmState::Continue)
        },
    )?;
    Ok(lua)
}

/// Makes the globals read-only for the script: creating one is `Script attempted to create
/// global variable 'x'`, reading one that does not exist `Script attempted to access
/// nonexistent global variable 'x'` (Redis's texts).
pub fn lock_globals(lua: &Lua) -> mlua::Result<()> {
    lua.load(
        r#"
        local rawset_, G = rawset, _G
        rawset = function(t, k, v)
            if t == G then error("Script attempted to create global variable '" .. tostring(k) .. "'", 2) end
            return rawset_(t, k, v)
        end
        setmetatable(_G, {
            __metatable = false,
            __newindex = function(_, name)
                error("Script attempted to create global variable '" .. tostring(name) .. "'", 2)
            end,
            __index = function(_, name)
                error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
            end,
        })
        "#,
    )
    .set_name("=sandbox")
    .exec()
}
