//! The raw archive pickle read by real pandas: `scripts/check_pickle.py` loads it with
//! `pandas.DataFrame(pickle.load(f))` and compares every value with a JSON written beside it.
//!
//! Needs the Python venv from `scripts/python-env.sh` (or `SENTIO_PYTHON`); without it the test
//! fails, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use sentio_core::{AnomalyKind, Channel, DeviceId, Reading, SensorKind, Unit};
use sentio_objects::RawBatch;

/// Varied readings: several devices, all sensors, injected kinds and None, extreme values and
/// timestamps with nanosecond parts (before and after the epoch).
fn varied_readings() -> Vec<Reading> {
    let values = [
        21.375,
        -273.15,
        0.1 + 0.2,
        -0.0,
        1.0e300,
        -1.7976931348623157e308,
        5e-324,
        123_456_789.123_456_78,
        std::f64::consts::PI,
        -1e-9,
    ];
    let base = 1_795_522_560_123_456_789_i64; // 2026-11-24T12:16:00.123456789Z
    let mut out = Vec::new();
    for (d, device) in ["pump-07", "fan.2", "compressor_A-1"].into_iter().enumerate() {
        let device = DeviceId::new(device).unwrap();
        for step in 0..7i64 {
            for (s, sensor) in SensorKind::ALL.into_iter().enumerate() {
                let n = (d * 28 + step as usize * 4 + s) as i64;
                let kinds: Vec<AnomalyKind> =
                    AnomalyKind::ALL.into_iter().filter(|k| k.sensor() == Some(sensor)).collect();
                out.push(Reading {
                    device: device.clone(),
                    sensor: sensor.into(),
                    unit: sensor.into(),
                    ts_ns: base + step * 1_000_000_007 + n * 13 - d as i64 * 3_600_000_000_000,
                    value: values[n as usize % values.len()] * if n % 3 == 0 { 1.0 } else { -0.5 },
                    seq: step as u64 + if d == 2 { (1 << 53) + 1 } else { 0 },
                    injected: match n % 3 {
                        0 => None,
                        r => Some(kinds[r as usize - 1]),
                    },
                    ts_source: sentio_core::TsSource::Event,
                });
            }
        }
    }
    // Before the epoch, and the largest timestamp pandas can represent.
    out.push(Reading::pump(
        DeviceId::new("old").unwrap(),
        SensorKind::Humidity,
        -86_400_000_000_001,
        55.5,
        0,
    ));
    out.push(Reading { ts_ns: i64::MAX, seq: 1, ..out[out.len() - 1].clone() });
    // Another machine's channel, in its own unit (non-ASCII, as units often are).
    out.push(Reading {
        sensor: Channel::new("flow.rate").unwrap(),
        unit: Unit::new("m³/h").unwrap(),
        ..Reading::pump(DeviceId::new("comp-2").unwrap(), SensorKind::Pressure, 17, 3.25, 4)
    });
    out
}

/// Every column of `batch`, as the JSON the check compares the pickle with.
fn expected_json(batch: &RawBatch) -> serde_json::Value {
    serde_json::to_value(batch).unwrap()
}

fn run_check(dir: &Path, batch: &RawBatch, expected: &serde_json::Value) -> std::process::Output {
    let pickle = dir.join("batch.pickle");
    let json = dir.join("expected.json");
    std::fs::write(&pickle, batch.to_pickle().unwrap()).unwrap();
    std::fs::write(&json, serde_json::to_vec_pretty(expected).unwrap()).unwrap();
    Command::new(sentio_it::python())
        .arg(sentio_it::repo_root().join("scripts/check_pickle.py"))
        .arg(&pickle)
        .arg(&json)
        .output()
        .expect("cannot run the Python interpreter")
}

#[test]
fn pandas_reads_every_value_exactly() {
    let readings = varied_readings();
    let batch: RawBatch = readings.iter().collect();
    assert_eq!(batch.readings().unwrap(), readings);
    let dir = tempfile::tempdir().unwrap();
    let out = run_check(dir.path(), &batch, &expected_json(&batch));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check_pickle.py failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(&format!("ok: {} rows", readings.len())), "{stdout}");
}

#[test]
fn the_pandas_check_catches_a_one_ulp_difference_and_a_none() {
    let batch: RawBatch = varied_readings().iter().collect();
    let mut expected = expected_json(&batch);
    let nudged = f64::from_bits(batch.value[5].to_bits() + 1);
    expected["value"][5] = serde_json::json!(nudged);
    let row = batch.injected.iter().position(Option::is_some).unwrap();
    expected["injected"][row] = serde_json::Value::Null;
    let dir = tempfile::tempdir().unwrap();
    let out = run_check(dir.path(), &batch, &expected);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected a failure, got {}: {stderr}", out.status);
    assert!(stderr.contains("row 5 column value"), "{stderr}");
    assert!(stderr.contains(&format!("row {row} column injected")), "{stderr}");
}
