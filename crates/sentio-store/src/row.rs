//! How domain values map to SQL columns and back, shared by every backend.
//!
//! SQL has signed 64-bit integers only, so the `u64` fields of the domain (a reading's `seq`, bus
//! offsets) are stored as `i64`: values above `i64::MAX` are refused with [`InvalidValue`] before
//! anything is written, never wrapped. Reading back, a value that does not decode (a negative
//! sequence number, a channel name that is not one) is [`StoreError::Corrupt`].

use std::collections::HashMap;

use sentio_core::{
    Alert, AlertState, AnomalyKind, Channel, DeviceId, Reading, SensorKind, Severity, TsSource,
    Unit,
};

use crate::{ChannelInfo, ChannelStats, DeadLetter, IngestBatch, ScorePoint, StoreError};

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
    pub sensor: Channel,
    pub unit: Unit,
    pub ts_ns: i64,
    pub value: f64,
    pub seq: i64,
    pub injected: Option<&'static str>,
    /// The `ts_source` column: NULL for event time (as every row stored before migration 0004),
    /// `'arrival'` for a reading a bridge stamped with its arrival time.
    pub ts_source: Option<&'static str>,
}

impl ReadingRow {
    pub fn encode(reading: &Reading) -> Result<Self, InvalidValue> {
        if !reading.value.is_finite() {
            return Err(InvalidValue::NotFinite { value: reading.value });
        }
        Ok(Self {
            device: reading.device.clone(),
            sensor: reading.sensor.clone(),
            unit: reading.unit.clone(),
            ts_ns: reading.ts_ns,
            value: reading.value,
            seq: to_sql_u64("seq", reading.seq)?,
            injected: reading.injected.map(AnomalyKind::as_str),
            ts_source: reading.ts_source.written(),
        })
    }

    /// The `unit` column: NULL for a pump channel in the pump's unit, as every row stored before
    /// units were (and [`decode_unit`] reads it back the same), the unit otherwise. The common
    /// case costs the store neither the bytes nor the bind.
    pub fn stored_unit(&self) -> Option<&str> {
        match self.sensor.kind() {
            Some(kind) if self.unit == Unit::from(kind) => None,
            _ => Some(self.unit.as_str()),
        }
    }
}

/// Decodes the columns of a stored reading. `device` is already validated: backends reuse the
/// previous row's id when the name repeats, which it does for long runs in a range query. `unit`
/// is NULL for a reading stored before units were (see [`decode_unit`]).
pub(crate) fn decode_reading(
    device: DeviceId,
    sensor: &str,
    unit: Option<&str>,
    ts_ns: i64,
    value: f64,
    seq: i64,
    injected: Option<&str>,
) -> Result<Reading, StoreError> {
    let sensor = decode_channel(sensor)?;
    let unit = decode_unit(&sensor, unit)?;
    let injected = match injected {
        None => None,
        Some(name) => Some(AnomalyKind::parse(name).ok_or_else(|| StoreError::Corrupt {
            detail: format!("unknown anomaly kind {name:?}"),
        })?),
    };
    Ok(Reading {
        device,
        sensor,
        unit,
        ts_ns,
        value,
        seq: from_sql_u64("seq", seq)?,
        injected,
        // The caller reads the `ts_source` column ([`decode_ts_source`]).
        ts_source: TsSource::Event,
    })
}

/// The `ts_source` column: NULL (event time, and every row written before migration 0004) or
/// the name of a [`TsSource`].
pub(crate) fn decode_ts_source(stored: Option<&str>) -> Result<TsSource, StoreError> {
    match stored {
        None => Ok(TsSource::Event),
        Some(name) => TsSource::parse(name).ok_or_else(|| StoreError::Corrupt {
            detail: format!("stored ts_source {name:?} is neither \"event\" nor \"arrival\""),
        }),
    }
}

/// Validates a stored channel name.
pub(crate) fn decode_channel(name: &str) -> Result<Channel, StoreError> {
    Channel::new(name)
        .map_err(|e| StoreError::Corrupt { detail: format!("stored channel name {name:?}: {e}") })
}

