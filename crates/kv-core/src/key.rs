//! What a key may be: 1–512 bytes of UTF-8 without control characters. Keys starting with
//! `_` are reserved for the server's own routes and cannot be written.

use crate::error::StoreError;

pub const MAX_KEY_BYTES: usize = 512;

/// Checks a key that is read (get, check): keys starting with `_` are allowed (and never exist).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::invalid("invalid_key", "key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::invalid(
            "key_too_long",
            format!("key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            "invalid_key",
            "key must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a key that is written (set, delete, expire, incr): also refuses reserved keys.
pub fn validate_writable_key(key: &str) -> Result<(), StoreError> {
    validate_key(key)?;
    if is_reserved(key) {
        return Err(StoreError::invalid(
            "reserved_key",
            "keys starting with '_' are reserved for the server",
        ));
    }
    Ok(())
}

pub fn is_reserved(key: &str) -> bool {
    key.starts_with('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_keys() {
        for key in ["a", "user:101", "a/b", "ключ", "a b", "%", &"x".repeat(512)] {
            assert!(validate_writable_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn refuses_empty_long_control_and_reserved_keys() {
        let long = "é".repeat(257); // 514 bytes
        for (key, code) in [
            ("", "invalid_key"),
            (long.as_str(), "key_too_long"),
            ("a\nb", "invalid_key"),
            ("a\u{0}b", "invalid_key"),
            ("a\u{7f}", "invalid_key"),
            ("_health", "reserved_key"),
        ] {
            let err = validate_writable_key(key).expect_err(key);
            assert_eq!(err.code(), code, "{key:?}");
        }
    }

    #[test]
    fn reserved_keys_may_be_read() {
        assert!(validate_key("_x").is_ok());
    }
}
