//! From the files of one device to its readings: profile and units, timestamp order, duplicates,
//! sequence numbers and ground truth.
//!
//! - **Profile.** With `--profile P`, P must exist and must be the profile the configured device
//!   patterns give the device (else the ETL would check the readings against another profile);
//!   without it, the device's profile by pattern, if any. A channel the profile declares takes
//!   its unit; any other channel is imported with no unit (stored, not modelled).
//! - **Order.** The rows of all the device's files are sorted by timestamp, stably (file order,
//!   then line order, among equal timestamps).
//! - **Duplicates.** A row with the timestamp of an earlier row (in that order) is skipped and
//!   reported with both places; the first is kept.
//! - **Readings.** One per value of a kept row, in the order of the device's channels (first seen
//!   first); `seq` counts each channel's readings from 0 in timestamp order; a row labelled 1
//!   carries [`AnomalyKind::Labelled`] on each of its readings.

use std::path::PathBuf;

use sentio_core::{AnomalyKind, Channel, DeviceId, Profile, Profiles, Reading, Unit};

use super::error::ImportError;
use super::sheet::{Issue, IssueKind, Sheet};

/// A channel of the device and where its readings come from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChannel {
    pub channel: Channel,
    /// The headers it comes from (one per file, alike or not).
    pub columns: Vec<String>,
    pub unit: Unit,
    /// Whether the profile declares it (a model reads it).
    pub modelled: bool,
    pub readings: u64,
}

/// One device's import, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePlan {
    pub device: DeviceId,
    /// The profile the units come from, if any claims the device.
    pub profile: Option<String>,
    pub files: Vec<PathBuf>,
    pub channels: Vec<PlannedChannel>,
    /// Channels the profile declares that no file has.
    pub missing: Vec<Channel>,
    /// Columns neither channels nor timestamp nor label, per file, deduplicated.
    pub ignored: Vec<String>,
    /// Files without the label column asked for.
    pub unlabelled_files: Vec<PathBuf>,
    pub rows_read: usize,
    /// Rows whose timestamp was earlier than a row above them in their file (now sorted).
    pub out_of_order: usize,
    /// Where the first of them was, per file.
    pub first_out_of_order: Vec<(PathBuf, usize)>,
    /// Everything left out, in file and line order.
    pub issues: Vec<Issue>,
    pub labelled_rows: usize,
    /// The kept rows' first and last timestamps.
    pub span: Option<(i64, i64)>,
    rows: Vec<PlannedRow>,
}

#[derive(Debug, Clone, PartialEq)]
struct PlannedRow {
    ts_ns: i64,
    labelled: bool,
    /// One per channel of the plan; NaN where there is no reading.
    values: Vec<f64>,
}

/// The profile that gives `device` its units: `requested` (which must exist and claim the
/// device), or the one the device patterns give it.
pub fn resolve_profile<'a>(
    profiles: &'a Profiles,
    device: &DeviceId,
    requested: Option<&str>,
) -> Result<Option<&'a Profile>, ImportError> {
    let by_pattern = profiles.for_device(device.as_str());
    let Some(name) = requested else {
        return Ok(by_pattern);
    };
    if profiles.get(name).is_none() {
        let known: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        return Err(ImportError::UnknownProfile { name: name.to_owned(), known: known.join(", ") });
    }
    match by_pattern {
        Some(p) if p.name == name => Ok(Some(p)),
        other => Err(ImportError::ProfileMismatch {
            device: device.clone(),
            profile: name.to_owned(),
            actual: other.map_or("in no profile".to_owned(), |p| format!("profile {}", p.name)),
        }),
    }
}