/// A stored unit, or for NULL (a row written before migration 0003 added the column, when every
/// reading was of a pump channel in its profile's unit) the pump default unit of a pump channel
/// and `""` for any other name.
pub(crate) fn decode_unit(sensor: &Channel, unit: Option<&str>) -> Result<Unit, StoreError> {
    match (unit, sensor.kind()) {
        (Some(unit), _) => Unit::new(unit)
            .map_err(|e| StoreError::Corrupt { detail: format!("stored unit {unit:?}: {e}") }),
        (None, Some(kind)) => Ok(Unit::from(kind)),
        (None, None) => Unit::new("").map_err(|e| StoreError::Corrupt { detail: e.to_string() }),
    }
}

/// The order channels are listed in, per device: the pump's four in [`SensorKind::ALL`] order,
/// then any other by name (byte order). Lists of (device, channel) sort by
/// `(device.as_str(), channel_order(channel))`.
pub fn channel_order(channel: &Channel) -> (usize, &str) {
    (channel.kind().map_or(SensorKind::ALL.len(), SensorKind::index), channel.as_str())
}

/// Sorts `items` by device (bytes), then [`channel_order`]: the order the reads promise. The
/// backends read (device, channel) in byte order, which puts `humidity` before `pressure`.
pub(crate) fn sort_by_channel<T>(items: &mut [T], key: impl Fn(&T) -> (&DeviceId, &Channel)) {
    items.sort_by(|a, b| {
        let (da, ca) = key(a);
        let (db, cb) = key(b);
        (da.as_str(), channel_order(ca)).cmp(&(db.as_str(), channel_order(cb)))
    });
}

/// What one write adds to the channel catalog for one (device, channel).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatalogRow<'a> {
    pub device: &'a str,
    pub sensor: &'a str,
    /// The unit of the reading with the largest timestamp (the last written of those), as
    /// [`ReadingRow::stored_unit`] stores it.
    pub unit: Option<&'a str>,
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
}

/// The catalog rows of the readings a write stores: one per (device, channel), sorted by
/// (device, channel) in byte order, the order writers lock catalog rows in (so that two
/// PostgreSQL writers of overlapping channels wait for each other instead of deadlocking).
pub(crate) fn catalog_rows<'a>(
    rows: impl IntoIterator<Item = &'a ReadingRow>,
) -> Vec<CatalogRow<'a>> {
    // Per reading on the ETL's path: a hash lookup, not a walk of an ordered map; a batch has few
    // channels, sorted once at the end.
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    let mut out: Vec<CatalogRow<'a>> = Vec::new();
    for r in rows {
        let (device, sensor) = (r.device.as_str(), r.sensor.as_str());
        match at.get(&(device, sensor)) {
            Some(&i) => {
                let c = &mut out[i];
                c.first_ts_ns = c.first_ts_ns.min(r.ts_ns);
                if r.ts_ns >= c.last_ts_ns {
                    c.last_ts_ns = r.ts_ns;
                    c.unit = r.stored_unit();
                }
            }
            None => {
                at.insert((device, sensor), out.len());
                out.push(CatalogRow {
                    device,
                    sensor,
                    unit: r.stored_unit(),
                    first_ts_ns: r.ts_ns,
                    last_ts_ns: r.ts_ns,
                });
            }
        }
    }
    out.sort_unstable_by(|a, b| (a.device, a.sensor).cmp(&(b.device, b.sensor)));
    out
}

/// Exact copies among a write's readings: a reading whose device, channel, timestamp and value
/// a stored reading has, or an earlier reading of the same write. It carries nothing new (the
/// same message sent twice: an MQTT broker delivers a message again when the bridge that took it
/// did not acknowledge it), and a write stores one.
///
/// Only a reading at or before the newest timestamp of its channel so far (the catalog's, then
/// the write's own) can be one: live data comes in time order per channel, so a write of it has
/// no *candidate* and pays one hash lookup per reading. The store then looks the candidates up.
pub(crate) struct Copies {
    /// Indexes (into the write's readings) of the candidates, in order.
    pub candidates: Vec<usize>,
}

