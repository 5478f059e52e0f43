//! Values between Redis and Lua, as Redis 7's `script_lua.c` converts them (RESP2): a reply to
//! a Lua value for `redis.call`, a script's result to a reply, and `redis.call`'s arguments to
//! a command's.

use mlua::{Lua, Table, Value};

use crate::redis::reply::Reply;

/// Tables nested deeper than this in a script's result are an error (Redis: the Lua stack).
const MAX_DEPTH: usize = 100;

/// A command's reply as Lua sees it: an integer a number, a bulk string a string, nil
/// `false`, `OK` the table `{ok="OK"}`, an error `{err=…}`, an array a table.
pub fn reply_to_lua(lua: &Lua, reply: &Reply) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Nil => Value::Boolean(false),
        Reply::Ok => {
            let table = lua.create_table()?;
            table.raw_set("ok", "OK")?;
            Value::Table(table)
        }
        Reply::Int(n) => Value::Number(*n as f64),
        Reply::Str(text) => Value::String(lua.create_string(text)?),
        Reply::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, reply_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        Reply::Error(text) => error_table(lua, text)?,
    })
}

/// `{err = text}`.
pub fn error_table(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set("err", text)?;
    Ok(Value::Table(table))
}

/// A script's result as a reply: a number an integer (truncated: 3.9 is 3), a string a bulk
/// string, `true` 1, `false` and nil nil, a table with `err` an error, with `ok` a status, any
/// other table an array of its items up to the first nil.
pub fn lua_to_reply(value: &Value) -> Reply {
    to_reply(value, 0)
}

fn to_reply(value: &Value, depth: usize) -> Reply {
    match value {
        Value::Boolean(true) => Reply::Int(1),
        Value::Integer(n) => Reply::Int(*n),
        Value::Number(x) => Reply::Int(*x as i64),
        Value::String(text) => Reply::Str(text.to_string_lossy()),
        Value::Table(table) if depth >= MAX_DEPTH => {
            let _ = table;
            Reply::Error("ERR reached lua stack limit".into())
        }
        Value::Table(table) => table_to_reply(table, depth),
        _ => Reply::Nil,
    }
}

fn table_to_reply(table: &Table, depth: usize) -> Reply {
    if let Ok(Value::String(error)) = table.raw_get::<Value>("err") {
        let text = error.to_string_lossy();
        // `redis.error_reply("x")` gives "-x": the reply is "x" (a bare text stays as it is).
        let text = text.strip_prefix('-').map(str::to_owned).unwrap_or(text);
        return Reply::Error(text);
    }
    if let Ok(Value::String(status)) = table.raw_get::<Value>("ok") {
        let status = status.to_string_lossy();
        return if status == "OK" {
            Reply::Ok
        } else {
            Reply::Str(status)
        };
    }
    let mut items = Vec::new();
    for i in 1.. {
        match table.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(item) => items.push(to_reply(&item, depth + 1)),
        }
    }
    Reply::Array(items)
}

/// An error text with a code word first (`ERR …`, `WRONGTYPE …`): as it is when it has one,
/// else with `ERR ` before it.
pub fn with_code(text: &str) -> String {
    let first = text.split(' ').next().unwrap_or_default();
    let coded = !first.is_empty() && first.bytes().all(|b| b.is_ascii_uppercase());
    if coded {
        text.to_owned()
    } else {
        format!("ERR {text}")
    }
}

/// One argument of `redis.call`: a string as it is, a number as its integer or shortest
/// decimal text; anything else is Redis's error.
pub fn argument(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => text.to_str().map(|s| s.to_string()).map_err(|_| {
            "ERR kvstore's values are UTF-8 text: a script's argument is not".to_owned()
        }),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Number(x) if x.fract() == 0.0 && x.abs() < 1e17 => Ok((*x as i64).to_string()),
        Value::Number(x) => Ok(format!("{x}")),
        _ => Err("ERR Lua redis lib command arguments must be strings or integers".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_as_redis_converts_them() {
        let lua = Lua::new();
        let eval = |code: &str| lua_to_reply(&lua.load(code).eval::<Value>().expect(code));
        assert_eq!(eval("return 3.9"), Reply::Int(3));
        assert_eq!(eval("return -3.9"), Reply::Int(-3));
        assert_eq!(eval("return true"), Reply::Int(1));
        assert_eq!(eval("return false"), Reply::Nil);
        assert_eq!(eval("return nil"), Reply::Nil);
        assert_eq!(eval("return 'x'"), Reply::Str("x".into()));
        assert_eq!(
            eval("return {1, 'a', nil, 3}"),
            Reply::Array(vec![Reply::Int(1), Reply::Str("a".into())])
        );
        assert_eq!(eval("return {ok='OK'}"), Reply::Ok);
        assert_eq!(eval("return {ok='QUEUED'}"), Reply::Str("QUEUED".into()));
        assert_eq!(
            eval("return {err='My Error'}"),
            Reply::Error("My Error".into())
        );
        assert_eq!(
            eval("return {err='-WRONG x'}"),
            Reply::Error("WRONG x".into())
        );
        assert_eq!(
            eval("return {err='e', ok='o'}"),
            Reply::Error("e".into()),
            "err wins"
        );
        assert_eq!(
            eval("local t = {} local c = t for i = 1, 200 do c[1] = {} c = c[1] end return t")
                .clone(),
            nested_error()
        );
        let back = reply_to_lua(&lua, &Reply::Array(vec![Reply::Nil, Reply::Int(2)])).expect("lua");
        let Value::Table(t) = back else {
            panic!("a table")
        };
        assert_eq!(t.raw_get::<Value>(1).expect("1"), Value::Boolean(false));
        assert_eq!(argument(&Value::Number(2.0)), Ok("2".into()));
        assert_eq!(argument(&Value::Number(2.5)), Ok("2.5".into()));
        assert!(argument(&Value::Boolean(true)).is_err());
    }

    /// 100 nested arrays, then the stack limit's error.
    fn nested_error() -> Reply {
        let mut reply = Reply::Error("ERR reached lua stack limit".into());
        for _ in 0..MAX_DEPTH {
            reply = Reply::Array(vec![reply]);
        }
        reply
    }
}
