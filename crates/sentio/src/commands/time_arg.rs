//! Command-line instants and durations.

/// Parses `2026-11-24T10:00:00Z`, `2026-11-24` (midnight UTC) or `now`.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    if s == "now" {
        return Ok(sentio_core::time::now_ns());
    }
    sentio_core::time::parse_instant(s).ok_or_else(|| {
        format!(
            "{s:?} is not a time; use RFC 3339 (2026-11-24T10:00:00Z), a date (2026-11-24) or now"
        )
    })
}

/// Parses a duration such as `90s`, `15m`, `6h`, `2d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 90s, 15m, 6h, 2d"))
}