/// (device, channel, timestamp, value bits): what makes two readings copies.
pub(crate) type CopyKey<'a> = (&'a str, &'a str, i64, u64);

pub(crate) fn copy_key(r: &ReadingRow) -> CopyKey<'_> {
    (r.device.as_str(), r.sensor.as_str(), r.ts_ns, r.value.to_bits())
}

impl Copies {
    /// The candidates among `rows` (in write order), given the stored channels' newest
    /// timestamps (`stored_last`; a channel with none has no stored reading).
    pub fn find(rows: &[&ReadingRow], stored_last: &HashMap<(&str, &str), i64>) -> Copies {
        let mut newest: HashMap<(&str, &str), i64> = HashMap::new();
        let mut candidates = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let channel = (r.device.as_str(), r.sensor.as_str());
            let last = newest
                .entry(channel)
                .or_insert_with(|| stored_last.get(&channel).copied().unwrap_or(i64::MIN));
            if r.ts_ns <= *last {
                candidates.push(i);
            } else {
                *last = r.ts_ns;
            }
        }
        Copies { candidates }
    }

    /// Whether there is anything to look up.
    pub fn any(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// The candidates' rows.
    pub fn rows<'a>(&self, rows: &[&'a ReadingRow]) -> Vec<&'a ReadingRow> {
        self.candidates.iter().map(|&i| rows[i]).collect()
    }

    /// Which of the candidates to store, in order: those that copy neither a `stored` reading
    /// nor an earlier reading of the write (kept or not). Returns them and how many were copies.
    pub fn keep<'a>(
        &self,
        rows: &[&'a ReadingRow],
        stored: &std::collections::HashSet<CopyKey<'_>>,
    ) -> (Vec<&'a ReadingRow>, u64) {
        let mut earlier: std::collections::HashSet<CopyKey<'a>> = std::collections::HashSet::new();
        let mut next = self.candidates.iter().peekable();
        let mut kept = Vec::with_capacity(self.candidates.len());
        let mut copies = 0;
        for (i, r) in rows.iter().enumerate() {
            let key = copy_key(r);
            if next.peek() == Some(&&i) {
                next.next();
                if earlier.contains(&key) || stored.contains(&key) {
                    copies += 1;
                    continue;
                }
                kept.push(*r);
            }
            earlier.insert(key);
        }
        (kept, copies)
    }

    /// The rows that are no candidate, in order: certainly new.
    pub fn others<'a>(&self, rows: &[&'a ReadingRow]) -> Vec<&'a ReadingRow> {
        let mut next = self.candidates.iter().peekable();
        let mut out = Vec::with_capacity(rows.len() - self.candidates.len());
        for (i, r) in rows.iter().enumerate() {
            if next.peek() == Some(&&i) {
                next.next();
            } else {
                out.push(*r);
            }
        }
        out
    }
}

/// Decodes a stored catalog row.
pub(crate) fn decode_channel_info(
    device: &str,
    sensor: &str,
    unit: Option<&str>,
    first_ts_ns: i64,
    last_ts_ns: i64,
) -> Result<ChannelInfo, StoreError> {
    let sensor = decode_channel(sensor)?;
    Ok(ChannelInfo {
        device: decode_device(device)?,
        unit: decode_unit(&sensor, unit)?,
        sensor,
        first_ts_ns,
        last_ts_ns,
    })
}

/// One group of `SELECT device, sensor, unit, count, min, max, sum ... GROUP BY device, sensor,
/// unit` as read, before NULL units are resolved. The sum rather than the mean: two groups merge
/// by adding their sums, and PostgreSQL's `avg(float8)` also sums squares, which overflow for
/// values that are large but finite (above ~1e154).
#[derive(Debug, Clone)]
pub(crate) struct StatsGroup<'a> {
    pub device: &'a str,
    pub sensor: &'a str,
    pub unit: Option<&'a str>,
    pub count: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

