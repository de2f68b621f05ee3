//! How domain values map to SQL columns and back, shared by every backend.
//!
//! SQL has signed 64-bit integers only, so the `u64` fields of the domain (a reading's `seq`, bus
//! offsets) are stored as `i64`: values above `i64::MAX` are refused with [`InvalidValue`] before
//! anything is written, never wrapped. Reading back, a value that does not decode (a negative
//! sequence number, an unknown sensor name) is [`StoreError::Corrupt`].

use sentio_core::{Alert, AlertState, AnomalyKind, DeviceId, Reading, SensorKind, Severity};

use crate::{DeadLetter, IngestBatch, ScorePoint, StoreError};

/// A value the store refuses to write. It is the `source` of a [`StoreError::Query`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidValue {
    #[error(
        "{field} is {value}, above {max}, the largest the store keeps (it is stored as a signed \
         64-bit integer)",
        max = i64::MAX
    )]
    TooLarge { field: &'static str, value: u64 },
    #[error("a reading's value must be finite, got {value}")]
    NotFinite { value: f64 },
    #[error("an alert's {field} must be finite, got {value}")]
    AlertNotFinite { field: &'static str, value: f64 },
    #[error("an anomaly score's {field} must be finite, got {value}")]
    ScoreNotFinite { field: &'static str, value: f64 },
}

/// Converts a `u64` to the `i64` a column holds, refusing what does not fit.
pub(crate) fn to_sql_u64(field: &'static str, value: u64) -> Result<i64, InvalidValue> {
    i64::try_from(value).map_err(|_| InvalidValue::TooLarge { field, value })
}

/// Converts a stored `i64` back to `u64`; a negative one means the row is corrupt.
pub(crate) fn from_sql_u64(field: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt { detail: format!("{field} is negative ({value})") })
}

/// Converts a stored partition number back to `u32`.
pub(crate) fn from_sql_partition(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt { detail: format!("partition {value} is out of range") })
}

/// A reading as its columns, checked to fit them.
#[derive(Debug, Clone)]
pub(crate) struct ReadingRow {
    pub device: DeviceId,
    pub sensor: &'static str,
    pub ts_ns: i64,
    pub value: f64,
    pub seq: i64,
    pub injected: Option<&'static str>,
}

impl ReadingRow {
    pub fn encode(reading: &Reading) -> Result<Self, InvalidValue> {
        if !reading.value.is_finite() {
            return Err(InvalidValue::NotFinite { value: reading.value });
        }
        Ok(Self {
            device: reading.device.clone(),
            sensor: reading.sensor.as_str(),
            ts_ns: reading.ts_ns,
            value: reading.value,
            seq: to_sql_u64("seq", reading.seq)?,
            injected: reading.injected.map(AnomalyKind::as_str),
        })
    }
}

/// Decodes the columns of a stored reading. `device` is already validated: backends reuse the
/// previous row's id when the name repeats, which it does for long runs in a range query.
pub(crate) fn decode_reading(
    device: DeviceId,
    sensor: &str,
    ts_ns: i64,
    value: f64,
    seq: i64,
    injected: Option<&str>,
) -> Result<Reading, StoreError> {
    let sensor = SensorKind::parse(sensor)
        .ok_or_else(|| StoreError::Corrupt { detail: format!("unknown sensor {sensor:?}") })?;
    let injected = match injected {
        None => None,
        Some(name) => Some(AnomalyKind::parse(name).ok_or_else(|| StoreError::Corrupt {
            detail: format!("unknown anomaly kind {name:?}"),
        })?),
    };
    Ok(Reading { device, sensor, ts_ns, value, seq: from_sql_u64("seq", seq)?, injected })
}

/// Validates a stored device name.
pub(crate) fn decode_device(name: &str) -> Result<DeviceId, StoreError> {
    DeviceId::new(name)
        .map_err(|e| StoreError::Corrupt { detail: format!("stored device id {name:?}: {e}") })
}

