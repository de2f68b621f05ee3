//! Readings to frames at a fixed cadence, with explicit filling of missing values.
//!
//! A frame has one column per channel of the model's profile, in the profile's order (the pump's:
//! temperature, vibration, pressure, humidity). Readings of other channels have no column.

use std::sync::Arc;

use sentio_core::{Channel, DeviceId, Reading, SensorKind};

/// How readings become frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignSettings {
    /// Slot length, nanoseconds (> 0).
    pub cadence_ns: i64,
    /// A missing sensor repeats its last value for at most this many consecutive slots.
    pub fill_limit: u32,
}

/// The columns of a frame: the channels a model reads, in its order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Columns(Arc<[Channel]>);

impl Columns {
    /// At most [`sentio_core::profile::MAX_CHANNELS`] channels (a frame's filled mask has a bit
    /// per column); the profile check guarantees it for a profile's channels.
    pub fn new(channels: Vec<Channel>) -> Columns {
        Columns(channels.into())
    }

    /// The pump's four, in [`SensorKind::ALL`] order.
    pub fn pump() -> Columns {
        Columns::new(SensorKind::ALL.map(Channel::from).to_vec())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn channels(&self) -> &[Channel] {
        &self.0
    }

    /// The column of `channel`, if the frame has one.
    pub fn index(&self, channel: &Channel) -> Option<usize> {
        self.0.iter().position(|c| c == channel)
    }
}

/// One device's frames over a range of slots: row `i` is slot `first_slot + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub device: DeviceId,
    /// Slot index of the first row (slot `k` starts at `k * cadence_ns`).
    pub first_slot: i64,
    pub cadence_ns: i64,
    /// Columns per row.
    pub width: usize,
    /// Row-major `[rows][width]` in column order, raw units; NaN marks a hole.
    pub values: Vec<f64>,
    /// Per row, bit `s` set when column `s` was filled from an earlier slot.
    pub filled: Vec<u64>,
    /// Per row, whether any reading in the slot carried a ground-truth anomaly label.
    pub labelled: Vec<bool>,
}

impl Series {
    pub fn len(&self) -> usize {
        self.labelled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labelled.is_empty()
    }

    /// Row `i`'s values.
    pub fn row(&self, row: usize) -> &[f64] {
        &self.values[row * self.width..(row + 1) * self.width]
    }

    /// Rows `rows`, row-major.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> &[f64] {
        &self.values[rows.start * self.width..rows.end * self.width]
    }

    /// Start of row `i`, nanoseconds since the epoch.
    pub fn ts_ns(&self, row: usize) -> i64 {
        (self.first_slot + row as i64).saturating_mul(self.cadence_ns)
    }

    /// Whether row `i` has a hole (a sensor with no value, observed or filled).
    pub fn has_hole(&self, row: usize) -> bool {
        self.row(row).iter().any(|v| v.is_nan())
    }
}

/// Fills missing sensors of consecutive frames from the last observed value, within a limit.
#[derive(Debug, Clone)]
pub struct Filler {
    last: Vec<Option<f64>>,
    /// Consecutive slots each sensor has been filled for.
    age: Vec<u32>,
}

impl Filler {
    pub fn new(width: usize) -> Filler {
        Filler { last: vec![None; width], age: vec![0; width] }
    }

    /// Completes one slot's raw values (NaN: no reading), appending the frame (NaN for a hole)
    /// to `out`; returns the filled mask.
    pub fn fill(&mut self, raw: &[f64], limit: u32, out: &mut Vec<f64>) -> u64 {
        let mut filled = 0u64;
        for (s, &v) in raw.iter().enumerate() {
            if !v.is_nan() {
                out.push(v);
                self.last[s] = Some(v);
                self.age[s] = 0;
            } else {
                self.age[s] = self.age[s].saturating_add(1);
                match self.last[s].filter(|_| self.age[s] <= limit) {
                    Some(v) => {
                        out.push(v);
                        filled |= 1 << s;
                    }
                    None => out.push(f64::NAN),
                }
            }
        }
        filled
    }
}

/// The slot holding `ts_ns`.
pub fn slot_of(ts_ns: i64, cadence_ns: i64) -> i64 {
    ts_ns.div_euclid(cadence_ns)
}

/// Builds one device's series from readings given in time order (later readings of a sensor in
/// a slot replace earlier ones), over a fixed range of slots.
#[derive(Debug, Clone)]
pub struct SeriesBuilder {
    device: DeviceId,
    columns: Columns,
    first_slot: i64,
    cadence_ns: i64,
    from_ns: i64,
    to_ns: i64,
    raw: Vec<f64>,
    labelled: Vec<bool>,
}

impl SeriesBuilder {
    /// Covers the slots of `[from_ns, to_ns)`.
    pub fn new(
        device: DeviceId,
        columns: Columns,
        from_ns: i64,
        to_ns: i64,
        cadence_ns: i64,
    ) -> SeriesBuilder {
        let c = cadence_ns.max(1);
        let first = slot_of(from_ns, c);
        let end = if to_ns > from_ns { slot_of(to_ns - 1, c) + 1 } else { first };
        let rows = usize::try_from(end - first).unwrap_or(0);
        SeriesBuilder {
            device,
            raw: vec![f64::NAN; rows * columns.len()],
            columns,
            first_slot: first,
            cadence_ns: c,
            from_ns,
            to_ns,
            labelled: vec![false; rows],
        }
    }

