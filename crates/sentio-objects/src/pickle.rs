//! [`RawBatch`]: the readings of one raw archive object as equal-length columns, and its pickle
//! encoding.
//!
//! The object is a pickle (protocol 3) of a dict of lists, so that
//! `pandas.DataFrame(pickle.load(f))` gives one row per reading:
//!
//! | column | Python | pandas dtype |
//! | --- | --- | --- |
//! | `device` | `str` | object |
//! | `sensor` | `str`, the channel (the pump's `temperature`, `vibration`, `pressure`, `humidity`, or any other machine's) | object |
//! | `ts_ns` | `int`, nanoseconds since the epoch, UTC | int64 (`pandas.to_datetime(df.ts_ns, unit="ns", utc=True)`) |
//! | `value` | `float` | float64 |
//! | `seq` | `int` | int64 |
//! | `injected` | `str` (an anomaly kind such as `temperature_spike`) or `None` | object |
//! | `unit` | `str`, the unit of `value` as its producer sent it (`°C`, `A`; empty if dimensionless) | object |
//! | `ts_source` | `None` when `ts_ns` is the producer's event time, `"arrival"` when a bridge stamped it on arrival (the device sent no timestamp) | object |
//!
//! Objects written before the `unit` column existed have none; reading them gives the pump's units.
//! Objects written before `ts_source` existed have none either; their rows are event time.
//!
//! Readers ignore columns they do not know, so columns can be added later without breaking them.

use sentio_core::{AnomalyKind, Channel, DeviceId, Reading, TsSource, Unit};
use serde::{Deserialize, Serialize};

use crate::ObjectsError;

/// The readings of one archive object, column by column; every column has one value per reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawBatch {
    pub device: Vec<String>,
    pub sensor: Vec<String>,
    /// Event time, nanoseconds since the Unix epoch (UTC).
    pub ts_ns: Vec<i64>,
    pub value: Vec<f64>,
    /// Per (device, sensor) sequence number.
    pub seq: Vec<u64>,
    /// The injected anomaly kind (simulator ground truth), `None` for normal readings.
    pub injected: Vec<Option<String>>,
    /// The unit of each value. Empty in objects written before the column existed: their rows are
    /// all of the pump's four channels, in its units.
    #[serde(default)]
    pub unit: Vec<String>,
    /// `None` for event time, `"arrival"` for a timestamp a bridge gave on arrival. Empty in
    /// objects written before the column existed: their rows are event time.
    #[serde(default)]
    pub ts_source: Vec<Option<String>>,
}

impl RawBatch {
    /// Appends one reading as a row.
    pub fn push(&mut self, r: &Reading) {
        self.device.push(r.device.as_str().to_owned());
        self.sensor.push(r.sensor.as_str().to_owned());
        self.ts_ns.push(r.ts_ns);
        self.value.push(r.value);
        self.seq.push(r.seq);
        self.injected.push(r.injected.map(|k| k.as_str().to_owned()));
        self.unit.push(r.unit.as_str().to_owned());
        self.ts_source.push(r.ts_source.written().map(str::to_owned));
    }

