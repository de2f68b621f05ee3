//! Command-line instants and durations.

/// Parses `2026-11-24T10:00:00Z`, `2026-11-24` (midnight UTC) or `now`.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    if s == "now" {
        return Ok(sentio_core::time::now_ns());
    }
    use sentio_core::time::ParseTimeError;
    sentio_core::time::parse_instant_checked(s).map_err(|e| match e {
        ParseTimeError::OutOfRange => format!("{s:?} is {e}"),
        ParseTimeError::Malformed => format!(
            "{s:?} is not a time; use RFC 3339 (2026-11-24T10:00:00Z), a date (2026-11-24) or now"
        ),
    })
}

/// Parses a duration such as `90s`, `15m`, `6h`, `2d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 90s, 15m, 6h, 2d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_beyond_2262_is_named_out_of_range() {
        let err = parse_instant("2999-01-01").unwrap_err();
        assert!(err.contains("outside the supported range"), "{err}");
        assert!(parse_instant("noon").unwrap_err().contains("is not a time"));
    }
}
