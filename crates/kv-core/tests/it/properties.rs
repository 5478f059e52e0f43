//! Property tests (proptest) of kv-core's pure parts: the body parsers, TTL arithmetic, the
//! glob matcher (against a port of Redis's own `stringmatchlen`), key validation and cursors.

use kv_core::args::{IncrArgs, SetArgs, SetExpiry};
use kv_core::cursor;
use kv_core::expiry::{
    MAX_EXPIRES_AT_MS, Ttl, TtlError, expires_at_after, format_rfc3339_ms, is_expired,
    ttl_remaining_ms, ttl_remaining_secs,
};
use kv_core::glob::Glob;
use kv_core::key::{MAX_KEY_BYTES, validate_key, validate_writable_key};
use kv_core::request::{MAX_JSON_DEPTH, SET_FIELDS, expiry_from_json, parse_body};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a body field: sometimes what the field wants, often not.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1u64..100_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        json_value(),
    ]
}

/// An object whose fields are mostly known ones.
fn body_object(fields: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    let name = prop_oneof![
        4 => prop::sample::select(fields).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ];
    prop::collection::btree_map(name, field_value(), 0..6).prop_map(|m| m.into_iter().collect())
}

const NOW: i64 = 1_790_000_000_000;

proptest! {
    #[test]
    fn parse_body_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_body(&bytes);
    }

    #[test]
    fn parse_body_reads_back_any_json(value in json_value()) {
        let text = serde_json::to_vec(&value).expect("serialize");
        prop_assert_eq!(parse_body(&text), Ok(Some(value)));
    }

    #[test]
    fn parse_body_refuses_exactly_what_nests_deeper_than_128(depth in 1usize..400, objects in any::<bool>()) {
        let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
        let text = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let parsed = parse_body(text.as_bytes());
        if depth <= MAX_JSON_DEPTH {
            prop_assert!(parsed.is_ok());
        } else {
            prop_assert_eq!(parsed.map_err(|e| e.code()), Err("invalid_json"));
        }
    }

    #[test]
    fn brackets_inside_strings_are_not_nesting(brackets in "[\\[\\]{}]{129,300}") {
        let text = serde_json::to_string(&json!({"value": brackets})).expect("serialize");
        prop_assert!(parse_body(text.as_bytes()).is_ok());
    }

    #[test]
    fn set_bodies_parse_or_fail_cleanly(body in body_object(SET_FIELDS)) {
        let has_value = body.contains_key("value");
        match SetArgs::from_json(body.clone(), NOW) {
            Ok(args) => {
                prop_assert!(has_value);
                prop_assert!(body.keys().all(|k| SET_FIELDS.contains(&k.as_str())));
                prop_assert!(!(args.precondition.nx && args.precondition.xx));
                if let SetExpiry::At(at) = args.expiry {
                    prop_assert!(at > NOW && at <= MAX_EXPIRES_AT_MS);
                    match (body.get("ttl").and_then(Value::as_u64), body.get("ttl_ms").and_then(Value::as_u64)) {
                        (Some(s), _) => prop_assert_eq!(i128::from(at), i128::from(NOW) + i128::from(s) * 1000),
                        (None, Some(ms)) => prop_assert_eq!(i128::from(at), i128::from(NOW) + i128::from(ms)),
                        (None, None) => prop_assert!(false, "an expiry without ttl"),
                    }
                }
                let stored: Value = serde_json::from_str(&args.value).expect("stored value is JSON");
                prop_assert_eq!(&stored, &body["value"]);
            }
            Err(err) => prop_assert_eq!(err.kind(), kv_core::error::ErrorKind::Invalid),
        }
    }

    #[test]
    fn expire_and_incr_bodies_parse_or_fail_cleanly(body in body_object(&["ttl", "ttl_ms", "by"])) {
        if let Err(err) = expiry_from_json(body.clone(), NOW) {
            prop_assert_eq!(err.kind(), kv_core::error::ErrorKind::Invalid);
        }
        for decrement in [false, true] {
            match IncrArgs::from_json(body.clone(), decrement, NOW) {
                Ok(args) => {
                    if let Some(at) = args.expires_at_if_created {
                        prop_assert!(at > NOW && at <= MAX_EXPIRES_AT_MS);
                    }
                }
                Err(err) => prop_assert_eq!(err.kind(), kv_core::error::ErrorKind::Invalid),
            }
        }
    }

    #[test]
    fn incr_is_checked_64_bit_arithmetic(current in any::<i64>(), by in any::<i64>(), decrement in any::<bool>()) {
        let args = IncrArgs::from_json(
            [("by".to_owned(), Value::from(by))].into_iter().collect(),
            decrement,
            NOW,
        ).expect("valid by");
        let exact = if decrement {
            i128::from(current) - i128::from(by)
        } else {
            i128::from(current) + i128::from(by)
        };
        match args.apply(current) {
            Ok(next) => prop_assert_eq!(i128::from(next), exact),
            Err(_) => prop_assert!(i64::try_from(exact).is_err()),
        }
    }

    #[test]
    fn a_ttl_lands_exactly_where_it_says_or_is_refused(now in 0i64..=MAX_EXPIRES_AT_MS, amount in any::<u64>(), seconds in any::<bool>()) {
        let (ttl, millis) = if seconds {
            (Ttl::Seconds(amount), i128::from(amount) * 1000)
        } else {
            (Ttl::Millis(amount), i128::from(amount))
        };
        let exact = i128::from(now) + millis;
        match expires_at_after(now, ttl) {
            Ok(at) => {
                prop_assert!(amount > 0);
                prop_assert_eq!(i128::from(at), exact);
                prop_assert!(at <= MAX_EXPIRES_AT_MS);
            }
            Err(TtlError::NotPositive) => prop_assert_eq!(amount, 0),
            Err(TtlError::TooLarge) => prop_assert!(amount > 0 && exact > i128::from(MAX_EXPIRES_AT_MS)),
        }
    }

    #[test]
    fn remaining_time_rounds_like_redis(now in 0i64..=MAX_EXPIRES_AT_MS, offset in -10_000_000i64..10_000_000) {
        let at = now + offset;
        let ms = ttl_remaining_ms(Some(at), now);
        prop_assert_eq!(ms, offset.max(0));
        prop_assert_eq!(ttl_remaining_secs(Some(at), now), (ms + 500) / 1000);
        prop_assert_eq!(is_expired(Some(at), now), offset <= 0);
        prop_assert_eq!((ttl_remaining_ms(None, now), ttl_remaining_secs(None, now)), (-1, -1));
        prop_assert!(!is_expired(None, now));
    }

    #[test]
    fn times_format_fixed_width_and_in_order(a in 0i64..=MAX_EXPIRES_AT_MS, b in 0i64..=MAX_EXPIRES_AT_MS) {
        let (fa, fb) = (format_rfc3339_ms(a), format_rfc3339_ms(b));
        prop_assert_eq!(fa.len(), 24);
        prop_assert!(fa.ends_with('Z'));
        prop_assert_eq!(&fa[20..23], format!("{:03}", a % 1000));
        prop_assert_eq!(a.cmp(&b), fa.cmp(&fb));
    }

    #[test]
    fn glob_matches_like_redis(pattern in "[ab*?\\[\\]^\\-\\\\]{0,10}", text in "[ab\\-\\]^\\\\\\[]{1,10}") {
        prop_assert_eq!(
            Glob::new(&pattern).matches(&text),
            redis_stringmatch(pattern.as_bytes(), text.as_bytes()),
            "pattern {:?} text {:?}", pattern, text
        );
    }

    #[test]
    fn an_escaped_glob_matches_only_its_text(text in "\\PC{1,16}", other in "\\PC{1,16}") {
        let escaped: String = text.chars().flat_map(|c| ['\\', c]).collect();
        let glob = Glob::new(&escaped);
        prop_assert!(glob.matches(&text));
        prop_assert_eq!(glob.matches(&other), other == text);
        prop_assert!(Glob::new("*").matches(&other));
    }

    #[test]
    fn key_validation_is_length_controls_and_underscore(key in prop_oneof![
        "\\PC{0,20}",
        ".{0,20}",
        "[a-z_\u{0}-\u{1f}\u{7f}-\u{9f}]{0,8}",
        (500usize..530).prop_map(|n| "k".repeat(n)),
        (150usize..200).prop_map(|n| "€".repeat(n)),
    ]) {
        let valid = !key.is_empty() && key.len() <= MAX_KEY_BYTES && !key.chars().any(char::is_control);
        prop_assert_eq!(validate_key(&key).is_ok(), valid);
        prop_assert_eq!(validate_writable_key(&key).is_ok(), valid && !key.starts_with('_'));
    }

    #[test]
    fn cursors_round_trip(key in "\\PC{1,40}") {
        let encoded = cursor::encode(&key);
        prop_assert_eq!(cursor::decode(&encoded), Ok(Some(key)));
    }

    #[test]
    fn any_cursor_decodes_or_is_refused(raw in prop_oneof!["[0-9a-fA-F]{0,40}", ".{0,40}"]) {
        match cursor::decode(&raw) {
            Ok(Some(key)) => prop_assert_eq!(cursor::encode(&key), raw.to_ascii_lowercase()),
            Ok(None) => prop_assert!(raw.is_empty() || raw == "0"),
            Err(err) => prop_assert_eq!(err.code(), "invalid_cursor"),
        }
    }
}

