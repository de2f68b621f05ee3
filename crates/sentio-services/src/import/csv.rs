//! Labelled CSV files: SKAB's format and generic comma-separated ones.
//!
//! - **SKAB**: `;`-separated, a header row, a `datetime` column (`2020-03-09 10:14:33`), the
//!   sensor columns, then `anomaly` and `changepoint` (0/1, written `0.0`/`1.0`); the anomaly-free
//!   file has neither.
//! - **Generic**: `,`-separated, a timestamp column (`datetime`, `timestamp`, `time` or `ts`),
//!   numeric feature columns and an optional 0/1 label column (`anomaly` unless told otherwise).
//!
//! The separator is `;` when the header holds one, else `,`. Fields may be wrapped in double
//! quotes, but a quoted field cannot hold the separator. Every column other than the timestamp,
//! the label and `changepoint` is a feature. Column names match case-insensitively. Timestamps
//! (see [`parse_timestamp`]) are `YYYY-MM-DD HH:MM:SS[.f]` (a `T` instead of the space and a
//! trailing `Z` are accepted; times are taken as UTC), RFC 3339 with an offset, or a number since
//! the Unix epoch in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.
//! Blank lines, a byte-order mark and Windows line ends are accepted.
//!
//! The reader is [`super::sheet`]: it reports malformed rows and cells, and carries on.

use sentio_core::time::NANOS_PER_SEC;

/// Names a timestamp column may have (case-insensitive), in order of preference.
pub const TIMESTAMP_COLUMNS: [&str; 4] = ["datetime", "timestamp", "time", "ts"];
/// SKAB's second label column: not a feature, not the label evaluated.
pub const CHANGEPOINT_COLUMN: &str = "changepoint";

/// What a header column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Timestamp,
    Label,
    /// `changepoint`, and any column the caller leaves out.
    Ignored,
    Feature,
}

/// Which columns a header's names play which [`Role`] in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnSpec {
    /// The 0/1 label column, if the file has one by this name.
    pub label: Option<String>,
    /// The timestamp column; `None` takes the first of [`TIMESTAMP_COLUMNS`] present.
    pub timestamp: Option<String>,
    /// Whether a column (by its name as written) is left out.
    pub skip: Vec<String>,
}

/// A header row, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub sep: char,
    /// Column names as written (unquoted, trimmed), in file order.
    pub names: Vec<String>,
    pub roles: Vec<Role>,
    pub timestamp: usize,
    pub label: Option<usize>,
}

/// Why a header row is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no timestamp column (one of {}) among {names:?}", TIMESTAMP_COLUMNS.join(", "))]
    NoTimestamp { names: Vec<String> },
    #[error("no timestamp column {wanted:?} among {names:?}")]
    TimestampNotFound { wanted: String, names: Vec<String> },
    #[error("no feature columns among {names:?}")]
    NoFeatures { names: Vec<String> },
    /// `index` counts from 1.
    #[error("column {index} has no name")]
    Unnamed { index: usize },
}

impl Header {
    /// Reads a header line (a leading byte-order mark is dropped).
    pub fn parse(line: &str, spec: &ColumnSpec) -> Result<Header, HeaderError> {
        let line = line.trim_start_matches('\u{feff}');
        let sep = if line.contains(';') { ';' } else { ',' };
        let names: Vec<String> = line.split(sep).map(|c| unquote(c).to_owned()).collect();
        let find = |want: &str| names.iter().position(|n| n.eq_ignore_ascii_case(want));
        let timestamp = match &spec.timestamp {
            Some(wanted) => find(wanted).ok_or_else(|| HeaderError::TimestampNotFound {
                wanted: wanted.clone(),
                names: names.clone(),
            })?,
            None => TIMESTAMP_COLUMNS
                .iter()
                .find_map(|want| find(want))
                .ok_or_else(|| HeaderError::NoTimestamp { names: names.clone() })?,
        };
        let label = spec.label.as_deref().and_then(find);
        let roles: Vec<Role> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == timestamp {
                    Role::Timestamp
                } else if Some(i) == label {
                    Role::Label
                } else if n.eq_ignore_ascii_case(CHANGEPOINT_COLUMN)
                    || spec.skip.iter().any(|s| s.eq_ignore_ascii_case(n))
                {
                    Role::Ignored
                } else {
                    Role::Feature
                }
            })
            .collect();
        if !roles.contains(&Role::Feature) {
            return Err(HeaderError::NoFeatures { names });
        }
        if let Some(empty) = names.iter().position(|n| n.is_empty()) {
            return Err(HeaderError::Unnamed { index: empty + 1 });
        }
        Ok(Header { sep, names, roles, timestamp, label })
    }

    /// The names of the feature columns, in file order.
    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.names.iter().zip(&self.roles).filter(|(_, r)| **r == Role::Feature).map(|(n, _)| &**n)
    }

    /// A data line's fields, unquoted and trimmed.
    pub fn fields<'a>(&self, line: &'a str) -> Vec<&'a str> {
        line.split(self.sep).map(unquote).collect()
    }
}

/// What a timestamp cell may hold, for messages.
pub const TIMESTAMP_FORMS: &str =
    "a timestamp (2020-03-09 10:14:33, RFC 3339, or a number since the Unix epoch)";

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(f).trim()
}

/// A label cell: `0` or `1`, in any form that parses as that number (`0.0`, `1.0`).
pub fn parse_label(s: &str) -> Option<bool> {
    match s.parse::<f64>() {
        Ok(0.0) => Some(false),
        Ok(1.0) => Some(true),
        _ => None,
    }
}

/// A value cell: a finite number with a `.` decimal point.
pub fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
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
    if let Some(ts) = sentio_core::time::parse_rfc3339(s) {
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
    #![allow(clippy::unwrap_used)]
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
    fn labels_are_zero_or_one_in_any_numeric_form() {
        assert_eq!(parse_label("0"), Some(false));
        assert_eq!(parse_label("1.0"), Some(true));
        assert_eq!(parse_label("0.5"), None);
        assert_eq!(parse_label("yes"), None);
    }

    #[test]
    fn a_header_names_the_roles_of_its_columns() {
        let spec = ColumnSpec {
            label: Some("Fault".into()),
            timestamp: Some("When".into()),
            skip: vec!["NOTE".into()],
        };
        let h = Header::parse("\u{feff}id,when,temp,note,fault,changepoint,time", &spec).unwrap();
        assert_eq!(h.sep, ',');
        assert_eq!((h.timestamp, h.label), (1, Some(4)));
        use Role::*;
        assert_eq!(h.roles, [Feature, Timestamp, Feature, Ignored, Label, Ignored, Feature]);
        assert_eq!(h.features().collect::<Vec<_>>(), ["id", "temp", "time"]);
        assert_eq!(
            Header::parse("a,b", &ColumnSpec { timestamp: Some("c".into()), ..spec.clone() }),
            Err(HeaderError::TimestampNotFound {
                wanted: "c".into(),
                names: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            Header::parse("ts;x;", &ColumnSpec::default()),
            Err(HeaderError::Unnamed { index: 3 })
        );
    }
}