/// A batch checked and converted to column values once, before the first attempt (and before it
/// goes to a blocking pool). Partitions are `i64`, the SQL integer both backends store them as.
pub(crate) struct EncodedBatch {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) readings: Vec<(i64, i64, ReadingRow)>,
    pub(crate) dead_letters: Vec<(i64, i64, DeadLetter)>,
    pub(crate) next_offsets: Vec<(i64, i64)>,
    /// Every partition the batch touches, sorted: the order locks are taken in.
    pub(crate) partitions: Vec<i64>,
}

impl EncodedBatch {
    pub(crate) fn encode(batch: &IngestBatch) -> Result<Self, InvalidValue> {
        let mut partitions = Vec::new();
        let readings = batch
            .readings
            .iter()
            .map(|(src, r)| {
                partitions.push(i64::from(src.partition));
                Ok((
                    i64::from(src.partition),
                    to_sql_u64("offset", src.offset)?,
                    ReadingRow::encode(r)?,
                ))
            })
            .collect::<Result<Vec<_>, InvalidValue>>()?;
        let dead_letters = batch
            .dead_letters
            .iter()
            .map(|d| {
                let p = i64::from(d.source.partition);
                partitions.push(p);
                Ok((p, to_sql_u64("offset", d.source.offset)?, d.clone()))
            })
            .collect::<Result<Vec<_>, InvalidValue>>()?;
        let next_offsets = batch
            .next_offsets
            .iter()
            .map(|(&p, &next)| {
                partitions.push(i64::from(p));
                Ok((i64::from(p), to_sql_u64("next offset", next)?))
            })
            .collect::<Result<Vec<_>, InvalidValue>>()?;
        partitions.sort_unstable();
        partitions.dedup();
        Ok(Self {
            group: batch.group.clone(),
            topic: batch.topic.clone(),
            readings,
            dead_letters,
            next_offsets,
            partitions,
        })
    }
}

/// The columns of the `anomalies` table, the same in every backend; `$n` placeholders, which
/// SQLite binds by position as well.
pub(crate) const UPSERT_ANOMALY: &str = "INSERT INTO anomalies (id, device, window_start_ns,
        window_end_ns, score, threshold, severity, state, sensor_share, model_name, model_version,
        detected_at_ns)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (id) DO UPDATE SET device = excluded.device,
        window_start_ns = excluded.window_start_ns, window_end_ns = excluded.window_end_ns,
        score = excluded.score, threshold = excluded.threshold, severity = excluded.severity,
        state = excluded.state, sensor_share = excluded.sensor_share,
        model_name = excluded.model_name, model_version = excluded.model_version,
        detected_at_ns = excluded.detected_at_ns
    WHERE (CASE excluded.state WHEN 'opened' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
       >= (CASE anomalies.state WHEN 'opened' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)";

/// The columns [`decode_alert`] reads, in order.
pub(crate) const ANOMALY_COLUMNS: &str = "id, device, window_start_ns, window_end_ns, score, \
    threshold, severity, state, sensor_share, model_name, model_version, detected_at_ns";

/// An alert as the columns of its `anomalies` row.
#[derive(Debug, Clone)]
pub(crate) struct AlertRow {
    pub id: String,
    pub device: String,
    pub window_start_ns: i64,
    pub window_end_ns: i64,
    pub score: f64,
    pub threshold: f64,
    pub severity: &'static str,
    pub state: &'static str,
    /// JSON object: sensor name -> share.
    pub sensor_share: String,
    pub model_name: String,
    pub model_version: String,
    pub detected_at_ns: i64,
}

impl AlertRow {
    pub fn encode(a: &Alert) -> Result<AlertRow, InvalidValue> {
        let finite = |field, value: f64| {
            if value.is_finite() {
                Ok(value)
            } else {
                Err(InvalidValue::AlertNotFinite { field, value })
            }
        };
        let mut share = serde_json::Map::new();
        for (kind, &v) in SensorKind::ALL.iter().zip(&a.sensor_share) {
            share.insert(
                kind.as_str().to_owned(),
                serde_json::Value::from(finite("sensor_share", v)?),
            );
        }
        Ok(AlertRow {
            id: a.alert_id.clone(),
            device: a.device.to_string(),
            window_start_ns: a.window_start_ns,
            window_end_ns: a.window_end_ns,
            score: finite("score", a.score)?,
            threshold: finite("threshold", a.threshold)?,
            severity: a.severity.as_str(),
            state: a.state.as_str(),
            sensor_share: serde_json::Value::Object(share).to_string(),
            model_name: a.model_name.clone(),
            model_version: a.model_version.clone(),
            detected_at_ns: a.detected_at_ns,
        })
    }
}

/// Decodes a stored `anomalies` row (the columns of [`ANOMALY_COLUMNS`]).
pub(crate) fn decode_alert(row: AlertRowOwned) -> Result<Alert, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { detail };
    let severity = Severity::parse(&row.severity).ok_or_else(|| {
        corrupt(format!("anomaly {}: unknown severity {:?}", row.id, row.severity))
    })?;
    let state = AlertState::parse(&row.state)
        .ok_or_else(|| corrupt(format!("anomaly {}: unknown state {:?}", row.id, row.state)))?;
    let shares: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.sensor_share)
            .map_err(|e| corrupt(format!("anomaly {}: sensor_share: {e}", row.id)))?;
    let mut sensor_share = [0.0; 4];
    for (slot, kind) in sensor_share.iter_mut().zip(SensorKind::ALL) {
        *slot = shares.get(kind.as_str()).and_then(serde_json::Value::as_f64).ok_or_else(|| {
            corrupt(format!("anomaly {}: sensor_share has no number for {}", row.id, kind.as_str()))
        })?;
    }
    Ok(Alert {
        device: decode_device(&row.device)?,
        alert_id: row.id,
        state,
        window_start_ns: row.window_start_ns,
        window_end_ns: row.window_end_ns,
        score: row.score,
        threshold: row.threshold,
        severity,
        sensor_share,
        model_name: row.model_name,
        model_version: row.model_version,
        detected_at_ns: row.detected_at_ns,
    })
}

