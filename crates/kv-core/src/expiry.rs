//! Expiry rules and TTL arithmetic. Pure functions: "now" is always an argument (unix ms).

use time::OffsetDateTime;
use time::macros::format_description;

/// The latest expiry a key may have: 9999-12-31T23:59:59.999Z in unix milliseconds.
pub const MAX_EXPIRES_AT_MS: i64 = 253_402_300_799_999;

/// A key with `expires_at` is absent from the millisecond it expires.
pub fn is_expired(expires_at: Option<i64>, now: i64) -> bool {
    matches!(expires_at, Some(at) if at <= now)
}

/// A time-to-live as a client gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Seconds(u64),
    Millis(u64),
}

/// Why a TTL cannot be turned into an expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("ttl must be positive")]
    NotPositive,
    #[error("ttl is too large: the key would expire after 9999-12-31T23:59:59.999Z")]
    TooLarge,
}

/// The expiry (unix ms) of a key given `ttl` at `now`.
pub fn expires_at_after(now: i64, ttl: Ttl) -> Result<i64, TtlError> {
    let millis = match ttl {
        Ttl::Seconds(0) | Ttl::Millis(0) => return Err(TtlError::NotPositive),
        Ttl::Seconds(s) => s.checked_mul(1000).ok_or(TtlError::TooLarge)?,
        Ttl::Millis(ms) => ms,
    };
    let millis = i64::try_from(millis).map_err(|_| TtlError::TooLarge)?;
    match now.checked_add(millis) {
        Some(at) if at <= MAX_EXPIRES_AT_MS => Ok(at),
        _ => Err(TtlError::TooLarge),
    }
}

/// Milliseconds left, or -1 when the key has no expiry.
pub fn ttl_remaining_ms(expires_at: Option<i64>, now: i64) -> i64 {
    match expires_at {
        None => -1,
        Some(at) => at.saturating_sub(now).max(0),
    }
}

/// Whole seconds left, rounded as Redis `TTL` rounds (`(ms + 500) / 1000`), or -1 without expiry.
pub fn ttl_remaining_secs(expires_at: Option<i64>, now: i64) -> i64 {
    match expires_at {
        None => -1,
        Some(_) => (ttl_remaining_ms(expires_at, now) + 500) / 1000,
    }
}

/// RFC 3339 UTC with milliseconds and `Z`, e.g. `2026-11-21T23:59:00.123Z`.
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| unix_ms.to_string())
}

/// Parses an RFC 3339 time (any offset, any precision) as unix milliseconds, truncating
/// below the millisecond.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_at_the_millisecond() {
        for ms in [0, 1_790_000_000_123, MAX_EXPIRES_AT_MS] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-21T23:59:00.123456+01:00"),
            parse_rfc3339_ms("2026-11-21T22:59:00.123Z")
        );
        assert_eq!(parse_rfc3339_ms("2026-11-21"), None);
        assert_eq!(parse_rfc3339_ms("tomorrow"), None);
    }

    const NOW: i64 = 1_790_000_000_000;

    #[test]
    fn a_key_expires_at_its_exact_millisecond() {
        assert!(!is_expired(None, NOW));
        assert!(!is_expired(Some(NOW + 1), NOW));
        assert!(is_expired(Some(NOW), NOW));
        assert!(is_expired(Some(NOW - 1), NOW));
    }

    #[test]
    fn ttl_seconds_and_millis_add_to_now() {
        assert_eq!(expires_at_after(NOW, Ttl::Seconds(60)), Ok(NOW + 60_000));
        assert_eq!(expires_at_after(NOW, Ttl::Millis(1)), Ok(NOW + 1));
    }

    #[test]
    fn zero_ttl_is_rejected() {
        assert_eq!(
            expires_at_after(NOW, Ttl::Seconds(0)),
            Err(TtlError::NotPositive)
        );
        assert_eq!(
            expires_at_after(NOW, Ttl::Millis(0)),
            Err(TtlError::NotPositive)
        );
    }

    #[test]
    fn ttl_overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            expires_at_after(NOW, Ttl::Seconds(u64::MAX)),
            Err(TtlError::TooLarge)
        );
        assert_eq!(
            expires_at_after(NOW, Ttl::Millis(u64::MAX)),
            Err(TtlError::TooLarge)
        );
        assert_eq!(
            expires_at_after(NOW, Ttl::Millis(i64::MAX as u64)),
            Err(TtlError::TooLarge)
        );
    }

    #[test]
    fn expiry_may_land_exactly_on_the_last_representable_millisecond() {
        let ms = (MAX_EXPIRES_AT_MS - NOW) as u64;
        assert_eq!(
            expires_at_after(NOW, Ttl::Millis(ms)),
            Ok(MAX_EXPIRES_AT_MS)
        );
        assert_eq!(
            expires_at_after(NOW, Ttl::Millis(ms + 1)),
            Err(TtlError::TooLarge)
        );
        assert_eq!(
            format_rfc3339_ms(MAX_EXPIRES_AT_MS),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn ttl_remaining_rounds_like_redis() {
        assert_eq!(ttl_remaining_secs(None, NOW), -1);
        assert_eq!(ttl_remaining_ms(None, NOW), -1);
        assert_eq!(ttl_remaining_secs(Some(NOW + 60_000), NOW), 60);
        assert_eq!(ttl_remaining_secs(Some(NOW + 59_500), NOW), 60);
        assert_eq!(ttl_remaining_secs(Some(NOW + 59_499), NOW), 59);
        assert_eq!(ttl_remaining_secs(Some(NOW + 499), NOW), 0);
        assert_eq!(ttl_remaining_ms(Some(NOW + 499), NOW), 499);
        assert_eq!(ttl_remaining_ms(Some(NOW - 5), NOW), 0);
    }

    #[test]
    fn times_format_as_rfc3339_utc_with_millis() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_795_305_540_123),
            "2026-11-21T23:59:00.123Z"
        );
    }
}
