//! Timestamps: `i64` nanoseconds since the Unix epoch, UTC, written as RFC 3339.

use chrono::{DateTime, SecondsFormat, Utc};

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// RFC 3339 with only as many fractional digits as needed, always `Z`.
pub fn format_rfc3339(ts_ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ts_ns).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The earliest instant `i64` nanoseconds hold, `i64::MIN`, as [`format_rfc3339`] writes it.
pub const MIN_RFC3339: &str = "1677-09-21T00:12:43.145224192Z";
/// The latest instant `i64` nanoseconds hold, `i64::MAX`, as [`format_rfc3339`] writes it.
pub const MAX_RFC3339: &str = "2262-04-11T23:47:16.854775807Z";

/// Why a text is not an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseTimeError {
    #[error("not an RFC 3339 timestamp")]
    Malformed,
    /// Well-formed, but before [`MIN_RFC3339`] or after [`MAX_RFC3339`].
    #[error("outside the supported range {MIN_RFC3339} .. {MAX_RFC3339}")]
    OutOfRange,
}

/// Parses RFC 3339 into nanoseconds; `None` when malformed or outside what `i64` nanoseconds hold
/// (years 1677 to 2262). [`parse_rfc3339_checked`] tells the two apart.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    parse_rfc3339_checked(s).ok()
}

/// Parses RFC 3339 into nanoseconds, saying whether a failure is a malformed text or an instant
/// outside [`MIN_RFC3339`] .. [`MAX_RFC3339`].
pub fn parse_rfc3339_checked(s: &str) -> Result<i64, ParseTimeError> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|_| ParseTimeError::Malformed)?
        .with_timezone(&Utc)
        .timestamp_nanos_opt()
        .ok_or(ParseTimeError::OutOfRange)
}

/// Parses either RFC 3339 or a bare date (`2026-11-24`, meaning its midnight UTC).
pub fn parse_instant(s: &str) -> Option<i64> {
    parse_instant_checked(s).ok()
}

/// [`parse_instant`], saying whether a failure is a malformed text or an instant outside
/// [`MIN_RFC3339`] .. [`MAX_RFC3339`] (a year such as 2999 is a time, just not one this holds).
pub fn parse_instant_checked(s: &str) -> Result<i64, ParseTimeError> {
    match parse_rfc3339_checked(s) {
        Err(ParseTimeError::Malformed) => {
            let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| ParseTimeError::Malformed)?;
            date.and_hms_opt(0, 0, 0)
                .and_then(|t| t.and_utc().timestamp_nanos_opt())
                .ok_or(ParseTimeError::OutOfRange)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_the_nanosecond() {
        for ts in [0, 1_764_000_000_000_000_000, 1_764_000_000_123_456_789, -5] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ts)), Some(ts));
        }
        assert_eq!(format_rfc3339(1_764_000_000_000_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(parse_instant("2025-11-24"), Some(1_763_942_400_000_000_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn an_instant_beyond_the_range_is_out_of_range_not_malformed() {
        assert_eq!(parse_instant_checked("2999-01-01"), Err(ParseTimeError::OutOfRange));
        assert_eq!(parse_instant_checked("2999-01-01T00:00:00Z"), Err(ParseTimeError::OutOfRange));
        assert_eq!(parse_instant_checked("noon"), Err(ParseTimeError::Malformed));
        assert_eq!(parse_instant_checked("2025-11-24"), Ok(1_763_942_400_000_000_000));
    }

    #[test]
    fn the_supported_range_is_what_i64_nanoseconds_hold() {
        assert_eq!(format_rfc3339(i64::MIN), MIN_RFC3339);
        assert_eq!(format_rfc3339(i64::MAX), MAX_RFC3339);
        assert_eq!(parse_rfc3339_checked(MIN_RFC3339), Ok(i64::MIN));
        assert_eq!(parse_rfc3339_checked(MAX_RFC3339), Ok(i64::MAX));
        for beyond in [
            "2262-04-11T23:47:16.854775808Z",
            "2999-01-01T00:00:00Z",
            "1677-09-21T00:12:43.145224191Z",
            // Within range as written, beyond it in UTC.
            "2262-04-11T23:00:00-01:00",
        ] {
            assert_eq!(parse_rfc3339_checked(beyond), Err(ParseTimeError::OutOfRange), "{beyond}");
        }
        assert_eq!(parse_rfc3339_checked("2999-13-01T00:00:00Z"), Err(ParseTimeError::Malformed));
        assert_eq!(parse_rfc3339_checked("noon"), Err(ParseTimeError::Malformed));
    }
}