/// A score point as the columns of its `anomaly_scores` row, checked to fit them.
#[derive(Debug, Clone)]
pub(crate) struct ScoreRow {
    pub device: String,
    pub ts_ns: i64,
    pub score: f64,
    pub threshold: f64,
    pub top_sensor: &'static str,
    pub model_version: String,
}

impl ScoreRow {
    /// Encodes `points`, refusing a non-finite score or threshold, and keeps one row per
    /// (device, ts_ns), the last point's: one upsert statement cannot write a key twice, and a
    /// statement per row would keep the last anyway.
    pub fn encode_all(points: &[ScorePoint]) -> Result<Vec<ScoreRow>, InvalidValue> {
        let finite = |field, value: f64| {
            if value.is_finite() {
                Ok(value)
            } else {
                Err(InvalidValue::ScoreNotFinite { field, value })
            }
        };
        let mut rows = points
            .iter()
            .map(|p| {
                Ok(ScoreRow {
                    device: p.device.to_string(),
                    ts_ns: p.ts_ns,
                    score: finite("score", p.score)?,
                    threshold: finite("threshold", p.threshold)?,
                    top_sensor: p.top_sensor.as_str(),
                    model_version: p.model_version.clone(),
                })
            })
            .collect::<Result<Vec<_>, InvalidValue>>()?;
        // Stable: of equal keys, the last point ends up last; keep it.
        rows.sort_by(|a, b| (a.device.as_str(), a.ts_ns).cmp(&(b.device.as_str(), b.ts_ns)));
        let mut out: Vec<ScoreRow> = Vec::with_capacity(rows.len());
        for r in rows {
            match out.last_mut() {
                Some(prev) if prev.device == r.device && prev.ts_ns == r.ts_ns => *prev = r,
                _ => out.push(r),
            }
        }
        Ok(out)
    }
}

/// Decodes a stored `anomaly_scores` row.
pub(crate) fn decode_score(
    device: DeviceId,
    ts_ns: i64,
    score: f64,
    threshold: f64,
    top_sensor: &str,
    model_version: String,
) -> Result<ScorePoint, StoreError> {
    let top_sensor = SensorKind::parse(top_sensor).ok_or_else(|| StoreError::Corrupt {
        detail: format!("anomaly score of {device} at {ts_ns}: unknown sensor {top_sensor:?}"),
    })?;
    Ok(ScorePoint { device, ts_ns, score, threshold, top_sensor, model_version })
}

