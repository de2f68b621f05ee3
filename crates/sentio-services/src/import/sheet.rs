//! One CSV file read leniently for import: what cannot be read is reported per row and left out,
//! and the rest is kept.
//!
//! The header and cell rules are [`super::csv`]'s. Then, per data line (blank lines are passed
//! over and not counted):
//! - a wrong number of fields, a timestamp that does not parse, or a label that is not 0 or 1
//!   skips the row;
//! - a value that is not a finite number (or an empty cell) skips that reading, and the rest of
//!   the row is kept; a row left with no value is skipped;
//! - a timestamp earlier than one above it is counted as out of order (the import sorts rows by
//!   timestamp; duplicates are found there, see [`super::plan`]).

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use sentio_core::Channel;
use sentio_core::time::format_rfc3339;

use super::csv::{
    ColumnSpec, Header, HeaderError, Role, parse_label, parse_timestamp, parse_value,
};
use super::error::ImportError;
use super::names::channel_name;

/// How to read the files of one import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOptions {
    /// The 0/1 ground-truth column (`--label-column`), matched case-insensitively.
    pub label_column: Option<String>,
    /// The timestamp column, when it is not one of `datetime`, `timestamp`, `time`, `ts`.
    pub timestamp_column: Option<String>,
    /// Columns left out (`--skip-column`), by their header or by the channel name they map to.
    pub skip_columns: Vec<String>,
}

/// A column imported as a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetColumn {
    /// The header as written.
    pub column: String,
    pub channel: Channel,
}

/// A file's rows, in file order, with what was left out and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    pub path: PathBuf,
    pub timestamp_column: String,
    /// The label column, when the file has the one asked for.
    pub label_column: Option<String>,
    /// The columns imported, in file order.
    pub channels: Vec<SheetColumn>,
    /// Columns neither imported nor the timestamp or label: `changepoint` and `--skip-column`.
    pub ignored: Vec<String>,
    /// Data rows kept, in file order; `values` follow `channels`.
    pub rows: Vec<Row>,
    /// Non-blank data lines.
    pub rows_read: usize,
    /// Rows kept whose timestamp is earlier than that of a row above them.
    pub out_of_order: usize,
    /// The first of those, by line.
    pub first_out_of_order: Option<usize>,
    pub issues: Vec<Issue>,
}

/// One data row kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: usize,
    pub ts_ns: i64,
    /// The label column said 1.
    pub labelled: bool,
    /// One per channel column; NaN where the cell was left out.
    pub values: Vec<f64>,
}

/// Something in a row that was left out, at `path:line`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub path: PathBuf,
    pub line: usize,
    pub kind: IssueKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IssueKind {
    /// The row has another number of fields than the header: row skipped.
    Fields { expected: usize, found: usize },
    /// Row skipped.
    BadTimestamp { column: String, value: String },
    /// Row skipped: its ground truth is unknown.
    BadLabel { column: String, value: String },
    /// That reading skipped, the rest of the row kept.
    BadValue { column: String, value: String },
    /// Every value of the row was left out: row skipped.
    NoValues,
    /// The row has the timestamp of an earlier row of the same device (`first`, in file and line
    /// order): row skipped, the first one kept.
    Duplicate { ts_ns: i64, first: PathBuf, first_line: usize },
}

impl IssueKind {
    /// Whether the whole row is left out (else one reading).
    pub fn skips_row(&self) -> bool {
        !matches!(self, IssueKind::BadValue { .. })
    }