/// Accumulates [`StatsGroup`]s into [`ChannelStats`]. A pump channel's NULL-unit group (readings
/// stored before units) and its group in the pump default unit are one (device, channel, unit):
/// they are merged here, since the database groups them apart.
#[derive(Debug, Default)]
pub(crate) struct StatsBuilder {
    /// Each group, with its sum in `mean` until [`StatsBuilder::finish`].
    groups: Vec<ChannelStats>,
}

impl StatsBuilder {
    pub(crate) fn push(&mut self, g: StatsGroup<'_>) -> Result<(), StoreError> {
        let sensor = decode_channel(g.sensor)?;
        let unit = decode_unit(&sensor, g.unit)?;
        // Groups mostly come device by device: validate a repeated name once.
        let device = match self.groups.last() {
            Some(prev) if prev.device.as_str() == g.device => prev.device.clone(),
            _ => decode_device(g.device)?,
        };
        self.groups.push(ChannelStats {
            device,
            sensor,
            unit,
            count: from_sql_u64("reading count", g.count)?,
            min: g.min,
            max: g.max,
            mean: g.sum,
        });
        Ok(())
    }

    /// The statistics in the promised order (device, [`channel_order`], unit), one per key.
    pub(crate) fn finish(mut self) -> Vec<ChannelStats> {
        self.groups.sort_by(|a, b| {
            (a.device.as_str(), channel_order(&a.sensor), a.unit.as_str()).cmp(&(
                b.device.as_str(),
                channel_order(&b.sensor),
                b.unit.as_str(),
            ))
        });
        let mut out: Vec<ChannelStats> = Vec::with_capacity(self.groups.len());
        for g in self.groups {
            match out.last_mut() {
                Some(same)
                    if same.device == g.device
                        && same.sensor == g.sensor
                        && same.unit == g.unit =>
                {
                    same.count += g.count;
                    same.min = same.min.min(g.min);
                    same.max = same.max.max(g.max);
                    same.mean += g.mean;
                }
                _ => out.push(g),
            }
        }
        for s in &mut out {
            // A group has at least one reading; the sum becomes the mean.
            s.mean /= s.count.max(1) as f64;
        }
        out
    }
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
        for (channel, v) in &a.sensor_share {
            share.insert(
                channel.as_str().to_owned(),
                serde_json::Value::from(finite("sensor_share", *v)?),
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
    let mut sensor_share = Vec::with_capacity(shares.len());
    for (name, value) in &shares {
        let channel = Channel::new(name).map_err(|e| {
            corrupt(format!("anomaly {}: sensor_share names {name:?}: {e}", row.id))
        })?;
        let share = value.as_f64().ok_or_else(|| {
            corrupt(format!("anomaly {}: sensor_share has no number for {name}", row.id))
        })?;
        sensor_share.push((channel, share));
    }
    // JSON objects keep no order (PostgreSQL's jsonb reorders keys): the alert's is display order.
    sensor_share.sort_by(|a, b| a.0.display_cmp(&b.0));
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
    pub top_sensor: String,
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
                    top_sensor: p.top_sensor.as_str().to_owned(),
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
    let top_sensor = Channel::new(top_sensor).map_err(|e| StoreError::Corrupt {
        detail: format!("anomaly score of {device} at {ts_ns}: top sensor {top_sensor:?}: {e}"),
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
            injected: Some(AnomalyKind::PressureFlat),
            ..Reading::pump(DeviceId::new("pump-01").unwrap(), SensorKind::Pressure, -5, value, seq)
        }
    }

    fn any(device: &str, sensor: &str, unit: &str, ts_ns: i64) -> Reading {
        Reading {
            device: DeviceId::new(device).unwrap(),
            sensor: Channel::new(sensor).unwrap(),
            unit: Unit::new(unit).unwrap(),
            ts_ns,
            value: 1.0,
            seq: 0,
            injected: None,
            ts_source: TsSource::Event,
        }
    }

    fn decode(row: &ReadingRow) -> Result<Reading, StoreError> {
        let mut r = decode_reading(
            row.device.clone(),
            row.sensor.as_str(),
            Some(row.unit.as_str()),
            row.ts_ns,
            row.value,
            row.seq,
            row.injected,
        )?;
        r.ts_source = decode_ts_source(row.ts_source)?;
        Ok(r)
    }

    #[test]
    fn encodes_and_decodes_back() {
        let arrival = Reading { ts_source: TsSource::Arrival, ..any("m-2", "current", "A", 3) };
        for r in [
            reading(i64::MAX as u64, 2.5),
            any("m-1", "vibration_x", "g", 7),
            any("m", "t", "", 0),
            arrival,
        ] {
            let row = ReadingRow::encode(&r).unwrap();
            assert_eq!(decode(&row).unwrap(), r);
        }
    }

    /// Event time is NULL (what every older row holds), arrival time `'arrival'`; anything else
    /// in the column is corrupt.
    #[test]
    fn ts_source_is_null_for_event_time() {
        let event = any("m", "t", "", 0);
        assert_eq!(ReadingRow::encode(&event).unwrap().ts_source, None);
        let arrival = Reading { ts_source: TsSource::Arrival, ..event };
        assert_eq!(ReadingRow::encode(&arrival).unwrap().ts_source, Some("arrival"));
        assert_eq!(decode_ts_source(None).unwrap(), TsSource::Event);
        assert_eq!(decode_ts_source(Some("event")).unwrap(), TsSource::Event);
        assert_eq!(decode_ts_source(Some("arrival")).unwrap(), TsSource::Arrival);
        assert!(matches!(decode_ts_source(Some("gps")), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_missing_unit_is_the_pump_default_or_empty() {
        let dev = DeviceId::new("d").unwrap();
        for kind in SensorKind::ALL {
            let r = decode_reading(dev.clone(), kind.as_str(), None, 0, 1.0, 0, None).unwrap();
            assert_eq!(r.unit, Unit::from(kind));
            assert_eq!(r.unit.as_str(), kind.unit());
        }
        let r = decode_reading(dev.clone(), "current", None, 0, 1.0, 0, None).unwrap();
        assert_eq!(r.unit.as_str(), "");
        // A stored unit is kept, even on a pump channel.
        let r = decode_reading(dev, "temperature", Some("K"), 0, 1.0, 0, None).unwrap();
        assert_eq!(r.unit.as_str(), "K");
    }

    #[test]
    fn catalog_rows_span_each_channel_with_its_newest_unit_in_key_order() {
        let rows: Vec<ReadingRow> = [
            any("b", "current", "A", 5),
            any("a", "temperature", "°C", 3),
            any("b", "current", "mA", 9),
            any("b", "current", "kA", 1),
            any("a", "humidity", "%", 4),
            // A tie on the newest timestamp: the last written wins.
            any("b", "current", "µA", 9),
            any("a", "temperature", "K", 2),
        ]
        .iter()
        .map(|r| ReadingRow::encode(r).unwrap())
        .collect();
        let got = catalog_rows(&rows);
        let row = |device, sensor, unit, first_ts_ns, last_ts_ns| CatalogRow {
            device,
            sensor,
            unit,
            first_ts_ns,
            last_ts_ns,
        };
        assert_eq!(
            got,
            [
                // The pump's units are stored as NULL, another unit as itself.
                row("a", "humidity", None, 4, 4),
                row("a", "temperature", None, 2, 3),
                row("b", "current", Some("µA"), 1, 9),
            ]
        );
        assert!(catalog_rows(&[]).is_empty());
        let k = any("a", "temperature", "K", 2);
        assert_eq!(ReadingRow::encode(&k).unwrap().stored_unit(), Some("K"));
    }

    #[test]
    fn channels_sort_pump_first_then_by_name() {
        let mut items: Vec<(DeviceId, Channel)> = [
            ("b", "temperature"),
            ("a", "current"),
            ("a", "humidity"),
            ("a", "temperature"),
            ("a", "aaa"),
            ("a", "pressure"),
            ("a", "vibration"),
            ("B", "zeta"),
        ]
        .iter()
        .map(|(d, c)| (DeviceId::new(d).unwrap(), Channel::new(c).unwrap()))
        .collect();
        sort_by_channel(&mut items, |(d, c)| (d, c));
        let names: Vec<String> = items.iter().map(|(d, c)| format!("{d}/{c}")).collect();
        assert_eq!(
            names,
            [
                "B/zeta",
                "a/temperature",
                "a/vibration",
                "a/pressure",
                "a/humidity",
                "a/aaa",
                "a/current",
                "b/temperature"
            ]
        );
    }

    #[test]
    fn stats_merge_a_missing_unit_into_the_pump_default() {
        let group = |device, sensor, unit, count, min, max, sum| StatsGroup {
            device,
            sensor,
            unit,
            count,
            min,
            max,
            sum,
        };
        let mut b = StatsBuilder::default();
        // Old rows (NULL) and new ones in °C are one group; in K, another; `current` NULL is "".
        b.push(group("p", "temperature", Some("°C"), 2, 10.0, 30.0, 40.0)).unwrap();
        b.push(group("p", "current", None, 1, 2.0, 2.0, 2.0)).unwrap();
        b.push(group("p", "temperature", None, 3, 5.0, 20.0, 35.0)).unwrap();
        b.push(group("p", "temperature", Some("K"), 1, 300.0, 300.0, 300.0)).unwrap();
        let got = b.finish();
        let key: Vec<(&str, &str, u64, f64, f64, f64)> = got
            .iter()
            .map(|s| (s.sensor.as_str(), s.unit.as_str(), s.count, s.min, s.max, s.mean))
            .collect();
        assert_eq!(
            key,
            [
                ("temperature", "K", 1, 300.0, 300.0, 300.0),
                ("temperature", "°C", 5, 5.0, 30.0, 15.0),
                ("current", "", 1, 2.0, 2.0, 2.0),
            ]
        );
        let mut bad = StatsBuilder::default();
        assert!(matches!(
            bad.push(group("p", "Temp", None, 1, 0.0, 0.0, 0.0)),
            Err(StoreError::Corrupt { .. })
        ));
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
            top_sensor: SensorKind::Humidity.into(),
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
            &rows[0].top_sensor,
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
        // Any profile's channel may be the top sensor; a name no channel can have is corrupt.
        let other = decode_score(dev.clone(), 0, 1.0, 1.0, "voltage", String::new()).unwrap();
        assert_eq!(other.top_sensor.as_str(), "voltage");
        assert!(matches!(
            decode_score(dev, 0, 1.0, 1.0, "Voltage!", String::new()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn bad_stored_values_are_corrupt() {
        let dev = DeviceId::new("d").unwrap();
        // Any well-formed channel name decodes; one that is not a name is corrupt, and says so.
        assert!(decode_reading(dev.clone(), "voltage", None, 0, 0.0, 0, None).is_ok());
        for bad in ["Voltage", "", "a b"] {
            match decode_reading(dev.clone(), bad, None, 0, 0.0, 0, None) {
                Err(StoreError::Corrupt { detail }) => {
                    assert!(detail.contains(&format!("{bad:?}")), "{detail}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(
            decode_reading(dev.clone(), "pressure", Some("a\nb"), 0, 0.0, 0, None),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_reading(dev.clone(), "pressure", None, 0, 0.0, -1, None),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_reading(dev, "pressure", None, 0, 0.0, 0, Some("meteor")),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(decode_device("a b"), Err(StoreError::Corrupt { .. })));
        assert!(matches!(from_sql_partition(-1), Err(StoreError::Corrupt { .. })));
    }
}