impl DevicePlan {
    /// Merges the sheets of `device` (in the order given) under `profile`; `label_asked` says
    /// whether a label column was asked for (files without it are listed).
    pub fn new(
        device: DeviceId,
        sheets: Vec<Sheet>,
        profile: Option<&Profile>,
        label_asked: bool,
    ) -> Self {
        let mut channels: Vec<PlannedChannel> = Vec::new();
        let mut plan = DevicePlan {
            device,
            profile: profile.map(|p| p.name.clone()),
            files: Vec::new(),
            channels: Vec::new(),
            missing: Vec::new(),
            ignored: Vec::new(),
            unlabelled_files: Vec::new(),
            rows_read: 0,
            out_of_order: 0,
            first_out_of_order: Vec::new(),
            issues: Vec::new(),
            labelled_rows: 0,
            span: None,
            rows: Vec::new(),
        };
        // (timestamp, sheet, row): collected in file then line order, so a stable sort keeps
        // that order among equal timestamps.
        let mut rows: Vec<(i64, usize, usize)> = Vec::new();
        let mut maps: Vec<Vec<usize>> = Vec::new();
        for (s, sheet) in sheets.iter().enumerate() {
            let map = sheet
                .channels
                .iter()
                .map(|c| {
                    if let Some(i) = channels.iter().position(|p| p.channel == c.channel) {
                        if !channels[i].columns.contains(&c.column) {
                            channels[i].columns.push(c.column.clone());
                        }
                        return i;
                    }
                    let spec =
                        profile.and_then(|p| p.channels.iter().find(|d| d.name == c.channel));
                    channels.push(PlannedChannel {
                        channel: c.channel.clone(),
                        columns: vec![c.column.clone()],
                        unit: spec.map_or_else(no_unit, |d| d.unit.clone()),
                        modelled: spec.is_some(),
                        readings: 0,
                    });
                    channels.len() - 1
                })
                .collect();
            maps.push(map);
            plan.files.push(sheet.path.clone());
            if label_asked && sheet.label_column.is_none() {
                plan.unlabelled_files.push(sheet.path.clone());
            }
            for name in &sheet.ignored {
                if !plan.ignored.contains(name) {
                    plan.ignored.push(name.clone());
                }
            }
            plan.rows_read += sheet.rows_read;
            plan.out_of_order += sheet.out_of_order;
            if let Some(line) = sheet.first_out_of_order {
                plan.first_out_of_order.push((sheet.path.clone(), line));
            }
            plan.issues.extend(sheet.issues.iter().cloned());
            rows.extend(sheet.rows.iter().enumerate().map(|(r, row)| (row.ts_ns, s, r)));
        }
        rows.sort_by_key(|&(ts, _, _)| ts);

        let mut kept: Option<(i64, usize, usize)> = None;
        for (ts_ns, s, r) in rows {
            let row = &sheets[s].rows[r];
            if let Some((kept_ts, ks, kr)) = kept
                && kept_ts == ts_ns
            {
                plan.issues.push(Issue {
                    path: sheets[s].path.clone(),
                    line: row.line,
                    kind: IssueKind::Duplicate {
                        ts_ns,
                        first: sheets[ks].path.clone(),
                        first_line: sheets[ks].rows[kr].line,
                    },
                });
                continue;
            }
            kept = Some((ts_ns, s, r));
            let mut values = vec![f64::NAN; channels.len()];
            for (v, &i) in row.values.iter().zip(&maps[s]) {
                if !v.is_nan() {
                    values[i] = *v;
                    channels[i].readings += 1;
                }
            }
            plan.labelled_rows += usize::from(row.labelled);
            plan.rows.push(PlannedRow { ts_ns, labelled: row.labelled, values });
        }
        // Reported in file and line order.
        let files = &plan.files;
        plan.issues.sort_by_key(|i| (files.iter().position(|f| *f == i.path), i.line));
        plan.span = plan.rows.first().zip(plan.rows.last()).map(|(a, b)| (a.ts_ns, b.ts_ns));
        if let Some(p) = profile {
            plan.missing = p
                .channels
                .iter()
                .filter(|d| !channels.iter().any(|c| c.channel == d.name))
                .map(|d| d.name.clone())
                .collect();
        }
        plan.channels = channels;
        plan
    }

    /// Rows kept (each gives at least one reading).
    pub fn rows_kept(&self) -> usize {
        self.rows.len()
    }

    /// Rows left out.
    pub fn rows_skipped(&self) -> usize {
        self.issues.iter().filter(|i| i.kind.skips_row()).count()
    }

    /// Readings left out from kept rows.
    pub fn readings_skipped(&self) -> usize {
        self.issues.iter().filter(|i| !i.kind.skips_row()).count()
    }

