//! The `redis` table scripts see: `call` and `pcall` (over the run's dispatch, put in
//! `__call` for each run), `error_reply`, `status_reply`, `sha1hex`, `log`, `setresp`, and
//! the `LOG_*` levels.

use mlua::{Lua, Value, Variadic};

use super::convert;

/// The SHA1 of `body`, lowercase hex: a script's name for EVALSHA.
pub fn sha1_hex(body: &[u8]) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(body);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `redis` table: `call` and `pcall` over the run's `dispatch` (its `__call`, set per
/// run), and the helpers.
pub(super) fn redis_table(lua: &Lua) -> mlua::Result<mlua::Table> {
    let redis = lua.create_table()?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|_, text: mlua::LuaString| Ok(sha1_hex(&text.as_bytes())))?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|_, (level, parts): (i64, Variadic<Value>)| {
            let text: Vec<String> = parts
                .iter()
                .map(|v| convert::argument(v).unwrap_or_else(|_| format!("{v:?}")))
                .collect();
            let text = text.join(" ");
            match level {
                0 => log::debug!(target: "kv_script", "{text}"),
                1 | 2 => log::info!(target: "kv_script", "{text}"),
                _ => log::warn!(target: "kv_script", "{text}"),
            }
            Ok(())
        })?,
    )?;
    redis.raw_set(
        "setresp",
        lua.create_function(|_, version: i64| {
            if version == 2 {
                Ok(())
            } else {
                Err(mlua::Error::runtime(
                    "RESP version must be 2: kvstore speaks RESP2 to scripts",
                ))
            }
        })?,
    )?;
    for (name, level) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
    ] {
        redis.raw_set(name, level)?;
    }
    lua.load(
        r#"
        local redis = ...
        redis.call = function(...) return redis.__call(false, ...) end
        redis.pcall = function(...) return redis.__call(true, ...) end
        redis.error_reply = function(text)
            if type(text) ~= "string" then error("wrong number or type of arguments", 2) end
            if text:sub(1, 1) ~= "-" then text = "-" .. text end
            return { err = text }
        end
        redis.status_reply = function(text)
            if type(text) ~= "string" then error("wrong number or type of arguments", 2) end
            return { ok = text }
        end
        "#,
    )
    .set_name("=sandbox")
    .call::<()>(redis.clone())?;
    Ok(redis)
}