    /// A short name for counts in the summary.
    pub fn reason(&self) -> &'static str {
        match self {
            IssueKind::Fields { .. } => "wrong number of fields",
            IssueKind::BadTimestamp { .. } => "unreadable timestamp",
            IssueKind::BadLabel { .. } => "label not 0 or 1",
            IssueKind::BadValue { value, .. } if value.is_empty() => "empty cell",
            IssueKind::BadValue { .. } => "not a number",
            IssueKind::NoValues => "no value left",
            IssueKind::Duplicate { .. } => "duplicate timestamp",
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.line)?;
        match &self.kind {
            IssueKind::Fields { expected, found } => {
                write!(f, "{found} fields where the header has {expected}; row skipped")
            }
            IssueKind::BadTimestamp { column, value } => write!(
                f,
                "column {column:?}: {value:?} is not {}; row skipped",
                super::csv::TIMESTAMP_FORMS
            ),
            IssueKind::BadLabel { column, value } => {
                write!(f, "column {column:?}: {value:?} is not a label (0 or 1); row skipped")
            }
            IssueKind::BadValue { column, value } if value.is_empty() => {
                write!(f, "column {column:?} is empty; that reading skipped, the row kept")
            }
            IssueKind::BadValue { column, value } => write!(
                f,
                "column {column:?}: {value:?} is not a finite number; that reading skipped, the \
                 row kept"
            ),
            IssueKind::NoValues => write!(f, "no value in the row could be read; row skipped"),
            IssueKind::Duplicate { ts_ns, first, first_line } => {
                let ts = format_rfc3339(*ts_ns);
                if *first == self.path {
                    write!(f, "timestamp {ts} repeats line {first_line}'s; row skipped")
                } else {
                    write!(
                        f,
                        "timestamp {ts} repeats {}:{first_line}; row skipped",
                        first.display()
                    )
                }
            }
        }
    }
}

/// Reads `path`.
pub fn read_sheet(path: &Path, options: &ReadOptions) -> Result<Sheet, ImportError> {
    let file = std::fs::File::open(path)
        .map_err(|source| ImportError::Io { path: path.to_owned(), source })?;
    parse_sheet(path, std::io::BufReader::with_capacity(1 << 16, file), options)
}

/// Reads a file's text from `input` (`path` names it in reports). Bytes that are not UTF-8 are
/// read as U+FFFD, so a Latin-1 header still names its columns.
pub fn parse_sheet(
    path: &Path,
    mut input: impl BufRead,
    options: &ReadOptions,
) -> Result<Sheet, ImportError> {
    let io = |source| ImportError::Io { path: path.to_owned(), source };
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut next_line = |buf: &mut Vec<u8>| -> Result<Option<(usize, String)>, ImportError> {
        buf.clear();
        if input.read_until(b'\n', buf).map_err(io)? == 0 {
            return Ok(None);
        }
        line_no += 1;
        let text = String::from_utf8_lossy(buf);
        Ok(Some((line_no, text.trim_end_matches(['\n', '\r']).to_owned())))
    };

    let header = loop {
        match next_line(&mut buf)? {
            None => return Err(ImportError::NoHeader { path: path.to_owned() }),
            Some((_, l)) if l.trim().is_empty() => {}
            Some((_, l)) => break l,
        }
    };
    let spec = ColumnSpec {
        label: options.label_column.clone(),
        timestamp: options.timestamp_column.clone(),
        skip: options.skip_columns.clone(),
    };
    let mut header = Header::parse(&header, &spec).map_err(|e| header_error(path, e))?;
    let columns = channel_columns(path, &mut header, &options.skip_columns)?;

    let mut sheet = Sheet {
        path: path.to_owned(),
        timestamp_column: header.names[header.timestamp].clone(),
        label_column: header.label.map(|i| header.names[i].clone()),
        ignored: header
            .names
            .iter()
            .zip(&header.roles)
            .filter(|(_, r)| **r == Role::Ignored)
            .map(|(n, _)| n.clone())
            .collect(),
        channels: columns.iter().map(|(_, c)| c.clone()).collect(),
        rows: Vec::new(),
        rows_read: 0,
        out_of_order: 0,
        first_out_of_order: None,
        issues: Vec::new(),
    };
    let mut newest = i64::MIN;
    while let Some((line, text)) = next_line(&mut buf)? {
        if text.trim().is_empty() {
            continue;
        }
        sheet.rows_read += 1;
        let issue = |kind| Issue { path: path.to_owned(), line, kind };
        let fields = header.fields(&text);
        if fields.len() != header.names.len() {
            let (expected, found) = (header.names.len(), fields.len());
            sheet.issues.push(issue(IssueKind::Fields { expected, found }));
            continue;
        }
        let cell = |i: usize| (header.names[i].clone(), fields[i].to_owned());
        let Some(ts_ns) = parse_timestamp(fields[header.timestamp]) else {
            let (column, value) = cell(header.timestamp);
            sheet.issues.push(issue(IssueKind::BadTimestamp { column, value }));
            continue;
        };
        let labelled = match header.label {
            None => false,
            Some(i) => match parse_label(fields[i]) {
                Some(l) => l,
                None => {
                    let (column, value) = cell(i);
                    sheet.issues.push(issue(IssueKind::BadLabel { column, value }));
                    continue;
                }
            },
        };
        let mut values = Vec::with_capacity(columns.len());
        for &(i, _) in &columns {
            values.push(parse_value(fields[i]).unwrap_or_else(|| {
                let (column, value) = cell(i);
                sheet.issues.push(issue(IssueKind::BadValue { column, value }));
                f64::NAN
            }));
        }
        if values.iter().all(|v| v.is_nan()) {
            sheet.issues.push(issue(IssueKind::NoValues));
            continue;
        }
        if ts_ns < newest {
            sheet.out_of_order += 1;
            sheet.first_out_of_order.get_or_insert(line);
        }
        newest = newest.max(ts_ns);
        sheet.rows.push(Row { line, ts_ns, labelled, values });
    }
    Ok(sheet)
}

