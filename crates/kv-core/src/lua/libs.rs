//! The libraries Redis gives scripts beside Lua's own: `bit` (the LuaBitOp API: 32-bit
//! integer operations) and `cjson` (JSON encode and decode, with cjson's `null` and its
//! encoding rules: an empty table is `{}`, `/` is escaped).

use mlua::{LightUserData, Lua, Table, Value, Variadic};

/// `cjson.null`: what JSON `null` decodes to (a NULL light userdata, as in cjson).
pub fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// The `bit` table.
pub fn bit(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    let unary = |f: fn(i32) -> i32| move |_: &Lua, x: f64| Ok(f64::from(f(tobit(x))));
    bit.set("tobit", lua.create_function(unary(|x| x))?)?;
    bit.set("bnot", lua.create_function(unary(|x| !x))?)?;
    bit.set("bswap", lua.create_function(unary(i32::swap_bytes))?)?;
    let fold = |f: fn(i32, i32) -> i32| {
        move |_: &Lua, xs: Variadic<f64>| {
            let mut values = xs.iter().map(|x| tobit(*x));
            let first = values
                .next()
                .ok_or_else(|| mlua::Error::runtime("bad argument #1 (number expected)"))?;
            Ok(f64::from(values.fold(first, f)))
        }
    };
    bit.set("band", lua.create_function(fold(|a, b| a & b))?)?;
    bit.set("bor", lua.create_function(fold(|a, b| a | b))?)?;
    bit.set("bxor", lua.create_function(fold(|a, b| a ^ b))?)?;
    let shift = |f: fn(i32, u32) -> i32| {
        move |_: &Lua, (x, n): (f64, f64)| Ok(f64::from(f(tobit(x), (tobit(n) & 31) as u32)))
    };
    bit.set(
        "lshift",
        lua.create_function(shift(|x, n| x.wrapping_shl(n)))?,
    )?;
    bit.set(
        "rshift",
        lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?,
    )?;
    bit.set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    bit.set("rol", lua.create_function(shift(|x, n| x.rotate_left(n)))?)?;
    bit.set("ror", lua.create_function(shift(|x, n| x.rotate_right(n)))?)?;
    bit.set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, Option<f64>)| {
            let n = n.map_or(8, |n| n as i64);
            let digits = n.unsigned_abs().min(8) as usize;
            let text = format!("{:08x}", tobit(x) as u32);
            let text = &text[8 - digits..];
            Ok(if n < 0 {
                text.to_ascii_uppercase()
            } else {
                text.to_owned()
            })
        })?,
    )?;
    Ok(bit)
}

/// LuaBitOp's conversion: a number to a 32-bit integer, modulo 2^32, rounded.
fn tobit(x: f64) -> i32 {
    if !x.is_finite() {
        return 0;
    }
    x.round_ties_even().rem_euclid(4_294_967_296.0) as u32 as i32
}

/// The `cjson` table.
pub fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.set("null", null())?;
    cjson.set(
        "encode",
        lua.create_function(|_, value: Value| {
            let json = to_json(&value, 0).map_err(mlua::Error::runtime)?;
            let text = serde_json::to_string(&json).map_err(mlua::Error::runtime)?;
            // cjson escapes '/', which JSON has only inside strings.
            Ok(text.replace('/', "\\/"))
        })?,
    )?;
    cjson.set(
        "decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let json: serde_json::Value = serde_json::from_slice(&text.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("cjson.decode: {e}")))?;
            from_json(lua, &json)
        })?,
    )?;
    Ok(cjson)
}