/// A stored `anomalies` row as read, before decoding.
#[derive(Debug, Clone)]
pub(crate) struct AlertRowOwned {
    pub id: String,
    pub device: String,
    pub window_start_ns: i64,
    pub window_end_ns: i64,
    pub score: f64,
    pub threshold: f64,
    pub severity: String,
    pub state: String,
    pub sensor_share: String,
    pub model_name: String,
    pub model_version: String,
    pub detected_at_ns: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(seq: u64, value: f64) -> Reading {
        Reading {
            device: DeviceId::new("pump-01").unwrap(),
            sensor: SensorKind::Pressure,
            ts_ns: -5,
            value,
            seq,
            injected: Some(AnomalyKind::PressureFlat),
        }
    }

    #[test]
    fn encodes_and_decodes_back() {
        let r = reading(i64::MAX as u64, 2.5);
        let row = ReadingRow::encode(&r).unwrap();
        let back =
            decode_reading(row.device, row.sensor, row.ts_ns, row.value, row.seq, row.injected)
                .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let err = ReadingRow::encode(&reading(i64::MAX as u64 + 1, 1.0)).unwrap_err();
        assert_eq!(err, InvalidValue::TooLarge { field: "seq", value: i64::MAX as u64 + 1 });
        assert!(err.to_string().contains("9223372036854775807"), "{err}");
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                ReadingRow::encode(&reading(0, v)),
                Err(InvalidValue::NotFinite { .. })
            ));
        }
    }

    fn point(device: &str, ts_ns: i64, score: f64) -> ScorePoint {
        ScorePoint {
            device: DeviceId::new(device).unwrap(),
            ts_ns,
            score,
            threshold: 0.5,
            top_sensor: SensorKind::Humidity,
            model_version: "7".to_owned(),
        }
    }

    #[test]
    fn score_rows_keep_the_last_point_of_each_key_in_key_order() {
        let points =
            [point("b", 2, 1.0), point("a", 5, 2.0), point("b", 2, 3.0), point("a", 1, 4.0)];
        let rows = ScoreRow::encode_all(&points).unwrap();
        let keys: Vec<(&str, i64, f64)> =
            rows.iter().map(|r| (r.device.as_str(), r.ts_ns, r.score)).collect();
        assert_eq!(keys, [("a", 1, 4.0), ("a", 5, 2.0), ("b", 2, 3.0)]);
        assert_eq!(rows[0].top_sensor, "humidity");
        let back = decode_score(
            DeviceId::new("a").unwrap(),
            1,
            4.0,
            0.5,
            rows[0].top_sensor,
            rows[0].model_version.clone(),
        )
        .unwrap();
        assert_eq!(back, point("a", 1, 4.0));
    }

    #[test]
    fn score_rows_refuse_non_finite_values() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = ScoreRow::encode_all(&[point("a", 1, 1.0), point("a", 2, v)]).unwrap_err();
            assert!(matches!(err, InvalidValue::ScoreNotFinite { field: "score", .. }), "{err}");
            let mut p = point("a", 3, 1.0);
            p.threshold = v;
            let err = ScoreRow::encode_all(&[p]).unwrap_err();
            assert!(matches!(err, InvalidValue::ScoreNotFinite { field: "threshold", .. }));
        }
        let dev = DeviceId::new("a").unwrap();
        assert!(matches!(
            decode_score(dev, 0, 1.0, 1.0, "voltage", String::new()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn bad_stored_values_are_corrupt() {
        let dev = DeviceId::new("d").unwrap();
        assert!(matches!(
            decode_reading(dev.clone(), "voltage", 0, 0.0, 0, None),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_reading(dev.clone(), "pressure", 0, 0.0, -1, None),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_reading(dev, "pressure", 0, 0.0, 0, Some("meteor")),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(decode_device("a b"), Err(StoreError::Corrupt { .. })));
        assert!(matches!(from_sql_partition(-1), Err(StoreError::Corrupt { .. })));
    }
}
