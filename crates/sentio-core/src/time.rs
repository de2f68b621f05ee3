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

/// Parses RFC 3339 into nanoseconds; `None` when malformed or outside what `i64` nanoseconds hold
/// (years 1677 to 2262).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc).timestamp_nanos_opt()
}

/// Parses either RFC 3339 or a bare date (`2026-11-24`, meaning its midnight UTC).
pub fn parse_instant(s: &str) -> Option<i64> {
    parse_rfc3339(s).or_else(|| {
        let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
    })
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
}