    /// The number of rows (the length of the `device` column; see [`RawBatch::check_columns`]).
    pub fn len(&self) -> usize {
        self.device.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest timestamp in the batch (rows need not be in time order).
    pub fn first_ts(&self) -> Option<i64> {
        self.ts_ns.iter().copied().min()
    }

    /// The latest timestamp in the batch.
    pub fn last_ts(&self) -> Option<i64> {
        self.ts_ns.iter().copied().max()
    }

    /// Checks that every column has as many values as `device`.
    pub fn check_columns(&self) -> Result<(), ObjectsError> {
        let expected = self.device.len();
        for (column, len) in [
            ("sensor", self.sensor.len()),
            ("ts_ns", self.ts_ns.len()),
            ("value", self.value.len()),
            ("seq", self.seq.len()),
            ("injected", self.injected.len()),
            ("unit", self.unit.len()),
            ("ts_source", self.ts_source.len()),
        ] {
            // An object from before the `unit` (or `ts_source`) column has none at all.
            if len != expected && !(matches!(column, "unit" | "ts_source") && len == 0) {
                return Err(ObjectsError::ColumnLength { column, len, expected });
            }
        }
        Ok(())
    }

    /// Encodes the batch as a protocol-3 pickle of a dict of lists.
    pub fn to_pickle(&self) -> Result<Vec<u8>, ObjectsError> {
        self.check_columns()?;
        serde_pickle::to_vec(self, serde_pickle::SerOptions::new())
            .map_err(|source| ObjectsError::PickleEncode { rows: self.len(), source })
    }

    /// Decodes a pickle written by [`RawBatch::to_pickle`] (or by Python, as a dict with at least
    /// these six lists), checking that the columns have equal lengths.
    pub fn from_pickle(bytes: &[u8]) -> Result<RawBatch, ObjectsError> {
        let batch: RawBatch = serde_pickle::from_slice(bytes, serde_pickle::DeOptions::new())
            .map_err(|source| ObjectsError::PickleDecode { bytes: bytes.len(), source })?;
        batch.check_columns()?;
        Ok(batch)
    }

    /// The rows as domain readings, validating device ids, sensor and anomaly names and values.
    pub fn readings(&self) -> Result<Vec<Reading>, ObjectsError> {
        self.check_columns()?;
        let mut out = Vec::with_capacity(self.len());
        // One DeviceId per distinct name in a row run: batches usually hold one device.
        let mut last_device: Option<DeviceId> = None;
        for row in 0..self.len() {
            let name = &self.device[row];
            let device = match &last_device {
                Some(d) if d.as_str() == name => d.clone(),
                _ => {
                    let d = DeviceId::new(name)
                        .map_err(|source| ObjectsError::InvalidDevice { row, source })?;
                    last_device = Some(d.clone());
                    d
                }
            };
            let sensor = Channel::new(&self.sensor[row]).map_err(|_| {
                ObjectsError::UnknownName { row, column: "sensor", value: self.sensor[row].clone() }
            })?;
            let unit = match self.unit.get(row) {
                Some(unit) => Unit::new(unit).map_err(|_| ObjectsError::UnknownName {
                    row,
                    column: "unit",
                    value: unit.clone(),
                })?,
                // Only the pump's channels were archived before units were.
                None => sensor.kind().map(Unit::from).ok_or_else(|| ObjectsError::UnknownName {
                    row,
                    column: "sensor",
                    value: self.sensor[row].clone(),
                })?,
            };
            let injected = match &self.injected[row] {
                None => None,
                Some(name) => Some(AnomalyKind::parse(name).ok_or_else(|| {
                    ObjectsError::UnknownName { row, column: "injected", value: name.clone() }
                })?),
            };
            let value = self.value[row];
            if !value.is_finite() {
                return Err(ObjectsError::NonFinite { row, value });
            }
            let ts_source = match self.ts_source.get(row) {
                // Event time: written as None, or an object from before the column.
                None | Some(None) => TsSource::Event,
                Some(Some(name)) => TsSource::parse(name).ok_or_else(|| {
                    ObjectsError::UnknownName { row, column: "ts_source", value: name.clone() }
                })?,
            };
            out.push(Reading {
                device,
                sensor,
                unit,
                ts_ns: self.ts_ns[row],
                value,
                seq: self.seq[row],
                injected,
                ts_source,
            });
        }
        Ok(out)
    }
}

impl<'a> FromIterator<&'a Reading> for RawBatch {
    fn from_iter<I: IntoIterator<Item = &'a Reading>>(iter: I) -> Self {
        let mut batch = RawBatch::default();
        for r in iter {
            batch.push(r);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use serde_pickle::{DeOptions, HashableValue, Value};

    use super::*;

    use sentio_core::SensorKind;

    fn reading(
        device: &str,
        sensor: SensorKind,
        ts_ns: i64,
        value: f64,
        seq: u64,
        injected: Option<AnomalyKind>,
    ) -> Reading {
        Reading {
            injected,
            ..Reading::pump(DeviceId::new(device).unwrap(), sensor, ts_ns, value, seq)
        }
    }

    fn sample() -> Vec<Reading> {
        vec![
            reading("pump-07", SensorKind::Temperature, 1_795_946_400_123_456_789, 21.5, 0, None),
            reading(
                "pump-07",
                SensorKind::Vibration,
                1_795_946_400_123_456_790,
                -0.0,
                1,
                Some(AnomalyKind::VibrationNoise),
            ),
            reading("fan.2", SensorKind::Pressure, -1, 1.0e300, u64::from(u32::MAX) + 7, None),
            reading(
                "fan.2",
                SensorKind::Humidity,
                i64::MAX,
                -5e-324,
                3,
                Some(AnomalyKind::HumidityLow),
            ),
            reading(
                "pump-07",
                SensorKind::Temperature,
                0,
                0.1 + 0.2,
                2,
                Some(AnomalyKind::TemperatureSpike),
            ),
            // Another machine's channel, in its own unit.
            Reading {
                sensor: Channel::new("current").unwrap(),
                unit: Unit::new("A").unwrap(),
                ..reading("comp-1", SensorKind::Temperature, 5, 12.5, 0, None)
            },
        ]
    }

    #[test]
    fn round_trips_through_pickle_bit_for_bit() {
        let readings = sample();
        let batch: RawBatch = readings.iter().collect();
        assert_eq!(batch.len(), 6);
        assert_eq!(batch.first_ts(), Some(-1));
        assert_eq!(batch.last_ts(), Some(i64::MAX));
        let back = RawBatch::from_pickle(&batch.to_pickle().unwrap()).unwrap();
        let got = back.readings().unwrap();
        assert_eq!(got, readings);
        for (a, b) in got.iter().zip(&readings) {
            assert_eq!(a.value.to_bits(), b.value.to_bits());
        }
    }

    /// An object archived before the `unit` column existed (only the pump's channels) reads with
    /// the pump's units; a short `unit` column is still an error.
    #[test]
    fn objects_without_units_read_as_the_pump() {
        /// The columns as the release before units wrote them.
        #[derive(Serialize)]
        struct Old<'a> {
            device: &'a [String],
            sensor: &'a [String],
            ts_ns: &'a [i64],
            value: &'a [f64],
            seq: &'a [u64],
            injected: &'a [Option<String>],
        }
        let pump: Vec<Reading> = sample().into_iter().take(5).collect();
        let b: RawBatch = pump.iter().collect();
        let old = Old {
            device: &b.device,
            sensor: &b.sensor,
            ts_ns: &b.ts_ns,
            value: &b.value,
            seq: &b.seq,
            injected: &b.injected,
        };
        let bytes = serde_pickle::to_vec(&old, serde_pickle::SerOptions::new()).unwrap();
        assert_eq!(RawBatch::from_pickle(&bytes).unwrap().readings().unwrap(), pump);

        let mut other: RawBatch = sample().iter().collect();
        other.unit.clear();
        assert!(matches!(
            other.readings(),
            Err(ObjectsError::UnknownName { row: 5, column: "sensor", .. })
        ));
        let mut short: RawBatch = sample().iter().collect();
        short.unit.pop();
        assert!(matches!(
            short.check_columns(),
            Err(ObjectsError::ColumnLength { column: "unit", len: 5, expected: 6 })
        ));
    }

