#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio import` as a user runs it, on the embedded defaults: a generated CSV file goes through
//! the bus and the ETL into the store, and comes back out of it with its channels, units, `seq`
//! and labels.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use sentio_core::time::{NANOS_PER_SEC, format_rfc3339};
use sentio_core::{AnomalyKind, DeviceId, Reading};
use sentio_store::sqlite::SqliteStore;
use sentio_store::{RangeQuery, ReadingStore};

mod common;

use common::sentio_in as sentio;

/// 2024-05-01T00:00:00Z, in seconds.
const BASE: i64 = 1_714_521_600;

fn run(cmd: &mut Command) -> String {
    String::from_utf8(common::run_ok(cmd).stdout).unwrap()
}

fn fails(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} succeeded:\n{}", String::from_utf8_lossy(&out.stdout));
    out
}

fn iso(secs: i64) -> String {
    format_rfc3339(secs * NANOS_PER_SEC).replace('T', " ").trim_end_matches('Z').to_owned()
}

/// A SKAB-like file: 60 seconds of three channels, rows 40 to 49 labelled, with row 11 written
/// before row 10, a second row for second 20, and an unreadable flow at second 25. Returns the
/// text and the line numbers of the repeated row, of the row it repeats and of the bad cell.
fn plant_csv() -> (String, usize, usize, usize) {
    let mut lines =
        vec!["datetime;Motor Current;Temperature;Flow Rate;anomaly;changepoint".to_owned()];
    let row = |i: i64, flow: &str| {
        let label = if (40..50).contains(&i) { "1.0" } else { "0.0" };
        format!("{};{};{};{flow};{label};0.0", iso(BASE + i), 10 + i, 40 + i % 5)
    };
    let (mut repeated, mut first, mut bad) = (0, 0, 0);
    for i in 0..60 {
        let i = match i {
            10 => 11,
            11 => 10,
            i => i,
        };
        let flow = if i == 25 { "n/a".to_owned() } else { format!("{}.5", i) };
        lines.push(row(i, &flow));
        if i == 25 {
            bad = lines.len();
        }
        if i == 20 {
            first = lines.len();
            lines.push(row(20, "999"));
            repeated = lines.len();
        }
    }
    (lines.join("\r\n") + "\r\n", repeated, first, bad)
}

fn stored(dir: &Path) -> Vec<Reading> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&dir.join("data/sentio.db")).unwrap();
        store
            .query_range(&RangeQuery {
                devices: vec![],
                sensors: vec![],
                from_ns: i64::MIN,
                to_ns: i64::MAX,
            })
            .await
            .unwrap()
    })
}

#[test]
fn a_csv_file_is_imported_through_the_etl_with_its_labels_and_reported_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let (text, repeated, first, bad) = plant_csv();
    std::fs::write(dir.path().join("plant.csv"), text).unwrap();

    // An error that stops the import says what to do, and touches nothing.
    std::fs::write(dir.path().join("bad.csv"), "when;x\n1;2\n").unwrap();
    let out = fails(sentio(dir.path()).args(["import", "--csv", "bad.csv", "--device", "p-1"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv: no timestamp column among [\"when\", \"x\"]"), "{err}");
    assert!(err.contains("--timestamp-column"), "{err}");
    assert!(!dir.path().join("data/sentio.db").exists(), "nothing was stored");

    let import =
        ["import", "--csv", "plant.csv", "--device", "press-01", "--label-column", "anomaly"];
    let out = run(sentio(dir.path()).args(import));
    assert!(
        out.contains(
            "device press-01 from plant.csv: profile pump (by the configured device patterns)"
        ),
        "{out}"
    );
    assert!(out.contains("61 rows read, 60 to import"), "{out}");
    assert!(out.contains("modelled: temperature [°C] (Temperature)"), "{out}");
    assert!(
        out.contains("stored, not modelled (profile pump does not declare them): motor_current (Motor Current), flow_rate (Flow Rate)"),
        "{out}"
    );
    assert!(
        out.contains("declared by profile pump, not in the files: vibration, pressure, humidity"),
        "{out}"
    );
    assert!(out.contains("ground truth: 10 of 60 rows labelled 1 in column \"anomaly\""), "{out}");
    assert!(out.contains("columns left out: changepoint"), "{out}");
    assert!(out.contains("1 rows were out of timestamp order (first at plant.csv:13)"), "{out}");
    assert!(
        out.contains(&format!(
            "plant.csv:{repeated}: timestamp {} repeats line {first}'s; row skipped",
            format_rfc3339((BASE + 20) * NANOS_PER_SEC)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("plant.csv:{bad}: column \"Flow Rate\": \"n/a\" is not a finite number; that reading skipped")),
        "{out}"
    );
    assert!(
        out.contains("61 rows read, 60 imported, rows skipped: 1 (1 duplicate timestamp); readings skipped: 1 (1 not a number)"),
        "{out}"
    );
    assert!(out.contains("179 readings published, 179 stored, 0 dead letters"), "{out}");
    assert!(out.contains("119 readings are of channels no profile declares"), "{out}");

    // The store holds them as the ETL stored them: channels, units, seq in timestamp order, and
    // the label on every reading of a labelled row.
    let readings = stored(dir.path());
    assert_eq!(readings.len(), 179);
    let mut by_channel: BTreeMap<String, Vec<&Reading>> = BTreeMap::new();
    for r in &readings {
        assert_eq!(r.device, DeviceId::new("press-01").unwrap());
        by_channel.entry(r.sensor.as_str().to_owned()).or_default().push(r);
    }
    let counts: Vec<(&str, usize)> =
        by_channel.iter().map(|(c, r)| (c.as_str(), r.len())).collect();
    assert_eq!(counts, [("flow_rate", 59), ("motor_current", 60), ("temperature", 60)]);
    for (channel, rs) in &mut by_channel {
        rs.sort_by_key(|r| r.ts_ns);
        let seqs: Vec<u64> = rs.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..rs.len() as u64).collect::<Vec<_>>(), "{channel}");
        let unit = if channel == "temperature" { "°C" } else { "" };
        assert!(rs.iter().all(|r| r.unit.as_str() == unit), "{channel}");
    }
    let current = &by_channel["motor_current"];
    let values: Vec<f64> = current.iter().map(|r| r.value).collect();
    assert_eq!(
        values,
        (0..60).map(|i| f64::from(10 + i)).collect::<Vec<_>>(),
        "sorted, first row of second 20 kept"
    );
    for r in &readings {
        let second = r.ts_ns / NANOS_PER_SEC - BASE;
        let want = (40..50).contains(&second).then_some(AnomalyKind::Labelled);
        assert_eq!(r.injected, want, "{} at second {second}", r.sensor);
    }

    // `sentio profile list` shows the channels as stored, not modelled.
    let listed = run(sentio(dir.path()).args(["profile", "list"]));
    let line = listed.lines().find(|l| l.starts_with("press-01 (pump) also sends ")).unwrap_or("");
    assert!(
        line.contains("flow_rate")
            && line.contains("motor_current")
            && line.ends_with("stored, not modelled"),
        "{listed}"
    );

    // Importing the same file again would double it: refused, with the way forward.
    let out = fails(sentio(dir.path()).args(import));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the store already holds readings where this import would put them"),
        "{err}"
    );
    assert!(
        err.contains("device press-01: temperature, flow_rate, motor_current stored from 2024-05-01T00:00:00Z to 2024-05-01T00:00:59Z"),
        "{err}"
    );
    assert!(err.contains("--allow-overlap"), "{err}");
    assert_eq!(stored(dir.path()).len(), 179, "nothing was published");
}

