//! Labelled CSV files: SKAB's format and generic comma-separated ones.
//!
//! - **SKAB**: `;`-separated, a header row, a `datetime` column (`2020-03-09 10:14:33`), the
//!   sensor columns, then `anomaly` and `changepoint` (0/1, written `0.0`/`1.0`); the anomaly-free
//!   file has neither.
//! - **Generic**: `,`-separated, a timestamp column (`datetime`, `timestamp`, `time` or `ts`),
//!   numeric feature columns and an optional 0/1 label column (`anomaly` unless told otherwise).
//!
//! The separator is `;` when the header holds one, else `,`. Every column other than the
//! timestamp, the label and `changepoint` is a feature. Timestamps are `YYYY-MM-DD HH:MM:SS[.f]`
//! (a `T` instead of the space and a trailing `Z` are accepted; times are taken as UTC), RFC 3339
//! with an offset, or seconds since the Unix epoch; they must not go backwards. Blank lines and
//! Windows line ends are accepted; anything else malformed is an error naming the file, the line
//! and the column.

use std::path::{Path, PathBuf};

use sentio_core::time::NANOS_PER_SEC;

/// Names a timestamp column may have (case-insensitive), in order of preference.
const TIMESTAMP_COLUMNS: [&str; 4] = ["datetime", "timestamp", "time", "ts"];
/// SKAB's second label column: not a feature, not the label evaluated.
const CHANGEPOINT_COLUMN: &str = "changepoint";

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
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Timestamp,
    Label,
    Ignored,
    Feature,
}

/// Parses the text of a file (`path` names it in errors).
pub fn parse_table(path: &Path, text: &str, label_column: &str) -> Result<Table, CsvError> {
    let header_err = |message: String| CsvError::Header { path: path.to_owned(), message };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let Some((_, header)) = lines.by_ref().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(CsvError::Empty { path: path.to_owned() });
    };
    let header = header.trim_start_matches('\u{feff}');
    let sep = if header.contains(';') { ';' } else { ',' };
    let names: Vec<String> = header.split(sep).map(|c| unquote(c).to_owned()).collect();
    let timestamp = TIMESTAMP_COLUMNS
        .iter()
        .find_map(|want| names.iter().position(|n| n.eq_ignore_ascii_case(want)))
        .ok_or_else(|| {
            header_err(format!(
                "no timestamp column (one of {}) among {names:?}",
                TIMESTAMP_COLUMNS.join(", ")
            ))
        })?;
    let label = names.iter().position(|n| n == label_column);
    let roles: Vec<Role> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i == timestamp {
                Role::Timestamp
            } else if Some(i) == label {
                Role::Label
            } else if n.eq_ignore_ascii_case(CHANGEPOINT_COLUMN) {
                Role::Ignored
            } else {
                Role::Feature
            }
        })
        .collect();
    let features: Vec<String> = names
        .iter()
        .zip(&roles)
        .filter(|(_, r)| **r == Role::Feature)
        .map(|(n, _)| n.clone())
        .collect();
    if features.is_empty() {
        return Err(header_err(format!("no feature columns among {names:?}")));
    }
    if let Some(empty) = names.iter().position(|n| n.is_empty()) {
        return Err(header_err(format!("column {} has no name", empty + 1)));
    }

    let mut table = Table {
        path: path.to_owned(),
        features,
        ts_ns: Vec::new(),
        values: Vec::new(),
        labels: label.map(|_| Vec::new()),
    };
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(sep).map(unquote).collect();
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
        for (i, (field, role)) in fields.iter().zip(&roles).enumerate() {
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
                    let v = match field.parse::<f64>() {
                        Ok(0.0) => false,
                        Ok(1.0) => true,
                        _ => return Err(cell_err(i, "a label (0 or 1)")),
                    };
                    if let Some(labels) = &mut table.labels {
                        labels.push(v);
                    }
                }
                Role::Ignored => {}
                Role::Feature => match field.parse::<f64>() {
                    Ok(v) if v.is_finite() => table.values.push(v),
                    _ => return Err(cell_err(i, "a finite number")),
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

/// `2020-03-09 10:14:33[.123]` (or with `T`, optional `Z`) as UTC, RFC 3339 with an offset, or
/// seconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if let Some(ts) = parse_naive(s.strip_suffix('Z').unwrap_or(s)) {
        return Some(ts);
    }
    if let Some(ts) = sentio_core::time::parse_rfc3339(s) {
        return Some(ts);
    }
    let secs: f64 = s.parse().ok()?;
    let ns = secs * NANOS_PER_SEC as f64;
    (ns.is_finite() && ns.abs() < i64::MAX as f64).then_some(ns.round() as i64)
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
}