fn to_json(value: &Value, depth: usize) -> Result<serde_json::Value, String> {
    if depth > 1000 {
        return Err("Cannot serialise, excessive nesting (1001)".into());
    }
    Ok(match value {
        Value::Nil => serde_json::Value::Null,
        Value::LightUserData(ud) if ud.0.is_null() => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(n) => serde_json::Value::from(*n),
        Value::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => {
            serde_json::Value::from(*x as i64)
        }
        Value::Number(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .ok_or("Cannot serialise number: must not be NaN or Inf")?,
        Value::String(s) => serde_json::Value::String(s.to_string_lossy()),
        Value::Table(table) => {
            let len = table.raw_len();
            let count = table.pairs::<Value, Value>().count();
            if len > 0 && len == count {
                let mut items = Vec::with_capacity(len);
                for i in 1..=len {
                    let item: Value = table.raw_get(i).map_err(|e| e.to_string())?;
                    items.push(to_json(&item, depth + 1)?);
                }
                serde_json::Value::Array(items)
            } else {
                let mut object = serde_json::Map::new();
                for pair in table.pairs::<Value, Value>() {
                    let (k, v) = pair.map_err(|e| e.to_string())?;
                    let key = match &k {
                        Value::String(s) => s.to_string_lossy(),
                        Value::Integer(n) => n.to_string(),
                        Value::Number(x) => format!("{x}"),
                        _ => {
                            return Err(
                                "Cannot serialise table: table key must be a number or string"
                                    .into(),
                            );
                        }
                    };
                    object.insert(key, to_json(&v, depth + 1)?);
                }
                serde_json::Value::Object(object)
            }
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ));
        }
    })
}

fn from_json(lua: &Lua, json: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match json {
        serde_json::Value::Null => null(),
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, from_json(lua, item)?)?;
            }
            Value::Table(table)
        }
        serde_json::Value::Object(object) => {
            let table = lua.create_table_with_capacity(0, object.len())?;
            for (k, v) in object {
                table.raw_set(k.as_str(), from_json(lua, v)?)?;
            }
            Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_and_cjson_answer_as_redis_s() {
        let lua = Lua::new();
        lua.globals()
            .set("bit", bit(&lua).expect("bit"))
            .expect("set");
        lua.globals()
            .set("cjson", cjson(&lua).expect("cjson"))
            .expect("set");
        let eval = |code: &str| lua.load(code).eval::<Value>().expect(code);
        assert_eq!(eval("return bit.band(0xff, 0x0f)"), Value::Number(15.0));
        assert_eq!(eval("return bit.bor(1, 2, 4)"), Value::Number(7.0));
        assert_eq!(eval("return bit.bnot(0)"), Value::Number(-1.0));
        assert_eq!(eval("return bit.tobit(0xffffffff)"), Value::Number(-1.0));
        assert_eq!(
            eval("return bit.lshift(1, 31)"),
            Value::Number(-2147483648.0)
        );
        assert_eq!(eval("return bit.rshift(-1, 28)"), Value::Number(15.0));
        assert_eq!(eval("return bit.arshift(-256, 4)"), Value::Number(-16.0));
        let text = |code: &str| match eval(code) {
            Value::String(s) => s.to_string_lossy(),
            other => panic!("{code}: {other:?}"),
        };
        assert_eq!(text("return bit.tohex(255)"), "000000ff");
        assert_eq!(text("return bit.tohex(255, -2)"), "FF");
        assert_eq!(
            text("return cjson.encode({1, 2, 'a/b'})"),
            r#"[1,2,"a\/b"]"#
        );
        assert_eq!(text("return cjson.encode({})"), "{}");
        assert_eq!(
            text("return cjson.encode({a = cjson.null})"),
            r#"{"a":null}"#
        );
        assert_eq!(text("return cjson.encode(1.5)"), "1.5");
        assert_eq!(
            text(
                r#"local t = cjson.decode('{"a":[1,2,{"b":null}]}') return tostring(t.a[3].b == cjson.null) .. t.a[2]"#
            ),
            "true2"
        );
        assert!(
            lua.load("return cjson.encode(function() end)")
                .exec()
                .is_err()
        );
        assert!(lua.load("return cjson.decode('{')").exec().is_err());
    }
}