/// Several files named as devices after their file names, with epoch timestamps in milliseconds,
/// and a profile of their own given in the configuration.
#[test]
fn several_files_become_devices_named_after_them_with_the_profiles_units() {
    let dir = tempfile::tempdir().unwrap();
    for (name, offset) in [("0", 0), ("1", 1000)] {
        let mut text = String::from("timestamp,Current,Voltage,Extra\n");
        for i in 0..20 {
            let ms = (BASE + offset + i) * 1000;
            text += &format!("{ms},{}.25,230,{i}\n", i % 4);
        }
        std::fs::write(dir.path().join(format!("{name}.csv")), text).unwrap();
    }
    std::fs::write(
        dir.path().join("line.toml"),
        "[profiles.line]\ndevices = [\"line-*\"]\nchannels = [\n  { name = \"current\", unit = \"A\" },\n  \
         { name = \"voltage\", unit = \"V\" },\n  { name = \"speed\", unit = \"rpm\" },\n]\n",
    )
    .unwrap();
    let mut cmd = sentio(dir.path());
    cmd.args(["--config", "line.toml", "import", "--csv", "0.csv", "1.csv"]);
    cmd.args(["--device-prefix", "line-", "--profile", "line", "--skip-column", "extra"]);
    let out = run(&mut cmd);
    assert!(out.contains("device line-0 from 0.csv: profile line\n"), "{out}");
    assert!(out.contains("modelled: current [A] (Current), voltage [V] (Voltage)"), "{out}");
    assert!(out.contains("declared by profile line, not in the files: speed"), "{out}");
    assert!(out.contains("read 2 files as 2 devices: 40 rows read, 40 imported"), "{out}");
    assert!(out.contains("80 readings published, 80 stored, 0 dead letters"), "{out}");
    assert!(!out.contains("not modelled"), "{out}");

    let readings = stored(dir.path());
    assert_eq!(readings.len(), 80);
    let first = readings.iter().filter(|r| r.device.as_str() == "line-1").map(|r| r.ts_ns).min();
    assert_eq!(first, Some((BASE + 1000) * NANOS_PER_SEC), "milliseconds read as such");
    assert!(readings.iter().all(|r| matches!(
        (r.sensor.as_str(), r.unit.as_str()),
        ("current", "A") | ("voltage", "V")
    )));

    // A profile that does not claim the device is refused, naming the pattern to add.
    let mut cmd = sentio(dir.path());
    cmd.args(["--config", "line.toml", "import", "--csv", "0.csv"]);
    cmd.args(["--device", "press-9", "--profile", "line"]);
    let err = String::from_utf8(fails(&mut cmd).stderr).unwrap();
    assert!(
        err.contains(
            "device press-9 is profile pump by the configured device patterns, not profile line"
        ),
        "{err}"
    );
    assert!(err.contains("profiles.line.devices"), "{err}");
}