/// The feature columns of `header` with their channels, in file order; a feature whose channel
/// name is in `skip` becomes ignored.
fn channel_columns(
    path: &Path,
    header: &mut Header,
    skip: &[String],
) -> Result<Vec<(usize, SheetColumn)>, ImportError> {
    let mut columns: Vec<(usize, SheetColumn)> = Vec::new();
    for i in 0..header.names.len() {
        if header.roles[i] != Role::Feature {
            continue;
        }
        let column = header.names[i].clone();
        let channel = channel_name(&column).ok_or_else(|| ImportError::NoChannelName {
            path: path.to_owned(),
            column: column.clone(),
        })?;
        if skip.iter().any(|s| s == channel.as_str()) {
            header.roles[i] = Role::Ignored;
            continue;
        }
        if let Some((_, first)) = columns.iter().find(|(_, c)| c.channel == channel) {
            return Err(ImportError::ChannelClash {
                path: path.to_owned(),
                first: first.column.clone(),
                second: column,
                channel,
            });
        }
        columns.push((i, SheetColumn { column, channel }));
    }
    if columns.is_empty() {
        return Err(ImportError::NoChannels {
            path: path.to_owned(),
            columns: header.names.clone(),
        });
    }
    Ok(columns)
}

fn header_error(path: &Path, e: HeaderError) -> ImportError {
    let path = path.to_owned();
    match e {
        HeaderError::NoTimestamp { names } => {
            ImportError::NoTimestampColumn { path, columns: names }
        }
        HeaderError::TimestampNotFound { wanted, names } => {
            ImportError::TimestampColumnNotFound { path, wanted, columns: names }
        }
        HeaderError::NoFeatures { names } => ImportError::NoChannels { path, columns: names },
        HeaderError::Unnamed { index } => ImportError::UnnamedColumn { path, index },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sentio_core::time::NANOS_PER_SEC;

    use super::*;

    fn read(text: &str, options: &ReadOptions) -> Result<Sheet, ImportError> {
        parse_sheet(Path::new("f.csv"), text.as_bytes(), options)
    }

    fn labelled() -> ReadOptions {
        ReadOptions { label_column: Some("anomaly".into()), ..ReadOptions::default() }
    }

    const SKAB: &str = "datetime;Accelerometer1RMS;Volume Flow RateRMS;anomaly;changepoint\r\n\
        2020-03-09 10:14:33;0.0265878;32.0;0.0;0.0\r\n\
        \r\n\
        2020-03-09 10:14:34;0.0261697;32.5;1.0;1.0\r\n";

    #[test]
    fn reads_skab_columns_as_channels_and_the_label_as_ground_truth() {
        let s = read(SKAB, &labelled()).unwrap();
        let names: Vec<(&str, &str)> =
            s.channels.iter().map(|c| (c.column.as_str(), c.channel.as_str())).collect();
        assert_eq!(
            names,
            [
                ("Accelerometer1RMS", "accelerometer1rms"),
                ("Volume Flow RateRMS", "volume_flow_raterms")
            ]
        );
        assert_eq!(s.timestamp_column, "datetime");
        assert_eq!(s.label_column.as_deref(), Some("anomaly"));
        assert_eq!(s.ignored, ["changepoint"]);
        assert_eq!(s.rows_read, 2);
        assert_eq!(s.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(s.rows.iter().map(|r| r.labelled).collect::<Vec<_>>(), [false, true]);
        assert_eq!(s.rows[1].values, [0.0261697, 32.5]);
        assert_eq!(s.rows[1].ts_ns - s.rows[0].ts_ns, NANOS_PER_SEC);
        assert!(s.issues.is_empty());

        // Without --label-column, `anomaly` is a column like any other.
        let s = read(SKAB, &ReadOptions::default()).unwrap();
        assert_eq!(s.channels.len(), 3);
        assert_eq!(s.label_column, None);
        assert!(s.rows.iter().all(|r| !r.labelled));
    }

    #[test]
    fn epoch_and_iso_timestamps_read_alike() {
        let epoch = "ts,temp\n1583748873,1\n1583748874500,2\n";
        let iso = "Time,temp\n2020-03-09T10:14:33Z,1\n2020-03-09 12:14:34.5+02:00,2\n";
        let a = read(epoch, &ReadOptions::default()).unwrap();
        let b = read(iso, &ReadOptions::default()).unwrap();
        let ts = |s: &Sheet| s.rows.iter().map(|r| r.ts_ns).collect::<Vec<_>>();
        assert_eq!(ts(&a), [1_583_748_873 * NANOS_PER_SEC, 1_583_748_874_500_000_000]);
        assert_eq!(ts(&a), ts(&b));
        assert!(a.issues.is_empty() && b.issues.is_empty(), "{:?} {:?}", a.issues, b.issues);
    }

    #[test]
    fn rows_that_go_back_in_time_are_kept_and_counted() {
        let text = "ts,x\n10,1\n12,2\n11,3\n9,4\n13,5\n";
        let s = read(text, &ReadOptions::default()).unwrap();
        assert_eq!(s.rows.len(), 5);
        assert_eq!((s.out_of_order, s.first_out_of_order), (2, Some(4)));
    }

    /// A bad cell costs its reading, a bad timestamp, label or field count its row; each is
    /// reported with its line and, for a cell, the column and the value.
    #[test]
    fn what_cannot_be_read_is_reported_per_row_and_the_rest_kept() {
        let text = "datetime;a;b;anomaly\n\
            2020-03-09 10:14:33;1;2;0\n\
            2020-03-09 10:14:34;1,5;2;0\n\
            2020-03-09 25:14:35;1;2;0\n\
            2020-03-09 10:14:36;1;;1\n\
            2020-03-09 10:14:37;1;2;0.5\n\
            2020-03-09 10:14:38;1;2\n\
            2020-03-09 10:14:39;x;NaN;1\n";
        let s = read(text, &labelled()).unwrap();
        assert_eq!(s.rows_read, 7);
        let kept: Vec<(usize, Vec<f64>)> =
            s.rows.iter().map(|r| (r.line, r.values.clone())).collect();
        assert_eq!(kept.len(), 3);
        assert_eq!((kept[0].0, kept[1].0, kept[2].0), (2, 3, 5));
        assert!(kept[1].1[0].is_nan() && kept[1].1[1] == 2.0);
        assert!(kept[2].1[0] == 1.0 && kept[2].1[1].is_nan());
        assert!(s.rows[2].labelled);
        let report: Vec<String> = s.issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            report,
            [
                "f.csv:3: column \"a\": \"1,5\" is not a finite number; that reading skipped, the row kept",
                &format!(
                    "f.csv:4: column \"datetime\": \"2020-03-09 25:14:35\" is not {}; row skipped",
                    super::super::csv::TIMESTAMP_FORMS
                ),
                "f.csv:5: column \"b\" is empty; that reading skipped, the row kept",
                "f.csv:6: column \"anomaly\": \"0.5\" is not a label (0 or 1); row skipped",
                "f.csv:7: 3 fields where the header has 4; row skipped",
                "f.csv:8: column \"a\": \"x\" is not a finite number; that reading skipped, the row kept",
                "f.csv:8: column \"b\": \"NaN\" is not a finite number; that reading skipped, the row kept",
                "f.csv:8: no value in the row could be read; row skipped",
            ]
        );
        let rows_skipped = s.issues.iter().filter(|i| i.kind.skips_row()).count();
        assert_eq!(rows_skipped + s.rows.len(), s.rows_read);
    }

    #[test]
    fn columns_are_left_out_by_header_or_channel_name() {
        let text = "ts,Motor Temp,flow,Notes\n1583748873,1,2,3\n";
        let options = ReadOptions {
            skip_columns: vec!["notes".into(), "motor_temp".into()],
            ..ReadOptions::default()
        };
        let s = read(text, &options).unwrap();
        assert_eq!(s.channels.iter().map(|c| c.channel.as_str()).collect::<Vec<_>>(), ["flow"]);
        assert_eq!(s.ignored, ["Motor Temp", "Notes"]);
        assert_eq!(s.rows[0].values, [2.0]);
    }

    fn error(text: &str, options: &ReadOptions) -> String {
        read(text, options).unwrap_err().to_string()
    }

    #[test]
    fn what_stops_an_import_says_what_to_do() {
        let none = ReadOptions::default();
        let clash = error("ts,Flow Rate,flow_rate\n1,2,3\n", &none);
        assert_eq!(
            clash,
            "f.csv: columns \"Flow Rate\" and \"flow_rate\" both become channel flow_rate; rename \
             one in the header, or leave one out with --skip-column"
        );
        // Leaving one out is the way forward.
        let skip = ReadOptions { skip_columns: vec!["Flow Rate".into()], ..none.clone() };
        assert_eq!(read("ts,Flow Rate,flow_rate\n1,2,3\n", &skip).unwrap().channels.len(), 1);
        assert!(error("a,b\n1,2\n", &none).contains("no timestamp column among [\"a\", \"b\"]"));
        assert!(error("a,b\n1,2\n", &none).contains("--timestamp-column"));
        let named = ReadOptions { timestamp_column: Some("A".into()), ..none.clone() };
        assert_eq!(read("a,b\n1583748873,2\n", &named).unwrap().rows.len(), 1);
        assert!(error("\n\n", &none).contains("no header row"));
        assert!(error("ts,(%)\n1,2\n", &none).contains("column \"(%)\" has no letter or digit"));
        assert!(error("ts,x,\n1,2,3\n", &none).contains("column 3 of the header has no name"));
        assert!(error("ts,anomaly\n1,0\n", &labelled()).starts_with("f.csv: no column to import"));
        let missing = read_sheet(Path::new("/nonexistent/x.csv"), &none).unwrap_err();
        assert!(missing.to_string().contains("cannot read /nonexistent/x.csv: check the path"));
    }

    #[test]
    fn a_header_only_file_has_no_rows_and_no_issues() {
        let s = read("ts,x\n", &ReadOptions::default()).unwrap();
        assert_eq!((s.rows_read, s.rows.len(), s.issues.len()), (0, 0, 0));
    }
}
