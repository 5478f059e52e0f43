//! The opaque scan cursor: the last key a page examined, hex-encoded. `""` and `"0"` (as in
//! Redis `SCAN 0`) both mean "from the start". Redis's SCAN (`/_upstash`) writes the same
//! position as a decimal integer ([`encode_decimal`]).

use crate::error::StoreError;

pub fn encode(last_key: &str) -> String {
    last_key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a cursor into the key to continue after (`None` = from the start).
pub fn decode(cursor: &str) -> Result<Option<String>, StoreError> {
    if cursor.is_empty() || cursor == "0" {
        return Ok(None);
    }
    let invalid = || StoreError::invalid("invalid_cursor", "malformed cursor");
    if !cursor.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map(Some).map_err(|_| invalid())
}

/// The same cursor as Redis clients need it: a decimal integer (Python's upstash-redis runs
/// `int()` on it and sends back `str()` of that), so `1` then each byte of the key as three
/// digits. `"0"` means "from the start" (and, in a reply, "done").
pub fn encode_decimal(last_key: &str) -> String {
    let mut text = String::with_capacity(1 + 3 * last_key.len());
    text.push('1');
    for b in last_key.bytes() {
        text.push_str(&format!("{b:03}"));
    }
    text
}

/// Decodes [`encode_decimal`]'s cursor (`None` = from the start).
pub fn decode_decimal(cursor: &str) -> Result<Option<String>, StoreError> {
    if cursor == "0" {
        return Ok(None);
    }
    let invalid = || StoreError::invalid("invalid_cursor", "malformed cursor");
    let digits = cursor.strip_prefix('1').ok_or_else(invalid)?;
    if digits.is_empty()
        || !digits.len().is_multiple_of(3)
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let bytes = (0..digits.len())
        .step_by(3)
        .map(|i| {
            digits
                .get(i..i + 3)
                .and_then(|group| group.parse::<u8>().ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map(Some).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_cursors_round_trip_through_an_integer() {
        for key in ["a", "user:101", "ключ/🙂", "0", "+/="] {
            let cursor = encode_decimal(key);
            assert!(cursor.bytes().all(|b| b.is_ascii_digit()) && !cursor.starts_with('0'));
            assert_eq!(decode_decimal(&cursor).ok().flatten().as_deref(), Some(key));
        }
        assert_eq!(decode_decimal("0").ok(), Some(None));
        for bad in ["", "1", "10", "2097", "1256", "1abc", "-1", "01097", "1+97"] {
            assert!(decode_decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_any_key() {
        for key in ["a", "user:101", "ключ/🙂", "0"] {
            assert_eq!(decode(&encode(key)).ok().flatten().as_deref(), Some(key));
        }
    }

    #[test]
    fn start_and_malformed() {
        assert_eq!(decode("").ok(), Some(None));
        assert_eq!(decode("0").ok(), Some(None));
        for bad in ["abc", "zz", "ff", "é1"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
