//! Timestamps: `i64` nanoseconds since the Unix epoch, UTC, written as RFC 3339.

use chrono::{DateTime, Utc};

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// RFC 3339 with only as many fractional digits as needed (none, 3, 6 or 9), always `Z`: what
/// chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes (a test holds the two equal).
/// It runs for every reading message encoded, so it is written out here rather than through
/// chrono's general formatter (a third of the encoding's time).
pub fn format_rfc3339(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(NANOS_PER_SEC);
    let nanos = ts_ns.rem_euclid(NANOS_PER_SEC);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut out = [0u8; 30];
    let mut len = 0;
    let mut put = |value: i64, width: usize, after: Option<u8>| {
        let mut v = value;
        for i in (0..width).rev() {
            out[len + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        len += width;
        if let Some(c) = after {
            out[len] = c;
            len += 1;
        }
    };
    put(year, 4, Some(b'-'));
    put(month, 2, Some(b'-'));
    put(day, 2, Some(b'T'));
    put(rem / 3600, 2, Some(b':'));
    put(rem / 60 % 60, 2, Some(b':'));
    put(rem % 60, 2, None);
    if nanos != 0 {
        let (digits, value) = if nanos % 1_000_000 == 0 {
            (3, nanos / 1_000_000)
        } else if nanos % 1000 == 0 {
            (6, nanos / 1000)
        } else {
            (9, nanos)
        };
        out[len] = b'.';
        len += 1;
        let mut v = value;
        for i in (0..digits).rev() {
            out[len + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        len += digits;
    }
    out[len] = b'Z';
    len += 1;
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&out[..len]).into_owned()
}

/// Year, month and day of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`), for the
/// years an `i64` of nanoseconds reaches (1677 to 2262).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

/// Below this magnitude an epoch number is seconds (up to the year 5138)...
const EPOCH_SECONDS_BELOW: i128 = 100_000_000_000;
/// ...below this milliseconds (from March 1973, 1e11 ms, up to the year 5138)...
const EPOCH_MILLIS_BELOW: i128 = EPOCH_SECONDS_BELOW * 1000;
/// ...below this microseconds, and nanoseconds from here on.
const EPOCH_MICROS_BELOW: i128 = EPOCH_MILLIS_BELOW * 1000;

/// `2020-03-09 10:14:33[.123]` (or with `T`, optional `Z`) as UTC, RFC 3339 with an offset, or a
/// number since the Unix epoch (optionally with a fraction): seconds when its magnitude is below
/// 1e11, milliseconds below 1e14, microseconds below 1e17, else nanoseconds. Every plant
/// timestamp from 1973 to the year 5138 is thereby read in the right unit.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if let Some(ts) = parse_naive(s.strip_suffix('Z').unwrap_or(s)) {
        return Some(ts);
    }
    if let Some(ts) = parse_rfc3339(s) {
        return Some(ts);
    }
    parse_epoch(s)
}

/// A number since the epoch, its unit told by magnitude (see [`parse_timestamp`]). Plain decimals
/// are read exactly; exponent forms (`1.7e9`) through `f64`.
fn parse_epoch(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !whole.is_empty()
        && whole.len() <= 20
        && fraction.len() <= 18
        && whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit());
    let ns: i128 = if plain {
        let whole: i128 = whole.parse().ok()?;
        let scale = scale_ns(whole);
        let frac = if fraction.is_empty() {
            0
        } else {
            let f: i128 = fraction.parse().ok()?;
            f * scale / 10i128.pow(u32::try_from(fraction.len()).ok()?)
        };
        let ns = whole * scale + frac;
        if negative { -ns } else { ns }
    } else {
        let v: f64 = s.parse().ok()?;
        if !v.is_finite() || v.abs() >= 1e20 {
            return None;
        }
        // Truncation is the point: the magnitude decides the unit.
        let scale = scale_ns(v.abs() as i128);
        (v * scale as f64).round() as i128
    };
    i64::try_from(ns).ok()
}

/// Nanoseconds per unit of an epoch number of magnitude `whole`.
fn scale_ns(whole: i128) -> i128 {
    let whole = whole.abs();
    if whole < EPOCH_SECONDS_BELOW {
        i128::from(NANOS_PER_SEC)
    } else if whole < EPOCH_MILLIS_BELOW {
        1_000_000
    } else if whole < EPOCH_MICROS_BELOW {
        1_000
    } else {
        1
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]`, or with `T` between date and time.
fn parse_naive(s: &str) -> Option<i64> {
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u32>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let utc = date.and_hms_opt(h, m, sec)?.and_utc();
    let mut nanos = 0i64;
    if !fraction.is_empty() {
        if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: i64 = fraction.parse().ok()?;
        nanos = digits * 10i64.pow(9 - fraction.len() as u32);
    }
    utc.timestamp_nanos_opt()?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_several_forms() {
        let base = parse_timestamp("2020-03-09 10:14:33").unwrap();
        assert_eq!(parse_timestamp("2020-03-09T10:14:33.25"), Some(base + 250_000_000));
        assert_eq!(parse_timestamp("2020-03-09T12:14:33+02:00"), Some(base));
        assert_eq!(parse_timestamp("2020-02-30 10:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    /// The same instant as epoch seconds, milliseconds, microseconds and nanoseconds, with and
    /// without a fraction: the magnitude picks the unit, and plain decimals are exact.
    #[test]
    fn epoch_numbers_are_read_in_the_unit_their_magnitude_says() {
        let base = parse_timestamp("2020-03-09 10:14:33").unwrap();
        assert_eq!(base, 1_583_748_873 * NANOS_PER_SEC);
        for text in ["1583748873", "1583748873000", "1583748873000000", "1583748873000000000"] {
            assert_eq!(parse_timestamp(text), Some(base), "{text}");
        }
        let later = base + 123_456_789;
        for text in [
            "1583748873.123456789",
            "1583748873123.456789",
            "1583748873123456.789",
            "1583748873123456789",
        ] {
            assert_eq!(parse_timestamp(text), Some(later), "{text}");
        }
        assert_eq!(parse_timestamp("1.583748873e9"), Some(base));
        assert_eq!(parse_timestamp("-1.5"), Some(-1_500_000_000));
        for bad in ["", "1.2.3", "12a", "NaN", "inf", "1e30", "99999999999999999999999"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

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

    #[test]
    fn rfc3339_is_chronos_autosi() {
        use chrono::{DateTime, SecondsFormat, Utc};
        let chrono = |ts: i64| {
            DateTime::<Utc>::from_timestamp_nanos(ts).to_rfc3339_opts(SecondsFormat::AutoSi, true)
        };
        let mut fixed =
            vec![0, 1, -1, 999, 1_000_000, 1_000, i64::MIN, i64::MAX, -86_400_000_000_000];
        fixed.extend(
            [951_782_400, 951_868_800, 4_107_542_400, 1_796_256_000].map(|s| s * NANOS_PER_SEC),
        );
        for ts in fixed {
            assert_eq!(format_rfc3339(ts), chrono(ts), "{ts}");
        }
        // Every kind of day and fraction: a pseudo-random walk over the whole range.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ts = x as i64;
            let ts = match x % 4 {
                0 => ts,
                1 => ts / 1000 * 1000,
                2 => ts / 1_000_000 * 1_000_000,
                _ => ts / NANOS_PER_SEC * NANOS_PER_SEC,
            };
            assert_eq!(format_rfc3339(ts), chrono(ts), "{ts}");
        }
    }
}