/// Redis's `stringmatchlen` (util.c), ported line by line over bytes, as the reference the glob
/// matcher must agree with. `pat(i)` past the end reads 0, like C's terminating NUL.
fn redis_stringmatch(pattern: &[u8], text: &[u8]) -> bool {
    let mut skip_longer = false;
    redis_match_from(pattern, text, 0, 0, &mut skip_longer)
}

fn redis_match_from(
    p: &[u8],
    s: &[u8],
    mut pi: usize,
    mut si: usize,
    skip_longer: &mut bool,
) -> bool {
    let pat = |i: usize| p.get(i).copied().unwrap_or(0);
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while pi < p.len() && pat(pi + 1) == b'*' {
                    pi += 1;
                }
                if p.len() - pi == 1 {
                    return true;
                }
                while si < s.len() {
                    if redis_match_from(p, s, pi + 1, si, skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negated = pat(pi) == b'^';
                if negated {
                    pi += 1;
                }
                let mut matched = false;
                loop {
                    let left = p.len() - pi;
                    if pat(pi) == b'\\' && left >= 2 {
                        pi += 1;
                        matched |= pat(pi) == s[si];
                    } else if pat(pi) == b']' {
                        break;
                    } else if left == 0 {
                        pi -= 1;
                        break;
                    } else if left >= 3 && pat(pi + 1) == b'-' {
                        let (lo, hi) = (pat(pi).min(pat(pi + 2)), pat(pi).max(pat(pi + 2)));
                        pi += 2;
                        matched |= (lo..=hi).contains(&s[si]);
                    } else {
                        matched |= pat(pi) == s[si];
                    }
                    pi += 1;
                }
                if matched == negated {
                    return false;
                }
                si += 1;
            }
            c => {
                let c = if c == b'\\' && p.len() - pi >= 2 {
                    pi += 1;
                    p[pi]
                } else {
                    c
                };
                if c != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while pat(pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi == p.len() && si == s.len()
}

#[test]
fn the_reference_agrees_with_redis_documentation() {
    let m = |p: &str, s: &str| redis_stringmatch(p.as_bytes(), s.as_bytes());
    assert!(m("h?llo", "hello") && m("h*llo", "heeeello") && m("h[ae]llo", "hallo"));
    assert!(!m("h[^e]llo", "hello") && m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
    assert!(m("[a-]", "_") && m("a[bc", "ab") && m("a\\", "a\\") && !m("[]", "a"));
}
