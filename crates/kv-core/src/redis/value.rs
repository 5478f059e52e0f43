//! Redis strings and numbers as kvstore stores and reads them.
//!
//! Values: Redis strings and kvstore's JSON values map onto each other losslessly. A string
//! written is stored as the JSON it is when it is JSON other than a string literal that
//! serializes back to exactly the same text (`42`, `{"a":1}`, `null`), and as a JSON string
//! holding it otherwise (`hello`, `1e3`, `{"a": 1}` with its space, `"quoted"`). A value read
//! is a JSON string's contents, or any other value's compact JSON text. So an object the SDK
//! set is an object for `GET /<key>`, and a value the REST API set reads back as the SDK would
//! have stored it.

use serde_json::Value;

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

/// The length of `text` as a JSON string's contents, as [`stored_json`] escapes it: a quote,
/// a backslash and `\n`-style escapes take 2 bytes, other control characters (a zero byte)
/// 6. A string stored as other JSON (a number) takes no more than this.
pub fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
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

/// A Redis string (a member, a field's value) as the JSON value the REST API shows for it
/// ([`stored_json`], parsed).
pub fn member_json(text: &str) -> Value {
    serde_json::from_str(&stored_json(text)).unwrap_or(Value::Null)
}

/// A JSON value from a request or an import line as the Redis string it stands for: a JSON
/// string's contents, other JSON as its compact text (what [`member_json`] gives back).
pub fn member_text(value: &Value) -> String {
    redis_string(&value.to_string())
}

/// A float argument or value as Redis reads it (`strtold`): the whole text, no spaces; `inf`
/// and `infinity` (signed or not) are floats, NaN is not, and neither is a finite text beyond
/// a double's range (Redis's `long double` holds it; kvstore's double cannot).
pub fn parse_float(text: &str) -> Option<f64> {
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

/// How Redis 7.0 prints a sorted set's score (`%.17g`): `inf`, `-inf`, or 17 significant
/// digits with trailing zeros cut, in exponent form below 1e-4 or from 1e17 on.
pub fn format_score(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let scientific = format!("{x:.16e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let trim = |text: &str| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text.to_owned()
        }
    };
    if !(-4..17).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.unsigned_abs())
    } else {
        trim(&format!("{x:.*}", (16 - exponent) as usize))
    }
}

/// A score as JSON: a number (an integer when it is one, up to 2^53), or the strings `"inf"`
/// and `"-inf"` (JSON has no infinity).
pub fn score_json(x: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if x.fract() == 0.0 && x.abs() <= EXACT {
        return Value::from(x as i64);
    }
    serde_json::Number::from_f64(x).map_or_else(|| Value::String(format_score(x)), Value::Number)
}

/// A score given as JSON: a number, or a string Redis reads as a float (`"inf"`, `"-inf"`,
/// `"1.5"`).
pub fn score_from_json(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => parse_float(text),
        _ => None,
    }
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
    fn escaped_length_is_the_stored_json_s() {
        for text in ["", "abc", "a\"b\\c", "\0\0x", "é\n\t\u{1}", "\u{7f}"] {
            assert_eq!(
                escaped_len(text) + 2,
                serde_json::to_string(text).map_or(0, |s| s.len()),
                "{text:?}"
            );
        }
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
    fn scores_print_like_redis_7_0() {
        for (x, text) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (0.1, "0.10000000000000001"),
            (-2.25, "-2.25"),
            (1e17, "1e+17"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1e16, "10000000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.0, "0"),
            (3.0e-300, "3.0000000000000002e-300"),
        ] {
            assert_eq!(format_score(x), text, "{x:?}");
        }
        assert_eq!(score_json(f64::NEG_INFINITY), Value::String("-inf".into()));
        assert_eq!(score_json(3.0).to_string(), "3");
        assert_eq!(score_json(0.5).to_string(), "0.5");
        assert_eq!(score_json(1e300).to_string(), "1e+300");
        assert_eq!(score_from_json(&score_json(2.5)), Some(2.5));
        assert_eq!(
            score_from_json(&Value::String("+inf".into())),
            Some(f64::INFINITY)
        );
        assert_eq!(score_from_json(&Value::Bool(true)), None);
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
}
