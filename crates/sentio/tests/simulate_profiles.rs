#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio simulate` with a mixed fleet: `examples/mixed-fleet.toml`'s 6 pumps and 2 six-channel
//! compressors, through `sentio ingest --stdin` into the store with no dead letter.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::run_ok as run;

const PUMP_CHANNELS: [(&str, &str); 4] =
    [("temperature", "°C"), ("vibration", "RMS"), ("pressure", "bar"), ("humidity", "%")];
const COMPRESSOR_CHANNELS: [(&str, &str); 6] = [
    ("current", "A"),
    ("flow", "m³/h"),
    ("discharge_pressure", "bar"),
    ("discharge_temperature", "°C"),
    ("vibration_x", "mm/s"),
    ("vibration_y", "mm/s"),
];

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mixed-fleet.toml")
}

/// `sentio --config examples/mixed-fleet.toml` in `dir`, with no SENTIO variables leaking in
/// from the caller's environment.
fn sentio(dir: &Path) -> Command {
    let mut cmd = common::sentio_in(dir);
    cmd.arg("--config").arg(example());
    cmd
}

/// 20 minutes of the fleet, as JSON lines.
fn simulate(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let mut cmd = sentio(dir);
    cmd.args(["simulate", "--from", "2026-11-24T00:00:00Z", "--to", "2026-11-24T00:20:00Z"])
        .args(["--stdout", "--no-archive"])
        .args(extra);
    run(&mut cmd).stdout
}

fn messages(bytes: &[u8]) -> Vec<serde_json::Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn the_example_fleet_streams_both_profiles_and_ingest_stores_every_reading() {
    let dir = tempfile::tempdir().unwrap();
    // Many anomalies, so the compressors' generic kinds show in 20 minutes.
    let mut cmd = sentio(dir.path());
    cmd.env("SENTIO__SIMULATOR__ANOMALIES__RATE_PER_HOUR", "30");
    cmd.args(["simulate", "--from", "2026-11-24T00:00:00Z", "--to", "2026-11-24T00:20:00Z"])
        .args(["--stdout", "--no-archive"]);
    let stdout = run(&mut cmd).stdout;

    let mut channels: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all = messages(&stdout);
    for m in &all {
        let device = m["device"].as_str().unwrap().to_owned();
        let pair =
            (m["sensor"].as_str().unwrap().to_owned(), m["unit"].as_str().unwrap().to_owned());
        channels.entry(device.clone()).or_default().insert(pair);
        if let Some(kind) = m["injected"].as_str() {
            kinds.entry(device).or_default().insert(kind.to_owned());
        }
    }
    let devices: Vec<&str> = channels.keys().map(String::as_str).collect();
    assert_eq!(
        devices,
        [
            "compressor-01",
            "compressor-02",
            "pump-01",
            "pump-02",
            "pump-03",
            "pump-04",
            "pump-05",
            "pump-06"
        ]
    );
    let set = |list: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        list.iter().map(|(c, u)| (c.to_string(), u.to_string())).collect()
    };
    for (device, got) in &channels {
        let want = if device.starts_with("pump-") {
            set(&PUMP_CHANNELS)
        } else {
            set(&COMPRESSOR_CHANNELS)
        };
        assert_eq!(got, &want, "{device}");
    }
    assert_eq!(all.len(), 1200 * (6 * 4 + 2 * 6), "every channel of every device each second");
    let generic = ["spike", "drop", "flat", "noise", "level_shift"];
    for (device, got) in &kinds {
        let compressor = device.starts_with("compressor-");
        assert!(
            got.iter().all(|k| generic.contains(&k.as_str()) == compressor),
            "{device}: {got:?}"
        );
    }
    assert!(kinds.contains_key("compressor-01") && kinds.contains_key("pump-01"), "{kinds:?}");

    let mut child = sentio(dir.path())
        .args(["ingest", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("{} rows stored, 0 dead letters", all.len())), "{report}");
    assert!(!report.contains("no profile declares"), "every reading is modelled: {report}");
}

#[test]
fn the_pumps_of_the_mixed_fleet_stream_what_pumps_alone_do() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = simulate(dir.path(), &[]);
    let alone = simulate(dir.path(), &["--profiles", "pump=6"]);
    let pumps: Vec<&[u8]> = mixed
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"{\"v\":1,\"device\":\"pump-"))
        .collect();
    let alone: Vec<&[u8]> = alone.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(alone.len(), 1200 * 6 * 4);
    assert!(pumps == alone, "a pump's stream does not depend on the compressors beside it");
}

#[test]
fn the_fleet_is_set_with_profiles_and_mistakes_name_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let two = messages(&simulate(dir.path(), &["--profiles", "pump=1,compressor=1"]));
    let devices: BTreeSet<&str> = two.iter().map(|m| m["device"].as_str().unwrap()).collect();
    assert_eq!(devices.into_iter().collect::<Vec<_>>(), ["compressor-01", "pump-01"]);

    let fails = |args: &[&str]| {
        let out = sentio(dir.path())
            .args(["simulate", "--stdout", "--no-archive"])
            .args(["--from", "2026-11-24T00:00:00Z", "--to", "2026-11-24T00:00:10Z"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fails(&["--profiles", "pump=2,turbine=1"]);
    assert!(err.contains("demo.profiles.turbine") && err.contains("pump, compressor"), "{err}");
    let err = fails(&["--devices", "3"]);
    assert!(err.contains("--profiles") && err.contains("demo.profiles"), "{err}");
    let err = fails(&["--profiles", "compressor"]);
    assert!(err.contains("NAME=COUNT"), "{err}");
}