    /// Puts one reading in its slot; readings outside the range, or of a channel with no column,
    /// are ignored.
    pub fn push(&mut self, r: &Reading) {
        if r.ts_ns < self.from_ns || r.ts_ns >= self.to_ns {
            return;
        }
        let Ok(row) = usize::try_from(slot_of(r.ts_ns, self.cadence_ns) - self.first_slot) else {
            return;
        };
        let Some(column) = self.columns.index(&r.sensor) else {
            return;
        };
        if let Some(cell) = self.raw.get_mut(row * self.columns.len() + column) {
            *cell = r.value;
            self.labelled[row] |= r.injected.is_some();
        }
    }

    /// Fills short gaps (see [`Filler`]) and returns the series.
    pub fn finish(self, fill_limit: u32) -> Series {
        let width = self.columns.len();
        let mut filler = Filler::new(width);
        let mut values = Vec::with_capacity(self.raw.len());
        let mut filled = Vec::with_capacity(self.labelled.len());
        for cells in self.raw.chunks_exact(width.max(1)) {
            filled.push(filler.fill(cells, fill_limit, &mut values));
        }
        Series {
            device: self.device,
            first_slot: self.first_slot,
            cadence_ns: self.cadence_ns,
            width,
            values,
            filled,
            labelled: self.labelled,
        }
    }
}

/// Aligns one device's readings (any order) over the slots covering `[from_ns, to_ns)`.
pub fn align(
    device: DeviceId,
    columns: &Columns,
    readings: &[Reading],
    from_ns: i64,
    to_ns: i64,
    settings: AlignSettings,
) -> Series {
    let mut order: Vec<&Reading> = readings.iter().collect();
    order.sort_by_key(|r| r.ts_ns);
    let mut builder =
        SeriesBuilder::new(device, columns.clone(), from_ns, to_ns, settings.cadence_ns);
    for r in order {
        builder.push(r);
    }
    builder.finish(settings.fill_limit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reading(sensor: SensorKind, ts_s: i64, value: f64, label: bool) -> Reading {
        Reading {
            injected: label.then_some(sentio_core::AnomalyKind::TemperatureSpike),
            ..Reading::pump(DeviceId::new("d").unwrap(), sensor, ts_s * 1_000_000_000, value, 0)
        }
    }

    #[test]
    fn fills_within_the_limit_then_leaves_a_hole() {
        let mut rs = vec![];
        for s in SensorKind::ALL {
            rs.push(reading(s, 0, 1.0, false));
        }
        // Temperature alone continues; the others go silent.
        for t in 1..6 {
            rs.push(reading(SensorKind::Temperature, t, t as f64, t == 2));
        }
        let settings = AlignSettings { cadence_ns: 1_000_000_000, fill_limit: 2 };
        let s =
            align(DeviceId::new("d").unwrap(), &Columns::pump(), &rs, 0, 6_000_000_000, settings);
        assert_eq!(s.len(), 6);
        assert_eq!(s.row(1)[1], 1.0);
        assert_eq!(s.filled[1], 0b1110);
        assert!(!s.has_hole(2));
        assert!(s.has_hole(3));
        assert_eq!(s.row(5)[0], 5.0);
        assert_eq!(s.labelled, vec![false, false, true, false, false, false]);
    }

    #[test]
    fn the_latest_reading_in_a_slot_wins() {
        let mut a = reading(SensorKind::Pressure, 0, 1.0, false);
        a.ts_ns = 100;
        let mut b = reading(SensorKind::Pressure, 0, 2.0, false);
        b.ts_ns = 900;
        let settings = AlignSettings { cadence_ns: 1_000, fill_limit: 0 };
        let s = align(DeviceId::new("d").unwrap(), &Columns::pump(), &[b, a], 0, 1_000, settings);
        assert_eq!(s.row(0)[2], 2.0);
    }

    #[test]
    fn any_profile_s_channels_are_columns_in_its_order() {
        let d = DeviceId::new("comp-1").unwrap();
        let columns = Columns::new(
            ["flow", "current", "vibration_x"].map(|c| Channel::new(c).unwrap()).to_vec(),
        );
        let at = |sensor: &str, ts: i64, value: f64| Reading {
            sensor: Channel::new(sensor).unwrap(),
            ..Reading::pump(d.clone(), SensorKind::Temperature, ts, value, 0)
        };
        let rs = [
            at("current", 0, 3.0),
            at("flow", 0, 7.0),
            at("pressure", 0, 1.0),
            at("current", 10, 4.0),
        ];
        let settings = AlignSettings { cadence_ns: 10, fill_limit: 1 };
        let s = align(d.clone(), &columns, &rs, 0, 20, settings);
        assert_eq!(s.width, 3);
        assert_eq!(s.row(0)[..2], [7.0, 3.0]);
        assert!(s.row(0)[2].is_nan(), "vibration_x never reported: a hole");
        assert_eq!(s.row(1)[..2], [7.0, 4.0]);
        assert_eq!(s.filled[1], 0b001, "flow filled from the slot before");
    }
}
