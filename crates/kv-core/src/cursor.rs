//! The opaque scan cursor: the last key a page examined, hex-encoded. `""` and `"0"` (as in
//! Redis `SCAN 0`) both mean "from the start".

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

#[cfg(test)]
mod tests {
    use super::*;

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
