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

pub use sentio_core::time::parse_timestamp;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
