//! The sandboxed Lua 5.1 state scripts run in, as Redis's: the base library without
//! `dofile`, `loadfile` and `print`, `string`, `table`, `math`, `coroutine`, `os` with only
//! `os.clock`, `bit`, `cjson`, `redis`; no `io`, `package`, `require` or `debug`;
//! `loadstring`/`load` take text only (a precompiled chunk can crash Lua 5.1); no global may
//! be created or read that does not exist, and the library tables are read-only (`Attempt to
//! modify a readonly table`), so one state serves run after run (each thread keeps one, and
//! the scripts it compiled) and nothing a script does is seen by the next. Limits: memory (the
//! allocator refuses past it) and time (an instruction-count hook, on coroutines too); once a
//! limit is hit the run is over: `pcall`, `xpcall` and `coroutine.resume` pass the error on,
//! and the state is thrown away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use mlua::chunk::ChunkMode;
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};

use super::{libs, redis_lib};

/// A script's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A sandboxed state and what a run resets.
pub struct Sandbox {
    pub lua: Lua,
    /// The limits it was made for.
    pub limits: Limits,
    /// Set once a run hits a limit: the state is then thrown away.
    pub over: Arc<AtomicBool>,
    /// When the current run started.
    started: Arc<Mutex<Instant>>,
    /// The `redis` table behind its read-only face: a run puts its `__call` here.
    pub redis: Table,
}

impl Sandbox {
    /// A fresh sandbox.
    pub fn new(limits: Limits) -> mlua::Result<Sandbox> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let over = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Mutex::new(Instant::now()));
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
        let since = started.clone();
        os.raw_set(
            "clock",
            lua.create_function(move |_, ()| {
                let started = *since.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(started.elapsed().as_secs_f64())
            })?,
        )?;
        globals.raw_set("os", os)?;
        globals.raw_set("bit", libs::bit(&lua)?)?;
        globals.raw_set("cjson", libs::cjson(&lua)?)?;
        let redis = redis_lib::redis_table(&lua)?;
        globals.raw_set("redis", redis.clone())?;
        globals.raw_set("KEYS", lua.create_table()?)?;
        globals.raw_set("ARGV", lua.create_table()?)?;
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
        lua.load(PRELUDE).set_name("=sandbox").exec()?;
        lua.set_memory_limit(limits.memory)?;
        let (flag, since, time) = (over.clone(), started.clone(), limits.time);
        // Global: coroutines the script creates run under the hook too.
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| {
                let started = *since.lock().unwrap_or_else(PoisonError::into_inner);
                if flag.load(Ordering::Relaxed) || started.elapsed() > time {
                    flag.store(true, Ordering::Relaxed);
                    return Err(mlua::Error::runtime(TIMED_OUT));
                }
                Ok(VmState::Continue)
            },
        )?;
        Ok(Sandbox {
            lua,
            limits,
            over,
            started,
            redis,
        })
    }

    /// Readies the sandbox for a run with `keys` and `argv`.
    pub fn begin(&self, keys: &[String], argv: &[String]) -> mlua::Result<()> {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let globals = self.lua.globals();
        globals.raw_set(
            "KEYS",
            self.lua
                .create_sequence_from(keys.iter().map(String::as_str))?,
        )?;
        globals.raw_set(
            "ARGV",
            self.lua
                .create_sequence_from(argv.iter().map(String::as_str))?,
        )
    }
}

/// Run once per state, after the libraries are in: a limit's error goes through `pcall`,
/// `xpcall` and `coroutine.resume`; the library tables become read-only faces; `rawset` and
/// `setfenv(0)` cannot reach around them; globals are locked.
const PRELUDE: &str = r#"
local over, pcall_, xpcall_, resume_ = __kv_over, pcall, xpcall, coroutine.resume
__kv_over = nil
local function pass(ok, ...)
    if not ok and (over() or (...) == "not enough memory") then error((...), 0) end
    return ok, ...
end
pcall = function(f, ...) return pass(pcall_(f, ...)) end
xpcall = function(f, handler) return pass(xpcall_(f, handler)) end
coroutine.resume = function(co, ...) return pass(resume_(co, ...)) end

local setmetatable_, rawset_, setfenv_, error_ = setmetatable, rawset, setfenv, error
local protected = {}
local function readonly(t)
    local face = setmetatable_({}, {
        __index = t,
        __newindex = function() error_("Attempt to modify a readonly table", 2) end,
        __metatable = false,
    })
    protected[face] = true
    return face
end
for _, name in ipairs({ "string", "table", "math", "os", "coroutine", "bit", "cjson", "redis" }) do
    _G[name] = readonly(_G[name])
end
getmetatable("").__metatable = false
local G = _G
protected[G] = true
rawset = function(t, k, v)
    if t == G then
        error_("Script attempted to create global variable '" .. tostring(k) .. "'", 2)
    end
    if protected[t] then error_("Attempt to modify a readonly table", 2) end
    return rawset_(t, k, v)
end
setfenv = function(f, env)
    if f == 0 then error_("setfenv(0) is not allowed", 2) end
    return setfenv_(f, env)
end
setmetatable_(G, {
    __newindex = function(_, name)
        error_("Script attempted to create global variable '" .. tostring(name) .. "'", 2)
    end,
    __index = function(_, name)
        error_("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
    end,
    __metatable = false,
})
"#;