    /// Readings to publish.
    pub fn reading_count(&self) -> u64 {
        self.channels.iter().map(|c| c.readings).sum()
    }

    /// The readings, in timestamp order, then channel order.
    pub fn readings(&self) -> impl Iterator<Item = Reading> + '_ {
        let mut seq = vec![0u64; self.channels.len()];
        self.rows
            .iter()
            .flat_map(|row| {
                row.values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_nan())
                    .map(move |(c, v)| (row, c, *v))
            })
            .map(move |(row, c, value)| {
                let channel = &self.channels[c];
                let reading = Reading {
                    device: self.device.clone(),
                    sensor: channel.channel.clone(),
                    unit: channel.unit.clone(),
                    ts_ns: row.ts_ns,
                    value,
                    seq: seq[c],
                    injected: row.labelled.then_some(AnomalyKind::Labelled),
                    ts_source: sentio_core::TsSource::Event,
                };
                seq[c] += 1;
                reading
            })
    }
}

/// The unit of a channel no profile declares: none.
fn no_unit() -> Unit {
    #[allow(clippy::expect_used)] // "" is a valid unit: under 32 bytes, no control character.
    Unit::new("").expect("the empty unit is valid")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use sentio_core::time::NANOS_PER_SEC;
    use sentio_core::{ChannelSpec, SensorKind};

    use super::super::sheet::{ReadOptions, parse_sheet};
    use super::*;

    fn sheet(path: &str, text: &str) -> Sheet {
        let options =
            ReadOptions { label_column: Some("anomaly".into()), ..ReadOptions::default() };
        parse_sheet(Path::new(path), text.as_bytes(), &options).unwrap()
    }

    fn device(id: &str) -> DeviceId {
        DeviceId::new(id).unwrap()
    }

    fn plan(sheets: Vec<Sheet>) -> DevicePlan {
        DevicePlan::new(device("dev-1"), sheets, None, true)
    }

    const T0: i64 = 1_583_748_873 * NANOS_PER_SEC;

    /// Rows out of order come out sorted; `seq` counts per channel in timestamp order, skipping
    /// nothing for a reading left out of another channel.
    #[test]
    fn rows_are_sorted_and_each_channel_counts_its_own_seq() {
        let s = sheet("a.csv", "ts,x,y\n1583748875,3,30\n1583748873,1,\n1583748874,2,20\n");
        let p = plan(vec![s]);
        assert_eq!((p.out_of_order, p.first_out_of_order.clone()), (2, vec![("a.csv".into(), 3)]));
        let got: Vec<String> = p
            .readings()
            .map(|r| {
                format!("{} {} {} {}", (r.ts_ns - T0) / NANOS_PER_SEC, r.sensor, r.value, r.seq)
            })
            .collect();
        assert_eq!(got, ["0 x 1 0", "1 x 2 1", "1 y 20 0", "2 x 3 2", "2 y 30 1"]);
        assert_eq!(p.reading_count(), 5);
        assert_eq!(p.readings_skipped(), 1, "the empty y at line 3");
        assert_eq!(p.span, Some((T0, T0 + 2 * NANOS_PER_SEC)));
    }

    #[test]
    fn a_repeated_timestamp_is_reported_with_both_lines_and_skipped() {
        let p = plan(vec![
            sheet("a.csv", "ts,x\n1583748873,1\n1583748874,2\n1583748873,9\n"),
            sheet("b.csv", "ts,x\n1583748874,7\n1583748875,3\n"),
        ]);
        let values: Vec<f64> = p.readings().map(|r| r.value).collect();
        assert_eq!(values, [1.0, 2.0, 3.0], "the first of each timestamp is kept");
        let report: Vec<String> = p.issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            report,
            [
                "a.csv:4: timestamp 2020-03-09T10:14:33Z repeats line 2's; row skipped",
                "b.csv:2: timestamp 2020-03-09T10:14:34Z repeats a.csv:3; row skipped",
            ]
        );
        assert_eq!((p.rows_read, p.rows_kept(), p.rows_skipped()), (5, 3, 2));
    }

    #[test]
    fn a_labelled_row_marks_every_reading_of_it() {
        let s = sheet(
            "s.csv",
            "datetime;a;b;anomaly\n2020-03-09 10:14:33;1;2;0.0\n2020-03-09 10:14:34;3;4;1.0\n",
        );
        let p = plan(vec![s]);
        let injected: Vec<Option<AnomalyKind>> = p.readings().map(|r| r.injected).collect();
        let l = Some(AnomalyKind::Labelled);
        assert_eq!(injected, [None, None, l, l]);
        assert_eq!(p.labelled_rows, 1);
    }

    fn skab_profile() -> Profiles {
        let spec = |name: &str, unit: &str| ChannelSpec {
            name: Channel::new(name).unwrap(),
            unit: Unit::new(unit).unwrap(),
            range: None,
            score_weight: sentio_core::profile::DEFAULT_SCORE_WEIGHT,
        };
        Profiles::new(vec![
            Profile::pump(vec!["*".into()]),
            Profile {
                name: "skab".into(),
                channels: vec![spec("current", "A"), spec("voltage", "V")],
                devices: vec!["skab-*".into()],
            },
        ])
        .unwrap()
    }

    /// Units come from the profile; an undeclared column is imported with no unit, not
    /// modelled; a declared channel the file lacks is listed.
    #[test]
    fn units_come_from_the_profile_and_the_gaps_are_listed() {
        let profiles = skab_profile();
        let dev = device("skab-valve1-0");
        let p = resolve_profile(&profiles, &dev, Some("skab")).unwrap();
        let plan = DevicePlan::new(
            dev.clone(),
            vec![sheet("0.csv", "ts,Current,Extra\n1583748873,1.5,7\n")],
            p,
            false,
        );
        let units: Vec<(&str, &str, bool)> = plan
            .channels
            .iter()
            .map(|c| (c.channel.as_str(), c.unit.as_str(), c.modelled))
            .collect();
        assert_eq!(units, [("current", "A", true), ("extra", "", false)]);
        assert_eq!(plan.missing, [Channel::new("voltage").unwrap()]);
        assert_eq!(
            plan.readings().map(|r| r.unit.as_str().to_owned()).collect::<Vec<_>>(),
            ["A", ""]
        );

        // Without --profile, the device's profile by pattern gives the units it declares: the
        // pump claims every other device, so a `Temperature` column is in °C.
        let pump = device("plant-1");
        let p = resolve_profile(&profiles, &pump, None).unwrap();
        assert_eq!(p.map(|p| p.name.as_str()), Some("pump"));
        let plan = DevicePlan::new(
            pump,
            vec![sheet("p.csv", "ts,Temperature,Current\n1583748873,20,1\n")],
            p,
            false,
        );
        let units: Vec<(&str, bool)> =
            plan.channels.iter().map(|c| (c.unit.as_str(), c.modelled)).collect();
        assert_eq!(units, [(SensorKind::Temperature.unit(), true), ("", false)]);
        assert_eq!(plan.missing.len(), 3, "vibration, pressure, humidity");
    }

    #[test]
    fn a_requested_profile_must_exist_and_claim_the_device() {
        let profiles = skab_profile();
        let err = resolve_profile(&profiles, &device("skab-1"), Some("compressor")).unwrap_err();
        assert!(
            err.to_string()
                .contains("no profile \"compressor\" in the configuration (there are: pump, skab)"),
            "{err}"
        );
        let err = resolve_profile(&profiles, &device("valve-1"), Some("skab")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "device valve-1 is profile pump by the configured device patterns, not profile skab"
            ),
            "{err}"
        );
        assert!(err.to_string().contains("profiles.skab.devices (such as \"valve-1\")"), "{err}");
        let only_skab =
            Profiles::new(vec![Profile::pump(vec![]), skab_profile().get("skab").unwrap().clone()])
                .unwrap();
        let err = resolve_profile(&only_skab, &device("valve-1"), Some("skab")).unwrap_err();
        assert!(err.to_string().starts_with("device valve-1 is in no profile"), "{err}");
        assert_eq!(resolve_profile(&only_skab, &device("valve-1"), None).unwrap(), None);
    }
}
