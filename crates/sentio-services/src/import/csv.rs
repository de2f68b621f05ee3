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
//! Two readers share the header and cell rules:
//! - [`read_table`], for `sentio evaluate --csv`, is strict: anything malformed, and a timestamp
//!   that goes backwards, is an error naming the file, the line and the column.
//! - [`super::sheet`], for `sentio import`, reports such rows and cells and carries on.

use std::path::{Path, PathBuf};

use sentio_core::time::NANOS_PER_SEC;

/// Names a timestamp column may have (case-insensitive), in order of preference.
pub const TIMESTAMP_COLUMNS: [&str; 4] = ["datetime", "timestamp", "time", "ts"];
/// SKAB's second label column: not a feature, not the label evaluated.
pub const CHANGEPOINT_COLUMN: &str = "changepoint";

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line 1 (header): {message}")]
    Header { path: PathBuf, message: String },
    #[error("{path}: line {line}: expected {expected} fields, found {found}")]
    Fields { path: PathBuf, line: usize, expected: usize, found: usize },
    #[error("{path}: line {line}, column {column:?}: {value:?} is not {expected}")]
    Cell { path: PathBuf, line: usize, column: String, value: String, expected: &'static str },
    #[error("{path}: line {line}: the timestamp goes back in time")]
    Order { path: PathBuf, line: usize },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
}

/// A table of readings: one row per timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub path: PathBuf,
    /// Feature column names, in file order.
    pub features: Vec<String>,
    pub ts_ns: Vec<i64>,
    /// `rows × features`, row-major.
    pub values: Vec<f64>,
    /// The label column, when the file has one.
    pub labels: Option<Vec<bool>>,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.ts_ns.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let f = self.features.len();
        &self.values[i * f..(i + 1) * f]
    }
}

/// Reads `path`; `label_column` names the 0/1 label column (absent is fine: no labels).
pub fn read_table(path: &Path, label_column: &str) -> Result<Table, CsvError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| CsvError::Io { path: path.to_owned(), source })?;
    parse_table(path, &text, label_column)
}

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

/// Parses the text of a file (`path` names it in errors).
pub fn parse_table(path: &Path, text: &str, label_column: &str) -> Result<Table, CsvError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let Some((_, header)) = lines.by_ref().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(CsvError::Empty { path: path.to_owned() });
    };
    let spec = ColumnSpec { label: Some(label_column.to_owned()), ..ColumnSpec::default() };
    let header = Header::parse(header, &spec)
        .map_err(|e| CsvError::Header { path: path.to_owned(), message: e.to_string() })?;
    let names = &header.names;

    let mut table = Table {
        path: path.to_owned(),
        features: header.features().map(str::to_owned).collect(),
        ts_ns: Vec::new(),
        values: Vec::new(),
        labels: header.label.map(|_| Vec::new()),
    };
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        let fields = header.fields(text);
        if fields.len() != names.len() {
            return Err(CsvError::Fields {
                path: path.to_owned(),
                line,
                expected: names.len(),
                found: fields.len(),
            });
        }
        let cell_err = |i: usize, expected: &'static str| CsvError::Cell {
            path: path.to_owned(),
            line,
            column: names[i].clone(),
            value: fields[i].to_owned(),
            expected,
        };
        for (i, (field, role)) in fields.iter().zip(&header.roles).enumerate() {
            match role {
                Role::Timestamp => {
                    let ts = parse_timestamp(field)
                        .ok_or_else(|| cell_err(i, "a timestamp (2020-03-09 10:14:33)"))?;
                    if table.ts_ns.last().is_some_and(|&last| ts < last) {
                        return Err(CsvError::Order { path: path.to_owned(), line });
                    }
                    table.ts_ns.push(ts);
                }
                Role::Label => {
                    let v = parse_label(field).ok_or_else(|| cell_err(i, "a label (0 or 1)"))?;
                    if let Some(labels) = &mut table.labels {
                        labels.push(v);
                    }
                }
                Role::Ignored => {}
                Role::Feature => match parse_value(field) {
                    Some(v) => table.values.push(v),
                    None => return Err(cell_err(i, "a finite number")),
                },
            }
        }
    }
    if table.ts_ns.is_empty() {
        return Err(CsvError::Empty { path: path.to_owned() });
    }
    Ok(table)
}

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

    const SKAB: &str = "datetime;Accelerometer1RMS;Current;anomaly;changepoint\r\n\
        2020-03-09 10:14:33;0.0265878;1.3302;0.0;0.0\r\n\
        2020-03-09 10:14:34;0.0261697;1.35399;1.0;1.0\r\n\
        \r\n";

    fn parse(text: &str) -> Result<Table, CsvError> {
        parse_table(Path::new("f.csv"), text, "anomaly")
    }

    #[test]
    fn reads_skab() {
        let t = parse(SKAB).unwrap();
        assert_eq!(t.features, ["Accelerometer1RMS", "Current"]);
        assert_eq!(t.rows(), 2);
        assert_eq!(t.ts_ns[1] - t.ts_ns[0], NANOS_PER_SEC);
        assert_eq!(t.ts_ns[0], parse_timestamp("2020-03-09T10:14:33Z").unwrap());
        assert_eq!(t.row(1), [0.0261697, 1.35399]);
        assert_eq!(t.labels, Some(vec![false, true]));
    }

    #[test]
    fn reads_generic_comma_separated_with_a_named_label() {
        let text = "timestamp,temp,\"vib\",fault\n1700000000,1.5,2,0\n1700000001.5,1.25,3,1\n";
        let t = parse_table(Path::new("g.csv"), text, "fault").unwrap();
        assert_eq!(t.features, ["temp", "vib"]);
        assert_eq!(t.ts_ns, [1_700_000_000 * NANOS_PER_SEC, 1_700_000_001_500_000_000]);
        assert_eq!(t.labels, Some(vec![false, true]));
        // Without that label column the file has no labels and `fault` is a feature.
        let t = parse(text).unwrap();
        assert_eq!((t.features.len(), t.labels), (3, None));
    }

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

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn malformed_input_names_the_file_line_and_column() {
        let bad_number = SKAB.replace("1.35399", "1,35");
        assert_eq!(
            error(&bad_number),
            "f.csv: line 3, column \"Current\": \"1,35\" is not a finite number"
        );
        let bad_label = SKAB.replace(";1.0;1.0", ";0.5;1.0");
        assert_eq!(
            error(&bad_label),
            "f.csv: line 3, column \"anomaly\": \"0.5\" is not a label (0 or 1)"
        );
        let bad_time = SKAB.replace("2020-03-09 10:14:34", "2020-03-09 25:14:34");
        assert!(error(&bad_time).starts_with("f.csv: line 3, column \"datetime\":"));
        let short = SKAB.replace(";1.35399", "");
        assert_eq!(error(&short), "f.csv: line 3: expected 5 fields, found 4");
        let backwards = SKAB.replace("10:14:34", "10:14:32");
        assert_eq!(error(&backwards), "f.csv: line 3: the timestamp goes back in time");
        assert!(error("a;b\n1;2\n").contains("line 1 (header): no timestamp column"));
        assert!(error("datetime;anomaly\n").contains("no feature columns"));
        assert_eq!(error("datetime;x\n\n"), "f.csv: no data rows");
        assert_eq!(error(""), "f.csv: no data rows");
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