    #[test]
    fn empty_batch_round_trips() {
        let batch = RawBatch::default();
        assert!(batch.is_empty());
        assert_eq!(batch.first_ts(), None);
        let back = RawBatch::from_pickle(&batch.to_pickle().unwrap()).unwrap();
        assert_eq!(back, batch);
        assert!(back.readings().unwrap().is_empty());
    }

    #[test]
    fn writes_a_protocol_3_dict_of_lists_with_python_types() {
        let batch: RawBatch = sample().iter().collect();
        let bytes = batch.to_pickle().unwrap();
        assert_eq!(&bytes[..2], b"\x80\x03", "protocol 3 header");
        let Value::Dict(dict) = serde_pickle::value_from_slice(&bytes, DeOptions::new()).unwrap()
        else {
            panic!("not a dict");
        };
        let columns: BTreeMap<String, Vec<Value>> = dict
            .into_iter()
            .map(|(k, v)| {
                let HashableValue::String(k) = k else { panic!("key {k:?} is not a str") };
                let Value::List(v) = v else { panic!("column {k} is not a list") };
                (k, v)
            })
            .collect();
        assert_eq!(
            columns.keys().map(String::as_str).collect::<Vec<_>>(),
            ["device", "injected", "sensor", "seq", "ts_ns", "ts_source", "unit", "value"]
        );
        // Event time is None (Python's None); arrival time "arrival".
        assert_eq!(columns["ts_source"][0], Value::None);
        assert_eq!(columns["unit"][0], Value::String("°C".into()));
        assert_eq!(columns["unit"][5], Value::String("A".into()));
        assert_eq!(columns["sensor"][5], Value::String("current".into()));
        assert_eq!(columns["device"][0], Value::String("pump-07".into()));
        assert_eq!(columns["ts_ns"][3], Value::I64(i64::MAX));
        assert_eq!(columns["value"][2], Value::F64(1.0e300));
        assert_eq!(columns["injected"][0], Value::None);
        assert_eq!(columns["injected"][1], Value::String("vibration_noise".into()));
    }

    #[test]
    fn rejects_unequal_columns_and_bad_names() {
        let mut batch: RawBatch = sample().iter().collect();
        batch.seq.pop();
        assert!(matches!(
            batch.to_pickle(),
            Err(ObjectsError::ColumnLength { column: "seq", len: 5, expected: 6 })
        ));
        // A pickle written by someone else with a short column.
        let bytes = serde_pickle::to_vec(&batch, serde_pickle::SerOptions::new()).unwrap();
        assert!(matches!(
            RawBatch::from_pickle(&bytes),
            Err(ObjectsError::ColumnLength { column: "seq", .. })
        ));
        assert!(matches!(
            RawBatch::from_pickle(b"not a pickle"),
            Err(ObjectsError::PickleDecode { .. })
        ));

        let good: RawBatch = sample().iter().collect();
        let mut bad = good.clone();
        bad.sensor[1] = "Voltage".into();
        assert!(matches!(
            bad.readings(),
            Err(ObjectsError::UnknownName { row: 1, column: "sensor", .. })
        ));
        let mut bad = good.clone();
        bad.injected[2] = Some("meteor".into());
        assert!(matches!(
            bad.readings(),
            Err(ObjectsError::UnknownName { row: 2, column: "injected", .. })
        ));
        let mut bad = good.clone();
        bad.device[3] = "a/b".into();
        assert!(matches!(bad.readings(), Err(ObjectsError::InvalidDevice { row: 3, .. })));
        let mut bad = good;
        bad.value[4] = f64::NAN;
        assert!(matches!(bad.readings(), Err(ObjectsError::NonFinite { row: 4, .. })));
    }
}
